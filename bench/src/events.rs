//! Events out: commit → WebSocket frame, commit → webhook delivered, and the memory an
//! idle WebSocket session costs.
//!
//! Events are real ones: `call.updated`, from holding and releasing answered calls through
//! the API. Each driver task owns a share of the calls and steers them one request at a
//! time, so one call's holds and releases never race. Latency is measured by the client
//! from the event's own `timestamp` (taken in the transaction that writes it) to the
//! moment its frame or request arrives: the same clock, in the same process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{self, Connection, Shape};
use crate::report::{Row, ms, rate};
use crate::sections::{Tenant, create_call_body, wait_for_active};
use crate::{Daemon, fail};

/// Microseconds from the event's `timestamp` to now.
fn age_micros(event: &Value) -> Option<u64> {
    let stamp = chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str()?).ok()?;
    let age = chrono::Utc::now().signed_duration_since(stamp).num_microseconds()?;
    Some(age.max(1) as u64)
}

fn p(h: &Histogram<u64>, quantile: f64) -> Duration {
    Duration::from_micros(h.value_at_quantile(quantile))
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `n` answered calls of the tenant; their ids.
pub async fn answered_calls(daemon: &Daemon, tenant: &Tenant, n: usize) -> Vec<String> {
    let create = Shape::post_json("/v1.0/calls", create_call_body(), 201).header("authorization", tenant.auth.clone());
    let before = crate::sections::active_calls(daemon).await;
    let ids = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let left = Arc::new(AtomicU64::new(n as u64));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let mut conn = Connection::open(daemon.addr).await.unwrap_or_else(|e| fail(e));
        let (ids, left, create) = (ids.clone(), left.clone(), create.clone());
        clients.push(tokio::spawn(async move {
            while left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
                let (status, body) = conn.send(&create).await.unwrap_or_else(|e| fail(e));
                let call: Value = serde_json::from_slice(&body).unwrap_or_default();
                match call["id"].as_str() {
                    Some(id) if status == 201 => ids.lock().await.push(id.to_owned()),
                    _ => fail(format!("create answered {status}: {call}")),
                }
            }
        }));
    }
    for client in clients {
        let _ = client.await;
    }
    wait_for_active(daemon, before + n as u64).await;
    std::mem::take(&mut *ids.lock().await)
}

