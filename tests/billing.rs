#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Billing and agent statistics, the event bus's durable subscribers: charges per
//! started unit, free unanswered calls, the cut-off at zero balance, operator
//! adjustments, and agents' call counts and talk time.

mod common;

use std::time::{Duration, Instant};

use callplane::config::{BillingUnit, Settings};
use callplane_schema::models::event;
use common::{Tenant, TestServer, tel};
use serde_json::{Value, json};

fn quick(settings: &mut Settings) {
    settings.sim_ring_delay_ms = 10;
    settings.sim_answer_delay_ms = 30;
}

/// A server billing per second, and a customer `username` with `balance` micros.
async fn billed_per_second(username: &str, balance: i64) -> (TestServer, Tenant) {
    let server = TestServer::start_with(|s| {
        quick(s);
        s.billing_unit = BillingUnit::Second;
    })
    .await;
    callplane::provision::bootstrap(&server.ctx.db, common::SECRET.as_bytes(), username, common::PASSWORD, balance)
        .await
        .unwrap();
    let token = server.login(username, common::PASSWORD).await;
    let tenant = Tenant {
        customer_id: String::new(),
        agent_id: String::new(),
        username: username.into(),
        token,
        accesskey: String::new(),
    };
    (server, tenant)
}

fn body(destination: Value) -> Value {
    json!({"source": {"type": "tel", "target": "+15551234567"}, "destinations": [destination]})
}

async fn create(server: &TestServer, token: &str, destination: Value) -> String {
    let call = server.post("/v1.0/calls", Some(token), body(destination)).await;
    call.expect(201)["id"].as_str().unwrap().to_owned()
}

/// Polls until `check` returns `Some`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn call_status(server: &TestServer, token: &str, id: &str, status: &str) -> Value {
    eventually(&format!("call {id} to be {status}"), || async {
        let call = server.get(&format!("/v1.0/calls/{id}"), Some(token)).await.expect(200).clone();
        (call["status"] == status).then_some(call)
    })
    .await
}

/// The finished ledger row of a call.
async fn charge_of(server: &TestServer, tenant: &Tenant, call_id: &str) -> Value {
    eventually(&format!("the charge of {call_id}"), || async {
        let rows = server.get("/v1.0/billings", Some(&tenant.token)).await.expect(200).clone();
        rows["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["reference_id"] == call_id && r["status"] == "finished")
            .cloned()
    })
    .await
}

async fn balance(server: &TestServer, tenant: &Tenant) -> i64 {
    server.get("/v1.0/billing_account", Some(&tenant.token)).await.expect(200)["balance"].as_i64().unwrap()
}

fn micros(call: &Value, field: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(call[field].as_str().unwrap()).unwrap().timestamp_micros()
}

#[actix_web::test]
async fn an_answered_call_is_charged_per_started_minute() {
    let server = TestServer::start_with(quick).await;
    let tenant = server.tenant("alice").await;
    let opening = balance(&server, &tenant).await;
    // The far end hangs up 2 s after answering: one started minute.
    let id = create(&server, &tenant.token, tel("+15005550004")).await;
    call_status(&server, &tenant.token, &id, "ended").await;
    let row = charge_of(&server, &tenant, &id).await;
    assert_eq!((row["reference_type"].as_str(), row["units"].as_i64()), (Some("call"), Some(1)));
    assert_eq!((row["rate"].as_i64(), row["amount"].as_i64()), (Some(10_000), Some(-10_000)));
    assert_eq!(row["balance_after"].as_i64(), Some(opening - 10_000));
    assert_eq!(balance(&server, &tenant).await, opening - 10_000);

    let types: Vec<String> = server
        .ctx
        .db
        .read(|conn| event::list_after(conn, 0, 10_000))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type.starts_with("billing."))
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["billing.created", "billing.updated"]);
}

