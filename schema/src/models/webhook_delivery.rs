//! Webhook deliveries and their attempt log.
//!
//! A delivery is one event on its way to one webhook: enqueued with the event (see the
//! `webhooks` durable subscriber), `pending` until it is `delivered` or `failed`. Each
//! attempt, and each change of state it causes, is one row of the log that
//! `GET /v1.0/webhooks/{id}/deliveries` shows.
//!
//! Per webhook, a resource's deliveries go out in event order: only the *head* of a
//! resource's queue (its oldest pending delivery) is ever due, so a delivery waiting for
//! its retry holds back later events of its resource and nothing else.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{CustomerId, DeliveryAttemptId, DeliveryId, EventId, WebhookId};
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::{webhook_attempts, webhook_deliveries};

crate::text_enum!(
    DeliveryStatus {
        /// Waiting for its first attempt or a retry.
        Pending = "pending",
        Delivered = "delivered",
        /// Given up: a final answer, the attempts or the age exhausted, or a refused target.
        Failed = "failed",
    }
);

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub customer_id: CustomerId,
    pub event_id: EventId,
    pub event_seq: i64,
    pub event_type: String,
    pub resource_id: String,
    /// The request body, byte for byte.
    pub body: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub tm_create: NaiveDateTime,
    pub tm_update: NaiveDateTime,
}

/// One line of the delivery log: an attempt and the state it left the delivery in.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = webhook_attempts)]
pub struct DeliveryAttempt {
    pub id: DeliveryAttemptId,
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: EventId,
    pub event_type: String,
    /// 1 for the first attempt (the `X-VoIPBIN-Delivery-Attempt` header sent).
    pub attempt: i32,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<i32>,
    /// Why there is no 2xx: timeout, connection error, refused target, …
    pub error: Option<String>,
    /// From sending the request to the response's head (or the error).
    pub latency_ms: Option<i64>,
    /// When the next attempt is due; `null` unless `status` is `pending`.
    #[serde(rename = "tm_next_retry", with = "crate::time::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<NaiveDateTime>,
    /// The delivery's status after this attempt.
    pub status: DeliveryStatus,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
}

impl DeliveryAttempt {
    fn cursor(&self) -> Cursor {
        Cursor { tm_create: self.tm_create, id: self.id.to_string() }
    }
}

pub fn insert(conn: &mut DbConn, delivery: &DeliveryRow) -> Result<(), DbError> {
    diesel::insert_into(webhook_deliveries::table).values(delivery).execute(conn)?;
    Ok(())
}

/// The row is the head of its resource's queue: no earlier pending delivery of the same
/// resource to the same webhook. A correlated subquery, in SQL all three backends share.
fn is_head() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql::<diesel::sql_types::Bool>(
        "NOT EXISTS (SELECT 1 FROM webhook_deliveries earlier \
         WHERE earlier.webhook_id = webhook_deliveries.webhook_id \
         AND earlier.resource_id = webhook_deliveries.resource_id \
         AND earlier.status = 'pending' \
         AND earlier.event_seq < webhook_deliveries.event_seq)",
    )
}

/// Heads of the webhook's resource queues that are due at `now`, oldest event first, at
/// most `limit`, leaving out those in `busy` (being sent).
pub fn due(
    conn: &mut DbConn,
    webhook_id: &WebhookId,
    now: NaiveDateTime,
    busy: &[DeliveryId],
    limit: i64,
) -> Result<Vec<DeliveryRow>, DbError> {
    let mut query = webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending))
        .filter(webhook_deliveries::next_attempt_at.le(now))
        .into_boxed();
    if !busy.is_empty() {
        query = query.filter(webhook_deliveries::id.ne_all(busy));
    }
    Ok(query
        .filter(is_head())
        // (webhook_id, event_seq) is unique: one delivery per event and webhook. In this
        // order the `webhook_deliveries_queue` index yields heads without a sort, so a
        // read costs its page, not the backlog.
        .order(webhook_deliveries::event_seq.asc())
        .limit(limit)
        .select(DeliveryRow::as_select())
        .load(conn)?)
}

