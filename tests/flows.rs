#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Call flows end to end over HTTP on the simulated network: saving and checking flows,
//! runs of every kind of action against real calls, variables, the action limit,
//! `webhook_send` against a real receiver, `connect`, stopping a run, and tenancy.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use callplane::config::Settings;
use callplane_schema::models::event;
use common::{Tenant, TestServer, poll, str_of, tel, wait_call};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Fast, still ordered: rings at 20 ms, answers at 80 ms.
fn quick(settings: &mut Settings) {
    settings.sim_ring_delay_ms = 20;
    settings.sim_answer_delay_ms = 80;
    settings.sim_dial_timeout_ms = 5_000;
}

async fn server() -> TestServer {
    TestServer::start_with(quick).await
}

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The run of a call once it has ended.
async fn ended_run(server: &TestServer, tenant: &Tenant, call_id: &str) -> Value {
    let list = poll(server, tenant, &format!("/v1.0/activeflows?call_id={call_id}"), "the run's end", |page| {
        page["result"].as_array().is_some_and(|runs| runs.iter().any(|r| r["status"] == "ended"))
    })
    .await;
    list["result"].as_array().unwrap().iter().find(|r| r["status"] == "ended").unwrap().clone()
}

async fn call_with(server: &TestServer, tenant: &Tenant, destination: &str, extra: Value) -> Value {
    let mut body = json!({"source": tel("+15551234567"), "destinations": [tel(destination)]});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    server.post("/v1.0/calls", Some(&tenant.token), body).await.expect(201).clone()
}

async fn save_flow(server: &TestServer, tenant: &Tenant, actions: Value) -> Value {
    let body = json!({"name": "test flow", "actions": actions});
    server.post("/v1.0/flows", Some(&tenant.token), body).await.expect(201).clone()
}

async fn event_types(server: &TestServer, resource_id: &str) -> Vec<String> {
    let id = resource_id.to_owned();
    let rows = server.ctx.db.read(move |conn| event::list_for_resource(conn, &id)).await.unwrap();
    rows.into_iter().map(|e| e.event_type).collect()
}

