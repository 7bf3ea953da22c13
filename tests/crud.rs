#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Round trips through the resources of the foundation: agents, access keys, the own
//! customer, the super-admin's customers, and list pagination (SPEC §2, §3).

mod common;

use std::collections::HashSet;

use callplane_schema::models::agent::{self, AgentRow, Role};
use common::{PASSWORD, TestServer};
use serde_json::{Value, json};

fn ids(page: &Value) -> Vec<String> {
    page["result"].as_array().expect("result array").iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

/// No field of `body` mentions a password or its hash.
#[track_caller]
fn assert_no_password(body: &str) {
    assert!(!body.contains("password"), "{body}");
    assert!(!body.contains(PASSWORD), "{body}");
    assert!(!body.contains("$argon2"), "{body}");
}

#[actix_web::test]
async fn agents_round_trip() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let token = Some(tenant.token.as_str());

    let create = json!({
        "username": "bob", "password": PASSWORD, "name": "Bob", "detail": "night shift", "role": "manager",
        "addresses": [{"type": "tel", "target": "+15551234567"}, {"type": "sip", "target": "bob@example.com", "name": "desk"}],
        "unknown_field": "is ignored",
    });
    let created = server.post("/v1.0/agents", token, create).await;
    assert_no_password(&created.text);
    let agent = created.expect(201).clone();
    let id = agent["id"].as_str().unwrap();
    assert_eq!(created.header("location"), Some(format!("/v1.0/agents/{id}").as_str()));
    assert_eq!(agent["customer_id"], tenant.customer_id.as_str());
    assert_eq!(agent["username"], "bob");
    assert_eq!(agent["name"], "Bob");
    assert_eq!(agent["role"], "manager");
    assert_eq!(agent["status"], "offline");
    assert_eq!(agent["addresses"][0]["target"], "+15551234567");
    assert_eq!(agent["addresses"][1]["name"], "desk");
    // Lowercase UUIDs; RFC 3339 in UTC with microseconds, e.g. 2026-01-20T12:00:05.000000Z.
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().to_string(), id);
    for field in ["tm_create", "tm_update"] {
        let t = agent[field].as_str().unwrap();
        assert!(t.len() == 27 && t.as_bytes()[19] == b'.' && t.ends_with('Z'), "{field}: {t}");
        chrono::DateTime::parse_from_rfc3339(t).unwrap();
    }

    let list = server.get("/v1.0/agents", token).await;
    assert_no_password(&list.text);
    assert_eq!(ids(list.expect(200)), [id, tenant.agent_id.as_str()], "newest first");
    assert!(list.json.get("next_page_token").is_none_or(Value::is_null), "one page");

    let path = format!("/v1.0/agents/{id}");
    let got = server.get(&path, token).await;
    assert_no_password(&got.text);
    assert_eq!(got.expect(200), &agent);

    let updated = server.put(&path, token, json!({"name": "Robert", "addresses": []})).await;
    assert_no_password(&updated.text);
    let updated = updated.expect(200).clone();
    assert_eq!(updated["name"], "Robert");
    assert_eq!(updated["detail"], "night shift", "fields left out stay");
    assert_eq!(updated["addresses"], json!([]));
    assert_eq!(updated["role"], "manager");
    assert_eq!(server.get(&path, token).await.expect(200), &updated);

    let status = server.put(&format!("{path}/status"), token, json!({"status": "busy"})).await;
    assert_eq!(status.expect(200)["status"], "busy");
    server
        .put(&format!("{path}/status"), token, json!({"status": "asleep"}))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    assert_eq!(server.get(&path, token).await.expect(200)["status"], "busy");

    let deleted = server.delete(&path, token).await;
    assert_no_password(&deleted.text);
    assert_eq!(deleted.expect(200)["id"], id);
    server.get(&path, token).await.expect_error(404, "AGENT_NOT_FOUND");
    server.delete(&path, token).await.expect_error(404, "AGENT_NOT_FOUND");
    assert_eq!(ids(server.get("/v1.0/agents", token).await.expect(200)), [tenant.agent_id.as_str()]);
}

