//! Webhooks: signed HTTP deliveries of events to customers' endpoints.
//!
//! * [`enqueue`]: the `webhooks` durable subscriber of the event bus. For each event it
//!   writes one pending delivery per matching webhook, in the transaction that advances
//!   its cursor: nothing acknowledged is lost, nothing is enqueued twice.
//! * [`dispatcher`]: sends the pending deliveries, one lane per webhook, reading them
//!   from the database page by page; retries, the circuit breaker and the attempt log.
//! * [`guard`]: which addresses a webhook may reach.
//! * [`signature`]: the signing headers (also used by the `webhook_send` flow action).

pub mod dispatcher;
pub mod enqueue;
pub mod guard;
pub mod policy;
pub mod send;
pub mod signature;

use std::time::Duration;

use actix::prelude::*;
use callplane_schema::Db;

pub use dispatcher::{Shutdown, WebhookDispatcher};

use crate::bus::{Durable, EventBus};

/// Delivery settings, from `CALLPLANE_WEBHOOK_*`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Let webhooks reach loopback, private and other non-public addresses.
    pub allow_private: bool,
    /// Connecting, and then answering, each within this.
    pub timeout: Duration,
    /// Attempts of one delivery at most.
    pub max_attempts: u32,
    /// No retry is scheduled past this age of a delivery.
    pub max_age: Duration,
    /// The backoff between attempts grows to this at most.
    pub max_backoff: Duration,
    /// Consecutive failures of an endpoint that open its circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker waits before it lets one probe through.
    pub breaker_cooldown: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_private: false,
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            max_age: Duration::from_secs(24 * 3600),
            max_backoff: Duration::from_secs(600),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(60),
        }
    }
}

/// Starts the dispatcher (supervised) and the durable subscriber that feeds it.
pub fn start(
    db: Db,
    bus: Addr<EventBus>,
    settings: WebhookSettings,
    registry: &prometheus::Registry,
) -> Result<Addr<WebhookDispatcher>, prometheus::Error> {
    let metrics = dispatcher::WebhookMetrics::new(registry)?;
    let wakes = dispatcher::Wakes::default();
    let dispatcher_db = db.clone();
    let dispatcher_wakes = wakes.clone();
    let dispatcher =
        Supervisor::start(move |_| WebhookDispatcher::new(dispatcher_db, settings, metrics, dispatcher_wakes));
    let waker = wakes.waker(dispatcher.clone());
    Durable::start(enqueue::WebhookEnqueue { waker }, (), db, bus);
    Ok(dispatcher)
}
