//! Calls. A live call's row is written only by its call actor; these are the row, the
//! API shape, the state machine and the queries.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{ActiveflowId, AgentId, CallId, CustomerId, FlowId};
use crate::models::address::{Address, AddressType};
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::calls;

crate::text_enum!(
    CallStatus {
        Initiating = "initiating",
        Ringing = "ringing",
        Active = "active",
        Terminating = "terminating",
        Ended = "ended",
    }
);

impl CallStatus {
    /// SPEC §4: forward only.
    pub fn can_become(self, next: CallStatus) -> bool {
        use CallStatus::*;
        matches!(
            (self, next),
            (Initiating, Ringing | Active | Terminating | Ended)
                | (Ringing, Active | Terminating | Ended)
                | (Active, Terminating | Ended)
                | (Terminating, Ended)
        )
    }

    /// Not yet ended: the call has (or should have) an actor.
    pub fn is_live(self) -> bool {
        self != CallStatus::Ended
    }

    pub const LIVE: [CallStatus; 4] =
        [CallStatus::Initiating, CallStatus::Ringing, CallStatus::Active, CallStatus::Terminating];
}

crate::text_enum!(
    Direction {
        Outgoing = "outgoing",
        Incoming = "incoming",
    }
);

crate::text_enum!(
    HangupBy {
        Local = "local",
        Remote = "remote",
    }
);

crate::text_enum!(
    HangupReason {
        Normal = "normal",
        Busy = "busy",
        Noanswer = "noanswer",
        Failed = "failed",
        Cancel = "cancel",
        Timeout = "timeout",
        InsufficientBalance = "insufficient_balance",
    }
);

crate::text_enum!(
    MuteDirection {
        In = "in",
        Out = "out",
        Both = "both",
    }
);

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Identifiable, AsChangeset)]
#[diesel(table_name = calls, treat_none_as_null = true)]
pub struct CallRow {
    pub id: CallId,
    pub customer_id: CustomerId,
    pub flow_id: Option<FlowId>,
    pub activeflow_id: Option<ActiveflowId>,
    pub direction: Direction,
    pub source_type: AddressType,
    pub source_target: String,
    pub source_target_name: String,
    pub source_name: String,
    pub destination_type: AddressType,
    pub destination_target: String,
    pub destination_target_name: String,
    pub destination_name: String,
    pub status: CallStatus,
    pub hangup_by: Option<HangupBy>,
    pub hangup_reason: Option<HangupReason>,
    pub hold: bool,
    pub mute_direction: Option<MuteDirection>,
    /// JSON array: the inline flow given at creation.
    pub actions: String,
    /// JSON object: variables given at creation.
    pub variables: String,
    pub tm_create: NaiveDateTime,
    pub tm_ringing: Option<NaiveDateTime>,
    pub tm_answer: Option<NaiveDateTime>,
    pub tm_end: Option<NaiveDateTime>,
    pub tm_update: NaiveDateTime,
    pub tm_delete: Option<NaiveDateTime>,
    /// The agent whose credential placed the call, if any.
    pub owner_id: Option<AgentId>,
    /// Micro-units of the customer's balance this call holds until it ends: its first
    /// unit, reserved when it was created.
    pub reserved: i64,
}

/// A call as the API shows it. Moments that have not happened are `null`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Call {
    pub id: CallId,
    pub customer_id: CustomerId,
    pub flow_id: Option<FlowId>,
    pub activeflow_id: Option<ActiveflowId>,
    pub direction: Direction,
    /// The agent whose credential placed the call, if any.
    pub owner_id: Option<AgentId>,
    pub source: Address,
    pub destination: Address,
    pub status: CallStatus,
    pub hangup_by: Option<HangupBy>,
    pub hangup_reason: Option<HangupReason>,
    pub hold: bool,
    pub mute_direction: Option<MuteDirection>,
    /// Whole seconds from answer to end; 0 if never answered.
    pub duration: i64,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_ringing: Option<NaiveDateTime>,
    #[serde(with = "crate::time::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_answer: Option<NaiveDateTime>,
    #[serde(with = "crate::time::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_end: Option<NaiveDateTime>,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

impl Call {
    /// The agents this call belongs to: its owner and its agent addresses, once each.
    pub fn agents(&self) -> Vec<AgentId> {
        let mut agents: Vec<AgentId> = [&self.source, &self.destination]
            .into_iter()
            .filter(|a| a.kind == AddressType::Agent)
            .filter_map(|a| a.target.parse().ok())
            .chain(self.owner_id.clone())
            .collect();
        agents.sort();
        agents.dedup();
        agents
    }
}

/// Event data of a call: the call plus `call_id`, as the published clients read it.
#[derive(Serialize)]
pub struct CallEventData<'a> {
    #[serde(flatten)]
    pub call: &'a Call,
    pub call_id: &'a CallId,
}

/// What a new call is made of.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub customer_id: CustomerId,
    pub direction: Direction,
    pub source: Address,
    pub destination: Address,
    pub flow_id: Option<FlowId>,
    pub actions: String,
    pub variables: String,
    pub owner_id: Option<AgentId>,
}

