//! How far each durable event subscriber has read the outbox. A subscriber advances its
//! cursor in the same transaction as the effects of the events it read, so that each
//! event takes effect once however often it is delivered.

use diesel::prelude::*;

use crate::db::DbConn;
use crate::error::DbError;
use crate::schema::subscriber_cursors;

/// The last sequence number `name` has taken; 0 before its first.
pub fn get(conn: &mut DbConn, name: &str) -> Result<i64, DbError> {
    Ok(subscriber_cursors::table.find(name).select(subscriber_cursors::seq).first(conn).optional()?.unwrap_or(0))
}

pub fn set(conn: &mut DbConn, name: &str, seq: i64) -> Result<(), DbError> {
    let now = crate::time::now();
    let updated = diesel::update(subscriber_cursors::table.find(name))
        .set((subscriber_cursors::seq.eq(seq), subscriber_cursors::tm_update.eq(now)))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(subscriber_cursors::table)
            .values((
                subscriber_cursors::name.eq(name),
                subscriber_cursors::seq.eq(seq),
                subscriber_cursors::tm_update.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}
