//! Phone numbers: each belongs to one customer and routes incoming calls (and, later,
//! messages) to that customer's flows.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{CustomerId, FlowId, NumberId};
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::numbers;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = numbers)]
pub struct Number {
    pub id: NumberId,
    pub customer_id: CustomerId,
    /// E.164; unique across the installation.
    pub number: String,
    /// The flow an incoming call to the number runs.
    pub call_flow_id: Option<FlowId>,
    /// The flow an incoming message to the number runs.
    pub message_flow_id: Option<FlowId>,
    pub name: String,
    pub detail: String,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

/// The fields an update may change: `Some(None)` clears a flow.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = numbers)]
pub struct NumberChanges {
    pub call_flow_id: Option<Option<FlowId>>,
    pub message_flow_id: Option<Option<FlowId>>,
    pub name: Option<String>,
    pub detail: Option<String>,
}

pub fn insert(conn: &mut DbConn, number: &Number) -> Result<(), DbError> {
    diesel::insert_into(numbers::table).values(number).execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut DbConn, customer_id: &CustomerId, id: &NumberId) -> Result<Number, DbError> {
    Ok(numbers::table.find(id).filter(numbers::customer_id.eq(customer_id)).select(Number::as_select()).first(conn)?)
}

/// The number with this E.164 text, whoever owns it.
pub fn find_by_number(conn: &mut DbConn, number: &str) -> Result<Option<Number>, DbError> {
    Ok(numbers::table.filter(numbers::number.eq(number)).select(Number::as_select()).first(conn).optional()?)
}

pub fn list(conn: &mut DbConn, customer_id: &CustomerId, page: &PageRequest) -> Result<Page<Number>, DbError> {
    let query = numbers::table.filter(numbers::customer_id.eq(customer_id)).into_boxed();
    let rows = crate::paginate!(query, numbers, page).select(Number::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, |n: &Number| Cursor { tm_create: n.tm_create, id: n.id.to_string() }))
}

pub fn update(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    id: &NumberId,
    changes: &NumberChanges,
) -> Result<Number, DbError> {
    let touched = diesel::update(numbers::table.find(id).filter(numbers::customer_id.eq(customer_id)))
        .set((changes, numbers::tm_update.eq(crate::time::now())))
        .execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    get(conn, customer_id, id)
}

/// Releases a number: the row goes, so another customer may take the number.
pub fn delete(conn: &mut DbConn, customer_id: &CustomerId, id: &NumberId) -> Result<Number, DbError> {
    let number = get(conn, customer_id, id)?;
    diesel::delete(numbers::table.find(id)).execute(conn)?;
    Ok(number)
}