#[actix_web::test]
async fn each_refusal_of_a_saved_flow_names_the_action() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let (a, b, nowhere) = (id(), id(), id());
    let cases: Vec<(Value, &str)> = vec![
        (json!([{"id": a, "type": "answer"}, {"id": b, "type": "dance"}]), "type: unknown action type \"dance\""),
        (json!([{"type": "answer"}, {"type": "talk", "option": {"language": "en-US"}}]), "missing field `text`"),
        (json!([{"id": a, "type": "sleep", "option": {"duration": "long"}}]), "invalid type"),
        (json!([{"id": a, "type": "goto", "option": {"target_id": b, "loop_count": "2"}}]), "invalid type"),
        (json!([{"id": a, "type": "answer", "next_id": nowhere}]), "next_id: no action"),
        (json!([{"id": a, "type": "goto", "option": {"target_id": nowhere, "loop_count": 2}}]), "option.target_id"),
        (json!([{"id": a, "type": "branch", "option": {"target_ids": {"1": nowhere}}}]), "option.target_ids"),
        (
            json!([{"id": a, "type": "branch", "option": {"target_ids": {"1": a}, "default_target_id": nowhere}}]),
            "option.default_target_id",
        ),
        (
            json!([{"id": a, "type": "condition_variable",
                    "option": {"condition": "==", "variable": "x", "value": "1", "false_target_id": nowhere}}]),
            "option.false_target_id",
        ),
        (json!([{"id": a, "type": "answer"}, {"id": a, "type": "stop"}]), "used by an earlier action"),
        (json!([{"id": "not-a-uuid", "type": "answer"}]), "id: not a UUID"),
        (json!([{"type": "conference_join", "option": {"conference_id": nowhere}}]), "option.conference_id: no such"),
        (
            json!([{"id": a, "type": "condition_variable", "option": {"condition": "~", "variable": "x", "value": "1",
                 "false_target_id": a}}]),
            "unknown variant `~`",
        ),
    ];
    for (actions, expected) in cases {
        let resp = server.post("/v1.0/flows", Some(&tenant.token), json!({"actions": actions})).await;
        let message = resp.expect_error(400, "INVALID_ARGUMENT")["message"].as_str().unwrap().to_owned();
        assert!(message.contains(expected), "{message:?} should say {expected:?}");
        // The index, and the id when the client gave one.
        let index = if actions.as_array().unwrap().len() == 2 { "actions[1]" } else { "actions[0]" };
        assert!(message.starts_with(index), "{message:?} names {index}");
        let given = actions[if index == "actions[1]" { 1 } else { 0 }]["id"].as_str();
        if let Some(given) = given.filter(|g| uuid::Uuid::parse_str(g).is_ok()) {
            assert!(message.contains(&format!("(id {given})")), "{message:?} names the id {given}");
        }
    }
    let list = server.get("/v1.0/flows", Some(&tenant.token)).await;
    assert_eq!(list.expect(200)["result"], json!([]), "nothing was saved");

    // A good flow gets ids for the actions that had none, and keeps the others.
    let flow =
        save_flow(&server, &tenant, json!([{"type": "answer"}, {"id": a, "type": "talk", "option": {"text": "hi"}}]))
            .await;
    let actions = flow["actions"].as_array().unwrap();
    assert!(uuid::Uuid::parse_str(str_of(&actions[0], "id")).is_ok());
    assert_eq!(actions[1]["id"], a.as_str());
    assert_eq!(actions[1]["option"], json!({"text": "hi", "language": "en-US"}));
    let path = format!("/v1.0/flows/{}", str_of(&flow, "id"));
    assert_eq!(server.get(&path, Some(&tenant.token)).await.expect(200), &flow);

    // An update is checked the same way and changes nothing when refused.
    let bad = json!({"actions": [{"type": "talk"}]});
    server.put(&path, Some(&tenant.token), bad).await.expect_error(400, "INVALID_ARGUMENT");
    assert_eq!(server.get(&path, Some(&tenant.token)).await.expect(200)["actions"], flow["actions"]);
    let renamed = server.put(&path, Some(&tenant.token), json!({"name": "renamed"})).await;
    assert_eq!(renamed.expect(200)["name"], "renamed");

    // Inline actions of a call are checked too, before anything is created.
    let body = json!({"source": tel("+15551234567"), "destinations": [tel("+15559876543")],
                      "actions": [{"type": "sleep", "option": {}}]});
    let resp = server.post("/v1.0/calls", Some(&tenant.token), body).await;
    assert!(resp.expect_error(400, "INVALID_ARGUMENT")["message"].as_str().unwrap().contains("actions[0]"));
    assert_eq!(server.get("/v1.0/calls", Some(&tenant.token)).await.expect(200)["result"], json!([]));

    // Addresses inside actions are addresses.
    let bad = json!([{"type": "connect", "option": {"source": tel("+15551234567"), "destinations": [tel("12")]}}]);
    let resp = server.post("/v1.0/flows", Some(&tenant.token), json!({"actions": bad})).await;
    assert!(resp.expect_error(400, "INVALID_ARGUMENT")["message"].as_str().unwrap().contains("destinations[0]"));

    server.delete(&path, Some(&tenant.token)).await.expect(200);
    server.get(&path, Some(&tenant.token)).await.expect_error(404, "FLOW_NOT_FOUND");
}

#[actix_web::test]
async fn an_ivr_takes_the_branch_of_the_digits_it_receives() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let (sales, other) = (id(), id());
    let flow = save_flow(
        &server,
        &tenant,
        json!([
            {"type": "talk", "option": {"text": "Press 1 2 3 4 then hash"}},
            {"type": "digits_receive", "option": {"duration": 5000, "key": "#", "length": 10}},
            {"type": "branch", "option": {"target_ids": {"1234": sales, "9": other}, "default_target_id": other}},
            {"id": sales, "type": "variable_set", "option": {"key": "department", "value": "sales-${voipbin.call.digits}"}},
            {"type": "hangup", "option": {"reason": "busy"}},
            {"id": other, "type": "variable_set", "option": {"key": "department", "value": "other"}},
            {"type": "hangup"},
        ]),
    )
    .await;
    // +15005550005 answers, then sends 1234# 500 ms later.
    let call = call_with(&server, &tenant, "+15005550005", json!({"flow_id": flow["id"]})).await;
    let call_id = str_of(&call, "id");
    let ended = wait_call(&server, &tenant, call_id, "ended").await;
    assert_eq!(ended["hangup_reason"], "busy", "the hang-up of the matching branch");
    assert_eq!(ended["hangup_by"], "local");
    assert_eq!(ended["flow_id"], flow["id"]);

    let run = ended_run(&server, &tenant, call_id).await;
    assert_eq!(ended["activeflow_id"], run["id"], "the call carries its run");
    assert_eq!(run["variables"]["voipbin.call.digits"], "1234", "the terminating # is not part of the input");
    assert_eq!(run["variables"]["department"], "sales-1234");
    assert_eq!(run["end_reason"], "hangup");
    assert_eq!(run["executed_actions"], 5);
    let types = event_types(&server, str_of(&run, "id")).await;
    assert_eq!(types.first().map(String::as_str), Some("activeflow.created"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("activeflow.ended"), "{types:?}");
    assert!(types.iter().any(|t| t == "activeflow.updated"), "{types:?}");
    assert!(event_types(&server, call_id).await.contains(&"call.updated".to_owned()), "activeflow_id was recorded");
}

