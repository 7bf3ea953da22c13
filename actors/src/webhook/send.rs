//! One HTTP attempt of one delivery, and the client that makes it.

use std::time::{Duration, Instant, SystemTime};

use awc::error::{ConnectError, SendRequestError};
use awc::http::Method;
use awc::http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use callplane_schema::models::webhook::{WebhookMethod, WebhookRow};
use callplane_schema::models::webhook_delivery::DeliveryRow;

use super::guard::{self, GuardedResolver, Refused};
use super::policy::{self, Attempted, Kind};
use super::{WebhookSettings, signature};

/// Requests in flight over all endpoints at most; also the client's connection limit,
/// so that no request waits for a connection inside its own timeout.
pub const MAX_IN_FLIGHT: usize = 64;
/// Response bodies are read (so the connection can be reused) up to this and dropped.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// awc 3 with rustls 0.23 needs a process-wide crypto provider before it builds its TLS
/// configuration, and panics without one. The first install wins; later ones are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The webhook client: connect and total timeouts, no redirects (a redirect could lead
/// past the guard to an address a webhook may not reach), and a resolver that vets
/// every address it hands out. Not `Send`: it lives on the dispatcher's thread.
pub fn client(settings: &WebhookSettings) -> awc::Client {
    install_crypto_provider();
    let resolver = actix_tls::connect::Resolver::custom(GuardedResolver { allow_private: settings.allow_private });
    let tcp = actix_tls::connect::Connector::new(resolver).service();
    let connector = awc::Connector::new().connector(tcp).timeout(settings.timeout).limit(MAX_IN_FLIGHT);
    awc::Client::builder()
        .connector(connector)
        .timeout(settings.timeout)
        .disable_redirects()
        .no_default_headers()
        .add_default_header((USER_AGENT, concat!("callplane-webhooks/", env!("CARGO_PKG_VERSION"))))
        .finish()
}

/// Sends `delivery` to `webhook` as attempt number `attempt`.
pub async fn attempt(
    client: &awc::Client,
    webhook: &WebhookRow,
    delivery: &DeliveryRow,
    attempt: i32,
    settings: &WebhookSettings,
) -> Attempted {
    if !settings.allow_private
        && let Err(refused) = guard::check_literal(&webhook.uri)
    {
        return Attempted::not_sent(Kind::Refused, refused.to_string());
    }
    let method = match webhook.method {
        WebhookMethod::Post => Method::POST,
        WebhookMethod::Put => Method::PUT,
    };
    let timestamp = chrono::Utc::now().timestamp();
    let mut request = client
        .request(method, webhook.uri.as_str())
        .no_decompress()
        .insert_header((CONTENT_TYPE, "application/json"))
        .insert_header((signature::EVENT_ID, delivery.event_id.as_str()))
        .insert_header((signature::DELIVERY_ATTEMPT, attempt.to_string()));
    for header in signature::headers(&webhook.secret, timestamp, delivery.body.as_bytes()) {
        request = request.insert_header(header);
    }

    let started = Instant::now();
    let sent = request.send_body(delivery.body.clone()).await;
    let latency = Some(started.elapsed());
    match sent {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| policy::retry_after(v, SystemTime::now()));
            // Read what the receiver sent so the connection can serve the next request.
            let _ = tokio::time::timeout(settings.timeout, response.body().limit(MAX_RESPONSE_BODY)).await;
            let kind = policy::kind_of(status);
            let error = (kind != Kind::Delivered).then(|| format!("HTTP {status}"));
            Attempted { kind, status_code: Some(status), error, latency, retry_after }
        }
        Err(e) => {
            let (kind, error) = describe(&e, settings.timeout);
            Attempted { kind, status_code: None, error: Some(error), latency, retry_after: None }
        }
    }
}

/// Timeouts and connection errors are retried; a refused target or an unusable URI is not.
fn describe(e: &SendRequestError, timeout: Duration) -> (Kind, String) {
    match e {
        SendRequestError::Timeout => (Kind::Retryable, format!("timeout: no answer within {} ms", timeout.as_millis())),
        SendRequestError::Connect(ConnectError::Resolver(cause)) => match cause.downcast_ref::<Refused>() {
            Some(refused) => (Kind::Refused, refused.to_string()),
            None => (Kind::Retryable, format!("DNS: {cause}")),
        },
        SendRequestError::Connect(ConnectError::Timeout) => {
            (Kind::Retryable, format!("timeout: not connected within {} ms", timeout.as_millis()))
        }
        SendRequestError::Connect(cause) => (Kind::Retryable, format!("connection failed: {cause}")),
        SendRequestError::Url(cause) => (Kind::Final, format!("unusable URI: {cause}")),
        other => (Kind::Retryable, format!("request failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn an_https_client_builds_without_panicking() {
        let client = client(&WebhookSettings::default());
        // Nothing listens on port 1: the attempt fails as a connection error, after the
        // TLS configuration was built.
        let result = client.post("https://127.0.0.1:1/").send_body("{}").await;
        assert!(matches!(result, Err(SendRequestError::Connect(_))), "{result:?}");
    }
}
