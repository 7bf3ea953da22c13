//! One actor per flow run. It executes the run's actions against its call, one at a
//! time, and waits between them for what the call tells it ([`CallNews`]): an answer, a
//! digit, the end of a playback, the end of the call.
//!
//! The program is a stack of frames. A run starts with its flow's actions; a
//! `conference_join` pushes the conference's post-flow, the join itself and its
//! pre-flow, so that the call hears the pre-flow, joins, and when it leaves hears the
//! post-flow before the run goes on past the `conference_join`. Jumps (`next_id`,
//! `goto`, `branch`, `condition_variable`) stay within their frame.
//!
//! The run's row is written when the run starts waiting on the call (with
//! `activeflow.updated`) and when it ends (`activeflow.ended`), not after every action:
//! a loop of a thousand `goto`s costs one write.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::ids::{CallId, ConferencecallId};
use callplane_schema::models::action::{
    self, Action, ActionId, ActionKind, DIGITS_VARIABLE, DTMF, DigitsReceive, RESERVED_PREFIX, WebhookMethod,
};
use callplane_schema::models::activeflow::{self, Activeflow, ActiveflowRow, ActiveflowStatus, EndReason};
use callplane_schema::models::address::{Address, AddressType};
use callplane_schema::models::call::{Call, CallStatus, Direction, HangupReason};
use callplane_schema::models::event::NewEvent;
use callplane_schema::models::flow_secret;
use callplane_schema::{Db, DbError};
use serde_json::Value;

use super::variables::Variables;
use super::{FlowDeps, FlowError, RunEnded, StopRun};
use crate::call::{
    CallActor, CallCommand, CallError, CallNews, Command, CreateCalls, Locate, NewsKind, Observe, Playback,
    StartPlayback,
};
use crate::conference::{Enter, Join, Left, PreparedJoin, RemoveParticipant};
use crate::message::SendMessage;
use crate::outbound::Outbound;
use crate::webhook::signature;

/// Actions a run executes at most (SPEC §8).
pub const MAX_EXECUTED: i64 = 1_000;
/// Digits a run keeps for a later `digits_receive` at most.
const MAX_DIGITS: usize = 128;
/// How long an `answer` waits for the backend to report the answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a synchronous `webhook_send` answer read at most.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Variables a synchronous `webhook_send` answer may set at most.
const MAX_ANSWER_VARIABLES: usize = 64;
/// Looking for a new call's actor: how often, and how long apart.
const LOCATE_ATTEMPTS: u32 = 100;
const LOCATE_RETRY: Duration = Duration::from_millis(20);
/// Attempts at writing the end of a run before leaving it to the next start's recovery.
const END_ATTEMPTS: u32 = 5;
const RETRY_AFTER: Duration = Duration::from_secs(1);

enum Frame {
    Flow {
        actions: Rc<[Action]>,
        pc: usize,
        loops: HashMap<ActionId, u32>,
    },
    /// The join itself, between a conference's pre-flow and post-flow.
    Conference(PreparedJoin),
}

impl Frame {
    fn flow(actions: Vec<Action>) -> Option<Frame> {
        (!actions.is_empty()).then(|| Frame::Flow { actions: actions.into(), pc: 0, loops: HashMap::new() })
    }
}

/// What the run is waiting for.
enum Wait {
    Nothing,
    /// An outgoing call not yet answered: the flow begins when it is.
    Start,
    /// An `answer` waiting for the backend.
    Answer,
    Playback(u64),
    Timer,
    Digits(DigitsReceive),
    /// In a conference until the participant leaves.
    Conference(ConferencecallId),
    Connect(Connecting),
}

/// A `connect` in progress.
struct Connecting {
    peers: Vec<Peer>,
    /// The peer that answered first; the others are hung up.
    winner: Option<CallId>,
    bridged: bool,
}

struct Peer {
    id: CallId,
    addr: Option<Addr<CallActor>>,
}

/// How the flow goes on after an action.
enum Next {
    /// At the action's `next_id`, or the action below it.
    Continue,
    Jump(ActionId),
    /// The action set up a wait; news or a timer resume the run.
    Wait,
    End(EndReason),
}

pub struct FlowRun {
    row: ActiveflowRow,
    deps: Rc<FlowDeps>,
    vars: Variables,
    call: Option<Addr<CallActor>>,
    answered: bool,
    /// Digits received and not yet taken by a `digits_receive`.
    digits: String,
    frames: Vec<Frame>,
    wait: Wait,
    timer: Option<SpawnHandle>,
    ended: bool,
}