#[actix_web::test]
async fn digits_that_arrive_before_digits_receive_count() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    // The digits come 500 ms after the answer, while the flow sleeps.
    let actions = json!([
        {"type": "sleep", "option": {"duration": 1500}},
        {"type": "digits_receive", "option": {"duration": 50, "key": "#"}},
        {"type": "stop"},
    ]);
    let call = call_with(&server, &tenant, "+15005550005", json!({"actions": actions})).await;
    let run = ended_run(&server, &tenant, str_of(&call, "id")).await;
    assert_eq!(run["variables"]["voipbin.call.digits"], "1234");
    assert_eq!(run["end_reason"], "stopped");
    assert_eq!(run["flow_id"], Value::Null, "an inline flow");
    // `stop` ends the run, not the call.
    wait_call(&server, &tenant, str_of(&call, "id"), "active").await;
}

#[actix_web::test]
async fn goto_loops_the_stated_number_of_times_and_variables_substitute() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let top = id();
    let actions = json!([
        {"id": top, "type": "variable_set", "option": {"key": "visits", "value": "${visits}x"}},
        {"type": "goto", "option": {"target_id": top, "loop_count": 3}},
        {"type": "variable_set", "option": {"key": "greeting",
            "value": "Hi ${name}, ${voipbin.call.source.target} calls ${voipbin.call.destination.target} (${nobody})"}},
        {"type": "condition_variable", "option": {"condition": ">=", "variable": "count", "value": 10, "false_target_id": top}},
        {"type": "stop"},
    ]);
    let extra = json!({"actions": actions, "variables": {"name": "Ada", "count": "12"}});
    let call = call_with(&server, &tenant, "+15559876543", extra).await;
    let run = ended_run(&server, &tenant, str_of(&call, "id")).await;
    assert_eq!(run["variables"]["visits"], "xxxx", "once, then three loops");
    assert_eq!(run["variables"]["greeting"], "Hi Ada, +15551234567 calls +15559876543 ()");
    assert_eq!(run["variables"]["name"], "Ada", "the call's variables are the run's");
    // 4 × (variable_set, goto) + variable_set + condition_variable + stop.
    assert_eq!(run["executed_actions"], 11);
    assert_eq!(run["end_reason"], "stopped");
}

#[actix_web::test]
async fn a_run_stops_after_a_thousand_actions() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let top = id();
    let actions = json!([
        {"id": top, "type": "variable_set", "option": {"key": "n", "value": "${n}."}},
        {"type": "goto", "option": {"target_id": top, "loop_count": 1000}},
        {"type": "variable_set", "option": {"key": "escaped", "value": "yes"}},
    ]);
    let call = call_with(&server, &tenant, "+15559876543", json!({"actions": actions})).await;
    let run = ended_run(&server, &tenant, str_of(&call, "id")).await;
    assert_eq!(run["end_reason"], "action_limit");
    assert_eq!(run["executed_actions"], 1000);
    assert_eq!(run["variables"]["n"].as_str().unwrap().len(), 500);
    assert!(run["variables"].get("escaped").is_none());
    wait_call(&server, &tenant, str_of(&call, "id"), "active").await;
}

/// One request the test receiver got: its headers and body.
type Request = (Vec<(String, String)>, Vec<u8>);

/// What the test receiver got.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Request>>>);

