//! Configuration: one typed struct, read from an optional TOML file, then overridden by
//! environment variables, then by command-line flags.
//!
//! | file key | environment | default |
//! |---|---|---|
//! | `bind` | `CALLPLANE_BIND` | `127.0.0.1:8080` |
//! | `database_url` | `DATABASE_URL` | `sqlite://data/callplane.db` |
//! | `redis_url` | `REDIS_URL` | unset: in-process cache |
//! | `data_dir` | `CALLPLANE_DATA_DIR` | `data` |
//! | `jwt_secret` | `CALLPLANE_JWT_SECRET` | generated once into `<data_dir>/jwt_secret` |
//! | `jwt_ttl_secs` | `CALLPLANE_JWT_TTL_SECS` | `86400` |
//! | `log_format` | `CALLPLANE_LOG_FORMAT` | `text` (`json`: one object per line) |
//! | `log_level` | `CALLPLANE_LOG` (or `RUST_LOG`) | `info` |
//! | `access_log` | `CALLPLANE_ACCESS_LOG` | `true` |
//! | `workers` | `CALLPLANE_WORKERS` | number of cores |
//! | `shutdown_grace_secs` | `CALLPLANE_SHUTDOWN_GRACE_SECS` | `30` |
//! | `body_limit_bytes` | `CALLPLANE_BODY_LIMIT_BYTES` | `262144` |
//! | `bootstrap` | `CALLPLANE_BOOTSTRAP` | `true`: first start on an empty database creates a customer |
//! | `db_pool_size` | `CALLPLANE_DB_POOL_SIZE` | `8` |
//! | `db_timeout_ms` | `CALLPLANE_DB_TIMEOUT_MS` | `500` |
//! | `db_attempts` | `CALLPLANE_DB_ATTEMPTS` | `3` |
//! | `rate_limit_per_second` | `CALLPLANE_RATE_LIMIT_PER_SECOND` | `1000` (0 turns it off) |
//! | `rate_limit_burst` | `CALLPLANE_RATE_LIMIT_BURST` | `2000` |
//! | `sim_ring_delay_ms` | `CALLPLANE_SIM_RING_DELAY_MS` | `100` |
//! | `sim_answer_delay_ms` | `CALLPLANE_SIM_ANSWER_DELAY_MS` | `1000` |
//! | `sim_dial_timeout_ms` | `CALLPLANE_SIM_DIAL_TIMEOUT_MS` | `30000`: unanswered calls end `noanswer` |
//! | `call_max_duration_secs` | `CALLPLANE_CALL_MAX_DURATION_SECS` | `14400`: answered calls end `timeout` |
//! | `cache_ttl_secs` | `CALLPLANE_CACHE_TTL_SECS` | `300` |
//! | `cache_max_bytes` | `CALLPLANE_CACHE_MAX_BYTES` | `268435456` (in-process cache) |
//! | `billing_unit` | `CALLPLANE_BILLING_UNIT` | `minute` (or `second`): calls are charged per started unit |
//! | `billing_balance_low_micros` | `CALLPLANE_BILLING_BALANCE_LOW_MICROS` | `1000000`: `billing.balance_low` below this |
//! | `ws_heartbeat_interval_ms` | `CALLPLANE_WS_HEARTBEAT_INTERVAL_MS` | `10000`: the server pings each WebSocket client |
//! | `ws_client_timeout_ms` | `CALLPLANE_WS_CLIENT_TIMEOUT_MS` | `30000`: a client silent this long is closed |
//! | `ws_queue_frames` | `CALLPLANE_WS_QUEUE_FRAMES` | `256`: events a session holds for a slow client |
//! | `ws_max_dropped` | `CALLPLANE_WS_MAX_DROPPED` | `1024`: a client losing more before it catches up is closed |
//! | `ws_slow_grace_ms` | `CALLPLANE_WS_SLOW_GRACE_MS` | `10000`: a client whose queue stays full this long is closed |
//! | `webhook_allow_private` | `CALLPLANE_WEBHOOK_ALLOW_PRIVATE` | `false`: webhooks and the `webhook_send` flow action refuse loopback and private targets |
//! | `webhook_timeout_ms` | `CALLPLANE_WEBHOOK_TIMEOUT_MS` | `10000`: to connect, and then to answer |
//! | `webhook_max_attempts` | `CALLPLANE_WEBHOOK_MAX_ATTEMPTS` | `10` |
//! | `webhook_max_age_secs` | `CALLPLANE_WEBHOOK_MAX_AGE_SECS` | `86400`: no retry past this age |
//! | `webhook_max_backoff_secs` | `CALLPLANE_WEBHOOK_MAX_BACKOFF_SECS` | `600` |
//! | `webhook_breaker_failures` | `CALLPLANE_WEBHOOK_BREAKER_FAILURES` | `5` consecutive failures open the breaker |
//! | `webhook_breaker_cooldown_secs` | `CALLPLANE_WEBHOOK_BREAKER_COOLDOWN_SECS` | `60` before a probe |
//!
//! A value that does not parse fails start-up with a message naming the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<String>,
    pub jwt_ttl_secs: u64,
    pub log_format: LogFormat,
    pub log_level: String,
    pub access_log: bool,
    pub workers: usize,
    pub shutdown_grace_secs: u64,
    pub body_limit_bytes: usize,
    pub bootstrap: bool,
    pub db_pool_size: u32,
    pub db_timeout_ms: u64,
    pub db_attempts: u32,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub sim_ring_delay_ms: u64,
    pub sim_answer_delay_ms: u64,
    pub sim_dial_timeout_ms: u64,
    pub call_max_duration_secs: u64,
    pub cache_ttl_secs: u64,
    pub cache_max_bytes: u64,
    pub billing_unit: BillingUnit,
    pub billing_balance_low_micros: i64,
    pub ws_heartbeat_interval_ms: u64,
    pub ws_client_timeout_ms: u64,
    pub ws_queue_frames: usize,
    pub ws_max_dropped: u64,
    pub ws_slow_grace_ms: u64,
    pub webhook_allow_private: bool,
    pub webhook_timeout_ms: u64,
    pub webhook_max_attempts: u32,
    pub webhook_max_age_secs: u64,
    pub webhook_max_backoff_secs: u64,
    pub webhook_breaker_failures: u32,
    pub webhook_breaker_cooldown_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/callplane.db".to_owned(),
            redis_url: None,
            data_dir: PathBuf::from("data"),
            jwt_secret: None,
            jwt_ttl_secs: 86_400,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            access_log: true,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            shutdown_grace_secs: 30,
            body_limit_bytes: 256 * 1024,
            bootstrap: true,
            db_pool_size: 8,
            db_timeout_ms: 500,
            db_attempts: 3,
            rate_limit_per_second: 1_000,
            rate_limit_burst: 2_000,
            sim_ring_delay_ms: 100,
            sim_answer_delay_ms: 1_000,
            sim_dial_timeout_ms: 30_000,
            call_max_duration_secs: 4 * 3600,
            cache_ttl_secs: 300,
            cache_max_bytes: 256 * 1024 * 1024,
            billing_unit: BillingUnit::Minute,
            billing_balance_low_micros: 1_000_000,
            ws_heartbeat_interval_ms: millis(callplane_actors::ws::HEARTBEAT_INTERVAL),
            ws_client_timeout_ms: millis(callplane_actors::ws::CLIENT_TIMEOUT),
            ws_queue_frames: callplane_actors::ws::QUEUE_FRAMES,
            ws_max_dropped: callplane_actors::ws::MAX_DROPPED,
            ws_slow_grace_ms: millis(callplane_actors::ws::SLOW_GRACE),
            webhook_allow_private: false,
            webhook_timeout_ms: 10_000,
            webhook_max_attempts: 10,
            webhook_max_age_secs: 24 * 3600,
            webhook_max_backoff_secs: 600,
            webhook_breaker_failures: 5,
            webhook_breaker_cooldown_secs: 60,
        }
    }
}

