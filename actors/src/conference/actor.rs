//! One actor per live conference. It alone writes the conference's row and its
//! participants', admits calls, bridges them when their run says they are ready, and
//! lets them go when their call ends, when they are removed, when the conference ends or
//! times out, or (for `connect`) when fewer than two remain. Its handlers that change
//! state are atomic, so admissions and departures never interleave.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::ids::{CallId, ConferencecallId, CustomerId, FlowId};
use callplane_schema::models::action::Action;
use callplane_schema::models::call::CallStatus;
use callplane_schema::models::conference::{
    self, Conference, ConferenceRow, ConferenceStatus, ConferenceType, Conferencecall, ConferencecallRow,
    ConferencecallStatus,
};
use callplane_schema::models::event::NewEvent;
use callplane_schema::models::flow;
use callplane_schema::{Db, DbError, WriteCtx};

use super::{
    ConferenceChanges, ConferenceDeps, ConferenceError, EndConference, Enter, Join, JoinConference, JoinTarget, Left,
    MAX_PARTICIPANTS, PreparedJoin, Reap, RemoveParticipant, UpdateConference,
};
use crate::call::{CallActor, CallCommand, CallError, CallNews, Command, CreateCalls, Locate, NewsKind, Observe};
use crate::flow::StartJoin;

struct Participant {
    row: ConferencecallRow,
    call: Option<Addr<CallActor>>,
    /// The run waiting in the conference, told when the participant leaves.
    waiter: Option<Recipient<Left>>,
}

pub struct ConferenceActor {
    row: ConferenceRow,
    deps: Arc<ConferenceDeps>,
    /// Joining or joined.
    participants: HashMap<ConferencecallId, Participant>,
    /// Participants an earlier process left behind, let go at start.
    recovered: Vec<ConferencecallRow>,
    timeout: Option<SpawnHandle>,
    ending: bool,
}

type Reply<T> = ResponseActFuture<ConferenceActor, Result<T, ConferenceError>>;

fn reply<T: 'static>(result: Result<T, ConferenceError>) -> Reply<T> {
    Box::pin(fut::ready(result))
}

impl ConferenceActor {
    pub(super) fn new(row: ConferenceRow, deps: Arc<ConferenceDeps>, recovered: Vec<ConferencecallRow>) -> Self {
        ConferenceActor { row, deps, participants: HashMap::new(), recovered, timeout: None, ending: false }
    }

    fn owned_by(&self, customer_id: &CustomerId) -> Result<(), ConferenceError> {
        if *customer_id == self.row.customer_id { Ok(()) } else { Err(ConferenceError::NotFound) }
    }

    fn expect_live(&self) -> Result<(), ConferenceError> {
        if self.row.status.is_live() && !self.ending { Ok(()) } else { Err(ConferenceError::NotLive) }
    }

    fn arm_timeout(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timeout.take() {
            ctx.cancel_future(handle);
        }
        if self.row.timeout <= 0 {
            return;
        }
        let deadline = self.row.tm_create + chrono::Duration::seconds(self.row.timeout);
        let left = (deadline - callplane_schema::time::now()).to_std().unwrap_or(Duration::ZERO);
        self.timeout = Some(ctx.run_later(left, |act, ctx| {
            act.timeout = None;
            log::info!("conference {}: timed out", act.row.id);
            act.end_now(ctx);
        }));
    }

