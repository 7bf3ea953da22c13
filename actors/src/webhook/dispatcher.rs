//! The webhook dispatcher: sends pending deliveries and records what became of them.
//!
//! One **lane** per webhook, so endpoints proceed independently: a slow or dead endpoint
//! occupies its own lane's few slots and nothing else. A lane asks the database for the
//! deliveries that are due, in small pages (see `webhook_delivery::due`): only the head
//! of each resource's queue is ever due, so a resource's events go out in order, and a
//! delivery waiting for its retry holds back later events of its resource only. Nothing
//! is queued in memory beyond the requests in flight; the database is the queue, which
//! is also why a restart loses nothing: at start every webhook with pending deliveries
//! gets its lane back.
//!
//! Each lane has a circuit breaker: after `breaker_failures` consecutive failures it
//! opens and the lane sends nothing for `breaker_cooldown`; then one delivery goes
//! through as a probe (half open), and a success closes it again. Attempts are not
//! spent while the breaker is open.
//!
//! Every attempt's outcome is written (delivery state and a log line) before its lane
//! moves on. Wake-ups come from the `webhooks` durable subscriber after each commit
//! ([`Waker`]), from timers (retries, cool-downs) and from finished attempts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use callplane_schema::ids::{DeliveryId, WebhookId};
use callplane_schema::models::webhook::{self, WebhookRow};
use callplane_schema::models::webhook_delivery::{self, AttemptRecord, DeliveryRow, DeliveryStatus};
use callplane_schema::{Db, DbError};
use chrono::NaiveDateTime;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use super::WebhookSettings;
use super::policy::{self, Attempted, Kind};
use super::send::{self, MAX_IN_FLIGHT};

/// Requests one endpoint has in flight at most (each for a different resource).
pub const LANE_IN_FLIGHT: usize = 4;
/// Wait before reading again after the database failed a read.
const READ_RETRY: Duration = Duration::from_secs(1);
/// Timers fire this late on purpose: the database clock must see the moment as past.
const TIMER_SLACK: Duration = Duration::from_millis(5);

/// New deliveries are waiting; the webhooks are in the shared [`Wakes`] set.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Stops sending (the daemon is shutting down). Requests in flight are abandoned; their
/// deliveries stay pending and are sent again by the next process.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Wake-ups from the enqueue, coalesced: the webhooks with new deliveries, and whether a
/// [`Wake`] is already on its way, so that at most one sits in the mailbox however fast
/// events arrive, and none is lost.
#[derive(Clone, Default)]
pub struct Wakes {
    dirty: Arc<Mutex<HashSet<WebhookId>>>,
    sent: Arc<AtomicBool>,
}

impl Wakes {
    pub fn waker(&self, dispatcher: Addr<WebhookDispatcher>) -> Waker {
        Waker { wakes: self.clone(), dispatcher }
    }

