#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The call cache on Redis: `GET /v1.0/calls/{id}` fills `call:<id>` for 300 s, every
//! change deletes it before the change is announced, and a Redis that dies mid-run
//! never reaches a client.
//!
//! The first test uses the Redis at `CALLPLANE_TEST_REDIS_URL` (unset: `SKIPPED`; set
//! but not answering: the test fails). The second starts and kills its own
//! `redis-server` (Debian's `redis-server` package).

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Tenant, TestServer};
use serde_json::{Value, json};

fn quick(s: &mut callplane::config::Settings) {
    s.sim_ring_delay_ms = 10;
    s.sim_answer_delay_ms = 30;
}

fn redis_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap_or_else(|e| panic!("redis at {url} does not answer: {e}"));
    redis::cmd("GET").arg(key).query(&mut conn).unwrap()
}

fn redis_ttl(url: &str, key: &str) -> i64 {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("TTL").arg(key).query(&mut conn).unwrap()
}

async fn create(server: &TestServer, tenant: &Tenant) -> String {
    let body = json!({"source": {"type": "tel", "target": "+15551234567"}, "destinations": [{"type": "tel", "target": "+15559876543"}]});
    server.post("/v1.0/calls", Some(&tenant.token), body).await.expect(201)["id"].as_str().unwrap().to_owned()
}

async fn wait_status(server: &TestServer, tenant: &Tenant, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let call = server.get(&format!("/v1.0/calls/{id}"), Some(&tenant.token)).await.expect(200).clone();
        if call["status"] == status {
            return call;
        }
        assert!(Instant::now() < deadline, "call {id} never became {status}: {call}");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn redis_holds_the_call_cache_and_every_change_clears_it() {
    let Ok(url) = std::env::var("CALLPLANE_TEST_REDIS_URL") else {
        eprintln!("SKIPPED: set CALLPLANE_TEST_REDIS_URL to run this");
        return;
    };
    // Fails here, loudly, if the given Redis does not answer.
    redis_get(&url, "callplane-test-ping");
    let redis_url = url.clone();
    let server = TestServer::start_with(move |s| {
        quick(s);
        s.redis_url = Some(redis_url);
    })
    .await;
    assert_eq!(server.ctx.domain.cache.backend(), "redis");
    let tenant = server.tenant("alice").await;
    let id = create(&server, &tenant).await;
    let active = wait_status(&server, &tenant, &id, "active").await;

    let key = format!("call:{id}");
    let cached: Value = serde_json::from_str(&redis_get(&url, &key).expect("filled by the read")).unwrap();
    assert_eq!(cached, active, "the cache holds the call as GET shows it");
    let ttl = redis_ttl(&url, &key);
    assert!((1..=300).contains(&ttl), "EX 300: {ttl}");

    // A hit for another customer is still a 404.
    let bob = server.tenant("bob").await;
    server.get(&format!("/v1.0/calls/{id}"), Some(&bob.token)).await.expect_error(404, "CALL_NOT_FOUND");

    // The hang-up's answer comes after the key is gone.
    server.post(&format!("/v1.0/calls/{id}/hangup"), Some(&tenant.token), json!({})).await.expect(200);
    let after = redis_get(&url, &key).map(|v| serde_json::from_str::<Value>(&v).unwrap());
    assert!(after.as_ref().is_none_or(|c| c["status"] != "active"), "stale copy after the change: {after:?}");
    wait_status(&server, &tenant, &id, "ended").await;
}

/// A `redis-server` of the test's own, on a free port.
struct OwnRedis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start(port: u16, dir: tempfile::TempDir) -> Option<OwnRedis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!("SKIPPED: cannot run redis-server ({e}); install Debian's redis-server");
                return None;
            }
        };
        let redis = OwnRedis { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis::Client::open(redis.url()).unwrap().get_connection().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(mut self) -> (u16, tempfile::TempDir) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let port = self.port;
        let dir = tempfile::tempdir().unwrap();
        (port, std::mem::replace(&mut self.dir, dir))
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn a_redis_that_dies_mid_run_never_reaches_a_client() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Some(redis) = OwnRedis::start(port, tempfile::tempdir().unwrap()) else { return };
    let url = redis.url();
    let server_url = url.clone();
    let server = TestServer::start_with(move |s| {
        quick(s);
        s.redis_url = Some(server_url);
    })
    .await;
    let tenant = server.tenant("alice").await;
    let id = create(&server, &tenant).await;
    wait_status(&server, &tenant, &id, "active").await;
    assert!(redis_get(&url, &format!("call:{id}")).is_some());

    let (port, dir) = redis.kill();
    // Reads go to the database; changes still go through; nobody sees an error.
    for _ in 0..5 {
        let call = server.get(&format!("/v1.0/calls/{id}"), Some(&tenant.token)).await;
        assert_eq!(call.expect(200)["status"], "active");
    }
    server.post(&format!("/v1.0/calls/{id}/hold"), Some(&tenant.token), json!({})).await.expect(200);
    let held = server.get(&format!("/v1.0/calls/{id}"), Some(&tenant.token)).await;
    assert_eq!(held.expect(200)["hold"], true, "no stale read while Redis is down");
    let other = create(&server, &tenant).await;
    wait_status(&server, &tenant, &other, "active").await;
    let metrics = server.get("/metrics", None).await.text;
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("callplane_cache_operations_total{cache=\"redis\",result=\"error\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(errors > 0.0, "the outage is counted:\n{metrics}");

    // Redis comes back (empty): the cache fills again, and holds the current state.
    let redis = OwnRedis::start(port, dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let call = server.get(&format!("/v1.0/calls/{id}"), Some(&tenant.token)).await;
        assert_eq!(call.expect(200)["hold"], true);
        if let Some(cached) = redis_get(&redis.url(), &format!("call:{id}")) {
            assert_eq!(serde_json::from_str::<Value>(&cached).unwrap()["hold"], true);
            break;
        }
        assert!(Instant::now() < deadline, "the cache never filled again");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}
