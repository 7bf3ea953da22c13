//! The harness every end-to-end test uses: a real daemon on a loopback port with its
//! own database, an HTTP client, and tenants made the way `callplane bootstrap` makes
//! them.
//!
//! * [`TestServer::start`] serves on `127.0.0.1:0` with a fresh SQLite file in a
//!   temporary directory; [`TestServer::start_with`] adjusts the settings first (rate
//!   limits, body limit, another database).
//! * [`TestDatabase`] makes a fresh PostgreSQL or MySQL database per test from
//!   `CALLPLANE_TEST_POSTGRES_URL` / `CALLPLANE_TEST_MYSQL_URL` and drops it afterwards.
//!   Unset variable or a build without the backend's feature: the test says `SKIPPED`
//!   on stderr and passes. Set but the server does not answer: the test fails.

// Each test binary uses a part of the harness.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use callplane::config::Settings;
use callplane::context::AppContext;
use serde_json::Value;

/// The JWT secret of every test server (tests sign their own tokens with it).
pub const SECRET: &str = "callplane-test-secret-0123456789abcdef";
/// The password of every tenant admin made by [`TestServer::tenant`].
pub const PASSWORD: &str = "correct horse battery staple";
/// Opening balance of tenants: ten dollars.
pub const BALANCE: i64 = 10_000_000;

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body parsed as JSON; `Value::Null` when it is not JSON.
    pub json: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and returns the body, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        &self.json
    }

    /// Asserts an error in the envelope of SPEC §2 with this HTTP status and reason, and
    /// that its `request_id` is the one in the `X-Request-ID` header.
    #[track_caller]
    pub fn expect_error(&self, status: u16, reason: &str) -> &Value {
        self.expect(status);
        assert_eq!(self.json.as_object().map(|o| o.len()), Some(1), "only `error` at the top: {}", self.text);
        let error = &self.json["error"];
        assert_eq!(error["reason"], reason, "body: {}", self.text);
        let mut fields: Vec<&String> = error.as_object().expect("error object").keys().collect();
        fields.sort();
        assert_eq!(fields, ["message", "reason", "request_id", "status"], "body: {}", self.text);
        assert!(error["status"].as_str().is_some_and(|s| !s.is_empty()), "body: {}", self.text);
        assert!(error["message"].as_str().is_some_and(|s| !s.is_empty()), "body: {}", self.text);
        let id = error["request_id"].as_str().expect("request_id in the body");
        assert_eq!(Some(id), self.header("x-request-id"), "the body repeats the X-Request-ID header");
        error
    }
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    /// Bytes as given, with this `Content-Type` if any.
    Raw(Option<&'static str>, Vec<u8>),
}

