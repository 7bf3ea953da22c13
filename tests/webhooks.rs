#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Webhooks end to end: real receivers (actix-web servers on loopback ports, recording
//! each request's raw body and headers) get signed deliveries of the events that calls
//! and agent changes produce; retries, Retry-After, timeouts, final failures, restarts,
//! dead endpoints, the circuit breaker, the address guard, filters, secret rotation,
//! tenancy and validation; and the published Flask receiver of the tutorial.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use callplane::config::Settings;
use callplane_schema::ids::WebhookId;
use callplane_schema::models::event;
use callplane_schema::models::webhook_delivery::{self, DeliveryStatus};
use common::{Tenant, TestServer};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

// ---------------------------------------------------------------------------------
// A receiver: records every request, answers as its plan says.

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    json: Value,
    at: Instant,
    /// What the receiver answered.
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
    }

    fn event_id(&self) -> &str {
        self.json["id"].as_str().unwrap()
    }

    fn event_type(&self) -> &str {
        self.json["event_type"].as_str().unwrap()
    }

    fn resource(&self) -> &str {
        self.json["data"]["id"].as_str().unwrap()
    }

    fn attempt(&self) -> u32 {
        self.header("x-voipbin-delivery-attempt").parse().unwrap()
    }
}

/// The answer to a request.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), delay: Duration::ZERO }
    }
}

/// Given the request and how many requests with the same event id came before it.
type Plan = Arc<dyn Fn(&Received, usize) -> Reply + Send + Sync>;

struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    handle: ServerHandle,
}

impl Receiver {
    async fn start(plan: Plan) -> Receiver {
        Receiver::start_on(0, plan).await
    }

    async fn start_on(port: u16, plan: Plan) -> Receiver {
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let state = web::Data::new((log.clone(), plan));
        let server = HttpServer::new(move || App::new().app_data(state.clone()).default_service(web::to(receive)))
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", port))
            .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Receiver { addr, log, handle }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Requests answered with a 2xx.
    fn accepted(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| (200..300).contains(&r.status)).collect()
    }

