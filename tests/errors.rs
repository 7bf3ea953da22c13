#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Errors as clients see them (SPEC §2 and §3): every refusal in the envelope
//! `{"error": {"status", "reason", "message", "request_id"}}`, with the right HTTP code.

mod common;

use actix_web::http::Method;
use callplane::auth::jwt::{Claims, Jwt};
use callplane_schema::ids::{AgentId, CustomerId};
use callplane_schema::models::agent::Role;
use common::{Body, PASSWORD, SECRET, TestServer};
use serde_json::json;

#[actix_web::test]
async fn no_credentials_is_unauthenticated() {
    let server = TestServer::start().await;
    let resp = server.get("/v1.0/me", None).await;
    let error = resp.expect_error(401, "UNAUTHENTICATED");
    assert_eq!(error["status"], "UNAUTHENTICATED");

    let resp = server.call(Method::GET, "/v1.0/agents", None, &[("Authorization", "Basic dTpw")], Body::None).await;
    resp.expect_error(401, "UNAUTHENTICATED");
    let resp = server.get("/v1.0/agents", Some("not-a-jwt")).await;
    resp.expect_error(401, "UNAUTHENTICATED");
}

fn claims(agent_id: &str, customer_id: &str, role: Role, exp_from_now: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: agent_id.to_owned(),
        customer_id: Some(customer_id.parse::<CustomerId>().unwrap()),
        agent_id: agent_id.parse::<AgentId>().unwrap(),
        role,
        iat: now - 7200,
        exp: now + exp_from_now,
    }
}

#[actix_web::test]
async fn expired_forged_and_unsigned_tokens_are_unauthenticated() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let ours = Jwt::new(SECRET.as_bytes(), 3600);

    // The same claims, validly signed and unexpired, pass: the refusals below are for
    // the one thing each changes.
    let valid = ours.sign(&claims(&tenant.agent_id, &tenant.customer_id, Role::Admin, 3600)).unwrap();
    server.get("/v1.0/me", Some(&valid)).await.expect(200);

    let expired = ours.sign(&claims(&tenant.agent_id, &tenant.customer_id, Role::Admin, -3600)).unwrap();
    server.get("/v1.0/me", Some(&expired)).await.expect_error(401, "UNAUTHENTICATED");

    let forged = Jwt::new(b"someone else's secret, 32 bytes long at least", 3600)
        .sign(&claims(&tenant.agent_id, &tenant.customer_id, Role::Admin, 3600))
        .unwrap();
    server.get("/v1.0/me", Some(&forged)).await.expect_error(401, "UNAUTHENTICATED");

    // alg: none, with valid claims and no signature.
    let payload = valid.split('.').nth(1).unwrap();
    let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    for unsigned in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
        server.get("/v1.0/me", Some(&unsigned)).await.expect_error(401, "UNAUTHENTICATED");
    }

    // A valid signature over an agent that does not exist.
    let ghost = ours.sign(&claims(AgentId::new().as_str(), &tenant.customer_id, Role::Admin, 3600)).unwrap();
    server.get("/v1.0/me", Some(&ghost)).await.expect_error(401, "UNAUTHENTICATED");
}

#[actix_web::test]
async fn revoked_and_expired_access_keys_are_unauthenticated() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;

    let created = server.post("/v1.0/accesskeys", Some(&tenant.token), json!({"name": "ci"})).await;
    let created = created.expect(201);
    let key = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    server.get("/v1.0/me", Some(&key)).await.expect(200);
    server.delete(&format!("/v1.0/accesskeys/{id}"), Some(&tenant.token)).await.expect(200);
    server.get("/v1.0/me", Some(&key)).await.expect_error(401, "UNAUTHENTICATED");
    server.get(&format!("/v1.0/me?accesskey={key}"), None).await.expect_error(401, "UNAUTHENTICATED");

    // A key whose expiry has passed, written straight into the database.
    let expired = callplane::auth::accesskey::generate();
    let mut row = callplane::auth::accesskey::row(
        &tenant.customer_id.parse().unwrap(),
        &expired,
        "expired".into(),
        String::new(),
        60,
    );
    row.tm_expire = Some(callplane_schema::time::now() - chrono::Duration::hours(1));
    server.ctx.db.write(move |tx| callplane_schema::models::accesskey::insert(tx.conn, &row)).await.unwrap();
    server.get("/v1.0/me", Some(&expired)).await.expect_error(401, "UNAUTHENTICATED");

    // Well-formed but unknown.
    let unknown = callplane::auth::accesskey::generate();
    server.get("/v1.0/me", Some(&unknown)).await.expect_error(401, "UNAUTHENTICATED");
}

