//! callplane: a self-hostable telephony control plane.
//!
//! This crate is the gateway: configuration, command line, HTTP routes, authentication
//! and wiring. The domain (actors) lives in `callplane-actors`, persistence in
//! `callplane-schema`. [`start`] brings a daemon up and is what `main` and the tests
//! both call.

pub mod auth;
pub mod cli;
pub mod config;
pub mod context;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod provision;
pub mod request_id;
pub mod routes;
pub mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use callplane_schema::{Db, DbSettings};
use utoipa_actix_web::AppExt;

use crate::auth::{Authenticator, jwt::Jwt};
use crate::config::Settings;
use crate::context::AppContext;
use crate::metrics::Metrics;
use crate::routes::ApiDescription;

/// Start-up failed; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Db(#[from] callplane_schema::DbError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// Opens the database and applies pending migrations, waiting for a database that is
/// still starting (up to `wait`).
pub fn open_database(settings: &Settings, wait: Duration) -> Result<Db, StartError> {
    let mut db_settings = DbSettings::new(settings.database_url.clone());
    db_settings.pool_size = settings.db_pool_size;
    db_settings.acquire_timeout = Duration::from_millis(settings.db_timeout_ms);
    db_settings.attempts = settings.db_attempts;
    let db = Db::open(db_settings)?;
    let deadline = Instant::now() + wait;
    loop {
        match db.migrate() {
            Ok(applied) => {
                for version in applied {
                    log::info!("applied migration {version}");
                }
                return Ok(db);
            }
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                log::warn!("waiting for the database: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The JWT secret: configured, or generated once and kept in the data directory.
pub fn jwt_secret(settings: &Settings) -> Result<Vec<u8>, StartError> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = settings.data_dir.join("jwt_secret");
    match std::fs::read_to_string(&path) {
        Ok(secret) if secret.trim().len() >= 32 => return Ok(secret.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(StartError::Other(format!("{} holds a secret shorter than 32 characters", path.display())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartError::Other(format!("reading {}: {e}", path.display()))),
    }
    let bytes: [u8; 32] = rand::random();
    let secret = hex::encode(bytes);
    write_private(&path, &secret)?;
    log::info!("generated a JWT secret in {}", path.display());
    Ok(secret.into_bytes())
}

fn write_private(path: &Path, contents: &str) -> Result<(), StartError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// A running daemon.
pub struct Running {
    pub addr: SocketAddr,
    pub ctx: AppContext,
    handle: ServerHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (up to the grace period), then
    /// flushes pending writes.
    pub async fn stop(self) {
        let stopped = self.handle.stop(true);
        // WebSocket connections are requests in flight too: close them rather than wait
        // out the grace period. (The stop command is already sent: no new ones come.)
        self.ctx.domain.ws.close_all().await;
        stopped.await;
        let _ = self.server.await;
        // Deliveries in flight stay pending in the database for the next process.
        if let Err(e) = self.ctx.domain.webhooks.send(callplane_actors::webhook::Shutdown).await {
            log::warn!("stopping the webhook dispatcher: {e}");
        }
        if let Err(e) = self.ctx.db.flush().await {
            log::error!("flushing pending writes: {e}");
        }
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully.
    pub async fn run_until_signal(self) -> Result<(), StartError> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => log::info!("SIGTERM: shutting down"),
            _ = int.recv() => log::info!("SIGINT: shutting down"),
        }
        self.stop().await;
        log::info!("stopped");
        Ok(())
    }
}

/// Builds the context and starts serving on `settings.bind` (port 0 picks a free one).
/// The database must be migrated already ([`open_database`]).
pub async fn start(settings: Settings, db: Db) -> Result<Running, StartError> {
    let settings = Arc::new(settings);
    let secret = jwt_secret(&settings)?;
    let metrics = Metrics::new().map_err(|e| StartError::Other(format!("metrics: {e}")))?;
    let auth = Authenticator::new(
        Jwt::new(&secret, settings.jwt_ttl_secs),
        db.clone(),
        settings.rate_limit_per_second,
        settings.rate_limit_burst,
    );
    let domain = callplane_actors::Domain::start(db.clone(), settings.domain(), &metrics.registry)
        .await
        .map_err(StartError::Other)?;
    let ctx = AppContext {
        settings: settings.clone(),
        db,
        auth: Arc::new(auth),
        metrics,
        api: Arc::new(ApiDescription::build()),
        domain,
    };

    let app_ctx = ctx.clone();
    let server = HttpServer::new(move || {
        let (json, query, path) = routes::extractor_configs(app_ctx.settings.body_limit_bytes);
        App::new()
            .app_data(web::Data::new(app_ctx.clone()))
            .app_data(json)
            .app_data(query)
            .app_data(path)
            .wrap(actix_web::middleware::from_fn(middleware::request_context))
            .into_utoipa_app()
            .configure(routes::config)
            .default_service(web::to(routes::fallback))
            .into_app()
    })
    .workers(settings.workers)
    .shutdown_timeout(settings.shutdown_grace_secs)
    .disable_signals()
    .bind(settings.bind)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| StartError::Other(format!("could not bind {}", settings.bind)))?;
    let server = server.run();
    let handle = server.handle();
    let server = actix_web::rt::spawn(server);
    log::info!("listening on http://{addr} ({} database)", ctx.db.backend().name());
    Ok(Running { addr, ctx, handle, server })
}
