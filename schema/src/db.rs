//! The database handle: backend selection, the r2d2 pool, embedded migrations, and the
//! one place where blocking database work leaves the async threads.
//!
//! * [`Db::read`] runs a closure on tokio's blocking pool with a pooled connection.
//! * [`Db::write`] hands a closure to the writer thread, which commits whatever writes
//!   are queued together in one transaction (group commit), each in its own savepoint
//!   so that one failing write does not take the others down. The caller's future
//!   resolves only after the commit that carries its write, so a 2xx built on it means
//!   the row is durable. SQLite allows one writer at a time anyway; batching turns that
//!   limit into throughput (see CEILINGS.md).
//!
//! Both retry transient faults (connection lost, lock timeout, pool exhausted) with
//! backoff and then report [`DbError::Unavailable`]. Permanent faults are not retried.
//!
//! Events written inside a write (see [`WriteCtx::emit`]) are handed, after the commit
//! and in commit order, to the commit hook installed with [`Db::set_commit_hook`]:
//! nothing is announced before it is durable, and nothing committed is missed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{CustomizeConnection, ManageConnection, R2D2Connection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tokio::sync::oneshot;

use crate::error::DbError;
use crate::models::event::{Event, NewEvent};

/// The connection type every query function takes: one of the compiled-in backends.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    #[cfg(feature = "postgres")]
    Postgres(diesel::pg::PgConnection),
    #[cfg(feature = "mysql")]
    Mysql(diesel::mysql::MysqlConnection),
    Sqlite(diesel::sqlite::SqliteConnection),
}

/// Which database a URL names. Chosen from the scheme alone, never by trying each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Backend, String> {
        let scheme = url.split_once("://").map(|(s, _)| s);
        let backend = match scheme {
            Some("postgres" | "postgresql") => Backend::Postgres,
            Some("mysql" | "mariadb") => Backend::Mysql,
            Some("sqlite" | "file") | None => Backend::Sqlite,
            Some(other) => {
                return Err(format!("unsupported database scheme {other:?}: use sqlite://, postgres:// or mysql://"));
            }
        };
        if !backend.compiled_in() {
            return Err(format!(
                "{url:?} needs the `{}` cargo feature: build with `cargo build --release --features {}`",
                backend.feature(),
                backend.feature()
            ));
        }
        Ok(backend)
    }

    fn feature(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }

    fn compiled_in(self) -> bool {
        match self {
            Backend::Sqlite => true,
            Backend::Postgres => cfg!(feature = "postgres"),
            Backend::Mysql => cfg!(feature = "mysql"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }

    fn migrations(self) -> EmbeddedMigrations {
        const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
        const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
        const MYSQL: EmbeddedMigrations = embed_migrations!("../migrations/mysql");
        match self {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
            Backend::Mysql => MYSQL,
        }
    }
}

/// Opens connections of the backend the URL names.
#[derive(Debug)]
pub struct ConnManager {
    url: String,
    backend: Backend,
}

impl ConnManager {
    pub fn new(url: &str) -> Result<Self, String> {
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_path(url).to_owned(),
            _ => url.to_owned(),
        };
        Ok(ConnManager { url, backend })
    }

    fn establish(&self) -> ConnectionResult<DbConn> {
        match self.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres => diesel::pg::PgConnection::establish(&self.url).map(DbConn::Postgres),
            #[cfg(feature = "mysql")]
            Backend::Mysql => diesel::mysql::MysqlConnection::establish(&self.url).map(DbConn::Mysql),
            Backend::Sqlite => diesel::sqlite::SqliteConnection::establish(&self.url).map(DbConn::Sqlite),
            #[allow(unreachable_patterns)]
            _ => Err(ConnectionError::InvalidConnectionUrl(format!(
                "the {} backend is not compiled in",
                self.backend.name()
            ))),
        }
    }
}

/// A pooled connection, with what the pool must know beyond diesel's own view of it.
pub struct Pooled {
    conn: DbConn,
    /// A transient fault happened on it. Diesel notices a broken PostgreSQL connection
    /// but not a MySQL one whose server went away; the pool must not hand out either.
    faulted: bool,
}

impl Pooled {
    /// Runs `f`; a transient fault retires this connection when it goes back to the pool.
    fn run<T>(&mut self, f: impl FnOnce(&mut DbConn) -> Result<T, DbError>) -> Result<T, DbError> {
        let result = f(&mut self.conn);
        if matches!(&result, Err(e) if e.is_transient()) {
            self.faulted = true;
        }
        result
    }
}

