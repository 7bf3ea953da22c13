#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Logging in, the credential forms of SPEC §3, `GET /v1.0/me`, and request ids.

mod common;

use actix_web::http::Method;
use common::{Body, PASSWORD, TestServer};
use serde_json::json;

#[actix_web::test]
async fn a_login_token_identifies_the_agent_on_me() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;

    let login = server.post("/auth/login", None, json!({"username": "alice", "password": PASSWORD})).await;
    let body = login.expect(200);
    assert_eq!(body["username"], "alice");
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let me = server.get("/v1.0/me", Some(token)).await;
    let me = me.expect(200);
    assert_eq!(me["id"], tenant.agent_id.as_str());
    assert_eq!(me["customer_id"], tenant.customer_id.as_str());
    assert_eq!(me["username"], "alice");
    assert_eq!(me["role"], "admin");
    assert!(me["permissions"].as_array().unwrap().iter().any(|p| p == "agent.manage"));

    // The claims of SPEC §3, readable without the key.
    let claims = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&base64url_decode(claims)).unwrap();
    for claim in ["sub", "customer_id", "agent_id", "role", "iat", "exp"] {
        assert!(!claims[claim].is_null(), "claim {claim} in {claims}");
    }
    assert_eq!(claims["agent_id"], tenant.agent_id.as_str());
    assert_eq!(claims["customer_id"], tenant.customer_id.as_str());
    assert_eq!(claims["role"], "admin");
}

#[actix_web::test]
async fn an_access_key_acts_as_the_customers_admin() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    assert!(tenant.accesskey.starts_with("cpk_"));
    assert_eq!(tenant.accesskey.len(), 4 + 64);

    let me = server.get("/v1.0/me", Some(&tenant.accesskey)).await;
    let me = me.expect(200);
    assert_eq!(me["role"], "admin");
    assert_eq!(me["customer_id"], tenant.customer_id.as_str());
    assert!(me["accesskey_id"].is_string());
    // It can do what an admin does.
    server.create_agent(&tenant.accesskey, "made-by-key", "manager").await;
    server.get("/v1.0/accesskeys", Some(&tenant.accesskey)).await.expect(200);
}

#[actix_web::test]
async fn credentials_in_the_query_string_work() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;

    let me = server.get(&format!("/v1.0/me?token={}", tenant.token), None).await;
    assert_eq!(me.expect(200)["id"], tenant.agent_id.as_str());
    let me = server.get(&format!("/v1.0/me?accesskey={}", tenant.accesskey), None).await;
    assert_eq!(me.expect(200)["customer_id"], tenant.customer_id.as_str());
    // Alongside the list parameters.
    let list = server.get(&format!("/v1.0/agents?page_size=1&accesskey={}", tenant.accesskey), None).await;
    assert_eq!(list.expect(200)["result"].as_array().unwrap().len(), 1);

    server.get("/v1.0/me?token=garbage", None).await.expect_error(401, "UNAUTHENTICATED");
    server.get("/v1.0/me?accesskey=cpk_0000", None).await.expect_error(401, "UNAUTHENTICATED");
}

#[actix_web::test]
async fn a_deleted_agents_token_stops_working() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let (id, token) = server.agent_login(&tenant.token, "bob", "agent").await;
    server.get("/v1.0/me", Some(&token)).await.expect(200);
    server.delete(&format!("/v1.0/agents/{id}"), Some(&tenant.token)).await.expect(200);
    server.get("/v1.0/me", Some(&token)).await.expect_error(401, "UNAUTHENTICATED");
    server.post("/auth/login", None, json!({"username": "bob", "password": PASSWORD})).await.expect(401);
}

#[actix_web::test]
async fn a_changed_password_takes_effect_at_login() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let (id, _) = server.agent_login(&tenant.token, "bob", "agent").await;
    let path = format!("/v1.0/agents/{id}");
    server.put(&path, Some(&tenant.token), json!({"password": "a brand new password"})).await.expect(200);
    server.post("/auth/login", None, json!({"username": "bob", "password": PASSWORD})).await.expect(401);
    server.login("bob", "a brand new password").await;
}

#[actix_web::test]
async fn a_client_request_id_is_echoed_on_success_and_error() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let id = [("X-Request-ID", "req-abc.123")];

    let ok = server.call(Method::GET, "/v1.0/me", Some(&tenant.token), &id, Body::None).await;
    ok.expect(200);
    assert_eq!(ok.header("x-request-id"), Some("req-abc.123"));
    let ping = server.call(Method::GET, "/ping", None, &id, Body::None).await;
    assert_eq!(ping.header("x-request-id"), Some("req-abc.123"));

    let unauthenticated = server.call(Method::GET, "/v1.0/me", None, &id, Body::None).await;
    let error = unauthenticated.expect_error(401, "UNAUTHENTICATED");
    assert_eq!(error["request_id"], "req-abc.123");
    let not_found = server.call(Method::GET, "/v1.0/nothing", None, &id, Body::None).await;
    assert_eq!(not_found.expect_error(404, "ROUTE_NOT_FOUND")["request_id"], "req-abc.123");
    let invalid = server
        .call(
            Method::POST,
            "/v1.0/agents",
            Some(&tenant.token),
            &id,
            Body::Raw(Some("application/json"), b"{".to_vec()),
        )
        .await;
    assert_eq!(invalid.expect_error(400, "INVALID_JSON")["request_id"], "req-abc.123");
    let login = server
        .call(Method::POST, "/auth/login", None, &id, Body::Json(json!({"username": "alice", "password": "nope"})))
        .await;
    assert_eq!(login.expect_error(401, "INVALID_CREDENTIALS")["request_id"], "req-abc.123");
}

#[actix_web::test]
async fn an_unacceptable_request_id_is_replaced() {
    let server = TestServer::start().await;
    let too_long = "a".repeat(65);
    let longest = "b".repeat(64);
    for bad in ["has spaces", "semi;colon", "slash/no", "", too_long.as_str()] {
        let resp = server.call(Method::GET, "/v1.0/me", None, &[("X-Request-ID", bad)], Body::None).await;
        let generated = resp.header("x-request-id").expect("X-Request-ID").to_owned();
        assert_ne!(generated, bad);
        assert!(generated.starts_with("req_"), "{generated}");
        assert_eq!(resp.expect_error(401, "UNAUTHENTICATED")["request_id"], generated.as_str());
    }
    let resp = server.call(Method::GET, "/ping", None, &[("X-Request-ID", &longest)], Body::None).await;
    assert_eq!(resp.header("x-request-id"), Some(longest.as_str()));
}

#[actix_web::test]
async fn every_response_carries_a_request_id() {
    let server = TestServer::start().await;
    let mut seen = std::collections::HashSet::new();
    for path in ["/ping", "/healthz", "/readyz", "/metrics", "/v1.0/openapi.json", "/v1.0/me", "/missing"] {
        let resp = server.get(path, None).await;
        let id = resp.header("x-request-id").unwrap_or_else(|| panic!("{path} has no X-Request-ID"));
        assert!(id.starts_with("req_") && id.len() <= 64, "{path}: {id}");
        assert!(seen.insert(id.to_owned()), "ids are unique: {id} repeated");
    }
}

fn base64url_decode(input: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in input.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base64url") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}
