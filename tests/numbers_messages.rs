#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Numbers, incoming calls from the sandbox, and SMS end to end over HTTP: ownership of
//! numbers, routing an incoming call to its number's flow, rejecting calls to numbers
//! nobody here has, per-destination message statuses and events, billing and the
//! balance gate, and tenancy.

mod common;

use std::time::Duration;

use callplane::config::Settings;
use callplane_schema::ids::CustomerId;
use callplane_schema::models::{billing, billing_account, event};
use common::{Tenant, TestServer, poll, str_of, tel};
use serde_json::{Value, json};

fn quick(settings: &mut Settings) {
    settings.sim_ring_delay_ms = 20;
    settings.sim_answer_delay_ms = 80;
    settings.sim_dial_timeout_ms = 5_000;
}

async fn server() -> TestServer {
    TestServer::start_with(quick).await
}

async fn save_flow(server: &TestServer, tenant: &Tenant, actions: Value) -> String {
    let flow = server.post("/v1.0/flows", Some(&tenant.token), json!({"actions": actions})).await;
    str_of(flow.expect(201), "id").to_owned()
}

async fn event_types(server: &TestServer, resource_id: &str) -> Vec<String> {
    let id = resource_id.to_owned();
    let rows = server.ctx.db.read(move |conn| event::list_for_resource(conn, &id)).await.unwrap();
    rows.into_iter().map(|e| e.event_type).collect()
}

async fn balance(server: &TestServer, customer_id: &str) -> i64 {
    let customer: CustomerId = customer_id.parse().unwrap();
    server.ctx.db.read(move |conn| billing_account::get_by_customer(conn, &customer)).await.unwrap().balance
}

#[actix_web::test]
async fn a_number_belongs_to_one_customer() {
    let server = server().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    let flow = save_flow(&server, &alice, json!([{"type": "answer"}])).await;
    let body = json!({"number": "+15550001111", "call_flow_id": flow, "name": "support"});
    let resp = server.post("/v1.0/numbers", Some(&alice.token), body).await;
    let number = resp.expect(201).clone();
    assert_eq!(resp.header("location"), Some(format!("/v1.0/numbers/{}", str_of(&number, "id")).as_str()));
    assert_eq!(number["call_flow_id"], flow.as_str());
    assert!(number["message_flow_id"].is_null());

    // Taken: by anyone, including the owner.
    for tenant in [&bob, &alice] {
        let resp = server.post("/v1.0/numbers", Some(&tenant.token), json!({"number": "+15550001111"})).await;
        resp.expect_error(409, "ALREADY_EXISTS");
    }
    for bad in [json!({"number": "5550001111"}), json!({"number": "+1555"}), json!({})] {
        server.post("/v1.0/numbers", Some(&alice.token), bad).await.expect_error(400, "INVALID_ARGUMENT");
    }
    // Another customer's flow is not a flow of this customer.
    let resp =
        server.post("/v1.0/numbers", Some(&bob.token), json!({"number": "+15550002222", "call_flow_id": flow})).await;
    assert!(resp.expect_error(400, "INVALID_ARGUMENT")["message"].as_str().unwrap().contains("call_flow_id"));

    let path = format!("/v1.0/numbers/{}", str_of(&number, "id"));
    let bob_token = Some(bob.token.as_str());
    server.get(&path, bob_token).await.expect_error(404, "NUMBER_NOT_FOUND");
    server.put(&path, bob_token, json!({"name": "mine"})).await.expect_error(404, "NUMBER_NOT_FOUND");
    server.delete(&path, bob_token).await.expect_error(404, "NUMBER_NOT_FOUND");
    assert_eq!(server.get("/v1.0/numbers", bob_token).await.expect(200)["result"], json!([]));

    let updated = server.put(&path, Some(&alice.token), json!({"call_flow_id": null, "name": "sales"})).await;
    let updated = updated.expect(200);
    assert!(updated["call_flow_id"].is_null());
    assert_eq!((updated["name"].as_str(), updated["number"].as_str()), (Some("sales"), Some("+15550001111")));
    let list = server.get("/v1.0/numbers", Some(&alice.token)).await;
    assert_eq!(list.expect(200)["result"].as_array().unwrap().len(), 1);

    // Released, it is free for another customer.
    server.delete(&path, Some(&alice.token)).await.expect(200);
    server.get(&path, Some(&alice.token)).await.expect_error(404, "NUMBER_NOT_FOUND");
    server.post("/v1.0/numbers", bob_token, json!({"number": "+15550001111"})).await.expect(201);
}

