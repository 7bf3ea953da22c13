#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Conferences end to end over HTTP on the simulated network: Flow 4 of the request
//! flows (join an existing call: pre-flow, then the bridge), dialling out to join,
//! calls to conference addresses, leaving (removed, hung up, conference ended, timed
//! out), the `connect` type, and tenancy.

mod common;

use std::time::Duration;

use callplane::config::Settings;
use callplane_schema::models::{conference, event};
use common::{Tenant, TestServer, poll, str_of, tel, wait_call};
use serde_json::{Value, json};

fn quick(settings: &mut Settings) {
    settings.sim_ring_delay_ms = 20;
    settings.sim_answer_delay_ms = 80;
    settings.sim_dial_timeout_ms = 5_000;
}

async fn server() -> TestServer {
    TestServer::start_with(quick).await
}

/// A call answered by the simulated far end.
async fn live_call(server: &TestServer, tenant: &Tenant, number: &str) -> String {
    let body = json!({"source": tel("+15551234567"), "destinations": [tel(number)]});
    let call = server.post("/v1.0/calls", Some(&tenant.token), body).await.expect(201).clone();
    let id = str_of(&call, "id").to_owned();
    wait_call(server, tenant, &id, "active").await;
    id
}

async fn save_flow(server: &TestServer, tenant: &Tenant, actions: Value) -> String {
    let flow = server.post("/v1.0/flows", Some(&tenant.token), json!({"actions": actions})).await;
    str_of(flow.expect(201), "id").to_owned()
}

async fn conference(server: &TestServer, tenant: &Tenant, body: Value) -> Value {
    let resp = server.post("/v1.0/conferences", Some(&tenant.token), body).await;
    let conference = resp.expect(201).clone();
    assert_eq!(resp.header("location"), Some(format!("/v1.0/conferences/{}", str_of(&conference, "id")).as_str()));
    assert_eq!(conference["status"], "starting");
    assert_eq!(conference["participants"], json!([]));
    conference
}

async fn join(server: &TestServer, tenant: &Tenant, conference_id: &str, call_id: &str) -> Value {
    let path = format!("/v1.0/conferences/{conference_id}/join");
    let resp = server.post(&path, Some(&tenant.token), json!({"call_id": call_id})).await;
    let participant = resp.expect(201).clone();
    assert_eq!(participant["call_id"], call_id);
    assert_eq!(participant["conference_id"], conference_id);
    participant
}

/// The conference once `done` holds for it.
async fn conference_when(
    server: &TestServer,
    tenant: &Tenant,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    poll(server, tenant, &format!("/v1.0/conferences/{id}"), what, done).await
}

fn joined(conference: &Value, count: usize) -> bool {
    let participants = conference["participants"].as_array().unwrap();
    participants.len() == count && participants.iter().all(|p| p["status"] == "joined")
}

async fn event_types(server: &TestServer, resource_id: &str) -> Vec<String> {
    let id = resource_id.to_owned();
    let rows = server.ctx.db.read(move |conn| event::list_for_resource(conn, &id)).await.unwrap();
    rows.into_iter().map(|e| e.event_type).collect()
}

