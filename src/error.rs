//! Errors as clients see them, and as the log sees them.
//!
//! Two layers: [`Reason`] is the flat list of client-visible reasons (the `reason`
//! strings of SPEC §2), each mapped to its status and HTTP code in one place;
//! [`ApiError`] carries a reason, a human message, and, for the log only, the cause and
//! where the error was raised. Handlers return `Result<_, ApiError>`; query functions
//! return `DbError` and domain actors their own errors, converted here.
//!
//! Every error body is `{"error": {"status", "reason", "message", "request_id"}}`; a
//! 5xx never carries its cause.

use std::borrow::Cow;
use std::fmt;
use std::panic::Location;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use callplane_schema::DbError;
use serde::Serialize;

use crate::request_id;

/// The `status` field: the class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    InvalidArgument,
    Unauthenticated,
    PaymentRequired,
    PermissionDenied,
    NotFound,
    MethodNotAllowed,
    AlreadyExists,
    FailedPrecondition,
    PayloadTooLarge,
    Unprocessable,
    ResourceExhausted,
    Internal,
    Unavailable,
}

impl Status {
    pub fn http(self) -> StatusCode {
        match self {
            Status::InvalidArgument => StatusCode::BAD_REQUEST,
            Status::Unauthenticated => StatusCode::UNAUTHORIZED,
            Status::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
            Status::PermissionDenied => StatusCode::FORBIDDEN,
            Status::NotFound => StatusCode::NOT_FOUND,
            Status::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Status::AlreadyExists | Status::FailedPrecondition => StatusCode::CONFLICT,
            Status::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Status::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Status::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Status::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Status::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The `reason` field: what exactly went wrong. Clients may rely on these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    // 400
    InvalidArgument,
    InvalidJson,
    UnsupportedContentType,
    // 401
    Unauthenticated,
    InvalidCredentials,
    // 402
    InsufficientBalance,
    // 403
    PermissionDenied,
    // 404
    NotFound,
    RouteNotFound,
    CustomerNotFound,
    AgentNotFound,
    AccesskeyNotFound,
    BillingAccountNotFound,
    CallNotFound,
    WebhookNotFound,
    FlowNotFound,
    ActiveflowNotFound,
    ConferenceNotFound,
    ConferencecallNotFound,
    NumberNotFound,
    MessageNotFound,
    // 405
    MethodNotAllowed,
    // 409
    AlreadyExists,
    UsernameTaken,
    LastAdmin,
    CallStateInvalid,
    BalanceTooLow,
    ConferenceStateInvalid,
    SandboxUnavailable,
    // 413
    PayloadTooLarge,
    // 422
    IdempotencyKeyReused,
    // 429
    RateLimitExceeded,
    // 500
    Internal,
    // 503
    Unavailable,
}

impl Reason {
    pub fn status(self) -> Status {
        use Reason::*;
        match self {
            InvalidArgument | InvalidJson | UnsupportedContentType => Status::InvalidArgument,
            Unauthenticated | InvalidCredentials => Status::Unauthenticated,
            InsufficientBalance => Status::PaymentRequired,
            PermissionDenied => Status::PermissionDenied,
            NotFound
            | RouteNotFound
            | CustomerNotFound
            | AgentNotFound
            | AccesskeyNotFound
            | BillingAccountNotFound
            | CallNotFound
            | WebhookNotFound
            | FlowNotFound
            | ActiveflowNotFound
            | ConferenceNotFound
            | ConferencecallNotFound
            | NumberNotFound
            | MessageNotFound => Status::NotFound,
            MethodNotAllowed => Status::MethodNotAllowed,
            AlreadyExists | UsernameTaken => Status::AlreadyExists,
            LastAdmin | CallStateInvalid | BalanceTooLow | ConferenceStateInvalid | SandboxUnavailable => {
                Status::FailedPrecondition
            }
            PayloadTooLarge => Status::PayloadTooLarge,
            IdempotencyKeyReused => Status::Unprocessable,
            RateLimitExceeded => Status::ResourceExhausted,
            Internal => Status::Internal,
            Unavailable => Status::Unavailable,
        }
    }

    /// The message clients see when the raiser gives none.
    fn default_message(self) -> &'static str {
        use Reason::*;
        match self {
            InvalidArgument => "invalid argument",
            InvalidJson => "the request body is not valid JSON",
            UnsupportedContentType => "the request body must be application/json",
            Unauthenticated => "missing or invalid credentials",
            InvalidCredentials => "wrong username or password",
            InsufficientBalance => "the balance does not cover this",
            PermissionDenied => "permission denied",
            NotFound => "not found",
            RouteNotFound => "no such route",
            CustomerNotFound => "customer not found",
            AgentNotFound => "agent not found",
            AccesskeyNotFound => "access key not found",
            BillingAccountNotFound => "billing account not found",
            CallNotFound => "call not found",
            WebhookNotFound => "webhook not found",
            FlowNotFound => "flow not found",
            ActiveflowNotFound => "activeflow not found",
            ConferenceNotFound => "conference not found",
            ConferencecallNotFound => "conference participant not found",
            NumberNotFound => "number not found",
            MessageNotFound => "message not found",
            MethodNotAllowed => "method not allowed on this route",
            AlreadyExists => "already exists",
            UsernameTaken => "the username is taken",
            LastAdmin => "a customer keeps at least one admin",
            CallStateInvalid => "not possible in the call's current status",
            BalanceTooLow => "the balance is lower than that",
            ConferenceStateInvalid => "not possible in the conference's current status",
            SandboxUnavailable => "the sandbox needs the simulated network",
            PayloadTooLarge => "the request body is too large",
            IdempotencyKeyReused => "the Idempotency-Key was used with a different request",
            RateLimitExceeded => "rate limit exceeded",
            Internal => "internal error",
            Unavailable => "temporarily unavailable, retry later",
        }
    }
}

/// An error on its way to the client.
pub struct ApiError {
    pub reason: Reason,
    message: Cow<'static, str>,
    /// For the log only.
    cause: Option<String>,
    location: &'static Location<'static>,
    retry_after: Option<u64>,
    allow: Option<String>,
}

impl ApiError {
    #[track_caller]
    pub fn new(reason: Reason) -> Self {
        ApiError {
            reason,
            message: Cow::Borrowed(reason.default_message()),
            cause: None,
            location: Location::caller(),
            retry_after: match reason.status() {
                Status::Unavailable => Some(1),
                _ => None,
            },
            allow: None,
        }
    }

