//! One actor per WebSocket connection: the client's protocol, the outgoing queue with its
//! backpressure policy, and the heartbeat.
//!
//! Everything the session sends goes through one FIFO queue, written to the socket one
//! frame at a time by a future the actor spawns, so the actor itself never waits for the
//! client. Event frames in the queue are bounded by `queue_frames`: when more arrive, the
//! oldest events are dropped. A session that has dropped more than `max_dropped` events,
//! or whose queue has stayed full for `slow_grace` without emptying, is closed with
//! 1008 (policy violation) and a reason. Control frames (acks, errors, pings, pongs)
//! are never dropped; a client that lets them pile up is not reading and is closed too.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError};
use bytes::Bytes;
use bytestring::ByteString;
use callplane_schema::DbError;
use callplane_schema::ids::AgentId;
use callplane_schema::models::agent;
use serde_json::{Value, json};

use super::hub::{AddTopics, Connect, Disconnect, Push, RemoveTopics};
use super::topic::{Owner, Topic};
use super::{MAX_TOPICS, REVALIDATE_EVERY, Revalidate, SessionDeps, Viewer};

/// Identifies a session to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(u64);

impl SessionId {
    fn next() -> SessionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SessionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ws-{}", self.0)
    }
}

/// Why a session closes; the label of `ws_sessions_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The client closed.
    Client,
    /// The daemon is stopping.
    Shutdown,
    /// The client does not keep up.
    Slow,
    /// Nothing heard from the client within the timeout.
    Heartbeat,
    /// A frame the protocol does not allow (or too large).
    Protocol,
    /// The credential is no longer good.
    Revoked,
}

impl Why {
    fn label(self) -> &'static str {
        match self {
            Why::Client => "client",
            Why::Shutdown => "shutdown",
            Why::Slow => "slow",
            Why::Heartbeat => "heartbeat",
            Why::Protocol => "protocol",
            Why::Revoked => "revoked",
        }
    }
}

/// Mailbox of a session: pushes from the hub (one per committed batch).
const MAILBOX: usize = 64;
/// Control frames waiting for the socket: more means the client is not reading.
const MAX_CONTROL: usize = 64;

enum Outgoing {
    Event(ByteString),
    Control(String),
    Ping,
    Pong(Bytes),
}

/// The queue has been full since `since` and has not emptied; `dropped` events lost.
struct Backlog {
    since: Instant,
    dropped: u64,
}

pub struct WsSession {
    id: SessionId,
    viewer: Viewer,
    revalidate: Revalidate,
    /// Heartbeats so far.
    beats: u32,
    deps: Arc<SessionDeps>,
    sink: actix_ws::Session,
    queue: VecDeque<Outgoing>,
    events_queued: usize,
    control_queued: usize,
    /// A frame is on its way to the socket.
    writing: bool,
    /// Answers to subscription changes, held until the session has taken the pushes the
    /// hub sent before the change: `(pushes before, frame)`.
    held: VecDeque<(u64, String)>,
    /// The last push taken from the hub.
    received: u64,
    topics: HashSet<String>,
    backlog: Option<Backlog>,
    last_heard: Instant,
    closing: bool,
}

/// Why a request is refused: the error frame's reason, message and topics.
struct Refusal {
    reason: &'static str,
    message: String,
    topics: Vec<String>,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>, topics: Vec<String>) -> Refusal {
        Refusal { reason, message: message.into(), topics }
    }

    fn frame(&self) -> String {
        json!({"type": "error", "reason": self.reason, "message": self.message, "topics": self.topics}).to_string()
    }
}

fn ack(topics: &[String]) -> String {
    json!({"type": "ack", "topics": topics}).to_string()
}

enum Request {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
}

