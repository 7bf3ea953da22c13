//! The `webhooks` durable subscriber: turns committed events into pending deliveries.

use std::collections::HashSet;

use actix::Context;
use callplane_schema::ids::{CustomerId, DeliveryId, WebhookId};
use callplane_schema::models::event::Event;
use callplane_schema::models::webhook;
use callplane_schema::models::webhook_delivery::{self, DeliveryRow, DeliveryStatus};
use callplane_schema::{DbError, WriteCtx};

use super::dispatcher::Waker;
use crate::bus::{Durable, DurableSubscriber};

pub struct WebhookEnqueue {
    pub waker: Waker,
}

impl DurableSubscriber for WebhookEnqueue {
    const NAME: &'static str = "webhooks";
    type Config = ();
    /// The webhooks that got new deliveries.
    type Outcome = HashSet<WebhookId>;

    /// Webhooks belong to customers; events of no customer go nowhere.
    fn wants(event: &Event) -> bool {
        event.customer_id.is_some()
    }

    /// One pending delivery per (event, matching webhook of its customer, made before
    /// it), with the body exactly as it will be signed and sent.
    fn write(_: &(), tx: &mut WriteCtx<'_>, events: &[&Event]) -> Result<HashSet<WebhookId>, DbError> {
        let customers: Vec<CustomerId> =
            events.iter().filter_map(|e| e.customer_id.clone()).collect::<HashSet<_>>().into_iter().collect();
        let webhooks: Vec<_> =
            webhook::for_customers(tx.conn, &customers)?.into_iter().map(|w| (w.patterns(), w)).collect();
        let mut woken = HashSet::new();
        if webhooks.is_empty() {
            return Ok(woken);
        }
        let now = callplane_schema::time::now();
        for event in events {
            let mut body = None;
            for (patterns, hook) in &webhooks {
                if event.customer_id.as_ref() != Some(&hook.customer_id)
                    || event.seq <= hook.since_seq
                    || !patterns.iter().any(|p| webhook::matches(p, &event.event_type))
                {
                    continue;
                }
                let body = body.get_or_insert_with(|| event.to_json(None)).clone();
                webhook_delivery::insert(
                    tx.conn,
                    &DeliveryRow {
                        id: DeliveryId::new(),
                        webhook_id: hook.id.clone(),
                        customer_id: hook.customer_id.clone(),
                        event_id: event.id.clone(),
                        event_seq: event.seq,
                        event_type: event.event_type.clone(),
                        resource_id: event.resource_id.clone(),
                        body,
                        status: DeliveryStatus::Pending,
                        attempts: 0,
                        next_attempt_at: now,
                        tm_create: now,
                        tm_update: now,
                    },
                )?;
                woken.insert(hook.id.clone());
            }
        }
        Ok(woken)
    }

    fn committed(&mut self, woken: HashSet<WebhookId>, _: &mut Context<Durable<Self>>) {
        if !woken.is_empty() {
            self.waker.wake(woken);
        }
    }
}
