//! What an attempt's result means for its delivery: done, retried when, or given up.

use std::time::{Duration, SystemTime};

use callplane_schema::models::webhook_delivery::{AttemptRecord, DeliveryStatus};
use chrono::NaiveDateTime;

use super::WebhookSettings;

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 2xx.
    Delivered,
    /// 5xx, 408, 429, a timeout or a connection error: worth another attempt.
    Retryable,
    /// Any other answer: the receiver said no.
    Final,
    /// The target resolved to an address webhooks may not reach; nothing was sent.
    Refused,
    /// Older than the maximum age before its turn came; nothing was sent.
    Expired,
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempted {
    pub kind: Kind,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    /// `None` when nothing was sent.
    pub latency: Option<Duration>,
    /// From a `Retry-After` header.
    pub retry_after: Option<Duration>,
}

impl Attempted {
    pub fn not_sent(kind: Kind, error: String) -> Attempted {
        Attempted { kind, status_code: None, error: Some(error), latency: None, retry_after: None }
    }

    /// Whether the endpoint failed (what the circuit breaker counts).
    pub fn endpoint_failed(&self) -> bool {
        matches!(self.kind, Kind::Retryable | Kind::Final | Kind::Refused)
    }
}

/// Success is any 2xx; 408, 429 and 5xx are worth retrying; anything else is final.
pub fn kind_of(status: u16) -> Kind {
    match status {
        200..=299 => Kind::Delivered,
        408 | 429 | 500..=599 => Kind::Retryable,
        _ => Kind::Final,
    }
}

/// `Retry-After` as seconds or as an HTTP date; a date in the past means now.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff with full jitter: uniformly up to 1 s, 2 s, 4 s … for attempts
/// 1, 2, 3 …, capped at `cap`. Full jitter spreads the retries of many deliveries that
/// failed together (an endpoint coming back) instead of sending them in waves.
pub fn backoff(attempt: i32, cap: Duration) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(30);
    let ceiling = Duration::from_secs(1u64 << exponent).min(cap);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(0..=millis))
}

/// The delivery's next state after attempt number `attempt`, made at `now`, of a
/// delivery enqueued at `created`.
pub fn decide(
    attempted: &Attempted,
    attempt: i32,
    created: NaiveDateTime,
    now: NaiveDateTime,
    settings: &WebhookSettings,
) -> AttemptRecord {
    let mut record = AttemptRecord {
        attempt,
        status: DeliveryStatus::Failed,
        next_attempt_at: None,
        status_code: attempted.status_code.map(i32::from),
        error: attempted.error.clone(),
        latency_ms: attempted.latency.map(|l| i64::try_from(l.as_millis()).unwrap_or(i64::MAX)),
    };
    match attempted.kind {
        Kind::Delivered => record.status = DeliveryStatus::Delivered,
        Kind::Final | Kind::Refused | Kind::Expired => {}
        Kind::Retryable => {
            let delay = attempted.retry_after.unwrap_or_else(|| backoff(attempt, settings.max_backoff));
            let next = chrono::Duration::from_std(delay).ok().and_then(|d| now.checked_add_signed(d));
            let deadline =
                chrono::Duration::from_std(settings.max_age).ok().and_then(|d| created.checked_add_signed(d));
            match (next, deadline) {
                _ if attempt >= i32::try_from(settings.max_attempts).unwrap_or(i32::MAX) => {
                    record.error = Some(give_up(&record.error, &format!("gave up after {attempt} attempts")));
                }
                (Some(next), Some(deadline)) if next <= deadline => {
                    record.status = DeliveryStatus::Pending;
                    record.next_attempt_at = Some(next);
                }
                _ => {
                    let age = settings.max_age.as_secs();
                    record.error =
                        Some(give_up(&record.error, &format!("the next attempt would pass the maximum age ({age} s)")));
                }
            }
        }
    }
    record
}

fn give_up(error: &Option<String>, why: &str) -> String {
    match error {
        Some(error) => format!("{error}; {why}"),
        None => why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            max_attempts: 3,
            max_age: Duration::from_secs(60),
            max_backoff: Duration::from_secs(4),
            ..WebhookSettings::default()
        }
    }

    fn failed(retry_after: Option<Duration>) -> Attempted {
        Attempted {
            kind: Kind::Retryable,
            status_code: Some(503),
            error: None,
            latency: Some(Duration::from_millis(12)),
            retry_after,
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(kind_of(200), Kind::Delivered);
        assert_eq!(kind_of(204), Kind::Delivered);
        for s in [408, 429, 500, 502, 503, 599] {
            assert_eq!(kind_of(s), Kind::Retryable, "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert_eq!(kind_of(s), Kind::Final, "{s}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_within_its_cap() {
        for _ in 0..200 {
            assert!(backoff(1, Duration::from_secs(600)) <= Duration::from_secs(1));
            assert!(backoff(3, Duration::from_secs(600)) <= Duration::from_secs(4));
            assert!(backoff(30, Duration::from_secs(10)) <= Duration::from_secs(10));
        }
        // Full jitter: not always the ceiling.
        let spread: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff(8, Duration::from_secs(600))).collect();
        assert!(spread.len() > 10);
    }

    #[test]
    fn retries_until_attempts_or_age_run_out() {
        let created = callplane_schema::time::now();
        let now = created;
        let record = decide(&failed(None), 1, created, now, &settings());
        assert_eq!(record.status, DeliveryStatus::Pending);
        assert!(record.next_attempt_at.is_some_and(|t| t <= now + chrono::Duration::seconds(1)));
        assert_eq!(record.status_code, Some(503));

        let record = decide(&failed(None), 3, created, now, &settings());
        assert_eq!(record.status, DeliveryStatus::Failed);
        assert!(record.error.as_deref().is_some_and(|e| e.contains("3 attempts")));

        let record = decide(&failed(Some(Duration::from_secs(120))), 1, created, now, &settings());
        assert_eq!(record.status, DeliveryStatus::Failed, "a Retry-After past the maximum age");
        assert!(record.error.as_deref().is_some_and(|e| e.contains("maximum age")));

        let record = decide(&failed(Some(Duration::from_secs(20))), 1, created, now, &settings());
        assert_eq!(record.next_attempt_at, Some(now + chrono::Duration::seconds(20)), "Retry-After is honoured");
    }

    #[test]
    fn final_answers_are_not_retried() {
        let now = callplane_schema::time::now();
        let gone = Attempted { kind: kind_of(410), status_code: Some(410), ..failed(None) };
        let record = decide(&gone, 1, now, now, &settings());
        assert_eq!((record.status, record.next_attempt_at), (DeliveryStatus::Failed, None));
        let ok = Attempted { kind: Kind::Delivered, status_code: Some(200), ..failed(None) };
        assert_eq!(decide(&ok, 2, now, now, &settings()).status, DeliveryStatus::Delivered);
    }
}