impl ManageConnection for ConnManager {
    type Connection = Pooled;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<Pooled, Self::Error> {
        let conn = self.establish().map_err(diesel::r2d2::Error::ConnectionError)?;
        Ok(Pooled { conn, faulted: false })
    }

    fn is_valid(&self, pooled: &mut Pooled) -> Result<(), Self::Error> {
        pooled.conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, pooled: &mut Pooled) -> bool {
        pooled.faulted || pooled.conn.is_broken()
    }
}

/// `sqlite://data/callplane.db` → `data/callplane.db`; other forms pass through.
fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url)
}

/// Applied to every pooled SQLite connection. WAL lets readers run beside the writer;
/// `synchronous=NORMAL` survives a process crash (not a power loss) at four times the
/// commit rate of FULL; `busy_timeout` covers other processes (`callplane migrate`).
#[derive(Debug)]
struct SqlitePragmas {
    busy_timeout_ms: u64,
}

impl CustomizeConnection<Pooled, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, pooled: &mut Pooled) -> Result<(), diesel::r2d2::Error> {
        let conn = &mut pooled.conn;
        // busy_timeout first: switching a new database to WAL takes a lock that the
        // pool's other connections, opening at the same time, must wait for.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            self.busy_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Connection and retry settings.
#[derive(Debug, Clone)]
pub struct DbSettings {
    pub url: String,
    /// Connections for readers; the writer takes one more.
    pub pool_size: u32,
    /// How long to wait for a pooled connection before the attempt counts as failed.
    pub acquire_timeout: Duration,
    /// Attempts for a transient fault before `Unavailable`.
    pub attempts: u32,
    /// Writes committed together at most.
    pub max_batch: usize,
}

impl DbSettings {
    pub fn new(url: impl Into<String>) -> Self {
        DbSettings {
            url: url.into(),
            pool_size: 8,
            acquire_timeout: Duration::from_millis(500),
            attempts: 3,
            max_batch: 512,
        }
    }

    /// Backoff before the retry after `attempt` (0-based): 100 ms, 400 ms, 1.6 s …
    /// so that three attempts give up after about 2 s.
    fn backoff(&self, attempt: u32) -> Duration {
        Duration::from_millis(100 * 4u64.pow(attempt.min(4)))
    }
}

/// Receives the events of each commit, in commit order, on the writer thread. It must
/// not block for long: it sits between a commit and the replies to its writers.
pub type CommitHook = Box<dyn Fn(Vec<Event>) + Send + Sync>;

type Pool = r2d2::Pool<ConnManager>;

struct Inner {
    pool: Pool,
    backend: Backend,
    settings: DbSettings,
    jobs: flume::Sender<Box<dyn WriteJob>>,
    hook: Arc<OnceLock<CommitHook>>,
}

/// The cloneable database handle held by the application context.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.inner.backend).finish()
    }
}