    /// Admits a call: checks it, writes its `joining` participant and gathers the
    /// conference's pre- and post-flow.
    fn admit(&mut self, call_id: CallId, ctx: &mut Context<Self>) -> Reply<(Conferencecall, PreparedJoin)> {
        if let Err(e) = self.expect_live() {
            return reply(Err(e));
        }
        if self.participants.len() >= MAX_PARTICIPANTS {
            return reply(Err(ConferenceError::Full));
        }
        if self.participants.values().any(|p| p.row.call_id == call_id) {
            return reply(Err(ConferenceError::CallInConference(self.row.id.clone())));
        }
        let deps = self.deps.clone();
        let row = self.row.clone();
        let observer = ctx.address().recipient::<CallNews>();
        let conference = ctx.address();
        let prepare = async move {
            let db = &deps.db;
            let id = call_id.clone();
            if let Some(other) = db.read(move |conn| conference::conference_of_call(conn, &id)).await? {
                return Err(ConferenceError::CallInConference(other));
            }
            let addr = deps.calls.send(Locate { call_id: call_id.clone() }).await.ok().flatten();
            let addr = addr.ok_or(ConferenceError::CallNotLive)?;
            let observe = Observe { customer_id: Some(row.customer_id.clone()), observer, activeflow_id: None };
            let observed = match addr.send(observe).await {
                Ok(Ok(observed)) => observed,
                Ok(Err(CallError::NotFound)) | Err(_) => return Err(ConferenceError::CallNotLive),
                Ok(Err(e)) => return Err(e.into()),
            };
            if matches!(observed.call.status, CallStatus::Terminating | CallStatus::Ended) {
                return Err(ConferenceError::CallNotLive);
            }
            let pre_flow = flow_actions(db, &row.customer_id, row.pre_flow_id.clone()).await?;
            let post_flow = flow_actions(db, &row.customer_id, row.post_flow_id.clone()).await?;
            let participant = ConferencecallRow::new(&row, call_id);
            let written = participant.clone();
            let view = db
                .write(move |tx| {
                    conference::insert_participant(tx.conn, &written)?;
                    conference::participant_view(tx.conn, &written)
                })
                .await?;
            let join = PreparedJoin {
                conference,
                conference_id: row.id.clone(),
                participant: participant.id.clone(),
                pre_flow,
                post_flow,
            };
            Ok((participant, addr, view, join))
        };
        Box::pin(prepare.into_actor(self).map(|result, act, _| {
            let (row, call, view, join) = result?;
            log::info!("conference {}: call {} is joining as {}", act.row.id, row.call_id, row.id);
            act.participants.insert(row.id.clone(), Participant { row, call: Some(call), waiter: None });
            Ok((view, join))
        }))
    }

    /// [`ConferenceActor::leave`] for the actor's own reasons: nobody awaits the answer.
    fn leave_now(&mut self, id: &ConferencecallId, ctx: &mut Context<Self>) {
        let left = self.leave(id);
        ctx.wait(left.map(|result, act, _| {
            if let Err(e) = result {
                log::error!("conference {}: a participant was not let go: {e}", act.row.id);
            }
        }));
    }

    /// [`ConferenceActor::end`] for the actor's own reasons (timeout, `connect` rule).
    fn end_now(&mut self, ctx: &mut Context<Self>) {
        let ended = self.end(ctx);
        ctx.wait(ended.map(|result, act, _| {
            if let Err(e) = result {
                log::error!("conference {}: not ended: {e}", act.row.id);
            }
        }));
    }

    /// Lets a participant go: unbridged, `left`, its run told. A `connect` conference
    /// with fewer than two participants left ends.
    fn leave(&mut self, id: &ConferencecallId) -> Reply<Conferencecall> {
        let Some(participant) = self.participants.remove(id) else {
            return reply(Err(ConferenceError::ParticipantNotFound));
        };
        let row = depart(participant);
        let db = self.deps.db.clone();
        let write = async move { write_participant(&db, row, "conference.left").await };
        Box::pin(write.into_actor(self).map(|result, act, ctx| {
            let view = result?;
            log::info!("conference {}: {} left", act.row.id, view.id);
            if act.row.conference_type == ConferenceType::Connect && act.participants.len() < 2 {
                act.end_now(ctx);
            }
            Ok(view)
        }))
    }

    /// Ends the conference: `terminating` at once (the answer), then every participant
    /// leaves, then `terminated` and the actor stops.
    fn end(&mut self, ctx: &mut Context<Self>) -> Reply<Conference> {
        if self.ending || !self.row.status.is_live() {
            let row = self.row.clone();
            let db = self.deps.db.clone();
            return Box::pin(
                async move { db.read(move |conn| conference::view(conn, &row)).await.map_err(ConferenceError::from) }
                    .into_actor(self),
            );
        }
        self.ending = true;
        if let Some(handle) = self.timeout.take() {
            ctx.cancel_future(handle);
        }
        let mut row = self.row.clone();
        row.status = ConferenceStatus::Terminating;
        row.tm_update = callplane_schema::time::now();
        let db = self.deps.db.clone();
        let write = async move { write_conference(&db, row, "conference.updated").await };
        Box::pin(write.into_actor(self).map(|result, act, ctx| {
            let (row, view) = result?;
            act.row = row;
            ctx.wait(act.finish());
            Ok(view)
        }))
    }

