#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Calls end to end over HTTP on the simulated network: the state machine, the reserved
//! numbers, hang-ups, the balance gate, idempotency, pagination and tenancy.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use callplane::config::Settings;
use callplane_schema::ids::{CallId, CustomerId};
use callplane_schema::models::address::{Address, AddressType};
use callplane_schema::models::call::{self, CallRow, Direction, NewCall};
use callplane_schema::models::event;
use common::{Tenant, TestServer, tel};
use serde_json::{Value, json};

/// Fast, still ordered: rings at 20 ms, answers at 80 ms, gives up ringing at 400 ms.
fn quick(settings: &mut Settings) {
    settings.sim_ring_delay_ms = 20;
    settings.sim_answer_delay_ms = 80;
    settings.sim_dial_timeout_ms = 400;
}

async fn server() -> TestServer {
    TestServer::start_with(quick).await
}

fn call_body(destination: Value) -> Value {
    json!({"source": tel("+15551234567"), "destinations": [destination]})
}

async fn create(server: &TestServer, tenant: &Tenant, destination: Value) -> Value {
    let resp = server.post("/v1.0/calls", Some(&tenant.token), call_body(destination)).await;
    let call = resp.expect(201).clone();
    assert_eq!(resp.header("location"), Some(format!("/v1.0/calls/{}", call["id"].as_str().unwrap()).as_str()));
    assert_eq!(call["status"], "initiating");
    call
}

/// Polls `GET /v1.0/calls/{id}` until the status is `status`.
async fn wait_status(server: &TestServer, tenant: &Tenant, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let call = server.get(&format!("/v1.0/calls/{id}"), Some(&tenant.token)).await.expect(200).clone();
        if call["status"] == status {
            return call;
        }
        assert!(Instant::now() < deadline, "call {id} never became {status}; last seen {call}");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The event types written for a resource, in commit order.
async fn events(server: &TestServer, id: &str) -> Vec<String> {
    let id = id.to_owned();
    let rows = server.ctx.db.read(move |conn| event::list_for_resource(conn, &id)).await.unwrap();
    rows.into_iter().map(|e| e.event_type).collect()
}

fn id(call: &Value) -> &str {
    call["id"].as_str().unwrap()
}

#[actix_web::test]
async fn a_call_rings_then_is_answered_and_each_step_is_an_event() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let call = create(&server, &tenant, tel("+15559876543")).await;
    let active = wait_status(&server, &tenant, id(&call), "active").await;
    assert!(active["tm_ringing"].is_string() && active["tm_answer"].is_string());
    assert!(active["tm_end"].is_null());
    assert_eq!(events(&server, id(&call)).await, ["call.created", "call.ringing", "call.answered"]);

    // The event data is the call as GET shows it, with `call_id`.
    let call_id = id(&call).to_owned();
    let rows = server.ctx.db.read(move |conn| event::list_for_resource(conn, &call_id)).await.unwrap();
    let answered: Value = serde_json::from_str(&rows[2].data).unwrap();
    assert_eq!(answered["call_id"], active["id"]);
    assert_eq!(answered["status"], "active");
}

