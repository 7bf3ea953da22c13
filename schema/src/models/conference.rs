//! Conferences and their participants ("conferencecalls"). A live conference's rows
//! are written only by its conference actor.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{CallId, ConferenceId, ConferencecallId, CustomerId, FlowId};
use crate::models::call::MuteDirection;
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::{calls, conferencecalls, conferences};

crate::text_enum!(
    ConferenceType {
        /// Lives until it is deleted or its timeout passes.
        Conference = "conference",
        /// Ends as soon as fewer than two participants remain.
        Connect = "connect",
    }
);

crate::text_enum!(
    ConferenceStatus {
        /// Nobody has joined yet.
        Starting = "starting",
        Progressing = "progressing",
        /// Ending: its participants are leaving.
        Terminating = "terminating",
        Terminated = "terminated",
    }
);

impl ConferenceStatus {
    pub fn is_live(self) -> bool {
        matches!(self, ConferenceStatus::Starting | ConferenceStatus::Progressing)
    }

    pub const LIVE: [ConferenceStatus; 3] =
        [ConferenceStatus::Starting, ConferenceStatus::Progressing, ConferenceStatus::Terminating];
}

crate::text_enum!(
    ConferencecallStatus {
        /// Running the conference's pre-flow, or waiting for its call to be answered.
        Joining = "joining",
        Joined = "joined",
        Left = "left",
    }
);

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Identifiable, AsChangeset)]
#[diesel(table_name = conferences, treat_none_as_null = true)]
pub struct ConferenceRow {
    pub id: ConferenceId,
    pub customer_id: CustomerId,
    pub conference_type: ConferenceType,
    pub name: String,
    pub detail: String,
    pub status: ConferenceStatus,
    /// Seconds from creation; 0 for none.
    pub timeout: i64,
    pub pre_flow_id: Option<FlowId>,
    pub post_flow_id: Option<FlowId>,
    pub tm_create: NaiveDateTime,
    pub tm_update: NaiveDateTime,
    pub tm_end: Option<NaiveDateTime>,
    pub tm_delete: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Conference {
    pub id: ConferenceId,
    pub customer_id: CustomerId,
    #[serde(rename = "type")]
    pub kind: ConferenceType,
    pub name: String,
    pub detail: String,
    pub status: ConferenceStatus,
    pub timeout: i64,
    pub pre_flow_id: Option<FlowId>,
    pub post_flow_id: Option<FlowId>,
    /// Who is in it now (joining or joined).
    pub participants: Vec<Conferencecall>,
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

/// What a new conference is made of.
#[derive(Debug, Clone)]
pub struct NewConference {
    pub customer_id: CustomerId,
    pub kind: ConferenceType,
    pub name: String,
    pub detail: String,
    pub timeout: i64,
    pub pre_flow_id: Option<FlowId>,
    pub post_flow_id: Option<FlowId>,
}

impl ConferenceRow {
    pub fn new(new: NewConference) -> ConferenceRow {
        let now = crate::time::now();
        ConferenceRow {
            id: ConferenceId::new(),
            customer_id: new.customer_id,
            conference_type: new.kind,
            name: new.name,
            detail: new.detail,
            status: ConferenceStatus::Starting,
            timeout: new.timeout,
            pre_flow_id: new.pre_flow_id,
            post_flow_id: new.post_flow_id,
            tm_create: now,
            tm_update: now,
            tm_end: None,
            tm_delete: None,
        }
    }

    pub fn view(&self, participants: Vec<Conferencecall>) -> Conference {
        Conference {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            kind: self.conference_type,
            name: self.name.clone(),
            detail: self.detail.clone(),
            status: self.status,
            timeout: self.timeout,
            pre_flow_id: self.pre_flow_id.clone(),
            post_flow_id: self.post_flow_id.clone(),
            participants,
            tm_create: self.tm_create,
            tm_update: self.tm_update,
            tm_end: self.tm_end,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Identifiable, AsChangeset)]
#[diesel(table_name = conferencecalls, treat_none_as_null = true)]
pub struct ConferencecallRow {
    pub id: ConferencecallId,
    pub customer_id: CustomerId,
    pub conference_id: ConferenceId,
    pub call_id: CallId,
    pub status: ConferencecallStatus,
    pub tm_join: Option<NaiveDateTime>,
    pub tm_leave: Option<NaiveDateTime>,
    pub tm_create: NaiveDateTime,
    pub tm_update: NaiveDateTime,
}

/// A participant as the API shows it: hold and mute are its call's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Conferencecall {
    pub id: ConferencecallId,
    pub customer_id: CustomerId,
    pub conference_id: ConferenceId,
    pub call_id: CallId,
    pub status: ConferencecallStatus,
    pub hold: bool,
    pub mute_direction: Option<MuteDirection>,
    #[serde(with = "crate::time::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_join: Option<NaiveDateTime>,
    #[serde(with = "crate::time::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_leave: Option<NaiveDateTime>,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

impl ConferencecallRow {
    pub fn new(conference: &ConferenceRow, call_id: CallId) -> ConferencecallRow {
        let now = crate::time::now();
        ConferencecallRow {
            id: ConferencecallId::new(),
            customer_id: conference.customer_id.clone(),
            conference_id: conference.id.clone(),
            call_id,
            status: ConferencecallStatus::Joining,
            tm_join: None,
            tm_leave: None,
            tm_create: now,
            tm_update: now,
        }
    }

    pub fn view(&self, hold: bool, mute_direction: Option<MuteDirection>) -> Conferencecall {
        Conferencecall {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            conference_id: self.conference_id.clone(),
            call_id: self.call_id.clone(),
            status: self.status,
            hold,
            mute_direction,
            tm_join: self.tm_join,
            tm_leave: self.tm_leave,
            tm_create: self.tm_create,
            tm_update: self.tm_update,
        }
    }
}

pub fn insert(conn: &mut DbConn, row: &ConferenceRow) -> Result<(), DbError> {
    diesel::insert_into(conferences::table).values(row).execute(conn)?;
    Ok(())
}

pub fn save(conn: &mut DbConn, row: &ConferenceRow) -> Result<(), DbError> {
    let touched = diesel::update(conferences::table.find(&row.id)).set(row).execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

/// A conference of `customer_id` that has not been deleted.
pub fn get(conn: &mut DbConn, customer_id: &CustomerId, id: &ConferenceId) -> Result<ConferenceRow, DbError> {
    Ok(conferences::table
        .find(id)
        .filter(conferences::customer_id.eq(customer_id))
        .filter(conferences::tm_delete.is_null())
        .select(ConferenceRow::as_select())
        .first(conn)?)
}

pub fn get_any(conn: &mut DbConn, id: &ConferenceId) -> Result<ConferenceRow, DbError> {
    Ok(conferences::table.find(id).select(ConferenceRow::as_select()).first(conn)?)
}

pub fn list(conn: &mut DbConn, customer_id: &CustomerId, page: &PageRequest) -> Result<Page<ConferenceRow>, DbError> {
    let query = conferences::table
        .filter(conferences::customer_id.eq(customer_id))
        .filter(conferences::tm_delete.is_null())
        .into_boxed();
    let rows = crate::paginate!(query, conferences, page).select(ConferenceRow::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, |r: &ConferenceRow| Cursor { tm_create: r.tm_create, id: r.id.to_string() }))
}

/// Conferences not yet terminated, for recovery after a restart.
pub fn list_live(conn: &mut DbConn) -> Result<Vec<ConferenceRow>, DbError> {
    Ok(conferences::table
        .filter(conferences::status.eq_any(ConferenceStatus::LIVE))
        .order(conferences::tm_create.asc())
        .select(ConferenceRow::as_select())
        .load(conn)?)
}

/// Hides a terminated conference.
pub fn soft_delete(conn: &mut DbConn, id: &ConferenceId) -> Result<(), DbError> {
    diesel::update(conferences::table.find(id)).set(conferences::tm_delete.eq(crate::time::now())).execute(conn)?;
    Ok(())
}

pub fn insert_participant(conn: &mut DbConn, row: &ConferencecallRow) -> Result<(), DbError> {
    diesel::insert_into(conferencecalls::table).values(row).execute(conn)?;
    Ok(())
}

pub fn save_participant(conn: &mut DbConn, row: &ConferencecallRow) -> Result<(), DbError> {
    let touched = diesel::update(conferencecalls::table.find(&row.id)).set(row).execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

fn with_call_state(rows: Vec<(ConferencecallRow, bool, Option<MuteDirection>)>) -> Vec<Conferencecall> {
    rows.into_iter().map(|(row, hold, mute)| row.view(hold, mute)).collect()
}

/// One participant as the API shows it.
pub fn participant_view(conn: &mut DbConn, row: &ConferencecallRow) -> Result<Conferencecall, DbError> {
    let (hold, mute) = calls::table
        .find(&row.call_id)
        .select((calls::hold, calls::mute_direction))
        .first::<(bool, Option<MuteDirection>)>(conn)
        .optional()?
        .unwrap_or((false, None));
    Ok(row.view(hold, mute))
}

/// The participants of a conference that have not left, oldest first.
pub fn current_participants(conn: &mut DbConn, conference_id: &ConferenceId) -> Result<Vec<Conferencecall>, DbError> {
    let rows = conferencecalls::table
        .inner_join(calls::table.on(calls::id.eq(conferencecalls::call_id)))
        .filter(conferencecalls::conference_id.eq(conference_id))
        .filter(conferencecalls::status.ne(ConferencecallStatus::Left))
        .order((conferencecalls::tm_create.asc(), conferencecalls::id.asc()))
        .select((ConferencecallRow::as_select(), calls::hold, calls::mute_direction))
        .load(conn)?;
    Ok(with_call_state(rows))
}

/// The conference as the API shows it, with its current participants.
pub fn view(conn: &mut DbConn, row: &ConferenceRow) -> Result<Conference, DbError> {
    let participants = current_participants(conn, &row.id)?;
    Ok(row.view(participants))
}

pub fn get_participant(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    id: &ConferencecallId,
) -> Result<ConferencecallRow, DbError> {
    Ok(conferencecalls::table
        .find(id)
        .filter(conferencecalls::customer_id.eq(customer_id))
        .select(ConferencecallRow::as_select())
        .first(conn)?)
}

/// Participants (left ones too), newest first, optionally of one conference.
pub fn list_participants(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    conference_id: Option<&ConferenceId>,
    page: &PageRequest,
) -> Result<Page<Conferencecall>, DbError> {
    let mut query = conferencecalls::table
        .inner_join(calls::table.on(calls::id.eq(conferencecalls::call_id)))
        .filter(conferencecalls::customer_id.eq(customer_id))
        .into_boxed();
    if let Some(conference_id) = conference_id {
        query = query.filter(conferencecalls::conference_id.eq(conference_id));
    }
    let rows = crate::paginate!(query, conferencecalls, page)
        .select((ConferencecallRow::as_select(), calls::hold, calls::mute_direction))
        .load(conn)?;
    let rows = with_call_state(rows);
    Ok(Page::from_rows(rows, page, |p: &Conferencecall| Cursor { tm_create: p.tm_create, id: p.id.to_string() }))
}

/// Participants a conference still has (joining or joined), for its actor to start from.
pub fn active_participant_rows(
    conn: &mut DbConn,
    conference_id: &ConferenceId,
) -> Result<Vec<ConferencecallRow>, DbError> {
    Ok(conferencecalls::table
        .filter(conferencecalls::conference_id.eq(conference_id))
        .filter(conferencecalls::status.ne(ConferencecallStatus::Left))
        .order(conferencecalls::tm_create.asc())
        .select(ConferencecallRow::as_select())
        .load(conn)?)
}

/// The conference a call is in (joining or joined), if any.
pub fn conference_of_call(conn: &mut DbConn, call_id: &CallId) -> Result<Option<ConferenceId>, DbError> {
    Ok(conferencecalls::table
        .filter(conferencecalls::call_id.eq(call_id))
        .filter(conferencecalls::status.ne(ConferencecallStatus::Left))
        .select(conferencecalls::conference_id)
        .first(conn)
        .optional()?)
}
