//! Each customer's secret for signing the requests of `webhook_send` flow actions, the
//! way webhook deliveries are signed (made on first use, rotated on request).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::CustomerId;
use crate::schema::flow_secrets;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = flow_secrets)]
pub struct FlowSecret {
    pub customer_id: CustomerId,
    /// 32 random bytes, hex.
    pub secret: String,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

pub fn get(conn: &mut DbConn, customer_id: &CustomerId) -> Result<Option<FlowSecret>, DbError> {
    Ok(flow_secrets::table.find(customer_id).select(FlowSecret::as_select()).first(conn).optional()?)
}

/// The customer's secret; `fresh` is stored first when there is none.
pub fn get_or_insert(conn: &mut DbConn, customer_id: &CustomerId, fresh: &str) -> Result<FlowSecret, DbError> {
    if let Some(secret) = get(conn, customer_id)? {
        return Ok(secret);
    }
    let now = crate::time::now();
    let secret =
        FlowSecret { customer_id: customer_id.clone(), secret: fresh.to_owned(), tm_create: now, tm_update: now };
    diesel::insert_into(flow_secrets::table).values(&secret).execute(conn)?;
    Ok(secret)
}

/// Replaces the customer's secret with `fresh`.
pub fn rotate(conn: &mut DbConn, customer_id: &CustomerId, fresh: &str) -> Result<FlowSecret, DbError> {
    let current = get_or_insert(conn, customer_id, fresh)?;
    if current.secret == fresh {
        return Ok(current);
    }
    let now = crate::time::now();
    diesel::update(flow_secrets::table.find(customer_id))
        .set((flow_secrets::secret.eq(fresh), flow_secrets::tm_update.eq(now)))
        .execute(conn)?;
    Ok(FlowSecret { secret: fresh.to_owned(), tm_update: now, ..current })
}
