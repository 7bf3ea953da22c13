#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The same daemon on PostgreSQL and on MySQL/MariaDB: migrations up, down and up, and
//! a short run of the HTTP API. Each test works in a database of its own, made from
//! `CALLPLANE_TEST_POSTGRES_URL` / `CALLPLANE_TEST_MYSQL_URL` and dropped afterwards.
//!
//! Needs a build with the backends' features; CI runs this binary alone:
//! `cargo nextest run --features postgres,mysql -E 'binary(backends)'`. Without the
//! feature or the variable each test says `SKIPPED` on stderr and passes; with the
//! variable set and the server down, it fails.

mod common;

use common::{PASSWORD, TestDatabase, TestServer};
use serde_json::json;

#[actix_web::test]
async fn postgres_migrations_go_up_down_and_up_again() {
    let Some(db) = TestDatabase::postgres() else { return };
    common::migrations_round_trip(&db.url).await;
}

#[actix_web::test]
async fn mysql_migrations_go_up_down_and_up_again() {
    let Some(db) = TestDatabase::mysql() else { return };
    common::migrations_round_trip(&db.url).await;
}

#[actix_web::test]
async fn postgres_serves_the_api() {
    let Some(db) = TestDatabase::postgres() else { return };
    smoke(&db).await;
}

#[actix_web::test]
async fn mysql_serves_the_api() {
    let Some(db) = TestDatabase::mysql() else { return };
    smoke(&db).await;
}

/// Tenant, login, agents (with a page walk), access keys, the own customer and
/// `/readyz`, against `db`.
async fn smoke(db: &TestDatabase) {
    let url = db.url.clone();
    let server = TestServer::start_with(move |s| s.database_url = url).await;
    assert_ne!(server.ctx.db.backend(), callplane_schema::Backend::Sqlite);
    server.get("/readyz", None).await.expect(200);

    let tenant = server.tenant("alice").await;
    let me = server.get("/v1.0/me", Some(&tenant.token)).await;
    assert_eq!(me.expect(200)["customer_id"], tenant.customer_id.as_str());
    server.post("/auth/login", None, json!({"username": "alice", "password": "wrong password"})).await.expect(401);
    // bootstrap is idempotent here too.
    let again =
        callplane::provision::bootstrap(&server.ctx.db, common::SECRET.as_bytes(), "alice", PASSWORD, 1).await.unwrap();
    assert_eq!(again.accesskey, tenant.accesskey);
    assert!(!again.created);

    let mut created = vec![tenant.agent_id.clone()];
    for i in 0..5 {
        let agent = server.create_agent(&tenant.accesskey, &format!("agent-{i}"), "agent").await;
        created.push(agent["id"].as_str().unwrap().to_owned());
    }
    let dup = json!({"username": "agent-0", "password": PASSWORD});
    server.post("/v1.0/agents", Some(&tenant.token), dup).await.expect_error(409, "USERNAME_TAKEN");
    created.reverse();
    let mut walked = Vec::new();
    let mut path = "/v1.0/agents?page_size=2".to_owned();
    loop {
        let page = server.get(&path, Some(&tenant.token)).await.expect(200).clone();
        walked.extend(page["result"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()));
        match page["next_page_token"].as_str() {
            Some(t) => path = format!("/v1.0/agents?page_size=2&page_token={t}"),
            None => break,
        }
    }
    assert_eq!(walked, created, "newest first, each once");
    let offset = server.get("/v1.0/agents?limit=2&offset=4", Some(&tenant.token)).await;
    assert_eq!(offset.expect(200)["result"].as_array().unwrap().len(), 2);

    let first = format!("/v1.0/agents/{}", created[0]);
    let updated = server.put(&first, Some(&tenant.token), json!({"name": "Renamed", "role": "manager"})).await;
    assert_eq!(updated.expect(200)["role"], "manager");
    let status = server.put(&format!("{first}/status"), Some(&tenant.token), json!({"status": "available"})).await;
    assert_eq!(status.expect(200)["status"], "available");
    server.delete(&first, Some(&tenant.token)).await.expect(200);
    server.get(&first, Some(&tenant.token)).await.expect_error(404, "AGENT_NOT_FOUND");
    let own = format!("/v1.0/agents/{}", tenant.agent_id);
    server.delete(&own, Some(&tenant.token)).await.expect_error(409, "LAST_ADMIN");

    let key = server.post("/v1.0/accesskeys", Some(&tenant.token), json!({"name": "ci", "expire": 600})).await;
    let key = key.expect(201).clone();
    let secret = key["token"].as_str().unwrap();
    assert_eq!(server.get("/v1.0/me", Some(secret)).await.expect(200)["role"], "admin");
    let keys = server.get("/v1.0/accesskeys", Some(&tenant.token)).await;
    assert_eq!(keys.expect(200)["result"].as_array().unwrap().len(), 2);
    assert!(!keys.text.contains(secret));
    server.delete(&format!("/v1.0/accesskeys/{}", key["id"].as_str().unwrap()), Some(&tenant.token)).await.expect(200);
    server.get("/v1.0/me", Some(secret)).await.expect_error(401, "UNAUTHENTICATED");

    let customer = server.put("/v1.0/customer", Some(&tenant.token), json!({"name": "Alice Ltd"})).await;
    assert_eq!(customer.expect(200)["name"], "Alice Ltd");
    // Timestamps keep their microseconds through the database.
    let got = server.get("/v1.0/customer", Some(&tenant.token)).await;
    assert_eq!(got.expect(200), &customer.json);

    server.stop().await;
}