async fn hook(req: HttpRequest, body: web::Bytes, received: web::Data<Received>) -> HttpResponse {
    let headers =
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    received.0.lock().unwrap().push((headers, body.to_vec()));
    HttpResponse::Ok().json(json!({"greeting": "hello", "score": 42, "voipbin.call.id": "forged"}))
}

/// A local HTTP receiver answering with a JSON object; its URL.
fn receiver(received: Received) -> String {
    let data = web::Data::new(received);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).route("/hook", web::post().to(hook)))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("http://{addr}/hook")
}

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

#[actix_web::test]
async fn webhook_send_waits_for_the_answer_sets_variables_and_is_signed() {
    let server = TestServer::start_with(|s| {
        quick(s);
        s.webhook_allow_private = true;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let received = Received::default();
    let url = receiver(received.clone());
    let actions = json!([
        {"type": "webhook_send", "option": {"uri": url, "method": "POST", "sync": true,
            "data": "{\"call\": \"${voipbin.call.id}\", \"who\": \"${name}\"}"}},
        {"type": "variable_set", "option": {"key": "echo", "value": "${greeting}-${score}"}},
        {"type": "stop"},
    ]);
    let extra = json!({"actions": actions, "variables": {"name": "Ada"}});
    let call = call_with(&server, &tenant, "+15559876543", extra).await;
    let call_id = str_of(&call, "id");
    let run = ended_run(&server, &tenant, call_id).await;
    assert_eq!(run["variables"]["greeting"], "hello");
    assert_eq!(run["variables"]["score"], "42");
    assert_eq!(run["variables"]["echo"], "hello-42", "set before the flow went on");
    assert!(run["variables"].get("voipbin.call.id").is_none(), "the platform's names cannot be set");

    let (headers, body) = received.0.lock().unwrap().first().cloned().expect("the receiver was called");
    let body_json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body_json, json!({"call": call_id, "who": "Ada"}));
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(header("content-type"), "application/json");
    let secret = server.get("/v1.0/customer/flow_secret", Some(&tenant.token)).await.expect(200)["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(secret.len(), 64);
    assert_eq!(header("x-voipbin-signature"), hmac_hex(&secret, &[&body]), "HMAC-SHA256 of the raw body");
    let t = header("x-voipbin-timestamp");
    assert_eq!(
        header("x-voipbin-signature-v2"),
        format!("t={t},v1={}", hmac_hex(&secret, &[t.as_bytes(), b".", &body]))
    );
    assert_eq!(header("x-voipbin-activeflow-id"), str_of(&run, "id"));

    // A rotated secret signs from then on; another customer has a secret of its own.
    let rotated = server.post("/v1.0/customer/flow_secret", Some(&tenant.token), json!({})).await;
    assert_ne!(rotated.expect(200)["secret"], secret.as_str());
    let bob = server.tenant("bob").await;
    let bobs = server.get("/v1.0/customer/flow_secret", Some(&bob.token)).await;
    assert_ne!(bobs.expect(200)["secret"], rotated.json["secret"]);
}

#[actix_web::test]
async fn webhook_send_to_a_private_address_is_refused_by_default() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    for uri in ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]/x", "http://10.0.0.8/x"] {
        let actions = json!([{"type": "webhook_send", "option": {"uri": uri}}]);
        let resp = server.post("/v1.0/flows", Some(&tenant.token), json!({"actions": actions})).await;
        assert!(resp.expect_error(400, "INVALID_ARGUMENT")["message"].as_str().unwrap().contains("public"), "{uri}");
    }
    save_flow(&server, &tenant, json!([{"type": "webhook_send", "option": {"uri": "https://example.com/hook"}}])).await;
}