impl FlowRun {
    /// A run of `row`'s actions, or, with `join`, of a conference join.
    pub(super) fn new(row: ActiveflowRow, deps: Rc<FlowDeps>, join: Option<PreparedJoin>) -> FlowRun {
        let vars = Variables::new(row.variables(), row.id.clone(), row.flow_id.clone());
        let frames = match join {
            Some(join) => join_frames(join),
            None => {
                let actions = action::parse_stored(&row.actions).unwrap_or_else(|e| {
                    log::error!("activeflow {}: stored actions do not parse: {e}", row.id);
                    Vec::new()
                });
                Frame::flow(actions).into_iter().collect()
            }
        };
        FlowRun {
            row,
            deps,
            vars,
            call: None,
            answered: false,
            digits: String::new(),
            frames,
            wait: Wait::Nothing,
            timer: None,
            ended: false,
        }
    }

    fn call_id(&self) -> CallId {
        self.row.reference_id.clone()
    }

    /// Runs actions until one waits or the run ends.
    fn step(&mut self, ctx: &mut Context<Self>) {
        while !self.ended {
            let Some(frame) = self.frames.last_mut() else { return self.end(EndReason::Finished, ctx) };
            let action = match frame {
                // A call joins answered: an incoming call whose flow did not answer it
                // is answered here.
                Frame::Conference(_) if !self.answered => return self.answer_before_joining(ctx),
                Frame::Conference(join) => {
                    let enter = join
                        .conference
                        .send(Enter { participant: join.participant.clone(), waiter: ctx.address().recipient() });
                    let participant = join.participant.clone();
                    ctx.wait(enter.into_actor(self).map(move |answer, act, ctx| match answer {
                        Ok(Ok(())) => act.begin_wait(Wait::Conference(participant), ctx),
                        answer => {
                            log::info!("activeflow {}: the conference did not take the call: {answer:?}", act.row.id);
                            act.frames.pop();
                            act.step(ctx);
                        }
                    }));
                    return;
                }
                Frame::Flow { actions, pc, .. } => match actions.get(*pc) {
                    Some(action) => action.clone(),
                    None => {
                        self.frames.pop();
                        continue;
                    }
                },
            };
            if self.row.executed_actions >= MAX_EXECUTED {
                log::info!("activeflow {}: stopped after {MAX_EXECUTED} actions", self.row.id);
                return self.end(EndReason::ActionLimit, ctx);
            }
            self.row.executed_actions += 1;
            self.row.current_action_id = Some(action.id.to_string());
            match self.execute(&action, ctx) {
                Next::Wait => return,
                Next::End(reason) => return self.end(reason, ctx),
                next => self.advance(next),
            }
        }
    }

    /// Moves the top frame past its current action.
    fn advance(&mut self, next: Next) {
        let Some(Frame::Flow { actions, pc, .. }) = self.frames.last_mut() else { return };
        let target = match next {
            Next::Continue => actions.get(*pc).and_then(|a| a.next_id),
            Next::Jump(id) => Some(id),
            Next::Wait | Next::End(_) => return,
        };
        *pc = match target {
            Some(id) => actions.iter().position(|a| a.id == id).unwrap_or(actions.len()),
            None => *pc + 1,
        };
    }

    /// The action that was waiting is done: go on after it.
    fn done(&mut self, next: Next, ctx: &mut Context<Self>) {
        self.wait = Wait::Nothing;
        self.cancel_timer(ctx);
        match next {
            Next::End(reason) => self.end(reason, ctx),
            next => {
                self.advance(next);
                self.step(ctx);
            }
        }
    }