/// When the next head not in `busy` falls due; `None` when nothing else is pending.
pub fn next_due(
    conn: &mut DbConn,
    webhook_id: &WebhookId,
    busy: &[DeliveryId],
) -> Result<Option<NaiveDateTime>, DbError> {
    let mut query = webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending))
        .into_boxed();
    if !busy.is_empty() {
        query = query.filter(webhook_deliveries::id.ne_all(busy));
    }
    Ok(query.filter(is_head()).select(diesel::dsl::min(webhook_deliveries::next_attempt_at)).first(conn)?)
}

/// Webhooks with pending deliveries (the dispatcher's lanes at start).
pub fn pending_webhooks(conn: &mut DbConn) -> Result<Vec<WebhookId>, DbError> {
    Ok(webhook_deliveries::table
        .filter(webhook_deliveries::status.eq(DeliveryStatus::Pending))
        .select(webhook_deliveries::webhook_id)
        .distinct()
        .load(conn)?)
}

/// Deliveries of a webhook in a status.
pub fn count(conn: &mut DbConn, webhook_id: &WebhookId, status: DeliveryStatus) -> Result<i64, DbError> {
    Ok(webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .filter(webhook_deliveries::status.eq(status))
        .count()
        .get_result(conn)?)
}

/// A webhook's deliveries, oldest event first (tests and diagnostics).
pub fn list_for_webhook(conn: &mut DbConn, webhook_id: &WebhookId) -> Result<Vec<DeliveryRow>, DbError> {
    Ok(webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(webhook_id))
        .order(webhook_deliveries::event_seq.asc())
        .select(DeliveryRow::as_select())
        .load(conn)?)
}

/// What an attempt (or the decision not to make one) did to a pending delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// The attempt's number; the delivery's `attempts` becomes this.
    pub attempt: i32,
    pub status: DeliveryStatus,
    /// Required when `status` is `pending`.
    pub next_attempt_at: Option<NaiveDateTime>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: Option<i64>,
}

/// Applies `record` to a pending delivery and logs it. False when the delivery is no
/// longer pending (its webhook was deleted meanwhile): nothing is written then.
pub fn record(conn: &mut DbConn, delivery: &DeliveryRow, record: &AttemptRecord) -> Result<bool, DbError> {
    let now = crate::time::now();
    let next_attempt_at = match record.status {
        DeliveryStatus::Pending => record.next_attempt_at,
        _ => None,
    };
    let touched = diesel::update(
        webhook_deliveries::table.find(&delivery.id).filter(webhook_deliveries::status.eq(DeliveryStatus::Pending)),
    )
    .set((
        webhook_deliveries::status.eq(record.status),
        webhook_deliveries::attempts.eq(record.attempt),
        webhook_deliveries::next_attempt_at.eq(next_attempt_at.unwrap_or(delivery.next_attempt_at)),
        webhook_deliveries::tm_update.eq(now),
    ))
    .execute(conn)?;
    if touched == 0 {
        return Ok(false);
    }
    let line = DeliveryAttempt {
        id: DeliveryAttemptId::new(),
        delivery_id: delivery.id.clone(),
        webhook_id: delivery.webhook_id.clone(),
        event_id: delivery.event_id.clone(),
        event_type: delivery.event_type.clone(),
        attempt: record.attempt,
        status_code: record.status_code,
        error: record.error.clone(),
        latency_ms: record.latency_ms,
        next_attempt_at,
        status: record.status,
        tm_create: now,
    };
    diesel::insert_into(webhook_attempts::table).values(&line).execute(conn)?;
    Ok(true)
}

/// The webhook's delivery log, newest first.
pub fn list_attempts(
    conn: &mut DbConn,
    webhook_id: &WebhookId,
    page: &PageRequest,
) -> Result<Page<DeliveryAttempt>, DbError> {
    let query = webhook_attempts::table.filter(webhook_attempts::webhook_id.eq(webhook_id)).into_boxed();
    let rows = crate::paginate!(query, webhook_attempts, page).select(DeliveryAttempt::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, DeliveryAttempt::cursor))
}