impl Request {
    fn parse(text: &str) -> Result<Request, Refusal> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Refusal::new("INVALID_JSON", format!("not valid JSON: {e}"), Vec::new()))?;
        let kind = value.get("type").and_then(Value::as_str).ok_or_else(|| {
            Refusal::new(
                "INVALID_MESSAGE",
                "expected {\"type\": \"subscribe\"|\"unsubscribe\", \"topics\": [...]}",
                vec![],
            )
        })?;
        if !matches!(kind, "subscribe" | "unsubscribe") {
            let message = format!("unknown type {kind:?}: use subscribe or unsubscribe");
            return Err(Refusal::new("UNKNOWN_TYPE", message, Vec::new()));
        }
        let topics: Option<Vec<String>> = value
            .get("topics")
            .and_then(Value::as_array)
            .and_then(|list| list.iter().map(|t| t.as_str().map(str::to_owned)).collect::<Option<Vec<String>>>());
        let topics = topics
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Refusal::new("INVALID_MESSAGE", "topics must be a non-empty list of strings", vec![]))?;
        Ok(if kind == "subscribe" { Request::Subscribe(topics) } else { Request::Unsubscribe(topics) })
    }
}

/// Parses every topic, or refuses the request naming the ones that are not topics.
fn parse_all(raw: &[String]) -> Result<Vec<Topic>, Refusal> {
    let mut topics = Vec::with_capacity(raw.len());
    let mut invalid = Vec::new();
    let mut why = String::new();
    for r in raw {
        match Topic::parse(r) {
            Ok(topic) => topics.push(topic),
            Err(e) => {
                if why.is_empty() {
                    why = format!("{r:?}: {e}");
                }
                invalid.push(r.clone());
            }
        }
    }
    if invalid.is_empty() { Ok(topics) } else { Err(Refusal::new("INVALID_TOPIC", why, invalid)) }
}

impl WsSession {
    pub(super) fn spawn(
        viewer: Viewer,
        revalidate: Revalidate,
        sink: actix_ws::Session,
        stream: AggregatedMessageStream,
        deps: Arc<SessionDeps>,
    ) {
        let id = SessionId::next();
        WsSession::create(move |ctx| {
            ctx.add_stream(stream);
            WsSession {
                id,
                viewer,
                revalidate,
                beats: 0,
                deps,
                sink,
                queue: VecDeque::new(),
                events_queued: 0,
                control_queued: 0,
                writing: false,
                held: VecDeque::new(),
                received: 0,
                topics: HashSet::new(),
                backlog: None,
                last_heard: Instant::now(),
                closing: false,
            }
        });
    }

    fn send_control(&mut self, frame: Outgoing, ctx: &mut Context<Self>) {
        if self.control_queued >= MAX_CONTROL {
            self.close(ctx, CloseCode::Policy, "too slow: the client is not reading".to_owned(), Why::Slow);
            return;
        }
        self.control_queued += 1;
        self.queue.push_back(frame);
        self.write_next(ctx);
    }

    fn refuse(&mut self, refusal: Refusal, ctx: &mut Context<Self>) {
        log::debug!("{}: {} {}", self.id, refusal.reason, refusal.message);
        self.send_control(Outgoing::Control(refusal.frame()), ctx);
    }

    /// Queues an answer once the session has taken the `after` pushes sent before it.
    fn answer_after(&mut self, after: u64, frame: String, ctx: &mut Context<Self>) {
        if after <= self.received && self.held.is_empty() {
            self.send_control(Outgoing::Control(frame), ctx);
        } else if self.held.len() + self.control_queued >= MAX_CONTROL {
            self.close(ctx, CloseCode::Policy, "too slow: the client is not reading".to_owned(), Why::Slow);
        } else {
            self.held.push_back((after, frame));
        }
    }

    fn release_held(&mut self, ctx: &mut Context<Self>) {
        while self.held.front().is_some_and(|(after, _)| *after <= self.received) {
            if let Some((_, frame)) = self.held.pop_front() {
                self.send_control(Outgoing::Control(frame), ctx);
            }
        }
    }

