//! Calls: the call manager, which creates calls and starts, finds, supervises and reaps
//! one [`CallActor`] per live call; and the call actor itself.

mod actor;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::ids::{CallId, CustomerId, FlowId};
use callplane_schema::models::address::Address;
use callplane_schema::models::billing_account;
use callplane_schema::models::call::{self, Call, CallEventData, CallRow, CallStatus, Direction, NewCall};
use callplane_schema::models::event::NewEvent;
use callplane_schema::models::idempotency::{self, StoredAnswer};
use callplane_schema::{Db, DbError};
use prometheus::IntGauge;

pub use actor::{
    BalanceDeadline, CallActor, CallCommand, CallNews, Command, NewsKind, Observe, Observed, Playback, Snapshot, Start,
    StartPlayback,
};

use crate::cache::CacheAside;
use crate::media::MediaBackend;

#[derive(Debug, Clone, Copy)]
pub struct CallSettings {
    /// An outgoing call not answered within this ends with `noanswer`.
    pub dial_timeout: Duration,
    /// An answered call is ended with `timeout` after this long.
    pub max_duration: Duration,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings { dial_timeout: Duration::from_secs(30), max_duration: Duration::from_secs(4 * 3600) }
    }
}

/// Why a call operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("call not found")]
    NotFound,
    /// No actor has the call: it ended (or never existed); the caller looks it up.
    #[error("call is not live")]
    NotLive,
    #[error("not possible while the call is {status}")]
    StateInvalid { status: CallStatus },
    #[error("the balance ({balance}) does not cover one unit ({needed})")]
    InsufficientBalance { balance: i64, needed: i64 },
    #[error("the Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("media backend: {0}")]
    Media(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Call gauges, shared by the manager and its actors.
#[derive(Clone)]
pub struct CallGauges {
    live: IntGauge,
    active: IntGauge,
}

impl CallGauges {
    pub fn new(registry: &prometheus::Registry) -> Result<CallGauges, prometheus::Error> {
        let live = IntGauge::new("calls_live", "Calls with an actor (not yet ended)")?;
        let active = IntGauge::new("calls_active", "Answered calls not yet ended")?;
        registry.register(Box::new(live.clone()))?;
        registry.register(Box::new(active.clone()))?;
        Ok(CallGauges { live, active })
    }

    fn answered(&self) {
        self.active.inc();
    }

    fn unanswered(&self) {
        self.active.dec();
    }
}

/// What every call actor shares; one allocation for all of them.
pub struct CallDeps {
    pub db: Db,
    pub media: Arc<dyn MediaBackend>,
    pub cache: CacheAside,
    pub settings: CallSettings,
    live: CallGauges,
    reaper: Recipient<Reap>,
}

/// A call actor has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reap {
    pub call_id: CallId,
    pub ended: bool,
}

/// `Idempotency-Key` of a create, with the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

/// Creates one call per destination, in one transaction.
#[derive(Debug, Message)]
#[rtype(result = "Result<CreateAnswer, CallError>")]
pub struct CreateCalls {
    pub customer_id: CustomerId,
    pub source: Address,
    pub destinations: Vec<Address>,
    pub flow_id: Option<FlowId>,
    /// JSON of the inline flow.
    pub actions: String,
    /// JSON object of variables.
    pub variables: String,
    /// The agent whose credential places the calls, if any.
    pub owner_id: Option<callplane_schema::ids::AgentId>,
    pub idempotency: Option<IdempotencyKey>,
}

/// The answer to a create: made now, or the stored first answer to the same key.
#[derive(Debug, Clone)]
pub struct CreateAnswer {
    pub status: u16,
    pub location: Option<String>,
    /// The JSON body, byte for byte what the first answer carried.
    pub body: String,
    /// The calls made now; empty for a replay.
    pub calls: Vec<Call>,
}

/// Ends calls left live by an earlier process.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Recover;

/// Sends a command to a live call.
impl Message for Routed {
    type Result = Result<Call, CallError>;
}

/// A [`Command`] on its way through the manager.
#[derive(Debug)]
pub struct Routed(pub Command);

pub struct CallManager {
    deps: Arc<CallDeps>,
    calls: HashMap<CallId, Addr<CallActor>>,
}