impl Db {
    /// Builds the pool and starts the writer thread. Connections are opened lazily, so
    /// this succeeds while the database is down; [`Db::migrate`] is the first contact.
    pub fn open(settings: DbSettings) -> Result<Db, DbError> {
        let manager = ConnManager::new(&settings.url).map_err(DbError::Other)?;
        let backend = manager.backend;
        if backend == Backend::Sqlite {
            let path = Path::new(sqlite_path(&settings.url));
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| DbError::Other(format!("creating {}: {e}", dir.display())))?;
            }
        }
        let mut builder = r2d2::Pool::builder()
            .max_size(settings.pool_size + 1)
            .min_idle(Some(1))
            .connection_timeout(settings.acquire_timeout)
            .test_on_check_out(false);
        if backend == Backend::Sqlite {
            builder = builder.connection_customizer(Box::new(SqlitePragmas { busy_timeout_ms: 5_000 }));
        }
        let pool = builder.build_unchecked(manager);

        // Bounded: when the database cannot keep up, writers wait here rather than
        // queueing without limit.
        let (jobs, queue) = flume::bounded::<Box<dyn WriteJob>>(settings.max_batch * 8);
        let hook: Arc<OnceLock<CommitHook>> = Arc::default();
        let writer = Writer { pool: pool.clone(), settings: settings.clone(), queue, hook: hook.clone() };
        thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| DbError::Other(format!("starting the writer thread: {e}")))?;

        Ok(Db { inner: Arc::new(Inner { pool, backend, settings, jobs, hook }) })
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Installs the receiver of committed events. Only the first call takes effect.
    pub fn set_commit_hook(&self, hook: CommitHook) -> bool {
        self.inner.hook.set(hook).is_ok()
    }

    /// Connections in use and idle, for `/metrics`.
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.inner.pool.state();
        (s.connections - s.idle_connections, s.idle_connections)
    }

    /// Runs `f` with a pooled connection on the blocking pool, retrying transient
    /// faults. Use it for reads; writes go through [`Db::write`].
    pub async fn read<T, F>(&self, mut f: F) -> Result<T, DbError>
    where
        F: FnMut(&mut DbConn) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let settings = &self.inner.settings;
        let mut attempt = 0;
        loop {
            let pool = self.inner.pool.clone();
            let (result, returned) = tokio::task::spawn_blocking(move || {
                let result = pool.get().map_err(DbError::from).and_then(|mut conn| conn.run(&mut f));
                (result, f)
            })
            .await
            .map_err(|e| DbError::Other(format!("blocking task failed: {e}")))?;
            f = returned;
            match result {
                Err(e) if e.is_transient() => {
                    attempt += 1;
                    if attempt >= settings.attempts {
                        return Err(DbError::Unavailable(e.to_string()));
                    }
                    log::warn!("database read failed (attempt {attempt}), retrying: {e}");
                    tokio::time::sleep(settings.backoff(attempt - 1)).await;
                }
                other => return other,
            }
        }
    }

    /// Queues `f` for the writer and resolves after the transaction that ran it has
    /// committed (or failed). `f` may run more than once when a transient fault makes
    /// the writer retry the batch, so it must not have effects outside the database.
    pub async fn write<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnMut(&mut WriteCtx<'_>) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(TypedJob { f, outcome: None, reply });
        self.inner.jobs.send_async(job).await.map_err(|_| DbError::Other("the database writer has stopped".into()))?;
        answer.await.map_err(|_| DbError::Other("the database writer dropped a write".into()))?
    }

    /// Resolves once every write queued before it has been committed.
    pub async fn flush(&self) -> Result<(), DbError> {
        self.write(|_| Ok(())).await
    }

    /// Applies pending migrations. Runs on the calling thread: call it before serving.
    pub fn migrate(&self) -> Result<Vec<String>, DbError> {
        let mut pooled = self.inner.pool.get()?;
        let applied = pooled
            .conn
            .run_pending_migrations(self.inner.backend.migrations())
            .map_err(|e| DbError::Other(format!("migrations failed: {e}")))?;
        Ok(applied.iter().map(|v| v.to_string()).collect())
    }

    /// Reverts every applied migration, newest first (tests and `callplane migrate --revert-all`).
    pub fn revert_all(&self) -> Result<Vec<String>, DbError> {
        let mut pooled = self.inner.pool.get()?;
        let reverted = pooled
            .conn
            .revert_all_migrations(self.inner.backend.migrations())
            .map_err(|e| DbError::Other(format!("reverting migrations failed: {e}")))?;
        Ok(reverted.iter().map(|v| v.to_string()).collect())
    }

    /// Reverts the newest applied migration.
    pub fn revert_last(&self) -> Result<String, DbError> {
        let mut pooled = self.inner.pool.get()?;
        let reverted = pooled
            .conn
            .revert_last_migration(self.inner.backend.migrations())
            .map_err(|e| DbError::Other(format!("reverting a migration failed: {e}")))?;
        Ok(reverted.to_string())
    }

    /// For `/readyz`: the database answers and no migration is pending.
    pub async fn readiness(&self) -> Result<(), String> {
        let backend = self.inner.backend;
        let pool = self.inner.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut pooled = pool.get().map_err(|e| format!("database unreachable: {e}"))?;
            pooled.run(|conn| conn.ping().map_err(DbError::from)).map_err(|e| format!("database unreachable: {e}"))?;
            match pooled.conn.has_pending_migration(backend.migrations()) {
                Ok(false) => Ok(()),
                Ok(true) => Err("migrations are pending".to_owned()),
                Err(e) => Err(format!("cannot read the migration state: {e}")),
            }
        })
        .await
        .map_err(|e| format!("readiness check failed: {e}"))?
    }
}

/// What a write closure gets: the connection, inside the batch's transaction and the
/// write's own savepoint, and a way to record events.
pub struct WriteCtx<'a> {
    pub conn: &'a mut DbConn,
    staged: &'a mut Vec<Event>,
}

impl WriteCtx<'_> {
    /// Inserts an event row in the current transaction. The event reaches the commit
    /// hook only if this write commits.
    pub fn emit(&mut self, event: NewEvent) -> Result<Event, DbError> {
        let event = crate::models::event::insert(self.conn, event)?;
        self.staged.push(event.clone());
        Ok(event)
    }
}