#[actix_web::test]
async fn flow_4_an_existing_call_hears_the_pre_flow_then_joins() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let pre_flow = save_flow(
        &server,
        &tenant,
        json!([{"type": "answer"}, {"type": "talk", "option": {"text": "Welcome to conf", "language": "en-US"}}]),
    )
    .await;
    let conf =
        conference(&server, &tenant, json!({"type": "conference", "name": "standup", "pre_flow_id": pre_flow})).await;
    let conf_id = str_of(&conf, "id");
    let call_id = live_call(&server, &tenant, "+15559876543").await;

    let participant = join(&server, &tenant, conf_id, &call_id).await;
    assert_eq!(participant["status"], "joining", "answered before the pre-flow has played");
    assert!(participant["tm_join"].is_null());

    let conf = conference_when(&server, &tenant, conf_id, "the join", |c| joined(c, 1)).await;
    assert_eq!(conf["status"], "progressing");
    let shown = &conf["participants"][0];
    assert_eq!(shown["id"], participant["id"]);
    assert_eq!(shown["call_id"], call_id.as_str());
    assert!(shown["tm_join"].is_string(), "the join time: {shown}");
    assert_eq!((shown["hold"].as_bool(), shown["mute_direction"].is_null()), (Some(false), true));

    // The pre-flow ran on the call, in its own run: answer, then the talk.
    let call = server.get(&format!("/v1.0/calls/{call_id}"), Some(&tenant.token)).await.expect(200).clone();
    let run = server.get(&format!("/v1.0/activeflows/{}", str_of(&call, "activeflow_id")), Some(&tenant.token)).await;
    let run = run.expect(200);
    assert_eq!(run["executed_actions"], 2);
    assert_eq!(run["actions"][1]["option"]["text"], "Welcome to conf");
    assert_eq!(run["current_action_id"], run["actions"][1]["id"]);
    assert_eq!(run["status"], "running", "it waits in the conference");

    // Events, in the outbox under the conference.
    let types = event_types(&server, conf_id).await;
    assert_eq!(types, ["conference.created", "conference.joined", "conference.updated"], "{types:?}");
    let conf_id_owned = conf_id.to_owned();
    let rows = server.ctx.db.read(move |conn| event::list_for_resource(conn, &conf_id_owned)).await.unwrap();
    let data: Value = serde_json::from_str(&rows[1].data).unwrap();
    assert_eq!(data["id"], participant["id"]);
    assert_eq!(data["status"], "joined");

    // Hold and mute are the call's.
    server.post(&format!("/v1.0/calls/{call_id}/hold"), Some(&tenant.token), json!({})).await.expect(200);
    let conf = server.get(&format!("/v1.0/conferences/{conf_id}"), Some(&tenant.token)).await;
    assert_eq!(conf.expect(200)["participants"][0]["hold"], true);

    // A call in a conference does not join another.
    let other = conference(&server, &tenant, json!({})).await;
    let path = format!("/v1.0/conferences/{}/join", str_of(&other, "id"));
    let resp = server.post(&path, Some(&tenant.token), json!({"call_id": call_id})).await;
    resp.expect_error(409, "CALL_STATE_INVALID");
}

#[actix_web::test]
async fn a_removed_participant_hears_the_post_flow_and_a_hung_up_one_leaves() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let post_flow = save_flow(
        &server,
        &tenant,
        json!([{"type": "talk", "option": {"text": "Goodbye"}}, {"type": "hangup", "option": {"reason": "normal"}}]),
    )
    .await;
    let conf = conference(&server, &tenant, json!({"post_flow_id": post_flow})).await;
    let conf_id = str_of(&conf, "id");
    let first = live_call(&server, &tenant, "+15559876543").await;
    let second = live_call(&server, &tenant, "+15559876544").await;
    let removed = join(&server, &tenant, conf_id, &first).await;
    join(&server, &tenant, conf_id, &second).await;
    conference_when(&server, &tenant, conf_id, "both in", |c| joined(c, 2)).await;

    let path = format!("/v1.0/conferencecalls/{}", str_of(&removed, "id"));
    let left = server.delete(&path, Some(&tenant.token)).await;
    let left = left.expect(200).clone();
    assert_eq!(left["status"], "left");
    assert!(left["tm_leave"].is_string());
    // The post-flow plays and hangs up.
    let ended = wait_call(&server, &tenant, &first, "ended").await;
    assert_eq!(ended["hangup_by"], "local");
    // Deleting again answers the participant as it is.
    assert_eq!(server.delete(&path, Some(&tenant.token)).await.expect(200)["status"], "left");

    // A participant whose call ends leaves; a `conference` goes on without it.
    server.post(&format!("/v1.0/calls/{second}/hangup"), Some(&tenant.token), json!({})).await.expect(200);
    let conf = conference_when(&server, &tenant, conf_id, "everyone gone", |c| {
        c["participants"].as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(conf["status"], "progressing");
    let types = event_types(&server, conf_id).await;
    assert_eq!(types.iter().filter(|t| *t == "conference.left").count(), 2, "{types:?}");
    let all = server.get(&format!("/v1.0/conferencecalls?conference_id={conf_id}"), Some(&tenant.token)).await;
    let all = all.expect(200)["result"].as_array().unwrap().clone();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|p| p["status"] == "left" && p["tm_join"].is_string()));
}

#[actix_web::test]
async fn a_connect_conference_ends_when_one_leaves() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let conf = conference(&server, &tenant, json!({"type": "connect"})).await;
    assert_eq!(conf["type"], "connect");
    let conf_id = str_of(&conf, "id");
    let a = live_call(&server, &tenant, "+15559876543").await;
    let b = live_call(&server, &tenant, "+15559876544").await;
    join(&server, &tenant, conf_id, &a).await;
    join(&server, &tenant, conf_id, &b).await;
    conference_when(&server, &tenant, conf_id, "both in", |c| joined(c, 2)).await;

    server.post(&format!("/v1.0/calls/{a}/hangup"), Some(&tenant.token), json!({})).await.expect(200);
    let conf = conference_when(&server, &tenant, conf_id, "the end", |c| c["status"] == "terminated").await;
    assert_eq!(conf["participants"], json!([]));
    assert!(conf["tm_end"].is_string());
    let types = event_types(&server, conf_id).await;
    assert_eq!(types.last().map(String::as_str), Some("conference.ended"), "{types:?}");
    assert!(types.contains(&"conference.updated".to_owned()), "terminating first: {types:?}");
    // The other call left the conference but is still up.
    wait_call(&server, &tenant, &b, "active").await;
    let resp =
        server.post(&format!("/v1.0/conferences/{conf_id}/join"), Some(&tenant.token), json!({"call_id": b})).await;
    resp.expect_error(409, "CONFERENCE_STATE_INVALID");
}

