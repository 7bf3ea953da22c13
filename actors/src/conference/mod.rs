//! Conferences: the conference manager, which creates conferences and starts, finds,
//! supervises and reaps one [`ConferenceActor`] per live conference; and the actor,
//! which alone writes its conference and participants.
//!
//! A call joins a conference through a flow run: the conference admits it (a
//! `joining` participant) and hands back its pre-flow and post-flow; the run plays the
//! pre-flow, asks to [`Enter`] (the call is bridged with the others: `joined`), waits
//! until the participant leaves ([`Left`]), then plays the post-flow. A join through the
//! API starts such a run on the call (replacing any run it had); a call to a conference
//! address and a flow's `conference_join` get there through their own run.

mod actor;

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use callplane_schema::Db;
use callplane_schema::DbError;
use callplane_schema::ids::{CallId, ConferenceId, ConferencecallId, CustomerId, FlowId};
use callplane_schema::models::action::Action;
use callplane_schema::models::address::Address;
use callplane_schema::models::conference::{
    self, Conference, ConferenceRow, Conferencecall, ConferencecallRow, NewConference,
};
use callplane_schema::models::event::NewEvent;
use prometheus::IntGauge;

pub use actor::ConferenceActor;

use crate::call::{CallError, CallManager};
use crate::flow::FlowManager;

/// Participants a conference holds at most (each joined pair is a bridge).
pub const MAX_PARTICIPANTS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConferenceError {
    #[error("conference not found")]
    NotFound,
    #[error("participant not found")]
    ParticipantNotFound,
    /// Terminated (or terminating): it takes no one and changes no more.
    #[error("the conference has ended")]
    NotLive,
    #[error("the conference has {MAX_PARTICIPANTS} participants already")]
    Full,
    #[error("the call is not live")]
    CallNotLive,
    #[error("the call is in conference {0} already")]
    CallInConference(ConferenceId),
    /// Dialling out for a join failed.
    #[error("{0}")]
    Call(#[from] CallError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A call admitted to a conference, for its flow run to play.
#[derive(Clone)]
pub struct PreparedJoin {
    pub conference: Addr<ConferenceActor>,
    pub conference_id: ConferenceId,
    pub participant: ConferencecallId,
    pub pre_flow: Vec<Action>,
    pub post_flow: Vec<Action>,
}

impl std::fmt::Debug for PreparedJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedJoin")
            .field("conference_id", &self.conference_id)
            .field("participant", &self.participant)
            .finish()
    }
}

/// What the conference actors share.
pub struct ConferenceDeps {
    pub db: Db,
    pub calls: Addr<CallManager>,
    pub flows: Addr<FlowManager>,
    reaper: Recipient<Reap>,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<Conference, ConferenceError>")]
pub struct CreateConference {
    pub new: NewConference,
}

/// The fields an update may change; `None` leaves a field alone, `Some(None)` clears a flow.
#[derive(Debug, Clone, Default)]
pub struct ConferenceChanges {
    pub name: Option<String>,
    pub detail: Option<String>,
    pub timeout: Option<i64>,
    pub pre_flow_id: Option<Option<FlowId>>,
    pub post_flow_id: Option<Option<FlowId>>,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<Conference, ConferenceError>")]
pub struct UpdateConference {
    pub customer_id: CustomerId,
    pub conference_id: ConferenceId,
    pub changes: ConferenceChanges,
}

/// Ends a conference: its participants leave. Answers it as `terminating`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Conference, ConferenceError>")]
pub struct EndConference {
    pub customer_id: CustomerId,
    pub conference_id: ConferenceId,
}

#[derive(Debug, Clone)]
pub enum JoinTarget {
    /// A live call of the customer.
    Call(CallId),
    /// Dial out first; the call joins when answered.
    Dial { source: Address, destination: Address },
}

/// `POST /v1.0/conferences/{id}/join`: answers the `joining` participant.
#[derive(Debug, Message)]
#[rtype(result = "Result<Conferencecall, ConferenceError>")]
pub struct JoinConference {
    pub customer_id: CustomerId,
    pub conference_id: ConferenceId,
    pub target: JoinTarget,
}

/// From a flow run's `conference_join`: admit the run's call.
#[derive(Debug, Message)]
#[rtype(result = "Result<PreparedJoin, ConferenceError>")]
pub struct Join {
    pub customer_id: CustomerId,
    pub conference_id: ConferenceId,
    pub call_id: CallId,
}

/// From the run of an admitted call, its pre-flow done: bridge it in. `waiter` hears
/// when it leaves.
#[derive(Message)]
#[rtype(result = "Result<(), ConferenceError>")]
pub struct Enter {
    pub participant: ConferencecallId,
    pub waiter: Recipient<Left>,
}

/// To the run that entered: the participant has left the conference.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Left {
    pub participant: ConferencecallId,
}

/// `DELETE /v1.0/conferencecalls/{id}`: answers the participant as it left.
#[derive(Debug, Message)]
#[rtype(result = "Result<Conferencecall, ConferenceError>")]
pub struct RemoveParticipant {
    pub customer_id: CustomerId,
    pub conference_id: ConferenceId,
    pub participant: ConferencecallId,
}

/// A conference actor has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reap {
    pub conference_id: ConferenceId,
}

