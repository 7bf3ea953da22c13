//! Messages (SMS): one row per message, with a status per destination.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{CustomerId, MessageId};
use crate::models::address::Address;
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::messages;

crate::text_enum!(
    TargetStatus {
        /// Accepted, not yet handed to the carrier.
        Pending = "pending",
        Sent = "sent",
        Delivered = "delivered",
        Failed = "failed",
    }
);

impl TargetStatus {
    pub fn is_final(self) -> bool {
        matches!(self, TargetStatus::Delivered | TargetStatus::Failed)
    }
}

crate::text_enum!(
    MessageDirection {
        Outgoing = "outgoing",
        Incoming = "incoming",
    }
);

/// One destination of a message and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Target {
    pub destination: Address,
    pub status: TargetStatus,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Identifiable, AsChangeset)]
#[diesel(table_name = messages, treat_none_as_null = true)]
pub struct MessageRow {
    pub id: MessageId,
    pub customer_id: CustomerId,
    pub direction: MessageDirection,
    /// JSON of the source [`Address`].
    pub source: String,
    /// JSON array of [`Target`].
    pub targets: String,
    pub text: String,
    pub tm_create: NaiveDateTime,
    pub tm_update: NaiveDateTime,
    /// When every destination reached a final status.
    pub tm_finish: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub customer_id: CustomerId,
    /// Always `sms`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub direction: MessageDirection,
    pub source: Address,
    pub targets: Vec<Target>,
    pub text: String,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

impl MessageRow {
    pub fn new(customer_id: CustomerId, source: &Address, destinations: &[Address], text: String) -> MessageRow {
        let now = crate::time::now();
        let targets: Vec<Target> = destinations
            .iter()
            .map(|d| Target { destination: d.clone(), status: TargetStatus::Pending, tm_update: now })
            .collect();
        MessageRow {
            id: MessageId::new(),
            customer_id,
            direction: MessageDirection::Outgoing,
            source: serde_json::to_string(source).unwrap_or_default(),
            targets: encode_targets(&targets),
            text,
            tm_create: now,
            tm_update: now,
            tm_finish: None,
        }
    }

    pub fn targets(&self) -> Vec<Target> {
        // Written only by this module.
        serde_json::from_str(&self.targets).unwrap_or_default()
    }

    /// Replaces the targets, and notes when the last one reached a final status.
    pub fn set_targets(&mut self, targets: &[Target], now: NaiveDateTime) {
        self.targets = encode_targets(targets);
        self.tm_update = now;
        if self.tm_finish.is_none() && targets.iter().all(|t| t.status.is_final()) {
            self.tm_finish = Some(now);
        }
    }

    pub fn view(&self) -> Message {
        Message {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            kind: "sms",
            direction: self.direction,
            source: serde_json::from_str(&self.source)
                .unwrap_or_else(|_| Address::new(crate::models::address::AddressType::Tel, "")),
            targets: self.targets(),
            text: self.text.clone(),
            tm_create: self.tm_create,
            tm_update: self.tm_update,
        }
    }
}

fn encode_targets(targets: &[Target]) -> String {
    serde_json::to_string(targets).unwrap_or_else(|_| "[]".to_owned())
}

pub fn insert(conn: &mut DbConn, row: &MessageRow) -> Result<(), DbError> {
    diesel::insert_into(messages::table).values(row).execute(conn)?;
    Ok(())
}

pub fn save(conn: &mut DbConn, row: &MessageRow) -> Result<(), DbError> {
    let touched = diesel::update(messages::table.find(&row.id)).set(row).execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    Ok(())
}

pub fn get(conn: &mut DbConn, customer_id: &CustomerId, id: &MessageId) -> Result<MessageRow, DbError> {
    Ok(messages::table
        .find(id)
        .filter(messages::customer_id.eq(customer_id))
        .select(MessageRow::as_select())
        .first(conn)?)
}

pub fn get_any(conn: &mut DbConn, id: &MessageId) -> Result<MessageRow, DbError> {
    Ok(messages::table.find(id).select(MessageRow::as_select()).first(conn)?)
}

pub fn list(conn: &mut DbConn, customer_id: &CustomerId, page: &PageRequest) -> Result<Page<MessageRow>, DbError> {
    let query = messages::table.filter(messages::customer_id.eq(customer_id)).into_boxed();
    let rows = crate::paginate!(query, messages, page).select(MessageRow::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, |m: &MessageRow| Cursor { tm_create: m.tm_create, id: m.id.to_string() }))
}

/// Messages with destinations still on their way, for the carrier after a restart.
pub fn list_unfinished(conn: &mut DbConn) -> Result<Vec<MessageRow>, DbError> {
    Ok(messages::table
        .filter(messages::tm_finish.is_null())
        .order(messages::tm_create.asc())
        .select(MessageRow::as_select())
        .load(conn)?)
}