    async fn wait_accepted(&self, count: usize) -> Vec<Received> {
        until(&format!("{count} accepted deliveries at {}", self.addr), || {
            let accepted = self.accepted();
            (accepted.len() >= count).then_some(accepted)
        })
        .await
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<(Arc<Mutex<Vec<Received>>>, Plan)>,
) -> HttpResponse {
    let (log, plan) = &**state;
    let headers =
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    let mut received = Received {
        headers,
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        body: body.to_vec(),
        at: Instant::now(),
        status: 0,
    };
    let before = log.lock().unwrap().iter().filter(|r| r.json["id"] == received.json["id"]).count();
    let reply = plan(&received, before);
    received.status = reply.status;
    log.lock().unwrap().push(received);
    if !reply.delay.is_zero() {
        actix_web::rt::time::sleep(reply.delay).await;
    }
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in reply.headers {
        response.insert_header((name, value));
    }
    response.body("ok")
}

fn always(status: u16) -> Plan {
    Arc::new(move |_, _| Reply::status(status))
}

// ---------------------------------------------------------------------------------
// Helpers.

/// Polls `check` every 20 ms until it gives a value; fails after 30 s.
async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Loopback receivers, quick retries, quick calls.
fn local(settings: &mut Settings) {
    settings.webhook_allow_private = true;
    settings.webhook_max_backoff_secs = 1;
    settings.sim_ring_delay_ms = 20;
    settings.sim_answer_delay_ms = 80;
    settings.sim_dial_timeout_ms = 400;
}

async fn create_hook(server: &TestServer, tenant: &Tenant, uri: &str, event_types: Value) -> Value {
    let body = json!({"name": "test hook", "uri": uri, "method": "POST", "event_types": event_types});
    server.post("/v1.0/webhooks", Some(&tenant.token), body).await.expect(201).clone()
}

fn hook_id(hook: &Value) -> WebhookId {
    hook["id"].as_str().unwrap().parse().unwrap()
}

/// An `agent.updated` event of the tenant's admin.
async fn touch_agent(server: &TestServer, tenant: &Tenant, name: &str) {
    let path = format!("/v1.0/agents/{}", tenant.agent_id);
    server.put(&path, Some(&tenant.token), json!({"name": name})).await.expect(200);
}

/// A call to the number that fails at once: `call.created`, then `call.ended`.
async fn failing_call(server: &TestServer, tenant: &Tenant) -> String {
    let body = json!({"source": {"type": "tel", "target": "+15551234567"},
                      "destinations": [{"type": "tel", "target": "+15005550003"}]});
    let call = server.post("/v1.0/calls", Some(&tenant.token), body).await.expect(201).clone();
    call["id"].as_str().unwrap().to_owned()
}

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Both signatures of a request check out with `secret`.
fn signed_with(received: &Received, secret: &str) -> bool {
    let t = received.header("x-voipbin-timestamp");
    let v1 = hmac_hex(secret, &[t.as_bytes(), b".", &received.body]);
    received.header("x-voipbin-signature") == hmac_hex(secret, &[&received.body])
        && received.header("x-voipbin-signature-v2") == format!("t={t},v1={v1}")
}

async fn deliveries(server: &TestServer, id: &WebhookId) -> Vec<webhook_delivery::DeliveryRow> {
    let id = id.clone();
    server.ctx.db.read(move |conn| webhook_delivery::list_for_webhook(conn, &id)).await.unwrap()
}

async fn count(server: &TestServer, id: &WebhookId, status: DeliveryStatus) -> i64 {
    let id = id.clone();
    server.ctx.db.read(move |conn| webhook_delivery::count(conn, &id, status)).await.unwrap()
}

/// Waits until the webhook has at least `enqueued` deliveries (the enqueue follows the
/// commit of an event) and none of them is pending.
async fn settled(server: &TestServer, id: &WebhookId, enqueued: usize) -> Vec<webhook_delivery::DeliveryRow> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = deliveries(server, id).await;
        if rows.len() >= enqueued && rows.iter().all(|r| r.status != DeliveryStatus::Pending) {
            return rows;
        }
        assert!(Instant::now() < deadline, "webhook {id} never settled with {enqueued} deliveries: {rows:?}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The delivery log, newest first.
async fn log_of(server: &TestServer, tenant: &Tenant, id: &WebhookId) -> Vec<Value> {
    let resp = server.get(&format!("/v1.0/webhooks/{id}/deliveries"), Some(&tenant.token)).await;
    resp.expect(200)["result"].as_array().unwrap().clone()
}

async fn wait_log(server: &TestServer, tenant: &Tenant, id: &WebhookId, lines: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = log_of(server, tenant, id).await;
        if log.len() >= lines {
            return log;
        }
        assert!(Instant::now() < deadline, "the log of {id} never reached {lines} lines: {log:?}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The value of a metric line, e.g. `callplane_webhook_breakers{state="open"}`.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = server.get("/metrics", None).await.text;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no metric {name} in {text}"))
}

/// Requests grouped by resource, in the order they arrived.
fn by_resource(received: &[Received]) -> HashMap<String, Vec<&Received>> {
    let mut map: HashMap<String, Vec<&Received>> = HashMap::new();
    for r in received {
        map.entry(r.resource().to_owned()).or_default().push(r);
    }
    map
}

// ---------------------------------------------------------------------------------
// Delivery.

#[actix_web::test]
async fn deliveries_carry_the_event_signed_as_the_published_receiver_verifies() {
    let server = TestServer::start_with(local).await;
    let tenant = server.tenant("alice").await;
    let receiver = Receiver::start(always(200)).await;
    let secret = "tutorial-secret-0123456789";
    let body = json!({"name": "tutorial", "uri": receiver.url(), "method": "POST",
                      "event_types": ["agent.*"], "secret": secret});
    let hook = server.post("/v1.0/webhooks", Some(&tenant.token), body).await;
    let hook = hook.expect(201).clone();
    assert_eq!(hook["secret"], secret);
    let id = hook_id(&hook);

    touch_agent(&server, &tenant, "Alice").await;
    let got = receiver.wait_accepted(1).await;
    let request = &got[0];
    assert_eq!(request.header("content-type"), "application/json");
    // Exactly as the tutorial's Flask receiver computes it: hmac.new(secret.encode(),
    // request.data, hashlib.sha256).hexdigest().
    assert_eq!(request.header("x-voipbin-signature"), hmac_hex(secret, &[&request.body]));
    assert!(signed_with(request, secret));
    let t: i64 = request.header("x-voipbin-timestamp").parse().unwrap();
    assert!((t - chrono::Utc::now().timestamp()).abs() < 300);
    assert_eq!(request.header("x-voipbin-event-id"), request.event_id());
    assert_eq!(request.attempt(), 1);

    // The body is the event as SPEC §5 shows it, byte for byte the outbox's rendering.
    assert_eq!(request.event_type(), "agent.updated");
    assert_eq!(request.json["customer_id"], tenant.customer_id.as_str());
    assert_eq!(request.json["data"]["id"], tenant.agent_id.as_str());
    assert_eq!(request.json["data"]["name"], "Alice");
    let agent = tenant.agent_id.clone();
    let events = server.ctx.db.read(move |conn| event::list_for_resource(conn, &agent)).await.unwrap();
    let sent = events.iter().find(|e| e.id.as_str() == request.event_id()).unwrap();
    assert_eq!(request.body, sent.to_json(None).as_bytes());

    // Only events after the webhook was made: not the admin's `agent.created`.
    settled(&server, &id, 1).await;
    let rows = deliveries(&server, &id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].status, rows[0].attempts), (DeliveryStatus::Delivered, 1));

    let log = wait_log(&server, &tenant, &id, 1).await;
    assert_eq!(log.len(), 1);
    let line = &log[0];
    assert_eq!(line["event_id"], request.event_id());
    assert_eq!(line["event_type"], "agent.updated");
    assert_eq!((line["attempt"].as_i64(), line["status_code"].as_i64()), (Some(1), Some(200)));
    assert_eq!(line["status"], "delivered");
    assert!(line["latency_ms"].is_i64() && line["tm_next_retry"].is_null() && line["error"].is_null(), "{line}");

    // The secret is shown at creation only.
    let fetched = server.get(&format!("/v1.0/webhooks/{id}"), Some(&tenant.token)).await;
    assert!(fetched.expect(200).get("secret").is_none());
    assert!(!fetched.text.contains(secret));
    let listed = server.get("/v1.0/webhooks", Some(&tenant.token)).await;
    assert!(!listed.expect(200).to_string().contains(secret));

    let metrics = server.get("/metrics", None).await.text;
    assert!(metrics.contains("callplane_webhook_delivery_duration_seconds_bucket"), "{metrics}");
    assert!(metric(&server, "callplane_webhook_deliveries_total{result=\"delivered\"}").await >= 1.0);
}

