//! The command line: `serve` (the default), `migrate`, `bootstrap` and the super-admin
//! commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use callplane_schema::models::customer;
use callplane_schema::page::PageRequest;
use clap::{Parser, Subcommand};

use crate::config::{Overrides, Settings};
use crate::{StartError, provision};

/// Opening balance of a customer made by `bootstrap` or the first start: ten dollars
/// of sandbox credit, so that the first call goes through.
pub const DEFAULT_BALANCE: i64 = 10_000_000;

#[derive(Debug, Parser)]
#[command(name = "callplane", version, about = "A self-hostable telephony control plane")]
pub struct Cli {
    /// TOML configuration file; environment variables and flags override it.
    #[arg(long, global = true, env = "CALLPLANE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (CALLPLANE_BIND).
    #[arg(long, global = true)]
    bind: Option<String>,
    /// sqlite://path, postgres://… or mysql://… (DATABASE_URL).
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// redis://… for the shared cache (REDIS_URL).
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// `text` or `json` (CALLPLANE_LOG_FORMAT).
    #[arg(long, global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply migrations and serve the API (the default).
    Serve {
        /// Do not create a customer on the first start against an empty database.
        #[arg(long)]
        no_bootstrap: bool,
    },
    /// Apply pending migrations and exit.
    Migrate,
    /// Create a customer, an admin agent, an access key and a balance; print them as
    /// JSON. Running it again for the same username creates nothing and prints the
    /// same answer.
    Bootstrap {
        #[arg(long)]
        username: String,
        #[arg(long, env = "CALLPLANE_BOOTSTRAP_PASSWORD", hide_env_values = true)]
        password: String,
        /// Opening balance in micro-units (1 USD = 1,000,000).
        #[arg(long, default_value_t = DEFAULT_BALANCE)]
        balance: i64,
    },
    /// Super-admin commands.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Debug, Subcommand)]
enum Admin {
    /// Create a super-admin login (manages customers and balances over the API).
    CreateSuperadmin {
        #[arg(long)]
        username: String,
        #[arg(long, env = "CALLPLANE_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// List customers, one JSON object per line.
    Customers,
}

/// Parses the command line and runs it; the process's exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let no_bootstrap = matches!(cli.command, Some(Command::Serve { no_bootstrap: true }));
    let overrides = Overrides {
        bind: cli.bind.clone(),
        database_url: cli.database_url.clone(),
        redis_url: cli.redis_url.clone(),
        log_format: cli.log_format.clone(),
        no_bootstrap,
    };
    let settings = match Settings::load(cli.config.as_deref(), |name| std::env::var(name).ok(), &overrides) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("callplane: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(settings.log_format, &settings.log_level);
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        match cli.command.unwrap_or(Command::Serve { no_bootstrap }) {
            Command::Serve { .. } => serve(settings).await,
            Command::Migrate => migrate(&settings),
            Command::Bootstrap { username, password, balance } => {
                bootstrap(&settings, &username, &password, balance).await
            }
            Command::Admin(Admin::CreateSuperadmin { username, password }) => {
                let db = crate::open_database(&settings, Duration::ZERO)?;
                let id = provision::create_superadmin(&db, &username, &password).await.map_err(other)?;
                println!("{}", serde_json::json!({"agent_id": id, "username": username, "role": "superadmin"}));
                Ok(())
            }
            Command::Admin(Admin::Customers) => list_customers(&settings).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("callplane: {e}");
            ExitCode::FAILURE
        }
    }
}

fn other(e: impl std::fmt::Display) -> StartError {
    StartError::Other(e.to_string())
}

async fn serve(settings: Settings) -> Result<(), StartError> {
    let db = crate::open_database(&settings, Duration::from_secs(30))?;
    if settings.bootstrap {
        let secret = crate::jwt_secret(&settings)?;
        if let Some(first) = provision::first_start(&db, &secret, DEFAULT_BALANCE).await.map_err(other)? {
            print_first_start(&settings, &first);
        }
    }
    crate::start(settings, db).await?.run_until_signal().await
}

fn migrate(settings: &Settings) -> Result<(), StartError> {
    crate::open_database(settings, Duration::from_secs(30))?;
    println!("migrations applied");
    Ok(())
}

async fn bootstrap(settings: &Settings, username: &str, password: &str, balance: i64) -> Result<(), StartError> {
    let db = crate::open_database(settings, Duration::from_secs(30))?;
    let secret = crate::jwt_secret(settings)?;
    let done = provision::bootstrap(&db, &secret, username, password, balance).await.map_err(other)?;
    println!("{}", serde_json::to_string(&done).map_err(other)?);
    Ok(())
}

async fn list_customers(settings: &Settings) -> Result<(), StartError> {
    let db = crate::open_database(settings, Duration::ZERO)?;
    let mut page = PageRequest::first(100);
    loop {
        let request = page.clone();
        let result = db.read(move |conn| customer::list(conn, &request)).await?;
        for c in &result.result {
            println!("{}", serde_json::to_string(c).map_err(other)?);
        }
        match result.next_page_token.as_deref().and_then(callplane_schema::page::Cursor::decode) {
            Some(cursor) => page.start = callplane_schema::page::Start::After(cursor),
            None => return Ok(()),
        }
    }
}

fn print_first_start(settings: &Settings, first: &provision::FirstStart) {
    let b = &first.bootstrapped;
    let host = if settings.bind.ip().is_unspecified() {
        format!("127.0.0.1:{}", settings.bind.port())
    } else {
        settings.bind.to_string()
    };
    println!(
        "\ncallplane: first start on an empty database; created customer {cid} with an admin.\n\
         \n  username:  {user}\n  password:  {pw}\n  accesskey: {key}\n\
         \nThese are shown once. Try:\n\
         \n  curl -s http://{host}/v1.0/me -H 'Authorization: Bearer {key}'\
         \n  curl -s -X POST http://{host}/auth/login -H 'Content-Type: application/json' \\\
         \n       -d '{{\"username\": \"{user}\", \"password\": \"{pw}\"}}'\n",
        cid = b.customer_id,
        user = b.username,
        pw = first.password,
        key = b.accesskey,
    );
}