#[actix_web::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let server = TestServer::start().await;
    server.tenant("alice").await;

    let wrong = server.post("/auth/login", None, json!({"username": "alice", "password": "not the password"})).await;
    let unknown = server.post("/auth/login", None, json!({"username": "nobody", "password": "not the password"})).await;
    wrong.expect_error(401, "INVALID_CREDENTIALS");
    unknown.expect_error(401, "INVALID_CREDENTIALS");
    let strip = |mut v: serde_json::Value| {
        v["error"].as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(wrong.json.clone()), strip(unknown.json.clone()));
    assert_eq!(wrong.header("content-type"), unknown.header("content-type"));
    assert_ne!(wrong.header("x-request-id"), unknown.header("x-request-id"));
}

#[actix_web::test]
async fn another_customers_agent_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    let bobs_agent = server.create_agent(&bob.token, "bob-agent", "agent").await;
    let id = bobs_agent["id"].as_str().unwrap();

    for token in [&alice.token, &alice.accesskey] {
        let path = format!("/v1.0/agents/{id}");
        server.get(&path, Some(token)).await.expect_error(404, "AGENT_NOT_FOUND");
        server.put(&path, Some(token), json!({"name": "mine now"})).await.expect_error(404, "AGENT_NOT_FOUND");
        server.delete(&path, Some(token)).await.expect_error(404, "AGENT_NOT_FOUND");
        let status = format!("{path}/status");
        server.put(&status, Some(token), json!({"status": "available"})).await.expect_error(404, "AGENT_NOT_FOUND");
    }
    // Bob's admin is equally invisible, and Bob's agent is untouched.
    server
        .get(&format!("/v1.0/agents/{}", bob.agent_id), Some(&alice.token))
        .await
        .expect_error(404, "AGENT_NOT_FOUND");
    let still = server.get(&format!("/v1.0/agents/{id}"), Some(&bob.token)).await;
    assert_eq!(still.expect(200)["name"], "bob-agent");
    // A list shows only the caller's own.
    let list = server.get("/v1.0/agents", Some(&alice.token)).await;
    let ids: Vec<&str> =
        list.expect(200)["result"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [alice.agent_id.as_str()]);
}

#[actix_web::test]
async fn the_agent_role_reads_itself_and_sets_its_own_status_only() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let (own_id, agent) = server.agent_login(&tenant.token, "alice-agent", "agent").await;
    let other = server.create_agent(&tenant.token, "alice-agent-2", "agent").await;
    let other_id = other["id"].as_str().unwrap();

    let write = server
        .post("/v1.0/agents", Some(&agent), json!({"username": "sneaky", "password": PASSWORD, "role": "agent"}))
        .await;
    let error = write.expect_error(403, "PERMISSION_DENIED");
    assert_eq!(error["status"], "PERMISSION_DENIED");
    server.get(&format!("/v1.0/agents/{other_id}"), Some(&agent)).await.expect_error(403, "PERMISSION_DENIED");
    server.get("/v1.0/agents", Some(&agent)).await.expect_error(403, "PERMISSION_DENIED");
    let others_status = format!("/v1.0/agents/{other_id}/status");
    server.put(&others_status, Some(&agent), json!({"status": "busy"})).await.expect_error(403, "PERMISSION_DENIED");
    let own = format!("/v1.0/agents/{own_id}");
    server.put(&own, Some(&agent), json!({"name": "renamed"})).await.expect_error(403, "PERMISSION_DENIED");
    server.delete(&own, Some(&agent)).await.expect_error(403, "PERMISSION_DENIED");
    server.get("/v1.0/accesskeys", Some(&agent)).await.expect_error(403, "PERMISSION_DENIED");

    server.get(&own, Some(&agent)).await.expect(200);
    let changed = server.put(&format!("{own}/status"), Some(&agent), json!({"status": "available"})).await;
    assert_eq!(changed.expect(200)["status"], "available");
    let seen = server.get(&own, Some(&tenant.token)).await;
    assert_eq!(seen.expect(200)["status"], "available");
}

