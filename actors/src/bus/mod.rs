//! The event bus: takes committed events from the database writer, in commit order, and
//! hands them to its subscribers.
//!
//! For every batch it first deletes the changed resources' cache keys, then offers the
//! batch to each subscriber with a bounded send. Nothing here waits for a subscriber:
//!
//! * A **live** subscriber (the WebSocket hub) whose mailbox is full misses that batch;
//!   the miss is counted.
//! * A **durable** subscriber (webhooks, billing, agent statistics) whose mailbox is
//!   full is marked lagging and gets no more batches. When its mailbox has room it is
//!   sent [`CatchUp`]: it reads the outbox (the `events` table) from its own cursor and
//!   then asks to [`Resume`]; the bus lets it back in once it has caught up with the
//!   last event the bus handed out. A durable subscriber also starts that way, so after
//!   a restart it resumes from the last event it recorded.
//!
//! So one slow subscriber never holds up another, and no queue grows without bound.

use std::collections::HashSet;
use std::sync::Arc;

use actix::prelude::*;
use callplane_schema::models::event::Event;
use prometheus::{IntCounter, IntCounterVec};

use crate::cache::{self, CacheAside};

mod durable;
pub use durable::{Durable, DurableSubscriber};

/// A batch of committed events, oldest first.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<[Event]>);

/// To a lagging durable subscriber: read the outbox from your cursor, then [`Resume`].
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct CatchUp;

/// From a durable subscriber that has read the outbox up to `seq`. The answer is true
/// when it is live again, false when more events were handed out meanwhile (read on).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Resume {
    pub name: &'static str,
    pub seq: i64,
}

pub type Filter = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// Registers a subscriber. `catch_up` makes it durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub name: &'static str,
    pub deliver: Recipient<Deliver>,
    pub catch_up: Option<Recipient<CatchUp>>,
    pub filter: Option<Filter>,
}

enum State {
    Live,
    Lagging { told: bool },
}

struct Subscriber {
    name: &'static str,
    deliver: Recipient<Deliver>,
    catch_up: Option<Recipient<CatchUp>>,
    filter: Option<Filter>,
    state: State,
}

pub struct EventBus {
    cache: CacheAside,
    subscribers: Vec<Subscriber>,
    /// The last sequence number handed out.
    last_seq: i64,
    events: IntCounter,
    missed: IntCounterVec,
}

impl EventBus {
    /// `last_seq`: the newest event in the outbox when the bus starts.
    pub fn new(
        cache: CacheAside,
        last_seq: i64,
        registry: &prometheus::Registry,
    ) -> Result<EventBus, prometheus::Error> {
        let events = IntCounter::new("bus_events_total", "Committed events handed to the event bus")?;
        let missed = IntCounterVec::new(
            prometheus::Opts::new(
                "bus_missed_total",
                "Batches a subscriber could not take (dropped, or read later from the outbox)",
            ),
            &["subscriber"],
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(missed.clone()))?;
        Ok(EventBus { cache, subscribers: Vec::new(), last_seq, events, missed })
    }

    /// The commit hook to install with `Db::set_commit_hook`: hands each commit's events
    /// to the bus. Blocks the writer when the bus is this far behind, rather than
    /// buffering without limit.
    pub fn commit_hook(bus: Addr<EventBus>) -> callplane_schema::db::CommitHook {
        let (tx, rx) = flume::bounded::<Vec<Event>>(1024);
        bus.do_send(Feed(rx));
        Box::new(move |events| {
            if tx.send(events).is_err() {
                log::error!("the event bus is gone; committed events stay in the outbox");
            }
        })
    }

    fn fan_out(&mut self, events: Arc<[Event]>) {
        if let Some(last) = events.last() {
            self.last_seq = self.last_seq.max(last.seq);
        }
        self.events.inc_by(events.len() as u64);
        self.subscribers.retain_mut(|sub| {
            let batch = match &sub.filter {
                None => events.clone(),
                Some(filter) => {
                    let matching: Vec<Event> = events.iter().filter(|e| filter(e)).cloned().collect();
                    if matching.is_empty() {
                        return true;
                    }
                    matching.into()
                }
            };
            match sub.state {
                State::Live => match sub.deliver.try_send(Deliver(batch)) {
                    Ok(()) => true,
                    Err(SendError::Full(_)) => {
                        self.missed.with_label_values(&[sub.name]).inc();
                        if let Some(catch_up) = &sub.catch_up {
                            // Normal under a burst, and counted: not worth a warning each time.
                            log::info!("subscriber {} is behind; it will read the outbox", sub.name);
                            sub.state = State::Lagging { told: catch_up.try_send(CatchUp).is_ok() };
                        }
                        true
                    }
                    Err(SendError::Closed(_)) => {
                        log::warn!("subscriber {} is gone", sub.name);
                        false
                    }
                },
                State::Lagging { told } => {
                    if !told && let Some(catch_up) = &sub.catch_up {
                        sub.state = State::Lagging { told: catch_up.try_send(CatchUp).is_ok() };
                    }
                    true
                }
            }
        });
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;
}

/// Connects the commit hook's channel.
#[derive(Message)]
#[rtype(result = "()")]
struct Feed(flume::Receiver<Vec<Event>>);

impl Handler<Feed> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: Feed, ctx: &mut Context<Self>) {
        ctx.add_stream(msg.0.into_stream());
    }
}

impl StreamHandler<Vec<Event>> for EventBus {
    fn handle(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) {
        let keys: Vec<String> = events
            .iter()
            .map(|e| cache::key(e.resource_type(), &e.resource_id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let cache = self.cache.clone();
        let events: Arc<[Event]> = events.into();
        // `wait`: batches leave in commit order, each after its keys are gone.
        ctx.wait(
            async move {
                cache.invalidate(&keys).await;
            }
            .into_actor(self)
            .map(move |(), bus, _| bus.fan_out(events)),
        );
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        log::info!("event bus: the database writer has stopped");
    }
}

impl Handler<Subscribe> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        let state = match &msg.catch_up {
            // A durable subscriber first reads what it missed while it was away.
            Some(catch_up) => State::Lagging { told: catch_up.try_send(CatchUp).is_ok() },
            None => State::Live,
        };
        log::debug!("event bus: {} subscribed", msg.name);
        self.subscribers.push(Subscriber {
            name: msg.name,
            deliver: msg.deliver,
            catch_up: msg.catch_up,
            filter: msg.filter,
            state,
        });
    }
}

impl Handler<Resume> for EventBus {
    type Result = bool;

    fn handle(&mut self, msg: Resume, _: &mut Context<Self>) -> bool {
        let last_seq = self.last_seq;
        let Some(sub) = self.subscribers.iter_mut().find(|s| s.name == msg.name) else { return false };
        if msg.seq >= last_seq {
            sub.state = State::Live;
            log::debug!("subscriber {} is live again at {}", msg.name, msg.seq);
            true
        } else {
            sub.state = State::Lagging { told: true };
            false
        }
    }
}