/// Takes up conferences left live by an earlier process.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Recover;

pub struct ConferenceManager {
    deps: Arc<ConferenceDeps>,
    conferences: HashMap<ConferenceId, Addr<ConferenceActor>>,
    live: IntGauge,
}

impl ConferenceManager {
    pub fn start(
        db: Db,
        calls: Addr<CallManager>,
        flows: Addr<FlowManager>,
        registry: &prometheus::Registry,
    ) -> Result<Addr<ConferenceManager>, prometheus::Error> {
        let live = IntGauge::new("conferences_live", "Conferences with an actor (not yet terminated)")?;
        registry.register(Box::new(live.clone()))?;
        Ok(ConferenceManager::create(move |ctx| {
            let deps = Arc::new(ConferenceDeps { db, calls, flows, reaper: ctx.address().recipient() });
            ConferenceManager { deps, conferences: HashMap::new(), live }
        }))
    }

    fn spawn(&mut self, row: ConferenceRow, recovered: Vec<ConferencecallRow>) {
        let id = row.id.clone();
        let addr = ConferenceActor::new(row, self.deps.clone(), recovered).start();
        self.conferences.insert(id, addr);
        self.live.set(self.conferences.len() as i64);
    }

    /// Hands `msg` to the conference's actor; `NotLive` when it has none.
    fn forward<M, T>(&self, id: &ConferenceId, msg: M) -> ResponseFuture<Result<T, ConferenceError>>
    where
        M: Message<Result = Result<T, ConferenceError>> + Send + 'static,
        T: Send + 'static,
        ConferenceActor: Handler<M>,
    {
        let Some(addr) = self.conferences.get(id).filter(|a| a.connected()).cloned() else {
            return Box::pin(async { Err(ConferenceError::NotLive) });
        };
        Box::pin(async move { addr.send(msg).await.unwrap_or(Err(ConferenceError::NotLive)) })
    }
}

impl Actor for ConferenceManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<CreateConference> for ConferenceManager {
    type Result = ResponseActFuture<Self, Result<Conference, ConferenceError>>;

    fn handle(&mut self, msg: CreateConference, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        let row = ConferenceRow::new(msg.new);
        let write = async move {
            db.write(move |tx| {
                conference::insert(tx.conn, &row)?;
                let view = row.view(Vec::new());
                tx.emit(NewEvent::new("conference.created", Some(&row.customer_id), &row.id, &view)?)?;
                Ok((row.clone(), view))
            })
            .await
        };
        Box::pin(write.into_actor(self).map(|result, manager, _| {
            let (row, view) = result?;
            manager.spawn(row, Vec::new());
            Ok(view)
        }))
    }
}

impl Handler<UpdateConference> for ConferenceManager {
    type Result = ResponseFuture<Result<Conference, ConferenceError>>;

    fn handle(&mut self, msg: UpdateConference, _: &mut Context<Self>) -> Self::Result {
        let id = msg.conference_id.clone();
        self.forward(&id, msg)
    }
}

impl Handler<EndConference> for ConferenceManager {
    type Result = ResponseFuture<Result<Conference, ConferenceError>>;

    fn handle(&mut self, msg: EndConference, _: &mut Context<Self>) -> Self::Result {
        let id = msg.conference_id.clone();
        self.forward(&id, msg)
    }
}

impl Handler<JoinConference> for ConferenceManager {
    type Result = ResponseFuture<Result<Conferencecall, ConferenceError>>;

    fn handle(&mut self, msg: JoinConference, _: &mut Context<Self>) -> Self::Result {
        let id = msg.conference_id.clone();
        self.forward(&id, msg)
    }
}

impl Handler<Join> for ConferenceManager {
    type Result = ResponseFuture<Result<PreparedJoin, ConferenceError>>;

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> Self::Result {
        let id = msg.conference_id.clone();
        self.forward(&id, msg)
    }
}

impl Handler<RemoveParticipant> for ConferenceManager {
    type Result = ResponseFuture<Result<Conferencecall, ConferenceError>>;

    fn handle(&mut self, msg: RemoveParticipant, _: &mut Context<Self>) -> Self::Result {
        let id = msg.conference_id.clone();
        self.forward(&id, msg)
    }
}

impl Handler<Reap> for ConferenceManager {
    type Result = ();

    fn handle(&mut self, msg: Reap, _: &mut Context<Self>) {
        self.conferences.remove(&msg.conference_id);
        self.live.set(self.conferences.len() as i64);
    }
}

impl Handler<Recover> for ConferenceManager {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: Recover, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        let load = async move {
            db.read(|conn| {
                let rows = conference::list_live(conn)?;
                let mut live = Vec::with_capacity(rows.len());
                for row in rows {
                    let participants = conference::active_participant_rows(conn, &row.id)?;
                    live.push((row, participants));
                }
                Ok(live)
            })
            .await
        };
        Box::pin(load.into_actor(self).map(|loaded, manager, _| match loaded {
            Ok(live) => {
                let count = live.len();
                for (row, participants) in live {
                    if !manager.conferences.contains_key(&row.id) {
                        manager.spawn(row, participants);
                    }
                }
                count
            }
            Err(e) => {
                log::error!("cannot list conferences to take up again: {e}");
                0
            }
        }))
    }
}