#[actix_web::test]
async fn a_failing_receiver_gets_each_event_once_and_in_order_after_retries() {
    let server = TestServer::start_with(local).await;
    let tenant = server.tenant("alice").await;
    // 500 to the first two requests of every event, then 200.
    let receiver = Receiver::start(Arc::new(|_, before| Reply::status(if before < 2 { 500 } else { 200 }))).await;
    let hook = create_hook(&server, &tenant, &receiver.url(), json!(["call.*", "agent.updated"])).await;
    let id = hook_id(&hook);

    let call_id = failing_call(&server, &tenant).await;
    touch_agent(&server, &tenant, "one").await;
    touch_agent(&server, &tenant, "two").await;

    let accepted = receiver.wait_accepted(4).await;
    settled(&server, &id, 4).await;
    let accepted_ids: Vec<&str> = receiver_accepted_ids(&accepted);
    assert_eq!(accepted_ids.len(), accepted_ids.iter().collect::<HashSet<_>>().len(), "each event accepted once");
    assert_eq!(accepted.len(), 4);

    let received = receiver.received();
    let groups = by_resource(&received);
    let call = &groups[&call_id];
    let types: Vec<&str> = call.iter().map(|r| r.event_type()).collect();
    assert_eq!(types, ["call.created", "call.created", "call.created", "call.ended", "call.ended", "call.ended"]);
    let agent = &groups[&tenant.agent_id];
    let names: Vec<&str> = agent.iter().map(|r| r.json["data"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["one", "one", "one", "two", "two", "two"], "a resource's events in order");
    for group in [call, agent] {
        let attempts: Vec<u32> = group.iter().map(|r| r.attempt()).collect();
        assert_eq!(attempts, [1, 2, 3, 1, 2, 3]);
    }

    let rows = deliveries(&server, &id).await;
    assert!(rows.iter().all(|r| r.status == DeliveryStatus::Delivered && r.attempts == 3), "{rows:?}");
    let log = wait_log(&server, &tenant, &id, 12).await;
    let retried: Vec<&Value> = log.iter().filter(|l| l["status"] == "pending").collect();
    assert_eq!(retried.len(), 8);
    assert!(retried.iter().all(|l| l["status_code"] == 500 && l["tm_next_retry"].is_string()));
    assert!(metric(&server, "callplane_webhook_retries_total").await >= 8.0);
}

fn receiver_accepted_ids(accepted: &[Received]) -> Vec<&str> {
    accepted.iter().map(Received::event_id).collect()
}

#[actix_web::test]
async fn retry_after_is_honoured_in_seconds_and_as_an_http_date() {
    let server = TestServer::start_with(local).await;
    let tenant = server.tenant("alice").await;
    let seconds = Receiver::start(Arc::new(|_, before| match before {
        0 => Reply { status: 429, headers: vec![("Retry-After", "3".to_owned())], delay: Duration::ZERO },
        _ => Reply::status(200),
    }))
    .await;
    let date = Receiver::start(Arc::new(|_, before| match before {
        0 => {
            let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(4));
            Reply { status: 503, headers: vec![("Retry-After", at)], delay: Duration::ZERO }
        }
        _ => Reply::status(200),
    }))
    .await;
    let by_seconds = create_hook(&server, &tenant, &seconds.url(), json!(["agent.*"])).await;
    create_hook(&server, &tenant, &date.url(), json!(["agent.*"])).await;
    touch_agent(&server, &tenant, "patience").await;

    // The backoff alone would be at most 1 s (max_backoff_secs = 1).
    for (receiver, at_least) in [(&seconds, Duration::from_secs(3)), (&date, Duration::from_secs(2))] {
        receiver.wait_accepted(1).await;
        let received = receiver.received();
        assert_eq!(received.len(), 2);
        assert_eq!(received[1].attempt(), 2);
        let waited = received[1].at - received[0].at;
        assert!(waited >= at_least, "retried after {waited:?}");
    }
    let id = hook_id(&by_seconds);
    let log = wait_log(&server, &tenant, &id, 2).await;
    let first = log.iter().find(|l| l["attempt"] == 1).unwrap();
    assert_eq!((first["status_code"].as_i64(), first["status"].as_str()), (Some(429), Some("pending")));
    let logged = |field: &str| chrono::DateTime::parse_from_rfc3339(first[field].as_str().unwrap()).unwrap();
    // The line is written a moment after the retry was scheduled from the answer.
    assert!(logged("tm_next_retry") - logged("tm_create") >= chrono::Duration::seconds(2), "{first}");
}

