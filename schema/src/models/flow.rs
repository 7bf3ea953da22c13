//! Flows: saved lists of actions that calls run (see [`crate::models::action`]).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{CustomerId, FlowId};
use crate::models::action::{self, Action};
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::flows;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = flows)]
pub struct FlowRow {
    pub id: FlowId,
    pub customer_id: CustomerId,
    pub name: String,
    pub detail: String,
    /// JSON array of checked actions, ids included.
    pub actions: String,
    pub tm_create: NaiveDateTime,
    pub tm_update: NaiveDateTime,
    pub tm_delete: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Flow {
    pub id: FlowId,
    pub customer_id: CustomerId,
    pub name: String,
    pub detail: String,
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Action>,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

impl FlowRow {
    pub fn new(customer_id: CustomerId, name: String, detail: String, actions: &[Action]) -> FlowRow {
        let now = crate::time::now();
        FlowRow {
            id: FlowId::new(),
            customer_id,
            name,
            detail,
            actions: action::to_json(actions),
            tm_create: now,
            tm_update: now,
            tm_delete: None,
        }
    }

    /// The stored actions; they were checked when saved.
    pub fn actions(&self) -> Vec<Action> {
        action::parse_stored(&self.actions).unwrap_or_else(|e| {
            log::error!("flow {}: stored actions do not parse: {e}", self.id);
            Vec::new()
        })
    }

    pub fn view(&self) -> Flow {
        Flow {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            name: self.name.clone(),
            detail: self.detail.clone(),
            actions: self.actions(),
            tm_create: self.tm_create,
            tm_update: self.tm_update,
        }
    }
}

/// The fields an update may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = flows)]
pub struct FlowChanges {
    pub name: Option<String>,
    pub detail: Option<String>,
    pub actions: Option<String>,
}

pub fn insert(conn: &mut DbConn, flow: &FlowRow) -> Result<(), DbError> {
    diesel::insert_into(flows::table).values(flow).execute(conn)?;
    Ok(())
}

/// A flow of `customer_id` that has not been deleted.
pub fn get(conn: &mut DbConn, customer_id: &CustomerId, id: &FlowId) -> Result<FlowRow, DbError> {
    Ok(flows::table
        .find(id)
        .filter(flows::customer_id.eq(customer_id))
        .filter(flows::tm_delete.is_null())
        .select(FlowRow::as_select())
        .first(conn)?)
}

pub fn list(conn: &mut DbConn, customer_id: &CustomerId, page: &PageRequest) -> Result<Page<FlowRow>, DbError> {
    let query = flows::table.filter(flows::customer_id.eq(customer_id)).filter(flows::tm_delete.is_null()).into_boxed();
    let rows = crate::paginate!(query, flows, page).select(FlowRow::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, |f: &FlowRow| Cursor { tm_create: f.tm_create, id: f.id.to_string() }))
}

pub fn update(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    id: &FlowId,
    changes: &FlowChanges,
) -> Result<FlowRow, DbError> {
    let touched = diesel::update(
        flows::table.find(id).filter(flows::customer_id.eq(customer_id)).filter(flows::tm_delete.is_null()),
    )
    .set((changes, flows::tm_update.eq(crate::time::now())))
    .execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    get(conn, customer_id, id)
}

/// Hides a flow. Runs already going keep their copy of its actions.
pub fn soft_delete(conn: &mut DbConn, customer_id: &CustomerId, id: &FlowId) -> Result<FlowRow, DbError> {
    let flow = get(conn, customer_id, id)?;
    diesel::update(flows::table.find(id)).set(flows::tm_delete.eq(crate::time::now())).execute(conn)?;
    Ok(flow)
}