#[actix_web::test]
async fn deleting_a_conference_lets_everyone_go_and_deleting_it_again_hides_it() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let conf = conference(&server, &tenant, json!({"name": "all hands"})).await;
    let conf_id = str_of(&conf, "id");
    let call = live_call(&server, &tenant, "+15559876543").await;
    join(&server, &tenant, conf_id, &call).await;
    conference_when(&server, &tenant, conf_id, "the join", |c| joined(c, 1)).await;

    let path = format!("/v1.0/conferences/{conf_id}");
    let ending = server.delete(&path, Some(&tenant.token)).await;
    assert_eq!(ending.expect(200)["status"], "terminating");
    let conf = conference_when(&server, &tenant, conf_id, "the end", |c| c["status"] == "terminated").await;
    assert_eq!(conf["participants"], json!([]));
    wait_call(&server, &tenant, &call, "active").await;
    server.put(&path, Some(&tenant.token), json!({"name": "late"})).await.expect_error(409, "CONFERENCE_STATE_INVALID");

    server.delete(&path, Some(&tenant.token)).await.expect(200);
    server.get(&path, Some(&tenant.token)).await.expect_error(404, "CONFERENCE_NOT_FOUND");
    let list = server.get("/v1.0/conferences", Some(&tenant.token)).await;
    assert_eq!(list.expect(200)["result"], json!([]));
}

#[actix_web::test]
async fn a_conference_ends_at_its_timeout_and_can_be_renamed_before() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let conf = conference(&server, &tenant, json!({"timeout": 600})).await;
    let conf_id = str_of(&conf, "id");
    let path = format!("/v1.0/conferences/{conf_id}");
    let renamed = server.put(&path, Some(&tenant.token), json!({"name": "short", "timeout": 1})).await;
    assert_eq!(renamed.expect(200)["name"], "short");
    assert_eq!(renamed.json["timeout"], 1);
    let conf = conference_when(&server, &tenant, conf_id, "the timeout", |c| c["status"] == "terminated").await;
    assert_eq!(conf["name"], "short");
    server.put(&path, Some(&tenant.token), json!({"timeout": -1})).await.expect_error(400, "INVALID_ARGUMENT");
}

#[actix_web::test]
async fn joining_by_dialling_out_and_by_calling_the_conference_address() {
    let server = server().await;
    let tenant = server.tenant("alice").await;
    let conf = conference(&server, &tenant, json!({})).await;
    let conf_id = str_of(&conf, "id");

    let path = format!("/v1.0/conferences/{conf_id}/join");
    let dial = json!({"source": tel("+15551234567"), "destination": tel("+15559876543")});
    let resp = server.post(&path, Some(&tenant.token), dial).await;
    let dialled = resp.expect(201).clone();
    assert_eq!(resp.header("location"), Some(format!("/v1.0/conferencecalls/{}", str_of(&dialled, "id")).as_str()));
    let call = server.get(&format!("/v1.0/calls/{}", str_of(&dialled, "call_id")), Some(&tenant.token)).await;
    assert_eq!(call.expect(200)["destination"]["target"], "+15559876543");

    let body = json!({"source": tel("+15551234567"), "destinations": [{"type": "conference", "target": conf_id}]});
    let call = server.post("/v1.0/calls", Some(&tenant.token), body).await.expect(201).clone();
    let conf = conference_when(&server, &tenant, conf_id, "both in", |c| joined(c, 2)).await;
    assert!(conf["participants"].as_array().unwrap().iter().any(|p| p["call_id"] == call["id"]));

    // Bad requests.
    for bad in [json!({}), json!({"call_id": call["id"], "source": tel("+15551234567")}), json!({"source": tel("1")})] {
        server.post(&path, Some(&tenant.token), bad).await.expect_error(400, "INVALID_ARGUMENT");
    }
    let unknown = json!({"call_id": uuid::Uuid::now_v7()});
    server.post(&path, Some(&tenant.token), unknown).await.expect_error(404, "CALL_NOT_FOUND");
    let to_nowhere = json!({"source": tel("+15551234567"),
        "destinations": [{"type": "conference", "target": uuid::Uuid::now_v7()}]});
    server.post("/v1.0/calls", Some(&tenant.token), to_nowhere).await.expect_error(400, "INVALID_ARGUMENT");
}