#[actix_web::test]
async fn a_call_answered_before_it_rings_goes_straight_to_active() {
    let server = TestServer::start_with(|s| {
        s.sim_ring_delay_ms = 200;
        s.sim_answer_delay_ms = 30;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let call = create(&server, &tenant, tel("+15559876543")).await;
    let active = wait_status(&server, &tenant, id(&call), "active").await;
    assert!(active["tm_ringing"].is_null());
    assert_eq!(events(&server, id(&call)).await, ["call.created", "call.answered"]);
}

#[actix_web::test]
async fn the_reserved_numbers_behave_as_documented() {
    let server = server().await;
    let tenant = server.tenant("alice").await;

    let busy = create(&server, &tenant, tel("+15005550001")).await;
    let no_answer = create(&server, &tenant, tel("+15005550002")).await;
    let fails = create(&server, &tenant, tel("+15005550003")).await;
    let remote = create(&server, &tenant, tel("+15005550004")).await;
    let digits = create(&server, &tenant, tel("+15005550005")).await;

    let ended = wait_status(&server, &tenant, id(&busy), "ended").await;
    assert_eq!((ended["hangup_reason"].as_str(), ended["hangup_by"].as_str()), (Some("busy"), Some("remote")));
    assert!(ended["tm_answer"].is_null() && ended["tm_ringing"].is_string());
    assert_eq!(events(&server, id(&busy)).await, ["call.created", "call.ringing", "call.ended"]);

    let ended = wait_status(&server, &tenant, id(&no_answer), "ended").await;
    assert_eq!((ended["hangup_reason"].as_str(), ended["hangup_by"].as_str()), (Some("noanswer"), Some("local")));
    assert!(ended["tm_answer"].is_null());
    assert_eq!(events(&server, id(&no_answer)).await, ["call.created", "call.ringing", "call.updated", "call.ended"]);

    let ended = wait_status(&server, &tenant, id(&fails), "ended").await;
    assert_eq!((ended["hangup_reason"].as_str(), ended["hangup_by"].as_str()), (Some("failed"), Some("remote")));
    assert_eq!(events(&server, id(&fails)).await, ["call.created", "call.ended"]);

    let ended = wait_status(&server, &tenant, id(&remote), "ended").await;
    assert_eq!((ended["hangup_reason"].as_str(), ended["hangup_by"].as_str()), (Some("normal"), Some("remote")));
    assert_eq!(ended["duration"], 2, "the far end hangs up 2 s after answering");
    assert_eq!(events(&server, id(&remote)).await, ["call.created", "call.ringing", "call.answered", "call.ended"]);

    // The digits go to the call's flow (see the flow tests); the call itself stays up.
    wait_status(&server, &tenant, id(&digits), "active").await;
    actix_web::rt::time::sleep(Duration::from_millis(800)).await;
    wait_status(&server, &tenant, id(&digits), "active").await;
}

#[actix_web::test]
async fn hanging_up_from_each_state() {
    // Initiating: ringing only starts after 5 s.
    let slow = TestServer::start_with(|s| {
        s.sim_ring_delay_ms = 5_000;
        s.sim_answer_delay_ms = 10_000;
    })
    .await;
    let tenant = slow.tenant("alice").await;
    let call = create(&slow, &tenant, tel("+15559876543")).await;
    let hung = slow.post(&format!("/v1.0/calls/{}/hangup", id(&call)), Some(&tenant.token), json!({})).await;
    let hung = hung.expect(200);
    assert_eq!((hung["status"].as_str(), hung["hangup_reason"].as_str()), (Some("terminating"), Some("cancel")));
    let ended = wait_status(&slow, &tenant, id(&call), "ended").await;
    assert_eq!(ended["hangup_by"], "local");
    assert_eq!(events(&slow, id(&call)).await, ["call.created", "call.updated", "call.ended"]);

    let server = server().await;
    let tenant = server.tenant("alice").await;

    // Ringing.
    let call = create(&server, &tenant, tel("+15005550002")).await;
    wait_status(&server, &tenant, id(&call), "ringing").await;
    let hung = server.post(&format!("/v1.0/calls/{}/hangup", id(&call)), Some(&tenant.token), json!({})).await;
    assert_eq!(hung.expect(200)["hangup_reason"], "cancel");
    wait_status(&server, &tenant, id(&call), "ended").await;

    // Active, through PATCH.
    let call = create(&server, &tenant, tel("+15559876543")).await;
    wait_status(&server, &tenant, id(&call), "active").await;
    let hung =
        server.patch(&format!("/v1.0/calls/{}", id(&call)), Some(&tenant.token), json!({"status": "ended"})).await;
    assert_eq!(hung.expect(200)["hangup_reason"], "normal");
    let ended = wait_status(&server, &tenant, id(&call), "ended").await;
    assert_eq!(events(&server, id(&call)).await.last().map(String::as_str), Some("call.ended"));

    // Ended: every further change is refused.
    for path in ["hangup", "talk", "hold", "mute"] {
        let resp = server
            .post(&format!("/v1.0/calls/{}/{path}", id(&call)), Some(&tenant.token), json!({"text": "hello"}))
            .await;
        resp.expect_error(409, "CALL_STATE_INVALID");
    }
    server
        .patch(&format!("/v1.0/calls/{}", id(&call)), Some(&tenant.token), json!({"status": "ended"}))
        .await
        .expect_error(409, "CALL_STATE_INVALID");
    assert_eq!(ended["status"], "ended");
}

#[actix_web::test]
async fn two_racing_hangups_give_one_success_one_conflict_and_one_end() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    for _ in 0..5 {
        let call = create(&server, &tenant, tel("+15559876543")).await;
        wait_status(&server, &tenant, id(&call), "active").await;
        let path = format!("/v1.0/calls/{}/hangup", id(&call));
        let (a, b) = futures_util::join!(
            server.post(&path, Some(&tenant.token), json!({})),
            server.post(&path, Some(&tenant.token), json!({}))
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{} / {}", a.text, b.text);
        let conflict = if a.status == 409 { &a } else { &b };
        conflict.expect_error(409, "CALL_STATE_INVALID");
        wait_status(&server, &tenant, id(&call), "ended").await;
        let ended = events(&server, id(&call)).await.iter().filter(|t| *t == "call.ended").count();
        assert_eq!(ended, 1);
    }
}

#[actix_web::test]
async fn states_that_do_not_allow_a_command_answer_409() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let call = create(&server, &tenant, tel("+15005550002")).await;
    wait_status(&server, &tenant, id(&call), "ringing").await;
    let path = format!("/v1.0/calls/{}", id(&call));
    // Talk, hold and mute need an answered call.
    for action in ["talk", "hold", "mute"] {
        server
            .post(&format!("{path}/{action}"), Some(&tenant.token), json!({"text": "hi"}))
            .await
            .expect_error(409, "CALL_STATE_INVALID");
    }
    // Statuses are not set from outside, backwards or forwards.
    for status in ["initiating", "ringing", "active"] {
        server
            .patch(&path, Some(&tenant.token), json!({"status": status}))
            .await
            .expect_error(409, "CALL_STATE_INVALID");
    }
    // Only an ended call can be deleted.
    server.delete(&path, Some(&tenant.token)).await.expect_error(409, "CALL_STATE_INVALID");
    server.post(&format!("{path}/hangup"), Some(&tenant.token), json!({})).await.expect(200);
}

#[actix_web::test]
async fn talk_hold_and_mute_act_on_an_answered_call() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let call = create(&server, &tenant, tel("+15559876543")).await;
    wait_status(&server, &tenant, id(&call), "active").await;
    let path = format!("/v1.0/calls/{}", id(&call));
    let token = Some(tenant.token.as_str());

    server.post(&format!("{path}/talk"), token, json!({"text": "Hello there", "language": "en-US"})).await.expect(200);
    server.post(&format!("{path}/talk"), token, json!({"text": ""})).await.expect_error(400, "INVALID_ARGUMENT");

    assert_eq!(server.post(&format!("{path}/hold"), token, json!({})).await.expect(200)["hold"], true);
    assert_eq!(server.get(&path, token).await.expect(200)["hold"], true, "the cached copy was dropped");
    assert_eq!(server.delete(&format!("{path}/hold"), token).await.expect(200)["hold"], false);

    let muted = server.post(&format!("{path}/mute"), token, json!({"direction": "in"})).await;
    assert_eq!(muted.expect(200)["mute_direction"], "in");
    assert_eq!(server.get(&path, token).await.expect(200)["mute_direction"], "in");
    server
        .post(&format!("{path}/mute"), token, json!({"direction": "sideways"}))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    assert!(server.delete(&format!("{path}/mute"), token).await.expect(200)["mute_direction"].is_null());

    let types = events(&server, id(&call)).await;
    assert_eq!(types.iter().filter(|t| *t == "call.updated").count(), 4, "{types:?}");
}