    fn push_events(&mut self, frames: Vec<ByteString>, missed: u64, ctx: &mut Context<Self>) {
        let capacity = self.deps.settings.queue_frames.max(1);
        // Frames beyond a whole queue would be dropped at once: skip them.
        let skip = frames.len().saturating_sub(capacity);
        let mut dropped = missed + skip as u64;
        for frame in frames.into_iter().skip(skip) {
            self.queue.push_back(Outgoing::Event(frame));
            self.events_queued += 1;
        }
        while self.events_queued > capacity {
            let Some(oldest) = self.queue.iter().position(|o| matches!(o, Outgoing::Event(_))) else { break };
            self.queue.remove(oldest);
            self.events_queued -= 1;
            dropped += 1;
        }
        self.deps.metrics.dropped.inc_by(dropped.saturating_sub(missed));
        if self.events_queued >= capacity || dropped > 0 {
            let backlog = self.backlog.get_or_insert_with(|| Backlog { since: Instant::now(), dropped: 0 });
            backlog.dropped += dropped;
            if backlog.dropped > self.deps.settings.max_dropped {
                let reason = format!("too slow: {} events dropped", backlog.dropped);
                self.close(ctx, CloseCode::Policy, reason, Why::Slow);
                return;
            }
        }
        self.write_next(ctx);
    }

    /// Starts writing the next frame unless one is on its way.
    fn write_next(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.closing {
            return;
        }
        let Some(frame) = self.queue.pop_front() else {
            // Caught up.
            self.backlog = None;
            return;
        };
        let is_event = match frame {
            Outgoing::Event(_) => {
                self.events_queued -= 1;
                true
            }
            _ => {
                self.control_queued -= 1;
                false
            }
        };
        self.writing = true;
        let mut sink = self.sink.clone();
        let write = async move {
            match frame {
                Outgoing::Event(text) => sink.text(text).await,
                Outgoing::Control(text) => sink.text(text).await,
                Outgoing::Ping => sink.ping(b"").await,
                Outgoing::Pong(payload) => sink.pong(&payload).await,
            }
        };
        ctx.spawn(write.into_actor(self).map(move |written, session, ctx| {
            session.writing = false;
            match written {
                Ok(()) => {
                    if is_event {
                        session.deps.metrics.frames_sent.inc();
                    }
                    session.write_next(ctx);
                }
                // The connection is gone.
                Err(_) => ctx.stop(),
            }
        }));
    }

