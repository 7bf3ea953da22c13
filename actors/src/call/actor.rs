//! One actor per live call. It alone owns the call's state: it applies the state
//! machine, persists each transition (with its event) before adopting it, and runs the
//! call's timers. Its handlers are atomic, so a transition in flight is never
//! interleaved with another.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::ids::{ActiveflowId, CallId, CustomerId};
use callplane_schema::models::call::{
    self, Call, CallEventData, CallRow, CallStatus, Direction, HangupBy, HangupReason, MuteDirection,
};
use callplane_schema::models::event::NewEvent;

use super::{CallDeps, CallError, Reap};
use crate::cache;
use crate::media::{MediaEvent, MediaEventKind as Kind};

/// A change a client (through the gateway) or the domain asks of a call.
#[derive(Debug, Clone)]
pub enum CallCommand {
    Hangup {
        reason: HangupReason,
    },
    Talk {
        text: String,
        language: String,
    },
    Hold {
        on: bool,
    },
    Mute {
        direction: MuteDirection,
        on: bool,
    },
    /// Answers an incoming call that is still ringing (a flow's `answer`).
    Answer,
    /// Plays DTMF digits to the far end.
    SendDigits {
        digits: String,
    },
    /// Connects this call's audio with `peer`'s (a `connect` flow action, a conference).
    Bridge {
        peer: CallId,
    },
    /// Undoes every bridge of this call.
    Unbridge,
}

/// What a call tells those observing it: its flow run, the conferences it is in.
/// Sent after the change is committed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct CallNews {
    pub call_id: CallId,
    pub kind: NewsKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewsKind {
    Answered,
    Ended {
        reason: Option<HangupReason>,
    },
    /// Only to the call's flow run.
    Digit(char),
    /// Only to the call's flow run: a `talk` or `play` it started finished.
    PlaybackFinished {
        playback: u64,
    },
}

/// Registers an observer of the call. With `activeflow_id`, the observer is the call's
/// flow run: it replaces any earlier one, the call records the run's id, and it gets
/// the digits that arrived so far and every digit and playback end from now on.
#[derive(Message)]
#[rtype(result = "Result<Observed, CallError>")]
pub struct Observe {
    /// `None` for the domain's own observers.
    pub customer_id: Option<CustomerId>,
    pub observer: Recipient<CallNews>,
    pub activeflow_id: Option<ActiveflowId>,
}

/// The call as it was when the observer was registered; news follow from there.
#[derive(Debug, Clone)]
pub struct Observed {
    pub call: Call,
    /// Digits received before the flow run registered, oldest first.
    pub digits: String,
}

/// Starts speaking or playing on an answered call; the answer is the playback id that
/// [`NewsKind::PlaybackFinished`] will carry to the call's flow run.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, CallError>")]
pub struct StartPlayback {
    pub media: Playback,
}

#[derive(Debug, Clone)]
pub enum Playback {
    Talk { text: String, language: String },
    Play { urls: Vec<String> },
}

/// A command for a live call, checked against the caller's customer.
#[derive(Debug, Message)]
#[rtype(result = "Result<Call, CallError>")]
pub struct Command {
    pub call_id: CallId,
    /// `None` for commands from the domain itself (billing cut-off, flows).
    pub customer_id: Option<CustomerId>,
    pub command: CallCommand,
}

/// The call as it is now.
#[derive(Debug, Message)]
#[rtype(result = "Call")]
pub struct Snapshot;

/// How a call actor begins.
pub enum Start {
    /// A new outgoing call: dial it.
    Dial,
    /// A new incoming call: take it from the backend, unanswered.
    Incoming,
    /// A call left live by an earlier process: re-attach, or end it as `failed`.
    Recover,
}

pub struct CallActor {
    row: CallRow,
    deps: Arc<CallDeps>,
    start: Option<Start>,
    dial_timer: Option<SpawnHandle>,
    call_timer: Option<SpawnHandle>,
    /// Ends the call when the customer's balance runs out.
    balance_timer: Option<SpawnHandle>,
    /// DTMF digits received and not yet consumed by a flow.
    digits: String,
    /// Who is told about the call's changes; bounded by [`MAX_OBSERVERS`].
    observers: Vec<Recipient<CallNews>>,
    /// The call's flow run: it alone gets digits and playback ends.
    flow: Option<Recipient<CallNews>>,
}

