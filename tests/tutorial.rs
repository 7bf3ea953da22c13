#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The published tutorial's client code, run as it is against a real daemon. Needs a
//! Python with `requests` and `redis` (`CALLPLANE_TEST_PYTHON`, which `.ci/run` makes)
//! and a Redis for the client's own cache (`CALLPLANE_TEST_REDIS_URL`); without them
//! each test says `SKIPPED` and passes.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::TestServer;
use serde_json::Value;

/// Runs an example script with `env`; its stdout.
pub async fn run_python(script: &str, env: Vec<(String, String)>) -> Option<String> {
    let Ok(python) = std::env::var("CALLPLANE_TEST_PYTHON") else {
        eprintln!("SKIPPED: set CALLPLANE_TEST_PYTHON to a python with the tutorial's packages (.ci/run makes one)");
        return None;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial").join(script);
    // The daemon's actors share this thread: wait for Python elsewhere.
    let output = actix_web::rt::task::spawn_blocking(move || {
        std::process::Command::new(&python).arg(&script).envs(env).output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("CALLPLANE_TEST_PYTHON does not run: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "the script failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    Some(stdout)
}

#[actix_web::test]
async fn the_tutorials_calls_client_runs_against_callplane() {
    let Ok(redis_url) = std::env::var("CALLPLANE_TEST_REDIS_URL") else {
        eprintln!("SKIPPED: set CALLPLANE_TEST_REDIS_URL for the client's own cache");
        return;
    };
    let address = redis_url.trim_start_matches("redis://").trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "6379"));
    let server = TestServer::start_with(|s| {
        s.sim_ring_delay_ms = 10;
        s.sim_answer_delay_ms = 30;
        s.workers = 2;
    })
    .await;
    let tenant = server.tenant("alice").await;
    let env = vec![
        ("CALLPLANE_API_BASE".to_owned(), format!("{}/v1.0", server.base_url())),
        ("CALLPLANE_TOKEN".to_owned(), tenant.token.clone()),
        ("TUTORIAL_REDIS_HOST".to_owned(), host.to_owned()),
        ("TUTORIAL_REDIS_PORT".to_owned(), port.to_owned()),
    ];
    let Some(stdout) = run_python("calls_client.py", env).await else { return };
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    assert_eq!(seen["create_status"], 201);
    assert_eq!(seen["first_call"]["status"], "initiating");
    assert_eq!((seen["retry_client_status"].as_u64(), seen["retry_loop_status"].as_u64()), (Some(201), Some(200)));
    let parallel: Vec<&str> = seen["parallel_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(parallel.len(), 100);
    let all: HashSet<&str> = seen["all_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(all.len(), 102, "limit/offset pages hold every call once");
    assert!(parallel.iter().all(|id| all.contains(id)));
    assert_eq!(seen["cached_id"], seen["first_call"]["id"]);
    assert_eq!(seen["updated"], true);
    assert!(matches!(seen["after_update"].as_str(), Some("terminating" | "ended")), "{seen}");
}