impl CallRow {
    pub fn new(new: NewCall) -> CallRow {
        let now = crate::time::now();
        CallRow {
            id: CallId::new(),
            customer_id: new.customer_id,
            flow_id: new.flow_id,
            activeflow_id: None,
            direction: new.direction,
            source_type: new.source.kind,
            source_target: new.source.target,
            source_target_name: new.source.target_name,
            source_name: new.source.name,
            destination_type: new.destination.kind,
            destination_target: new.destination.target,
            destination_target_name: new.destination.target_name,
            destination_name: new.destination.name,
            status: CallStatus::Initiating,
            hangup_by: None,
            hangup_reason: None,
            hold: false,
            mute_direction: None,
            actions: new.actions,
            variables: new.variables,
            tm_create: now,
            tm_ringing: None,
            tm_answer: None,
            tm_end: None,
            tm_update: now,
            tm_delete: None,
            owner_id: new.owner_id,
            reserved: 0,
        }
    }

    pub fn source(&self) -> Address {
        Address {
            kind: self.source_type,
            target: self.source_target.clone(),
            target_name: self.source_target_name.clone(),
            name: self.source_name.clone(),
        }
    }

    pub fn destination(&self) -> Address {
        Address {
            kind: self.destination_type,
            target: self.destination_target.clone(),
            target_name: self.destination_target_name.clone(),
            name: self.destination_name.clone(),
        }
    }

    pub fn duration(&self) -> i64 {
        match (self.tm_answer, self.tm_end) {
            (Some(answer), Some(end)) => (end - answer).num_seconds().max(0),
            _ => 0,
        }
    }

    pub fn view(&self) -> Call {
        Call {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            flow_id: self.flow_id.clone(),
            activeflow_id: self.activeflow_id.clone(),
            direction: self.direction,
            owner_id: self.owner_id.clone(),
            source: self.source(),
            destination: self.destination(),
            status: self.status,
            hangup_by: self.hangup_by,
            hangup_reason: self.hangup_reason,
            hold: self.hold,
            mute_direction: self.mute_direction,
            duration: self.duration(),
            tm_create: self.tm_create,
            tm_ringing: self.tm_ringing,
            tm_answer: self.tm_answer,
            tm_end: self.tm_end,
            tm_update: self.tm_update,
        }
    }

    /// The agents this call belongs to: its owner and its agent addresses.
    pub fn agents(&self) -> Vec<AgentId> {
        self.view().agents()
    }

    fn cursor(&self) -> Cursor {
        Cursor { tm_create: self.tm_create, id: self.id.to_string() }
    }
}

pub fn insert(conn: &mut DbConn, call: &CallRow) -> Result<(), DbError> {
    diesel::insert_into(calls::table).values(call).execute(conn)?;
    Ok(())
}

/// Writes every column of `call` (its actor's copy is the truth).
pub fn save(conn: &mut DbConn, call: &CallRow) -> Result<(), DbError> {
    let touched = diesel::update(calls::table.find(&call.id)).set(call).execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// A call of `customer_id` that has not been deleted.
pub fn get(conn: &mut DbConn, customer_id: &CustomerId, id: &CallId) -> Result<CallRow, DbError> {
    Ok(calls::table
        .find(id)
        .filter(calls::customer_id.eq(customer_id))
        .filter(calls::tm_delete.is_null())
        .select(CallRow::as_select())
        .first(conn)?)
}

/// Any call by id (its owner checks the customer).
pub fn get_any(conn: &mut DbConn, id: &CallId) -> Result<CallRow, DbError> {
    Ok(calls::table.find(id).filter(calls::tm_delete.is_null()).select(CallRow::as_select()).first(conn)?)
}

/// List filters.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub status: Option<CallStatus>,
    pub direction: Option<Direction>,
    /// Only calls this agent owns or whose source or destination it is.
    pub agent: Option<AgentId>,
}

pub fn list(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    filter: &CallFilter,
    page: &PageRequest,
) -> Result<Page<CallRow>, DbError> {
    let mut query =
        calls::table.filter(calls::customer_id.eq(customer_id)).filter(calls::tm_delete.is_null()).into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(calls::status.eq(status));
    }
    if let Some(direction) = filter.direction {
        query = query.filter(calls::direction.eq(direction));
    }
    if let Some(agent) = &filter.agent {
        query = query.filter(
            calls::source_type
                .eq(AddressType::Agent)
                .and(calls::source_target.eq(agent.as_str()))
                .or(calls::destination_type.eq(AddressType::Agent).and(calls::destination_target.eq(agent.as_str())))
                .or(calls::owner_id.eq(agent)),
        );
    }
    let rows = crate::paginate!(query, calls, page).select(CallRow::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, CallRow::cursor))
}

/// Calls not yet ended, for recovery after a restart.
pub fn list_live(conn: &mut DbConn) -> Result<Vec<CallRow>, DbError> {
    Ok(calls::table
        .filter(calls::status.eq_any(CallStatus::LIVE))
        .order(calls::tm_create.asc())
        .select(CallRow::as_select())
        .load(conn)?)
}

/// Hides an ended call.
pub fn soft_delete(conn: &mut DbConn, id: &CallId) -> Result<(), DbError> {
    diesel::update(calls::table.find(id)).set(calls::tm_delete.eq(crate::time::now())).execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CallStatus::*;

    #[test]
    fn the_state_machine_goes_forward_only() {
        let all = [Initiating, Ringing, Active, Terminating, Ended];
        let allowed = [
            (Initiating, Ringing),
            (Initiating, Active),
            (Initiating, Terminating),
            (Initiating, Ended),
            (Ringing, Active),
            (Ringing, Terminating),
            (Ringing, Ended),
            (Active, Terminating),
            (Active, Ended),
            (Terminating, Ended),
        ];
        for from in all {
            for to in all {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from} → {to}");
            }
        }
    }
}