#[actix_web::test]
async fn access_keys_round_trip_and_show_the_key_once() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let token = Some(tenant.token.as_str());

    let created =
        server.post("/v1.0/accesskeys", token, json!({"name": "ci", "detail": "deploys", "expire": 3600})).await;
    let key = created.expect(201).clone();
    let id = key["id"].as_str().unwrap();
    assert_eq!(created.header("location"), Some(format!("/v1.0/accesskeys/{id}").as_str()));
    let secret = key["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("cpk_") && secret.len() == 68, "{secret}");
    assert_eq!(key["name"], "ci");
    assert_eq!(key["customer_id"], tenant.customer_id.as_str());
    assert!(key["tm_expire"].is_string(), "an expiring key says when");
    assert!(secret.starts_with(key["token_hint"].as_str().unwrap()));

    let path = format!("/v1.0/accesskeys/{id}");
    let list = server.get("/v1.0/accesskeys", token).await;
    assert!(!list.text.contains(&secret) && !list.text.contains("\"token\""), "{}", list.text);
    let listed = ids(list.expect(200));
    assert!(listed.contains(&id.to_owned()), "{listed:?}");
    assert_eq!(listed.len(), 2, "this key and the bootstrap key");
    let got = server.get(&path, token).await;
    assert!(!got.text.contains(&secret) && !got.text.contains("\"token\""), "{}", got.text);
    assert_eq!(got.expect(200)["detail"], "deploys");

    // The key works, and a key that never expires has a null expiry.
    assert_eq!(server.get("/v1.0/me", Some(&secret)).await.expect(200)["role"], "admin");
    let forever = server.post("/v1.0/accesskeys", token, json!({"name": "forever"})).await;
    assert!(forever.expect(201)["tm_expire"].is_null());

    let renamed = server.put(&path, token, json!({"name": "ci-2"})).await;
    assert_eq!(renamed.expect(200)["name"], "ci-2");
    assert!(!renamed.text.contains(&secret));
    assert_eq!(server.get(&path, token).await.expect(200)["name"], "ci-2");

    server.delete(&path, token).await.expect(200);
    server.get(&path, token).await.expect_error(404, "ACCESSKEY_NOT_FOUND");
    assert!(!ids(server.get("/v1.0/accesskeys", token).await.expect(200)).contains(&id.to_owned()));
    server.get("/v1.0/me", Some(&secret)).await.expect_error(401, "UNAUTHENTICATED");

    // Another customer sees none of them.
    let bob = server.tenant("bob").await;
    server
        .get(&format!("/v1.0/accesskeys/{}", forever.json["id"].as_str().unwrap()), Some(&bob.token))
        .await
        .expect_error(404, "ACCESSKEY_NOT_FOUND");
}

#[actix_web::test]
async fn the_own_customer_reads_and_updates() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let token = Some(tenant.token.as_str());

    let customer = server.get("/v1.0/customer", token).await;
    let customer = customer.expect(200).clone();
    assert_eq!(customer["id"], tenant.customer_id.as_str());

    let changes = json!({"name": "Alice Ltd", "email": "ops@alice.example", "phone_number": "+15551234567"});
    let updated = server.put("/v1.0/customer", token, changes).await;
    let updated = updated.expect(200).clone();
    assert_eq!(updated["name"], "Alice Ltd");
    assert_eq!(updated["email"], "ops@alice.example");
    assert_eq!(updated["tm_create"], customer["tm_create"]);
    assert_eq!(server.get("/v1.0/customer", Some(&tenant.accesskey)).await.expect(200), &updated);
    server.put("/v1.0/customer", token, json!({"name": ""})).await.expect_error(400, "INVALID_ARGUMENT");

    // An agent-role login may not read it.
    let (_, agent) = server.agent_login(&tenant.token, "bob", "agent").await;
    server.get("/v1.0/customer", Some(&agent)).await.expect_error(403, "PERMISSION_DENIED");
}

