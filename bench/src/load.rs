//! The load generator: HTTP/1.1 keep-alive connections (hyper), closed-loop for
//! throughput and open-loop at a fixed rate for latency without coordinated omission.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// One kind of request, cheap to repeat.
#[derive(Clone)]
pub struct Shape {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// The status a successful answer has.
    pub expect: u16,
}

impl Shape {
    pub fn get(path: impl Into<String>) -> Shape {
        Shape { method: Method::GET, path: path.into(), headers: Vec::new(), body: Bytes::new(), expect: 200 }
    }

    pub fn delete(path: impl Into<String>) -> Shape {
        Shape { method: Method::DELETE, path: path.into(), headers: Vec::new(), body: Bytes::new(), expect: 200 }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Shape {
        self.headers.push((name, value.into()));
        self
    }

    pub fn post_json(path: impl Into<String>, body: String, expect: u16) -> Shape {
        Shape {
            method: Method::POST,
            path: path.into(),
            headers: vec![("content-type", "application/json".to_owned())],
            body: Bytes::from(body),
            expect,
        }
    }
}

/// Results of a run.
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds.
    pub latency: Histogram<u64>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn p(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.latency.value_at_quantile(quantile))
    }
}

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Connection, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection { sender, host: addr.to_string() })
    }

    /// Sends one request; its status and body.
    pub async fn send(&mut self, shape: &Shape) -> Result<(u16, Bytes), String> {
        let mut request = Request::builder().method(shape.method.clone()).uri(&shape.path).header("host", &self.host);
        for (name, value) in &shape.headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(shape.body.clone())).map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response = self.sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    }
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s, three significant digits: constant bounds that are always valid.
    #[expect(clippy::expect_used, reason = "the bounds are constants")]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// `connections` clients each send `shape` back to back for `duration`.
pub async fn closed_loop(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    shape: &Shape,
) -> Result<Outcome, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..connections {
        let mut conn = Connection::open(addr).await?;
        let (stop, errors, shape) = (stop.clone(), errors.clone(), shape.clone());
        clients.push(tokio::spawn(async move {
            let mut latency = histogram();
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match conn.send(&shape).await {
                    Ok((status, _)) if status == shape.expect => {
                        count += 1;
                        let _ = latency.record(started.elapsed().as_micros() as u64);
                    }
                    Ok(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        match Connection::open(conn_addr(&conn)).await {
                            Ok(fresh) => conn = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            (count, latency)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = histogram();
    let mut requests = 0;
    for client in clients {
        let (count, h) = client.await.map_err(|e| e.to_string())?;
        requests += count;
        let _ = latency.add(&h);
    }
    Ok(Outcome { requests, errors: errors.load(Ordering::Relaxed), elapsed: started.elapsed(), latency })
}

fn conn_addr(conn: &Connection) -> SocketAddr {
    conn.host.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// `shape` at `rate` per second for `duration`. Each request's latency counts from the
/// moment it was due, not from when a connection was free, so a stall shows.
pub async fn open_loop(addr: SocketAddr, rate: u32, duration: Duration, shape: &Shape) -> Result<Outcome, String> {
    // Enough connections that a few slow answers do not hold the schedule back.
    let pool: Vec<Arc<Mutex<Connection>>> = {
        let mut pool = Vec::new();
        for _ in 0..64 {
            pool.push(Arc::new(Mutex::new(Connection::open(addr).await?)));
        }
        pool
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = (duration.as_secs_f64() * f64::from(rate)) as u64;
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut pending = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let conn = pool[(i as usize) % pool.len()].clone();
        let (shape, errors) = (shape.clone(), errors.clone());
        pending.push(tokio::spawn(async move {
            let mut conn = conn.lock().await;
            match conn.send(&shape).await {
                Ok((status, _)) if status == shape.expect => Some(due.elapsed().as_micros() as u64),
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        }));
    }
    let mut latency = histogram();
    let mut requests = 0;
    for request in pending {
        if let Some(micros) = request.await.map_err(|e| e.to_string())? {
            requests += 1;
            let _ = latency.record(micros.max(1));
        }
    }
    Ok(Outcome { requests, errors: errors.load(Ordering::Relaxed), elapsed: started.elapsed(), latency })
}

/// Sends `shape` `total` times over `connections` connections, as fast as it goes.
pub async fn send_n(addr: SocketAddr, connections: usize, total: usize, shape: &Shape) -> Result<(), String> {
    let left = Arc::new(AtomicU64::new(total as u64));
    let mut clients = Vec::new();
    for _ in 0..connections {
        let mut conn = Connection::open(addr).await?;
        let (left, shape) = (left.clone(), shape.clone());
        clients.push(tokio::spawn(async move {
            while left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
                let (status, body) = conn.send(&shape).await?;
                if status != shape.expect {
                    return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
                }
            }
            Ok::<(), String>(())
        }));
    }
    for client in clients {
        client.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}