/// A queued write with its result type erased, so that one queue carries them all.
trait WriteJob: Send {
    /// Runs the write. `Err` only for faults that must abort the whole batch
    /// (transient ones); the write's own permanent error is kept for `finish`.
    fn run(&mut self, conn: &mut DbConn, committed: &mut Vec<Event>) -> Result<(), DbError>;
    /// Answers the caller: its own outcome if the batch committed, else the batch's error.
    fn finish(self: Box<Self>, batch: Result<(), &DbError>);
}

struct TypedJob<T, F> {
    f: F,
    outcome: Option<Result<T, DbError>>,
    reply: oneshot::Sender<Result<T, DbError>>,
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    F: FnMut(&mut WriteCtx<'_>) -> Result<T, DbError> + Send,
    T: Send,
{
    fn run(&mut self, conn: &mut DbConn, committed: &mut Vec<Event>) -> Result<(), DbError> {
        let mut staged = Vec::new();
        let f = &mut self.f;
        // A nested transaction is a savepoint: a failing write is rolled back alone.
        let result = conn.transaction::<T, DbError, _>(|conn| f(&mut WriteCtx { conn, staged: &mut staged }));
        match result {
            Err(e) if e.is_transient() => Err(e),
            Ok(value) => {
                committed.append(&mut staged);
                self.outcome = Some(Ok(value));
                Ok(())
            }
            Err(e) => {
                self.outcome = Some(Err(e));
                Ok(())
            }
        }
    }

    fn finish(self: Box<Self>, batch: Result<(), &DbError>) {
        let answer = match (batch, self.outcome) {
            (Ok(()), Some(outcome)) => outcome,
            (Ok(()), None) => Err(DbError::Other("write was not run".into())),
            (Err(DbError::Transient(cause)), _) => Err(DbError::Unavailable(cause.clone())),
            (Err(e), _) => Err(DbError::Other(e.to_string())),
        };
        // The caller may have gone away (request cancelled); the write stands.
        let _ = self.reply.send(answer);
    }
}

struct Writer {
    pool: Pool,
    settings: DbSettings,
    queue: flume::Receiver<Box<dyn WriteJob>>,
    hook: Arc<OnceLock<CommitHook>>,
}

impl Writer {
    fn run(self) {
        // Ends when every `Db` clone is gone and the queue is drained.
        while let Ok(first) = self.queue.recv() {
            let mut batch = vec![first];
            batch.extend(self.queue.try_iter().take(self.settings.max_batch - 1));
            let result = self.commit_with_retries(&mut batch);
            match result {
                Ok(events) => {
                    if !events.is_empty()
                        && let Some(hook) = self.hook.get()
                    {
                        hook(events);
                    }
                    batch.into_iter().for_each(|job| job.finish(Ok(())));
                }
                Err(e) => {
                    log::error!("database write batch of {} failed: {e}", batch.len());
                    batch.into_iter().for_each(|job| job.finish(Err(&e)));
                }
            }
        }
        log::debug!("database writer stopped");
    }

    fn commit_with_retries(&self, batch: &mut [Box<dyn WriteJob>]) -> Result<Vec<Event>, DbError> {
        let mut attempt = 0;
        loop {
            let result = catch_unwind(AssertUnwindSafe(|| self.commit(batch)))
                .unwrap_or_else(|_| Err(DbError::Other("a write panicked; its batch was rolled back".into())));
            match result {
                Err(e) if e.is_transient() && attempt + 1 < self.settings.attempts => {
                    log::warn!("database write failed (attempt {}), retrying: {e}", attempt + 1);
                    thread::sleep(self.settings.backoff(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn commit(&self, batch: &mut [Box<dyn WriteJob>]) -> Result<Vec<Event>, DbError> {
        let mut pooled = self.pool.get()?;
        pooled.run(|conn| {
            conn.transaction::<_, DbError, _>(|conn| {
                let mut committed = Vec::new();
                for job in batch.iter_mut() {
                    job.run(conn, &mut committed)?;
                }
                Ok(committed)
            })
        })
    }
}

/// Backend-specific SQL for the id the last insert was given (events use it for their
/// sequence number; MySQL has no `RETURNING`).
pub(crate) fn last_insert_id(conn: &mut DbConn) -> Result<i64, DbError> {
    let sql = match conn {
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => "lastval()",
        #[cfg(feature = "mysql")]
        DbConn::Mysql(_) => "CAST(LAST_INSERT_ID() AS SIGNED)",
        DbConn::Sqlite(_) => "last_insert_rowid()",
    };
    Ok(diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(sql)).get_result(conn)?)
}
