//! Live events over WebSocket (SPEC §7).
//!
//! * [`WsHub`] subscribes to the event bus as a live subscriber, keeps every session's
//!   topics in an index keyed by topic, and routes each committed event to the sessions
//!   whose topics match it: it computes the handful of subscription keys that can match
//!   the event ([`topic::for_each_key`]) and looks them up, so the cost of an event does
//!   not grow with the number of sessions that do not want it. It never awaits: each
//!   session gets its frames with a bounded `try_send`.
//! * [`WsSession`] is one actor per connection, fed by the socket's message stream. It
//!   answers the client's subscribe/unsubscribe frames, keeps the frames waiting for the
//!   socket in a bounded queue (a client that cannot keep up loses its oldest events and,
//!   if it stays behind, is closed), pings the client and closes it when it falls silent.
//!
//! The gateway authenticates before upgrading and hands the upgraded connection to
//! [`Ws::serve`].

mod hub;
mod session;
pub mod topic;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::Db;
use callplane_schema::ids::{AgentId, CustomerId};
use prometheus::{IntCounter, IntCounterVec, IntGauge};

pub use hub::{AddTopics, CloseAll, Connect, Disconnect, Push, RemoveTopics, WsHub};
pub use session::{SessionId, WsSession};

use crate::bus::{self, EventBus};

/// The server pings each client this often.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// A client from which nothing (not even a pong) arrived for this long is closed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Event frames a session holds for a socket that is not taking them.
pub const QUEUE_FRAMES: usize = 256;
/// A session that loses more events than this before it catches up is closed.
pub const MAX_DROPPED: u64 = 1024;
/// A session whose queue has been full, without emptying, for this long is closed.
pub const SLOW_GRACE: Duration = Duration::from_secs(10);
/// The largest frame, and the largest message (fragments joined), a client may send.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Subscriptions one session may hold.
pub const MAX_TOPICS: usize = 100;
/// The session's credential is checked again every this many heartbeats (a minute by
/// default), so a revoked key, a deleted or re-roled agent or an expired token does not
/// keep a socket open.
pub const REVALIDATE_EVERY: u32 = 6;

/// Checks the session's credential again: false when it is no longer good (revoked,
/// expired, or its role changed); true when it is, or when that cannot be told now.
pub type Revalidate = std::rc::Rc<dyn Fn() -> futures_util::future::LocalBoxFuture<'static, bool>>;

#[derive(Debug, Clone)]
pub struct WsSettings {
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    pub queue_frames: usize,
    pub max_dropped: u64,
    pub slow_grace: Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            heartbeat_interval: HEARTBEAT_INTERVAL,
            client_timeout: CLIENT_TIMEOUT,
            queue_frames: QUEUE_FRAMES,
            max_dropped: MAX_DROPPED,
            slow_grace: SLOW_GRACE,
        }
    }
}

/// Who is on the other end of a session, as far as topics are concerned.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub customer_id: CustomerId,
    /// The agent behind the credential; `None` for an access key.
    pub agent_id: Option<AgentId>,
    /// Admins, managers and access keys follow the whole customer and any of its agents;
    /// an `agent` only its own `agent_id:` topics.
    pub whole_customer: bool,
    /// Resource kinds (`billing`, …) the role may not read: refused by name, skipped by
    /// wildcards.
    pub hidden: Vec<String>,
}

impl Viewer {
    pub fn may_see(&self, resource: &str) -> bool {
        !self.hidden.iter().any(|h| h == resource)
    }
}

/// WebSocket metrics, shared by the hub and the sessions.
#[derive(Clone)]
pub struct WsMetrics {
    sessions: IntGauge,
    frames_sent: IntCounter,
    dropped: IntCounter,
    closed: IntCounterVec,
}

impl WsMetrics {
    pub fn new(registry: &prometheus::Registry) -> Result<WsMetrics, prometheus::Error> {
        let sessions = IntGauge::new("ws_sessions", "Open WebSocket sessions")?;
        let frames_sent = IntCounter::new("ws_frames_sent_total", "Event frames written to WebSocket clients")?;
        let dropped =
            IntCounter::new("ws_events_dropped_total", "Events WebSocket sessions lost because the client was slow")?;
        let closed = IntCounterVec::new(
            prometheus::Opts::new("ws_sessions_closed_total", "WebSocket sessions closed, by why"),
            &["reason"],
        )?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(frames_sent.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        Ok(WsMetrics { sessions, frames_sent, dropped, closed })
    }
}

/// What every session shares.
pub(crate) struct SessionDeps {
    hub: Addr<WsHub>,
    db: Db,
    settings: WsSettings,
    metrics: WsMetrics,
}

/// The gateway's handle on live events.
#[derive(Clone)]
pub struct Ws {
    deps: Arc<SessionDeps>,
}

impl Ws {
    /// Starts the hub and subscribes it to the bus.
    pub async fn start(
        db: Db,
        bus: &Addr<EventBus>,
        settings: WsSettings,
        registry: &prometheus::Registry,
    ) -> Result<Ws, String> {
        let metrics = WsMetrics::new(registry).map_err(|e| e.to_string())?;
        let hub = WsHub::new(metrics.clone()).start();
        bus.send(bus::Subscribe { name: "ws", deliver: hub.clone().recipient(), catch_up: None, filter: None })
            .await
            .map_err(|e| format!("subscribing the WebSocket hub: {e}"))?;
        Ok(Ws { deps: Arc::new(SessionDeps { hub, db, settings, metrics }) })
    }

    /// Runs a session on an upgraded connection, in the current arbiter (the connection's
    /// worker).
    pub fn serve(
        &self,
        viewer: Viewer,
        revalidate: Revalidate,
        sink: actix_ws::Session,
        stream: actix_ws::MessageStream,
    ) {
        let stream =
            stream.max_frame_size(MAX_FRAME_BYTES).aggregate_continuations().max_continuation_size(MAX_FRAME_BYTES);
        WsSession::spawn(viewer, revalidate, sink, stream, self.deps.clone());
    }

    /// Closes every session (the daemon is stopping), so that their connections end
    /// before the server's grace period instead of holding it up.
    pub async fn close_all(&self) {
        if let Err(e) = self.deps.hub.send(CloseAll).await {
            log::warn!("closing WebSocket sessions: {e}");
        }
    }
}