#[actix_web::test]
async fn deleting_an_ended_call_hides_it() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let call = create(&server, &tenant, tel("+15005550003")).await;
    wait_status(&server, &tenant, id(&call), "ended").await;
    let path = format!("/v1.0/calls/{}", id(&call));
    server.delete(&path, Some(&tenant.token)).await.expect(200);
    server.get(&path, Some(&tenant.token)).await.expect_error(404, "CALL_NOT_FOUND");
    let list = server.get("/v1.0/calls", Some(&tenant.token)).await;
    assert!(list.expect(200)["result"].as_array().unwrap().iter().all(|c| c["id"] != call["id"]));
}

#[actix_web::test]
async fn another_customers_call_is_not_found_on_every_route() {
    let server = server().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    let call = create(&server, &alice, tel("+15559876543")).await;
    wait_status(&server, &alice, id(&call), "active").await;
    // Cached now: a hit must still be refused.
    let path = format!("/v1.0/calls/{}", id(&call));
    let bob_token = Some(bob.token.as_str());
    server.get(&path, bob_token).await.expect_error(404, "CALL_NOT_FOUND");
    server.patch(&path, bob_token, json!({"status": "ended"})).await.expect_error(404, "CALL_NOT_FOUND");
    server.delete(&path, bob_token).await.expect_error(404, "CALL_NOT_FOUND");
    for action in ["hangup", "talk", "hold", "mute"] {
        server
            .post(&format!("{path}/{action}"), bob_token, json!({"text": "x"}))
            .await
            .expect_error(404, "CALL_NOT_FOUND");
    }
    for action in ["hold", "mute"] {
        server.delete(&format!("{path}/{action}"), bob_token).await.expect_error(404, "CALL_NOT_FOUND");
    }
    let list = server.get("/v1.0/calls", bob_token).await;
    assert_eq!(list.expect(200)["result"], json!([]));
    // And alice's call is untouched.
    wait_status(&server, &alice, id(&call), "active").await;
}