    fn cancel_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
    }

    /// Starts waiting and records where the run is (`activeflow.updated`).
    fn begin_wait(&mut self, wait: Wait, ctx: &mut Context<Self>) {
        self.wait = wait;
        self.row.variables = activeflow::encode_variables(self.vars.stored());
        self.row.tm_update = callplane_schema::time::now();
        let row = self.row.clone();
        let db = self.deps.db.clone();
        let write = async move { persist(&db, row, "activeflow.updated").await };
        ctx.wait(write.into_actor(self).map(|result, act, _| {
            if let Err(e) = result {
                log::warn!("activeflow {}: progress not recorded: {e}", act.row.id);
            }
        }));
    }

    fn execute(&mut self, action: &Action, ctx: &mut Context<Self>) -> Next {
        let kind = match self.substituted(&action.kind) {
            Ok(kind) => kind,
            Err(e) => {
                log::warn!("activeflow {}: action {} skipped: {e}", self.row.id, action.id);
                return Next::Continue;
            }
        };
        match kind {
            ActionKind::Answer(_) => self.answer(ctx),
            ActionKind::Talk(talk) => {
                self.play(Playback::Talk { text: talk.text, language: talk.language }, ctx);
                Next::Wait
            }
            ActionKind::Play(play) => {
                self.play(Playback::Play { urls: play.stream_urls }, ctx);
                Next::Wait
            }
            ActionKind::Sleep(sleep) => {
                self.timer = Some(ctx.run_later(Duration::from_millis(sleep.duration), |act, ctx| {
                    act.timer = None;
                    act.done(Next::Continue, ctx);
                }));
                self.begin_wait(Wait::Timer, ctx);
                Next::Wait
            }
            ActionKind::DigitsReceive(input) => {
                if let Some(digits) = take_input(&mut self.digits, &input) {
                    self.vars.set(DIGITS_VARIABLE, &digits);
                    return Next::Continue;
                }
                self.timer = Some(ctx.run_later(Duration::from_millis(input.duration), |act, ctx| {
                    act.timer = None;
                    if let Wait::Digits(input) = &act.wait {
                        let digits = take_all(&mut act.digits, input);
                        act.vars.set(DIGITS_VARIABLE, &digits);
                        act.done(Next::Continue, ctx);
                    }
                }));
                self.begin_wait(Wait::Digits(input), ctx);
                Next::Wait
            }
            ActionKind::DigitsSend(send) => {
                let digits: String = send.digits.chars().filter(|c| DTMF.contains(*c)).collect();
                self.command_then_continue(CallCommand::SendDigits { digits }, ctx);
                Next::Wait
            }
            ActionKind::VariableSet(set) => {
                if !self.vars.set(&set.key, &set.value) {
                    log::warn!("activeflow {}: too many variables; {} not set", self.row.id, set.key);
                }
                Next::Continue
            }
            ActionKind::Branch(branch) => {
                let value = self.vars.get(&branch.variable);
                match branch.target_ids.get(&value).copied().or(branch.default_target_id) {
                    Some(target) => Next::Jump(target),
                    None => Next::Continue,
                }
            }
            ActionKind::ConditionVariable(condition) => {
                if condition.condition.holds(&self.vars.get(&condition.variable), &condition.value) {
                    Next::Continue
                } else {
                    Next::Jump(condition.false_target_id)
                }
            }
            ActionKind::Goto(goto) => {
                let Some(Frame::Flow { loops, .. }) = self.frames.last_mut() else { return Next::Continue };
                let count = loops.entry(action.id).or_insert(0);
                if *count < goto.loop_count {
                    *count += 1;
                    Next::Jump(goto.target_id)
                } else {
                    // Ready for the next time the flow comes by.
                    loops.remove(&action.id);
                    Next::Continue
                }
            }
            ActionKind::ConferenceJoin(join) => {
                self.join_conference(join.conference_id, ctx);
                Next::Wait
            }
            ActionKind::Connect(connect) => {
                if let Some(bad) = std::iter::once(&connect.source).chain(&connect.destinations).find(|a| !plausible(a))
                {
                    log::warn!("activeflow {}: connect skipped: {:?} is not an address", self.row.id, bad.target);
                    return Next::Continue;
                }
                self.connect(connect.source, connect.destinations, ctx);
                Next::Wait
            }
            ActionKind::WebhookSend(send) => self.webhook_send(send, ctx),
            ActionKind::MessageSend(send) => {
                if let Some(bad) = std::iter::once(&send.source).chain(&send.destinations).find(|a| !plausible(a)) {
                    log::warn!("activeflow {}: message_send skipped: {:?} is not an address", self.row.id, bad.target);
                    return Next::Continue;
                }
                let message = SendMessage {
                    customer_id: self.row.customer_id.clone(),
                    source: send.source,
                    destinations: send.destinations,
                    text: send.text,
                };
                let sent = self.deps.messages.send(message);
                ctx.wait(sent.into_actor(self).map(|answer, act, ctx| {
                    match answer {
                        Ok(Ok(message)) => log::info!("activeflow {}: sent message {}", act.row.id, message.id),
                        Ok(Err(e)) => log::warn!("activeflow {}: message_send failed: {e}", act.row.id),
                        Err(e) => log::warn!("activeflow {}: message_send failed: {e}", act.row.id),
                    }
                    act.done(Next::Continue, ctx);
                }));
                Next::Wait
            }
            ActionKind::Hangup(hangup) => {
                let reason = hangup.reason.unwrap_or(HangupReason::Normal);
                let hung = self.command(CallCommand::Hangup { reason });
                ctx.wait(hung.into_actor(self).map(|answer, act, ctx| {
                    if let Err(e) = answer {
                        log::info!("activeflow {}: hangup: {e}", act.row.id);
                    }
                    act.end(EndReason::Hangup, ctx);
                }));
                Next::Wait
            }
            ActionKind::Stop(_) => Next::End(EndReason::Stopped),
        }
    }

    /// The action's options with `${…}` replaced.
    fn substituted(&self, kind: &ActionKind) -> Result<ActionKind, serde_json::Error> {
        let mut value = serde_json::to_value(kind)?;
        self.vars.substitute_json(&mut value);
        serde_json::from_value(value)
    }

    /// A command to the run's own call.
    fn command(&self, command: CallCommand) -> impl Future<Output = Result<Call, CallError>> + 'static {
        send_command(self.call.clone(), self.call_id(), command)
    }

    fn command_then_continue(&mut self, command: CallCommand, ctx: &mut Context<Self>) {
        ctx.wait(self.command(command).into_actor(self).map(|answer, act, ctx| {
            if let Err(e) = answer {
                log::info!("activeflow {}: call command failed: {e}", act.row.id);
            }
            act.done(Next::Continue, ctx);
        }));
    }

    fn answer(&mut self, ctx: &mut Context<Self>) -> Next {
        if self.answered {
            return Next::Continue;
        }
        ctx.wait(self.command(CallCommand::Answer).into_actor(self).map(|answer, act, ctx| match answer {
            Ok(_) if act.answered => act.done(Next::Continue, ctx),
            Ok(_) => {
                act.timer = Some(ctx.run_later(ANSWER_TIMEOUT, |act, ctx| {
                    act.timer = None;
                    log::warn!("activeflow {}: the answer was not confirmed; going on", act.row.id);
                    act.done(Next::Continue, ctx);
                }));
                act.begin_wait(Wait::Answer, ctx);
            }
            Err(e) => {
                log::info!("activeflow {}: answer: {e}", act.row.id);
                act.done(Next::Continue, ctx);
            }
        }));
        Next::Wait
    }

    fn answer_before_joining(&mut self, ctx: &mut Context<Self>) {
        ctx.wait(self.command(CallCommand::Answer).into_actor(self).map(|answer, act, ctx| match answer {
            Ok(_) if act.answered => act.step(ctx),
            // `Answered` resumes the run (`done` leaves a conference frame where it is).
            Ok(_) => {
                act.timer = Some(ctx.run_later(ANSWER_TIMEOUT, |act, ctx| {
                    act.timer = None;
                    log::warn!("activeflow {}: not answered; the call does not join", act.row.id);
                    act.wait = Wait::Nothing;
                    act.abandon_join();
                    act.step(ctx);
                }));
                act.begin_wait(Wait::Answer, ctx);
            }
            Err(e) => {
                log::info!("activeflow {}: cannot answer to join the conference: {e}", act.row.id);
                act.abandon_join();
                act.step(ctx);
            }
        }));
    }

    /// Drops the conference frame on top without joining: the conference lets the
    /// participant go.
    fn abandon_join(&mut self) {
        if let Some(Frame::Conference(join)) = self.frames.pop() {
            release(&join, &self.row.customer_id);
        }
    }

    fn play(&mut self, media: Playback, ctx: &mut Context<Self>) {
        let call = self.call.clone();
        let started = async move {
            match call {
                Some(call) => call.send(StartPlayback { media }).await.unwrap_or(Err(CallError::NotLive)),
                None => Err(CallError::NotLive),
            }
        };
        ctx.wait(started.into_actor(self).map(|answer, act, ctx| match answer {
            Ok(playback) => act.begin_wait(Wait::Playback(playback), ctx),
            Err(e) => {
                log::info!("activeflow {}: playback not started: {e}", act.row.id);
                act.done(Next::Continue, ctx);
            }
        }));
    }

    fn join_conference(&mut self, conference_id: callplane_schema::ids::ConferenceId, ctx: &mut Context<Self>) {
        let join = Join { customer_id: self.row.customer_id.clone(), conference_id, call_id: self.call_id() };
        let joined = self.deps.conferences.send(join);
        ctx.wait(joined.into_actor(self).map(|answer, act, ctx| {
            match answer {
                Ok(Ok(join)) => {
                    // Past the `conference_join` first: that is where the run goes on
                    // once the conference's frames are done.
                    act.wait = Wait::Nothing;
                    act.advance(Next::Continue);
                    act.frames.extend(join_frames(join));
                    act.step(ctx);
                }
                answer => {
                    log::info!("activeflow {}: conference_join failed: {answer:?}", act.row.id);
                    act.done(Next::Continue, ctx);
                }
            }
        }));
    }

    fn connect(&mut self, source: Address, destinations: Vec<Address>, ctx: &mut Context<Self>) {
        let create = CreateCalls {
            customer_id: self.row.customer_id.clone(),
            source,
            destinations,
            flow_id: None,
            actions: "[]".to_owned(),
            variables: "{}".to_owned(),
            owner_id: None,
            idempotency: None,
        };
        let calls = self.deps.calls.clone();
        let observer = ctx.address().recipient::<CallNews>();
        let dialled = async move {
            let answer = calls.send(create).await.map_err(|e| CallError::Media(e.to_string()))??;
            let mut peers = Vec::with_capacity(answer.calls.len());
            for call in answer.calls {
                let addr = calls.send(Locate { call_id: call.id.clone() }).await.ok().flatten();
                let status = match &addr {
                    Some(addr) => {
                        let observe = Observe { customer_id: None, observer: observer.clone(), activeflow_id: None };
                        match addr.send(observe).await {
                            Ok(Ok(observed)) => observed.call.status,
                            _ => CallStatus::Ended,
                        }
                    }
                    None => CallStatus::Ended,
                };
                peers.push((Peer { id: call.id, addr }, status));
            }
            Ok::<_, CallError>(peers)
        };
        ctx.wait(dialled.into_actor(self).map(|answer, act, ctx| {
            let peers = match answer {
                Ok(peers) => peers,
                Err(e) => {
                    log::info!("activeflow {}: connect failed: {e}", act.row.id);
                    return act.done(Next::Continue, ctx);
                }
            };
            let answered: Vec<CallId> =
                peers.iter().filter(|(_, s)| *s == CallStatus::Active).map(|(p, _)| p.id.clone()).collect();
            let live = peers.into_iter().filter(|(_, s)| s.is_live()).map(|(p, _)| p).collect();
            act.wait = Wait::Connect(Connecting { peers: live, winner: None, bridged: false });
            if let Some(first) = answered.into_iter().next() {
                act.peer_answered(first, ctx);
            }
            if act.connect_failed() {
                log::info!("activeflow {}: connect: nobody answered", act.row.id);
                return act.done(Next::Continue, ctx);
            }
            if let Wait::Connect(connecting) = std::mem::replace(&mut act.wait, Wait::Nothing) {
                act.begin_wait(Wait::Connect(connecting), ctx);
            }
        }));
    }

    fn connect_failed(&self) -> bool {
        matches!(&self.wait, Wait::Connect(c) if c.peers.is_empty() && c.winner.is_none())
    }

    /// A peer of the `connect` answered: the first one wins, the others are hung up.
    fn peer_answered(&mut self, id: CallId, ctx: &mut Context<Self>) {
        let Wait::Connect(connecting) = &mut self.wait else { return };
        if connecting.winner.is_some() {
            return;
        }
        connecting.winner = Some(id.clone());
        connecting.peers.iter().filter(|p| p.id != id).for_each(hang_up_peer);
        connecting.peers.retain(|p| p.id == id);
        if self.answered {
            self.bridge(id, ctx);
        } else {
            // An incoming call the flow has not answered yet: answer it, bridge after.
            ctx.spawn(self.command(CallCommand::Answer).into_actor(self).map(|answer, act, _| {
                if let Err(e) = answer {
                    log::info!("activeflow {}: connect could not answer the call: {e}", act.row.id);
                }
            }));
        }
    }

    fn bridge(&mut self, peer: CallId, ctx: &mut Context<Self>) {
        let Wait::Connect(connecting) = &mut self.wait else { return };
        if connecting.bridged {
            return;
        }
        connecting.bridged = true;
        let bridged = self.command(CallCommand::Bridge { peer });
        ctx.spawn(bridged.into_actor(self).map(|answer, act, _| {
            if let Err(e) = answer {
                log::warn!("activeflow {}: connect could not bridge: {e}", act.row.id);
            }
        }));
    }

    fn on_peer_news(&mut self, news: CallNews, ctx: &mut Context<Self>) {
        match news.kind {
            NewsKind::Answered => self.peer_answered(news.call_id, ctx),
            NewsKind::Ended { .. } => {
                let Wait::Connect(connecting) = &mut self.wait else { return };
                connecting.peers.retain(|p| p.id != news.call_id);
                if connecting.winner.as_ref() == Some(&news.call_id) {
                    // Either side hanging up ends both; the run ends with its call.
                    ctx.spawn(self.command(CallCommand::Hangup { reason: HangupReason::Normal }).into_actor(self).map(
                        |answer, act, _| {
                            if let Err(e) = answer {
                                log::info!("activeflow {}: connect hang-up: {e}", act.row.id);
                            }
                        },
                    ));
                } else if self.connect_failed() {
                    log::info!("activeflow {}: connect: nobody answered", self.row.id);
                    self.done(Next::Continue, ctx);
                }
            }
            NewsKind::Digit(_) | NewsKind::PlaybackFinished { .. } => {}
        }
    }

    fn webhook_send(&mut self, send: action::WebhookSend, ctx: &mut Context<Self>) -> Next {
        let body = match &send.data {
            None => serde_json::to_vec(&self.vars.snapshot()),
            Some(Value::String(text)) => Ok(text.clone().into_bytes()),
            Some(data) => serde_json::to_vec(data),
        };
        let body = match body {
            Ok(body) => body,
            Err(e) => {
                log::warn!("activeflow {}: webhook_send skipped: {e}", self.row.id);
                return Next::Continue;
            }
        };
        let request = WebhookRequest {
            db: self.deps.db.clone(),
            http: self.deps.http.clone(),
            customer_id: self.row.customer_id.clone(),
            activeflow_id: self.row.id.to_string(),
            method: send.method,
            uri: send.uri,
            body,
        };
        if !send.sync {
            // Outlives the run: a hang-up right after must not cancel the request.
            let id = self.row.id.clone();
            actix::spawn(async move {
                if let Err(e) = request.send(false).await {
                    log::warn!("activeflow {id}: webhook_send failed: {e}");
                }
            });
            return Next::Continue;
        }
        ctx.wait(request.send(true).into_actor(self).map(|answer, act, ctx| {
            match answer {
                Ok(Some(values)) => {
                    for (key, value) in values.into_iter().take(MAX_ANSWER_VARIABLES) {
                        if key.is_empty() || key.len() > 255 || key.starts_with(RESERVED_PREFIX) {
                            continue;
                        }
                        let value = match value {
                            Value::String(s) => s,
                            Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        act.vars.set(&key, &value);
                    }
                }
                Ok(None) => {}
                Err(e) => log::warn!("activeflow {}: webhook_send failed: {e}", act.row.id),
            }
            act.done(Next::Continue, ctx);
        }));
        Next::Wait
    }

    fn on_call_ended(&mut self, ctx: &mut Context<Self>) {
        if let Wait::Connect(connecting) = &self.wait {
            connecting.peers.iter().for_each(hang_up_peer);
        }
        self.end(EndReason::CallEnded, ctx);
    }

    /// Ends the run: records it (`activeflow.ended`) and stops the actor.
    fn end(&mut self, reason: EndReason, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        ctx.wait(self.finish(reason).map(|result, act, ctx| {
            if let Err(e) = result {
                log::error!("activeflow {}: its end was not recorded: {e}", act.row.id);
            }
            ctx.stop();
        }));
    }

    /// Marks the run ended and writes it, retrying a failed write a few times.
    fn finish(&mut self, reason: EndReason) -> ResponseActFuture<Self, Result<Activeflow, DbError>> {
        self.ended = true;
        if let Wait::Connect(connecting) = &self.wait {
            // Stopped while dialling: the calls not yet connected have no one to talk to.
            connecting.peers.iter().filter(|p| connecting.winner.as_ref() != Some(&p.id)).for_each(hang_up_peer);
        }
        // Joins the run admitted but never entered would wait for ever.
        for frame in &self.frames {
            if let Frame::Conference(join) = frame
                && !matches!(&self.wait, Wait::Conference(p) if *p == join.participant)
            {
                release(join, &self.row.customer_id);
            }
        }
        self.wait = Wait::Nothing;
        let now = callplane_schema::time::now();
        self.row.status = ActiveflowStatus::Ended;
        self.row.end_reason = Some(reason);
        self.row.tm_update = now;
        self.row.tm_end = Some(now);
        self.row.variables = activeflow::encode_variables(self.vars.stored());
        let row = self.row.clone();
        let db = self.deps.db.clone();
        log::info!("activeflow {} ended: {reason} after {} actions", row.id, row.executed_actions);
        Box::pin(
            async move {
                let mut attempt = 0;
                loop {
                    match persist(&db, row.clone(), "activeflow.ended").await {
                        Ok(view) => return Ok(view),
                        Err(e) if attempt + 1 < END_ATTEMPTS => {
                            log::warn!("activeflow {}: end not recorded, retrying: {e}", row.id);
                            attempt += 1;
                            tokio::time::sleep(RETRY_AFTER).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            .into_actor(self),
        )
    }
}

/// The frames of a conference join, in the order they are pushed: the post-flow runs
/// last, the pre-flow first.
fn join_frames(join: PreparedJoin) -> Vec<Frame> {
    let pre = Frame::flow(join.pre_flow.clone());
    let post = Frame::flow(join.post_flow.clone());
    post.into_iter().chain(std::iter::once(Frame::Conference(join))).chain(pre).collect()
}

/// Tells a conference that an admitted call will not enter after all.
fn release(join: &PreparedJoin, customer_id: &callplane_schema::ids::CustomerId) {
    join.conference.do_send(RemoveParticipant {
        customer_id: customer_id.clone(),
        conference_id: join.conference_id.clone(),
        participant: join.participant.clone(),
    });
}

/// Writes the run's row with its event; the row as the API shows it.
async fn persist(db: &Db, row: ActiveflowRow, event_type: &'static str) -> Result<Activeflow, DbError> {
    db.write(move |tx| {
        activeflow::save(tx.conn, &row)?;
        let view = row.view();
        tx.emit(NewEvent::new(event_type, Some(&row.customer_id), &row.id, &view)?)?;
        Ok(view)
    })
    .await
}

async fn send_command(addr: Option<Addr<CallActor>>, call_id: CallId, command: CallCommand) -> Result<Call, CallError> {
    match addr {
        Some(addr) => {
            addr.send(Command { call_id, customer_id: None, command }).await.unwrap_or(Err(CallError::NotLive))
        }
        None => Err(CallError::NotLive),
    }
}

/// Hangs up a `connect` peer without waiting for the answer.
fn hang_up_peer(peer: &Peer) {
    let hangup = send_command(peer.addr.clone(), peer.id.clone(), CallCommand::Hangup { reason: HangupReason::Normal });
    let id = peer.id.clone();
    actix::spawn(async move {
        if let Err(e) = hangup.await {
            log::debug!("call {id}: not hung up: {e}");
        }
    });
}

/// An address that can be dialled or messaged once its variables are substituted.
fn plausible(address: &Address) -> bool {
    let target = address.target.as_str();
    match address.kind {
        AddressType::Tel => target
            .strip_prefix('+')
            .is_some_and(|d| (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())),
        AddressType::Agent | AddressType::Conference => uuid::Uuid::parse_str(target).is_ok(),
        AddressType::Sip | AddressType::Extension => !target.is_empty() && target.len() <= 255,
    }
}

/// Takes a complete input off the front of `buffer`: up to a terminating key (not part
/// of the input) or `length` digits. `None` while neither has arrived.
fn take_input(buffer: &mut String, input: &DigitsReceive) -> Option<String> {
    let mut digits = String::new();
    for (i, c) in buffer.char_indices() {
        let end = i + c.len_utf8();
        if input.key.contains(c) {
            *buffer = buffer[end..].to_owned();
            return Some(digits);
        }
        digits.push(c);
        if input.length > 0 && digits.len() == input.length as usize {
            *buffer = buffer[end..].to_owned();
            return Some(digits);
        }
    }
    None
}

/// At the timeout: whatever arrived (up to `length`) is the input.
fn take_all(buffer: &mut String, input: &DigitsReceive) -> String {
    let take = match input.length {
        0 => buffer.len(),
        n => buffer.len().min(n as usize),
    };
    let digits = buffer[..take].to_owned();
    *buffer = buffer[take..].to_owned();
    digits
}

/// A `webhook_send` request, signed with the customer's flow signing secret.
struct WebhookRequest {
    db: Db,
    http: Outbound,
    customer_id: callplane_schema::ids::CustomerId,
    activeflow_id: String,
    method: WebhookMethod,
    uri: String,
    body: Vec<u8>,
}

impl WebhookRequest {
    /// Sends it; with `read_answer`, the answer's JSON object.
    async fn send(self, read_answer: bool) -> Result<Option<serde_json::Map<String, Value>>, String> {
        let secret = signing_secret(&self.db, &self.customer_id).await.map_err(|e| e.to_string())?;
        let method = match self.method {
            WebhookMethod::Post => awc::http::Method::POST,
            WebhookMethod::Put => awc::http::Method::PUT,
        };
        let mut request = self
            .http
            .request(method, &self.uri)
            .map_err(|e| e.to_string())?
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("X-VoIPBIN-Activeflow-Id", self.activeflow_id.as_str()));
        for header in signature::headers(&secret, chrono::Utc::now().timestamp(), &self.body) {
            request = request.insert_header(header);
        }
        let mut response = request.send_body(self.body).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{} answered {}", self.uri, response.status()));
        }
        if !read_answer {
            return Ok(None);
        }
        let bytes = response.body().limit(MAX_ANSWER_BYTES).await.map_err(|e| e.to_string())?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(values)) => Ok(Some(values)),
            Ok(_) => Err("the answer is not a JSON object".to_owned()),
            Err(e) => Err(format!("the answer is not JSON: {e}")),
        }
    }
}