#[actix_web::test]
async fn an_incoming_call_runs_its_numbers_flow() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let flow = save_flow(
        &server,
        &tenant,
        json!([
            {"type": "answer"},
            {"type": "talk", "option": {"text": "Thanks for calling"}},
            {"type": "variable_set", "option": {"key": "caller", "value": "${voipbin.call.source.target}"}},
            {"type": "hangup"},
        ]),
    )
    .await;
    let body = json!({"number": "+15550003333", "call_flow_id": flow});
    server.post("/v1.0/numbers", Some(&tenant.token), body).await.expect(201);

    let incoming = json!({"source": tel("+15557778888"), "destination": tel("+15550003333")});
    let resp = server.post("/v1.0/sandbox/incoming_calls", Some(&tenant.token), incoming).await;
    let call = resp.expect(201).clone();
    let call_id = str_of(&call, "id");
    assert_eq!(resp.header("location"), Some(format!("/v1.0/calls/{call_id}").as_str()));
    assert_eq!((call["direction"].as_str(), call["status"].as_str()), (Some("incoming"), Some("initiating")));
    assert_eq!(call["customer_id"], tenant.customer_id.as_str());
    assert_eq!(call["flow_id"], flow.as_str());

    let ended =
        poll(&server, &tenant, &format!("/v1.0/calls/{call_id}"), "the flow's hang-up", |c| c["status"] == "ended")
            .await;
    assert!(ended["tm_answer"].is_string(), "the flow answered it: {ended}");
    assert_eq!((ended["hangup_by"].as_str(), ended["hangup_reason"].as_str()), (Some("local"), Some("normal")));
    let run = server.get(&format!("/v1.0/activeflows/{}", str_of(&ended, "activeflow_id")), Some(&tenant.token)).await;
    let run = run.expect(200);
    assert_eq!(run["variables"]["caller"], "+15557778888");
    assert_eq!(run["end_reason"], "hangup");
    assert_eq!(
        event_types(&server, call_id).await,
        ["call.created", "call.updated", "call.answered", "call.updated", "call.ended"]
    );
    let incoming = server.get("/v1.0/calls?direction=incoming", Some(&tenant.token)).await;
    assert_eq!(incoming.expect(200)["result"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn an_incoming_call_to_a_number_nobody_here_has_is_rejected_and_bills_no_one() {
    let server = server().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    server.post("/v1.0/numbers", Some(&bob.token), json!({"number": "+15550004444"})).await.expect(201);
    let before = (balance(&server, &alice.customer_id).await, balance(&server, &bob.customer_id).await);
    let last_seq = server.ctx.db.read(event::last_seq).await.unwrap();

    for number in ["+15550009999", "+15550004444"] {
        let incoming = json!({"source": tel("+15557778888"), "destination": tel(number)});
        let resp = server.post("/v1.0/sandbox/incoming_calls", Some(&alice.token), incoming).await;
        resp.expect_error(404, "NUMBER_NOT_FOUND");
    }
    assert_eq!(server.get("/v1.0/calls", Some(&alice.token)).await.expect(200)["result"], json!([]));
    assert_eq!(server.get("/v1.0/calls", Some(&bob.token)).await.expect(200)["result"], json!([]));
    let after = (balance(&server, &alice.customer_id).await, balance(&server, &bob.customer_id).await);
    assert_eq!(before, after);
    assert_eq!(server.ctx.db.read(event::last_seq).await.unwrap(), last_seq, "nothing was written");

    // The sandbox is for the customer's admins.
    let (_, manager) = server.agent_login(&alice.token, "manny", "manager").await;
    let incoming = json!({"source": tel("+15557778888"), "destination": tel("+15550009999")});
    let resp = server.post("/v1.0/sandbox/incoming_calls", Some(&manager), incoming).await;
    resp.expect_error(403, "PERMISSION_DENIED");
    let bad = json!({"source": tel("+15557778888"), "destination": {"type": "sip", "target": "a@b.c"}});
    server.post("/v1.0/sandbox/incoming_calls", Some(&alice.token), bad).await.expect_error(400, "INVALID_ARGUMENT");
}

#[actix_web::test]
async fn a_message_is_billed_per_destination_and_reports_each_status() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let before = balance(&server, &tenant.customer_id).await;
    let body = json!({
        "source": tel("+15551234567"),
        "destinations": [tel("+15557654321"), tel("+15005550003"), tel("+15557654322")],
        "text": "Hello from callplane",
    });
    let resp = server.post("/v1.0/messages", Some(&tenant.token), body).await;
    let message = resp.expect(201).clone();
    let id = str_of(&message, "id");
    assert_eq!(resp.header("location"), Some(format!("/v1.0/messages/{id}").as_str()));
    assert_eq!(message["type"], "sms");
    assert!(message["targets"].as_array().unwrap().iter().all(|t| t["status"] == "pending"));

    // Charged when accepted: one unit per destination at `rates.sms` (8,000 micros).
    assert_eq!(balance(&server, &tenant.customer_id).await, before - 3 * 8_000);
    let message_id = id.to_owned();
    let charge = server
        .ctx
        .db
        .read(move |conn| billing::find_by_reference(conn, billing::ReferenceType::Sms, &message_id))
        .await
        .unwrap()
        .expect("a ledger row");
    assert_eq!((charge.units, charge.rate, charge.amount), (3, 8_000, -24_000));
    assert_eq!(charge.balance_after, before - 24_000);

    let done = poll(&server, &tenant, &format!("/v1.0/messages/{id}"), "every destination settled", |m| {
        m["targets"].as_array().unwrap().iter().all(|t| t["status"] == "delivered" || t["status"] == "failed")
    })
    .await;
    let statuses: Vec<&str> = done["targets"].as_array().unwrap().iter().map(|t| str_of(t, "status")).collect();
    assert_eq!(statuses, ["delivered", "failed", "delivered"], "+15005550003 fails");
    assert_eq!(event_types(&server, id).await, ["sms.created", "sms.sent", "sms.failed", "sms.delivered"]);
    let list = server.get("/v1.0/messages", Some(&tenant.token)).await;
    assert_eq!(list.expect(200)["result"][0]["id"], id);
}

#[actix_web::test]
async fn a_message_the_balance_cannot_cover_is_402_and_leaves_nothing() {
    let server = server().await;
    // Covers one destination (8,000), not two.
    callplane::provision::bootstrap(&server.ctx.db, common::SECRET.as_bytes(), "lean", common::PASSWORD, 10_000)
        .await
        .unwrap();
    let token = server.login("lean", common::PASSWORD).await;
    let last_seq = server.ctx.db.read(event::last_seq).await.unwrap();
    let body = json!({"source": tel("+15551234567"), "destinations": [tel("+15557654321"), tel("+15557654322")],
                      "text": "two"});
    server.post("/v1.0/messages", Some(&token), body).await.expect_error(402, "INSUFFICIENT_BALANCE");
    assert_eq!(server.ctx.db.read(event::last_seq).await.unwrap(), last_seq, "nothing was written");
    let list = server.get("/v1.0/messages", Some(&token)).await;
    assert_eq!(list.expect(200)["result"], json!([]));

    let body = json!({"source": tel("+15551234567"), "destinations": [tel("+15557654321")], "text": "one"});
    server.post("/v1.0/messages", Some(&token), body).await.expect(201);
}

#[actix_web::test]
async fn messages_are_checked_and_another_customers_are_not_found() {
    let server = server().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    let bad = [
        json!({"source": tel("+15551234567"), "destinations": [], "text": "x"}),
        json!({"source": tel("+15551234567"), "destinations": [tel("+15557654321")], "text": ""}),
        json!({"source": tel("+15551234567"), "destinations": [{"type": "sip", "target": "a@b.c"}], "text": "x"}),
        json!({"source": tel("12"), "destinations": [tel("+15557654321")], "text": "x"}),
        json!({"source": tel("+15551234567"), "destinations": [tel("+15557654321")]}),
    ];
    for body in bad {
        server.post("/v1.0/messages", Some(&alice.token), body).await.expect_error(400, "INVALID_ARGUMENT");
    }
    let body = json!({"source": tel("+15551234567"), "destinations": [tel("+15557654321")], "text": "hi"});
    let message = server.post("/v1.0/messages", Some(&alice.token), body).await.expect(201).clone();
    let path = format!("/v1.0/messages/{}", str_of(&message, "id"));
    server.get(&path, Some(&bob.token)).await.expect_error(404, "MESSAGE_NOT_FOUND");
    assert_eq!(server.get("/v1.0/messages", Some(&bob.token)).await.expect(200)["result"], json!([]));
    server.get(&path, Some(&alice.token)).await.expect(200);
}

#[actix_web::test]
async fn messages_a_previous_process_left_on_their_way_are_delivered_after_a_start() {
    use callplane_schema::models::address::{Address, AddressType};
    use callplane_schema::models::message::{self, MessageRow};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let settings = Settings { database_url: url.clone(), ..Settings::default() };
    let db = callplane::open_database(&settings, Duration::ZERO).unwrap();
    let made =
        callplane::provision::bootstrap(&db, common::SECRET.as_bytes(), "alice", common::PASSWORD, 0).await.unwrap();
    let row = MessageRow::new(
        made.customer_id.clone(),
        &Address::new(AddressType::Tel, "+15551234567"),
        &[Address::new(AddressType::Tel, "+15557654321")],
        "sent before the restart".into(),
    );
    let id = row.id.to_string();
    db.write(move |tx| message::insert(tx.conn, &row)).await.unwrap();
    drop(db);

    let server = TestServer::start_with(|s| {
        quick(s);
        s.database_url = url.clone();
    })
    .await;
    let tenant = Tenant {
        customer_id: made.customer_id.to_string(),
        agent_id: made.agent_id.to_string(),
        username: "alice".into(),
        token: server.login("alice", common::PASSWORD).await,
        accesskey: made.accesskey.clone(),
    };
    poll(&server, &tenant, &format!("/v1.0/messages/{id}"), "the delivery", |m| {
        m["targets"][0]["status"] == "delivered"
    })
    .await;
    assert_eq!(event_types(&server, &id).await, ["sms.sent", "sms.delivered"]);
}