#[actix_web::test]
async fn a_create_the_balance_cannot_cover_is_402_and_leaves_nothing() {
    let server = server().await;
    let made = callplane::provision::bootstrap(&server.ctx.db, common::SECRET.as_bytes(), "broke", common::PASSWORD, 0)
        .await
        .unwrap();
    let token = server.login("broke", common::PASSWORD).await;
    let resp = server.post("/v1.0/calls", Some(&token), call_body(tel("+15559876543"))).await;
    resp.expect_error(402, "INSUFFICIENT_BALANCE");

    let customer: CustomerId = made.customer_id.clone();
    let (calls, events) = server
        .ctx
        .db
        .read(move |conn| {
            let page = callplane_schema::page::PageRequest::first(100);
            let calls = call::list(conn, &customer, &call::CallFilter::default(), &page)?.result.len();
            let events =
                event::list_after(conn, 0, 10_000)?.into_iter().filter(|e| e.event_type.starts_with("call.")).count();
            Ok((calls, events))
        })
        .await
        .unwrap();
    assert_eq!((calls, events), (0, 0));

    // Internal destinations cost nothing and go through on an empty balance.
    let free = json!({"type": "extension", "target": "2001"});
    server.post("/v1.0/calls", Some(&token), call_body(free)).await.expect(201);
}

#[actix_web::test]
async fn several_destinations_make_one_call_each() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let body = json!({
        "source": tel("+15551234567"),
        "destinations": [tel("+15559876543"), tel("+15559876544"), {"type": "sip", "target": "bob@example.com"}],
    });
    let resp = server.post("/v1.0/calls", Some(&tenant.token), body).await;
    let result = resp.expect(201)["result"].as_array().unwrap().clone();
    assert_eq!(result.len(), 3);
    for call in &result {
        wait_status(&server, &tenant, id(call), "active").await;
    }
}

