//! callplane's benchmark: one command that starts the daemon on a fresh SQLite file (or
//! `--database-url`), loads it from a generator in this process, and prints one table of
//! absolute figures and ratios to ceilings measured in the same run.
//!
//! ```sh
//! cargo run --release -p callplane-bench            # about five minutes
//! cargo run --release -p callplane-bench -- --quick # under a minute, for CI
//! cargo run --release -p callplane-bench -- --json
//! cargo run --release -p callplane-bench -- --only webhooks  # one section, for profiling
//! ```
//!
//! The daemon runs in its own threads (its own actix System, two HTTP workers); the
//! generator in a two-thread tokio runtime: both share the machine's cores, as `wrk`
//! would. Memory per live call is measured in a child process of its own, so that
//! nothing else this process allocated blurs it.

mod events;
mod load;
mod report;
mod sections;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use callplane::config::Settings;
use callplane::context::AppContext;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "callplane-bench", about = "Measures callplane against its own ceilings")]
pub struct Args {
    /// Short runs (about a minute in all), to prove the command works.
    #[arg(long)]
    quick: bool,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Run against this database instead of a fresh SQLite file.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Run only these sections (comma-separated): http, inserts, creates, websocket,
    /// webhooks, memory. Ratios whose baseline was not run say so.
    #[arg(long, value_delimiter = ',', value_parser = ["http", "inserts", "creates", "websocket", "webhooks", "memory"])]
    only: Option<Vec<String>>,
    /// Internal: measure memory per live call in a fresh process.
    #[arg(long, hide = true)]
    memory_child: Option<usize>,
    /// Internal: run a daemon for a parent that measures it from outside.
    #[arg(long, hide = true)]
    serve_child: bool,
}

/// A daemon running in this process.
pub struct Daemon {
    pub addr: SocketAddr,
    pub ctx: AppContext,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    pub fn start(adjust: impl FnOnce(&mut Settings) + Send + 'static, database_url: Option<String>) -> Daemon {
        let dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("temporary directory: {e}")));
        let mut settings = Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display())),
            data_dir: dir.path().join("data"),
            jwt_secret: Some("callplane-bench-secret-0123456789abcdef".to_owned()),
            bootstrap: false,
            access_log: false,
            log_level: "warn".to_owned(),
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            // Checked on every request, as in production, but never the limit here.
            rate_limit_per_second: 10_000_000,
            rate_limit_burst: 10_000_000,
            ..Settings::default()
        };
        adjust(&mut settings);
        callplane::logging::init(settings.log_format, &settings.log_level);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let db = callplane::open_database(&settings, Duration::from_secs(10))
                    .unwrap_or_else(|e| fail(format!("database: {e}")));
                let running = callplane::start(settings, db).await.unwrap_or_else(|e| fail(format!("start: {e}")));
                let _ = ready_tx.send((running.addr, running.ctx.clone()));
                let _ = stop_rx.await;
                running.stop().await;
            });
        });
        let (addr, ctx) = ready_rx.recv().unwrap_or_else(|_| fail("the daemon did not start"));
        Daemon { addr, ctx, stop: Some(stop_tx), thread: Some(thread), _dir: Some(dir) }
    }

    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("callplane-bench: {message}");
    std::process::exit(1)
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("runtime: {e}")));
    if let Some(calls) = args.memory_child {
        let figures = runtime.block_on(sections::memory_child(calls));
        println!("{}", serde_json::to_string(&figures).unwrap_or_default());
        return;
    }
    if args.serve_child {
        runtime.block_on(events::serve_child());
        return;
    }
    let exe: PathBuf = std::env::current_exe().unwrap_or_else(|e| fail(format!("own path: {e}")));
    let rows = runtime.block_on(sections::run_all(&args, &exe));
    if args.json {
        println!("{}", report::json(&rows));
    } else {
        println!("{}", report::table(&rows, args.quick));
    }
}
