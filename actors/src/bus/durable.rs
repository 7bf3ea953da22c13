//! Durable subscribers: each event takes effect once, in order, even across crashes.
//!
//! A [`Durable`] actor wraps a [`DurableSubscriber`]. It writes the effects of a batch
//! of events and advances its cursor (`subscriber_cursors`) in one transaction, skipping
//! events at or below the stored cursor, so a batch delivered twice (live and again
//! from the outbox) takes effect once. At start, when the bus finds it behind, or after
//! a failed write, it reads the outbox from its cursor until it has caught up and then
//! asks the bus to [`Resume`] live delivery.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::models::event::Event;
use callplane_schema::models::{cursor, event};
use callplane_schema::{Db, DbError, WriteCtx};

use super::{CatchUp, Deliver, EventBus, Resume, Subscribe};

/// Events read from the outbox per step of a catch-up.
const PULL: i64 = 500;
/// Wait before reading the outbox again after a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a durable subscriber does with events.
pub trait DurableSubscriber: Unpin + Sized + 'static {
    /// Its cursor's key. Never change it: the cursor would restart from 0.
    const NAME: &'static str;
    /// What [`DurableSubscriber::write`] needs, shared with the database writer thread.
    type Config: Clone + Send + Sync + Unpin + 'static;
    /// What a write hands back to [`DurableSubscriber::committed`].
    type Outcome: Send + 'static;

    /// Which events it takes. Also the bus's filter.
    fn wants(event: &Event) -> bool;

    /// Writes the effects of `events` (all wanted, all new, oldest first) in the
    /// transaction that advances the cursor. Runs on the database writer and may run
    /// more than once if the writer retries, so it must act only through `tx`.
    fn write(config: &Self::Config, tx: &mut WriteCtx<'_>, events: &[&Event]) -> Result<Self::Outcome, DbError>;

    /// After the commit, on the actor: in-memory follow-ups (timers, wake-ups).
    fn committed(&mut self, outcome: Self::Outcome, ctx: &mut Context<Durable<Self>>);

    /// Once, when the actor starts, before any event.
    fn started(&mut self, _ctx: &mut Context<Durable<Self>>) {}
}

pub struct Durable<S: DurableSubscriber> {
    pub subscriber: S,
    config: S::Config,
    db: Db,
    bus: Addr<EventBus>,
    /// The last sequence number whose effects are committed.
    cursor: i64,
    /// Reading the outbox: live batches are ignored meanwhile (the outbox has them).
    catching_up: bool,
}

impl<S: DurableSubscriber> Durable<S> {
    pub fn start(subscriber: S, config: S::Config, db: Db, bus: Addr<EventBus>) -> Addr<Durable<S>> {
        Durable { subscriber, config, db, bus, cursor: 0, catching_up: true }.start()
    }

    /// Commits the effects of `events` and moves the cursor to `up_to` (which may be
    /// past the last event when a pulled batch ended with unwanted ones).
    fn process(&mut self, events: Vec<Event>, up_to: i64) -> ResponseActFuture<Self, Result<(), DbError>> {
        let config = self.config.clone();
        let db = self.db.clone();
        let write = async move {
            db.write(move |tx| {
                let stored = cursor::get(tx.conn, S::NAME)?;
                let fresh: Vec<&Event> = events.iter().filter(|e| e.seq > stored && S::wants(e)).collect();
                let outcome = if fresh.is_empty() { None } else { Some(S::write(&config, tx, &fresh)?) };
                if up_to > stored {
                    cursor::set(tx.conn, S::NAME, up_to)?;
                }
                Ok((outcome, up_to.max(stored)))
            })
            .await
        };
        Box::pin(write.into_actor(self).map(|result, act, ctx| {
            let (outcome, cursor) = result?;
            act.cursor = act.cursor.max(cursor);
            if let Some(outcome) = outcome {
                act.subscriber.committed(outcome, ctx);
            }
            Ok(())
        }))
    }

    /// One step of a catch-up: read the outbox after the cursor, apply, repeat; when
    /// there is nothing more, ask the bus to resume.
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        self.catching_up = true;
        let db = self.db.clone();
        let after = self.cursor;
        let pull = async move { db.read(move |conn| event::list_after(conn, after, PULL)).await };
        let step = pull.into_actor(self).then(|pulled, act, _| -> ResponseActFuture<Self, Result<bool, DbError>> {
            let events = match pulled {
                Ok(events) => events,
                Err(e) => return Box::pin(fut::ready(Err(e))),
            };
            match events.last().map(|e| e.seq) {
                None => Box::pin(fut::ready(Ok(true))),
                Some(up_to) => Box::pin(act.process(events, up_to).map(|r, _, _| r.map(|()| false))),
            }
        });
        ctx.wait(step.map(|result, act, ctx| match result {
            // More may follow.
            Ok(false) => act.catch_up(ctx),
            // The outbox is exhausted: rejoin live delivery, or read on if more came.
            Ok(true) => act.resume(ctx),
            Err(e) => {
                log::warn!("{}: reading the outbox failed, retrying: {e}", S::NAME);
                ctx.run_later(RETRY_AFTER, |act, ctx| act.catch_up(ctx));
            }
        }));
    }

    fn resume(&mut self, ctx: &mut Context<Self>) {
        let resume = self.bus.send(Resume { name: S::NAME, seq: self.cursor });
        ctx.wait(resume.into_actor(self).map(|answer, act, ctx| match answer {
            Ok(true) => act.catching_up = false,
            Ok(false) => act.catch_up(ctx),
            Err(e) => log::error!("{}: the event bus is gone: {e}", S::NAME),
        }));
    }
}

impl<S: DurableSubscriber> Actor for Durable<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
        self.subscriber.started(ctx);
        let db = self.db.clone();
        let load = async move { db.read(|conn| cursor::get(conn, S::NAME)).await };
        ctx.wait(load.into_actor(self).map(|cursor, act, ctx| {
            act.cursor = cursor.unwrap_or_else(|e| {
                log::error!("{}: cannot read its cursor, starting from 0: {e}", S::NAME);
                0
            });
            // The bus answers with `CatchUp` at once: read what was missed first.
            act.bus.do_send(Subscribe {
                name: S::NAME,
                deliver: ctx.address().recipient(),
                catch_up: Some(ctx.address().recipient()),
                filter: Some(Arc::new(S::wants)),
            });
        }));
    }
}

impl<S: DurableSubscriber> Handler<Deliver> for Durable<S> {
    type Result = ();

    fn handle(&mut self, Deliver(events): Deliver, ctx: &mut Context<Self>) {
        if self.catching_up {
            return;
        }
        let fresh: Vec<Event> = events.iter().filter(|e| e.seq > self.cursor).cloned().collect();
        let Some(up_to) = fresh.last().map(|e| e.seq) else { return };
        ctx.wait(self.process(fresh, up_to).map(|result, act, ctx| {
            if let Err(e) = result {
                // Nothing was committed; the outbox still has these events.
                log::warn!("{}: writing failed, will read the outbox again: {e}", S::NAME);
                act.catching_up = true;
                ctx.run_later(RETRY_AFTER, |act, ctx| act.catch_up(ctx));
            }
        }));
    }
}

impl<S: DurableSubscriber> Handler<CatchUp> for Durable<S> {
    type Result = ();

    fn handle(&mut self, _: CatchUp, ctx: &mut Context<Self>) {
        self.catch_up(ctx);
    }
}
