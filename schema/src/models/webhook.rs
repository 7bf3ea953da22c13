//! Webhooks: a customer's endpoints for signed event deliveries, and the event-type
//! patterns that choose which events each one receives.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{CustomerId, WebhookId};
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::{webhook_attempts, webhook_deliveries, webhooks};

crate::text_enum!(
    WebhookMethod {
        Post = "POST",
        Put = "PUT",
    }
);

/// Every event type of SPEC §5. Patterns are checked against it, so that a typo is a
/// 400 at creation rather than a webhook that silently never fires.
pub const EVENT_TYPES: &[&str] = &[
    "call.created",
    "call.ringing",
    "call.answered",
    "call.updated",
    "call.ended",
    "conference.created",
    "conference.updated",
    "conference.ended",
    "conference.joined",
    "conference.left",
    "activeflow.created",
    "activeflow.updated",
    "activeflow.ended",
    "sms.created",
    "sms.sent",
    "sms.delivered",
    "sms.failed",
    "agent.created",
    "agent.updated",
    "agent.deleted",
    "agent.status_updated",
    "billing.created",
    "billing.updated",
    "billing.balance_low",
];

/// Whether `pattern` selects `event_type`: the exact type, `<resource>.*`, or `*`.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(resource) => event_type.strip_prefix(resource).is_some_and(|rest| rest.starts_with('.')),
        None => pattern == event_type,
    }
}

/// Why `pattern` is not one of `<resource>.<verb>`, `<resource>.*` or `*` of a known
/// event type.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let Some((resource, verb)) = pattern.split_once('.') else {
        return Err(format!("{pattern:?} is not `<resource>.<verb>`, `<resource>.*` or `*`"));
    };
    let known_resource = EVENT_TYPES.iter().any(|t| t.split_once('.').is_some_and(|(r, _)| r == resource));
    if !known_resource {
        let mut resources: Vec<&str> = EVENT_TYPES.iter().filter_map(|t| t.split_once('.').map(|(r, _)| r)).collect();
        resources.dedup();
        return Err(format!("{pattern:?}: no events of {resource:?}; resources are {}", resources.join(", ")));
    }
    if verb != "*" && !EVENT_TYPES.contains(&pattern) {
        return Err(format!("{pattern:?} is not an event type; see SPEC §5 (or use `{resource}.*`)"));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhooks)]
pub struct WebhookRow {
    pub id: WebhookId,
    pub customer_id: CustomerId,
    pub name: String,
    pub detail: String,
    pub uri: String,
    pub method: WebhookMethod,
    /// JSON array of patterns.
    pub event_types: String,
    pub secret: String,
    /// Only events after this sequence number are delivered.
    pub since_seq: i64,
    pub tm_create: NaiveDateTime,
    pub tm_update: NaiveDateTime,
}

/// A webhook as the API shows it: never the secret (that is in the answers to creation
/// and rotation only).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: WebhookId,
    pub customer_id: CustomerId,
    pub name: String,
    pub detail: String,
    pub uri: String,
    pub method: WebhookMethod,
    pub event_types: Vec<String>,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

impl WebhookRow {
    /// The event-type patterns (written only by [`encode_patterns`]).
    pub fn patterns(&self) -> Vec<String> {
        serde_json::from_str(&self.event_types).unwrap_or_default()
    }

    /// Whether this webhook takes `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.patterns().iter().any(|p| matches(p, event_type))
    }

    pub fn view(&self) -> Webhook {
        Webhook {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            name: self.name.clone(),
            detail: self.detail.clone(),
            uri: self.uri.clone(),
            method: self.method,
            event_types: self.patterns(),
            tm_create: self.tm_create,
            tm_update: self.tm_update,
        }
    }

    fn cursor(&self) -> Cursor {
        Cursor { tm_create: self.tm_create, id: self.id.to_string() }
    }
}

pub fn encode_patterns(patterns: &[String]) -> String {
    serde_json::to_string(patterns).unwrap_or_else(|_| "[]".to_owned())
}

/// The fields an update may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = webhooks)]
pub struct WebhookChanges {
    pub name: Option<String>,
    pub detail: Option<String>,
    pub uri: Option<String>,
    pub method: Option<WebhookMethod>,
    pub event_types: Option<String>,
    pub secret: Option<String>,
}

pub fn insert(conn: &mut DbConn, webhook: &WebhookRow) -> Result<(), DbError> {
    diesel::insert_into(webhooks::table).values(webhook).execute(conn)?;
    Ok(())
}

/// A webhook of `customer_id`; another customer's is not found.
pub fn get(conn: &mut DbConn, customer_id: &CustomerId, id: &WebhookId) -> Result<WebhookRow, DbError> {
    Ok(webhooks::table
        .find(id)
        .filter(webhooks::customer_id.eq(customer_id))
        .select(WebhookRow::as_select())
        .first(conn)?)
}

/// Any webhook by id (the dispatcher), `None` once deleted.
pub fn find(conn: &mut DbConn, id: &WebhookId) -> Result<Option<WebhookRow>, DbError> {
    Ok(webhooks::table.find(id).select(WebhookRow::as_select()).first(conn).optional()?)
}

pub fn list(conn: &mut DbConn, customer_id: &CustomerId, page: &PageRequest) -> Result<Page<WebhookRow>, DbError> {
    let query = webhooks::table.filter(webhooks::customer_id.eq(customer_id)).into_boxed();
    let rows = crate::paginate!(query, webhooks, page).select(WebhookRow::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, WebhookRow::cursor))
}

/// The webhooks of these customers (the enqueue of a batch of events).
pub fn for_customers(conn: &mut DbConn, customers: &[CustomerId]) -> Result<Vec<WebhookRow>, DbError> {
    Ok(webhooks::table.filter(webhooks::customer_id.eq_any(customers)).select(WebhookRow::as_select()).load(conn)?)
}

pub fn update(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    id: &WebhookId,
    changes: &WebhookChanges,
) -> Result<WebhookRow, DbError> {
    let touched = diesel::update(webhooks::table.find(id).filter(webhooks::customer_id.eq(customer_id)))
        .set((changes, webhooks::tm_update.eq(crate::time::now())))
        .execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    get(conn, customer_id, id)
}

/// Deletes the webhook with its pending deliveries and its delivery log.
pub fn delete(conn: &mut DbConn, customer_id: &CustomerId, id: &WebhookId) -> Result<WebhookRow, DbError> {
    let webhook = get(conn, customer_id, id)?;
    diesel::delete(webhook_attempts::table.filter(webhook_attempts::webhook_id.eq(id))).execute(conn)?;
    diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(id))).execute(conn)?;
    diesel::delete(webhooks::table.find(id)).execute(conn)?;
    Ok(webhook)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_types_resources_and_everything() {
        assert!(matches("call.created", "call.created"));
        assert!(!matches("call.created", "call.ended"));
        assert!(matches("call.*", "call.ended"));
        assert!(!matches("call.*", "callx.ended"));
        assert!(!matches("call.*", "conference.created"));
        assert!(matches("*", "agent.status_updated"));
    }

    #[test]
    fn only_known_patterns_are_accepted() {
        for ok in ["*", "call.*", "call.created", "agent.status_updated", "billing.balance_low"] {
            assert_eq!(check_pattern(ok), Ok(()), "{ok}");
        }
        for bad in ["", "call", "call.", "call.nope", "nope.*", "*.created", "webhook.*", "call.created.x"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
