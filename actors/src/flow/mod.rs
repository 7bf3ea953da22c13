//! Flow runs: the flow manager, which starts, finds, stops and reaps one [`FlowRun`]
//! per run; the flow starter, which starts the run of every call created with a flow;
//! and the runs themselves.
//!
//! A call created with `flow_id` or inline `actions` (or to a conference address)
//! gets its run from [`FlowStarter`], a durable subscriber of `call.created`: the run's
//! row is written exactly once, in the transaction that advances the starter's cursor,
//! and the run's actor starts after that commit. Conference joins through the API
//! start theirs directly ([`StartJoin`]).

mod run;
pub mod variables;

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::ids::{ActiveflowId, CallId, CustomerId};
use callplane_schema::models::action::{self, Action, ActionKind, ConferenceJoin};
use callplane_schema::models::activeflow::{self, Activeflow, ActiveflowRow, ActiveflowStatus, EndReason};
use callplane_schema::models::address::AddressType;
use callplane_schema::models::call::{self, CallRow};
use callplane_schema::models::event::{Event, NewEvent};
use callplane_schema::models::flow;
use callplane_schema::{Db, DbError, WriteCtx};
use prometheus::IntGauge;

pub use run::{FlowRun, MAX_EXECUTED, signing_secret};

use crate::bus::{Durable, DurableSubscriber};
use crate::call::CallManager;
use crate::conference::{ConferenceManager, PreparedJoin};
use crate::message::Messenger;
use crate::outbound::Outbound;

#[derive(Debug, Clone, Copy)]
pub struct FlowSettings {
    /// `webhook_send` may reach loopback and private addresses (tests, development).
    pub allow_private_targets: bool,
    /// How long a `webhook_send` request may take.
    pub webhook_timeout: Duration,
}

impl Default for FlowSettings {
    fn default() -> Self {
        FlowSettings { allow_private_targets: false, webhook_timeout: Duration::from_secs(10) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("activeflow not found")]
    NotFound,
    /// No actor has the run: it ended (or never existed); the caller looks it up.
    #[error("activeflow is not running")]
    NotLive,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A new signing secret: 32 random bytes, hex.
pub fn new_signing_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What every run shares. Not `Send` (the HTTP client is per thread): runs live on the
/// arbiter of their manager.
pub struct FlowDeps {
    pub db: Db,
    pub calls: Addr<CallManager>,
    pub conferences: Addr<ConferenceManager>,
    pub messages: Addr<Messenger>,
    pub http: Outbound,
    manager: Recipient<RunEnded>,
}

/// A run whose row the flow starter has written: start its actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt {
    pub row: ActiveflowRow,
}

/// A conference join through the API: a run of the conference's pre-flow, the join and
/// its post-flow on the call, in place of any run the call has.
#[derive(Message)]
#[rtype(result = "Result<Activeflow, FlowError>")]
pub struct StartJoin {
    pub customer_id: CustomerId,
    pub call_id: CallId,
    pub join: PreparedJoin,
}

/// Stops a run; the call stays as it is. Answers the run as it ended.
#[derive(Debug, Message)]
#[rtype(result = "Result<Activeflow, FlowError>")]
pub struct StopRun {
    pub activeflow_id: ActiveflowId,
    /// `None` for the domain itself.
    pub customer_id: Option<CustomerId>,
    pub reason: EndReason,
}

/// A run's actor has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunEnded {
    pub activeflow_id: ActiveflowId,
    pub call_id: CallId,
}

/// Ends runs left running by an earlier process: their calls did not survive it.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Recover;

/// Runs with an actor, for tests and metrics.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct LiveRuns;

pub struct FlowManager {
    deps: Rc<FlowDeps>,
    runs: HashMap<ActiveflowId, Addr<FlowRun>>,
    by_call: HashMap<CallId, ActiveflowId>,
    live: IntGauge,
}

impl FlowManager {
    /// Runs the manager in `ctx` (made beforehand, so that the conference manager can
    /// be given its address first).
    pub fn run(
        ctx: Context<FlowManager>,
        db: Db,
        calls: Addr<CallManager>,
        conferences: Addr<ConferenceManager>,
        messages: Addr<Messenger>,
        settings: FlowSettings,
        registry: &prometheus::Registry,
    ) -> Result<Addr<FlowManager>, prometheus::Error> {
        let live = IntGauge::new("activeflows_live", "Flow runs with an actor")?;
        registry.register(Box::new(live.clone()))?;
        let http = Outbound::new(settings.allow_private_targets, settings.webhook_timeout);
        let deps = Rc::new(FlowDeps { db, calls, conferences, messages, http, manager: ctx.address().recipient() });
        Ok(ctx.run(FlowManager { deps, runs: HashMap::new(), by_call: HashMap::new(), live }))
    }