#[actix_web::test]
async fn a_manager_cannot_touch_access_keys_or_roles() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let (_, manager) = server.agent_login(&tenant.token, "alice-manager", "manager").await;

    server.get("/v1.0/accesskeys", Some(&manager)).await.expect_error(403, "PERMISSION_DENIED");
    server.post("/v1.0/accesskeys", Some(&manager), json!({"name": "x"})).await.expect_error(403, "PERMISSION_DENIED");
    let key = server.post("/v1.0/accesskeys", Some(&tenant.token), json!({"name": "admin's"})).await;
    let key_id = key.expect(201)["id"].as_str().unwrap().to_owned();
    let path = format!("/v1.0/accesskeys/{key_id}");
    server.get(&path, Some(&manager)).await.expect_error(403, "PERMISSION_DENIED");
    server.put(&path, Some(&manager), json!({"name": "y"})).await.expect_error(403, "PERMISSION_DENIED");
    server.delete(&path, Some(&manager)).await.expect_error(403, "PERMISSION_DENIED");
    // The key survived.
    server.get(&path, Some(&tenant.token)).await.expect(200);

    // Managers manage agents, but not roles.
    let agent = server.create_agent(&manager, "made-by-manager", "agent").await;
    let path = format!("/v1.0/agents/{}", agent["id"].as_str().unwrap());
    server.put(&path, Some(&manager), json!({"role": "admin"})).await.expect_error(403, "PERMISSION_DENIED");
    let admin = json!({"username": "wannabe", "password": PASSWORD, "role": "admin"});
    server.post("/v1.0/agents", Some(&manager), admin).await.expect_error(403, "PERMISSION_DENIED");
}

#[actix_web::test]
async fn the_rate_limit_answers_429_with_retry_after_per_customer() {
    let server = TestServer::start_with(|s| {
        s.rate_limit_per_second = 1;
        s.rate_limit_burst = 2;
    })
    .await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;

    let mut limited = None;
    for _ in 0..50 {
        let resp = server.get("/v1.0/me", Some(&alice.token)).await;
        if resp.status.as_u16() == 429 {
            limited = Some(resp);
            break;
        }
        resp.expect(200);
    }
    let limited = limited.expect("a burst of 2 at 1/s is used up within 50 requests");
    let error = limited.expect_error(429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(error["status"], "RESOURCE_EXHAUSTED");
    let retry_after: u64 = limited.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry_after >= 1);
    // Another customer has its own budget.
    server.get("/v1.0/me", Some(&bob.token)).await.expect(200);
}

