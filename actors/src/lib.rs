//! The callplane domain: one actor per live call and WebSocket session (and, later,
//! conference), their manager actors, the event bus and its subscribers, the read cache
//! and the media backends.
//!
//! [`Domain::start`] wires them in the current actix `System` and returns the addresses
//! the gateway talks to.

pub mod agent_stats;
pub mod billing;
pub mod bus;
pub mod cache;
pub mod call;
pub mod media;
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
use crate::media::sim::{SimNetwork, SimSettings};
use crate::ws::{Ws, WsSettings};
use crate::webhook::{WebhookDispatcher, WebhookSettings};

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
        let gauges = CallGauges::new(registry).map_err(|e| e.to_string())?;
        let calls = CallManager::start(db.clone(), media, cache.clone(), settings.calls, gauges);
        BillingSubscriber::start(calls.clone(), settings.billing, db.clone(), bus.clone());
        AgentStatsSubscriber::start(db, bus.clone());
        calls.send(call::Recover).await.map_err(|e| format!("call recovery: {e}"))?;

        Ok(Domain { calls, bus, cache, ws, webhooks })
    }
}