    fn take(&self) -> HashSet<WebhookId> {
        // Cleared first: a webhook added after this sends a new `Wake`.
        self.sent.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// What the enqueue holds to wake the dispatcher.
#[derive(Clone)]
pub struct Waker {
    wakes: Wakes,
    dispatcher: Addr<WebhookDispatcher>,
}

impl Waker {
    pub fn wake(&self, webhooks: impl IntoIterator<Item = WebhookId>) {
        self.wakes.dirty.lock().unwrap_or_else(PoisonError::into_inner).extend(webhooks);
        if !self.wakes.sent.swap(true, Ordering::SeqCst) {
            // At most one outstanding (see `sent`), so the unbounded send stays bounded.
            self.dispatcher.do_send(Wake);
        }
    }
}

/// Delivery metrics.
#[derive(Clone)]
pub struct WebhookMetrics {
    deliveries: IntCounterVec,
    retries: IntCounter,
    breakers: IntGaugeVec,
    latency: Histogram,
    in_flight: IntGauge,
}

impl WebhookMetrics {
    pub fn new(registry: &prometheus::Registry) -> Result<WebhookMetrics, prometheus::Error> {
        let deliveries = IntCounterVec::new(
            Opts::new("webhook_deliveries_total", "Webhook deliveries finished, by result (delivered, failed)"),
            &["result"],
        )?;
        let retries =
            IntCounter::new("webhook_retries_total", "Webhook attempts that failed and were scheduled again")?;
        let breakers = IntGaugeVec::new(
            Opts::new("webhook_breakers", "Webhook endpoints whose circuit breaker is open or half open"),
            &["state"],
        )?;
        let latency = Histogram::with_opts(
            HistogramOpts::new("webhook_delivery_duration_seconds", "Webhook attempts, from sending to the answer")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        let in_flight = IntGauge::new("webhook_requests_in_flight", "Webhook requests being sent")?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(breakers.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        for result in ["delivered", "failed"] {
            deliveries.with_label_values(&[result]);
        }
        for state in ["open", "half_open"] {
            breakers.with_label_values(&[state]);
        }
        Ok(WebhookMetrics { deliveries, retries, breakers, latency, in_flight })
    }

    fn reset(&self) {
        for state in ["open", "half_open"] {
            self.breakers.with_label_values(&[state]).set(0);
        }
        self.in_flight.set(0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

impl Breaker {
    fn label(self) -> Option<&'static str> {
        match self {
            Breaker::Closed { .. } => None,
            Breaker::Open { .. } => Some("open"),
            Breaker::HalfOpen => Some("half_open"),
        }
    }
}

struct Lane {
    /// Deliveries being sent (until their outcome is written).
    sending: HashMap<DeliveryId, SpawnHandle>,
    /// A read of due deliveries is under way.
    reading: bool,
    /// Woken during the read: read again after it.
    again: bool,
    timer: Option<(Instant, SpawnHandle)>,
    breaker: Breaker,
    /// Waiting in the dispatcher's queue for a free slot.
    queued: bool,
}

impl Lane {
    fn new() -> Lane {
        Lane {
            sending: HashMap::new(),
            reading: false,
            again: false,
            timer: None,
            breaker: Breaker::Closed { failures: 0 },
            queued: false,
        }
    }

    fn idle(&self) -> bool {
        self.sending.is_empty()
            && !self.reading
            && !self.again
            && !self.queued
            && self.timer.is_none()
            && self.breaker == Breaker::Closed { failures: 0 }
    }
}

/// What one read of a lane found.
struct Due {
    webhook: WebhookRow,
    deliveries: Vec<DeliveryRow>,
    /// When the next delivery not taken now falls due.
    next: Option<NaiveDateTime>,
}

pub struct WebhookDispatcher {
    db: Db,
    settings: Arc<WebhookSettings>,
    metrics: WebhookMetrics,
    wakes: Wakes,
    /// Built when the actor starts: the client is not `Send`.
    client: Option<awc::Client>,
    lanes: HashMap<WebhookId, Lane>,
    /// Slots taken over all lanes: requests in flight and reads that will start some.
    busy: usize,
    /// Lanes with work waiting for a slot, first come first served.
    queue: VecDeque<WebhookId>,
    stopped: bool,
}

impl WebhookDispatcher {
    pub fn new(db: Db, settings: WebhookSettings, metrics: WebhookMetrics, wakes: Wakes) -> WebhookDispatcher {
        WebhookDispatcher {
            db,
            settings: Arc::new(settings),
            metrics,
            wakes,
            client: None,
            lanes: HashMap::new(),
            busy: 0,
            queue: VecDeque::new(),
            stopped: false,
        }
    }

    /// Every webhook with pending deliveries gets a lane.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let read = async move { db.read(webhook_delivery::pending_webhooks).await };
        ctx.spawn(read.into_actor(self).map(|result, act, ctx| match result {
            Ok(webhooks) => {
                if !webhooks.is_empty() {
                    log::info!("webhooks: {} endpoints have pending deliveries", webhooks.len());
                }
                for id in webhooks {
                    act.pump(&id, ctx);
                }
            }
            Err(e) => {
                log::warn!("webhooks: cannot list pending deliveries, retrying: {e}");
                ctx.run_later(READ_RETRY, |act, ctx| act.load(ctx));
            }
        }));
    }

    /// Starts whatever the lane may send now: reads its due deliveries, within its own
    /// and the dispatcher's free slots, unless its breaker is open.
    fn pump(&mut self, id: &WebhookId, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        let now = Instant::now();
        let free = MAX_IN_FLIGHT.saturating_sub(self.busy);
        let lane = self.lanes.entry(id.clone()).or_insert_with(Lane::new);
        if lane.reading {
            lane.again = true;
            return;
        }
        let allowed = match lane.breaker {
            Breaker::Open { until } if now < until => {
                self.schedule(id, until, ctx);
                return;
            }
            Breaker::Open { .. } => {
                set_breaker(&self.metrics, lane, Breaker::HalfOpen);
                1
            }
            Breaker::HalfOpen => 1,
            Breaker::Closed { .. } => LANE_IN_FLIGHT,
        };
        let slots = allowed.saturating_sub(lane.sending.len());
        if slots == 0 {
            // A send of this lane is under way; its end pumps again.
            return;
        }
        if free == 0 {
            if !lane.queued {
                lane.queued = true;
                self.queue.push_back(id.clone());
            }
            return;
        }
        let slots = slots.min(free);
        lane.reading = true;
        self.busy += slots;
        let busy: Vec<DeliveryId> = lane.sending.keys().cloned().collect();
        let db = self.db.clone();
        let webhook_id = id.clone();
        let read = async move {
            db.read(move |conn| {
                let Some(webhook) = webhook::find(conn, &webhook_id)? else { return Ok(None) };
                let now = callplane_schema::time::now();
                let deliveries = webhook_delivery::due(conn, &webhook_id, now, &busy, slots as i64)?;
                let next = if deliveries.len() < slots {
                    let mut taken = busy.clone();
                    taken.extend(deliveries.iter().map(|d| d.id.clone()));
                    webhook_delivery::next_due(conn, &webhook_id, &taken)?
                } else {
                    None
                };
                Ok(Some(Due { webhook, deliveries, next }))
            })
            .await
        };
        let id = id.clone();
        ctx.spawn(read.into_actor(self).map(move |result, act, ctx| act.read_done(id, slots, result, ctx)));
    }

    fn read_done(
        &mut self,
        id: WebhookId,
        reserved: usize,
        result: Result<Option<Due>, DbError>,
        ctx: &mut Context<Self>,
    ) {
        if self.stopped {
            return;
        }
        self.busy = self.busy.saturating_sub(reserved);
        let again = match self.lanes.get_mut(&id) {
            Some(lane) => {
                lane.reading = false;
                std::mem::take(&mut lane.again)
            }
            None => false,
        };
        match result {
            Err(e) => {
                log::warn!("webhook {id}: reading due deliveries failed, retrying: {e}");
                self.schedule(&id, Instant::now() + READ_RETRY, ctx);
            }
            Ok(None) => {
                // Deleted, with its deliveries; sends in flight find nothing to record.
                if let Some(mut lane) = self.lanes.remove(&id) {
                    if let Some((_, timer)) = lane.timer.take() {
                        ctx.cancel_future(timer);
                    }
                    set_breaker(&self.metrics, &mut lane, Breaker::Closed { failures: 0 });
                }
                self.release(ctx);
                return;
            }
            Ok(Some(due)) => {
                let webhook = Rc::new(due.webhook);
                for delivery in due.deliveries {
                    self.send(&webhook, delivery, ctx);
                }
                if let Some(at) = due.next {
                    self.schedule(&id, instant_of(at), ctx);
                }
            }
        }
        if again {
            self.pump(&id, ctx);
        } else if self.lanes.get(&id).is_some_and(Lane::idle) {
            self.lanes.remove(&id);
        }
        self.release(ctx);
    }

    /// Sends one delivery (or, past its maximum age, fails it unsent) and records the
    /// outcome before the lane hears of it.
    fn send(&mut self, webhook: &Rc<WebhookRow>, delivery: DeliveryRow, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else { return };
        let settings = self.settings.clone();
        let db = self.db.clone();
        let webhook = webhook.clone();
        let id = delivery.webhook_id.clone();
        let delivery_id = delivery.id.clone();
        self.busy += 1;
        self.metrics.in_flight.inc();
        let work = async move {
            let created = delivery.tm_create;
            let deadline =
                chrono::Duration::from_std(settings.max_age).ok().and_then(|a| created.checked_add_signed(a));
            let expired = deadline.is_some_and(|deadline| callplane_schema::time::now() > deadline);
            let (attempted, attempt) = if expired {
                let why = format!("expired: not sent within the maximum age ({} s)", settings.max_age.as_secs());
                (Attempted::not_sent(Kind::Expired, why), delivery.attempts)
            } else {
                let attempt = delivery.attempts + 1;
                (send::attempt(&client, &webhook, &delivery, attempt, &settings).await, attempt)
            };
            let record = policy::decide(&attempted, attempt, created, callplane_schema::time::now(), &settings);
            let to_write = record.clone();
            let written = db.write(move |tx| webhook_delivery::record(tx.conn, &delivery, &to_write)).await;
            (attempted, record, written)
        };
        let lane_id = id.clone();
        let sending_id = delivery_id.clone();
        let handle = ctx.spawn(work.into_actor(self).map(move |(attempted, record, written), act, ctx| {
            act.sent(id, delivery_id, attempted, record, written, ctx)
        }));
        if let Some(lane) = self.lanes.get_mut(&lane_id) {
            lane.sending.insert(sending_id, handle);
        }
    }

    fn sent(
        &mut self,
        id: WebhookId,
        delivery_id: DeliveryId,
        attempted: Attempted,
        record: AttemptRecord,
        written: Result<bool, DbError>,
        ctx: &mut Context<Self>,
    ) {
        if self.stopped {
            return;
        }
        self.busy = self.busy.saturating_sub(1);
        self.metrics.in_flight.dec();
        if let Some(latency) = attempted.latency {
            self.metrics.latency.observe(latency.as_secs_f64());
        }
        match written {
            Ok(true) => match record.status {
                DeliveryStatus::Delivered => self.metrics.deliveries.with_label_values(&["delivered"]).inc(),
                DeliveryStatus::Pending => self.metrics.retries.inc(),
                DeliveryStatus::Failed => {
                    self.metrics.deliveries.with_label_values(&["failed"]).inc();
                    let error = record.error.as_deref().unwrap_or("failed");
                    log::info!(
                        "webhook {id}: delivery {delivery_id} failed after {} attempts: {error}",
                        record.attempt
                    );
                }
            },
            // The webhook was deleted meanwhile.
            Ok(false) => {}
            Err(e) => log::warn!("webhook {id}: recording delivery {delivery_id} failed; it stays pending: {e}"),
        }
        if let Some(lane) = self.lanes.get_mut(&id) {
            lane.sending.remove(&delivery_id);
            let threshold = self.settings.breaker_failures.max(1);
            let next = if attempted.kind == Kind::Delivered {
                Breaker::Closed { failures: 0 }
            } else if attempted.endpoint_failed() {
                match lane.breaker {
                    Breaker::Closed { failures } if failures + 1 < threshold => {
                        Breaker::Closed { failures: failures + 1 }
                    }
                    _ => Breaker::Open { until: Instant::now() + self.settings.breaker_cooldown },
                }
            } else {
                lane.breaker
            };
            match (lane.breaker, next) {
                (Breaker::Closed { .. }, Breaker::Open { .. }) => log::warn!(
                    "webhook {id}: circuit breaker open after {threshold} consecutive failures; probing again in {} s",
                    self.settings.breaker_cooldown.as_secs()
                ),
                (Breaker::HalfOpen, Breaker::Closed { .. }) => log::info!("webhook {id}: circuit breaker closed"),
                _ => {}
            }
            set_breaker(&self.metrics, lane, next);
        }
        self.pump(&id, ctx);
        self.release(ctx);
    }

    /// Pumps `id` at `at`, unless it is already due to be pumped earlier.
    fn schedule(&mut self, id: &WebhookId, at: Instant, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get_mut(id) else { return };
        if let Some((current, handle)) = lane.timer {
            if current <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let webhook_id = id.clone();
        let handle = ctx.run_later(at.saturating_duration_since(Instant::now()) + TIMER_SLACK, move |act, ctx| {
            if let Some(lane) = act.lanes.get_mut(&webhook_id) {
                lane.timer = None;
            }
            act.pump(&webhook_id, ctx);
        });
        lane.timer = Some((at, handle));
    }

    /// Lets queued lanes use the slots that are free.
    fn release(&mut self, ctx: &mut Context<Self>) {
        while self.busy < MAX_IN_FLIGHT {
            let Some(id) = self.queue.pop_front() else { break };
            if let Some(lane) = self.lanes.get_mut(&id) {
                lane.queued = false;
            }
            self.pump(&id, ctx);
        }
    }

    /// Forgets every lane (their futures are gone or cancelled).
    fn clear(&mut self) {
        self.lanes.clear();
        self.queue.clear();
        self.busy = 0;
        self.metrics.reset();
    }
}

fn set_breaker(metrics: &WebhookMetrics, lane: &mut Lane, next: Breaker) {
    if let Some(state) = lane.breaker.label() {
        metrics.breakers.with_label_values(&[state]).dec();
    }
    if let Some(state) = next.label() {
        metrics.breakers.with_label_values(&[state]).inc();
    }
    lane.breaker = next;
}

/// The monotonic moment of a database time.
fn instant_of(at: NaiveDateTime) -> Instant {
    let wait = (at - callplane_schema::time::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + wait
}

impl Actor for WebhookDispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.stopped = false;
        self.client = Some(send::client(&self.settings));
        // Wake-ups that came before are in the database too.
        self.wakes.take();
        self.load(ctx);
    }
}

impl Supervised for WebhookDispatcher {
    fn restarting(&mut self, _: &mut Self::Context) {
        log::warn!("webhook dispatcher restarting; pending deliveries are read again");
        self.clear();
    }
}

impl Handler<Wake> for WebhookDispatcher {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        for id in self.wakes.take() {
            self.pump(&id, ctx);
        }
    }
}

impl Handler<Shutdown> for WebhookDispatcher {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.stopped = true;
        let mut abandoned = 0;
        for lane in self.lanes.values_mut() {
            if let Some((_, timer)) = lane.timer.take() {
                ctx.cancel_future(timer);
            }
            for (_, handle) in lane.sending.drain() {
                ctx.cancel_future(handle);
                abandoned += 1;
            }
        }
        self.clear();
        log::info!("webhook dispatcher stopped; {abandoned} deliveries in flight stay pending");
    }
}