/// A customer with its first admin, logged in.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub customer_id: String,
    pub agent_id: String,
    pub username: String,
    /// The admin's JWT from `POST /auth/login`.
    pub token: String,
    /// The access key `bootstrap` made.
    pub accesskey: String,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub ctx: AppContext,
    running: Option<callplane::Running>,
    client: awc::Client,
    // Dropped last: the SQLite file lives here.
    dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts with the test defaults changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut settings = Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: format!("sqlite://{}", dir.path().join("cp.db").display()),
            data_dir: dir.path().join("data"),
            jwt_secret: Some(SECRET.to_owned()),
            bootstrap: false,
            access_log: false,
            workers: 1,
            ..Settings::default()
        };
        adjust(&mut settings);
        let db = callplane::open_database(&settings, Duration::ZERO).expect("open and migrate the database");
        let running = callplane::start(settings, db).await.expect("start the server");
        let client = awc::Client::builder().timeout(Duration::from_secs(60)).finish();
        TestServer { addr: running.addr, ctx: running.ctx.clone(), running: Some(running), client, dir }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops gracefully (the tests on other backends do, before their database is dropped).
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Any request; `path` may carry a query string.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Resp {
        let mut req = self.client.request(method.clone(), format!("{}{path}", self.base_url()));
        if let Some(token) = token {
            req = req.insert_header(("Authorization", format!("Bearer {token}")));
        }
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let sent = match body {
            Body::None => req.send().await,
            Body::Json(value) => req.send_json(&value).await,
            Body::Raw(content_type, bytes) => {
                if let Some(content_type) = content_type {
                    req = req.insert_header(("Content-Type", content_type));
                }
                req.send_body(bytes).await
            }
        };
        let mut response = sent.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let bytes = response.body().limit(64 << 20).await.unwrap_or_else(|e| panic!("{method} {path}: body: {e}"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Resp {
            status: response.status(),
            headers: response.headers().clone(),
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::GET, path, token, &[], Body::None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::POST, path, token, &[], Body::Json(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::PUT, path, token, &[], Body::Json(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call(Method::PATCH, path, token, &[], Body::Json(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.call(Method::DELETE, path, token, &[], Body::None).await
    }

    /// `POST /auth/login`; the token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let resp =
            self.post("/auth/login", None, serde_json::json!({"username": username, "password": password})).await;
        let body = resp.expect(200);
        assert_eq!(body["username"], username);
        body["token"].as_str().expect("token").to_owned()
    }

    /// A new customer whose admin is `username` (with [`PASSWORD`]), made by
    /// `provision::bootstrap` and logged in over HTTP.
    pub async fn tenant(&self, username: &str) -> Tenant {
        let made = callplane::provision::bootstrap(&self.ctx.db, SECRET.as_bytes(), username, PASSWORD, BALANCE)
            .await
            .expect("bootstrap a tenant");
        let token = self.login(username, PASSWORD).await;
        Tenant {
            customer_id: made.customer_id.to_string(),
            agent_id: made.agent_id.to_string(),
            username: made.username,
            token,
            accesskey: made.accesskey,
        }
    }

    /// Creates an agent with `role` through the API; its JSON.
    pub async fn create_agent(&self, token: &str, username: &str, role: &str) -> Value {
        let body = serde_json::json!({"username": username, "password": PASSWORD, "name": username, "role": role});
        self.post("/v1.0/agents", Some(token), body).await.expect(201).clone()
    }

    /// Creates an agent and logs it in; its id and token.
    pub async fn agent_login(&self, admin_token: &str, username: &str, role: &str) -> (String, String) {
        let agent = self.create_agent(admin_token, username, role).await;
        let token = self.login(username, PASSWORD).await;
        (agent["id"].as_str().expect("id").to_owned(), token)
    }
}

/// The tables the migrations create.
pub const TABLES: &[&str] = &[
    "accesskeys",
    "activeflows",
    "agent_stats",
    "agents",
    "billing_accounts",
    "billings",
    "calls",
    "conferencecalls",
    "conferences",
    "customers",
    "events",
    "flow_secrets",
    "flows",
    "idempotency_keys",
    "messages",
    "numbers",
    "subscriber_cursors",
    "webhook_attempts",
    "webhook_deliveries",
    "webhooks",
];

/// Which of [`TABLES`] the database at `url` has: each is counted through the schema
/// the application itself uses, so a missing table is an error, not a zero.
pub async fn existing_tables(db: &callplane_schema::Db) -> Vec<&'static str> {
    use callplane_schema::schema::*;
    use diesel::prelude::*;
    db.read(|conn| {
        let mut found = Vec::new();
        let counts: Vec<(&'static str, QueryResult<i64>)> = vec![
            ("accesskeys", accesskeys::table.count().get_result(conn)),
            ("activeflows", activeflows::table.count().get_result(conn)),
            ("agent_stats", agent_stats::table.count().get_result(conn)),
            ("agents", agents::table.count().get_result(conn)),
            ("billing_accounts", billing_accounts::table.count().get_result(conn)),
            ("billings", billings::table.count().get_result(conn)),
            ("calls", calls::table.count().get_result(conn)),
            ("conferencecalls", conferencecalls::table.count().get_result(conn)),
            ("conferences", conferences::table.count().get_result(conn)),
            ("customers", customers::table.count().get_result(conn)),
            ("events", events::table.count().get_result(conn)),
            ("flow_secrets", flow_secrets::table.count().get_result(conn)),
            ("flows", flows::table.count().get_result(conn)),
            ("idempotency_keys", idempotency_keys::table.count().get_result(conn)),
            ("messages", messages::table.count().get_result(conn)),
            ("numbers", numbers::table.count().get_result(conn)),
            ("subscriber_cursors", subscriber_cursors::table.count().get_result(conn)),
            ("webhook_attempts", webhook_attempts::table.count().get_result(conn)),
            ("webhook_deliveries", webhook_deliveries::table.count().get_result(conn)),
            ("webhooks", webhooks::table.count().get_result(conn)),
        ];
        for (name, count) in counts {
            if count.is_ok() {
                found.push(name);
            }
        }
        Ok(found)
    })
    .await
    .expect("read the tables")
}

/// Migrations up, every `down.sql`, up again, on the database at `url`: the tables
/// appear, vanish and reappear, and the second run applies what the first did.
pub async fn migrations_round_trip(url: &str) {
    let db = callplane_schema::Db::open(callplane_schema::DbSettings::new(url)).expect("open");
    let applied = db.migrate().expect("migrate");
    assert!(!applied.is_empty(), "a fresh database has migrations to apply");
    assert_eq!(existing_tables(&db).await, TABLES);
    db.readiness().await.expect("ready after migrating");

    let reverted = db.revert_all().expect("revert every migration");
    let mut reverted_sorted = reverted.clone();
    reverted_sorted.sort();
    let mut applied_sorted = applied.clone();
    applied_sorted.sort();
    assert_eq!(reverted_sorted, applied_sorted, "every applied migration is reverted");
    assert_eq!(existing_tables(&db).await, Vec::<&str>::new(), "down.sql leaves no table behind");
    assert!(db.readiness().await.is_err(), "not ready with migrations pending");

    assert_eq!(db.migrate().expect("migrate again"), applied, "the same migrations apply again");
    assert_eq!(existing_tables(&db).await, TABLES);
    db.readiness().await.expect("ready after migrating again");
    assert!(db.migrate().expect("migrate a third time").is_empty(), "nothing left to apply");
}

/// A fresh database on a PostgreSQL or MySQL server, dropped with this value.
pub struct TestDatabase {
    /// The URL of the new database.
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// A new PostgreSQL database, or `None` (after saying why) when the test is skipped.
    pub fn postgres() -> Option<TestDatabase> {
        let admin_url = Self::configured("CALLPLANE_TEST_POSTGRES_URL", "postgres", cfg!(feature = "postgres"))?;
        let db = Self::named(admin_url);
        Self::execute_postgres(&db.admin_url, &format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    /// A new MySQL/MariaDB database, or `None` (after saying why) when the test is skipped.
    pub fn mysql() -> Option<TestDatabase> {
        let admin_url = Self::configured("CALLPLANE_TEST_MYSQL_URL", "mysql", cfg!(feature = "mysql"))?;
        let db = Self::named(admin_url);
        Self::execute_mysql(
            &db.admin_url,
            &format!("CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", db.name),
        );
        Some(db)
    }

    fn configured(var: &str, feature: &str, compiled_in: bool) -> Option<String> {
        if !compiled_in {
            eprintln!("SKIPPED: built without the {feature} feature (cargo nextest run --features {feature})");
            return None;
        }
        match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
            _ => {
                eprintln!("SKIPPED: set {var} to run this");
                None
            }
        }
    }

    fn named(admin_url: String) -> TestDatabase {
        let name = format!("cp_{}", uuid::Uuid::new_v4().simple());
        TestDatabase { url: with_database(&admin_url, &name), admin_url, name }
    }

    #[cfg(feature = "postgres")]
    fn execute_postgres(admin_url: &str, sql: &str) {
        use diesel::connection::SimpleConnection;
        use diesel::{Connection, PgConnection};
        let mut conn = PgConnection::establish(admin_url)
            .unwrap_or_else(|e| panic!("CALLPLANE_TEST_POSTGRES_URL={admin_url} does not answer: {e}"));
        conn.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    #[cfg(not(feature = "postgres"))]
    fn execute_postgres(_: &str, _: &str) {
        unreachable!("skipped before: built without the postgres feature")
    }

    #[cfg(feature = "mysql")]
    fn execute_mysql(admin_url: &str, sql: &str) {
        use diesel::connection::SimpleConnection;
        use diesel::{Connection, MysqlConnection};
        let mut conn = MysqlConnection::establish(admin_url)
            .unwrap_or_else(|e| panic!("CALLPLANE_TEST_MYSQL_URL={admin_url} does not answer: {e}"));
        conn.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    #[cfg(not(feature = "mysql"))]
    fn execute_mysql(_: &str, _: &str) {
        unreachable!("skipped before: built without the mysql feature")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // A panic in a drop during a failing test's unwinding would abort; report instead.
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        let dropped = std::panic::catch_unwind(move || {
            if admin_url.starts_with("postgres") {
                // FORCE ends the connections the server's pool still holds.
                TestDatabase::execute_postgres(&admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            } else {
                TestDatabase::execute_mysql(&admin_url, &format!("DROP DATABASE IF EXISTS {name}"));
            }
        });
        if dropped.is_err() {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// `scheme://user@host:port/anything?query` with the database part replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// A `tel` address.
pub fn tel(number: &str) -> Value {
    serde_json::json!({"type": "tel", "target": number})
}

/// A string field the test relies on.
pub fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_else(|| panic!("{field} in {value}"))
}

/// GETs `path` until `done` holds for a 200 answer (at most 15 s); that answer.
pub async fn poll(
    server: &TestServer,
    tenant: &Tenant,
    path: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let resp = server.get(path, Some(&tenant.token)).await;
        if resp.status.as_u16() == 200 && done(&resp.json) {
            return resp.json;
        }
        assert!(std::time::Instant::now() < deadline, "{what} never happened; last seen {}", resp.text);
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the call is in `status`; the call.
pub async fn wait_call(server: &TestServer, tenant: &Tenant, call_id: &str, status: &str) -> Value {
    poll(server, tenant, &format!("/v1.0/calls/{call_id}"), &format!("call {call_id} {status}"), |c| {
        c["status"] == status
    })
    .await
}
