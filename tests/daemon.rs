#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real binary under the commands an operator types (SPEC §10): `bootstrap`,
//! `migrate`, `serve` with its first start, SIGTERM, JSON logs and refused settings.
//! Each test runs `callplane` in a temporary directory with an empty environment but
//! for the variables it sets, and talks to it over plain HTTP/1.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// Generous bounds for polling; a healthy run takes a fraction of them.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "operator password 1";

/// A working directory with its database, and the environment every command gets.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn database_url(&self) -> String {
        format!("sqlite://{}", self.path().join("cp.db").display())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callplane"));
        cmd.env_clear()
            .current_dir(self.path())
            .env("DATABASE_URL", self.database_url())
            .env("CALLPLANE_DATA_DIR", self.path().join("data"))
            .env("CALLPLANE_WORKERS", "1")
            .env("CALLPLANE_LOG", "info")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs a command that is expected to finish on its own.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        let mut child = Running::spawn(cmd);
        let status = child.wait(STOP_TIMEOUT);
        Output { status, stdout: child.stdout().into_bytes(), stderr: child.stderr().into_bytes() }
    }

    /// `callplane serve` (plus `args`) on a free port, once `/ping` answers.
    fn serve(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let addr = free_addr();
        let bind = addr.to_string();
        let mut all = vec!["serve", "--bind", &bind];
        all.extend_from_slice(args);
        let mut cmd = self.command(&all);
        cmd.envs(env.iter().copied());
        let mut daemon = Running::spawn(cmd);
        daemon.addr = Some(addr);
        daemon.wait_ready();
        daemon
    }
}

/// A port nobody listens on right now.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A child process whose output is collected as it comes.
struct Running {
    child: Child,
    addr: Option<SocketAddr>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("start callplane");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Running { child, addr: None, stdout, stderr, readers }
    }

    fn addr(&self) -> SocketAddr {
        self.addr.expect("a serving daemon")
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.join_readers();
                panic!("callplane exited ({status}) before serving; stderr:\n{}", self.stderr());
            }
            if let Ok(resp) = try_http(self.addr(), "GET", "/ping", &[], "")
                && resp.status == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "/ping did not answer; stderr:\n{}", self.stderr());
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(&self) {
        kill(Pid::from_raw(i32::try_from(self.child.id()).unwrap()), Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits for the exit (killing the process after `timeout`) and for its output.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.join_readers();
                panic!("callplane did not exit within {timeout:?}; stderr:\n{}", self.stderr());
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.join_readers();
        status
    }

    /// SIGTERM, then the exit status.
    fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.wait(STOP_TIMEOUT)
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave a daemon behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

struct HttpResponse {
    status: u16,
    head: String,
    body: String,
}

impl HttpResponse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on its own connection.
fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request_head(addr, method, path, headers, body.len()).as_bytes())?;
    stream.write_all(body.as_bytes())?;
    read_response(stream)
}

fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    try_http(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn request_head(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body_len: usize) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if body_len > 0 {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {body_len}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn read_response(mut stream: TcpStream) -> std::io::Result<HttpResponse> {
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(HttpResponse { status, head: head.to_owned(), body: body.to_owned() })
}

fn bearer(token: &str) -> [(&'static str, String); 1] {
    [("Authorization", format!("Bearer {token}"))]
}

fn get_me(addr: SocketAddr, token: &str) -> HttpResponse {
    let [(name, value)] = bearer(token);
    http(addr, "GET", "/v1.0/me", &[(name, &value)], "")
}

fn bootstrap_json(output: &Output) -> Value {
    assert!(output.status.success(), "bootstrap failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON object: {stdout}");
    serde_json::from_str(lines[0]).unwrap()
}

#[test]
fn bootstrap_is_idempotent_and_its_key_works() {
    let site = Site::new();
    let args = ["bootstrap", "--username", "ops", "--password", PASSWORD, "--balance", "5"];
    let first = bootstrap_json(&site.run(&args, &[]));
    let second = bootstrap_json(&site.run(&args, &[]));
    for field in ["customer_id", "agent_id", "username", "accesskey", "balance"] {
        assert!(!first[field].is_null(), "{field} in {first}");
        assert_eq!(first[field], second[field], "{field}");
    }
    assert_eq!(first["username"], "ops");
    assert_eq!(first["balance"], 5);
    let key = first["accesskey"].as_str().unwrap();
    assert!(key.starts_with("cpk_"));

    // The same username with another password is refused, and changes nothing.
    let refused = site.run(&["bootstrap", "--username", "ops", "--password", "another password"], &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("ops"));

    let mut daemon = site.serve(&[], &[]);
    let me = get_me(daemon.addr(), key);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["customer_id"], first["customer_id"]);
    assert_eq!(me.json()["role"], "admin");
    let login = format!(r#"{{"username": "ops", "password": "{PASSWORD}"}}"#);
    assert_eq!(http(daemon.addr(), "POST", "/auth/login", &[], &login).status, 200);
    assert!(daemon.stop().success());
    assert_eq!(daemon.stdout().trim(), "", "no first-start banner on a database with a customer");
}

#[test]
fn migrate_applies_and_exits_zero() {
    let site = Site::new();
    let output = site.run(&["migrate"], &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0));
    assert!(site.path().join("cp.db").exists());
    // Again, with nothing left to apply.
    assert!(site.run(&["migrate"], &[]).status.success());
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_and_exits_zero() {
    let site = Site::new();
    bootstrap_json(&site.run(&["bootstrap", "--username", "ops", "--password", PASSWORD], &[]));
    let mut daemon = site.serve(&[], &[]);
    let addr = daemon.addr();

    // A login whose body is still arriving when the signal comes.
    let body = format!(r#"{{"username": "ops", "password": "{PASSWORD}"}}"#);
    let (start, rest) = body.split_at(10);
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    slow.write_all(request_head(addr, "POST", "/auth/login", &[], body.len()).as_bytes()).unwrap();
    slow.write_all(start.as_bytes()).unwrap();
    slow.flush().unwrap();
    // Connections are accepted in order: once a later one is answered, the slow one is
    // the server's, and the signal cannot catch it waiting in the backlog.
    assert_eq!(http(addr, "GET", "/ping", &[], "").status, 200);

    daemon.terminate();
    // Shutting down: new connections are refused...
    let deadline = Instant::now() + STOP_TIMEOUT;
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(daemon.child.try_wait().unwrap().is_none(), "exited with a request in flight");
    // ...while the request in flight completes.
    slow.write_all(rest.as_bytes()).unwrap();
    let resp = read_response(slow).unwrap();
    assert_eq!(resp.status, 200, "{}\n{}", resp.head, resp.body);
    assert!(resp.json()["token"].is_string());

    let status = daemon.wait(STOP_TIMEOUT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", daemon.stderr());
}

/// The value after `label` on the banner line that has it.
fn banner_value(banner: &str, label: &str) -> String {
    banner
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label} in the banner:\n{banner}"))
}

#[test]
fn the_first_start_prints_credentials_once() {
    let site = Site::new();
    let mut first = site.serve(&[], &[]);
    // Printed before the listener opened, so it is there once /ping answers; the pipe
    // reader may still be catching up.
    let deadline = Instant::now() + START_TIMEOUT;
    while !first.stdout().contains("curl") {
        assert!(Instant::now() < deadline, "no banner on stdout:\n{}", first.stdout());
        thread::sleep(Duration::from_millis(20));
    }
    let banner = first.stdout();
    let username = banner_value(&banner, "username:");
    let password = banner_value(&banner, "password:");
    let key = banner_value(&banner, "accesskey:");
    assert!(key.starts_with("cpk_"), "{banner}");
    assert!(banner.contains(&format!("curl -s http://{}/v1.0/me", first.addr())), "{banner}");

    // What it prints works.
    let me = get_me(first.addr(), &key);
    assert_eq!(me.status, 200, "{}", me.body);
    let login = serde_json::json!({"username": username, "password": password}).to_string();
    let login = http(first.addr(), "POST", "/auth/login", &[], &login);
    assert_eq!(login.status, 200, "{}", login.body);
    let balance_holder = me.json()["customer_id"].as_str().unwrap().to_owned();
    assert!(first.stop().success());

    let mut second = site.serve(&[], &[]);
    assert_eq!(get_me(second.addr(), &key).json()["customer_id"], balance_holder.as_str());
    assert!(second.stop().success());
    assert_eq!(second.stdout().trim(), "", "the second start prints nothing");
    assert!(!second.stderr().contains(&password), "the password is not logged");
}

#[test]
fn no_bootstrap_creates_nothing() {
    let site = Site::new();
    let mut daemon = site.serve(&["--no-bootstrap"], &[]);
    assert!(daemon.stop().success());
    assert_eq!(daemon.stdout().trim(), "");
    let customers = site.run(&["admin", "customers"], &[]);
    assert!(customers.status.success());
    assert_eq!(String::from_utf8_lossy(&customers.stdout).trim(), "", "no customer was made");
    // CALLPLANE_BOOTSTRAP=false says the same.
    let mut daemon = site.serve(&[], &[("CALLPLANE_BOOTSTRAP", "false")]);
    assert!(daemon.stop().success());
    assert_eq!(daemon.stdout().trim(), "");
}

#[test]
fn admin_commands_make_a_superadmin_and_list_customers() {
    let site = Site::new();
    let ops = bootstrap_json(&site.run(&["bootstrap", "--username", "ops", "--password", PASSWORD], &[]));
    let made =
        site.run(&["admin", "create-superadmin", "--username", "root"], &[("CALLPLANE_ADMIN_PASSWORD", PASSWORD)]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let listed = site.run(&["admin", "customers"], &[]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let customers: Vec<Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(customers.len(), 1, "{listed}");
    assert_eq!(customers[0]["id"], ops["customer_id"]);

    let mut daemon = site.serve(&[], &[]);
    let login = format!(r#"{{"username": "root", "password": "{PASSWORD}"}}"#);
    let token = http(daemon.addr(), "POST", "/auth/login", &[], &login).json()["token"].as_str().unwrap().to_owned();
    let me = get_me(daemon.addr(), &token).json();
    assert_eq!(me["role"], "superadmin");
    assert!(daemon.stop().success());
}

#[test]
fn a_bad_setting_is_refused_by_name() {
    let site = Site::new();
    let output = site.run(&["serve", "--bind", &free_addr().to_string()], &[("CALLPLANE_DB_POOL_SIZE", "lots")]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CALLPLANE_DB_POOL_SIZE"), "{stderr}");
    assert!(stderr.contains("lots"), "{stderr}");

    let output = site.run(&["migrate"], &[("DATABASE_URL", "oracle://db")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL"));
    let output = site.run(&["migrate", "--bind", "nowhere"], &[]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--bind"));
}

#[test]
fn a_configuration_file_is_read_and_overridden() {
    let site = Site::new();
    let file: PathBuf = site.path().join("callplane.toml");
    let from_file = free_addr();
    std::fs::write(&file, format!("bind = \"{from_file}\"\nbootstrap = false\nworkers = 1\n")).unwrap();
    // The file alone: its bind and its bootstrap = false.
    let mut cmd = site.command(&["--config", file.to_str().unwrap()]);
    cmd.env_remove("CALLPLANE_WORKERS");
    let mut daemon = Running::spawn(cmd);
    daemon.addr = Some(from_file);
    daemon.wait_ready();
    assert!(daemon.stop().success());
    assert_eq!(daemon.stdout().trim(), "", "bootstrap = false in the file");
    // An environment variable overrides the file, and a flag the variable.
    let from_env = free_addr();
    let from_flag = free_addr();
    let mut cmd = site.command(&["--config", file.to_str().unwrap(), "serve", "--bind", &from_flag.to_string()]);
    cmd.env("CALLPLANE_BIND", from_env.to_string());
    let mut daemon = Running::spawn(cmd);
    daemon.addr = Some(from_flag);
    daemon.wait_ready();
    assert!(daemon.stop().success());
}

#[test]
fn json_logs_are_one_object_per_line_with_the_request_id() {
    let site = Site::new();
    let mut daemon = site.serve(&["--no-bootstrap"], &[("CALLPLANE_LOG_FORMAT", "json")]);
    let ok = http(daemon.addr(), "GET", "/ping", &[("X-Request-ID", "json-log-ping")], "");
    assert_eq!(ok.status, 200);
    let refused = http(daemon.addr(), "GET", "/v1.0/me", &[("X-Request-ID", "json-log-me")], "");
    assert_eq!(refused.status, 401);
    let secret = format!("cpk_{}", "ab".repeat(32));
    let in_query = http(daemon.addr(), "GET", &format!("/v1.0/me?accesskey={secret}"), &[], "");
    assert_eq!(in_query.status, 401);
    assert!(daemon.stop().success());

    let stderr = daemon.stderr();
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{stderr}");
    for line in &lines {
        for field in ["ts", "level", "target", "msg"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
    }
    for id in ["json-log-ping", "json-log-me"] {
        assert!(lines.iter().any(|l| l["request_id"] == id), "no line with request_id {id}:\n{stderr}");
    }
    assert!(!stderr.contains(&secret), "credentials in a query string are not logged");
    let me = lines.iter().find(|l| l["request_id"] == "json-log-me").unwrap();
    assert!(me["msg"].as_str().unwrap().contains("/v1.0/me"), "{me}");
    assert!(me["msg"].as_str().unwrap().contains("401"), "{me}");
}

#[test]
fn a_crash_loses_no_acknowledged_call_and_leaves_none_live() {
    let site = Site::new();
    let made = bootstrap_json(&site.run(&["bootstrap", "--username", "ops", "--password", PASSWORD], &[]));
    let key = made["accesskey"].as_str().unwrap().to_owned();
    let quick =
        [("CALLPLANE_SIM_RING_DELAY_MS", "20"), ("CALLPLANE_SIM_ANSWER_DELAY_MS", "60"), ("CALLPLANE_LOG", "warn")];
    let mut daemon = site.serve(&["--no-bootstrap"], &quick);
    let addr = daemon.addr();

    // Four clients create calls as fast as they can; every 201 is written down.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (acknowledged, stop, key) = (acknowledged.clone(), stop.clone(), key.clone());
            thread::spawn(move || {
                let body = format!(
                    r#"{{"source": {{"type": "tel", "target": "+15551234567"}}, "destinations": [{{"type": "tel", "target": "+1555987{i:04}"}}]}}"#
                );
                let auth = format!("Bearer {key}");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match try_http(addr, "POST", "/v1.0/calls", &[("Authorization", &auth)], &body) {
                        Ok(resp) if resp.status == 201 => {
                            let id = resp.json()["id"].as_str().unwrap().to_owned();
                            acknowledged.lock().unwrap().push(id);
                        }
                        Ok(_) => {}
                        // The daemon is gone.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Let calls pile up in every state, then pull the plug.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 200 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    daemon.child.kill().unwrap();
    daemon.wait(STOP_TIMEOUT);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200, "only {} calls were created before the crash", acknowledged.len());

    let mut daemon = site.serve(&["--no-bootstrap"], &quick);
    let auth = format!("Bearer {key}");
    for id in &acknowledged {
        let resp = http(daemon.addr(), "GET", &format!("/v1.0/calls/{id}"), &[("Authorization", &auth)], "");
        assert_eq!(resp.status, 200, "acknowledged call {id} was lost: {}", resp.body);
    }
    // Nothing stays live: every call the crash interrupted is ended, as failed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live: usize = ["initiating", "ringing", "active", "terminating"]
            .iter()
            .map(|status| {
                let resp = http(
                    daemon.addr(),
                    "GET",
                    &format!("/v1.0/calls?status={status}"),
                    &[("Authorization", &auth)],
                    "",
                );
                resp.json()["result"].as_array().unwrap().len()
            })
            .sum();
        if live == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} calls are still live after the restart");
        thread::sleep(Duration::from_millis(50));
    }
    let ended = http(daemon.addr(), "GET", "/v1.0/calls?status=ended&page_size=100", &[("Authorization", &auth)], "");
    let failed = ended.json()["result"].as_array().unwrap().iter().filter(|c| c["hangup_reason"] == "failed").count();
    assert!(failed > 0, "the interrupted calls end as failed");
    assert!(daemon.stop().success());
}