    /// The second half of [`ConferenceActor::end`].
    fn finish(&mut self) -> ResponseActFuture<Self, ()> {
        let departures: Vec<ConferencecallRow> = self.participants.drain().map(|(_, p)| depart(p)).collect();
        let mut row = self.row.clone();
        let now = callplane_schema::time::now();
        row.status = ConferenceStatus::Terminated;
        row.tm_end = Some(now);
        row.tm_update = now;
        let db = self.deps.db.clone();
        let write = async move {
            db.write(move |tx| {
                write_departures(tx, &departures)?;
                conference::save(tx.conn, &row)?;
                let view = conference::view(tx.conn, &row)?;
                tx.emit(NewEvent::new("conference.ended", Some(&row.customer_id), &row.id, &view)?)?;
                Ok(row.clone())
            })
            .await
        };
        Box::pin(write.into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(row) => {
                    log::info!("conference {} terminated", row.id);
                    act.row = row;
                }
                Err(e) => log::error!("conference {}: its end was not recorded: {e}", act.row.id),
            }
            ctx.stop();
        }))
    }

    /// Lets every participant go in one transaction: after a restart, their calls are gone.
    fn let_everyone_go(&mut self) -> ResponseActFuture<Self, ()> {
        let departures: Vec<ConferencecallRow> = self.participants.drain().map(|(_, p)| depart(p)).collect();
        let db = self.deps.db.clone();
        let write = async move { db.write(move |tx| write_departures(tx, &departures)).await };
        Box::pin(write.into_actor(self).map(|result, act, ctx| {
            if let Err(e) = result {
                log::error!("conference {}: its participants were not let go: {e}", act.row.id);
            }
            if act.row.conference_type == ConferenceType::Connect {
                act.end_now(ctx);
            }
        }))
    }
}

/// Writes participants as `left`, each with `conference.left`.
fn write_departures(tx: &mut WriteCtx<'_>, departures: &[ConferencecallRow]) -> Result<(), DbError> {
    for participant in departures {
        conference::save_participant(tx.conn, participant)?;
        let view = conference::participant_view(tx.conn, participant)?;
        let (customer, conference) = (&participant.customer_id, &participant.conference_id);
        tx.emit(NewEvent::new("conference.left", Some(customer), conference, &view)?)?;
    }
    Ok(())
}

/// A participant on its way out: unbridged, its run told; the row to write as `left`.
fn depart(participant: Participant) -> ConferencecallRow {
    if participant.row.status == ConferencecallStatus::Joined
        && let Some(call) = &participant.call
    {
        let unbridge = CallCommand::Unbridge;
        call.do_send(Command { call_id: participant.row.call_id.clone(), customer_id: None, command: unbridge });
    }
    if let Some(waiter) = &participant.waiter {
        waiter.do_send(Left { participant: participant.row.id.clone() });
    }
    let mut row = participant.row;
    let now = callplane_schema::time::now();
    row.status = ConferencecallStatus::Left;
    row.tm_leave = Some(now);
    row.tm_update = now;
    row
}

async fn flow_actions(db: &Db, customer_id: &CustomerId, flow_id: Option<FlowId>) -> Result<Vec<Action>, DbError> {
    let Some(flow_id) = flow_id else { return Ok(Vec::new()) };
    let customer_id = customer_id.clone();
    match db.read(move |conn| flow::get(conn, &customer_id, &flow_id)).await {
        Ok(flow) => Ok(flow.actions()),
        // A deleted flow plays nothing.
        Err(DbError::NotFound) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

async fn write_participant(
    db: &Db,
    row: ConferencecallRow,
    event_type: &'static str,
) -> Result<Conferencecall, ConferenceError> {
    Ok(db
        .write(move |tx| {
            conference::save_participant(tx.conn, &row)?;
            let view = conference::participant_view(tx.conn, &row)?;
            // Under the conference's id: its events stay in order for subscribers.
            tx.emit(NewEvent::new(event_type, Some(&row.customer_id), &row.conference_id, &view)?)?;
            Ok(view)
        })
        .await?)
}

async fn write_conference(
    db: &Db,
    row: ConferenceRow,
    event_type: &'static str,
) -> Result<(ConferenceRow, Conference), ConferenceError> {
    Ok(db
        .write(move |tx| {
            conference::save(tx.conn, &row)?;
            let view = conference::view(tx.conn, &row)?;
            tx.emit(NewEvent::new(event_type, Some(&row.customer_id), &row.id, &view)?)?;
            Ok((row.clone(), view))
        })
        .await?)
}

impl Actor for ConferenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.arm_timeout(ctx);
        let recovered = std::mem::take(&mut self.recovered);
        if recovered.is_empty() && self.row.status != ConferenceStatus::Terminating {
            return;
        }
        // Their calls did not survive the restart (the simulated network keeps none).
        log::info!("conference {}: letting go of {} participants after a restart", self.row.id, recovered.len());
        for row in recovered {
            self.participants.insert(row.id.clone(), Participant { row, call: None, waiter: None });
        }
        if self.row.status == ConferenceStatus::Terminating {
            self.ending = true;
            ctx.wait(self.finish());
            return;
        }
        ctx.wait(self.let_everyone_go());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.deps.reaper.do_send(Reap { conference_id: self.row.id.clone() });
    }
}

