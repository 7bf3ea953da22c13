//! The read cache: cache-aside in front of the database for `GET /v1.0/calls/{id}`.
//!
//! Values are the resource's JSON, under `<resource>:<id>` (`call:<id>`), for 300 s.
//! In-process ([`LocalCache`], moka, bounded by bytes) by default; Redis
//! ([`RedisCache`], one `ConnectionManager`) when `REDIS_URL` is set, so that several
//! nodes share it. Every committed change deletes its key before it is announced (the
//! event bus and the owning actor both do; see [`CacheAside::invalidate`]).
//!
//! Redis faults never reach a client: a failed read is a miss, a failed write is
//! skipped, a failed delete is remembered and retried (and its key is not trusted
//! meanwhile); after a fault the cache is bypassed for a second before it is tried
//! again. Each fault is logged and counted.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::IntCounterVec;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A key-value cache of JSON documents with one TTL for all entries.
pub trait Cache: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, String>>;
    fn set<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<(), String>>;
    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), String>>;
}

/// In-process cache, bounded by the bytes it holds.
pub struct LocalCache {
    inner: moka::sync::Cache<String, Bytes>,
}

impl LocalCache {
    pub fn new(ttl: Duration, max_bytes: u64) -> LocalCache {
        let inner = moka::sync::Cache::builder()
            .weigher(|k: &String, v: &Bytes| u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX))
            .max_capacity(max_bytes)
            .time_to_live(ttl)
            .build();
        LocalCache { inner }
    }
}

impl Cache for LocalCache {
    fn name(&self) -> &'static str {
        "local"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, String>> {
        let value = self.inner.get(key);
        Box::pin(async move { Ok(value) })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<(), String>> {
        self.inner.insert(key.to_owned(), value);
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), String>> {
        for key in keys {
            self.inner.invalidate(key);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Redis, through one multiplexed `ConnectionManager` that reconnects by itself.
pub struct RedisCache {
    conn: redis::aio::ConnectionManager,
    ttl_secs: u64,
    /// Bypass Redis until this instant (milliseconds since `epoch`) after a fault.
    open_until: AtomicU64,
    epoch: Instant,
    /// Keys whose delete failed: not trusted until a delete succeeds.
    pending: Mutex<HashSet<String>>,
    retrying: AtomicBool,
}

/// Longest time a Redis command may take before it counts as a fault.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How long the cache is bypassed after a fault.
const REDIS_PAUSE: Duration = Duration::from_secs(1);
/// Failed deletes remembered at most; beyond that the TTL bounds staleness.
const MAX_PENDING: usize = 100_000;

impl RedisCache {
    /// Connects lazily: a Redis that is down at start-up is a degraded cache, not a
    /// failed start.
    pub fn new(url: &str, ttl: Duration) -> Result<Arc<RedisCache>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("REDIS_URL: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        Ok(Arc::new(RedisCache {
            conn,
            ttl_secs: ttl.as_secs().max(1),
            open_until: AtomicU64::new(0),
            epoch: Instant::now(),
            pending: Mutex::new(HashSet::new()),
            retrying: AtomicBool::new(false),
        }))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn bypassed(&self) -> bool {
        self.now_ms() < self.open_until.load(Ordering::Relaxed)
    }

    fn fault(&self, what: &str, e: impl std::fmt::Display) -> String {
        self.open_until.store(self.now_ms() + REDIS_PAUSE.as_millis() as u64, Ordering::Relaxed);
        let message = format!("redis {what} failed: {e}");
        log::warn!("{message}; bypassing the cache for {REDIS_PAUSE:?}");
        message
    }

    fn remember(&self, keys: &[String]) {
        if let Ok(mut pending) = self.pending.lock() {
            for key in keys {
                if pending.len() >= MAX_PENDING {
                    log::error!("more than {MAX_PENDING} cache deletes pending; older entries expire by TTL");
                    break;
                }
                pending.insert(key.clone());
            }
        }
    }

    fn is_pending(&self, key: &str) -> bool {
        self.pending.lock().map(|p| !p.is_empty() && p.contains(key)).unwrap_or(true)
    }

    /// Retries the remembered deletes once Redis answers again.
    fn retry_pending(self: &Arc<Self>) {
        if self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REDIS_PAUSE).await;
                let keys: Vec<String> = match this.pending.lock() {
                    Ok(pending) => pending.iter().take(1_000).cloned().collect(),
                    Err(_) => break,
                };
                if keys.is_empty() {
                    break;
                }
                let mut conn = this.conn.clone();
                let deleted =
                    tokio::time::timeout(REDIS_TIMEOUT, redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn))
                        .await;
                if let Ok(Ok(())) = deleted
                    && let Ok(mut pending) = this.pending.lock()
                {
                    keys.iter().for_each(|k| {
                        pending.remove(k);
                    });
                    log::info!("redis is back: replayed {} cache deletes", keys.len());
                }
            }
            this.retrying.store(false, Ordering::Release);
        });
    }
}

/// A shared handle that implements [`Cache`] (so that the retry task can own a clone).
pub struct SharedRedis(pub Arc<RedisCache>);