/// Observers a call keeps at most (its run, its connect peers' runs, its conference).
const MAX_OBSERVERS: usize = 16;

/// Digits kept at most: a caller mashing keys must not grow the actor.
const MAX_DIGITS: usize = 128;
/// A hang-up the backend does not confirm within this is taken as done.
const TERMINATING_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before retrying a transition the database could not take.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl CallActor {
    pub fn new(row: CallRow, deps: Arc<CallDeps>, start: Start) -> CallActor {
        CallActor {
            row,
            deps,
            start: Some(start),
            dial_timer: None,
            call_timer: None,
            balance_timer: None,
            digits: String::new(),
            observers: Vec::new(),
            flow: None,
        }
    }

    /// Persists `next` with its event, deletes the cached copy, then adopts it.
    fn commit(&mut self, next: CallRow) -> ResponseActFuture<Self, Result<Call, CallError>> {
        let event_type = event_type(self.row.status, next.status);
        let db = self.deps.db.clone();
        let cache = self.deps.cache.clone();
        let row = next.clone();
        let persist = async move {
            let view = db
                .write(move |tx| {
                    call::save(tx.conn, &row)?;
                    let view = row.view();
                    let data = CallEventData { call: &view, call_id: &row.id };
                    tx.emit(NewEvent::new(event_type, Some(&row.customer_id), &row.id, &data)?)?;
                    Ok(view)
                })
                .await?;
            cache.invalidate(&[cache::key("call", view.id.as_str())]).await;
            Ok(view)
        };
        Box::pin(persist.into_actor(self).map(move |result, act, ctx| {
            let view = result.map_err(CallError::Db)?;
            let previous = std::mem::replace(&mut act.row, next);
            act.after_transition(previous.status, ctx);
            Ok(view)
        }))
    }

    /// Timers and the end of the actor follow the status.
    fn after_transition(&mut self, previous: CallStatus, ctx: &mut Context<Self>) {
        let now = self.row.status;
        if previous == now {
            return;
        }
        self.tell_observers(now);
        match now {
            CallStatus::Active => {
                self.cancel(ctx, |a| &mut a.dial_timer);
                self.deps.live.answered();
                let max = self.deps.settings.max_duration;
                self.call_timer = Some(ctx.run_later(max, |act, ctx| {
                    act.hang_up_from_within(HangupReason::Timeout, ctx);
                }));
            }
            CallStatus::Terminating => {
                self.cancel(ctx, |a| &mut a.dial_timer);
                self.cancel(ctx, |a| &mut a.call_timer);
                self.cancel(ctx, |a| &mut a.balance_timer);
                ctx.run_later(TERMINATING_TIMEOUT, |act, ctx| {
                    if act.row.status == CallStatus::Terminating {
                        log::warn!("call {}: the media backend did not confirm the hang-up", act.row.id);
                        act.on_media(
                            MediaEvent::now(Kind::HungUp { reason: HangupReason::Failed, remote: false }),
                            ctx,
                        );
                    }
                });
            }
            CallStatus::Ended => {
                if self.row.tm_answer.is_some() {
                    self.deps.live.unanswered();
                }
                ctx.stop();
            }
            CallStatus::Initiating | CallStatus::Ringing => {}
        }
    }

    fn cancel(&mut self, ctx: &mut Context<Self>, timer: impl Fn(&mut Self) -> &mut Option<SpawnHandle>) {
        if let Some(handle) = timer(self).take() {
            ctx.cancel_future(handle);
        }
    }

    /// The row after a local hang-up with `reason`, or why there is none.
    fn hangup_row(&self, reason: HangupReason) -> Result<CallRow, CallError> {
        self.expect_can_become(CallStatus::Terminating)?;
        // Hanging up a call nobody answered yet is cancelling it.
        let reason = match (reason, self.row.status) {
            (HangupReason::Normal, CallStatus::Initiating | CallStatus::Ringing) => HangupReason::Cancel,
            (reason, _) => reason,
        };
        let mut next = self.row.clone();
        next.status = CallStatus::Terminating;
        next.hangup_by = Some(HangupBy::Local);
        next.hangup_reason = Some(reason);
        next.tm_update = callplane_schema::time::now();
        Ok(next)
    }

    fn expect_can_become(&self, next: CallStatus) -> Result<(), CallError> {
        if self.row.status.can_become(next) { Ok(()) } else { Err(CallError::StateInvalid { status: self.row.status }) }
    }

    fn expect_active(&self) -> Result<(), CallError> {
        if self.row.status == CallStatus::Active {
            Ok(())
        } else {
            Err(CallError::StateInvalid { status: self.row.status })
        }
    }

    /// A hang-up decided inside the domain (timers): retried until it is persisted.
    fn hang_up_from_within(&mut self, reason: HangupReason, ctx: &mut Context<Self>) {
        let Ok(next) = self.hangup_row(reason) else { return };
        let id = self.row.id.clone();
        let media = self.deps.media.clone();
        ctx.wait(self.commit(next).map(move |result: Result<Call, CallError>, _, ctx| match result {
            Ok(_) => media.hangup(&id, reason),
            Err(e) => {
                log::warn!("call {id}: hang-up ({reason}) not persisted, retrying: {e}");
                ctx.run_later(RETRY_AFTER, move |act, ctx| act.hang_up_from_within(reason, ctx));
            }
        }));
    }

    /// Applies what the media backend reported.
    fn on_media(&mut self, event: MediaEvent, ctx: &mut Context<Self>) {
        let now = event.at;
        let mut next = self.row.clone();
        next.tm_update = now;
        match &event.kind {
            Kind::Ringing if self.row.status == CallStatus::Initiating => {
                next.status = CallStatus::Ringing;
                next.tm_ringing = Some(now);
            }
            Kind::Answered if matches!(self.row.status, CallStatus::Initiating | CallStatus::Ringing) => {
                next.status = CallStatus::Active;
                next.tm_answer = Some(now);
            }
            Kind::HungUp { reason, remote } if self.row.status.is_live() => {
                next.status = CallStatus::Ended;
                next.tm_end = Some(now);
                if self.row.status != CallStatus::Terminating || next.hangup_reason.is_none() {
                    next.hangup_by = Some(if *remote { HangupBy::Remote } else { HangupBy::Local });
                    next.hangup_reason = Some(*reason);
                }
            }
            Kind::Digit(digit) => {
                let news = CallNews { call_id: self.row.id.clone(), kind: NewsKind::Digit(*digit) };
                // Without a run (or with a run too busy to listen) the digit waits here.
                let taken = self.flow.as_ref().is_some_and(|flow| flow.try_send(news).is_ok());
                if !taken && self.digits.len() < MAX_DIGITS {
                    self.digits.push(*digit);
                }
                return;
            }
            Kind::PlaybackFinished { playback } => {
                if let Some(flow) = &self.flow {
                    flow.do_send(CallNews {
                        call_id: self.row.id.clone(),
                        kind: NewsKind::PlaybackFinished { playback: *playback },
                    });
                }
                return;
            }
            // Late or repeated news (ringing after answer, a second hang-up): nothing changes.
            _ => return,
        }
        ctx.wait(self.commit(next).map(move |result: Result<Call, CallError>, act, ctx| {
            if let Err(e) = result {
                log::warn!("call {}: {event:?} not persisted, retrying: {e}", act.row.id);
                ctx.notify_later(event, RETRY_AFTER);
            }
        }));
    }
}