#[actix_web::test]
async fn a_superadmin_manages_customers() {
    let server = TestServer::start().await;
    callplane::provision::create_superadmin(&server.ctx.db, "root", PASSWORD).await.unwrap();
    let root = server.login("root", PASSWORD).await;
    let root = Some(root.as_str());
    let me = server.get("/v1.0/me", root).await;
    let me = me.expect(200);
    assert_eq!(me["role"], "superadmin");
    assert!(me["customer_id"].is_null());

    let create = json!({"name": "Dana Inc", "email": "dana@example.com", "balance": 5_000_000, "username": "dana", "password": PASSWORD});
    let created = server.post("/v1.0/customers", root, create).await;
    let customer = created.expect(201).clone();
    let id = customer["id"].as_str().unwrap().to_owned();
    assert_eq!(created.header("location"), Some(format!("/v1.0/customers/{id}").as_str()));
    assert_eq!(customer["name"], "Dana Inc");
    let bare = server.post("/v1.0/customers", root, json!({"name": "No Admin Co"})).await;
    let bare_id = bare.expect(201)["id"].as_str().unwrap().to_owned();
    server
        .post("/v1.0/customers", root, json!({"name": "Half", "username": "half"}))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let taken = json!({"name": "Copy", "username": "dana", "password": PASSWORD});
    server.post("/v1.0/customers", root, taken).await.expect_error(409, "USERNAME_TAKEN");

    let listed = ids(server.get("/v1.0/customers", root).await.expect(200));
    assert_eq!(listed, [bare_id.clone(), id.clone()], "newest first, and the refused ones are not there");

    let path = format!("/v1.0/customers/{id}");
    assert_eq!(server.get(&path, root).await.expect(200), &customer);
    let updated = server.put(&path, root, json!({"detail": "gold"})).await;
    assert_eq!(updated.expect(200)["detail"], "gold");
    assert_eq!(server.get(&path, root).await.expect(200)["detail"], "gold");

    // Dana's admin works, and so does a key made by it.
    let dana = server.login("dana", PASSWORD).await;
    let me = server.get("/v1.0/me", Some(&dana)).await;
    assert_eq!(me.expect(200)["customer_id"], id.as_str());
    let key = server.post("/v1.0/accesskeys", Some(&dana), json!({"name": "k"})).await;
    let key = key.expect(201)["token"].as_str().unwrap().to_owned();
    server.get("/v1.0/me", Some(&key)).await.expect(200);

    // A super-admin has no customer of its own.
    server.get("/v1.0/agents", root).await.expect_error(403, "PERMISSION_DENIED");
    server.get("/v1.0/customer", root).await.expect_error(403, "PERMISSION_DENIED");

    let deleted = server.delete(&path, root).await;
    assert_eq!(deleted.expect(200)["id"], id.as_str());
    server.get(&path, root).await.expect_error(404, "CUSTOMER_NOT_FOUND");
    server.put(&path, root, json!({"name": "back"})).await.expect_error(404, "CUSTOMER_NOT_FOUND");
    server.delete(&path, root).await.expect_error(404, "CUSTOMER_NOT_FOUND");
    assert_eq!(ids(server.get("/v1.0/customers", root).await.expect(200)), [bare_id]);
    server.get("/v1.0/me", Some(&dana)).await.expect_error(401, "UNAUTHENTICATED");
    server.get("/v1.0/me", Some(&key)).await.expect_error(401, "UNAUTHENTICATED");
    server
        .post("/auth/login", None, json!({"username": "dana", "password": PASSWORD}))
        .await
        .expect_error(401, "INVALID_CREDENTIALS");
}

#[actix_web::test]
async fn customers_are_for_superadmins_only() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    for token in [&tenant.token, &tenant.accesskey] {
        server.get("/v1.0/customers", Some(token)).await.expect_error(403, "PERMISSION_DENIED");
        server.post("/v1.0/customers", Some(token), json!({"name": "x"})).await.expect_error(403, "PERMISSION_DENIED");
        let own = format!("/v1.0/customers/{}", tenant.customer_id);
        server.get(&own, Some(token)).await.expect_error(403, "PERMISSION_DENIED");
        server.delete(&own, Some(token)).await.expect_error(403, "PERMISSION_DENIED");
    }
    server.get("/v1.0/customer", Some(&tenant.token)).await.expect(200);
}

/// Walks a list with `page_size`/`page_token`; every page but the last is full.
async fn walk_tokens(server: &TestServer, token: &str, path: &str, page_size: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..100 {
        let url = match &next {
            Some(t) => format!("{path}?page_size={page_size}&page_token={t}"),
            None => format!("{path}?page_size={page_size}"),
        };
        let page = server.get(&url, Some(token)).await;
        let page = page.expect(200);
        let got = ids(page);
        assert!(got.len() <= page_size);
        seen.extend(got.iter().cloned());
        match page.get("next_page_token").and_then(Value::as_str) {
            Some(t) => {
                assert_eq!(got.len(), page_size, "only the last page is short");
                next = Some(t.to_owned());
            }
            None => return seen,
        }
    }
    panic!("the walk did not end");
}