    /// Sends a close frame after what the socket already has, and stops. The frame is
    /// sent by a task of its own, given up after the client timeout: a client that is not
    /// reading may never make room for it, and the session's memory goes now.
    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, description: String, why: Why) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.deps.metrics.closed.with_label_values(&[why.label()]).inc();
        match why {
            Why::Client | Why::Shutdown => log::debug!("{} closing ({why:?}): {description}", self.id),
            _ => log::info!("{} of customer {} closed ({why:?}): {description}", self.id, self.viewer.customer_id),
        }
        let sink = self.sink.clone();
        let grace = self.deps.settings.client_timeout;
        actix::spawn(async move {
            let reason = CloseReason { code, description: Some(description) };
            let _ = tokio::time::timeout(grace, sink.close(Some(reason))).await;
        });
        ctx.stop();
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let settings = &self.deps.settings;
        if self.last_heard.elapsed() > settings.client_timeout {
            let reason = format!("heartbeat timeout: nothing from the client for {}", secs(settings.client_timeout));
            self.close(ctx, CloseCode::Policy, reason, Why::Heartbeat);
            return;
        }
        if let Some(backlog) = &self.backlog
            && backlog.since.elapsed() > settings.slow_grace
        {
            let reason =
                format!("too slow: behind for {}, {} events dropped", secs(settings.slow_grace), backlog.dropped);
            self.close(ctx, CloseCode::Policy, reason, Why::Slow);
            return;
        }
        self.send_control(Outgoing::Ping, ctx);
        self.beats = self.beats.wrapping_add(1);
        if self.beats.is_multiple_of(REVALIDATE_EVERY) {
            ctx.spawn((self.revalidate)().into_actor(self).map(|valid, session, ctx| {
                if !valid {
                    let reason = "credentials revoked, expired or changed".to_owned();
                    session.close(ctx, CloseCode::Policy, reason, Why::Revoked);
                }
            }));
        }
    }

    fn handle_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        match Request::parse(text) {
            Ok(Request::Subscribe(topics)) => self.subscribe(topics, ctx),
            Ok(Request::Unsubscribe(topics)) => self.unsubscribe(topics, ctx),
            Err(refusal) => self.refuse(refusal, ctx),
        }
    }

    /// Checks the topics against the viewer; the agents named by topics that only the
    /// database can settle (another agent of a customer-wide viewer) are returned.
    fn authorize(&self, raw: &[String], topics: &[Topic]) -> Result<Vec<(String, AgentId)>, Refusal> {
        let viewer = &self.viewer;
        let own_agent = viewer.agent_id.as_ref().map(AgentId::as_str);
        let mut forbidden = Vec::new();
        let mut why = "";
        let mut to_check = Vec::new();
        for (raw, topic) in raw.iter().zip(topics) {
            let refused = match &topic.owner {
                Owner::Anyone => Some("a topic names one customer or agent, not *"),
                Owner::Customer(_) if !viewer.whole_customer => {
                    Some("this login follows its own agent_id: topics, not the customer's")
                }
                Owner::Customer(id) if id != viewer.customer_id.as_str() => Some("not your customer"),
                Owner::Agent(id) if Some(id.as_str()) != own_agent && !viewer.whole_customer => {
                    Some("this login follows only its own agent")
                }
                _ if topic.resource.as_deref().is_some_and(|r| !viewer.may_see(r)) => {
                    Some("this login may not read that resource")
                }
                Owner::Agent(id) if Some(id.as_str()) != own_agent => {
                    match id.parse::<AgentId>() {
                        Ok(agent) => to_check.push((raw.clone(), agent)),
                        Err(_) => forbidden.push(raw.clone()),
                    }
                    None
                }
                _ => None,
            };
            if let Some(reason) = refused {
                if why.is_empty() {
                    why = reason;
                }
                forbidden.push(raw.clone());
            }
        }
        if forbidden.is_empty() { Ok(to_check) } else { Err(Refusal::new("TOPIC_FORBIDDEN", why, forbidden)) }
    }

    fn subscribe(&mut self, raw: Vec<String>, ctx: &mut Context<Self>) {
        let topics = match parse_all(&raw).and_then(|topics| self.authorize(&raw, &topics).map(|c| (topics, c))) {
            Ok(checked) => checked,
            Err(refusal) => return self.refuse(refusal, ctx),
        };
        let (topics, to_check) = topics;
        let canonical: Vec<String> = topics.iter().map(|t| t.as_str().to_owned()).collect();
        let new = canonical.iter().filter(|t| !self.topics.contains(*t)).collect::<HashSet<_>>().len();
        if self.topics.len() + new > MAX_TOPICS {
            let message = format!("a session holds at most {MAX_TOPICS} topics");
            return self.refuse(Refusal::new("TOO_MANY_TOPICS", message, raw), ctx);
        }
        let hub = self.deps.hub.clone();
        let db = self.deps.db.clone();
        let customer_id = self.viewer.customer_id.clone();
        let session = self.id;
        let topics_for_hub = canonical.clone();
        let change = async move {
            if !to_check.is_empty() {
                let unknown = db
                    .read(move |conn| {
                        let mut unknown = Vec::new();
                        for (raw, agent_id) in &to_check {
                            match agent::get(conn, &customer_id, agent_id) {
                                Ok(_) => {}
                                Err(DbError::NotFound) => unknown.push(raw.clone()),
                                Err(e) => return Err(e),
                            }
                        }
                        Ok(unknown)
                    })
                    .await
                    .map_err(|e| {
                        log::warn!("ws subscribe: looking up agents: {e}");
                        Refusal::new("UNAVAILABLE", "could not check the agents; retry later", Vec::new())
                    })?;
                if !unknown.is_empty() {
                    return Err(Refusal::new("TOPIC_FORBIDDEN", "no such agent in your customer", unknown));
                }
            }
            hub.send(AddTopics { session, topics: topics_for_hub })
                .await
                .ok()
                .flatten()
                .ok_or_else(|| Refusal::new("UNAVAILABLE", "the event hub is not available", Vec::new()))
        };
        // `wait`: requests are answered in the order they came, each after its change is
        // in place. It lasts one hub round trip (and an indexed read for another agent).
        ctx.wait(change.into_actor(self).map(move |answer, session, ctx| match answer {
            Ok(after) => {
                session.topics.extend(canonical.iter().cloned());
                session.answer_after(after, ack(&canonical), ctx);
            }
            Err(refusal) => session.refuse(refusal, ctx),
        }));
    }

    fn unsubscribe(&mut self, raw: Vec<String>, ctx: &mut Context<Self>) {
        let topics = match parse_all(&raw) {
            Ok(topics) => topics,
            Err(refusal) => return self.refuse(refusal, ctx),
        };
        let canonical: Vec<String> = topics.iter().map(|t| t.as_str().to_owned()).collect();
        for topic in &canonical {
            self.topics.remove(topic);
        }
        let change = self.deps.hub.send(RemoveTopics { session: self.id, topics: canonical.clone() });
        ctx.wait(change.into_actor(self).map(move |answer, session, ctx| match answer.ok().flatten() {
            Some(after) => session.answer_after(after, ack(&canonical), ctx),
            None => session.refuse(Refusal::new("UNAVAILABLE", "the event hub is not available", vec![]), ctx),
        }));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.deps.metrics.sessions.inc();
        log::debug!("{} opened for customer {}", self.id, self.viewer.customer_id);
        let connect = Connect {
            session: self.id,
            customer_id: self.viewer.customer_id.clone(),
            hidden: self.viewer.hidden.clone(),
            push: ctx.address().recipient(),
        };
        // Registered before the first client frame is read.
        ctx.wait(self.deps.hub.send(connect).into_actor(self).map(|registered, session, ctx| {
            if registered.is_err() {
                log::error!("{}: the hub is gone", session.id);
                ctx.stop();
            }
        }));
        ctx.run_interval(self.deps.settings.heartbeat_interval, |session, ctx| session.heartbeat(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.deps.metrics.sessions.dec();
        // Once per session, so the unbounded send cannot pile up.
        self.deps.hub.do_send(Disconnect { session: self.id });
    }
}

impl Handler<Push> for WsSession {
    type Result = ();

    fn handle(&mut self, push: Push, ctx: &mut Context<Self>) {
        match push {
            Push::Events { seq, frames, missed } => {
                // Answers the hub gave before this push go out before its frames.
                self.received = seq - 1;
                self.release_held(ctx);
                self.received = seq;
                self.push_events(frames, missed, ctx);
                self.release_held(ctx);
            }
            Push::Shutdown => {
                self.close(ctx, CloseCode::Away, "the server is shutting down".to_owned(), Why::Shutdown);
            }
        }
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, message: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.last_heard = Instant::now();
        match message {
            Ok(AggregatedMessage::Text(text)) => self.handle_text(&text, ctx),
            Ok(AggregatedMessage::Binary(_)) => {
                self.refuse(Refusal::new("INVALID_MESSAGE", "frames are JSON text, not binary", vec![]), ctx)
            }
            Ok(AggregatedMessage::Ping(payload)) => self.send_control(Outgoing::Pong(payload), ctx),
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(reason)) => {
                let (code, description) = match reason {
                    Some(CloseReason { code, .. }) => (code, String::new()),
                    None => (CloseCode::Normal, String::new()),
                };
                self.close(ctx, code, description, Why::Client);
            }
            Err(ProtocolError::Overflow) => {
                let reason = format!("a message is limited to {} bytes", super::MAX_FRAME_BYTES);
                self.close(ctx, CloseCode::Size, reason, Why::Protocol);
            }
            Err(e) => self.close(ctx, CloseCode::Protocol, e.to_string(), Why::Protocol),
        }
    }
}