/// The customer's flow signing secret, made on first use.
pub async fn signing_secret(db: &Db, customer_id: &callplane_schema::ids::CustomerId) -> Result<String, DbError> {
    let customer = customer_id.clone();
    if let Some(secret) = db.read(move |conn| flow_secret::get(conn, &customer)).await? {
        return Ok(secret.secret);
    }
    let customer = customer_id.clone();
    let fresh = super::new_signing_secret();
    Ok(db.write(move |tx| flow_secret::get_or_insert(tx.conn, &customer, &fresh)).await?.secret)
}

impl Actor for FlowRun {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Room for a burst of digits while the run waits on something else: a digit its
        // call cannot hand over stays with the call until the next run.
        ctx.set_mailbox_capacity(MAX_DIGITS);
        let (calls, db) = (self.deps.calls.clone(), self.deps.db.clone());
        let call_id = self.call_id();
        let (customer_id, activeflow_id) = (self.row.customer_id.clone(), self.row.id.clone());
        let observer = ctx.address().recipient::<CallNews>();
        let attach = async move {
            for _ in 0..LOCATE_ATTEMPTS {
                if let Some(addr) = calls.send(Locate { call_id: call_id.clone() }).await.ok().flatten() {
                    let observe =
                        Observe { customer_id: Some(customer_id), observer, activeflow_id: Some(activeflow_id) };
                    let observed = addr.send(observe).await.ok()?.ok()?;
                    return Some((addr, observed));
                }
                // A new call's row is committed (and its run started from that commit)
                // before its manager starts its actor: wait for the actor while the row
                // says the call is live.
                let id = call_id.clone();
                let row = db.read(move |conn| callplane_schema::models::call::get_any(conn, &id)).await.ok()?;
                if !row.status.is_live() {
                    return None;
                }
                tokio::time::sleep(LOCATE_RETRY).await;
            }
            None
        };
        ctx.wait(attach.into_actor(self).map(|attached, act, ctx| {
            let Some((addr, observed)) = attached else {
                log::info!("activeflow {}: its call is gone", act.row.id);
                return act.end(EndReason::CallEnded, ctx);
            };
            act.call = Some(addr);
            act.digits = observed.digits;
            act.answered = observed.call.status == CallStatus::Active;
            let status = observed.call.status;
            let incoming = observed.call.direction == Direction::Incoming;
            act.vars.set_call(observed.call);
            match status {
                CallStatus::Ended | CallStatus::Terminating => act.end(EndReason::CallEnded, ctx),
                // An incoming call's flow answers it; an outgoing call's flow begins
                // when the far end answers.
                CallStatus::Active => act.step(ctx),
                _ if incoming => act.step(ctx),
                _ => act.wait = Wait::Start,
            }
        }));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.deps.manager.do_send(RunEnded { activeflow_id: self.row.id.clone(), call_id: self.call_id() });
    }
}