#[actix_web::test]
async fn an_idempotency_key_replays_the_first_answer() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let key = [("Idempotency-Key", "order-42:retry")];
    let send = |body: Value| {
        server.call(actix_web::http::Method::POST, "/v1.0/calls", Some(&tenant.token), &key, common::Body::Json(body))
    };
    let first = send(call_body(tel("+15559876543"))).await;
    first.expect(201);
    let again = send(call_body(tel("+15559876543"))).await;
    again.expect(201);
    assert_eq!(first.text, again.text, "the replay is the first answer, byte for byte");
    assert_eq!(first.header("location"), again.header("location"));
    let list = server.get("/v1.0/calls", Some(&tenant.token)).await;
    assert_eq!(list.expect(200)["result"].as_array().unwrap().len(), 1, "nothing was created twice");

    send(call_body(tel("+15559876544"))).await.expect_error(422, "IDEMPOTENCY_KEY_REUSED");

    // Keys belong to a customer.
    let bob = server.tenant("bob").await;
    let resp = server
        .call(
            actix_web::http::Method::POST,
            "/v1.0/calls",
            Some(&bob.token),
            &key,
            common::Body::Json(call_body(tel("+15559876543"))),
        )
        .await;
    assert_ne!(resp.expect(201)["id"], first.json["id"]);

    let bad = [("Idempotency-Key", "spaces are not allowed")];
    server
        .call(
            actix_web::http::Method::POST,
            "/v1.0/calls",
            Some(&tenant.token),
            &bad,
            common::Body::Json(call_body(tel("+15559876543"))),
        )
        .await
        .expect_error(400, "INVALID_ARGUMENT");
}

#[actix_web::test]
async fn both_pagination_styles_walk_calls_sharing_creation_times_without_gaps() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let customer: CustomerId = tenant.customer_id.parse().unwrap();
    // 230 ended calls in five instants, 46 each.
    let base = callplane_schema::time::now();
    let made: HashSet<String> = server
        .ctx
        .db
        .write(move |tx| {
            let mut ids = HashSet::new();
            for i in 0..230 {
                let mut row = CallRow::new(NewCall {
                    customer_id: customer.clone(),
                    direction: Direction::Outgoing,
                    source: Address::new(AddressType::Tel, "+15551234567"),
                    destination: Address::new(AddressType::Tel, "+15559876543"),
                    flow_id: None,
                    actions: "[]".into(),
                    variables: "{}".into(),
                    owner_id: None,
                });
                row.id = CallId::new();
                row.status = call::CallStatus::Ended;
                row.tm_create = base - chrono::Duration::seconds(i % 5);
                call::insert(tx.conn, &row)?;
                ids.insert(row.id.to_string());
            }
            Ok(ids)
        })
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/v1.0/calls?page_size=30&page_token={t}"),
            None => "/v1.0/calls?page_size=30".to_owned(),
        };
        let page = server.get(&path, Some(&tenant.token)).await.expect(200).clone();
        seen.extend(
            page["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["tm_create"].as_str().unwrap().to_owned(), c["id"].as_str().unwrap().to_owned())),
        );
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 230);
    assert_eq!(seen.iter().map(|(_, id)| id.clone()).collect::<HashSet<_>>(), made);
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let mut by_offset = Vec::new();
    let mut offset = 0;
    loop {
        let page = server.get(&format!("/v1.0/calls?limit=25&offset={offset}"), Some(&tenant.token)).await;
        let result = page.expect(200)["result"].as_array().unwrap().clone();
        if result.is_empty() {
            break;
        }
        offset += result.len();
        by_offset.extend(result.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(by_offset.len(), 230);
    assert_eq!(by_offset.into_iter().collect::<HashSet<_>>(), made);

    // Filters.
    let ended = server.get("/v1.0/calls?status=ended&page_size=100", Some(&tenant.token)).await;
    assert_eq!(ended.expect(200)["result"].as_array().unwrap().len(), 100);
    let active = server.get("/v1.0/calls?status=active", Some(&tenant.token)).await;
    assert_eq!(active.expect(200)["result"], json!([]));
    let incoming = server.get("/v1.0/calls?direction=incoming", Some(&tenant.token)).await;
    assert_eq!(incoming.expect(200)["result"], json!([]));
    server.get("/v1.0/calls?status=dancing", Some(&tenant.token)).await.expect_error(400, "INVALID_ARGUMENT");
}

#[actix_web::test]
async fn addresses_are_validated() {
    let server = server().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    let cases = [
        call_body(tel("5559876543")),
        call_body(tel("+1555")),
        call_body(json!({"type": "sip", "target": "no-at-sign"})),
        call_body(json!({"type": "agent", "target": "not-a-uuid"})),
        call_body(json!({"type": "agent", "target": bob.agent_id})),
        call_body(json!({"type": "pigeon", "target": "+15559876543"})),
        json!({"source": tel("+15551234567"), "destinations": []}),
        json!({"source": tel("+15551234567")}),
        json!({"source": tel("+15551234567"), "destinations": [tel("+15559876543")], "variables": {"k": 1}}),
    ];
    for body in cases {
        let resp = server.post("/v1.0/calls", Some(&alice.token), body.clone()).await;
        resp.expect_error(400, "INVALID_ARGUMENT");
        assert!(!resp.json["error"]["message"].as_str().unwrap().is_empty(), "{body}");
    }
    let resp = server.post("/v1.0/calls", Some(&alice.token), call_body(tel("12"))).await;
    assert!(resp.json["error"]["message"].as_str().unwrap().contains("destinations[0].target"), "{}", resp.text);
    // The caller's own agent is a valid destination.
    server
        .post("/v1.0/calls", Some(&alice.token), call_body(json!({"type": "agent", "target": alice.agent_id})))
        .await
        .expect(201);
}

#[actix_web::test]
async fn an_agent_reads_only_its_own_calls() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let (agent_id, agent_token) = server.agent_login(&tenant.token, "carol", "agent").await;
    let own = create(&server, &tenant, json!({"type": "agent", "target": agent_id})).await;
    let other = create(&server, &tenant, tel("+15559876543")).await;

    let list = server.get("/v1.0/calls", Some(&agent_token)).await;
    let ids: Vec<&str> =
        list.expect(200)["result"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id(&own)]);
    server.get(&format!("/v1.0/calls/{}", id(&own)), Some(&agent_token)).await.expect(200);
    server.get(&format!("/v1.0/calls/{}", id(&other)), Some(&agent_token)).await.expect_error(403, "PERMISSION_DENIED");
    server
        .post(&format!("/v1.0/calls/{}/hangup", id(&own)), Some(&agent_token), json!({}))
        .await
        .expect_error(403, "PERMISSION_DENIED");
    server
        .post("/v1.0/calls", Some(&agent_token), call_body(tel("+15559876543")))
        .await
        .expect_error(403, "PERMISSION_DENIED");
}