#[actix_web::test]
async fn connect_bridges_two_calls_and_either_hanging_up_ends_both() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let connect = |destination: &str| {
        json!({"actions": [
            {"type": "connect", "option": {"source": tel("+15551112222"), "destinations": [tel(destination)]}},
        ]})
    };
    for (peer_number, hang_up_peer) in [("+15559870001", true), ("+15559870002", false)] {
        let call = call_with(&server, &tenant, "+15559876543", connect(peer_number)).await;
        let call_id = str_of(&call, "id").to_owned();
        // The dialled call appears, is answered and bridged.
        let calls = poll(&server, &tenant, "/v1.0/calls?status=active", "both calls up", |page| {
            let result = page["result"].as_array().unwrap();
            result.iter().any(|c| c["id"] == call_id.as_str())
                && result.iter().any(|c| c["destination"]["target"] == peer_number)
        })
        .await;
        let peer =
            calls["result"].as_array().unwrap().iter().find(|c| c["destination"]["target"] == peer_number).unwrap();
        let peer_id = str_of(peer, "id").to_owned();
        assert_eq!(peer["source"]["target"], "+15551112222");
        let run = poll(&server, &tenant, &format!("/v1.0/activeflows?call_id={call_id}"), "the run waits", |page| {
            page["result"][0]["status"] == "running"
        })
        .await;
        let run_id = str_of(&run["result"][0], "id").to_owned();

        let (hung, other) = if hang_up_peer { (&peer_id, &call_id) } else { (&call_id, &peer_id) };
        server.post(&format!("/v1.0/calls/{hung}/hangup"), Some(&tenant.token), json!({})).await.expect(200);
        let other_end = wait_call(&server, &tenant, other, "ended").await;
        assert_eq!(other_end["hangup_by"], "local", "callplane ended the other side");
        wait_call(&server, &tenant, hung, "ended").await;
        let run =
            poll(&server, &tenant, &format!("/v1.0/activeflows/{run_id}"), "the run's end", |r| r["status"] == "ended")
                .await;
        assert_eq!(run["end_reason"], "call_ended");
    }
}

#[actix_web::test]
async fn a_connect_nobody_answers_goes_on_with_the_flow() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let actions = json!([
        {"type": "connect", "option": {"source": tel("+15551112222"),
            "destinations": [tel("+15005550001"), tel("+15005550003")]}},
        {"type": "variable_set", "option": {"key": "after", "value": "connect"}},
        {"type": "stop"},
    ]);
    let call = call_with(&server, &tenant, "+15559876543", json!({"actions": actions})).await;
    let run = ended_run(&server, &tenant, str_of(&call, "id")).await;
    assert_eq!(run["variables"]["after"], "connect");
    wait_call(&server, &tenant, str_of(&call, "id"), "active").await;
}

#[actix_web::test]
async fn stopping_a_run_leaves_its_call_up() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let actions = json!([{"type": "sleep", "option": {"duration": 60000}}, {"type": "hangup"}]);
    let call = call_with(&server, &tenant, "+15559876543", json!({"actions": actions})).await;
    let call_id = str_of(&call, "id");
    let runs = poll(&server, &tenant, &format!("/v1.0/activeflows?call_id={call_id}"), "the run sleeps", |page| {
        page["result"][0]["status"] == "running" && page["result"][0]["executed_actions"] == 1
    })
    .await;
    let path = format!("/v1.0/activeflows/{}", str_of(&runs["result"][0], "id"));
    let stopped = server.post(&format!("{path}/stop"), Some(&tenant.token), json!({})).await;
    let stopped = stopped.expect(200).clone();
    assert_eq!((stopped["status"].as_str(), stopped["end_reason"].as_str()), (Some("ended"), Some("stopped")));
    assert!(stopped["tm_end"].is_string());
    assert_eq!(server.get(&path, Some(&tenant.token)).await.expect(200), &stopped, "committed before the answer");
    // Again: the run as it ended.
    let again = server.post(&format!("{path}/stop"), Some(&tenant.token), json!({})).await;
    assert_eq!(again.expect(200), &stopped);
    wait_call(&server, &tenant, call_id, "active").await;
}

#[actix_web::test]
async fn message_send_sends_a_billed_message() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let actions = json!([
        {"type": "message_send", "option": {"source": tel("+15551234567"),
            "destinations": [tel("+15557654321")], "text": "Your code is ${code}"}},
        {"type": "stop"},
    ]);
    let extra = json!({"actions": actions, "variables": {"code": "4711"}});
    let call = call_with(&server, &tenant, "+15559876543", extra).await;
    ended_run(&server, &tenant, str_of(&call, "id")).await;
    let messages = server.get("/v1.0/messages", Some(&tenant.token)).await;
    let messages = messages.expect(200)["result"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["text"], "Your code is 4711");
    assert_eq!(messages[0]["targets"][0]["destination"]["target"], "+15557654321");
}