impl Handler<CallNews> for FlowRun {
    type Result = ();

    fn handle(&mut self, news: CallNews, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        if news.call_id != self.row.reference_id {
            return self.on_peer_news(news, ctx);
        }
        match news.kind {
            NewsKind::Answered => {
                self.answered = true;
                match &self.wait {
                    Wait::Start => {
                        self.wait = Wait::Nothing;
                        self.step(ctx);
                    }
                    Wait::Answer => self.done(Next::Continue, ctx),
                    Wait::Connect(Connecting { winner: Some(peer), bridged: false, .. }) => {
                        let peer = peer.clone();
                        self.bridge(peer, ctx);
                    }
                    _ => {}
                }
            }
            NewsKind::Ended { .. } => self.on_call_ended(ctx),
            NewsKind::Digit(digit) => {
                if self.digits.len() < MAX_DIGITS {
                    self.digits.push(digit);
                }
                if let Wait::Digits(input) = &self.wait
                    && let Some(digits) = take_input(&mut self.digits, input)
                {
                    self.vars.set(DIGITS_VARIABLE, &digits);
                    self.done(Next::Continue, ctx);
                }
            }
            NewsKind::PlaybackFinished { playback } => {
                if matches!(self.wait, Wait::Playback(id) if id == playback) {
                    self.done(Next::Continue, ctx);
                }
            }
        }
    }
}