impl Cache for SharedRedis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, String>> {
        Box::pin(async move {
            let redis = &self.0;
            if redis.bypassed() || redis.is_pending(key) {
                return Ok(None);
            }
            let mut conn = redis.conn.clone();
            match tokio::time::timeout(
                REDIS_TIMEOUT,
                redis::cmd("GET").arg(key).query_async::<Option<Vec<u8>>>(&mut conn),
            )
            .await
            {
                Ok(Ok(value)) => Ok(value.map(Bytes::from)),
                Ok(Err(e)) => Err(redis.fault("GET", e)),
                Err(_) => Err(redis.fault("GET", "timed out")),
            }
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let redis = &self.0;
            if redis.bypassed() || redis.is_pending(key) {
                return Ok(());
            }
            let mut conn = redis.conn.clone();
            let mut set = redis::cmd("SET");
            set.arg(key).arg(value.as_ref()).arg("EX").arg(redis.ttl_secs);
            match tokio::time::timeout(REDIS_TIMEOUT, set.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(redis.fault("SET", e)),
                Err(_) => Err(redis.fault("SET", "timed out")),
            }
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let redis = &self.0;
            if keys.is_empty() {
                return Ok(());
            }
            if redis.bypassed() {
                redis.remember(keys);
                redis.retry_pending();
                return Ok(());
            }
            let mut conn = redis.conn.clone();
            let result =
                tokio::time::timeout(REDIS_TIMEOUT, redis::cmd("DEL").arg(keys).query_async::<()>(&mut conn)).await;
            let error = match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => redis.fault("DEL", e),
                Err(_) => redis.fault("DEL", "timed out"),
            };
            redis.remember(keys);
            redis.retry_pending();
            Err(error)
        })
    }
}

/// Cache-aside over a [`Cache`]: hit, or load and fill; and invalidation.
///
/// A read that misses, loads from the database and fills could race a change: it
/// could read the old row, the change commit and delete the key, and the read then
/// store the old row for 300 s. Each key hashes to one of a set of counters that every
/// invalidation bumps; a fill is skipped when its counter moved during the load.
#[derive(Clone)]
pub struct CacheAside {
    cache: Arc<dyn Cache>,
    epochs: Arc<[AtomicU64]>,
    hasher: RandomState,
    /// `callplane_cache_operations_total{cache, result}`.
    ops: IntCounterVec,
}

const EPOCH_STRIPES: usize = 4096;

impl CacheAside {
    pub fn new(cache: Arc<dyn Cache>, registry: &prometheus::Registry) -> Result<CacheAside, prometheus::Error> {
        let ops = IntCounterVec::new(
            prometheus::Opts::new("cache_operations_total", "Cache lookups and faults by result (hit, miss, error)"),
            &["cache", "result"],
        )?;
        registry.register(Box::new(ops.clone()))?;
        Ok(CacheAside {
            cache,
            epochs: (0..EPOCH_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            ops,
        })
    }

    pub fn backend(&self) -> &'static str {
        self.cache.name()
    }

    fn epoch(&self, key: &str) -> &AtomicU64 {
        &self.epochs[(self.hasher.hash_one(key) as usize) % EPOCH_STRIPES]
    }

    fn count(&self, result: &str) {
        self.ops.with_label_values(&[self.cache.name(), result]).inc();
    }

    /// The cached value, or `load()`'s, stored for next time. `load` returning `None`
    /// (not found) is not cached.
    pub async fn get_or_load<E, F, Fut>(&self, key: &str, load: F) -> Result<Option<Bytes>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Bytes>, E>>,
    {
        match self.cache.get(key).await {
            Ok(Some(hit)) => {
                self.count("hit");
                return Ok(Some(hit));
            }
            Ok(None) => self.count("miss"),
            Err(_) => self.count("error"),
        }
        let before = self.epoch(key).load(Ordering::Acquire);
        let loaded = load().await?;
        if let Some(value) = &loaded
            && self.epoch(key).load(Ordering::Acquire) == before
            && self.cache.set(key, value.clone()).await.is_err()
        {
            self.count("error");
        }
        Ok(loaded)
    }

    /// Deletes `keys`; call after the change committed and before it is announced.
    pub async fn invalidate(&self, keys: &[String]) {
        for key in keys {
            self.epoch(key).fetch_add(1, Ordering::AcqRel);
        }
        if self.cache.delete(keys).await.is_err() {
            self.count("error");
        }
    }
}

/// The cache key of a resource.
pub fn key(resource: &str, id: &str) -> String {
    format!("{resource}:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_fill_racing_an_invalidation_is_dropped() {
        let aside =
            CacheAside::new(Arc::new(LocalCache::new(Duration::from_secs(300), 1 << 20)), &prometheus::Registry::new())
                .expect("metrics");
        let stale = aside
            .get_or_load("call:1", || async {
                // The change commits and is invalidated while this load is in flight.
                aside.invalidate(&["call:1".to_owned()]).await;
                Ok::<_, ()>(Some(Bytes::from_static(b"old")))
            })
            .await;
        assert_eq!(stale, Ok(Some(Bytes::from_static(b"old"))));
        let fresh = aside.get_or_load("call:1", || async { Ok::<_, ()>(Some(Bytes::from_static(b"new"))) }).await;
        assert_eq!(fresh, Ok(Some(Bytes::from_static(b"new"))), "the stale value must not have been cached");
        let hit = aside.get_or_load("call:1", || async { Ok::<_, ()>(None) }).await;
        assert_eq!(hit, Ok(Some(Bytes::from_static(b"new"))));
    }
}