#[actix_web::test]
async fn per_second_billing_rounds_up_the_started_second() {
    let server = TestServer::start_with(|s| {
        quick(s);
        s.billing_unit = BillingUnit::Second;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let id = create(&server, &tenant.token, tel("+15005550004")).await;
    let call = call_status(&server, &tenant.token, &id, "ended").await;
    let row = charge_of(&server, &tenant, &id).await;
    let talk = micros(&call, "tm_end") - micros(&call, "tm_answer");
    let expected_units = (talk + 999_999) / 1_000_000;
    assert!(expected_units >= 2);
    assert_eq!(row["units"].as_i64(), Some(expected_units), "{call}");
    assert_eq!(row["amount"].as_i64(), Some(-expected_units * 10_000));
}

#[actix_web::test]
async fn unanswered_and_free_calls_cost_nothing() {
    let server = TestServer::start_with(quick).await;
    let tenant = server.tenant("alice").await;
    let opening = balance(&server, &tenant).await;
    let busy = create(&server, &tenant.token, tel("+15005550001")).await;
    let fails = create(&server, &tenant.token, tel("+15005550003")).await;
    let free = create(&server, &tenant.token, json!({"type": "extension", "target": "2001"})).await;
    call_status(&server, &tenant.token, &busy, "ended").await;
    call_status(&server, &tenant.token, &fails, "ended").await;
    call_status(&server, &tenant.token, &free, "active").await;
    server.post(&format!("/v1.0/calls/{free}/hangup"), Some(&tenant.token), json!({})).await.expect(200);
    call_status(&server, &tenant.token, &free, "ended").await;
    // A charged call afterwards proves the subscriber has read past the free ones.
    let paid = create(&server, &tenant.token, tel("+15005550004")).await;
    call_status(&server, &tenant.token, &paid, "ended").await;
    charge_of(&server, &tenant, &paid).await;
    let rows = server.get("/v1.0/billings", Some(&tenant.token)).await.expect(200).clone();
    let rows = rows["result"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "only the answered paid call: {rows:?}");
    assert_eq!(balance(&server, &tenant).await, opening - 10_000);
}

#[actix_web::test]
async fn a_call_is_cut_off_when_the_balance_runs_out() {
    // 25,000 micros at 10,000 a second: the call can last two started seconds.
    let (server, tenant) = billed_per_second("frugal", 25_000).await;
    let token = tenant.token.clone();
    let id = create(&server, &token, tel("+15559876543")).await;
    let call = call_status(&server, &token, &id, "ended").await;
    assert_eq!(
        (call["hangup_reason"].as_str(), call["hangup_by"].as_str()),
        (Some("insufficient_balance"), Some("local"))
    );
    let row = charge_of(&server, &tenant, &id).await;
    let left = balance(&server, &tenant).await;
    assert!(left >= -10_000, "never more than one unit below zero: {left}");
    assert_eq!(left, 25_000 + row["amount"].as_i64().unwrap());
    assert!(row["units"].as_i64().unwrap() <= 3, "{row}");
}

#[actix_web::test]
async fn two_calls_ending_at_once_are_both_charged() {
    let server = TestServer::start_with(quick).await;
    let tenant = server.tenant("alice").await;
    concurrent_endings(&server, &tenant).await;
}

/// Two answered calls hung up together: both charges land on the balance.
pub async fn concurrent_endings(server: &TestServer, tenant: &Tenant) {
    let opening = balance(server, tenant).await;
    let a = create(server, &tenant.token, tel("+15559876543")).await;
    let b = create(server, &tenant.token, tel("+15559876544")).await;
    call_status(server, &tenant.token, &a, "active").await;
    call_status(server, &tenant.token, &b, "active").await;
    let (path_a, path_b) = (format!("/v1.0/calls/{a}/hangup"), format!("/v1.0/calls/{b}/hangup"));
    let (ra, rb) = futures_util::join!(
        server.post(&path_a, Some(&tenant.token), json!({})),
        server.post(&path_b, Some(&tenant.token), json!({}))
    );
    ra.expect(200);
    rb.expect(200);
    charge_of(server, tenant, &a).await;
    charge_of(server, tenant, &b).await;
    assert_eq!(balance(server, tenant).await, opening - 20_000);
}

#[actix_web::test]
async fn operators_adjust_balances_and_low_balances_are_announced() {
    let server = TestServer::start_with(|s| {
        quick(s);
        s.billing_balance_low_micros = 9_995_000;
    })
    .await;
    let tenant = server.tenant("alice").await;
    callplane::provision::create_superadmin(&server.ctx.db, "root", common::PASSWORD).await.unwrap();
    let root = server.login("root", common::PASSWORD).await;

    let accounts = server.get(&format!("/v1.0/billing_accounts?customer_id={}", tenant.customer_id), Some(&root)).await;
    let account = accounts.expect(200)["result"][0].clone();
    let path = format!("/v1.0/billing_accounts/{}", account["id"].as_str().unwrap());
    server.get(&path, Some(&root)).await.expect(200);

    let added = server.post(&format!("{path}/balance_add"), Some(&root), json!({"amount": 5_000_000})).await;
    assert_eq!(added.expect(200)["balance"].as_i64(), Some(15_000_000));
    let taken = server.post(&format!("{path}/balance_subtract"), Some(&root), json!({"amount": 5_000_000})).await;
    assert_eq!(taken.expect(200)["balance"].as_i64(), Some(10_000_000));
    server
        .post(&format!("{path}/balance_subtract"), Some(&root), json!({"amount": 20_000_000}))
        .await
        .expect_error(409, "BALANCE_TOO_LOW");
    server
        .post(&format!("{path}/balance_add"), Some(&root), json!({"amount": 0}))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    server
        .post(&format!("{path}/balance_add"), Some(&tenant.token), json!({"amount": 5}))
        .await
        .expect_error(403, "PERMISSION_DENIED");
    server.get("/v1.0/billing_accounts", Some(&tenant.token)).await.expect_error(403, "PERMISSION_DENIED");

    let ledger = server.get("/v1.0/billings", Some(&tenant.token)).await.expect(200).clone();
    let amounts: Vec<i64> =
        ledger["result"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts, [-5_000_000, 5_000_000], "newest first");

    // A charge that takes the balance under the threshold is announced once.
    let id = create(&server, &tenant.token, tel("+15005550004")).await;
    call_status(&server, &tenant.token, &id, "ended").await;
    charge_of(&server, &tenant, &id).await;
    let low = server
        .ctx
        .db
        .read(|conn| event::list_after(conn, 0, 10_000))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "billing.balance_low")
        .count();
    assert_eq!(low, 1);

    // A manager may not read billing.
    let (_, manager) = server.agent_login(&tenant.token, "mia", "manager").await;
    server.get("/v1.0/billing_account", Some(&manager)).await.expect_error(403, "PERMISSION_DENIED");
    server.get("/v1.0/billings", Some(&manager)).await.expect_error(403, "PERMISSION_DENIED");
}

#[actix_web::test]
async fn agent_statistics_follow_the_agents_calls() {
    let server = TestServer::start_with(quick).await;
    let tenant = server.tenant("alice").await;
    let (carol, carol_token) = server.agent_login(&tenant.token, "carol", "agent").await;
    let stats_path = format!("/v1.0/agents/{carol}/stats");
    let empty = server.get(&stats_path, Some(&carol_token)).await.expect(200).clone();
    assert_eq!((empty["active_calls"].as_i64(), empty["calls_today"].as_i64()), (Some(0), Some(0)));

    let to_carol = json!({"type": "agent", "target": carol});
    let mut talk = 0;
    for _ in 0..3 {
        let id = create(&server, &tenant.token, to_carol.clone()).await;
        call_status(&server, &tenant.token, &id, "active").await;
        eventually("an active call in the stats", || async {
            let stats = server.get(&stats_path, Some(&tenant.token)).await.expect(200).clone();
            (stats["active_calls"] == 1).then_some(())
        })
        .await;
        server.post(&format!("/v1.0/calls/{id}/hangup"), Some(&tenant.token), json!({})).await.expect(200);
        talk += call_status(&server, &tenant.token, &id, "ended").await["duration"].as_i64().unwrap();
    }
    // An unanswered call does not count.
    let missed = server
        .post("/v1.0/calls", Some(&tenant.token), json!({"source": to_carol, "destinations": [tel("+15005550003")]}))
        .await;
    call_status(&server, &tenant.token, missed.expect(201)["id"].as_str().unwrap(), "ended").await;

    let stats = eventually("three handled calls", || async {
        let stats = server.get(&stats_path, Some(&carol_token)).await.expect(200).clone();
        (stats["calls_today"] == 3 && stats["active_calls"] == 0).then_some(stats)
    })
    .await;
    assert_eq!(stats["talk_seconds_today"].as_i64(), Some(talk));
    assert_eq!(stats["calls_total"].as_i64(), Some(3));

    let published = server
        .ctx
        .db
        .read(move |conn| event::list_for_resource(conn, &carol))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "agent.stats_updated")
        .count();
    assert_eq!(published, 6, "one per answer and one per end");

    // Another agent may not read carol's statistics; another customer gets a 404.
    let (_, dave_token) = server.agent_login(&tenant.token, "dave", "agent").await;
    server.get(&stats_path, Some(&dave_token)).await.expect_error(403, "PERMISSION_DENIED");
    let bob = server.tenant("bob").await;
    server.get(&stats_path, Some(&bob.token)).await.expect_error(404, "AGENT_NOT_FOUND");
}