impl Handler<Left> for FlowRun {
    type Result = ();

    fn handle(&mut self, msg: Left, ctx: &mut Context<Self>) {
        if self.ended || !matches!(&self.wait, Wait::Conference(p) if *p == msg.participant) {
            return;
        }
        // Out of the conference: on to its post-flow, then past the `conference_join`.
        self.wait = Wait::Nothing;
        self.frames.pop();
        self.step(ctx);
    }
}

impl Handler<StopRun> for FlowRun {
    type Result = AtomicResponse<Self, Result<Activeflow, FlowError>>;

    fn handle(&mut self, msg: StopRun, ctx: &mut Context<Self>) -> Self::Result {
        if msg.customer_id.as_ref().is_some_and(|c| *c != self.row.customer_id) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(FlowError::NotFound))));
        }
        if self.ended {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(self.row.view()))));
        }
        self.cancel_timer(ctx);
        AtomicResponse::new(Box::pin(self.finish(msg.reason).map(|result, _, ctx| {
            ctx.stop();
            result.map_err(FlowError::Db)
        })))
    }
}

/// Variables a run starts with: the call's creation variables.
pub(super) fn initial_variables(json: &str) -> BTreeMap<String, String> {
    serde_json::from_str(json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(key: &str, length: u32) -> DigitsReceive {
        DigitsReceive { duration: 1000, key: key.to_owned(), length }
    }

    #[test]
    fn digits_end_at_the_key_or_the_length() {
        let mut buffer = "1234#56".to_owned();
        assert_eq!(take_input(&mut buffer, &input("#", 10)).as_deref(), Some("1234"));
        assert_eq!(buffer, "56");
        assert_eq!(take_input(&mut buffer, &input("#", 10)), None);
        assert_eq!(take_input(&mut buffer, &input("", 2)).as_deref(), Some("56"));
        let mut buffer = "123".to_owned();
        assert_eq!(take_all(&mut buffer, &input("#", 2)), "12");
        assert_eq!(buffer, "3");
    }

    #[test]
    fn addresses_after_substitution() {
        assert!(plausible(&Address::new(AddressType::Tel, "+15551234567")));
        assert!(!plausible(&Address::new(AddressType::Tel, "")));
        assert!(!plausible(&Address::new(AddressType::Tel, "+1555x")));
    }
}
