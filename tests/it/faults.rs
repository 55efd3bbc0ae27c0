//! Processes dying under live calls, with real `switchboard serve` processes: `kill -9` and a
//! restart of the same node, and two nodes on one PostgreSQL where one dies. Afterwards the
//! counts hold: one record per call, every spoken turn stored, exactly one `call.ended` each,
//! and automations delivered once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_llm::Reply;
use crate::support::relay_client::RelayClient;
use crate::support::server_process::ServerProcess;
use crate::support::webhook_sink::WebhookSink;
use crate::support::{Backend, LINE_TOKEN, PhoneLine, TestApp, sid, spawn_app};

/// Session leases of the nodes under test: a dead node's calls are settled this soon.
const LEASE_SECS: u64 = 3;

/// A live call: rung on the server `app` points at, its relay socket open, one exchange done.
struct LiveCall {
    id: String,
    sid: String,
    relay: RelayClient,
    /// Words each side said, in order.
    caller_said: Vec<String>,
    agent_said: Vec<String>,
}

async fn place_call(app: &TestApp, line: &PhoneLine, fill: char) -> LiveCall {
    let call_sid = sid("CA", fill);
    app.ring(line, &call_sid).await.expect(200);
    app.twilio.set_call(&call_sid, "in-progress", None);
    let calls = app.get("/api/v1/calls?limit=200").await.expect(200);
    let id = calls["data"].as_array().unwrap().iter().find(|c| c["call_sid"] == call_sid.as_str()).expect("the call has a record")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut relay = RelayClient::connect(app.addr, &id, Some(LINE_TOKEN)).await.expect("the signed handshake is accepted");
    relay.setup(&call_sid).await;
    let mut call = LiveCall { id, sid: call_sid, relay, caller_said: Vec::new(), agent_said: Vec::new() };
    exchange(&mut call, &format!("Hello from call {fill}")).await;
    call
}

async fn exchange(call: &mut LiveCall, words: &str) {
    call.relay.say(words).await;
    call.caller_said.push(words.to_owned());
    call.agent_said.push(call.relay.utterance().await.text);
}

/// Waits until the call's turns so far are written (they are, milliseconds after they are
/// spoken; a kill in between loses the turn in flight, which no test should count on).
async fn written(app: &TestApp, call: &LiveCall) {
    let path = format!("/api/v1/calls/{}", call.id);
    app.until(&path, |r| call.agent_said.iter().all(|said| stored_words(r, "agent").contains(said))).await;
}

/// What the transcript holds, by side.
fn stored_words(record: &Value, role: &str) -> Vec<String> {
    record["transcript"].as_array().unwrap().iter().filter(|t| t["role"] == role).map(|t| t["text"].as_str().unwrap().to_owned()).collect()
}

/// The call was settled after its session died: spoken turns all stored, one `call.ended`, and
/// Twilio's late final callback adds nothing.
async fn assert_settled_after_death(app: &TestApp, line: &PhoneLine, call: &LiveCall) {
    let record = app.until(&format!("/api/v1/calls/{}", call.id), |r| r["ended_reason"] == "server_restart").await;
    assert_eq!(record["ended_by"], "system");
    assert_eq!(stored_words(&record, "caller"), call.caller_said, "every caller turn is stored");
    for said in &call.agent_said {
        assert!(stored_words(&record, "agent").contains(said), "the agent's `{said}` is stored: {record}");
    }
    let params = [("AccountSid", line.account.as_str()), ("CallSid", call.sid.as_str()), ("CallStatus", "completed")];
    app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = app.get(&format!("/api/v1/calls/{}/events", call.id)).await.expect(200);
    let ended: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["type"] == "call.ended").collect();
    assert_eq!(ended.len(), 1, "exactly one call.ended: {events}");
}