/// What calls are charged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BillingUnit {
    Minute,
    Second,
}

impl FromStr for BillingUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minute" => Ok(BillingUnit::Minute),
            "second" => Ok(BillingUnit::Second),
            other => Err(format!("{other:?} is not `minute` or `second`")),
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not `text` or `json`")),
        }
    }
}

/// Start-up refused: the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {cause}")]
    File { path: PathBuf, cause: String },
    #[error("invalid value for {setting}: {cause}")]
    Invalid { setting: &'static str, cause: String },
}

/// Overrides from flags, applied last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bind: Option<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub log_format: Option<String>,
    pub no_bootstrap: bool,
}

impl Settings {
    /// File, then environment, then flags.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let mut settings = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::File { path: path.to_owned(), cause: e.to_string() })?;
                toml::from_str(&text).map_err(|e| ConfigError::File { path: path.to_owned(), cause: e.to_string() })?
            }
            None => Settings::default(),
        };
        settings.apply_env(&env)?;
        settings.apply_flags(flags)?;
        settings.validate()?;
        Ok(settings)
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let mut source = Source(env);
        source.set("CALLPLANE_BIND", &mut self.bind)?;
        source.set("DATABASE_URL", &mut self.database_url)?;
        source.set_opt("REDIS_URL", &mut self.redis_url)?;
        source.set("CALLPLANE_DATA_DIR", &mut self.data_dir)?;
        source.set_opt("CALLPLANE_JWT_SECRET", &mut self.jwt_secret)?;
        source.set("CALLPLANE_JWT_TTL_SECS", &mut self.jwt_ttl_secs)?;
        source.set("CALLPLANE_LOG_FORMAT", &mut self.log_format)?;
        if !source.set("CALLPLANE_LOG", &mut self.log_level)? {
            source.set("RUST_LOG", &mut self.log_level)?;
        }
        source.set("CALLPLANE_ACCESS_LOG", &mut self.access_log)?;
        source.set("CALLPLANE_WORKERS", &mut self.workers)?;
        source.set("CALLPLANE_SHUTDOWN_GRACE_SECS", &mut self.shutdown_grace_secs)?;
        source.set("CALLPLANE_BODY_LIMIT_BYTES", &mut self.body_limit_bytes)?;
        source.set("CALLPLANE_BOOTSTRAP", &mut self.bootstrap)?;
        source.set("CALLPLANE_DB_POOL_SIZE", &mut self.db_pool_size)?;
        source.set("CALLPLANE_DB_TIMEOUT_MS", &mut self.db_timeout_ms)?;
        source.set("CALLPLANE_DB_ATTEMPTS", &mut self.db_attempts)?;
        source.set("CALLPLANE_RATE_LIMIT_PER_SECOND", &mut self.rate_limit_per_second)?;
        source.set("CALLPLANE_RATE_LIMIT_BURST", &mut self.rate_limit_burst)?;
        source.set("CALLPLANE_SIM_RING_DELAY_MS", &mut self.sim_ring_delay_ms)?;
        source.set("CALLPLANE_SIM_ANSWER_DELAY_MS", &mut self.sim_answer_delay_ms)?;
        source.set("CALLPLANE_SIM_DIAL_TIMEOUT_MS", &mut self.sim_dial_timeout_ms)?;
        source.set("CALLPLANE_CALL_MAX_DURATION_SECS", &mut self.call_max_duration_secs)?;
        source.set("CALLPLANE_CACHE_TTL_SECS", &mut self.cache_ttl_secs)?;
        source.set("CALLPLANE_CACHE_MAX_BYTES", &mut self.cache_max_bytes)?;
        source.set("CALLPLANE_BILLING_UNIT", &mut self.billing_unit)?;
        source.set("CALLPLANE_BILLING_BALANCE_LOW_MICROS", &mut self.billing_balance_low_micros)?;
        source.set("CALLPLANE_WS_HEARTBEAT_INTERVAL_MS", &mut self.ws_heartbeat_interval_ms)?;
        source.set("CALLPLANE_WS_CLIENT_TIMEOUT_MS", &mut self.ws_client_timeout_ms)?;
        source.set("CALLPLANE_WS_QUEUE_FRAMES", &mut self.ws_queue_frames)?;
        source.set("CALLPLANE_WS_MAX_DROPPED", &mut self.ws_max_dropped)?;
        source.set("CALLPLANE_WS_SLOW_GRACE_MS", &mut self.ws_slow_grace_ms)?;
        source.set("CALLPLANE_WEBHOOK_ALLOW_PRIVATE", &mut self.webhook_allow_private)?;
        source.set("CALLPLANE_WEBHOOK_TIMEOUT_MS", &mut self.webhook_timeout_ms)?;
        source.set("CALLPLANE_WEBHOOK_MAX_ATTEMPTS", &mut self.webhook_max_attempts)?;
        source.set("CALLPLANE_WEBHOOK_MAX_AGE_SECS", &mut self.webhook_max_age_secs)?;
        source.set("CALLPLANE_WEBHOOK_MAX_BACKOFF_SECS", &mut self.webhook_max_backoff_secs)?;
        source.set("CALLPLANE_WEBHOOK_BREAKER_FAILURES", &mut self.webhook_breaker_failures)?;
        source.set("CALLPLANE_WEBHOOK_BREAKER_COOLDOWN_SECS", &mut self.webhook_breaker_cooldown_secs)?;
        Ok(())
    }

    fn apply_flags(&mut self, flags: &Overrides) -> Result<(), ConfigError> {
        let lookup = |name: &str| match name {
            "--bind" => flags.bind.clone(),
            "--database-url" => flags.database_url.clone(),
            "--redis-url" => flags.redis_url.clone(),
            "--log-format" => flags.log_format.clone(),
            _ => None,
        };
        let mut source = Source(&lookup);
        source.set("--bind", &mut self.bind)?;
        source.set("--database-url", &mut self.database_url)?;
        source.set_opt("--redis-url", &mut self.redis_url)?;
        source.set("--log-format", &mut self.log_format)?;
        if flags.no_bootstrap {
            self.bootstrap = false;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        callplane_schema::Backend::from_url(&self.database_url)
            .map_err(|cause| ConfigError::Invalid { setting: "DATABASE_URL", cause })?;
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
        {
            return Err(ConfigError::Invalid {
                setting: "REDIS_URL",
                cause: format!("{url:?} is not a redis://, rediss:// or unix:// URL"),
            });
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::Invalid {
                setting: "CALLPLANE_JWT_SECRET",
                cause: "must be at least 32 characters".to_owned(),
            });
        }
        if self.workers == 0 {
            return Err(ConfigError::Invalid { setting: "CALLPLANE_WORKERS", cause: "must be at least 1".to_owned() });
        }
        if self.db_pool_size == 0 {
            return Err(ConfigError::Invalid {
                setting: "CALLPLANE_DB_POOL_SIZE",
                cause: "must be at least 1".to_owned(),
            });
        }
        if self.db_attempts == 0 {
            return Err(ConfigError::Invalid {
                setting: "CALLPLANE_DB_ATTEMPTS",
                cause: "must be at least 1".to_owned(),
            });
        }
        if self.cache_ttl_secs == 0 {
            return Err(ConfigError::Invalid {
                setting: "CALLPLANE_CACHE_TTL_SECS",
                cause: "must be at least 1".to_owned(),
            });
        }
        if self.ws_heartbeat_interval_ms == 0 || self.ws_client_timeout_ms < self.ws_heartbeat_interval_ms {
            return Err(ConfigError::Invalid {
                setting: "CALLPLANE_WS_CLIENT_TIMEOUT_MS",
                cause: "the heartbeat interval must be at least 1 ms and the client timeout at least that".to_owned(),
            });
        }
        if self.ws_queue_frames == 0 {
            return Err(ConfigError::Invalid {
                setting: "CALLPLANE_WS_QUEUE_FRAMES",
                cause: "must be at least 1".to_owned(),
            });
        }
        let webhook_minimums = [
            ("CALLPLANE_WEBHOOK_TIMEOUT_MS", self.webhook_timeout_ms),
            ("CALLPLANE_WEBHOOK_MAX_ATTEMPTS", u64::from(self.webhook_max_attempts)),
            ("CALLPLANE_WEBHOOK_MAX_AGE_SECS", self.webhook_max_age_secs),
            ("CALLPLANE_WEBHOOK_MAX_BACKOFF_SECS", self.webhook_max_backoff_secs),
            ("CALLPLANE_WEBHOOK_BREAKER_FAILURES", u64::from(self.webhook_breaker_failures)),
        ];
        if let Some((setting, _)) = webhook_minimums.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid { setting, cause: "must be at least 1".to_owned() });
        }
        if self.call_max_duration_secs == 0 {
            return Err(ConfigError::Invalid {
                setting: "CALLPLANE_CALL_MAX_DURATION_SECS",
                cause: "must be at least 1".to_owned(),
            });
        }
        Ok(())
    }

    /// The domain's part of the settings.
    pub fn domain(&self) -> callplane_actors::DomainSettings {
        use std::time::Duration;
        callplane_actors::DomainSettings {
            sim: callplane_actors::media::sim::SimSettings {
                ring_delay: Duration::from_millis(self.sim_ring_delay_ms),
                answer_delay: Duration::from_millis(self.sim_answer_delay_ms),
            },
            calls: callplane_actors::call::CallSettings {
                dial_timeout: Duration::from_millis(self.sim_dial_timeout_ms),
                max_duration: Duration::from_secs(self.call_max_duration_secs),
            },
            billing: callplane_actors::billing::BillingSettings {
                unit: match self.billing_unit {
                    BillingUnit::Minute => Duration::from_secs(60),
                    BillingUnit::Second => Duration::from_secs(1),
                },
                balance_low: self.billing_balance_low_micros,
                horizon: Duration::from_secs(self.call_max_duration_secs),
            },
            redis_url: self.redis_url.clone(),
            cache_ttl: Duration::from_secs(self.cache_ttl_secs),
            cache_max_bytes: self.cache_max_bytes,
            ws: callplane_actors::ws::WsSettings {
                heartbeat_interval: Duration::from_millis(self.ws_heartbeat_interval_ms),
                client_timeout: Duration::from_millis(self.ws_client_timeout_ms),
                queue_frames: self.ws_queue_frames,
                max_dropped: self.ws_max_dropped,
                slow_grace: Duration::from_millis(self.ws_slow_grace_ms),
            },
            webhooks: callplane_actors::webhook::WebhookSettings {
                allow_private: self.webhook_allow_private,
                timeout: Duration::from_millis(self.webhook_timeout_ms),
                max_attempts: self.webhook_max_attempts,
                max_age: Duration::from_secs(self.webhook_max_age_secs),
                max_backoff: Duration::from_secs(self.webhook_max_backoff_secs),
                breaker_failures: self.webhook_breaker_failures,
                breaker_cooldown: Duration::from_secs(self.webhook_breaker_cooldown_secs),
            },
            flows: callplane_actors::flow::FlowSettings {
                allow_private_targets: self.webhook_allow_private,
                ..Default::default()
            },
        }
    }
}