#[test]
fn database_urls_are_rewritten() {
    use common::with_database;
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "cp_1"),
        "postgres://postgres@127.0.0.1:5432/cp_1"
    );
    assert_eq!(with_database("mysql://root@127.0.0.1:3306", "cp_1"), "mysql://root@127.0.0.1:3306/cp_1");
    assert_eq!(with_database("postgres://u:p@h/db?sslmode=disable", "cp_2"), "postgres://u:p@h/cp_2?sslmode=disable");
}

#[actix_web::test]
async fn postgres_never_loses_a_concurrent_charge() {
    let Some(db) = TestDatabase::postgres() else { return };
    concurrent_charges(&db).await;
}

#[actix_web::test]
async fn mysql_never_loses_a_concurrent_charge() {
    let Some(db) = TestDatabase::mysql() else { return };
    concurrent_charges(&db).await;
}

#[actix_web::test]
async fn postgres_bills_two_calls_ending_at_once() {
    let Some(db) = TestDatabase::postgres() else { return };
    two_calls_ending_at_once(&db).await;
}

#[actix_web::test]
async fn mysql_bills_two_calls_ending_at_once() {
    let Some(db) = TestDatabase::mysql() else { return };
    two_calls_ending_at_once(&db).await;
}

/// Two daemons' worth of writers (two `Db` handles, each with its own writer thread
/// and connection) charge the same account at the same time: every charge lands.
async fn concurrent_charges(db: &TestDatabase) {
    use callplane_schema::models::billing::{self, ReferenceType};
    let url = db.url.clone();
    let server = TestServer::start_with(move |s| s.database_url = url).await;
    let tenant = server.tenant("alice").await;
    let customer: callplane_schema::ids::CustomerId = tenant.customer_id.parse().unwrap();
    let other = callplane_schema::Db::open(callplane_schema::DbSettings::new(db.url.clone())).unwrap();

    const EACH: usize = 50;
    let charge = |db: callplane_schema::Db, customer: callplane_schema::ids::CustomerId| async move {
        let mut writes = Vec::new();
        for _ in 0..EACH {
            let customer = customer.clone();
            writes.push(db.write(move |tx| {
                let reference = callplane_schema::ids::BillingId::new();
                billing::post(tx.conn, &customer, ReferenceType::Sms, reference.as_str(), 1, 1_000, -1_000)
            }));
        }
        for write in futures_util::future::join_all(writes).await {
            write.unwrap();
        }
    };
    futures_util::join!(charge(server.ctx.db.clone(), customer.clone()), charge(other, customer.clone()));

    let account = server.get("/v1.0/billing_account", Some(&tenant.token)).await;
    assert_eq!(account.expect(200)["balance"].as_i64(), Some(common::BALANCE - 2 * EACH as i64 * 1_000));
    server.stop().await;
}