impl CallManager {
    pub fn start(
        db: Db,
        media: Arc<dyn MediaBackend>,
        cache: CacheAside,
        settings: CallSettings,
        gauges: CallGauges,
    ) -> Addr<CallManager> {
        CallManager::create(move |ctx| {
            let deps =
                Arc::new(CallDeps { db, media, cache, settings, live: gauges, reaper: ctx.address().recipient() });
            CallManager { deps, calls: HashMap::new() }
        })
    }

    fn spawn(&mut self, row: CallRow, start: Start) {
        let id = row.id.clone();
        let addr = CallActor::new(row, self.deps.clone(), start).start();
        self.calls.insert(id, addr);
        self.deps.live.live.set(self.calls.len() as i64);
    }
}

impl Actor for CallManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Requests from every HTTP worker funnel through here. `send` waits for room
        // when it is full, which is the backpressure we want; a deeper mailbox only
        // saves parking the senders under load.
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<CreateCalls> for CallManager {
    type Result = ResponseActFuture<Self, Result<CreateAnswer, CallError>>;

    fn handle(&mut self, msg: CreateCalls, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        let write = async move {
            db.write(move |tx| {
                if let Some(idem) = &msg.idempotency
                    && let Some(stored) = idempotency::find(tx.conn, &msg.customer_id, &idem.key)?
                {
                    if stored.request_hash != idem.request_hash {
                        return Ok(Err(CallError::IdempotencyKeyReused));
                    }
                    let replay = CreateAnswer {
                        status: u16::try_from(stored.status_code).unwrap_or(201),
                        location: stored.location,
                        body: stored.response,
                        calls: Vec::new(),
                    };
                    return Ok(Ok((replay, Vec::new())));
                }

                // What is not already held by calls in progress must cover one unit of
                // every new call; each then holds its unit until it ends, so concurrent
                // calls cannot together spend more than the balance.
                let account = billing_account::get_by_customer(tx.conn, &msg.customer_id)?;
                let rates = account.rates();
                let needed: i64 = msg.destinations.iter().map(|d| rates.call(d.kind)).sum();
                if needed > 0 && account.available() < needed {
                    return Ok(Err(CallError::InsufficientBalance { balance: account.available(), needed }));
                }
                if needed > 0 {
                    billing_account::reserve(tx.conn, &msg.customer_id, needed)?;
                }

                let mut rows = Vec::with_capacity(msg.destinations.len());
                for destination in &msg.destinations {
                    let mut row = CallRow::new(NewCall {
                        customer_id: msg.customer_id.clone(),
                        direction: Direction::Outgoing,
                        source: msg.source.clone(),
                        destination: destination.clone(),
                        flow_id: msg.flow_id.clone(),
                        actions: msg.actions.clone(),
                        variables: msg.variables.clone(),
                        owner_id: msg.owner_id.clone(),
                    });
                    row.reserved = rates.call(destination.kind);
                    call::insert(tx.conn, &row)?;
                    let view = row.view();
                    let data = CallEventData { call: &view, call_id: &row.id };
                    tx.emit(NewEvent::new("call.created", Some(&row.customer_id), &row.id, &data)?)?;
                    rows.push(row);
                }
                let calls: Vec<Call> = rows.iter().map(CallRow::view).collect();
                let answer = creation_answer(&calls).map_err(DbError::other)?;
                if let Some(idem) = &msg.idempotency {
                    idempotency::insert(
                        tx.conn,
                        &StoredAnswer {
                            customer_id: msg.customer_id.clone(),
                            idem_key: idem.key.clone(),
                            request_hash: idem.request_hash.clone(),
                            status_code: i32::from(answer.status),
                            location: answer.location.clone(),
                            response: answer.body.clone(),
                            tm_create: callplane_schema::time::now(),
                        },
                    )?;
                }
                Ok(Ok((answer, rows)))
            })
            .await
        };
        Box::pin(write.into_actor(self).map(|result, manager, _| {
            let (answer, rows) = result??;
            for row in rows {
                manager.spawn(row, Start::Dial);
            }
            Ok(answer)
        }))
    }
}

/// `201` with the call and its `Location`, or `{"result": [...]}` for several.
fn creation_answer(calls: &[Call]) -> Result<CreateAnswer, serde_json::Error> {
    let (location, body) = match calls {
        [one] => (Some(format!("/v1.0/calls/{}", one.id)), serde_json::to_string(one)?),
        many => (None, serde_json::to_string(&serde_json::json!({ "result": many }))?),
    };
    Ok(CreateAnswer { status: 201, location, body, calls: calls.to_vec() })
}

