//! The measurements, each against a ceiling measured in the same run.

use std::path::Path;
use std::time::{Duration, Instant};

use callplane_schema::ids::CustomerId;
use callplane_schema::models::address::{Address, AddressType};
use callplane_schema::models::agent::Role;
use callplane_schema::models::call::{self, CallRow, Direction, NewCall};
use callplane_schema::models::customer::{self, Customer};
use callplane_schema::{Db, DbSettings};
use serde_json::{Value, json};

use crate::load::{self, Shape};
use crate::report::{Row, ms, rate};
use crate::{Args, Daemon, events, fail};

const PASSWORD: &str = "bench password";

/// A customer with a balance no run can spend, and its admin's credentials.
pub struct Tenant {
    pub customer_id: String,
    pub jwt: String,
    /// `Bearer <jwt>`.
    pub auth: String,
}

pub async fn tenant(daemon: &Daemon) -> Tenant {
    let made = callplane::provision::bootstrap(
        &daemon.ctx.db,
        b"callplane-bench-secret-0123456789abcdef",
        "bench",
        PASSWORD,
        1_000_000_000_000_000,
    )
    .await
    .unwrap_or_else(|e| fail(format!("bootstrap: {e}")));
    let token = daemon
        .ctx
        .auth
        .jwt()
        .issue(&made.agent_id, Some(&made.customer_id), Role::Admin)
        .unwrap_or_else(|e| fail(format!("token: {e}")));
    Tenant { customer_id: made.customer_id.to_string(), auth: format!("Bearer {token}"), jwt: token }
}

pub fn create_call_body() -> String {
    json!({"source": {"type": "tel", "target": "+15551234567"}, "destinations": [{"type": "tel", "target": "+15559876543"}]})
        .to_string()
}

