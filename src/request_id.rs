//! Request ids: `X-Request-ID` from the client when it is at most 64 characters of
//! `[A-Za-z0-9._-]`, otherwise a generated `req_…`. The id lives in a task-local for the
//! life of the request, so log lines and error bodies pick it up without threading it
//! through every call.

use std::future::Future;
use std::sync::Arc;

use actix_web::http::header::HeaderValue;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The client's id if acceptable, else a new one.
pub fn accept_or_generate(header: Option<&HeaderValue>) -> Arc<str> {
    match header.and_then(|v| v.to_str().ok()).filter(|v| is_acceptable(v)) {
        Some(id) => Arc::from(id),
        None => Arc::from(format!("req_{}", uuid::Uuid::new_v4().simple())),
    }
}

fn is_acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Runs `fut` with `id` as the current request id.
pub fn scope<F: Future>(id: Arc<str>, fut: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, fut)
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_safe_ids() {
        let ok = HeaderValue::from_static("req-abc-123");
        assert_eq!(&*accept_or_generate(Some(&ok)), "req-abc-123");
        let bad = HeaderValue::from_static("has spaces");
        assert!(accept_or_generate(Some(&bad)).starts_with("req_"));
        let long = HeaderValue::from_str(&"a".repeat(65)).expect("header");
        assert!(accept_or_generate(Some(&long)).starts_with("req_"));
    }
}
