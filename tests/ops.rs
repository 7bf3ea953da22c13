#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What operators and their probes use (SPEC §10): `/ping`, `/healthz`, `/readyz`,
//! `/metrics`, `/v1.0/openapi.json`, and migrations that go down as cleanly as up.

mod common;

use common::TestServer;
use serde_json::json;

#[actix_web::test]
async fn ping_and_healthz_answer_without_credentials() {
    let server = TestServer::start().await;
    let ping = server.get("/ping", None).await;
    ping.expect(200);
    assert_eq!(ping.text, "pong");
    let health = server.get("/healthz", None).await;
    assert_eq!(health.expect(200)["status"], "ok");
}

#[actix_web::test]
async fn readyz_follows_the_migration_state() {
    let server = TestServer::start().await;
    assert_eq!(server.get("/readyz", None).await.expect(200)["status"], "ok");

    server.ctx.db.revert_last().expect("revert the newest migration");
    let unready = server.get("/readyz", None).await;
    assert_eq!(unready.expect(503)["status"], "unavailable");
    assert!(unready.json["reason"].as_str().unwrap().contains("pending"), "{}", unready.text);
    assert!(unready.header("retry-after").is_some());
    // The process itself is still alive.
    server.get("/healthz", None).await.expect(200);

    server.ctx.db.migrate().expect("migrate again");
    assert_eq!(server.get("/readyz", None).await.expect(200)["status"], "ok");
}

#[actix_web::test]
async fn metrics_count_requests_and_show_the_pool() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    server.get("/ping", None).await.expect(200);
    server.get("/v1.0/agents", Some(&tenant.token)).await.expect(200);
    server.get(&format!("/v1.0/agents/{}", tenant.agent_id), Some(&tenant.token)).await.expect(200);

    let metrics = server.get("/metrics", None).await;
    metrics.expect(200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    let text = &metrics.text;
    assert!(text.contains("callplane_http_requests_total"), "{text}");
    assert!(text.contains("callplane_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("callplane_db_pool_connections"), "{text}");
    // Labelled by route pattern, not by the concrete path.
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("callplane_http_requests_total")
                && l.contains(r#"route="/v1.0/agents/{id}""#)
                && l.contains(r#"status="200""#)
        })
        .unwrap_or_else(|| panic!("no counter for /v1.0/agents/{{id}}: {text}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert!(!text.contains(&tenant.agent_id), "no ids in labels");
    assert!(text.lines().any(|l| l.starts_with("callplane_http_requests_total") && l.contains(r#"route="/ping""#)));
}

/// The routes the tests call, by method and OpenAPI path.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/auth/login"),
    ("get", "/ping"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1.0/openapi.json"),
    ("get", "/v1.0/me"),
    ("get", "/v1.0/customer"),
    ("put", "/v1.0/customer"),
    ("post", "/v1.0/customers"),
    ("get", "/v1.0/customers"),
    ("get", "/v1.0/customers/{id}"),
    ("put", "/v1.0/customers/{id}"),
    ("delete", "/v1.0/customers/{id}"),
    ("post", "/v1.0/agents"),
    ("get", "/v1.0/agents"),
    ("get", "/v1.0/agents/{id}"),
    ("put", "/v1.0/agents/{id}"),
    ("delete", "/v1.0/agents/{id}"),
    ("put", "/v1.0/agents/{id}/status"),
    ("post", "/v1.0/accesskeys"),
    ("get", "/v1.0/accesskeys"),
    ("get", "/v1.0/accesskeys/{id}"),
    ("put", "/v1.0/accesskeys/{id}"),
    ("delete", "/v1.0/accesskeys/{id}"),
];

#[actix_web::test]
async fn the_openapi_document_describes_every_route() {
    let server = TestServer::start().await;
    let resp = server.get("/v1.0/openapi.json", None).await;
    let doc = resp.expect(200);
    assert!(resp.header("content-type").unwrap().starts_with("application/json"));
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "callplane");
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in ROUTES {
        assert!(paths.get(*path).and_then(|p| p.get(*method)).is_some(), "{method} {path} is not described");
    }
    // And nothing it describes is a 404.
    for (path, item) in paths {
        let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        for method in item.as_object().unwrap().keys() {
            let method = actix_web::http::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = server.call(method.clone(), &concrete, None, &[], common::Body::Json(json!({}))).await;
            assert_ne!(resp.status.as_u16(), 404, "{method} {path} is described but not served");
            assert_ne!(resp.status.as_u16(), 405, "{method} {path} is described but not served");
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[actix_web::test]
async fn sqlite_migrations_go_up_down_and_up_again() {
    let dir = tempfile::tempdir().unwrap();
    common::migrations_round_trip(&format!("sqlite://{}", dir.path().join("migrations.db").display())).await;
}
