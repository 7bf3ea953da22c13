//! Access keys: `cpk_` followed by 64 hex digits (256 random bits). Only the SHA-256 of
//! a key is stored; a slow hash buys nothing against keys this long.

use callplane_schema::ids::{AccessKeyId, CustomerId};
use callplane_schema::models::accesskey::AccessKey;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "cpk_";

/// A new key, to be shown once.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PREFIX}{}", hex::encode(bytes))
}

pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The first characters, stored so that keys can be told apart in lists.
pub fn hint(key: &str) -> String {
    key.chars().take(PREFIX.len() + 8).collect()
}

/// The row that stores `token`; `expire_secs` 0 never expires.
pub fn row(customer_id: &CustomerId, token: &str, name: String, detail: String, expire_secs: u64) -> AccessKey {
    let now = callplane_schema::time::now();
    let tm_expire =
        (expire_secs > 0).then(|| now + chrono::Duration::seconds(i64::try_from(expire_secs).unwrap_or(i64::MAX)));
    AccessKey {
        id: AccessKeyId::new(),
        customer_id: customer_id.clone(),
        name,
        detail,
        token_hash: hash(token),
        token_hint: hint(token),
        tm_expire,
        tm_create: now,
        tm_update: now,
        tm_delete: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_prefixed_and_distinct() {
        let a = super::generate();
        assert!(a.starts_with(super::PREFIX));
        assert_eq!(a.len(), 4 + 64);
        assert_ne!(a, super::generate());
        assert_eq!(super::hash(&a).len(), 64);
        assert_eq!(super::hint(&a).len(), 12);
    }
}
