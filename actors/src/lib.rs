//! The callplane domain: one actor per live call, conference, flow run and WebSocket
//! session, their manager actors, the event bus and its subscribers (billing, agent
//! statistics, webhooks, flow starts), the read cache, the simulated SMS carrier and
//! the media backends.
//!
//! [`Domain::start`] wires them in the current actix `System` and returns the addresses
//! the gateway talks to.

pub mod agent_stats;
pub mod billing;
pub mod bus;
pub mod cache;
pub mod call;
pub mod conference;
pub mod flow;
pub mod media;
pub mod message;
pub mod outbound;
pub mod webhook;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use callplane_schema::Db;

use crate::agent_stats::AgentStatsSubscriber;
use crate::billing::{BillingSettings, BillingSubscriber};
use crate::bus::EventBus;
use crate::cache::{Cache, CacheAside, LocalCache, RedisCache, SharedRedis};
use crate::call::{CallGauges, CallManager, CallSettings};
use crate::conference::ConferenceManager;
use crate::flow::{FlowManager, FlowSettings, FlowStarter};
use crate::media::MediaBackend;
use crate::media::sim::{SimNetwork, SimSettings};
use crate::message::Messenger;
use crate::webhook::{WebhookDispatcher, WebhookSettings};
use crate::ws::{Ws, WsSettings};

/// Settings of the domain, filled from the daemon's configuration.
#[derive(Debug, Clone)]
pub struct DomainSettings {
    pub sim: SimSettings,
    pub calls: CallSettings,
    pub billing: BillingSettings,
    /// `None`: the in-process cache.
    pub redis_url: Option<String>,
    pub cache_ttl: Duration,
    pub cache_max_bytes: u64,
    pub ws: WsSettings,
    pub webhooks: WebhookSettings,
    pub flows: FlowSettings,
}

impl Default for DomainSettings {
    fn default() -> Self {
        DomainSettings {
            sim: SimSettings::default(),
            calls: CallSettings::default(),
            billing: BillingSettings::default(),
            redis_url: None,
            cache_ttl: Duration::from_secs(300),
            cache_max_bytes: 256 * 1024 * 1024,
            ws: WsSettings::default(),
            webhooks: WebhookSettings::default(),
            flows: FlowSettings::default(),
        }
    }
}

/// The addresses and handles the gateway uses.
#[derive(Clone)]
pub struct Domain {
    pub calls: Addr<CallManager>,
    pub bus: Addr<EventBus>,
    pub cache: CacheAside,
    pub ws: Ws,
    pub webhooks: Addr<WebhookDispatcher>,
    pub flows: Addr<FlowManager>,
    pub conferences: Addr<ConferenceManager>,
    pub messages: Addr<Messenger>,
    /// The media backend is the simulated network (the sandbox routes work).
    pub sandbox: bool,
}

impl Domain {
    /// Starts the domain's actors in the current `System`, installs the event bus as
    /// the database's commit hook and recovers calls left live by an earlier process.
    pub async fn start(db: Db, settings: DomainSettings, registry: &prometheus::Registry) -> Result<Domain, String> {
        let backend: Arc<dyn Cache> = match &settings.redis_url {
            Some(url) => Arc::new(SharedRedis(RedisCache::new(url, settings.cache_ttl)?)),
            None => Arc::new(LocalCache::new(settings.cache_ttl, settings.cache_max_bytes)),
        };
        let cache = CacheAside::new(backend, registry).map_err(|e| e.to_string())?;

        let last_seq = db.read(callplane_schema::models::event::last_seq).await.map_err(|e| e.to_string())?;
        let bus = EventBus::new(cache.clone(), last_seq, registry).map_err(|e| e.to_string())?.start();
        db.set_commit_hook(EventBus::commit_hook(bus.clone()));
        let ws = Ws::start(db.clone(), &bus, settings.ws, registry).await?;
        let webhooks =
            webhook::start(db.clone(), bus.clone(), settings.webhooks, registry).map_err(|e| e.to_string())?;

        let media = Arc::new(SimNetwork::start(settings.sim));
        let sandbox = media.name() == "simulated";
        let gauges = CallGauges::new(registry).map_err(|e| e.to_string())?;
        let calls = CallManager::start(db.clone(), media, cache.clone(), settings.calls, gauges);
        BillingSubscriber::start(calls.clone(), settings.billing, db.clone(), bus.clone());
        AgentStatsSubscriber::start(db.clone(), bus.clone());
        calls.send(call::Recover).await.map_err(|e| format!("call recovery: {e}"))?;

        let messages = Messenger::new(db.clone()).start();
        messages.send(message::Recover).await.map_err(|e| format!("message recovery: {e}"))?;
        // Flows and conferences need each other's address: the flow manager's comes first.
        let flow_ctx = Context::<FlowManager>::new();
        let conferences = ConferenceManager::start(db.clone(), calls.clone(), flow_ctx.address(), registry)
            .map_err(|e| e.to_string())?;
        let flows = FlowManager::run(
            flow_ctx,
            db.clone(),
            calls.clone(),
            conferences.clone(),
            messages.clone(),
            settings.flows,
            registry,
        )
        .map_err(|e| e.to_string())?;
        flows.send(flow::Recover).await.map_err(|e| format!("flow recovery: {e}"))?;
        conferences.send(conference::Recover).await.map_err(|e| format!("conference recovery: {e}"))?;
        FlowStarter::start(flows.clone(), db, bus.clone());

        Ok(Domain { calls, bus, cache, ws, webhooks, flows, conferences, messages, sandbox })
    }
}
