//! Signatures of webhook bodies, as SPEC §6 fixes them and the published Flask receiver
//! verifies them: HMAC-SHA256 keyed with the webhook secret's text (UTF-8 bytes).
//!
//! * `X-VoIPBIN-Signature: <hex HMAC(secret, raw body)>`
//! * `X-VoIPBIN-Timestamp: <unix seconds>`
//! * `X-VoIPBIN-Signature-V2: t=<unix seconds>,v1=<hex HMAC(secret, "<t>.<raw body>")>`
//!
//! Used by webhook deliveries and by the `webhook_send` flow action.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE: &str = "X-VoIPBIN-Signature";
pub const TIMESTAMP: &str = "X-VoIPBIN-Timestamp";
pub const SIGNATURE_V2: &str = "X-VoIPBIN-Signature-V2";
pub const EVENT_ID: &str = "X-VoIPBIN-Event-Id";
pub const DELIVERY_ATTEMPT: &str = "X-VoIPBIN-Delivery-Attempt";

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    #[expect(clippy::expect_used, reason = "HMAC takes keys of any length")]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC key");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// `X-VoIPBIN-Signature`: lowercase hex HMAC-SHA256 of the raw body.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hmac_hex(secret, &[body])
}

/// `X-VoIPBIN-Signature-V2`: `t=<timestamp>,v1=<hex HMAC of "<timestamp>.<body>">`.
pub fn sign_v2(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    format!("t={t},v1={}", hmac_hex(secret, &[t.as_bytes(), b".", body]))
}

/// The signing headers of a request carrying `body`, at `timestamp`.
pub fn headers(secret: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    [
        (SIGNATURE, sign(secret, body)),
        (TIMESTAMP, timestamp.to_string()),
        (SIGNATURE_V2, sign_v2(secret, timestamp, body)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let v2 = sign_v2("Jefe", 1_700_000_000, b"{}");
        assert_eq!(v2, format!("t=1700000000,v1={}", sign("Jefe", b"1700000000.{}")));
    }
}