impl Handler<JoinConference> for ConferenceActor {
    type Result = AtomicResponse<Self, Result<Conferencecall, ConferenceError>>;

    fn handle(&mut self, msg: JoinConference, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.owned_by(&msg.customer_id).and_then(|()| self.expect_live()) {
            return AtomicResponse::new(reply(Err(e)));
        }
        let customer_id = msg.customer_id;
        let dialled: Reply<CallId> = match msg.target {
            JoinTarget::Call(call_id) => reply(Ok(call_id)),
            JoinTarget::Dial { source, destination } => {
                let create = CreateCalls {
                    customer_id: customer_id.clone(),
                    source,
                    destinations: vec![destination],
                    flow_id: None,
                    actions: "[]".to_owned(),
                    variables: "{}".to_owned(),
                    owner_id: None,
                    idempotency: None,
                };
                let calls = self.deps.calls.clone();
                Box::pin(
                    async move {
                        let answer = calls.send(create).await.map_err(|e| CallError::Media(e.to_string()))??;
                        answer.calls.into_iter().next().map(|c| c.id).ok_or(ConferenceError::CallNotLive)
                    }
                    .into_actor(self),
                )
            }
        };
        let admitted = dialled.then(|call_id, act, ctx| match call_id {
            Ok(call_id) => act.admit(call_id, ctx),
            Err(e) => reply(Err(e)),
        });
        AtomicResponse::new(Box::pin(admitted.map(move |result, act, ctx| {
            let (view, join) = result?;
            // Not awaited here: the run being replaced may be waiting on this actor.
            let start = StartJoin { customer_id, call_id: view.call_id.clone(), join };
            let participant = view.id.clone();
            ctx.spawn(act.deps.flows.send(start).into_actor(act).map(move |started, act, ctx| {
                if !matches!(started, Ok(Ok(_))) {
                    log::error!("conference {}: the join run did not start: {started:?}", act.row.id);
                    act.leave_now(&participant, ctx);
                }
            }));
            Ok(view)
        })))
    }
}

impl Handler<Join> for ConferenceActor {
    type Result = AtomicResponse<Self, Result<PreparedJoin, ConferenceError>>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.owned_by(&msg.customer_id) {
            return AtomicResponse::new(reply(Err(e)));
        }
        AtomicResponse::new(Box::pin(self.admit(msg.call_id, ctx).map(|result, _, _| result.map(|(_, join)| join))))
    }
}

impl Handler<Enter> for ConferenceActor {
    type Result = AtomicResponse<Self, Result<(), ConferenceError>>;

