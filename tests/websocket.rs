#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Live events over WebSocket (SPEC §7), with a real WebSocket client against a real
//! daemon: the tutorial's subscription, topics and roles, malformed frames, credentials
//! checked before the upgrade, the heartbeat, a client that stops reading, a thousand
//! sessions at once, shutdown, and the published Python client.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use actix_codec::Framed;
use awc::BoxedSocket;
use awc::ws::{CloseCode, Codec, Frame, Message};
use bytes::Bytes;
use callplane::config::Settings;
use callplane_schema::ids::CustomerId;
use callplane_schema::models::event::{self, NewEvent};
use common::{Tenant, TestServer, tel};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

/// Bound on every wait for a frame; a healthy run takes a fraction of it.
const WAIT: Duration = Duration::from_secs(20);

/// Fast, still ordered: rings at 20 ms, answers at 80 ms.
fn quick(settings: &mut Settings) {
    settings.sim_ring_delay_ms = 20;
    settings.sim_answer_delay_ms = 80;
}

/// A WebSocket client.
struct Client {
    io: Framed<BoxedSocket, Codec>,
}

fn ws_url(server: &TestServer, query: &str) -> String {
    format!("ws://{}/v1.0/ws{query}", server.addr)
}

impl Client {
    /// Connects with `query` (e.g. `?token=…`), which must be accepted.
    async fn connect(server: &TestServer, query: &str) -> Client {
        Client::connect_with(&awc::Client::new(), &ws_url(server, query), None).await
    }

    async fn connect_with(http: &awc::Client, url: &str, bearer: Option<&str>) -> Client {
        let mut request = http.ws(url).max_frame_size(1 << 20);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let (response, io) = request.connect().await.unwrap_or_else(|e| panic!("connecting {url}: {e}"));
        assert_eq!(response.status().as_u16(), 101);
        Client { io }
    }

    async fn send_text(&mut self, text: impl Into<String>) {
        self.io.send(Message::Text(text.into().into())).await.expect("send a frame");
    }

