//! Events: one row per change of a resource, inserted in the change's transaction (the
//! outbox). `seq` orders them as they were committed.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{CustomerId, EventId};
use crate::schema::events;

/// An event before it is written.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub customer_id: Option<CustomerId>,
    pub resource_id: String,
    /// The resource as GET returns it, as JSON.
    pub data: String,
}

impl NewEvent {
    pub fn new(
        event_type: &'static str,
        customer_id: Option<&CustomerId>,
        resource_id: impl ToString,
        data: &impl Serialize,
    ) -> Result<NewEvent, DbError> {
        Ok(NewEvent {
            event_type,
            customer_id: customer_id.cloned(),
            resource_id: resource_id.to_string(),
            data: serde_json::to_string(data).map_err(DbError::other)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct Event {
    pub seq: i64,
    pub id: EventId,
    pub customer_id: Option<CustomerId>,
    pub event_type: String,
    pub resource_id: String,
    pub data: String,
    pub tm_create: NaiveDateTime,
}

/// The event as webhooks and WebSocket clients receive it.
#[derive(Serialize)]
struct Wire<'a> {
    id: &'a EventId,
    event_type: &'a str,
    timestamp: String,
    customer_id: Option<&'a CustomerId>,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
}

impl Event {
    /// `{"id", "event_type", "timestamp", "customer_id", "data"}`; with `topic` for
    /// WebSocket pushes.
    pub fn to_json(&self, topic: Option<&str>) -> String {
        // `data` was produced by serde_json when the event was written.
        let null = RawValue::NULL;
        let parsed: Option<&RawValue> = serde_json::from_str(&self.data).ok();
        let wire = Wire {
            id: &self.id,
            event_type: &self.event_type,
            timestamp: crate::time::format(&self.tm_create),
            customer_id: self.customer_id.as_ref(),
            data: parsed.unwrap_or(null),
            topic,
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// The resource kind: the part of the event type before the dot (`call`, `agent`…).
    pub fn resource_type(&self) -> &str {
        self.event_type.split('.').next().unwrap_or_default()
    }
}

#[derive(Insertable)]
#[diesel(table_name = events)]
struct EventInsert<'a> {
    id: &'a EventId,
    customer_id: Option<&'a CustomerId>,
    event_type: &'a str,
    resource_id: &'a str,
    data: &'a str,
    tm_create: NaiveDateTime,
}

/// Inserts the event; used by [`crate::WriteCtx::emit`] so that the commit hook sees it.
pub(crate) fn insert(conn: &mut DbConn, new: NewEvent) -> Result<Event, DbError> {
    let id = EventId::new();
    let tm_create = crate::time::now();
    diesel::insert_into(events::table)
        .values(EventInsert {
            id: &id,
            customer_id: new.customer_id.as_ref(),
            event_type: new.event_type,
            resource_id: &new.resource_id,
            data: &new.data,
            tm_create,
        })
        .execute(conn)?;
    let seq = crate::db::last_insert_id(conn)?;
    Ok(Event {
        seq,
        id,
        customer_id: new.customer_id,
        event_type: new.event_type.to_owned(),
        resource_id: new.resource_id,
        data: new.data,
        tm_create,
    })
}

/// Events committed after `seq`, oldest first (replay for subscribers catching up).
pub fn list_after(conn: &mut DbConn, seq: i64, limit: i64) -> Result<Vec<Event>, DbError> {
    Ok(events::table
        .filter(events::seq.gt(seq))
        .order(events::seq.asc())
        .limit(limit)
        .select(Event::as_select())
        .load(conn)?)
}

/// The events of one resource, oldest first.
pub fn list_for_resource(conn: &mut DbConn, resource_id: &str) -> Result<Vec<Event>, DbError> {
    Ok(events::table
        .filter(events::resource_id.eq(resource_id))
        .order(events::seq.asc())
        .select(Event::as_select())
        .load(conn)?)
}

/// The newest sequence number, 0 when there are no events.
pub fn last_seq(conn: &mut DbConn) -> Result<i64, DbError> {
    Ok(events::table.select(diesel::dsl::max(events::seq)).first::<Option<i64>>(conn)?.unwrap_or(0))
}