async fn wait_active(daemon: &Daemon, auth: &str, id: &str) {
    let mut conn = load::Connection::open(daemon.addr).await.unwrap_or_else(|e| fail(e));
    let shape = Shape::get(format!("/v1.0/calls/{id}")).header("authorization", auth);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = conn.send(&shape).await.unwrap_or_else(|e| fail(e));
        let call: Value = serde_json::from_slice(&body).unwrap_or_default();
        if call["status"] == "active" {
            return;
        }
        if Instant::now() > deadline {
            fail(format!("call {id} never answered: {call}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rows per second inserting calls straight through diesel, one row per transaction, on
/// one connection with the daemon's pragmas: the database's own ceiling.
async fn raw_inserts(rows: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let db = Db::open(DbSettings::new(format!("sqlite://{}", dir.path().join("raw.db").display())))
        .unwrap_or_else(|e| fail(e));
    db.migrate().unwrap_or_else(|e| fail(e));
    let customer = Customer::new("raw");
    let customer_id = customer.id.clone();
    db.write(move |tx| customer::insert(tx.conn, &customer)).await.unwrap_or_else(|e| fail(e));
    let calls: Vec<CallRow> = (0..rows).map(|_| new_row(&customer_id)).collect();
    db.read(move |conn| {
        use diesel::Connection;
        let started = Instant::now();
        for row in &calls {
            conn.transaction(|c| call::insert(c, row))?;
        }
        Ok(rows as f64 / started.elapsed().as_secs_f64())
    })
    .await
    .unwrap_or_else(|e| fail(e))
}

/// The same inserts through the daemon's group-commit writer, 64 at a time.
async fn group_committed_inserts(rows: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let db = Db::open(DbSettings::new(format!("sqlite://{}", dir.path().join("group.db").display())))
        .unwrap_or_else(|e| fail(e));
    db.migrate().unwrap_or_else(|e| fail(e));
    let customer = Customer::new("group");
    let customer_id = customer.id.clone();
    db.write(move |tx| customer::insert(tx.conn, &customer)).await.unwrap_or_else(|e| fail(e));
    let started = Instant::now();
    let per_writer = rows / 64;
    let writers: Vec<_> = (0..64)
        .map(|_| {
            let (db, customer_id) = (db.clone(), customer_id.clone());
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    let row = new_row(&customer_id);
                    db.write(move |tx| call::insert(tx.conn, &row)).await.unwrap_or_else(|e| fail(e));
                }
            })
        })
        .collect();
    for writer in writers {
        let _ = writer.await;
    }
    (per_writer * 64) as f64 / started.elapsed().as_secs_f64()
}

fn new_row(customer_id: &CustomerId) -> CallRow {
    CallRow::new(NewCall {
        customer_id: customer_id.clone(),
        direction: Direction::Outgoing,
        source: Address::new(AddressType::Tel, "+15551234567"),
        destination: Address::new(AddressType::Tel, "+15559876543"),
        flow_id: None,
        actions: "[]".to_owned(),
        variables: "{}".to_owned(),
        owner_id: None,
    })
}

pub async fn run_all(args: &Args, exe: &Path) -> Vec<Row> {
    let duration = Duration::from_secs(if args.quick { 3 } else { 10 });
    let want = |section: &str| args.only.as_ref().is_none_or(|only| only.iter().any(|s| s == section));
    let mut rows = Vec::new();
    let daemon = Daemon::start(|_| {}, args.database_url.clone());
    let auth = tenant(&daemon).await.auth;
    let addr = daemon.addr;
    let create = Shape::post_json("/v1.0/calls", create_call_body(), 201).header("authorization", auth.clone());

    if want("http") {
        // 1. The HTTP ceiling of this server.
        let ping = load::closed_loop(addr, 64, duration, &Shape::get("/ping")).await.unwrap_or_else(|e| fail(e));
        rows.push(
            Row::new(
                "`GET /ping`, 64 connections",
                format!("{} req/s, p50 {}, p99 {}", rate(ping.rate()), ms(ping.p(0.5)), ms(ping.p(0.99))),
                "1.00 (baseline)",
                "",
            )
            .figures(json!({"rps": ping.rate(), "p50_ms": ping.p(0.5).as_secs_f64() * 1e3, "p99_ms": ping.p(0.99).as_secs_f64() * 1e3, "errors": ping.errors})),
        );

        // 2. A cached, authenticated read of one call.
        let mut conn = load::Connection::open(addr).await.unwrap_or_else(|e| fail(e));
        let (_, body) = conn.send(&create).await.unwrap_or_else(|e| fail(e));
        let id =
            serde_json::from_slice::<Value>(&body).unwrap_or_default()["id"].as_str().unwrap_or_default().to_owned();
        wait_active(&daemon, &auth, &id).await;
        let read = Shape::get(format!("/v1.0/calls/{id}")).header("authorization", auth.clone());
        let cached = load::closed_loop(addr, 64, duration, &read).await.unwrap_or_else(|e| fail(e));
        let ratio = cached.rate() / ping.rate();
        rows.push(
            Row::new(
                "cached `GET /v1.0/calls/{id}` (JWT), 64 connections",
                format!("{} req/s, p50 {}, p99 {}", rate(cached.rate()), ms(cached.p(0.5)), ms(cached.p(0.99))),
                format!("{ratio:.2} × ping"),
                "≥ 0.5 × ping (seed: 12 ms)",
            )
            .figures(json!({"rps": cached.rate(), "ratio_to_ping": ratio, "p50_ms": cached.p(0.5).as_secs_f64() * 1e3, "p99_ms": cached.p(0.99).as_secs_f64() * 1e3, "errors": cached.errors})),
        );
    }

    // 3. The database's ceiling, in-process.
    let sqlite = args.database_url.as_deref().is_none_or(|u| u.starts_with("sqlite"));
    let raw_rows = if args.quick { 5_000 } else { 50_000 };
    let sqlite = sqlite && want("inserts");
    let raw = if sqlite { Some(raw_inserts(raw_rows).await) } else { None };
    let group = if sqlite { Some(group_committed_inserts(raw_rows).await) } else { None };
    if let (Some(raw), Some(group)) = (raw, group) {
        rows.push(
            Row::new(
                "raw insert into `calls`, 1 row per transaction (diesel, WAL, synchronous=NORMAL)",
                format!("{} rows/s", rate(raw)),
                "1.00 (baseline)",
                "",
            )
            .figures(json!({"rows_per_s": raw})),
        );
        rows.push(
            Row::new(
                "the same through the group-commit writer, 64 writers",
                format!("{} rows/s", rate(group)),
                format!("{:.2} × raw insert", group / raw),
                "",
            )
            .figures(json!({"rows_per_s": group, "ratio_to_raw": group / raw})),
        );
    }

    if want("creates") {
        // 4. Durable creates: as many as the server takes, then a fixed 1,000/s.
        let creates = load::closed_loop(addr, 32, duration, &create).await.unwrap_or_else(|e| fail(e));
        let versus_raw =
            raw.map_or("n/a (not SQLite)".to_owned(), |raw| format!("{:.2} × raw insert", creates.rate() / raw));
        rows.push(
            Row::new(
                "`POST /v1.0/calls`, 32 connections (each call then rings and answers: 3 commits)",
                format!("{} creates/s, p50 {}, p99 {}", rate(creates.rate()), ms(creates.p(0.5)), ms(creates.p(0.99))),
                versus_raw,
                "≥ 5,000/s (seed: 100 ms each)",
            )
            .figures(json!({"rps": creates.rate(), "p50_ms": creates.p(0.5).as_secs_f64() * 1e3, "p99_ms": creates.p(0.99).as_secs_f64() * 1e3, "errors": creates.errors})),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let open = load::open_loop(addr, 1_000, duration, &create).await.unwrap_or_else(|e| fail(e));
        rows.push(
            Row::new(
                "`POST /v1.0/calls` at a fixed 1,000/s (open loop)",
                format!("p50 {}, p99 {}, {} errors", ms(open.p(0.5)), ms(open.p(0.99)), open.errors),
                "",
                "p99 < 10 ms",
            )
            .figures(json!({"p50_ms": open.p(0.5).as_secs_f64() * 1e3, "p99_ms": open.p(0.99).as_secs_f64() * 1e3, "errors": open.errors})),
        );
    }

    daemon.stop();

    // 5, 6. Events out, on a daemon of their own whose calls answer at once.
    let daemon = Daemon::start(
        |s| {
            s.sim_ring_delay_ms = 0;
            s.sim_answer_delay_ms = 0;
            s.webhook_allow_private = true;
        },
        args.database_url.clone(),
    );
    let tenant = tenant(&daemon).await;
    if want("websocket") {
        rows.push(events::websocket_latency(&daemon, &tenant, 1, 500.0, duration).await);
        if !args.quick {
            rows.push(events::websocket_latency(&daemon, &tenant, 100, 500.0, duration).await);
        }
    }
    if want("webhooks") {
        let calls = events::answered_calls(&daemon, &tenant, 1_000).await;
        let burst = if args.quick { 2_000 } else { 20_000 };
        for (phase, endpoints) in [1, 100].into_iter().enumerate() {
            rows.push(events::webhook_delivery(&daemon, &tenant, &calls, phase, endpoints, duration, burst).await);
        }
    }
    daemon.stop();

    if want("memory") {
        // 7. Memory, each in a process of its own.
        let sizes: &[usize] = if args.quick { &[10_000] } else { &[10_000, 100_000] };
        for &calls in sizes {
            let figures = memory_in_child(exe, calls);
            let per_call = figures["bytes_per_call"].as_f64().unwrap_or(0.0);
            rows.push(
                Row::new(
                    format!("resident memory per live call, {} calls", rate(calls as f64)),
                    format!("{:.2} KiB", per_call / 1024.0),
                    "",
                    "< 10 KiB",
                )
                .figures(figures),
            );
        }
        rows.push(events::websocket_memory(exe, if args.quick { 1_000 } else { 10_000 }).await);
    }
    rows
}

fn memory_in_child(exe: &Path, calls: usize) -> Value {
    let output = std::process::Command::new(exe)
        .args(["--memory-child", &calls.to_string()])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap_or_else(|e| fail(format!("memory child: {e}")));
    if !output.status.success() {
        fail(format!("memory child failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| fail(format!("memory child said: {e}")))
}

fn rss_bytes() -> u64 {
    events::rss_of("self")
}

pub async fn active_calls(daemon: &Daemon) -> u64 {
    let mut conn = load::Connection::open(daemon.addr).await.unwrap_or_else(|e| fail(e));
    let (_, body) = conn.send(&Shape::get("/metrics")).await.unwrap_or_else(|e| fail(e));
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with("callplane_calls_active "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// In a fresh process: the resident memory `calls` more answered calls take.
pub async fn memory_child(calls: usize) -> Value {
    let daemon = Daemon::start(
        |s| {
            s.sim_ring_delay_ms = 0;
            s.sim_answer_delay_ms = 0;
            s.workers = 2;
        },
        None,
    );
    let auth = tenant(&daemon).await.auth;
    let create = Shape::post_json("/v1.0/calls", create_call_body(), 201).header("authorization", auth);
    // Warm up every path first, so the baseline holds what any daemon holds.
    load::send_n(daemon.addr, 16, 1_000, &create).await.unwrap_or_else(|e| fail(e));
    wait_for_active(&daemon, 1_000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes();
    load::send_n(daemon.addr, 16, calls, &create).await.unwrap_or_else(|e| fail(e));
    wait_for_active(&daemon, 1_000 + calls as u64).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_bytes();
    let live = daemon.ctx.domain.calls.send(callplane_actors::call::LiveCount).await.unwrap_or(0);
    json!({
        "calls": calls,
        "live_calls": live,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_call": after.saturating_sub(before) as f64 / calls as f64,
    })
}

pub async fn wait_for_active(daemon: &Daemon, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while active_calls(daemon).await < count {
        if Instant::now() > deadline {
            fail(format!("only {} of {count} calls became active", active_calls(daemon).await));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