#[actix_web::test]
async fn subscribers_resume_from_their_cursor_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let first = TestServer::start_with(|s| {
        quick(s);
        s.database_url = url.clone();
    })
    .await;
    let tenant = first.tenant("alice").await;
    let id = create(&first, &tenant.token, tel("+15005550004")).await;
    call_status(&first, &tenant.token, &id, "ended").await;
    charge_of(&first, &tenant, &id).await;
    let opening = balance(&first, &tenant).await;
    first.stop().await;

    // The same database again: the call is charged once, not again.
    let second = TestServer::start_with(|s| {
        quick(s);
        s.database_url = url.clone();
    })
    .await;
    let token = second.login("alice", common::PASSWORD).await;
    let tenant = Tenant { token, ..tenant };
    let again = create(&second, &tenant.token, tel("+15005550004")).await;
    call_status(&second, &tenant.token, &again, "ended").await;
    charge_of(&second, &tenant, &again).await;
    assert_eq!(balance(&second, &tenant).await, opening - 10_000);
    let rows = second.get("/v1.0/billings", Some(&tenant.token)).await.expect(200).clone();
    assert_eq!(rows["result"].as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn concurrent_calls_cannot_spend_more_than_the_balance() {
    // 35,000 micros: three calls' first seconds at 10,000, and not a fourth.
    let (server, tenant) = billed_per_second("thrifty", 35_000).await;
    let token = tenant.token.clone();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&server, &token, tel("+15559876543")).await);
    }
    let refused = server.post("/v1.0/calls", Some(&token), body(tel("+15559876543"))).await;
    refused.expect_error(402, "INSUFFICIENT_BALANCE");
    let account = server.get("/v1.0/billing_account", Some(&token)).await.expect(200).clone();
    assert_eq!((account["balance"].as_i64(), account["reserved"].as_i64()), (Some(35_000), Some(30_000)));

    for id in &ids {
        let call = call_status(&server, &token, id, "ended").await;
        assert_eq!(call["hangup_reason"], "insufficient_balance", "{call}");
        charge_of(&server, &tenant, id).await;
    }
    let account = server.get("/v1.0/billing_account", Some(&token)).await.expect(200).clone();
    assert!(account["balance"].as_i64().unwrap() >= 0, "the calls together stayed within the balance: {account}");
    assert_eq!(account["reserved"].as_i64(), Some(0), "every hold is released: {account}");
}