/// Two answered calls hung up together over HTTP: both are charged.
async fn two_calls_ending_at_once(db: &TestDatabase) {
    let url = db.url.clone();
    let server = TestServer::start_with(move |s| {
        s.database_url = url;
        s.sim_ring_delay_ms = 10;
        s.sim_answer_delay_ms = 30;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let mut ids = Vec::new();
    for number in ["+15559876543", "+15559876544"] {
        let body = json!({"source": {"type": "tel", "target": "+15551234567"}, "destinations": [{"type": "tel", "target": number}]});
        ids.push(
            server.post("/v1.0/calls", Some(&tenant.token), body).await.expect(201)["id"].as_str().unwrap().to_owned(),
        );
    }
    for id in &ids {
        wait_for(&server, &tenant.token, id, "active").await;
    }
    let (a, b) = (format!("/v1.0/calls/{}/hangup", ids[0]), format!("/v1.0/calls/{}/hangup", ids[1]));
    let (ra, rb) = futures_util::join!(
        server.post(&a, Some(&tenant.token), json!({})),
        server.post(&b, Some(&tenant.token), json!({}))
    );
    ra.expect(200);
    rb.expect(200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let rows = server.get("/v1.0/billings", Some(&tenant.token)).await.expect(200).clone();
        let finished = rows["result"].as_array().unwrap().iter().filter(|r| r["status"] == "finished").count();
        if finished == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "both calls charged: {rows}");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let account = server.get("/v1.0/billing_account", Some(&tenant.token)).await;
    assert_eq!(account.expect(200)["balance"].as_i64(), Some(common::BALANCE - 20_000));
    server.stop().await;
}

async fn wait_for(server: &TestServer, token: &str, id: &str, status: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let call = server.get(&format!("/v1.0/calls/{id}"), Some(token)).await.expect(200).clone();
        if call["status"] == status {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "call {id} never became {status}: {call}");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn postgres_runs_flows_conferences_numbers_and_messages() {
    let Some(db) = TestDatabase::postgres() else { return };
    flows_smoke(&db).await;
}

#[actix_web::test]
async fn mysql_runs_flows_conferences_numbers_and_messages() {
    let Some(db) = TestDatabase::mysql() else { return };
    flows_smoke(&db).await;
}

/// A run to its end, a conference join with its participant, a number and its
/// uniqueness, a message to delivery, against `db`.
async fn flows_smoke(db: &TestDatabase) {
    use std::time::{Duration, Instant};

    let url = db.url.clone();
    let server = TestServer::start_with(move |s| {
        s.database_url = url;
        s.sim_ring_delay_ms = 20;
        s.sim_answer_delay_ms = 80;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let token = Some(tenant.token.as_str());
    let poll = |path: String, done: fn(&serde_json::Value) -> bool| {
        let server = &server;
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let resp = server.get(&path, token).await;
                if resp.status.as_u16() == 200 && done(&resp.json) {
                    return resp.json;
                }
                assert!(Instant::now() < deadline, "{path}: {}", resp.text);
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let tel = |n: &str| json!({"type": "tel", "target": n});

    let flow = server
        .post(
            "/v1.0/flows",
            token,
            json!({"actions": [{"type": "variable_set", "option": {"key": "k", "value": "${v}"}}]}),
        )
        .await;
    let flow_id = flow.expect(201)["id"].clone();
    let body = json!({"source": tel("+15551234567"), "destinations": [tel("+15559876543")], "flow_id": flow_id,
                      "variables": {"v": "from the call"}});
    let call = server.post("/v1.0/calls", token, body).await.expect(201).clone();
    let call_id = call["id"].as_str().unwrap().to_owned();
    let runs = poll(format!("/v1.0/activeflows?call_id={call_id}"), |p| p["result"][0]["status"] == "ended").await;
    assert_eq!(runs["result"][0]["variables"]["k"], "from the call");

    let conf = server.post("/v1.0/conferences", token, json!({"name": "db"})).await.expect(201).clone();
    let conf_path = format!("/v1.0/conferences/{}", conf["id"].as_str().unwrap());
    server.post(&format!("{conf_path}/join"), token, json!({"call_id": call_id})).await.expect(201);
    let joined = poll(conf_path.clone(), |c| c["participants"][0]["status"] == "joined").await;
    assert!(joined["participants"][0]["tm_join"].is_string());
    let all = server.get("/v1.0/conferencecalls?page_size=1", token).await;
    assert_eq!(all.expect(200)["result"].as_array().unwrap().len(), 1);

    server.post("/v1.0/numbers", token, json!({"number": "+15550001111", "call_flow_id": flow_id})).await.expect(201);
    server.post("/v1.0/numbers", token, json!({"number": "+15550001111"})).await.expect_error(409, "ALREADY_EXISTS");

    let body = json!({"source": tel("+15551234567"), "destinations": [tel("+15557654321")], "text": "hi"});
    let message = server.post("/v1.0/messages", token, body).await.expect(201).clone();
    poll(format!("/v1.0/messages/{}", message["id"].as_str().unwrap()), |m| m["targets"][0]["status"] == "delivered")
        .await;

    server.stop().await;
}

#[actix_web::test]
async fn postgres_going_away_is_a_503_and_coming_back_recovers() {
    let Some(db) = TestDatabase::postgres() else { return };
    database_outage(&db).await;
}

#[actix_web::test]
async fn mysql_going_away_is_a_503_and_coming_back_recovers() {
    let Some(db) = TestDatabase::mysql() else { return };
    database_outage(&db).await;
}

/// A TCP proxy in front of the database server that the test can cut and restore. It
/// runs on a runtime of its own: the daemon's start-up blocks the test's thread.
struct Proxy {
    listen: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Dropped inside the test's async context, where a runtime may not block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = listener.local_addr().unwrap();
        drop(listener);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let proxy = Proxy { listen, upstream, runtime: Some(runtime), tasks: Default::default() };
        proxy.open();
        proxy
    }

    /// Listens and forwards again, on the same port.
    fn open(&self) {
        let runtime = self.runtime.as_ref().unwrap();
        let _entered = runtime.enter();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.listen).unwrap();
        let listener = socket.listen(128).unwrap();
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let accept = runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(link);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Stops listening and cuts every open connection.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// The database goes away mid-run: requests answer 503 with `Retry-After` within the
/// retry budget (never hang), `/readyz` says so, and all is well once it is back.
async fn database_outage(db: &TestDatabase) {
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (userinfo, rest) = rest.split_once('@').unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(hostport).unwrap().next().unwrap();
    let proxy = Proxy::start(upstream);
    let url = format!("{scheme}://{userinfo}@{}/{path}", proxy.listen);
    let server = TestServer::start_with(move |s| s.database_url = url).await;
    let tenant = server.tenant("alice").await;
    let token = Some(tenant.token.as_str());
    server.get("/v1.0/agents", token).await.expect(200);

    proxy.cut();
    let started = std::time::Instant::now();
    let read = server.get("/v1.0/accesskeys", token).await;
    read.expect_error(503, "UNAVAILABLE");
    assert!(read.header("retry-after").is_some());
    let write = server.post("/v1.0/agents", token, json!({"username": "bob", "password": PASSWORD})).await;
    write.expect_error(503, "UNAVAILABLE");
    assert!(write.header("retry-after").is_some());
    let ready = server.get("/readyz", None).await;
    assert_eq!(ready.status.as_u16(), 503, "{}", ready.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "answers came within the retry budget");

    proxy.open();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let resp = server.post("/v1.0/agents", token, json!({"username": "bob", "password": PASSWORD})).await;
        if resp.status.as_u16() == 201 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered: {}", resp.text);
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    server.get("/readyz", None).await.expect(200);
    let agents = server.get("/v1.0/agents", token).await.expect(200).clone();
    assert_eq!(agents["result"].as_array().unwrap().len(), 2, "the refused write left nothing behind");
    server.stop().await;
    proxy.cut();
}