impl Handler<Routed> for CallManager {
    type Result = ResponseFuture<Result<Call, CallError>>;

    fn handle(&mut self, Routed(command): Routed, _: &mut Context<Self>) -> Self::Result {
        let Some(addr) = self.calls.get(&command.call_id).cloned() else {
            return Box::pin(async { Err(CallError::NotLive) });
        };
        Box::pin(async move { addr.send(command).await.unwrap_or(Err(CallError::NotLive)) })
    }
}

impl Handler<Reap> for CallManager {
    type Result = ();

    fn handle(&mut self, msg: Reap, _: &mut Context<Self>) {
        self.calls.remove(&msg.call_id);
        self.deps.live.live.set(self.calls.len() as i64);
        if !msg.ended {
            // Only a stopped System stops a call actor early; the next start recovers it.
            log::warn!("call {} stopped before it ended; it will be recovered on the next start", msg.call_id);
        }
    }
}

impl Handler<Recover> for CallManager {
    type Result = ResponseActFuture<Self, usize>;

    fn handle(&mut self, _: Recover, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        Box::pin(async move { db.read(call::list_live).await }.into_actor(self).map(|rows, manager, _| match rows {
            Ok(rows) => {
                let count = rows.len();
                if count > 0 {
                    log::info!("recovering {count} calls left live by the previous process");
                }
                for row in rows {
                    if !manager.calls.contains_key(&row.id) {
                        manager.spawn(row, Start::Recover);
                    }
                }
                count
            }
            Err(e) => {
                log::error!("cannot list calls to recover: {e}");
                0
            }
        }))
    }
}

/// When a call must end because the balance runs out (`None`: it need not).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Deadline {
    pub call_id: CallId,
    pub at: Option<chrono::NaiveDateTime>,
}

impl Handler<Deadline> for CallManager {
    type Result = ();

    fn handle(&mut self, msg: Deadline, _: &mut Context<Self>) {
        if let Some(call) = self.calls.get(&msg.call_id) {
            call.do_send(actor::BalanceDeadline { at: msg.at });
        }
    }
}

/// Live calls, for tests and the benchmark.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct LiveCount;

impl Handler<LiveCount> for CallManager {
    type Result = usize;

    fn handle(&mut self, _: LiveCount, _: &mut Context<Self>) -> usize {
        self.calls.len()
    }
}

/// The actor of a live call, for the domain's own actors (flow runs, conferences) to
/// talk to directly. `None` once the call has ended.
#[derive(Message)]
#[rtype(result = "Option<Addr<CallActor>>")]
pub struct Locate {
    pub call_id: CallId,
}

impl Handler<Locate> for CallManager {
    type Result = Option<Addr<CallActor>>;

    fn handle(&mut self, msg: Locate, _: &mut Context<Self>) -> Self::Result {
        self.calls.get(&msg.call_id).filter(|addr| addr.connected()).cloned()
    }
}

/// A call arriving from the network for one of `customer_id`'s numbers: created
/// `incoming`, unanswered; the number's flow (started from its `call.created`) answers it.
#[derive(Debug, Message)]
#[rtype(result = "Result<Call, CallError>")]
pub struct CreateIncoming {
    pub customer_id: CustomerId,
    pub source: Address,
    pub destination: Address,
    pub flow_id: Option<FlowId>,
}

impl Handler<CreateIncoming> for CallManager {
    type Result = ResponseActFuture<Self, Result<Call, CallError>>;

    fn handle(&mut self, msg: CreateIncoming, _: &mut Context<Self>) -> Self::Result {
        let db = self.deps.db.clone();
        let row = CallRow::new(NewCall {
            customer_id: msg.customer_id,
            direction: Direction::Incoming,
            source: msg.source,
            destination: msg.destination,
            flow_id: msg.flow_id,
            actions: "[]".to_owned(),
            variables: "{}".to_owned(),
            owner_id: None,
        });
        let write = async move {
            db.write(move |tx| {
                call::insert(tx.conn, &row)?;
                let view = row.view();
                let data = CallEventData { call: &view, call_id: &row.id };
                tx.emit(NewEvent::new("call.created", Some(&row.customer_id), &row.id, &data)?)?;
                Ok(row.clone())
            })
            .await
        };
        Box::pin(write.into_actor(self).map(|result, manager, _| {
            let row = result?;
            let view = row.view();
            manager.spawn(row, Start::Incoming);
            Ok(view)
        }))
    }
}