/// Reads named string values and parses them into settings, naming the source on failure.
struct Source<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Source<'_, F> {
    /// Sets `target` from `name` if present; tells whether it was.
    fn set<T: FromStr>(&mut self, name: &'static str, target: &mut T) -> Result<bool, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let Some(raw) = (self.0)(name) else { return Ok(false) };
        *target = raw
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid { setting: name, cause: format!("{raw:?}: {e}") })?;
        Ok(true)
    }

    /// For optional settings: an empty value unsets.
    fn set_opt(&mut self, name: &'static str, target: &mut Option<String>) -> Result<bool, ConfigError> {
        let Some(raw) = (self.0)(name) else { return Ok(false) };
        *target = Some(raw.trim().to_owned()).filter(|v| !v.is_empty());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("callplane.toml");
        std::fs::write(&file, "bind = \"127.0.0.1:7000\"\nworkers = 3\n").expect("write");
        let s = Settings::load(Some(&file), env(&[("CALLPLANE_WORKERS", "5")]), &Overrides::default()).expect("load");
        assert_eq!(s.bind.port(), 7000);
        assert_eq!(s.workers, 5);

        let flags = Overrides { bind: Some("127.0.0.1:9000".into()), ..Default::default() };
        let s = Settings::load(Some(&file), env(&[("CALLPLANE_BIND", "127.0.0.1:8000")]), &flags).expect("load");
        assert_eq!(s.bind.port(), 9000);
    }

    #[test]
    fn a_bad_value_names_its_setting() {
        let err = Settings::load(None, env(&[("CALLPLANE_DB_POOL_SIZE", "many")]), &Overrides::default())
            .expect_err("must fail");
        assert!(err.to_string().contains("CALLPLANE_DB_POOL_SIZE"), "{err}");

        let err =
            Settings::load(None, env(&[("DATABASE_URL", "oracle://x")]), &Overrides::default()).expect_err("must fail");
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");

        let quicker_timeout =
            [("CALLPLANE_WS_HEARTBEAT_INTERVAL_MS", "1000"), ("CALLPLANE_WS_CLIENT_TIMEOUT_MS", "500")];
        let err = Settings::load(None, env(&quicker_timeout), &Overrides::default()).expect_err("must fail");
        assert!(err.to_string().contains("CALLPLANE_WS_CLIENT_TIMEOUT_MS"), "{err}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("callplane.toml");
        std::fs::write(&file, "bnid = \"127.0.0.1:7000\"\n").expect("write");
        let err = Settings::load(Some(&file), env(&[]), &Overrides::default()).expect_err("must fail");
        assert!(err.to_string().contains("bnid"), "{err}");
    }
}