impl CallActor {
    /// Tells every observer about the status the call has just committed.
    fn tell_observers(&mut self, status: CallStatus) {
        let kind = match status {
            CallStatus::Active => NewsKind::Answered,
            CallStatus::Ended => NewsKind::Ended { reason: self.row.hangup_reason },
            _ => return,
        };
        self.observers.retain(|o| o.connected());
        for observer in &self.observers {
            // Status news are a handful per call: never dropped for a full mailbox.
            observer.do_send(CallNews { call_id: self.row.id.clone(), kind: kind.clone() });
        }
    }

    fn observe(&mut self, msg: Observe) -> ResponseActFuture<Self, Result<Observed, CallError>> {
        let refuse = |e| -> ResponseActFuture<Self, Result<Observed, CallError>> { Box::pin(fut::ready(Err(e))) };
        if msg.customer_id.as_ref().is_some_and(|c| *c != self.row.customer_id) {
            return refuse(CallError::NotFound);
        }
        self.observers.retain(|o| o.connected());
        if self.observers.len() >= MAX_OBSERVERS {
            return refuse(CallError::Media(format!("call {} has {MAX_OBSERVERS} observers already", self.row.id)));
        }
        self.observers.push(msg.observer.clone());
        let Some(activeflow_id) = msg.activeflow_id else {
            return Box::pin(fut::ready(Ok(Observed { call: self.row.view(), digits: String::new() })));
        };
        self.flow = Some(msg.observer);
        let digits = std::mem::take(&mut self.digits);
        if self.row.activeflow_id.as_ref() == Some(&activeflow_id) {
            return Box::pin(fut::ready(Ok(Observed { call: self.row.view(), digits })));
        }
        let mut next = self.row.clone();
        next.activeflow_id = Some(activeflow_id);
        next.tm_update = callplane_schema::time::now();
        Box::pin(self.commit(next).map(move |result, _, _| result.map(|call| Observed { call, digits })))
    }
}

