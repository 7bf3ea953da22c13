//! Flow runs ("activeflows"): one per flow executed on a call. The row is written only
//! by the run's actor: when it starts, when it waits on the call and when it ends.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{ActiveflowId, CallId, CustomerId, FlowId};
use crate::models::action::{self, Action};
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::activeflows;

crate::text_enum!(
    ActiveflowStatus {
        Running = "running",
        Ended = "ended",
    }
);

crate::text_enum!(
    /// Why a run ended.
    EndReason {
        /// It ran past its last action.
        Finished = "finished",
        /// A `stop` action, or `POST /v1.0/activeflows/{id}/stop`.
        Stopped = "stopped",
        /// A `hangup` action.
        Hangup = "hangup",
        /// Its call ended.
        CallEnded = "call_ended",
        /// It executed the most actions a run may.
        ActionLimit = "action_limit",
        /// Another run took over the call (a conference join through the API).
        Replaced = "replaced",
        /// The process stopped while it ran.
        Interrupted = "interrupted",
    }
);

crate::text_enum!(
    ReferenceType {
        Call = "call",
    }
);

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Identifiable, AsChangeset)]
#[diesel(table_name = activeflows, treat_none_as_null = true)]
pub struct ActiveflowRow {
    pub id: ActiveflowId,
    pub customer_id: CustomerId,
    pub flow_id: Option<FlowId>,
    pub reference_type: ReferenceType,
    pub reference_id: CallId,
    pub status: ActiveflowStatus,
    pub end_reason: Option<EndReason>,
    /// JSON array: the flow's actions as the run started with them.
    pub actions: String,
    pub current_action_id: Option<String>,
    pub executed_actions: i64,
    /// JSON object of the run's variables.
    pub variables: String,
    pub tm_create: NaiveDateTime,
    pub tm_update: NaiveDateTime,
    pub tm_end: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Activeflow {
    pub id: ActiveflowId,
    pub customer_id: CustomerId,
    pub flow_id: Option<FlowId>,
    pub reference_type: ReferenceType,
    pub reference_id: CallId,
    pub status: ActiveflowStatus,
    pub end_reason: Option<EndReason>,
    pub current_action_id: Option<String>,
    /// Actions executed so far (a run stops at 1,000).
    pub executed_actions: i64,
    pub variables: BTreeMap<String, String>,
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Action>,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_end: Option<NaiveDateTime>,
}

impl ActiveflowRow {
    pub fn new(
        customer_id: CustomerId,
        call_id: CallId,
        flow_id: Option<FlowId>,
        actions: &[Action],
        variables: &BTreeMap<String, String>,
    ) -> ActiveflowRow {
        let now = crate::time::now();
        ActiveflowRow {
            id: ActiveflowId::new(),
            customer_id,
            flow_id,
            reference_type: ReferenceType::Call,
            reference_id: call_id,
            status: ActiveflowStatus::Running,
            end_reason: None,
            actions: action::to_json(actions),
            current_action_id: None,
            executed_actions: 0,
            variables: encode_variables(variables),
            tm_create: now,
            tm_update: now,
            tm_end: None,
        }
    }

    pub fn variables(&self) -> BTreeMap<String, String> {
        // Written only by this module from a map.
        serde_json::from_str(&self.variables).unwrap_or_default()
    }

    pub fn view(&self) -> Activeflow {
        Activeflow {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            flow_id: self.flow_id.clone(),
            reference_type: self.reference_type,
            reference_id: self.reference_id.clone(),
            status: self.status,
            end_reason: self.end_reason,
            current_action_id: self.current_action_id.clone(),
            executed_actions: self.executed_actions,
            variables: self.variables(),
            actions: action::parse_stored(&self.actions).unwrap_or_default(),
            tm_create: self.tm_create,
            tm_update: self.tm_update,
            tm_end: self.tm_end,
        }
    }
}

pub fn encode_variables(variables: &BTreeMap<String, String>) -> String {
    serde_json::to_string(variables).unwrap_or_else(|_| "{}".to_owned())
}

pub fn insert(conn: &mut DbConn, row: &ActiveflowRow) -> Result<(), DbError> {
    diesel::insert_into(activeflows::table).values(row).execute(conn)?;
    Ok(())
}

/// Writes every column of `row` (its run's copy is the truth).
pub fn save(conn: &mut DbConn, row: &ActiveflowRow) -> Result<(), DbError> {
    let touched = diesel::update(activeflows::table.find(&row.id)).set(row).execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

pub fn get(conn: &mut DbConn, customer_id: &CustomerId, id: &ActiveflowId) -> Result<ActiveflowRow, DbError> {
    Ok(activeflows::table
        .find(id)
        .filter(activeflows::customer_id.eq(customer_id))
        .select(ActiveflowRow::as_select())
        .first(conn)?)
}

#[derive(Debug, Clone, Default)]
pub struct ActiveflowFilter {
    pub status: Option<ActiveflowStatus>,
    pub reference_id: Option<CallId>,
}

pub fn list(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    filter: &ActiveflowFilter,
    page: &PageRequest,
) -> Result<Page<ActiveflowRow>, DbError> {
    let mut query = activeflows::table.filter(activeflows::customer_id.eq(customer_id)).into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(activeflows::status.eq(status));
    }
    if let Some(call) = &filter.reference_id {
        query = query.filter(activeflows::reference_id.eq(call));
    }
    let rows = crate::paginate!(query, activeflows, page).select(ActiveflowRow::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, |r: &ActiveflowRow| Cursor { tm_create: r.tm_create, id: r.id.to_string() }))
}

/// Runs not yet ended, for recovery after a restart.
pub fn list_running(conn: &mut DbConn) -> Result<Vec<ActiveflowRow>, DbError> {
    Ok(activeflows::table
        .filter(activeflows::status.eq(ActiveflowStatus::Running))
        .order(activeflows::tm_create.asc())
        .select(ActiveflowRow::as_select())
        .load(conn)?)
}
