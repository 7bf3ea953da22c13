//! Messages (SMS) on the simulated carrier.
//!
//! The [`Messenger`] creates a message, its charge (one unit per destination at
//! `rates.sms`) and `sms.created` in one transaction, then plays the carrier: after
//! [`SUBMIT_AFTER`] every pending destination is sent (`sms.sent`), except the reserved
//! failing number, which fails (`sms.failed`); after [`DELIVER_AFTER`] more, the sent
//! ones are delivered (`sms.delivered`). Each step is one transaction with one event
//! per status reached, carrying the whole message. Messages still on their way when the
//! process stopped are taken up again at start.

use std::time::Duration;

use actix::prelude::*;
use callplane_schema::ids::{CustomerId, MessageId};
use callplane_schema::models::address::{Address, AddressType};
use callplane_schema::models::billing::{self, ReferenceType};
use callplane_schema::models::billing_account;
use callplane_schema::models::event::NewEvent;
use callplane_schema::models::message::{self, Message as Sms, MessageRow, TargetStatus};
use callplane_schema::{Db, DbError};

use crate::media::sim::FAILS;

/// From acceptance to the carrier taking (or refusing) each destination.
pub const SUBMIT_AFTER: Duration = Duration::from_millis(50);
/// From sent to delivered.
pub const DELIVER_AFTER: Duration = Duration::from_millis(150);
/// Wait before retrying a step the database could not take.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the balance ({balance}) does not cover the message ({needed})")]
    InsufficientBalance { balance: i64, needed: i64 },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Sends a message to each destination, billed per destination.
#[derive(Debug, Message)]
#[rtype(result = "Result<Sms, MessageError>")]
pub struct SendMessage {
    pub customer_id: CustomerId,
    pub source: Address,
    pub destinations: Vec<Address>,
    pub text: String,
}

/// Takes up messages left on their way by an earlier process.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Recover;

/// A carrier step, due for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Submit,
    Deliver,
}

pub struct Messenger {
    db: Db,
}

impl Messenger {
    pub fn new(db: Db) -> Messenger {
        Messenger { db }
    }

    fn schedule(&self, ctx: &mut Context<Self>, id: MessageId, step: Step, after: Duration) {
        ctx.run_later(after, move |act, ctx| act.advance(ctx, id, step));
    }

    /// Carries out `step` for one message and schedules delivery while some destination
    /// is sent and not yet delivered.
    fn advance(&mut self, ctx: &mut Context<Self>, id: MessageId, step: Step) {
        let db = self.db.clone();
        let message_id = id.clone();
        let write = async move {
            db.write(move |tx| {
                let mut row = message::get_any(tx.conn, &message_id)?;
                let now = callplane_schema::time::now();
                let mut targets = row.targets();
                let mut reached = Vec::new();
                for target in targets.iter_mut() {
                    let next = match (step, target.status) {
                        (Step::Submit, TargetStatus::Pending) if fails(&target.destination) => TargetStatus::Failed,
                        (Step::Submit, TargetStatus::Pending) => TargetStatus::Sent,
                        (Step::Deliver, TargetStatus::Sent) => TargetStatus::Delivered,
                        _ => continue,
                    };
                    target.status = next;
                    target.tm_update = now;
                    if !reached.contains(&next) {
                        reached.push(next);
                    }
                }
                let still_sent = targets.iter().any(|t| t.status == TargetStatus::Sent);
                if reached.is_empty() {
                    return Ok(still_sent);
                }
                row.set_targets(&targets, now);
                message::save(tx.conn, &row)?;
                let view = row.view();
                // In the order a receiver expects: failures are known at submission too.
                for status in [TargetStatus::Sent, TargetStatus::Failed, TargetStatus::Delivered] {
                    if reached.contains(&status) {
                        tx.emit(NewEvent::new(event_type(status), Some(&row.customer_id), &row.id, &view)?)?;
                    }
                }
                Ok(still_sent)
            })
            .await
        };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| match result {
            Ok(true) if step == Step::Submit => act.schedule(ctx, id, Step::Deliver, DELIVER_AFTER),
            Ok(_) => {}
            Err(DbError::NotFound) => log::warn!("message {id} is gone; the carrier drops it"),
            Err(e) => {
                log::warn!("message {id}: carrier step {step:?} not persisted, retrying: {e}");
                act.schedule(ctx, id, step, RETRY_AFTER);
            }
        }));
    }
}

fn fails(destination: &Address) -> bool {
    destination.kind == AddressType::Tel && destination.target == FAILS
}

fn event_type(status: TargetStatus) -> &'static str {
    match status {
        TargetStatus::Pending => "sms.created",
        TargetStatus::Sent => "sms.sent",
        TargetStatus::Delivered => "sms.delivered",
        TargetStatus::Failed => "sms.failed",
    }
}

impl Actor for Messenger {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<SendMessage> for Messenger {
    type Result = ResponseActFuture<Self, Result<Sms, MessageError>>;

    fn handle(&mut self, msg: SendMessage, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let write = async move {
            db.write(move |tx| {
                let account = billing_account::get_by_customer(tx.conn, &msg.customer_id)?;
                let rate = account.rates().sms;
                let units = msg.destinations.len() as i64;
                let needed = units.saturating_mul(rate);
                if account.available() < needed {
                    return Ok(Err(MessageError::InsufficientBalance { balance: account.available(), needed }));
                }
                let row = MessageRow::new(msg.customer_id.clone(), &msg.source, &msg.destinations, msg.text.clone());
                message::insert(tx.conn, &row)?;
                let view = row.view();
                tx.emit(NewEvent::new("sms.created", Some(&row.customer_id), &row.id, &view)?)?;
                let (charge, _) = billing::post(
                    tx.conn,
                    &row.customer_id,
                    ReferenceType::Sms,
                    row.id.as_str(),
                    units,
                    rate,
                    -needed,
                )?;
                tx.emit(NewEvent::new("billing.created", Some(&row.customer_id), &charge.id, &charge)?)?;
                Ok(Ok(view))
            })
            .await
        };
        Box::pin(write.into_actor(self).map(|result, act, ctx| {
            let view = result??;
            act.schedule(ctx, view.id.clone(), Step::Submit, SUBMIT_AFTER);
            Ok(view)
        }))
    }
}

impl Handler<Recover> for Messenger {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: Recover, _: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move { db.read(message::list_unfinished).await }.into_actor(self).map(|rows, act, ctx| {
            let rows = rows.unwrap_or_else(|e| {
                log::error!("cannot list messages to take up again: {e}");
                Vec::new()
            });
            for row in &rows {
                let pending = row.targets().iter().any(|t| t.status == TargetStatus::Pending);
                let step = if pending { Step::Submit } else { Step::Deliver };
                act.schedule(ctx, row.id.clone(), step, SUBMIT_AFTER);
            }
            rows.len()
        }))
    }
}
