//! Errors of the persistence layer.
//!
//! Query functions return [`DbError`]. The gateway maps it onto the client-visible
//! reasons (`NotFound` → the resource's 404, `Conflict` → 409, `Unavailable` → 503 with
//! `Retry-After`); the cause is only ever logged.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The row asked for does not exist (or is not visible to the caller).
    #[error("row not found")]
    NotFound,
    /// A unique constraint refused the write; the payload names the constraint or column.
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// A fault that may go away on its own: connection lost, lock timeout, pool
    /// exhausted. Retried inside [`crate::Db`] before it is reported.
    #[error("transient database fault: {0}")]
    Transient(String),
    /// A transient fault that outlived the retries: the caller answers 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, a schema mismatch, corrupt data.
    #[error("database error: {0}")]
    Other(String),
}

impl DbError {
    pub fn other(cause: impl fmt::Display) -> Self {
        DbError::Other(cause.to_string())
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, DbError::Transient(_))
    }
}

impl From<diesel::result::Error> for DbError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error as E};
        match e {
            E::NotFound => DbError::NotFound,
            E::DatabaseError(Kind::UniqueViolation, info) => {
                DbError::Conflict(info.constraint_name().unwrap_or(info.message()).to_owned())
            }
            E::DatabaseError(Kind::ClosedConnection | Kind::SerializationFailure | Kind::UnableToSendCommand, info) => {
                DbError::Transient(info.message().to_owned())
            }
            E::DatabaseError(_, info) if is_transient_message(info.message()) => {
                DbError::Transient(info.message().to_owned())
            }
            E::BrokenTransactionManager => DbError::Transient(e.to_string()),
            other => DbError::Other(other.to_string()),
        }
    }
}

impl From<r2d2::Error> for DbError {
    /// The pool only fails when it cannot hand out a connection in time: the server is
    /// down or every connection is busy. Both may pass.
    fn from(e: r2d2::Error) -> Self {
        DbError::Transient(e.to_string())
    }
}

/// Messages of faults the three backends report without a dedicated error kind
/// (compared in lower case: MySQL and MariaDB capitalise theirs differently).
fn is_transient_message(message: &str) -> bool {
    const TRANSIENT: &[&str] = &[
        "database is locked",           // SQLite: busy_timeout elapsed
        "database table is locked",     // SQLite
        "deadlock found",               // MySQL / MariaDB
        "lock wait timeout exceeded",   // MySQL / MariaDB
        "server has gone away",         // MySQL / MariaDB
        "lost connection",              // MySQL / MariaDB
        "can't connect to",             // MySQL / MariaDB
        "terminating connection",       // PostgreSQL: admin shutdown
        "could not serialize access",   // PostgreSQL
        "deadlock detected",            // PostgreSQL
        "server closed the connection", // PostgreSQL
        "no connection to the server",  // PostgreSQL
        "connection to server",         // PostgreSQL
        "ssl syscall error",            // PostgreSQL over TLS
        "connection refused",
        "connection reset",
        "broken pipe",
    ];
    let message = message.to_lowercase();
    TRANSIENT.iter().any(|m| message.contains(m))
}

#[cfg(test)]
mod tests {
    #[test]
    fn transient_messages_are_recognised_in_any_case() {
        assert!(super::is_transient_message("Server has gone away"));
        assert!(super::is_transient_message("Lost connection to server during query"));
        assert!(super::is_transient_message("database is locked"));
        assert!(!super::is_transient_message("UNIQUE constraint failed: agents.username"));
    }
}