/// The event a transition publishes.
fn event_type(from: CallStatus, to: CallStatus) -> &'static str {
    match (from == to, to) {
        (false, CallStatus::Ringing) => "call.ringing",
        (false, CallStatus::Active) => "call.answered",
        (false, CallStatus::Ended) => "call.ended",
        _ => "call.updated",
    }
}

impl Actor for CallActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let id = self.row.id.clone();
        let events = ctx.address().recipient();
        match self.start.take() {
            Some(Start::Dial) => {
                self.deps.media.dial(&id, &self.row.source(), &self.row.destination(), events);
                self.dial_timer = Some(ctx.run_later(self.deps.settings.dial_timeout, |act, ctx| {
                    act.dial_timer = None;
                    act.hang_up_from_within(HangupReason::Noanswer, ctx);
                }));
            }
            Some(Start::Incoming) => {
                self.deps.media.accept_incoming(&id, events);
                // An incoming call nobody answers (no flow, or a flow without `answer`)
                // must not ring for ever.
                self.dial_timer = Some(ctx.run_later(self.deps.settings.dial_timeout, |act, ctx| {
                    act.dial_timer = None;
                    act.hang_up_from_within(HangupReason::Noanswer, ctx);
                }));
            }
            Some(Start::Recover) => {
                if self.row.tm_answer.is_some() {
                    self.deps.live.answered();
                }
                if self.deps.media.reattach(&id, events) {
                    log::info!("call {id}: re-adopted after restart");
                } else {
                    log::info!("call {id}: the media backend lost it in the restart; ending it as failed");
                    self.on_media(MediaEvent::now(Kind::HungUp { reason: HangupReason::Failed, remote: false }), ctx);
                }
            }
            None => {}
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.deps.reaper.do_send(Reap { call_id: self.row.id.clone(), ended: self.row.status == CallStatus::Ended });
    }
}

impl Handler<MediaEvent> for CallActor {
    type Result = ();

    fn handle(&mut self, event: MediaEvent, ctx: &mut Context<Self>) {
        self.on_media(event, ctx);
    }
}

impl Handler<Command> for CallActor {
    type Result = AtomicResponse<Self, Result<Call, CallError>>;

