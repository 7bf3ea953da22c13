//! Answers remembered for `Idempotency-Key`: the same key from the same customer within
//! 24 hours gets the first answer again.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::CustomerId;
use crate::schema::idempotency_keys;

/// How long a key is remembered.
pub const TTL: chrono::Duration = chrono::Duration::hours(24);

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct StoredAnswer {
    pub customer_id: CustomerId,
    pub idem_key: String,
    pub request_hash: String,
    pub status_code: i32,
    pub location: Option<String>,
    pub response: String,
    pub tm_create: NaiveDateTime,
}

/// The answer stored for the key, if it is younger than [`TTL`].
pub fn find(conn: &mut DbConn, customer_id: &CustomerId, key: &str) -> Result<Option<StoredAnswer>, DbError> {
    let oldest = crate::time::now() - TTL;
    Ok(idempotency_keys::table
        .find((customer_id, key))
        .filter(idempotency_keys::tm_create.gt(oldest))
        .select(StoredAnswer::as_select())
        .first(conn)
        .optional()?)
}

/// Stores an answer, replacing an expired one under the same key.
pub fn insert(conn: &mut DbConn, answer: &StoredAnswer) -> Result<(), DbError> {
    diesel::delete(idempotency_keys::table.find((&answer.customer_id, &answer.idem_key)))
        .filter(idempotency_keys::tm_create.le(crate::time::now() - TTL))
        .execute(conn)?;
    diesel::insert_into(idempotency_keys::table).values(answer).execute(conn)?;
    Ok(())
}

/// Forgets answers older than [`TTL`]; returns how many.
pub fn purge_expired(conn: &mut DbConn) -> Result<usize, DbError> {
    Ok(diesel::delete(idempotency_keys::table.filter(idempotency_keys::tm_create.le(crate::time::now() - TTL)))
        .execute(conn)?)
}