#[actix_web::test]
async fn a_receiver_that_does_not_answer_in_time_is_retried() {
    let server = TestServer::start_with(|s| {
        local(s);
        s.webhook_timeout_ms = 300;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let receiver = Receiver::start(Arc::new(|_, before| match before {
        0 => Reply { status: 200, headers: Vec::new(), delay: Duration::from_secs(3) },
        _ => Reply::status(200),
    }))
    .await;
    let id = hook_id(&create_hook(&server, &tenant, &receiver.url(), json!(["agent.*"])).await);
    touch_agent(&server, &tenant, "slow").await;
    settled(&server, &id, 1).await;
    let received = receiver.received();
    assert_eq!(received.iter().map(Received::attempt).collect::<Vec<_>>(), [1, 2]);
    let log = wait_log(&server, &tenant, &id, 2).await;
    let first = log.iter().find(|l| l["attempt"] == 1).unwrap();
    assert!(first["error"].as_str().unwrap().contains("timeout"), "{first}");
    assert!(first["status_code"].is_null());
    assert_eq!(first["status"], "pending");
    let second = log.iter().find(|l| l["attempt"] == 2).unwrap();
    assert_eq!((second["status_code"].as_i64(), second["status"].as_str()), (Some(200), Some("delivered")));
}

#[actix_web::test]
async fn a_gone_endpoint_is_a_final_failure_shown_in_the_log() {
    let server = TestServer::start_with(local).await;
    let tenant = server.tenant("alice").await;
    let receiver = Receiver::start(always(410)).await;
    let id = hook_id(&create_hook(&server, &tenant, &receiver.url(), json!(["agent.updated"])).await);
    touch_agent(&server, &tenant, "gone").await;
    settled(&server, &id, 1).await;
    // Nothing is pending any more, so nothing will be retried.
    assert_eq!(count(&server, &id, DeliveryStatus::Failed).await, 1);
    assert_eq!(receiver.received().len(), 1);
    let log = wait_log(&server, &tenant, &id, 1).await;
    assert_eq!(log.len(), 1);
    let line = &log[0];
    assert_eq!((line["status_code"].as_i64(), line["status"].as_str()), (Some(410), Some("failed")));
    assert_eq!(line["attempt"], 1);
    assert!(line["tm_next_retry"].is_null());
    assert!(metric(&server, "callplane_webhook_deliveries_total{result=\"failed\"}").await >= 1.0);
}

// ---------------------------------------------------------------------------------
// Durability and isolation.

#[actix_web::test]
async fn pending_deliveries_survive_a_restart_and_all_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let durable = |s: &mut Settings| {
        local(s);
        s.database_url = url.clone();
        s.webhook_max_attempts = 1000;
        s.webhook_breaker_failures = 1000;
    };
    let port = free_port();
    let first = TestServer::start_with(durable).await;
    let tenant = first.tenant("alice").await;
    let uri = format!("http://127.0.0.1:{port}/hook");
    let id = hook_id(&create_hook(&first, &tenant, &uri, json!(["agent.*", "call.*"])).await);
    let call_id = failing_call(&first, &tenant).await;
    for name in ["a", "b", "c"] {
        touch_agent(&first, &tenant, name).await;
    }
    // The receiver is down: the first attempts fail, and everything stays pending.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = deliveries(&first, &id).await;
        if rows.len() == 5 && rows.iter().any(|r| r.attempts >= 1) {
            assert!(rows.iter().all(|r| r.status == DeliveryStatus::Pending), "{rows:?}");
            break;
        }
        assert!(Instant::now() < deadline, "deliveries never failed a first attempt: {rows:?}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await;

    let receiver = Receiver::start_on(port, always(200)).await;
    let second = TestServer::start_with(durable).await;
    settled(&second, &id, 5).await;
    let accepted = receiver.accepted();
    let ids: HashSet<&str> = accepted.iter().map(Received::event_id).collect();
    assert_eq!(ids.len(), 5, "every event arrived: {accepted:?}");
    let groups = by_resource(&accepted);
    let names: Vec<&str> = groups[&tenant.agent_id].iter().map(|r| r.json["data"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let types: Vec<&str> = groups[&call_id].iter().map(|r| r.event_type()).collect();
    assert_eq!(types, ["call.created", "call.ended"]);
    // Enqueued once each, across both processes.
    assert_eq!(deliveries(&second, &id).await.len(), 5);
    second.stop().await;
    receiver.stop().await;
}

#[actix_web::test]
async fn a_dead_endpoint_does_not_hold_up_a_healthy_one() {
    let server = TestServer::start_with(|s| {
        local(s);
        s.webhook_timeout_ms = 10_000;
    })
    .await;
    let tenant = server.tenant("alice").await;
    // Accepts connections (the kernel does) and never answers.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_uri = format!("http://{}/hook", dead.local_addr().unwrap());
    let healthy = Receiver::start(always(200)).await;
    let dead_id = hook_id(&create_hook(&server, &tenant, &dead_uri, json!(["*"])).await);
    create_hook(&server, &tenant, &healthy.url(), json!(["*"])).await;

    failing_call(&server, &tenant).await;
    for i in 0..8 {
        touch_agent(&server, &tenant, &format!("n{i}")).await;
    }
    healthy.wait_accepted(10).await;
    assert!(count(&server, &dead_id, DeliveryStatus::Pending).await > 0, "the dead endpoint is still trying");
    drop(dead);
}

#[actix_web::test]
async fn the_circuit_breaker_opens_and_closes_after_its_cool_down() {
    let server = TestServer::start_with(|s| {
        local(s);
        s.webhook_breaker_failures = 3;
        s.webhook_breaker_cooldown_secs = 2;
        s.webhook_max_attempts = 100;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let requests = Arc::new(Mutex::new(0usize));
    let counter = requests.clone();
    let receiver = Receiver::start(Arc::new(move |_, _| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        Reply::status(if *n <= 3 { 500 } else { 200 })
    }))
    .await;
    create_hook(&server, &tenant, &receiver.url(), json!(["agent.*"])).await;
    touch_agent(&server, &tenant, "flaky").await;

    until("three failed attempts", || (receiver.received().len() >= 3).then_some(())).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "callplane_webhook_breakers{state=\"open\"}").await < 1.0 {
        assert!(Instant::now() < deadline, "the breaker never opened");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let accepted = receiver.wait_accepted(1).await;
    let received = receiver.received();
    assert_eq!(received.len(), 4, "no attempt while open, then one probe");
    assert_eq!(accepted[0].attempt(), 4);
    let quiet = received[3].at - received[2].at;
    assert!(quiet >= Duration::from_secs(2), "the probe came {quiet:?} after the third failure");

    // Closed again: the next event goes out at its first attempt.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "callplane_webhook_breakers{state=\"open\"}").await > 0.0
        || metric(&server, "callplane_webhook_breakers{state=\"half_open\"}").await > 0.0
    {
        assert!(Instant::now() < deadline, "the breaker never closed");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    touch_agent(&server, &tenant, "steady").await;
    let accepted = receiver.wait_accepted(2).await;
    assert_eq!(accepted[1].attempt(), 1);
}

// ---------------------------------------------------------------------------------
// The address guard.

#[actix_web::test]
async fn private_targets_are_refused_at_creation_and_at_delivery() {
    let server = TestServer::start_with(|s| {
        local(s);
        s.webhook_allow_private = false;
    })
    .await;
    let tenant = server.tenant("alice").await;
    for uri in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://192.0.2.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[2001:db8::1]/",
    ] {
        let body = json!({"name": "x", "uri": uri, "event_types": ["*"]});
        let resp = server.post("/v1.0/webhooks", Some(&tenant.token), body).await;
        let error = resp.expect_error(400, "INVALID_ARGUMENT");
        assert!(error["message"].as_str().unwrap().starts_with("uri:"), "{uri}: {error}");
    }

    // A name is checked where it resolves: `localhost` is loopback.
    let receiver = Receiver::start(always(200)).await;
    let uri = format!("http://localhost:{}/hook", receiver.addr.port());
    let id = hook_id(&create_hook(&server, &tenant, &uri, json!(["agent.*"])).await);
    touch_agent(&server, &tenant, "sneaky").await;
    settled(&server, &id, 1).await;
    let log = wait_log(&server, &tenant, &id, 1).await;
    assert_eq!(log[0]["status"], "failed");
    let error = log[0]["error"].as_str().unwrap();
    assert!(error.contains("refused") && error.contains("loopback"), "{error}");
    assert!(log[0]["latency_ms"].is_i64() && log[0]["status_code"].is_null());
    assert!(receiver.received().is_empty(), "nothing was sent");
}

// ---------------------------------------------------------------------------------
// Filters and secrets.

#[actix_web::test]
async fn event_type_patterns_choose_what_each_webhook_gets() {
    let server = TestServer::start_with(local).await;
    let tenant = server.tenant("alice").await;
    let receivers = [
        Receiver::start(always(200)).await,
        Receiver::start(always(200)).await,
        Receiver::start(always(200)).await,
        Receiver::start(always(200)).await,
    ];
    let patterns = [json!(["call.*"]), json!(["*"]), json!(["agent.updated"]), json!(["call.ended", "call.ended"])];
    let mut ids = Vec::new();
    for (receiver, pattern) in receivers.iter().zip(patterns) {
        let hook = create_hook(&server, &tenant, &receiver.url(), pattern).await;
        ids.push(hook_id(&hook));
        if receiver.addr == receivers[3].addr {
            assert_eq!(hook["event_types"], json!(["call.ended"]), "duplicates are dropped");
        }
    }
    failing_call(&server, &tenant).await;
    touch_agent(&server, &tenant, "filtered").await;

    // Everything the others get is enqueued with what `*` gets.
    until("the catch-all's three events", || {
        let types: HashSet<String> = receivers[1].accepted().iter().map(|r| r.event_type().to_owned()).collect();
        ["call.created", "call.ended", "agent.updated"].iter().all(|t| types.contains(*t)).then_some(())
    })
    .await;
    for (id, enqueued) in ids.iter().zip([2, 3, 1, 1]) {
        settled(&server, id, enqueued).await;
    }
    let types = |r: &Receiver| {
        let mut types: Vec<String> = r.accepted().iter().map(|r| r.event_type().to_owned()).collect();
        types.sort();
        types
    };
    assert_eq!(types(&receivers[0]), ["call.created", "call.ended"]);
    assert!(types(&receivers[1]).len() >= 3);
    assert_eq!(types(&receivers[2]), ["agent.updated"]);
    assert_eq!(types(&receivers[3]), ["call.ended"]);
}

#[actix_web::test]
async fn a_rotated_secret_signs_the_next_delivery() {
    let server = TestServer::start_with(local).await;
    let tenant = server.tenant("alice").await;
    let receiver = Receiver::start(always(200)).await;
    let hook = create_hook(&server, &tenant, &receiver.url(), json!(["agent.updated"])).await;
    let generated = hook["secret"].as_str().unwrap().to_owned();
    assert_eq!(generated.len(), 64, "32 random bytes, hex");
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
    let id = hook_id(&hook);
    let rotate = format!("/v1.0/webhooks/{id}/secret");

    touch_agent(&server, &tenant, "first").await;
    let got = receiver.wait_accepted(1).await;
    assert!(signed_with(&got[0], &generated));

    let rotated = server.post(&rotate, Some(&tenant.token), json!({})).await.expect(200).clone();
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(second.len(), 64);
    assert_ne!(second, generated);
    assert_eq!(rotated["id"], hook["id"]);
    touch_agent(&server, &tenant, "second").await;
    let got = receiver.wait_accepted(2).await;
    assert!(signed_with(&got[1], &second));
    assert!(!signed_with(&got[1], &generated));

    let own = "a secret of my own choosing";
    let rotated = server.post(&rotate, Some(&tenant.token), json!({"secret": own})).await;
    assert_eq!(rotated.expect(200)["secret"], own);
    touch_agent(&server, &tenant, "third").await;
    let got = receiver.wait_accepted(3).await;
    assert!(signed_with(&got[2], own));

    server.post(&rotate, Some(&tenant.token), json!({"secret": "short"})).await.expect_error(400, "INVALID_ARGUMENT");
    let fetched = server.get(&format!("/v1.0/webhooks/{id}"), Some(&tenant.token)).await;
    assert!(!fetched.text.contains(own));
}

// ---------------------------------------------------------------------------------
// The API: tenancy, permissions, validation, pagination.

#[actix_web::test]
async fn another_customers_webhook_is_not_found() {
    let server = TestServer::start_with(local).await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    let hook = create_hook(&server, &alice, "https://hooks.example.com/alice", json!(["*"])).await;
    let path = format!("/v1.0/webhooks/{}", hook["id"].as_str().unwrap());
    let bob_token = Some(bob.token.as_str());
    server.get(&path, bob_token).await.expect_error(404, "WEBHOOK_NOT_FOUND");
    server.put(&path, bob_token, json!({"name": "mine"})).await.expect_error(404, "WEBHOOK_NOT_FOUND");
    server.post(&format!("{path}/secret"), bob_token, json!({})).await.expect_error(404, "WEBHOOK_NOT_FOUND");
    server.get(&format!("{path}/deliveries"), bob_token).await.expect_error(404, "WEBHOOK_NOT_FOUND");
    server.delete(&path, bob_token).await.expect_error(404, "WEBHOOK_NOT_FOUND");
    assert_eq!(server.get("/v1.0/webhooks", bob_token).await.expect(200)["result"], json!([]));
    assert_eq!(server.get(&path, Some(&alice.token)).await.expect(200)["name"], "test hook");

    // `webhook.manage` is not an agent's.
    let (_, agent_token) = server.agent_login(&alice.token, "carol", "agent").await;
    server.get("/v1.0/webhooks", Some(&agent_token)).await.expect_error(403, "PERMISSION_DENIED");
    server.get(&path, Some(&agent_token)).await.expect_error(403, "PERMISSION_DENIED");
    let (_, manager_token) = server.agent_login(&alice.token, "dave", "manager").await;
    server.get(&path, Some(&manager_token)).await.expect(200);

    server
        .get(&format!("/v1.0/webhooks/{}", uuid::Uuid::now_v7()), Some(&alice.token))
        .await
        .expect_error(404, "WEBHOOK_NOT_FOUND");
    server.get("/v1.0/webhooks/not-a-uuid", Some(&alice.token)).await.expect_error(400, "INVALID_ARGUMENT");
}

#[actix_web::test]
async fn webhooks_are_validated_updated_listed_and_deleted() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let token = Some(tenant.token.as_str());
    let good = json!({"name": "n", "uri": "https://hooks.example.com/x", "method": "POST", "event_types": ["*"]});
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        (with("name", json!("")), "name"),
        (with("name", json!("x".repeat(256))), "name"),
        (with("uri", json!("ftp://example.com/x")), "uri"),
        (with("uri", json!("not a uri")), "uri"),
        (with("uri", json!("/relative/path")), "uri"),
        (with("uri", json!("http://user:pw@example.com/")), "uri"),
        (with("uri", json!(format!("https://example.com/{}", "x".repeat(2100)))), "uri"),
        (with("method", json!("GET")), "method"),
        (with("event_types", json!([])), "event_types"),
        (with("event_types", json!(["call"])), "event_types"),
        (with("event_types", json!(["call.nope"])), "event_types"),
        (with("event_types", json!(["nope.*"])), "event_types"),
        (with("event_types", json!(["webhook.*"])), "event_types"),
        (with("event_types", json!(["*.created"])), "event_types"),
        (with("secret", json!("too short")), "secret"),
        (without("uri"), "uri"),
        (without("event_types"), "event_types"),
        (without("name"), "name"),
    ];
    for (body, field) in cases {
        let resp = server.post("/v1.0/webhooks", token, body.clone()).await;
        let error = resp.expect_error(400, "INVALID_ARGUMENT");
        assert!(error["message"].as_str().unwrap().contains(field), "{body}: {error}");
    }
    assert_eq!(server.get("/v1.0/webhooks", token).await.expect(200)["result"], json!([]), "nothing was made");

    // `method` defaults to POST; `put` is taken in any case.
    let hook = server.post("/v1.0/webhooks", token, without("method")).await.expect(201).clone();
    assert_eq!(hook["method"], "POST");
    let path = format!("/v1.0/webhooks/{}", hook["id"].as_str().unwrap());
    let changes = json!({"name": "renamed", "detail": "d", "uri": "https://other.example.com/y",
                         "method": "put", "event_types": ["call.ended", "agent.*"]});
    let updated = server.put(&path, token, changes).await.expect(200).clone();
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["uri"], "https://other.example.com/y");
    assert_eq!(updated["method"], "PUT");
    assert_eq!(updated["event_types"], json!(["call.ended", "agent.*"]));
    assert_eq!(server.get(&path, token).await.expect(200), &updated);
    server.put(&path, token, json!({"secret": "0123456789abcdef0123"})).await.expect_error(400, "INVALID_ARGUMENT");
    server.put(&path, token, json!({"event_types": ["call.nope"]})).await.expect_error(400, "INVALID_ARGUMENT");
    server.put(&path, token, json!({"uri": "http://127.0.0.1/"})).await.expect_error(400, "INVALID_ARGUMENT");

    // Both pagination styles.
    for i in 0..4 {
        server.post("/v1.0/webhooks", token, with("name", json!(format!("w{i}")))).await.expect(201);
    }
    let mut seen = Vec::new();
    let mut next = "/v1.0/webhooks?page_size=2".to_owned();
    loop {
        let page = server.get(&next, token).await.expect(200).clone();
        seen.extend(page["result"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap().to_owned()));
        match page["next_page_token"].as_str() {
            Some(t) => next = format!("/v1.0/webhooks?page_size=2&page_token={t}"),
            None => break,
        }
    }
    assert_eq!(seen, ["w3", "w2", "w1", "w0", "renamed"], "newest first");
    let offset = server.get("/v1.0/webhooks?limit=2&offset=2", token).await;
    let names: Vec<&str> =
        offset.expect(200)["result"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["w1", "w0"]);

    let deleted = server.delete(&path, token).await;
    assert_eq!(deleted.expect(200)["name"], "renamed");
    server.get(&path, token).await.expect_error(404, "WEBHOOK_NOT_FOUND");
    server.get(&format!("{path}/deliveries"), token).await.expect_error(404, "WEBHOOK_NOT_FOUND");
    server.delete(&path, token).await.expect_error(404, "WEBHOOK_NOT_FOUND");
}

// ---------------------------------------------------------------------------------
// The tutorial's Flask receiver.

/// Kills the receiver process when the test ends, passing or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn the_published_flask_receiver_verifies_and_accepts_deliveries() {
    let Some(python) = std::env::var_os("CALLPLANE_TEST_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!("SKIPPED: set CALLPLANE_TEST_PYTHON to a python with flask to run the tutorial's webhook receiver");
        return;
    };
    let server = TestServer::start_with(local).await;
    let tenant = server.tenant("alice").await;
    let port = free_port();
    // As the tutorial configures it (Step 3), pointing at the receiver.
    let body = json!({"name": "My Webhook", "uri": format!("http://127.0.0.1:{port}/webhooks/voipbin"),
                      "method": "POST", "event_types": ["call.created", "call.ended", "sms.sent"]});
    let hook = server.post("/v1.0/webhooks", Some(&tenant.token), body).await.expect(201).clone();
    let secret = hook["secret"].as_str().unwrap();

    let received = server.dir().join("received.jsonl");
    let output = std::fs::File::create(server.dir().join("receiver.log")).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial/webhook_receiver.py");
    let mut child = Child(
        std::process::Command::new(&python)
            .arg(&script)
            .env("WEBHOOK_SECRET", secret)
            .env("PORT", port.to_string())
            .env("WEBHOOK_RECEIVED_FILE", &received)
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("CALLPLANE_TEST_PYTHON={python:?} does not run: {e}")),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = std::fs::read_to_string(server.dir().join("receiver.log")).unwrap_or_default();
        assert!(child.0.try_wait().unwrap().is_none(), "the receiver exited: {log}");
        assert!(Instant::now() < deadline, "the receiver never listened: {log}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }

    let call_id = failing_call(&server, &tenant).await;
    let lines = until("two verified deliveries", || {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (lines.len() >= 2).then_some(lines)
    })
    .await;
    let types: Vec<&str> = lines.iter().map(|l| l["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["call.created", "call.ended"]);
    assert!(lines.iter().all(|l| l["data"]["id"] == call_id.as_str() && l["data"]["call_id"] == call_id.as_str()));
    let id = hook_id(&hook);
    settled(&server, &id, 2).await;
    let log = log_of(&server, &tenant, &id).await;
    assert!(log.iter().any(|l| l["status"] == "delivered" && l["status_code"] == 200), "{log:?}");

    // The receiver really checks: a wrong signature is a 403 and is not recorded.
    let client = awc::Client::default();
    let forged = client
        .post(format!("http://127.0.0.1:{port}/webhooks/voipbin"))
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("X-VoIPBIN-Signature", hmac_hex("not the secret", &[b"{}"])))
        .send_body("{}")
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let text = std::fs::read_to_string(&received).unwrap();
    assert_eq!(text.lines().count(), 2);
    drop(child);
}