#[actix_web::test]
async fn calls_left_live_by_a_previous_process_are_ended_as_failed_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    // A database in which a previous process left calls live.
    let customer = {
        let server = TestServer::start_with(|s| s.database_url = url.clone()).await;
        let tenant = server.tenant("alice").await;
        let customer: CustomerId = tenant.customer_id.parse().unwrap();
        let c = customer.clone();
        server
            .ctx
            .db
            .write(move |tx| {
                for status in [call::CallStatus::Initiating, call::CallStatus::Ringing, call::CallStatus::Active] {
                    let mut row = CallRow::new(NewCall {
                        customer_id: c.clone(),
                        direction: Direction::Outgoing,
                        source: Address::new(AddressType::Tel, "+15551234567"),
                        destination: Address::new(AddressType::Tel, "+15559876543"),
                        flow_id: None,
                        actions: "[]".into(),
                        variables: "{}".into(),
                        owner_id: None,
                    });
                    row.status = status;
                    if status == call::CallStatus::Active {
                        row.tm_answer = Some(callplane_schema::time::now());
                    }
                    call::insert(tx.conn, &row)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        server.stop().await;
        customer
    };
    let server = TestServer::start_with(|s| s.database_url = url.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live = server.ctx.db.read(call::list_live).await.unwrap();
        if live.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still live: {live:?}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = server
        .ctx
        .db
        .read(move |conn| {
            call::list(conn, &customer, &call::CallFilter::default(), &callplane_schema::page::PageRequest::first(10))
        })
        .await
        .unwrap();
    assert_eq!(rows.result.len(), 3);
    for row in rows.result {
        assert_eq!(row.hangup_reason, Some(call::HangupReason::Failed));
        assert!(row.tm_end.is_some());
        let types = events(&server, row.id.as_str()).await;
        assert_eq!(types, ["call.ended"]);
    }
}