    fn spawn(&mut self, row: ActiveflowRow, join: Option<PreparedJoin>) -> Addr<FlowRun> {
        let (id, call_id) = (row.id.clone(), row.reference_id.clone());
        let addr = FlowRun::new(row, self.deps.clone(), join).start();
        self.runs.insert(id.clone(), addr.clone());
        self.by_call.insert(call_id, id);
        self.live.set(self.runs.len() as i64);
        addr
    }

    /// The live run of a call, if any.
    fn run_of(&self, call_id: &CallId) -> Option<(&ActiveflowId, &Addr<FlowRun>)> {
        let id = self.by_call.get(call_id)?;
        self.runs.get(id).filter(|addr| addr.connected()).map(|addr| (id, addr))
    }
}

impl Actor for FlowManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Adopt> for FlowManager {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Adopt, _: &mut Context<Self>) -> Self::Result {
        if self.run_of(&msg.row.reference_id).is_none() {
            self.spawn(msg.row, None);
            return Box::pin(fut::ready(()));
        }
        // A join through the API got to the call first; it keeps it.
        let mut row = msg.row;
        let now = callplane_schema::time::now();
        row.status = ActiveflowStatus::Ended;
        row.end_reason = Some(EndReason::Replaced);
        row.tm_update = now;
        row.tm_end = Some(now);
        let db = self.deps.db.clone();
        Box::pin(
            async move {
                if let Err(e) = end_row(&db, row).await {
                    log::error!("a run that lost its call was not recorded as ended: {e}");
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<StartJoin> for FlowManager {
    type Result = ResponseActFuture<Self, Result<Activeflow, FlowError>>;

    fn handle(&mut self, msg: StartJoin, _: &mut Context<Self>) -> Self::Result {
        let replaced = self.run_of(&msg.call_id).map(|(id, addr)| (id.clone(), addr.clone()));
        let db = self.deps.db.clone();
        let shown: Vec<Action> = msg.join.pre_flow.iter().chain(&msg.join.post_flow).cloned().collect();
        let row = ActiveflowRow::new(msg.customer_id, msg.call_id, None, &shown, &BTreeMap::new());
        let start = async move {
            if let Some((activeflow_id, addr)) = replaced {
                let stop = StopRun { activeflow_id, customer_id: None, reason: EndReason::Replaced };
                // A run that is ending anyway answers with a mailbox error: fine.
                let _ = addr.send(stop).await;
            }
            db.write(move |tx| {
                activeflow::insert(tx.conn, &row)?;
                let view = row.view();
                tx.emit(NewEvent::new("activeflow.created", Some(&row.customer_id), &row.id, &view)?)?;
                Ok(row.clone())
            })
            .await
        };
        let join = msg.join;
        Box::pin(start.into_actor(self).map(|result, manager, _| {
            let row = result?;
            let view = row.view();
            manager.spawn(row, Some(join));
            Ok(view)
        }))
    }
}

impl Handler<StopRun> for FlowManager {
    type Result = ResponseFuture<Result<Activeflow, FlowError>>;

    fn handle(&mut self, msg: StopRun, _: &mut Context<Self>) -> Self::Result {
        let Some(addr) = self.runs.get(&msg.activeflow_id).cloned() else {
            return Box::pin(async { Err(FlowError::NotLive) });
        };
        Box::pin(async move { addr.send(msg).await.unwrap_or(Err(FlowError::NotLive)) })
    }
}

impl Handler<RunEnded> for FlowManager {
    type Result = ();

    fn handle(&mut self, msg: RunEnded, _: &mut Context<Self>) {
        self.runs.remove(&msg.activeflow_id);
        if self.by_call.get(&msg.call_id) == Some(&msg.activeflow_id) {
            self.by_call.remove(&msg.call_id);
        }
        self.live.set(self.runs.len() as i64);
    }
}

impl Handler<Recover> for FlowManager {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: Recover, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        let live: Vec<ActiveflowId> = self.runs.keys().cloned().collect();
        let recover = async move {
            let rows = db.read(activeflow::list_running).await?;
            let mut ended = 0;
            for mut row in rows.into_iter().filter(|r| !live.contains(&r.id)) {
                let now = callplane_schema::time::now();
                row.status = ActiveflowStatus::Ended;
                row.end_reason = Some(EndReason::Interrupted);
                row.tm_update = now;
                row.tm_end = Some(now);
                end_row(&db, row).await?;
                ended += 1;
            }
            Ok::<usize, DbError>(ended)
        };
        Box::pin(recover.into_actor(self).map(|result, _, _| match result {
            Ok(count) => {
                if count > 0 {
                    log::info!("ended {count} flow runs left running by the previous process");
                }
                count
            }
            Err(e) => {
                log::error!("cannot end the flow runs of the previous process: {e}");
                0
            }
        }))
    }
}

impl Handler<LiveRuns> for FlowManager {
    type Result = usize;

    fn handle(&mut self, _: LiveRuns, _: &mut Context<Self>) -> usize {
        self.runs.len()
    }
}

async fn end_row(db: &Db, row: ActiveflowRow) -> Result<(), DbError> {
    db.write(move |tx| {
        activeflow::save(tx.conn, &row)?;
        tx.emit(NewEvent::new("activeflow.ended", Some(&row.customer_id), &row.id, &row.view())?)?;
        Ok(())
    })
    .await
}

/// Starts the run of each call created with a flow (see the module documentation).
pub struct FlowStarter {
    flows: Addr<FlowManager>,
}

impl FlowStarter {
    pub fn start(flows: Addr<FlowManager>, db: Db, bus: Addr<crate::bus::EventBus>) -> Addr<Durable<FlowStarter>> {
        Durable::start(FlowStarter { flows }, (), db, bus)
    }

    /// The run a new call gets, if any: a conference address joins first, then the
    /// call's flow (saved or inline) runs.
    fn program(tx: &mut WriteCtx<'_>, call: &CallRow) -> Result<Option<ActiveflowRow>, DbError> {
        let mut actions = Vec::new();
        if call.destination_type == AddressType::Conference
            && let Ok(conference_id) = call.destination_target.parse()
        {
            let join = ActionKind::ConferenceJoin(ConferenceJoin { conference_id });
            actions.push(Action { id: uuid::Uuid::now_v7(), next_id: None, kind: join });
        }
        match &call.flow_id {
            Some(flow_id) => match flow::get(tx.conn, &call.customer_id, flow_id) {
                Ok(flow) => actions.extend(flow.actions()),
                Err(DbError::NotFound) => log::warn!("call {}: its flow {flow_id} is gone", call.id),
                Err(e) => return Err(e),
            },
            None => match action::parse_stored(&call.actions) {
                Ok(inline) => actions.extend(inline),
                Err(e) => log::error!("call {}: its actions do not parse: {e}", call.id),
            },
        }
        if actions.is_empty() {
            return Ok(None);
        }
        let variables = run::initial_variables(&call.variables);
        let row =
            ActiveflowRow::new(call.customer_id.clone(), call.id.clone(), call.flow_id.clone(), &actions, &variables);
        Ok(Some(row))
    }
}

impl DurableSubscriber for FlowStarter {
    const NAME: &'static str = "flow_starter";
    type Config = ();
    type Outcome = Vec<ActiveflowRow>;

    fn wants(event: &Event) -> bool {
        event.event_type == "call.created"
    }

    fn write(_: &(), tx: &mut WriteCtx<'_>, events: &[&Event]) -> Result<Vec<ActiveflowRow>, DbError> {
        let mut started = Vec::new();
        for event in events {
            let Ok(call_id) = event.resource_id.parse::<CallId>() else { continue };
            let call = match call::get_any(tx.conn, &call_id) {
                Ok(call) => call,
                Err(DbError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            if !call.status.is_live() {
                continue;
            }
            if let Some(row) = FlowStarter::program(tx, &call)? {
                activeflow::insert(tx.conn, &row)?;
                tx.emit(NewEvent::new("activeflow.created", Some(&row.customer_id), &row.id, &row.view())?)?;
                started.push(row);
            }
        }
        Ok(started)
    }

    fn committed(&mut self, rows: Vec<ActiveflowRow>, _: &mut Context<Durable<Self>>) {
        for row in rows {
            self.flows.do_send(Adopt { row });
        }
    }
}