#[tokio::test]
async fn live_calls_outlive_kill_9_and_a_restart_of_their_node() {
    let mut app = spawn_app(Backend::Sqlite).await;
    let (llm, line) = crate::conversations::line_with_model(&app, json!({ "name": "Ava" })).await;
    llm.script((0..20).map(|_| Reply::says("Sure, one moment.")));
    let mut node = ServerProcess::node_of(&app, "node-a", LEASE_SECS).await;
    app.hand_over_to(node.addr).await;
    let mut calls = Vec::new();
    for fill in ['1', '2', '3', '4'] {
        calls.push(place_call(&app, &line, fill).await);
    }
    for call in &calls {
        written(&app, call).await;
    }

    node.kill();
    let restarted = ServerProcess::node_of(&app, "node-a", LEASE_SECS).await;
    app.addr = restarted.addr;
    for call in &calls {
        assert_settled_after_death(&app, &line, call).await;
        assert!(
            app.twilio.call_updates().iter().any(|(sid, form)| sid == &call.sid && form.contains(&("Status".into(), "completed".into())))
        );
    }
    let records = app.get("/api/v1/calls?limit=200").await.expect(200);
    assert_eq!(records["data"].as_array().unwrap().len(), calls.len(), "one record per call, none lost or doubled");
}

#[tokio::test]
async fn two_nodes_share_one_postgresql_and_the_survivor_settles_a_dead_nodes_calls() {
    let mut app = spawn_app(Backend::Postgres).await;
    let (llm, line) = crate::conversations::line_with_model(&app, json!({ "name": "Ava" })).await;
    llm.script((0..30).map(|_| Reply::says("Sure, one moment.")));
    let sink = WebhookSink::start().await;
    let app_id = app.get(&format!("/api/v1/agents/{}", line.agent)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let hook = json!({ "name": "hook", "trigger": "agent_conversation_ended", "actions": [{ "type": "webhook", "url": sink.url }] });
    app.post(&format!("/api/v1/apps/{app_id}/automations"), hook).await.expect(201);

    let mut a = ServerProcess::node_of(&app, "node-a", LEASE_SECS).await;
    let b = ServerProcess::node_of(&app, "node-b", LEASE_SECS).await;
    app.hand_over_to(a.addr).await;
    let mut on_a = vec![place_call(&app, &line, '1').await, place_call(&app, &line, '2').await];
    app.addr = b.addr;
    let mut on_b = vec![place_call(&app, &line, '3').await, place_call(&app, &line, '4').await];
    for call in &on_a {
        written(&app, call).await;
    }

    a.kill();
    // The survivor keeps serving its own calls and the API.
    for call in &mut on_b {
        exchange(call, "Are you still there?").await;
    }
    // The dead node's calls are settled by the survivor once their leases run out: by lease,
    // not by node name (node-b never held them).
    for call in &on_a {
        assert_settled_after_death(&app, &line, call).await;
    }
    for call in on_b.drain(..) {
        call.relay.close().await;
        let params = [("AccountSid", line.account.as_str()), ("CallSid", call.sid.as_str()), ("CallStatus", "completed")];
        app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);
        let record = app
            .until(&format!("/api/v1/calls/{}", call.id), |r| r["status"] == "completed" && r["transcript"].as_array().unwrap().len() >= 4)
            .await;
        assert_eq!(stored_words(&record, "caller"), call.caller_said);
        assert_ne!(record["ended_reason"], "server_restart", "a live node's call is not taken from it");
    }
    on_a.clear();

    // The automation queue is shared: one delivery per call, whichever node worked it.
    let mut delivered = Vec::new();
    for _ in 0..300 {
        delivered = sink.deliveries().iter().map(|d| d.headers["idempotency-key"].to_str().unwrap().to_owned()).collect::<Vec<_>>();
        if delivered.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut unique = sink.deliveries().iter().map(|d| d.headers["idempotency-key"].to_str().unwrap().to_owned()).collect::<Vec<_>>();
    let total = unique.len();
    unique.sort();
    unique.dedup();
    assert_eq!((total, unique.len()), (4, 4), "each call's event delivered once: {delivered:?}");
}