#[actix_web::test]
async fn another_customers_conferences_and_participants_are_not_found() {
    let server = server().await;
    let alice = server.tenant("alice").await;
    let bob = server.tenant("bob").await;
    let conf = conference(&server, &alice, json!({})).await;
    let conf_id = str_of(&conf, "id");
    let alice_call = live_call(&server, &alice, "+15559876543").await;
    let participant = join(&server, &alice, conf_id, &alice_call).await;
    let bob_call = live_call(&server, &bob, "+15559876544").await;

    let bob_token = Some(bob.token.as_str());
    let path = format!("/v1.0/conferences/{conf_id}");
    server.get(&path, bob_token).await.expect_error(404, "CONFERENCE_NOT_FOUND");
    server.put(&path, bob_token, json!({"name": "mine"})).await.expect_error(404, "CONFERENCE_NOT_FOUND");
    server.delete(&path, bob_token).await.expect_error(404, "CONFERENCE_NOT_FOUND");
    let join_path = format!("{path}/join");
    server.post(&join_path, bob_token, json!({"call_id": bob_call})).await.expect_error(404, "CONFERENCE_NOT_FOUND");
    let participant_path = format!("/v1.0/conferencecalls/{}", str_of(&participant, "id"));
    server.get(&participant_path, bob_token).await.expect_error(404, "CONFERENCECALL_NOT_FOUND");
    server.delete(&participant_path, bob_token).await.expect_error(404, "CONFERENCECALL_NOT_FOUND");
    assert_eq!(server.get("/v1.0/conferences", bob_token).await.expect(200)["result"], json!([]));
    assert_eq!(server.get("/v1.0/conferencecalls", bob_token).await.expect(200)["result"], json!([]));
    // Bob's call cannot be put in Alice's conference by Alice either.
    let resp = server.post(&join_path, Some(&alice.token), json!({"call_id": bob_call})).await;
    resp.expect_error(404, "CALL_NOT_FOUND");
    // Nor can Bob dial Alice's conference address.
    let body = json!({"source": tel("+15551234567"), "destinations": [{"type": "conference", "target": conf_id}]});
    server.post("/v1.0/calls", bob_token, body).await.expect_error(400, "INVALID_ARGUMENT");
    // Alice's conference is untouched.
    conference_when(&server, &alice, conf_id, "the join", |c| joined(c, 1)).await;
}

#[actix_web::test]
async fn a_conference_a_previous_process_left_live_lets_its_participants_go() {
    use callplane_schema::ids::{CallId, CustomerId};
    use callplane_schema::models::conference::{ConferenceRow, ConferenceStatus, ConferenceType, ConferencecallRow};
    use callplane_schema::models::conference::{ConferencecallStatus, NewConference};

    // A `connect` conference with two participants whose calls a stopped process lost.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let settings = Settings { database_url: url.clone(), ..Settings::default() };
    let db = callplane::open_database(&settings, Duration::ZERO).unwrap();
    let made =
        callplane::provision::bootstrap(&db, common::SECRET.as_bytes(), "alice", common::PASSWORD, 0).await.unwrap();
    let customer: CustomerId = made.customer_id.clone();
    let mut row = ConferenceRow::new(NewConference {
        customer_id: customer,
        kind: ConferenceType::Connect,
        name: "before the restart".into(),
        detail: String::new(),
        timeout: 0,
        pre_flow_id: None,
        post_flow_id: None,
    });
    row.status = ConferenceStatus::Progressing;
    let conf_id = row.id.to_string();
    db.write(move |tx| {
        conference::insert(tx.conn, &row)?;
        for _ in 0..2 {
            let mut participant = ConferencecallRow::new(&row, CallId::new());
            participant.status = ConferencecallStatus::Joined;
            participant.tm_join = Some(callplane_schema::time::now());
            conference::insert_participant(tx.conn, &participant)?;
        }
        Ok(())
    })
    .await
    .unwrap();
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
    let conf = conference_when(&server, &tenant, &conf_id, "the end", |c| c["status"] == "terminated").await;
    assert_eq!(conf["participants"], json!([]));
    let types = event_types(&server, &conf_id).await;
    assert_eq!(types.iter().filter(|t| *t == "conference.left").count(), 2, "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("conference.ended"), "{types:?}");
}