/// Holds and releases `calls` for `duration`, `per_second` in all (as fast as they go
/// when `None`), or until `limit` changes were made. Answers how many succeeded.
async fn steer(
    addr: SocketAddr,
    auth: &str,
    calls: &[String],
    per_second: Option<f64>,
    duration: Duration,
    limit: u64,
) -> u64 {
    let tasks = calls.len().clamp(1, 32);
    let done = Arc::new(AtomicU64::new(0));
    let budget = Arc::new(AtomicU64::new(limit));
    let started = Instant::now();
    let mut drivers = Vec::new();
    for t in 0..tasks {
        let mine: Vec<String> = calls.iter().skip(t).step_by(tasks).cloned().collect();
        let interval = per_second.map(|r| Duration::from_secs_f64(tasks as f64 / r));
        let (auth, done, budget) = (auth.to_owned(), done.clone(), budget.clone());
        drivers.push(tokio::spawn(async move {
            let mut conn = Connection::open(addr).await.unwrap_or_else(|e| fail(e));
            let mut held: HashMap<usize, bool> = HashMap::new();
            let mut i = 0usize;
            // Spread the drivers over the first interval so their requests do not bunch.
            let offset = interval.map_or(Duration::ZERO, |iv| iv.mul_f64(t as f64 / tasks as f64));
            let mut due = started + offset;
            while started.elapsed() < duration {
                if budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_err() {
                    break;
                }
                if let Some(interval) = interval {
                    tokio::time::sleep_until(due.into()).await;
                    due += interval;
                }
                let k = i % mine.len();
                i += 1;
                let on = held.entry(k).or_insert(false);
                let path = format!("/v1.0/calls/{}/hold", mine[k]);
                let shape = if *on { Shape::delete(path) } else { Shape::post_json(path, String::new(), 200) }
                    .header("authorization", auth.clone());
                match conn.send(&shape).await {
                    Ok((200, _)) => {
                        *on = !*on;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((status, body)) => fail(format!("hold answered {status}: {}", String::from_utf8_lossy(&body))),
                    Err(e) => fail(e),
                }
            }
        }));
    }
    for driver in drivers {
        let _ = driver.await;
    }
    done.load(Ordering::Relaxed)
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket session subscribed to `topic`, once its ack has arrived.
async fn open_session(addr: SocketAddr, jwt: &str, topic: &str) -> Result<WsStream, String> {
    let url = format!("ws://{addr}/v1.0/ws?token={jwt}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("ws connect: {e}"))?;
    let subscribe = json!({"type": "subscribe", "topics": [topic]}).to_string();
    socket.send(Message::text(subscribe)).await.map_err(|e| format!("ws send: {e}"))?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                if frame["type"] == "ack" {
                    return Ok(socket);
                }
                return Err(format!("subscribe answered {frame}"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("ws read: {e}")),
            None => return Err("ws closed before the ack".to_owned()),
        }
    }
}

/// One subscribed WebSocket client that records each pushed event's age.
struct Listener {
    frames: Arc<AtomicU64>,
    latency: Arc<std::sync::Mutex<Histogram<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn listen(addr: SocketAddr, jwt: &str, topic: &str) -> Listener {
    let mut socket = open_session(addr, jwt, topic).await.unwrap_or_else(|e| fail(e));
    let frames = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(std::sync::Mutex::new(load::histogram()));
    let (counted, recorded) = (frames.clone(), latency.clone());
    let task = tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(age) = age_micros(&event) {
                    if let Ok(mut h) = recorded.lock() {
                        let _ = h.record(age);
                    }
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    Listener { frames, latency, task }
}

/// 1,000 sessions in groups of `fanout`, each group following one answered call; the
/// calls change `per_second` times a second in all.
pub async fn websocket_latency(
    daemon: &Daemon,
    tenant: &Tenant,
    fanout: usize,
    per_second: f64,
    duration: Duration,
) -> Row {
    const SESSIONS: usize = 1_000;
    let calls = answered_calls(daemon, tenant, SESSIONS / fanout).await;
    let mut listeners = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let topic = format!("customer_id:{}:call:{}", tenant.customer_id, calls[i / fanout]);
        listeners.push(listen(daemon.addr, &tenant.jwt, &topic).await);
    }
    let changes = steer(daemon.addr, &tenant.auth, &calls, Some(per_second), duration, u64::MAX).await;
    let expected = changes * fanout as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let received = || listeners.iter().map(|l| l.frames.load(Ordering::Relaxed)).sum::<u64>();
    while received() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let frames = received();
    let mut latency = load::histogram();
    for listener in listeners {
        listener.task.abort();
        if let Ok(h) = listener.latency.lock() {
            let _ = latency.add(&*h);
        }
    }
    Row::new(
        format!("event → WebSocket frame, {SESSIONS} sessions, {} events/s, each to {fanout} session(s)", rate(per_second)),
        format!("p50 {}, p99 {}, {} of {} frames", ms(p(&latency, 0.5)), ms(p(&latency, 0.99)), rate(frames as f64), rate(expected as f64)),
        format!("{} frames/s", rate(per_second * fanout as f64)),
        "p99 < 5 ms (seed: < 100 ms)",
    )
    .figures(json!({"sessions": SESSIONS, "fanout": fanout, "events_per_s": per_second, "events": changes, "frames": frames, "expected_frames": expected, "p50_ms": ms_f(p(&latency, 0.5)), "p99_ms": ms_f(p(&latency, 0.99))}))
}

/// A loopback webhook receiver: answers 200 at once and records each delivery's age.
struct Receiver {
    addr: SocketAddr,
    state: Arc<std::sync::Mutex<Received>>,
}

struct Received {
    /// Only requests under this path prefix count; stragglers of an earlier phase do not.
    prefix: String,
    count: u64,
    latency: Histogram<u64>,
    last: Option<Instant>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| fail(format!("receiver: {e}")));
        let addr = listener.local_addr().unwrap_or_else(|e| fail(e));
        let state = Arc::new(std::sync::Mutex::new(Received {
            prefix: "/".to_owned(),
            count: 0,
            latency: load::histogram(),
            last: None,
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let state = shared.clone();
                let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                    let state = state.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let body = http_body_util::BodyExt::collect(request.into_body()).await?.to_bytes();
                        let event: Value = serde_json::from_slice(&body).unwrap_or_default();
                        if let (Some(age), Ok(mut state)) = (age_micros(&event), state.lock())
                            && path.starts_with(&state.prefix)
                        {
                            state.count += 1;
                            let _ = state.latency.record(age);
                            state.last = Some(Instant::now());
                        }
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { addr, state }
    }

    /// Starts counting afresh, for requests under `prefix`.
    fn reset(&self, prefix: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.prefix = prefix.to_owned();
            state.count = 0;
            state.latency.reset();
            state.last = None;
        }
    }

    fn count(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.count)
    }

    /// Waits until `expected` deliveries arrived (or a minute passed); the count, the
    /// latency and when the last one arrived.
    async fn wait_for(&self, expected: u64) -> (u64, Histogram<u64>, Option<Instant>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match self.state.lock() {
            Ok(state) => (state.count, state.latency.clone(), state.last),
            Err(_) => (0, load::histogram(), None),
        }
    }
}

/// `endpoints` webhooks on one loopback receiver, each taking every `call.updated`:
/// latency at 1,000 deliveries a second, then how many a second get through when
/// `burst` deliveries' worth of events are made as fast as the API takes them.
pub async fn webhook_delivery(
    daemon: &Daemon,
    tenant: &Tenant,
    calls: &[String],
    receiver_phase: usize,
    endpoints: usize,
    duration: Duration,
    burst: u64,
) -> Row {
    let receiver = Receiver::start().await;
    let prefix = format!("/p{receiver_phase}/");
    let mut conn = Connection::open(daemon.addr).await.unwrap_or_else(|e| fail(e));
    let mut webhooks = Vec::new();
    for i in 0..endpoints {
        let body = json!({"name": format!("bench {i}"), "uri": format!("http://{}{prefix}{i}", receiver.addr), "method": "POST", "event_types": ["call.updated"]});
        let shape =
            Shape::post_json("/v1.0/webhooks", body.to_string(), 201).header("authorization", tenant.auth.clone());
        let (status, body) = conn.send(&shape).await.unwrap_or_else(|e| fail(e));
        let made: Value = serde_json::from_slice(&body).unwrap_or_default();
        match made["id"].as_str() {
            Some(id) if status == 201 => webhooks.push(id.to_owned()),
            _ => fail(format!("webhook create answered {status}: {made}")),
        }
    }

    // Latency at a fixed load.
    receiver.reset(&prefix);
    let per_second = 1_000.0 / endpoints as f64;
    let changes = steer(daemon.addr, &tenant.auth, calls, Some(per_second), duration, u64::MAX).await;
    let (delivered, latency, _) = receiver.wait_for(changes * endpoints as u64).await;

    // Throughput: a burst of events, timed from the first change to the last delivery.
    receiver.reset(&prefix);
    let started = Instant::now();
    let events = (burst / endpoints as u64).max(1);
    let changes_burst = steer(daemon.addr, &tenant.auth, calls, None, Duration::from_secs(600), events).await;
    let expected_burst = changes_burst * endpoints as u64;
    let (burst_delivered, _, last) = receiver.wait_for(expected_burst).await;
    let throughput = burst_delivered as f64 / last.map_or(started.elapsed(), |l| l - started).as_secs_f64();

    for id in &webhooks {
        let shape = Shape::delete(format!("/v1.0/webhooks/{id}")).header("authorization", tenant.auth.clone());
        let _ = conn.send(&shape).await;
    }
    Row::new(
        format!("event → webhook delivered (loopback receiver), {endpoints} endpoint(s)"),
        format!(
            "p50 {}, p99 {} at 1,000 deliveries/s; {} deliveries/s in a burst of {}",
            ms(p(&latency, 0.5)),
            ms(p(&latency, 0.99)),
            rate(throughput),
            rate(expected_burst as f64)
        ),
        "",
        "p99 < 20 ms, ≥ 2,000/s",
    )
    .figures(json!({
        "endpoints": endpoints,
        "latency_phase": {"events": changes, "delivered": delivered, "expected": changes * endpoints as u64, "p50_ms": ms_f(p(&latency, 0.5)), "p99_ms": ms_f(p(&latency, 0.99))},
        "burst_phase": {"events": changes_burst, "delivered": burst_delivered, "expected": expected_burst, "deliveries_per_s": throughput},
    }))
}

/// Resident memory of a daemon in a child process per idle, subscribed WebSocket session.
pub async fn websocket_memory(exe: &Path, sessions: usize) -> Row {
    let mut child = tokio::process::Command::new(exe)
        .arg("--serve-child")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| fail(format!("serve child: {e}")));
    let pid = child.id().unwrap_or_else(|| fail("serve child has no pid")).to_string();
    let stdout = child.stdout.take().unwrap_or_else(|| fail("serve child has no stdout"));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap_or_else(|e| fail(e));
    let hello: Value = serde_json::from_str(&line).unwrap_or_else(|e| fail(format!("serve child said {line:?}: {e}")));
    let addr: SocketAddr =
        hello["addr"].as_str().and_then(|a| a.parse().ok()).unwrap_or_else(|| fail("serve child addr"));
    let jwt = hello["jwt"].as_str().unwrap_or_default().to_owned();
    let customer_id = hello["customer_id"].as_str().unwrap_or_default().to_owned();
    let topic = |i: usize| format!("customer_id:{customer_id}:call:{:08x}-0000-4000-8000-{:012x}", i, i);

    // Warm every path first, so the baseline holds what any daemon with sessions holds.
    let mut sockets = Vec::with_capacity(sessions + 100);
    for i in 0..100 {
        sockets.push(open_session(addr, &jwt, &topic(i)).await.unwrap_or_else(|e| fail(e)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_of(&pid);
    for i in 100..100 + sessions {
        sockets.push(open_session(addr, &jwt, &topic(i)).await.unwrap_or_else(|e| fail(e)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_of(&pid);
    drop(sockets);
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let per_session = after.saturating_sub(before) as f64 / sessions as f64;
    Row::new(
        format!("resident memory per idle WebSocket session (subscribed to one topic), {} sessions", rate(sessions as f64)),
        format!("{:.2} KiB", per_session / 1024.0),
        "",
        "",
    )
    .figures(json!({"sessions": sessions, "rss_before_bytes": before, "rss_after_bytes": after, "bytes_per_session": per_session}))
}

/// Resident memory of `process` (a pid, or `self`), from `/proc`.
pub fn rss_of(process: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// In a child process: a daemon whose address and credentials go to stdout as one JSON
/// line; it runs until stdin closes.
pub async fn serve_child() {
    let daemon = Daemon::start(|s| s.workers = 2, None);
    let tenant = crate::sections::tenant(&daemon).await;
    println!("{}", json!({"addr": daemon.addr.to_string(), "jwt": tenant.jwt, "customer_id": tenant.customer_id}));
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    daemon.stop();
}