#[actix_web::test]
async fn another_customers_flows_and_runs_are_not_found() {
    let server = server().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    let flow = save_flow(&server, &alice, json!([{"type": "sleep", "option": {"duration": 60000}}])).await;
    let path = format!("/v1.0/flows/{}", str_of(&flow, "id"));
    let bob_token = Some(bob.token.as_str());
    server.get(&path, bob_token).await.expect_error(404, "FLOW_NOT_FOUND");
    server.put(&path, bob_token, json!({"name": "mine"})).await.expect_error(404, "FLOW_NOT_FOUND");
    server.delete(&path, bob_token).await.expect_error(404, "FLOW_NOT_FOUND");
    assert_eq!(server.get("/v1.0/flows", bob_token).await.expect(200)["result"], json!([]));
    // Bob cannot run Alice's flow on his calls.
    let body = json!({"source": tel("+15551234567"), "destinations": [tel("+15559876543")], "flow_id": flow["id"]});
    let resp = server.post("/v1.0/calls", bob_token, body).await;
    assert!(resp.expect_error(400, "INVALID_ARGUMENT")["message"].as_str().unwrap().contains("flow_id"));

    let call = call_with(&server, &alice, "+15559876543", json!({"flow_id": flow["id"]})).await;
    let runs = poll(&server, &alice, &format!("/v1.0/activeflows?call_id={}", str_of(&call, "id")), "a run", |p| {
        p["result"][0]["status"] == "running"
    })
    .await;
    let run_path = format!("/v1.0/activeflows/{}", str_of(&runs["result"][0], "id"));
    server.get(&run_path, bob_token).await.expect_error(404, "ACTIVEFLOW_NOT_FOUND");
    server.post(&format!("{run_path}/stop"), bob_token, json!({})).await.expect_error(404, "ACTIVEFLOW_NOT_FOUND");
    assert_eq!(server.get("/v1.0/activeflows", bob_token).await.expect(200)["result"], json!([]));
    assert_eq!(server.get(&run_path, Some(&alice.token)).await.expect(200)["status"], "running", "untouched");
}

#[actix_web::test]
async fn runs_a_previous_process_left_running_end_as_interrupted() {
    use callplane_schema::ids::{CallId, CustomerId};
    use callplane_schema::models::activeflow::{self, ActiveflowRow};

    // A database in which a process stopped in the middle of a run.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let settings = Settings { database_url: url.clone(), ..Settings::default() };
    let db = callplane::open_database(&settings, Duration::ZERO).unwrap();
    let made =
        callplane::provision::bootstrap(&db, common::SECRET.as_bytes(), "alice", common::PASSWORD, 0).await.unwrap();
    let customer: CustomerId = made.customer_id.clone();
    let row = ActiveflowRow::new(customer, CallId::new(), None, &[], &Default::default());
    let run_id = row.id.to_string();
    db.write(move |tx| activeflow::insert(tx.conn, &row)).await.unwrap();
    drop(db);

    let server = TestServer::start_with(|s| {
        quick(s);
        s.database_url = url.clone();
    })
    .await;
    let token = server.login("alice", common::PASSWORD).await;
    let run = server.get(&format!("/v1.0/activeflows/{run_id}"), Some(&token)).await;
    let run = run.expect(200);
    assert_eq!((run["status"].as_str(), run["end_reason"].as_str()), (Some("ended"), Some("interrupted")));
    assert_eq!(event_types(&server, &run_id).await, ["activeflow.ended"]);
}

#[actix_web::test]
async fn a_talk_cut_short_lets_the_flow_go_on() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    // A thousand words: twenty seconds of simulated speech.
    let actions = json!([
        {"type": "talk", "option": {"text": "w ".repeat(1000)}},
        {"type": "variable_set", "option": {"key": "after", "value": "talk"}},
        {"type": "stop"},
    ]);
    let call = call_with(&server, &tenant, "+15559876543", json!({"actions": actions})).await;
    let call_id = str_of(&call, "id");
    poll(&server, &tenant, &format!("/v1.0/activeflows?call_id={call_id}"), "the talk", |page| {
        page["result"][0]["status"] == "running" && page["result"][0]["executed_actions"] == 1
    })
    .await;
    // Speech through the API replaces the flow's.
    let talk = json!({"text": "An announcement"});
    server.post(&format!("/v1.0/calls/{call_id}/talk"), Some(&tenant.token), talk).await.expect(200);
    let run = ended_run(&server, &tenant, call_id).await;
    assert_eq!(run["variables"]["after"], "talk");
}