    /// 400 INVALID_ARGUMENT with a message that says which field and why.
    #[track_caller]
    pub fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(Reason::InvalidArgument).message(message)
    }

    /// 500 with a cause for the log.
    #[track_caller]
    pub fn internal(cause: impl fmt::Display) -> Self {
        ApiError::new(Reason::Internal).cause(cause)
    }

    pub fn message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    pub fn cause(mut self, cause: impl fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn allow(mut self, methods: String) -> Self {
        self.allow = Some(methods);
        self
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.reason, self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, " ({cause})")?;
        }
        write!(f, " at {}", self.location)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    status: Status,
    reason: Reason,
    message: &'a str,
    request_id: Option<String>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.reason.status().http()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.reason.status();
        // Runs inside the request's scope, so the log line carries its request id.
        if status == Status::Internal || status == Status::Unavailable {
            log::error!("{self}");
        } else {
            log::debug!("{self}");
        }
        let body = Envelope {
            error: Body { status, reason: self.reason, message: &self.message, request_id: request_id::current() },
        };
        let mut response = HttpResponse::build(status.http());
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if let Some(allow) = &self.allow
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            response.insert_header((header::ALLOW, value));
        }
        response.json(body)
    }
}

impl From<DbError> for ApiError {
    #[track_caller]
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => ApiError::new(Reason::NotFound),
            DbError::Conflict(_) => ApiError::new(Reason::AlreadyExists).cause(e),
            DbError::Transient(_) | DbError::Unavailable(_) => ApiError::new(Reason::Unavailable).cause(e),
            DbError::Other(_) => ApiError::internal(e),
        }
    }
}

/// Maps a query's `NotFound` onto the resource's own reason.
pub trait OrNotFound<T> {
    fn or_not_found(self, reason: Reason) -> Result<T, ApiError>;
}

impl<T> OrNotFound<T> for Result<T, DbError> {
    #[track_caller]
    fn or_not_found(self, reason: Reason) -> Result<T, ApiError> {
        match self {
            Ok(v) => Ok(v),
            Err(DbError::NotFound) => Err(ApiError::new(reason)),
            Err(e) => Err(ApiError::from(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn the_envelope_has_the_spec_shape() {
        let response = ApiError::new(Reason::RouteNotFound).error_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let bytes = response.into_body().try_into_bytes().map_err(|_| "streaming body").expect("bytes");
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"error": {
                "status": "NOT_FOUND", "reason": "ROUTE_NOT_FOUND",
                "message": "no such route", "request_id": null
            }})
        );
    }

    #[test]
    fn causes_stay_out_of_the_body() {
        let response = ApiError::internal("SELECT * FROM secrets failed").error_response();
        let bytes = response.into_body().try_into_bytes().map_err(|_| "streaming body").expect("bytes");
        assert!(!String::from_utf8_lossy(&bytes).contains("SELECT"));
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let response = ApiError::from(DbError::Unavailable("down".into())).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}