    async fn send_json(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    /// The next frame of any kind.
    async fn next_frame(&mut self) -> Frame {
        match actix_web::rt::time::timeout(WAIT, self.io.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => panic!("protocol error: {e}"),
            Ok(None) => panic!("the server ended the connection"),
            Err(_) => panic!("no frame within {WAIT:?}"),
        }
    }

    /// The next text frame as JSON, answering pings on the way.
    async fn next_json(&mut self) -> Value {
        loop {
            match self.next_frame().await {
                Frame::Text(bytes) => return serde_json::from_slice(&bytes).expect("frames are JSON"),
                Frame::Ping(payload) => self.io.send(Message::Pong(payload)).await.expect("pong"),
                Frame::Pong(_) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Sends a request and returns the answer (ack or error).
    async fn request(&mut self, request: Value) -> Value {
        self.send_json(request).await;
        self.next_json().await
    }

    /// Subscribes and asserts the ack.
    async fn subscribe(&mut self, topics: &[&str]) -> Value {
        let answer = self.request(json!({"type": "subscribe", "topics": topics})).await;
        assert_eq!(answer["type"], "ack", "subscribing to {topics:?}: {answer}");
        answer
    }

    /// The next event frame; fails on anything else.
    async fn next_event(&mut self) -> Value {
        let frame = self.next_json().await;
        assert!(frame["event_type"].is_string(), "expected an event, got {frame}");
        frame
    }

    /// Reads until a close frame, which it returns (frames before it are skipped).
    async fn until_close(&mut self) -> Option<awc::ws::CloseReason> {
        loop {
            if let Frame::Close(reason) = self.next_frame().await {
                return reason;
            }
        }
    }
}

async fn place_call(server: &TestServer, tenant: &Tenant, destination: Value) -> String {
    let body = json!({"source": tel("+15551234567"), "destinations": [destination]});
    let call = server.post("/v1.0/calls", Some(&tenant.token), body).await.expect(201).clone();
    call["id"].as_str().unwrap().to_owned()
}

async fn hang_up(server: &TestServer, tenant: &Tenant, call_id: &str) {
    let resp = server.post(&format!("/v1.0/calls/{call_id}/hangup"), Some(&tenant.token), json!({})).await;
    assert!(resp.status.is_success(), "hangup: {}", resp.text);
}

/// The outbox's events of a resource: (id, type), in commit order.
async fn outbox(server: &TestServer, resource_id: &str) -> Vec<(String, String)> {
    let id = resource_id.to_owned();
    let rows = server.ctx.db.read(move |conn| event::list_for_resource(conn, &id)).await.unwrap();
    rows.into_iter().map(|e| (e.id.to_string(), e.event_type)).collect()
}

/// A series of `/metrics` (e.g. `callplane_ws_sessions`), 0 when absent.
async fn metric(server: &TestServer, series: &str) -> f64 {
    let text = server.get("/metrics", None).await.text;
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Polls a metric until `wanted` holds.
async fn wait_metric(server: &TestServer, series: &str, wanted: impl Fn(f64) -> bool) -> f64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let value = metric(server, series).await;
        if wanted(value) {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "{series} stayed at {value}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn the_tutorial_subscription_gets_a_call_from_creation_to_end_in_order() {
    let server = TestServer::start_with(quick).await;
    let tenant = server.tenant("alice").await;
    let mut ws = Client::connect(&server, &format!("?token={}", tenant.token)).await;
    let topic = format!("customer_id:{}:call:*", tenant.customer_id);
    let ack = ws.subscribe(&[&topic]).await;
    assert_eq!(ack, json!({"type": "ack", "topics": [topic]}));

    let call_id = place_call(&server, &tenant, tel("+15559876543")).await;
    let mut seen = Vec::new();
    for expected in ["call.created", "call.ringing", "call.answered"] {
        let event = ws.next_event().await;
        assert_eq!(event["event_type"], expected, "{event}");
        seen.push(event);
    }
    hang_up(&server, &tenant, &call_id).await;
    // Hanging up goes through `terminating` (call.updated) to call.ended.
    loop {
        let event = ws.next_event().await;
        let ended = event["event_type"] == "call.ended";
        seen.push(event);
        if ended {
            break;
        }
    }
    assert_eq!(seen.last().unwrap()["data"]["status"], "ended");

    for event in &seen {
        // What the published client reads, and the rest of SPEC §5 plus the topic.
        assert_eq!(event["data"]["call_id"], call_id.as_str(), "{event}");
        assert_eq!(event["data"]["id"], call_id.as_str());
        assert_eq!(event["customer_id"], tenant.customer_id.as_str());
        assert_eq!(event["topic"], topic.as_str());
        assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // The very events that were committed, in commit order.
    let pushed: Vec<(String, String)> = seen
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e["event_type"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(pushed, outbox(&server, &call_id).await);
}

#[actix_web::test]
async fn overlapping_subscriptions_push_each_event_once() {
    let server = TestServer::start_with(quick).await;
    let tenant = server.tenant("alice").await;
    let mut ws = Client::connect(&server, &format!("?token={}", tenant.token)).await;
    let cid = &tenant.customer_id;
    let broad = [
        format!("customer_id:{cid}"),
        format!("customer_id:{cid}:*"),
        format!("customer_id:{cid}:call"),
        format!("customer_id:{cid}:call:*"),
        format!("customer_id:{cid}:*:*"),
    ];
    ws.subscribe(&broad.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // Subscribing again to the same topic changes nothing.
    ws.subscribe(&[&broad[3]]).await;

    let call_id = place_call(&server, &tenant, tel("+15559876543")).await;
    let created = ws.next_event().await;
    assert_eq!(created["event_type"], "call.created");
    // The most specific subscription that matched is the one named.
    assert_eq!(created["topic"], broad[3].as_str());

    // One more, naming the call itself: it takes over as the most specific.
    let exact = format!("customer_id:{cid}:call:{call_id}");
    ws.send_json(json!({"type": "subscribe", "topics": [exact]})).await;
    let mut events = vec![created];
    loop {
        let frame = ws.next_json().await;
        if frame["type"] == "ack" {
            break;
        }
        events.push(frame);
    }
    hang_up(&server, &tenant, &call_id).await;
    loop {
        let event = ws.next_event().await;
        let ended = event["event_type"] == "call.ended";
        if ended {
            assert_eq!(event["topic"], exact.as_str());
        }
        events.push(event);
        if ended {
            break;
        }
    }
    let pushed: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_owned(), e["event_type"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(pushed, outbox(&server, &call_id).await, "each event exactly once, in order");
}

#[actix_web::test]
async fn unsubscribing_stops_the_pushes_of_that_topic() {
    let server = TestServer::start_with(|s| {
        s.sim_ring_delay_ms = 20;
        // Long enough that the call is still ringing when it is hung up.
        s.sim_answer_delay_ms = 60_000;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let mut ws = Client::connect(&server, &format!("?token={}", tenant.token)).await;
    let calls = format!("customer_id:{}:call:*", tenant.customer_id);
    let agents = format!("customer_id:{}:agent", tenant.customer_id);
    ws.subscribe(&[&calls, &agents]).await;

    let call_id = place_call(&server, &tenant, tel("+15559876543")).await;
    assert_eq!(ws.next_event().await["event_type"], "call.created");
    ws.send_json(json!({"type": "unsubscribe", "topics": [calls]})).await;
    // Events pushed before the change may still come, but only before its ack.
    loop {
        let frame = ws.next_json().await;
        if frame["type"] == "ack" {
            assert_eq!(frame["topics"], json!([calls]));
            break;
        }
        assert_eq!(frame["data"]["call_id"], call_id.as_str(), "{frame}");
    }

    hang_up(&server, &tenant, &call_id).await;
    let status = json!({"status": "away"});
    server.put(&format!("/v1.0/agents/{}/status", tenant.agent_id), Some(&tenant.token), status).await.expect(200);
    // The call's end was committed first; had it been pushed, it would come first.
    let next = ws.next_event().await;
    assert_eq!(next["event_type"], "agent.status_updated", "{next}");
    assert_eq!(next["topic"], agents.as_str());
    assert_eq!(next["data"]["status"], "away");
    assert!(outbox(&server, &call_id).await.iter().any(|(_, t)| t == "call.ended"));
}

#[actix_web::test]
async fn bad_frames_and_foreign_topics_are_answered_and_the_socket_stays_usable() {
    let server = TestServer::start_with(quick).await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    let mut ws = Client::connect(&server, &format!("?token={}", alice.token)).await;
    let own = format!("customer_id:{}:call:*", alice.customer_id);
    let foreign = format!("customer_id:{}:call:*", bob.customer_id);

    let cases: Vec<(Value, &str, Value)> = vec![
        (json!("{not json"), "INVALID_JSON", json!([])),
        (json!({"type": "hello", "topics": [own]}), "UNKNOWN_TYPE", json!([])),
        (json!({"type": "subscribe"}), "INVALID_MESSAGE", json!([])),
        (json!({"type": "subscribe", "topics": "x"}), "INVALID_MESSAGE", json!([])),
        (json!({"type": "subscribe", "topics": []}), "INVALID_MESSAGE", json!([])),
        (json!([1, 2]), "INVALID_MESSAGE", json!([])),
        (json!({"type": "subscribe", "topics": ["nonsense"]}), "INVALID_TOPIC", json!(["nonsense"])),
        (
            json!({"type": "subscribe", "topics": [own, "customer_id:42:call"]}),
            "INVALID_TOPIC",
            json!(["customer_id:42:call"]),
        ),
        (json!({"type": "subscribe", "topics": [foreign]}), "TOPIC_FORBIDDEN", json!([foreign])),
        (
            json!({"type": "subscribe", "topics": ["customer_id:*:call"]}),
            "TOPIC_FORBIDDEN",
            json!(["customer_id:*:call"]),
        ),
        // Bob's admin is an agent of another customer.
        (
            json!({"type": "subscribe", "topics": [own, format!("agent_id:{}:call", bob.agent_id)]}),
            "TOPIC_FORBIDDEN",
            json!([format!("agent_id:{}:call", bob.agent_id)]),
        ),
        (json!({"type": "unsubscribe", "topics": ["agent_id:x"]}), "INVALID_TOPIC", json!(["agent_id:x"])),
    ];
    for (request, reason, topics) in cases {
        match &request {
            Value::String(raw) => ws.send_text(raw.clone()).await,
            _ => ws.send_json(request.clone()).await,
        }
        let answer = ws.next_json().await;
        assert_eq!(answer["type"], "error", "{request} → {answer}");
        assert_eq!(answer["reason"], reason, "{request} → {answer}");
        assert_eq!(answer["topics"], topics, "{request} → {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ws.io.send(Message::Binary(Bytes::from_static(b"\x00\x01"))).await.unwrap();
    assert_eq!(ws.next_json().await["reason"], "INVALID_MESSAGE");

    // A refused request changed nothing: the valid topics sent with bad ones are not
    // subscribed, so Bob's call and Alice's are both unseen until Alice subscribes.
    let agent_topic = format!("customer_id:{}:agent", alice.customer_id);
    ws.subscribe(&[&agent_topic]).await;
    place_call(&server, &alice, tel("+15559876543")).await;
    place_call(&server, &bob, tel("+15559876543")).await;
    let status = json!({"status": "busy"});
    server.put(&format!("/v1.0/agents/{}/status", alice.agent_id), Some(&alice.token), status).await.expect(200);
    assert_eq!(ws.next_event().await["event_type"], "agent.status_updated");

    // And the socket still works for what is allowed.
    ws.subscribe(&[&own]).await;
    let call_id = place_call(&server, &alice, tel("+15559876543")).await;
    let created = ws.next_event().await;
    assert_eq!(
        (created["event_type"].as_str(), created["data"]["call_id"].as_str()),
        (Some("call.created"), Some(call_id.as_str()))
    );

    // A message over the limit closes the socket with 1009.
    ws.send_text("x".repeat(70 * 1024)).await;
    let reason = ws.until_close().await.expect("a close reason");
    assert_eq!(reason.code, CloseCode::Size);
}

/// The head of a WebSocket upgrade request, for the plain HTTP client.
const UPGRADE: &[(&str, &str)] = &[
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

#[actix_web::test]
async fn credentials_are_checked_before_the_upgrade() {
    let server = TestServer::start_with(quick).await;
    let tenant = server.tenant("alice").await;
    let get = |path: String| {
        let server = &server;
        async move { server.call(actix_web::http::Method::GET, &path, None, UPGRADE, common::Body::None).await }
    };

    for query in ["", "?token=not-a-jwt", "?accesskey=cpk_0000", "?token="] {
        let resp = get(format!("/v1.0/ws{query}")).await;
        resp.expect_error(401, "UNAUTHENTICATED");
        assert!(resp.header("upgrade").is_none(), "{query}: nothing is upgraded");
    }
    // Another signature: 401 too.
    let forged = tenant.token.rsplit_once('.').map(|(head, _)| format!("{head}.AAAA")).unwrap();
    get(format!("/v1.0/ws?token={forged}")).await.expect_error(401, "UNAUTHENTICATED");
    // A WebSocket client sees the refusal as a failed handshake.
    let refused = awc::Client::new().ws(ws_url(&server, "?token=nope")).connect().await;
    assert!(
        matches!(refused, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 401),
        "{:?}",
        refused.map(|(r, _)| r.status())
    );
    // Authenticated but not an upgrade: 400 in the envelope.
    let plain = server.get(&format!("/v1.0/ws?token={}", tenant.token), None).await;
    plain.expect_error(400, "INVALID_ARGUMENT");

    // The three ways in: ?token=, ?accesskey=, the Authorization header.
    let topic = format!("customer_id:{}:call:*", tenant.customer_id);
    let mut by_token = Client::connect(&server, &format!("?token={}", tenant.token)).await;
    let mut by_key = Client::connect(&server, &format!("?accesskey={}", tenant.accesskey)).await;
    let mut by_header = Client::connect_with(&awc::Client::new(), &ws_url(&server, ""), Some(&tenant.token)).await;
    for ws in [&mut by_token, &mut by_key, &mut by_header] {
        ws.subscribe(&[&topic]).await;
    }
    let call_id = place_call(&server, &tenant, tel("+15559876543")).await;
    for ws in [&mut by_token, &mut by_key, &mut by_header] {
        let event = ws.next_event().await;
        assert_eq!(event["data"]["call_id"], call_id.as_str());
    }

    // A super-admin has no customer to follow.
    callplane::provision::create_superadmin(&server.ctx.db, "root", common::PASSWORD).await.unwrap();
    let root = server.login("root", common::PASSWORD).await;
    get(format!("/v1.0/ws?token={root}")).await.expect_error(403, "PERMISSION_DENIED");
}

#[actix_web::test]
async fn an_agent_follows_only_its_own_topics() {
    let server = TestServer::start_with(quick).await;
    let tenant = server.tenant("alice").await;
    let (agent_id, agent_token) = server.agent_login(&tenant.token, "carol", "agent").await;
    let (other_id, _) = server.agent_login(&tenant.token, "dave", "agent").await;
    let mut ws = Client::connect(&server, &format!("?token={agent_token}")).await;

    for topic in [
        format!("customer_id:{}:call:*", tenant.customer_id),
        format!("customer_id:{}", tenant.customer_id),
        format!("agent_id:{other_id}:call"),
        format!("agent_id:{agent_id}:billing"),
    ] {
        let answer = ws.request(json!({"type": "subscribe", "topics": [topic]})).await;
        assert_eq!(
            (answer["type"].as_str(), answer["reason"].as_str()),
            (Some("error"), Some("TOPIC_FORBIDDEN")),
            "{topic}: {answer}"
        );
    }
    let own_calls = format!("agent_id:{agent_id}:call:*");
    let own_self = format!("agent_id:{agent_id}:agent");
    ws.subscribe(&[&own_calls, &own_self]).await;

    // An admin may follow any agent of its customer.
    let mut admin = Client::connect(&server, &format!("?token={}", tenant.token)).await;
    admin.subscribe(&[&format!("agent_id:{agent_id}")]).await;

    // A call that does not involve the agent is not pushed to it; one that rings it is.
    place_call(&server, &tenant, tel("+15559876543")).await;
    place_call(&server, &tenant, json!({"type": "agent", "target": other_id})).await;
    let to_agent = place_call(&server, &tenant, json!({"type": "agent", "target": agent_id})).await;
    for ws in [&mut ws, &mut admin] {
        let created = ws.next_event().await;
        assert_eq!(created["event_type"], "call.created");
        assert_eq!(created["data"]["call_id"], to_agent.as_str());
        assert_eq!(created["data"]["destination"]["target"], agent_id.as_str());
    }
    assert_eq!(ws.next_event().await["topic"], own_calls.as_str());

    // Its own status changes come on its agent topic.
    let status = json!({"status": "away"});
    server.put(&format!("/v1.0/agents/{agent_id}/status"), Some(&agent_token), status).await.expect(200);
    loop {
        let event = ws.next_event().await;
        if event["event_type"] == "agent.status_updated" {
            assert_eq!(event["topic"], own_self.as_str());
            assert_eq!(event["data"]["id"], agent_id.as_str());
            break;
        }
        assert_eq!(event["data"]["call_id"], to_agent.as_str(), "only the agent's call: {event}");
    }

    // A manager does not see billing.
    let (_, manager_token) = server.agent_login(&tenant.token, "erin", "manager").await;
    let mut manager = Client::connect(&server, &format!("?token={manager_token}")).await;
    let billing = format!("customer_id:{}:billing:*", tenant.customer_id);
    let answer = manager.request(json!({"type": "subscribe", "topics": [billing]})).await;
    assert_eq!(answer["reason"], "TOPIC_FORBIDDEN", "{answer}");
    manager.subscribe(&[&format!("customer_id:{}:call", tenant.customer_id)]).await;
}

/// Writes `count` events of about `size` bytes for `customer` straight into the outbox,
/// as one transaction: the bus pushes them as one batch, like a burst of commits.
async fn write_events(server: &TestServer, customer: &CustomerId, count: usize, size: usize) {
    let customer = customer.clone();
    server
        .ctx
        .db
        .write(move |tx| {
            for _ in 0..count {
                let id = uuid::Uuid::now_v7().to_string();
                let data = json!({"id": id, "pad": "x".repeat(size)});
                tx.emit(NewEvent::new("probe.filled", Some(&customer), &id, &data)?)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_dropped_while_the_others_get_every_event() {
    let server = TestServer::start_with(|s| {
        s.ws_queue_frames = 32;
        s.ws_max_dropped = 64;
    })
    .await;
    let description = stall_one_of_two(&server).await;
    let dropped: u64 = description
        .strip_prefix("too slow: ")
        .and_then(|rest| rest.strip_suffix(" events dropped"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{description}"));
    assert!(dropped > 64, "closed only past the limit: {description}");
    assert!(metric(&server, "callplane_ws_events_dropped_total").await >= dropped as f64);
}

#[actix_web::test]
async fn a_client_that_stays_behind_is_dropped_after_the_grace_period() {
    let server = TestServer::start_with(|s| {
        s.ws_queue_frames = 32;
        // Never by count: only by time.
        s.ws_max_dropped = u64::MAX;
        s.ws_slow_grace_ms = 200;
        s.ws_heartbeat_interval_ms = 50;
        s.ws_client_timeout_ms = 600_000;
    })
    .await;
    let description = stall_one_of_two(&server).await;
    assert!(description.starts_with("too slow: behind for 0.2 s"), "{description}");
}

/// Two sessions follow the customer; one never reads. Writes events until the server
/// closes the stalled one for being slow, checks that the reader got every event and
/// the stalled one is gone, and returns the close frame's description.
async fn stall_one_of_two(server: &TestServer) -> String {
    let tenant = server.tenant("alice").await;
    let customer: CustomerId = tenant.customer_id.parse().unwrap();
    let topic = format!("customer_id:{}", tenant.customer_id);
    let mut reader = Client::connect(server, &format!("?token={}", tenant.token)).await;
    let mut stalled = Client::connect(server, &format!("?token={}", tenant.token)).await;
    reader.subscribe(&[&topic]).await;
    stalled.subscribe(&[&topic]).await;
    assert_eq!(metric(server, "callplane_ws_sessions").await, 2.0);

    // 8 KiB events, ten per commit, until the stalled client's socket, its share of the
    // server's buffers and its queue are full and it has lost more than allowed. The
    // reader takes each commit's events before the next.
    let mut written = 0;
    let mut received = HashSet::new();
    while metric(server, r#"callplane_ws_sessions_closed_total{reason="slow"}"#).await < 1.0 {
        assert!(written < 4_000, "the stalled client was never dropped");
        write_events(server, &customer, 10, 8 * 1024).await;
        written += 10;
        while received.len() < written {
            let event = reader.next_event().await;
            assert!(received.insert(event["id"].as_str().unwrap().to_owned()), "pushed twice: {}", event["id"]);
        }
    }
    // One more round after the drop: the reader is still served.
    write_events(server, &customer, 10, 8 * 1024).await;
    written += 10;
    while received.len() < written {
        received.insert(reader.next_event().await["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(received.len(), written, "the reader lost nothing");

    // The stalled session is gone (its queue with it) and the loss was counted.
    wait_metric(server, "callplane_ws_sessions", |n| n == 1.0).await;
    assert!(metric(server, "callplane_ws_events_dropped_total").await > 0.0);
    // Reading again, the stalled client finds what was already on its way, then the
    // reason it was closed.
    let reason = stalled.until_close().await.expect("a close reason");
    assert_eq!(reason.code, CloseCode::Policy);
    reason.description.unwrap_or_default()
}

#[actix_web::test]
async fn the_heartbeat_closes_a_silent_client_and_keeps_an_answering_one() {
    let server = TestServer::start_with(|s| {
        s.ws_heartbeat_interval_ms = 100;
        s.ws_client_timeout_ms = 400;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let mut silent = Client::connect(&server, &format!("?token={}", tenant.token)).await;
    let mut answering = Client::connect(&server, &format!("?token={}", tenant.token)).await;

    // The silent client reads but never answers; the other pongs every ping.
    let mut pings = 0;
    let reason = loop {
        tokio::select! {
            frame = silent.next_frame() => match frame {
                Frame::Ping(_) => pings += 1,
                Frame::Close(reason) => break reason,
                other => panic!("unexpected {other:?}"),
            },
            frame = answering.next_frame() => match frame {
                Frame::Ping(payload) => answering.io.send(Message::Pong(payload)).await.unwrap(),
                other => panic!("unexpected {other:?}"),
            },
        }
    };
    assert!(pings >= 2, "pinged before being closed ({pings})");
    let reason = reason.expect("a close reason");
    assert_eq!(reason.code, CloseCode::Policy);
    assert!(reason.description.unwrap_or_default().starts_with("heartbeat timeout"));

    // The answering client outlived the silent one's timeout and still works.
    answering.subscribe(&[&format!("customer_id:{}", tenant.customer_id)]).await;
    assert_eq!(metric(&server, r#"callplane_ws_sessions_closed_total{reason="heartbeat"}"#).await, 1.0);
    assert_eq!(metric(&server, "callplane_ws_sessions").await, 1.0);
}

#[actix_web::test]
async fn a_revoked_access_key_ends_its_session() {
    let server = TestServer::start_with(|s| {
        s.ws_heartbeat_interval_ms = 50;
        s.ws_client_timeout_ms = 60_000;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let key = server.post("/v1.0/accesskeys", Some(&tenant.token), json!({"name": "dashboard", "expire": 3600})).await;
    let key = key.expect(201).clone();
    let mut by_key = Client::connect(&server, &format!("?accesskey={}", key["token"].as_str().unwrap())).await;
    let mut by_token = Client::connect(&server, &format!("?token={}", tenant.token)).await;
    by_key.subscribe(&[&format!("customer_id:{}", tenant.customer_id)]).await;

    server.delete(&format!("/v1.0/accesskeys/{}", key["id"].as_str().unwrap()), Some(&tenant.token)).await.expect(200);
    let reason = by_key.until_close().await.expect("a close reason");
    assert_eq!(reason.code, CloseCode::Policy);
    assert!(reason.description.unwrap_or_default().starts_with("credentials"));
    // The admin's own session, re-checked as often, stays.
    by_token.subscribe(&[&format!("customer_id:{}", tenant.customer_id)]).await;
    assert_eq!(metric(&server, r#"callplane_ws_sessions_closed_total{reason="revoked"}"#).await, 1.0);
}

#[actix_web::test]
async fn a_thousand_sessions_each_get_the_event() {
    const SESSIONS: usize = 1000;
    // Both ends of every connection live in this process.
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let needed = (SESSIONS as u64) * 2 + 256;
    if soft < needed {
        assert!(hard >= needed, "RLIMIT_NOFILE hard limit {hard} is below the {needed} this test needs");
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, needed, hard).unwrap();
    }
    let server = TestServer::start_with(|s| {
        quick(s);
        s.rate_limit_per_second = 0;
        // Clients not being read for a while must not be taken for silent ones.
        s.ws_client_timeout_ms = 600_000;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let topic = format!("customer_id:{}:call:*", tenant.customer_id);
    let http = awc::Client::builder().connector(awc::Connector::new().limit(0)).finish();
    let url = ws_url(&server, &format!("?token={}", tenant.token));

    let mut clients = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS / 100 {
        let batch = futures_util::future::join_all((0..100).map(|_| async {
            let mut ws = Client::connect_with(&http, &url, None).await;
            ws.subscribe(&[&topic]).await;
            ws
        }))
        .await;
        clients.extend(batch);
    }
    assert_eq!(metric(&server, "callplane_ws_sessions").await, SESSIONS as f64);

    let call_id = place_call(&server, &tenant, tel("+15559876543")).await;
    let created = futures_util::future::join_all(clients.iter_mut().map(|ws| ws.next_event())).await;
    for event in &created {
        assert_eq!(event["event_type"], "call.created");
        assert_eq!(event["data"]["call_id"], call_id.as_str());
    }
    assert_eq!(created.len(), SESSIONS);
}

#[actix_web::test]
async fn stopping_the_daemon_closes_sessions_with_going_away() {
    let server = TestServer::start_with(|s| s.shutdown_grace_secs = 120).await;
    let tenant = server.tenant("alice").await;
    let mut ws = Client::connect(&server, &format!("?token={}", tenant.token)).await;
    ws.subscribe(&[&format!("customer_id:{}", tenant.customer_id)]).await;

    // Well under the grace period: the open socket does not hold the stop up.
    let stop = actix_web::rt::spawn(server.stop());
    let reason = ws.until_close().await.expect("a close reason");
    assert_eq!(reason.code, CloseCode::Away);
    actix_web::rt::time::timeout(Duration::from_secs(60), stop)
        .await
        .expect("the daemon stopped without waiting out the grace period")
        .unwrap();
}

/// Runs the published tutorial client (`examples/tutorial/ws_events.py`) with
/// `CALLPLANE_TEST_PYTHON` while a call is placed, answered and hung up.
#[actix_web::test]
async fn the_tutorial_websocket_client_runs_against_callplane() {
    let Some(python) = std::env::var_os("CALLPLANE_TEST_PYTHON").filter(|p| !p.is_empty()) else {
        eprintln!("SKIPPED: set CALLPLANE_TEST_PYTHON to a python with websocket-client to run the tutorial client");
        return;
    };
    let server = TestServer::start_with(quick).await;
    let tenant = server.tenant("alice").await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial/ws_events.py");
    let mut child = std::process::Command::new(&python)
        .arg(&script)
        .env("CALLPLANE_WS_URL", ws_url(&server, ""))
        .env("CALLPLANE_TOKEN", &tenant.token)
        .env("CALLPLANE_CUSTOMER_ID", &tenant.customer_id)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("CALLPLANE_TEST_PYTHON={python:?} does not run: {e}"));
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stdout = child.stdout.take().unwrap();
    let printed = lines.clone();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            printed.lock().unwrap().push(line);
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });

    // The first line is the server's ack: from then on the subscription is in place.
    let deadline = std::time::Instant::now() + WAIT;
    let first = loop {
        if let Some(line) = lines.lock().unwrap().first() {
            break line.clone();
        }
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the client printed nothing; stderr: {}", errors.join().unwrap());
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    let ack: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(ack["type"], "ack", "{first}");

    let call_id = place_call(&server, &tenant, tel("+15559876543")).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let call = server.get(&format!("/v1.0/calls/{call_id}"), Some(&tenant.token)).await.expect(200).clone();
        if call["status"] == "active" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the call was never answered");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    hang_up(&server, &tenant, &call_id).await;

    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    };
    reader.join().unwrap();
    let printed: Vec<Value> = lines.lock().unwrap().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let stderr = errors.join().unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the client did not exit 0 after call.ended: {status:?}; stderr: {stderr}"
    );
    let types: Vec<&str> = printed.iter().filter_map(|e| e["event_type"].as_str()).collect();
    assert_eq!(
        types,
        ["call.created", "call.ringing", "call.answered", "call.updated", "call.ended"],
        "stderr: {stderr}"
    );
    for event in printed.iter().filter(|e| e["event_type"].is_string()) {
        assert_eq!(event["data"]["call_id"], call_id.as_str());
    }
    assert!(stderr.contains(&format!("Call ended: {call_id}")), "{stderr}");
}