#[actix_web::test]
async fn bad_bodies_are_400_or_413() {
    let server = TestServer::start_with(|s| s.body_limit_bytes = 1024).await;
    let tenant = server.tenant("alice").await;
    let token = Some(tenant.token.as_str());

    let json_type = Some("application/json");
    let invalid =
        server.call(Method::POST, "/v1.0/agents", token, &[], Body::Raw(json_type, b"{\"username\": ".to_vec()));
    let error = invalid.await.expect_error(400, "INVALID_JSON").clone();
    assert_eq!(error["status"], "INVALID_ARGUMENT");

    let wrong_type = server.post("/v1.0/agents", token, json!({"username": 42, "password": PASSWORD})).await;
    wrong_type.expect_error(400, "INVALID_ARGUMENT");
    let missing = server.post("/v1.0/agents", token, json!({"password": PASSWORD})).await;
    missing.expect_error(400, "INVALID_ARGUMENT");
    let bad_role = server.post("/v1.0/agents", token, json!({"username": "x", "password": PASSWORD, "role": "boss"}));
    bad_role.await.expect_error(400, "INVALID_ARGUMENT");
    let bad_address = json!({"username": "x", "password": PASSWORD, "addresses": [{"type": "tel", "target": "555"}]});
    server.post("/v1.0/agents", token, bad_address).await.expect_error(400, "INVALID_ARGUMENT");
    let short_password = server.post("/v1.0/agents", token, json!({"username": "x", "password": "short"})).await;
    short_password.expect_error(400, "INVALID_ARGUMENT");

    let body = serde_json::to_vec(&json!({"username": "x", "password": PASSWORD})).unwrap();
    let untyped = server.call(Method::POST, "/v1.0/agents", token, &[], Body::Raw(None, body.clone())).await;
    untyped.expect_error(400, "UNSUPPORTED_CONTENT_TYPE");
    let text = server.call(Method::POST, "/v1.0/agents", token, &[], Body::Raw(Some("text/plain"), body)).await;
    text.expect_error(400, "UNSUPPORTED_CONTENT_TYPE");

    let large = json!({"username": "x", "password": PASSWORD, "detail": "d".repeat(4096)});
    let error = server.post("/v1.0/agents", token, large).await.expect_error(413, "PAYLOAD_TOO_LARGE").clone();
    assert_eq!(error["status"], "PAYLOAD_TOO_LARGE");

    let bad_query = server.get("/v1.0/agents?page_size=lots", token).await;
    bad_query.expect_error(400, "INVALID_ARGUMENT");
    let bad_token = server.get("/v1.0/agents?page_token=junk", token).await;
    bad_token.expect_error(400, "INVALID_ARGUMENT");
    let bad_id = server.get("/v1.0/agents/not-a-uuid", token).await;
    bad_id.expect_error(400, "INVALID_ARGUMENT");

    // Nothing was created by any of them.
    let list = server.get("/v1.0/agents", token).await;
    assert_eq!(list.expect(200)["result"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;

    let resp = server.get("/v1.0/nothing-here", None).await;
    let error = resp.expect_error(404, "ROUTE_NOT_FOUND");
    assert_eq!(error["status"], "NOT_FOUND");
    server.get("/nowhere", Some(&tenant.token)).await.expect_error(404, "ROUTE_NOT_FOUND");

    let resp = server.patch("/v1.0/agents", Some(&tenant.token), json!({})).await;
    let error = resp.expect_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(error["status"], "METHOD_NOT_ALLOWED");
    let allow = resp.header("allow").expect("Allow header");
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["GET", "POST"]);

    let resp = server.post(&format!("/v1.0/agents/{}", tenant.agent_id), Some(&tenant.token), json!({})).await;
    resp.expect_error(405, "METHOD_NOT_ALLOWED");
    let mut methods: Vec<&str> = resp.header("allow").expect("Allow header").split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["DELETE", "GET", "PUT"]);

    let resp = server.delete("/auth/login", None).await;
    resp.expect_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(resp.header("allow"), Some("POST"));
}

#[actix_web::test]
async fn the_last_admin_can_be_neither_deleted_nor_demoted() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let own = format!("/v1.0/agents/{}", tenant.agent_id);

    let error = server.delete(&own, Some(&tenant.token)).await.expect_error(409, "LAST_ADMIN").clone();
    assert_eq!(error["status"], "FAILED_PRECONDITION");
    server.put(&own, Some(&tenant.token), json!({"role": "manager"})).await.expect_error(409, "LAST_ADMIN");
    server.put(&own, Some(&tenant.accesskey), json!({"role": "agent"})).await.expect_error(409, "LAST_ADMIN");
    let me = server.get("/v1.0/me", Some(&tenant.token)).await;
    assert_eq!(me.expect(200)["role"], "admin");

    // With a second admin, the first may step down, and then the second is the last.
    let second = server.create_agent(&tenant.token, "alice-admin-2", "admin").await;
    let second_path = format!("/v1.0/agents/{}", second["id"].as_str().unwrap());
    let demoted = server.put(&own, Some(&tenant.accesskey), json!({"role": "manager"})).await;
    assert_eq!(demoted.expect(200)["role"], "manager");
    server.delete(&second_path, Some(&tenant.accesskey)).await.expect_error(409, "LAST_ADMIN");
    // The demotion took effect at once for the demoted agent's token.
    server.get("/v1.0/accesskeys", Some(&tenant.token)).await.expect_error(403, "PERMISSION_DENIED");
}

#[actix_web::test]
async fn a_username_is_taken_once_across_customers() {
    let server = TestServer::start().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    server.create_agent(&alice.token, "carol", "agent").await;

    let again = json!({"username": "carol", "password": PASSWORD});
    let error = server
        .post("/v1.0/agents", Some(&alice.token), again.clone())
        .await
        .expect_error(409, "USERNAME_TAKEN")
        .clone();
    assert_eq!(error["status"], "ALREADY_EXISTS");
    server.post("/v1.0/agents", Some(&bob.token), again).await.expect_error(409, "USERNAME_TAKEN");
    let admin_name = json!({"username": "alice", "password": PASSWORD});
    server.post("/v1.0/agents", Some(&bob.token), admin_name).await.expect_error(409, "USERNAME_TAKEN");
    // Carol still logs in with the first password.
    server.login("carol", PASSWORD).await;
}