    fn handle(&mut self, msg: Command, _: &mut Context<Self>) -> Self::Result {
        let refuse = |e| AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        if msg.customer_id.as_ref().is_some_and(|c| *c != self.row.customer_id) {
            return refuse(CallError::NotFound);
        }
        let now = callplane_schema::time::now();
        let media = self.deps.media.clone();
        let id = self.row.id.clone();
        match msg.command {
            CallCommand::Hangup { reason } => match self.hangup_row(reason) {
                Ok(next) => {
                    let reason = next.hangup_reason.unwrap_or(reason);
                    AtomicResponse::new(Box::pin(self.commit(next).map(move |result, _, _| {
                        if result.is_ok() {
                            media.hangup(&id, reason);
                        }
                        result
                    })))
                }
                Err(e) => refuse(e),
            },
            CallCommand::Talk { text, language } => {
                if let Err(e) = self.expect_active() {
                    return refuse(e);
                }
                match media.talk(&id, &text, &language) {
                    Ok(_) => AtomicResponse::new(Box::pin(fut::ready(Ok(self.row.view())))),
                    Err(e) => refuse(CallError::Media(e.to_string())),
                }
            }
            CallCommand::Hold { on } => {
                if let Err(e) = self.expect_active() {
                    return refuse(e);
                }
                if let Err(e) = media.hold(&id, on) {
                    return refuse(CallError::Media(e.to_string()));
                }
                let mut next = self.row.clone();
                next.hold = on;
                next.tm_update = now;
                AtomicResponse::new(self.commit(next))
            }
            CallCommand::Mute { direction, on } => {
                if let Err(e) = self.expect_active() {
                    return refuse(e);
                }
                if let Err(e) = media.mute(&id, direction, on) {
                    return refuse(CallError::Media(e.to_string()));
                }
                let mut next = self.row.clone();
                next.mute_direction = if on { Some(direction) } else { None };
                next.tm_update = now;
                AtomicResponse::new(self.commit(next))
            }
            CallCommand::Answer => match (self.row.direction, self.row.status) {
                (_, CallStatus::Active) => AtomicResponse::new(Box::pin(fut::ready(Ok(self.row.view())))),
                (Direction::Incoming, CallStatus::Initiating | CallStatus::Ringing) => match media.answer(&id) {
                    // The status follows when the backend reports the answer.
                    Ok(()) => AtomicResponse::new(Box::pin(fut::ready(Ok(self.row.view())))),
                    Err(e) => refuse(CallError::Media(e.to_string())),
                },
                (_, status) => refuse(CallError::StateInvalid { status }),
            },
            CallCommand::SendDigits { digits } => {
                if let Err(e) = self.expect_active() {
                    return refuse(e);
                }
                match media.send_digits(&id, &digits) {
                    Ok(()) => AtomicResponse::new(Box::pin(fut::ready(Ok(self.row.view())))),
                    Err(e) => refuse(CallError::Media(e.to_string())),
                }
            }
            CallCommand::Bridge { peer } => {
                if let Err(e) = self.expect_active() {
                    return refuse(e);
                }
                match media.bridge(&id, &peer) {
                    Ok(()) => AtomicResponse::new(Box::pin(fut::ready(Ok(self.row.view())))),
                    Err(e) => refuse(CallError::Media(e.to_string())),
                }
            }
            CallCommand::Unbridge => {
                if self.row.status.is_live() {
                    media.unbridge(&id);
                }
                AtomicResponse::new(Box::pin(fut::ready(Ok(self.row.view()))))
            }
        }
    }
}

/// From billing: end the call with `insufficient_balance` at `at` (`None`: never).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct BalanceDeadline {
    pub at: Option<chrono::NaiveDateTime>,
}

impl Handler<BalanceDeadline> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: BalanceDeadline, ctx: &mut Context<Self>) {
        self.cancel(ctx, |a| &mut a.balance_timer);
        let Some(at) = msg.at else { return };
        if !matches!(self.row.status, CallStatus::Active) {
            return;
        }
        let wait = (at - callplane_schema::time::now()).to_std().unwrap_or_default();
        self.balance_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.balance_timer = None;
            log::info!("call {}: the balance has run out", act.row.id);
            act.hang_up_from_within(HangupReason::InsufficientBalance, ctx);
        }));
    }
}

impl Handler<Observe> for CallActor {
    type Result = AtomicResponse<Self, Result<Observed, CallError>>;

    fn handle(&mut self, msg: Observe, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.observe(msg))
    }
}

impl Handler<StartPlayback> for CallActor {
    type Result = Result<u64, CallError>;

    fn handle(&mut self, msg: StartPlayback, _: &mut Context<Self>) -> Self::Result {
        self.expect_active()?;
        let played = match &msg.media {
            Playback::Talk { text, language } => self.deps.media.talk(&self.row.id, text, language),
            Playback::Play { urls } => self.deps.media.play(&self.row.id, urls),
        };
        played.map_err(|e| CallError::Media(e.to_string()))
    }
}

impl Handler<Snapshot> for CallActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.row.view())
    }
}