    fn handle(&mut self, msg: Enter, _: &mut Context<Self>) -> Self::Result {
        if self.ending {
            return AtomicResponse::new(reply(Err(ConferenceError::NotLive)));
        }
        let Some(participant) = self.participants.get_mut(&msg.participant) else {
            return AtomicResponse::new(reply(Err(ConferenceError::ParticipantNotFound)));
        };
        participant.waiter = Some(msg.waiter);
        let call = participant.call.clone();
        let call_id = participant.row.call_id.clone();
        let peers: Vec<CallId> = self
            .participants
            .values()
            .filter(|p| p.row.status == ConferencecallStatus::Joined)
            .map(|p| p.row.call_id.clone())
            .collect();
        let bridged = async move {
            let Some(call) = call else { return Err(ConferenceError::CallNotLive) };
            for peer in peers {
                let bridge =
                    Command { call_id: call_id.clone(), customer_id: None, command: CallCommand::Bridge { peer } };
                call.send(bridge).await.map_err(|_| ConferenceError::CallNotLive)??;
            }
            Ok(())
        };
        let id = msg.participant;
        AtomicResponse::new(Box::pin(bridged.into_actor(self).then(move |result, act, ctx| -> Reply<()> {
            if let Err(e) = result {
                // A call that cannot be bridged (not answered, gone) is not kept waiting.
                log::info!("conference {}: {id} could not be bridged: {e}", act.row.id);
                act.leave_now(&id, ctx);
                return reply(Err(e));
            }
            let Some(participant) = act.participants.get(&id) else {
                return reply(Err(ConferenceError::ParticipantNotFound));
            };
            let mut row = participant.row.clone();
            let now = callplane_schema::time::now();
            row.status = ConferencecallStatus::Joined;
            row.tm_join = Some(now);
            row.tm_update = now;
            let mut conference = act.row.clone();
            let progressing = conference.status == ConferenceStatus::Starting;
            if progressing {
                conference.status = ConferenceStatus::Progressing;
                conference.tm_update = now;
            }
            let db = act.deps.db.clone();
            let write = async move {
                db.write(move |tx| {
                    conference::save_participant(tx.conn, &row)?;
                    let view = conference::participant_view(tx.conn, &row)?;
                    tx.emit(NewEvent::new("conference.joined", Some(&row.customer_id), &row.conference_id, &view)?)?;
                    if progressing {
                        conference::save(tx.conn, &conference)?;
                        let view = conference::view(tx.conn, &conference)?;
                        tx.emit(NewEvent::new(
                            "conference.updated",
                            Some(&conference.customer_id),
                            &conference.id,
                            &view,
                        )?)?;
                    }
                    Ok((row.clone(), conference.clone()))
                })
                .await
            };
            Box::pin(write.into_actor(act).map(|result, act, _| {
                let (row, conference) = result?;
                log::info!("conference {}: {} joined", act.row.id, row.id);
                act.row = conference;
                if let Some(participant) = act.participants.get_mut(&row.id) {
                    participant.row = row;
                }
                Ok(())
            }))
        })))
    }
}

impl Handler<CallNews> for ConferenceActor {
    type Result = ();

    fn handle(&mut self, news: CallNews, ctx: &mut Context<Self>) {
        if !matches!(news.kind, NewsKind::Ended { .. }) || self.ending {
            return;
        }
        // A call is in a conference once at most.
        let gone = self.participants.values().find(|p| p.row.call_id == news.call_id).map(|p| p.row.id.clone());
        if let Some(id) = gone {
            self.leave_now(&id, ctx);
        }
    }
}

impl Handler<RemoveParticipant> for ConferenceActor {
    type Result = AtomicResponse<Self, Result<Conferencecall, ConferenceError>>;

    fn handle(&mut self, msg: RemoveParticipant, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.owned_by(&msg.customer_id) {
            return AtomicResponse::new(reply(Err(e)));
        }
        if self.ending {
            return AtomicResponse::new(reply(Err(ConferenceError::NotLive)));
        }
        AtomicResponse::new(self.leave(&msg.participant))
    }
}

impl Handler<EndConference> for ConferenceActor {
    type Result = AtomicResponse<Self, Result<Conference, ConferenceError>>;

    fn handle(&mut self, msg: EndConference, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.owned_by(&msg.customer_id) {
            return AtomicResponse::new(reply(Err(e)));
        }
        AtomicResponse::new(self.end(ctx))
    }
}

impl Handler<UpdateConference> for ConferenceActor {
    type Result = AtomicResponse<Self, Result<Conference, ConferenceError>>;

    fn handle(&mut self, msg: UpdateConference, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.owned_by(&msg.customer_id).and_then(|()| self.expect_live()) {
            return AtomicResponse::new(reply(Err(e)));
        }
        let ConferenceChanges { name, detail, timeout, pre_flow_id, post_flow_id } = msg.changes;
        let mut row = self.row.clone();
        row.name = name.unwrap_or(row.name);
        row.detail = detail.unwrap_or(row.detail);
        row.timeout = timeout.unwrap_or(row.timeout);
        row.pre_flow_id = pre_flow_id.unwrap_or(row.pre_flow_id);
        row.post_flow_id = post_flow_id.unwrap_or(row.post_flow_id);
        row.tm_update = callplane_schema::time::now();
        let db = self.deps.db.clone();
        let write = async move { write_conference(&db, row, "conference.updated").await };
        AtomicResponse::new(Box::pin(write.into_actor(self).map(|result, act, ctx| {
            let (row, view) = result?;
            act.row = row;
            act.arm_timeout(ctx);
            Ok(view)
        })))
    }
}