/// Walks with `limit`/`offset` until `result` is empty, as the published tutorial does.
async fn walk_offsets(server: &TestServer, token: &str, path: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for page in 0..100 {
        let got =
            ids(server.get(&format!("{path}?limit={limit}&offset={}", page * limit), Some(token)).await.expect(200));
        if got.is_empty() {
            return seen;
        }
        seen.extend(got);
    }
    panic!("the walk did not end");
}

#[track_caller]
fn assert_no_duplicates(walk: &[String]) {
    let unique: HashSet<&String> = walk.iter().collect();
    assert_eq!(unique.len(), walk.len(), "a row was repeated: {walk:?}");
}

#[actix_web::test]
async fn pages_cover_every_agent_once_newest_first() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let mut created = vec![tenant.agent_id.clone()];
    for i in 0..25 {
        let agent = server.create_agent(&tenant.accesskey, &format!("agent-{i:02}"), "agent").await;
        created.push(agent["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let by_token = walk_tokens(&server, &tenant.token, "/v1.0/agents", 7).await;
    assert_no_duplicates(&by_token);
    assert_eq!(by_token, newest_first);

    let by_offset = walk_offsets(&server, &tenant.token, "/v1.0/agents", 7).await;
    assert_no_duplicates(&by_offset);
    assert_eq!(by_offset, newest_first);

    // The default and the cap: at most 100 rows a page.
    assert_eq!(ids(server.get("/v1.0/agents", Some(&tenant.token)).await.expect(200)), newest_first);
    assert_eq!(ids(server.get("/v1.0/agents?page_size=1000", Some(&tenant.token)).await.expect(200)).len(), 26);
    server.get("/v1.0/agents?page_size=0", Some(&tenant.token)).await.expect_error(400, "INVALID_ARGUMENT");

    // Another customer's list is its own.
    let bob = server.tenant("bob").await;
    assert_eq!(walk_tokens(&server, &bob.token, "/v1.0/agents", 7).await, [bob.agent_id]);
}

#[actix_web::test]
async fn rows_sharing_a_creation_time_are_neither_skipped_nor_repeated() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let customer_id: callplane_schema::ids::CustomerId = tenant.customer_id.parse().unwrap();
    let moment = callplane_schema::time::now();
    let rows: Vec<AgentRow> = (0..10)
        .map(|i| {
            let mut row = AgentRow::new(Some(customer_id.clone()), &format!("twin-{i}"), "x".into(), Role::Agent);
            row.tm_create = moment;
            row
        })
        .collect();
    let mut expected: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
    server.ctx.db.write(move |tx| rows.iter().try_for_each(|row| agent::insert(tx.conn, row))).await.unwrap();
    // Same creation time: the id breaks the tie, descending.
    expected.sort();
    expected.reverse();
    expected.push(tenant.agent_id.clone());

    for size in [1, 3, 4, 10] {
        let walk = walk_tokens(&server, &tenant.token, "/v1.0/agents", size).await;
        assert_no_duplicates(&walk);
        assert_eq!(walk, expected, "page size {size}");
    }
}

#[actix_web::test]
async fn page_size_defaults_to_100_and_is_capped_there() {
    let server = TestServer::start().await;
    let tenant = server.tenant("alice").await;
    let customer_id: callplane_schema::ids::CustomerId = tenant.customer_id.parse().unwrap();
    let rows: Vec<AgentRow> = (0..120)
        .map(|i| AgentRow::new(Some(customer_id.clone()), &format!("bulk-{i}"), "x".into(), Role::Agent))
        .collect();
    server.ctx.db.write(move |tx| rows.iter().try_for_each(|row| agent::insert(tx.conn, row))).await.unwrap();

    let token = Some(tenant.token.as_str());
    let default = server.get("/v1.0/agents", token).await;
    assert_eq!(ids(default.expect(200)).len(), 100);
    assert!(default.json["next_page_token"].is_string());
    let capped = server.get("/v1.0/agents?page_size=1000", token).await;
    assert_eq!(ids(capped.expect(200)).len(), 100);
    let walk = walk_tokens(&server, &tenant.token, "/v1.0/agents", 100).await;
    assert_no_duplicates(&walk);
    assert_eq!(walk.len(), 121);
}
