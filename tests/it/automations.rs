//! After the call: exactly one `call.ended` event per call, automations that deliver it (signed
//! webhook, e-mail through a real SMTP server, ticket, AI classification), retries visible in the
//! runs API, leases that survive a crashed worker, and restart recovery.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard::app::Application;
use switchboard::automations::Worker;
use switchboard::config::Config;
use switchboard::domain::app::AppSpec;
use switchboard::domain::audit::Actor;
use switchboard::domain::automation::{Action, AutomationSpec, Filters, Trigger};
use switchboard::domain::call::{CallEnding, CallStatus, EndReason, EndedBy};
use switchboard::domain::ids::AppId;
use switchboard::domain::time;
use switchboard::providers::egress::Egress;
use switchboard::storage::{apps, automations, calls, orgs};

use crate::conversations::{connect, ring_agent};
use crate::support::fake_llm::Reply;
use crate::support::smtp_server::SmtpServer;
use crate::support::webhook_sink::WebhookSink;
use crate::support::{Backend, LINE_TOKEN, PhoneLine, TestApp, on_both_backends, per_backend, spawn_app_with};

per_backend!(
    a_finished_call_is_delivered_classified_mailed_and_ticketed,
    a_receiver_that_is_down_gets_the_event_once_it_is_up,
    invalid_classifications_fail_clearly_and_can_be_retried,
    automations_are_validated_and_private_targets_refused,
    a_model_that_refuses_the_request_fails_the_run_without_retries,
    a_refused_json_schema_falls_back_to_json_mode,
    a_crashed_worker_leaves_its_run_to_another,
    a_run_out_of_retry_time_is_dead_until_retried,
    a_restart_finalises_an_orphaned_call_exactly_once,
);

on_both_backends!(stale_calls_are_settled_with_twilio);

/// An enabled automation that posts every ended call to `sink`.
fn webhook_to(sink: &WebhookSink) -> AutomationSpec {
    AutomationSpec {
        name: "hook".into(),
        trigger: Trigger::AgentConversationEnded,
        filters: Filters::default(),
        actions: vec![Action::Webhook { url: sink.url.clone(), headers: Default::default() }],
        enabled: true,
    }
}

/// An app whose webhooks may reach loopback and whose retries start after a second.
async fn app_for_automations(backend: Backend, smtp: Option<&SmtpServer>) -> TestApp {
    let smtp_url = smtp.map(SmtpServer::url);
    spawn_app_with(backend, move |config: &mut Config| {
        config.allow_private_webhook_targets = true;
        config.automation_retry_base_secs = 1;
        config.smtp_url = smtp_url;
        config.smtp_from = "Switchboard <calls@switchboard.test>".into();
    })
    .await
}

/// Polls `path` until `condition` holds on its JSON body (10 s at most).
fn signature_of(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `Switchboard-Signature` the way a receiver would.
fn assert_signed(secret: &str, delivery: &crate::support::webhook_sink::Delivery) {
    let header = delivery.headers["switchboard-signature"].to_str().unwrap();
    let (t, v1) = header.split_once(',').unwrap();
    let timestamp = t.strip_prefix("t=").unwrap();
    assert_eq!(v1.strip_prefix("v1=").unwrap(), signature_of(secret, timestamp, &delivery.body), "the signature verifies");
    let age = time::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "the timestamp is current");
}

const CLASSIFICATION: &str = r#"{"sentiment":"negative","resolution":"escalated","satisfaction":2,"summary":"The caller disputes a bill and wants a person.","categories":{"topic":"billing"}}"#;

async fn a_finished_call_is_delivered_classified_mailed_and_ticketed(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = app_for_automations(backend, Some(&smtp)).await;
    let sink = WebhookSink::start().await;
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    let app_id = app.get(&format!("/api/v1/calls/{}", call.id)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let created = app
        .post(
            &format!("/api/v1/apps/{app_id}/automations"),
            json!({
                "name": "After every call",
                "filters": { "ended_reasons": ["agent_ended"] },
                "actions": [
                    { "type": "ai_classify", "categories": [{ "name": "topic", "values": ["billing", "other"] }] },
                    { "type": "webhook", "url": sink.url, "headers": { "X-Team": "support" } },
                    { "type": "create_record", "title": "{{ caller }}: {{ classification.categories.topic }}" },
                    { "type": "email", "to": ["ops@example.com"], "subject": "Call from {{ caller }} ({{ classification.sentiment }})",
                      "body": "Agent {{ agent_name }} spoke for {{ duration_secs }} s.\n{{ summary }}\n\n{{ transcript }}" },
                ],
            }),
        )
        .await
        .expect(201);
    let secret = created["signing_secret"].as_str().unwrap().to_owned();
    let automation = created["id"].as_str().unwrap().to_owned();
    let analyzed_sink = WebhookSink::start().await;
    let on_analysis =
        json!({ "name": "Analysed", "trigger": "call_analyzed", "actions": [{ "type": "webhook", "url": analyzed_sink.url }] });
    let on_analysis = app.post(&format!("/api/v1/apps/{app_id}/automations"), on_analysis).await.expect(201);

    call.llm.script([
        Reply::says("Let me look at that bill."),
        Reply::calls(
            "endConversation",
            json!({ "summary": "Bill dispute, passed to billing.", "next_steps": "Billing calls back.", "closing_message": "Goodbye!" }),
        ),
        Reply::says(CLASSIFICATION),
    ]);
    let mut relay = connect(&app, &call).await;
    relay.say("My bill is wrong.").await;
    relay.utterance().await;
    relay.say("Thanks, that's all.").await;
    relay.utterance().await;
    assert_eq!(relay.next().await.unwrap()["type"], "end");
    relay.close().await;

    let runs = app.until(&format!("/api/v1/automations/{automation}/runs"), |b| b["data"][0]["status"] == "succeeded").await;
    let run = &runs["data"][0];
    assert_eq!((run["attempts"].as_i64(), run["next_step"].as_i64()), (Some(1), Some(4)), "{run}");
    assert_eq!(run["outputs"][1]["status"], 204);

    let deliveries = sink.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_signed(&secret, &deliveries[0]);
    let event: Value = serde_json::from_slice(&deliveries[0].body).unwrap();
    assert_eq!(deliveries[0].headers["idempotency-key"].to_str().unwrap(), event["event_id"].as_str().unwrap());
    assert_eq!(deliveries[0].headers["x-team"], "support");
    assert_eq!((event["type"].as_str(), event["schema_version"].as_i64()), (Some("call.ended"), Some(3)));
    assert_eq!(event["call"]["id"], call.id.as_str());
    assert_eq!(event["call"]["from"], "+14155550123");
    assert_eq!(event["call"]["ended_reason"], "agent_ended");
    assert_eq!(event["call"]["agent"]["name"], "Ava");
    let turns = event["call"]["transcript"]["turns"].as_array().unwrap();
    assert_eq!(turns[0]["text"], "My bill is wrong.");
    assert!(turns.iter().all(|t| t["started_at"].is_string() && t["offset_ms"].is_i64()));
    assert_eq!(event["call"]["transcript"]["tool_calls"][0]["name"], "endConversation");
    assert!(event["call"]["latency"]["p50_ms"].is_i64() && event["call"]["latency"]["p95_ms"].is_i64());

    let record = app.get(&format!("/api/v1/calls/{}", call.id)).await.expect(200);
    assert_eq!(record["analysis"]["sentiment"], "negative");
    assert_eq!(record["analysis"]["categories"]["topic"], "billing");
    // The classification's tokens (the third answer, as the server counted them) join the
    // call's usage and cost, beside the conversation's.
    let (prompt, completion) = call.llm.counted()[2];
    let usage = &record["usage"];
    assert_eq!(
        (usage["classification_input_tokens"].as_i64(), usage["classification_output_tokens"].as_i64()),
        (Some(prompt), Some(completion))
    );
    let conversation: i64 = call.llm.counted()[..2].iter().map(|(p, _)| p).sum();
    assert_eq!(usage["model_input_tokens"].as_i64(), Some(conversation), "{usage}");
    assert!(record["cost"]["lines"].as_array().unwrap().iter().any(|l| l["item"] == "classification"), "{}", record["cost"]);
    let events = app.get(&format!("/api/v1/calls/{}/events", call.id)).await.expect(200);
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["call.ended", "call.analyzed"]);
    assert_eq!(events[1]["call"]["analysis"]["resolution"], "escalated");

    app.until(&format!("/api/v1/automations/{}/runs", on_analysis["id"].as_str().unwrap()), |b| b["data"][0]["status"] == "succeeded")
        .await;
    let analyzed: Value = serde_json::from_slice(&analyzed_sink.deliveries()[0].body).unwrap();
    assert_eq!(analyzed["type"], "call.analyzed");
    assert_eq!(analyzed["call"]["analysis"]["summary"], "The caller disputes a bill and wants a person.");
    assert_signed(on_analysis["signing_secret"].as_str().unwrap(), &analyzed_sink.deliveries()[0]);

    let tickets = app.get(&format!("/api/v1/apps/{app_id}/tickets?call_id={}", call.id)).await.expect(200);
    assert_eq!(tickets["data"].as_array().unwrap().len(), 1);
    assert_eq!(tickets["data"][0]["title"], "+14155550123: billing");
    assert_eq!(tickets["data"][0]["priority"], "high", "an escalated, unhappy call");
    assert!(tickets["data"][0]["description"].as_str().unwrap().contains("Caller: My bill is wrong."));

    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "one e-mail in the SMTP server's mailbox");
    assert!(messages[0].contains("Subject: Call from +14155550123 (negative)"), "{}", messages[0]);
    assert!(messages[0].contains("Agent Ava spoke for"), "{}", messages[0]);
    assert!(messages[0].contains("ops@example.com"));

    // Twilio's final callback after the agent's ending changes the record, not the event count.
    let params =
        [("AccountSid", call.line.account.as_str()), ("CallSid", call.sid.as_str()), ("CallStatus", "completed"), ("CallDuration", "12")];
    app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);
    let events = app.get(&format!("/api/v1/calls/{}/events", call.id)).await.expect(200);
    assert_eq!(events.as_array().unwrap().len(), 2);
    let report = app.get(&format!("/api/v1/apps/{app_id}/analytics")).await.expect(200);
    assert_eq!(report["totals"]["calls"], 1);
    assert_eq!(report["sentiment"]["negative"], 1);
    assert_eq!(report["totals"]["resolution_rate"], 0.0);
    assert_eq!(report["ended_reasons"]["agent_ended"], 1);
}

async fn a_receiver_that_is_down_gets_the_event_once_it_is_up(backend: Backend) {
    let app = app_for_automations(backend, None).await;
    let sink = WebhookSink::start().await;
    sink.set_down(true);
    let line = app.phone_line(json!({ "name": "Ava" })).await;
    let app_id = app.get(&format!("/api/v1/agents/{}", line.agent)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let created = app
        .post(&format!("/api/v1/apps/{app_id}/automations"), json!({ "name": "hook", "actions": [{ "type": "webhook", "url": sink.url }] }))
        .await
        .expect(201);
    let runs_path = format!("/api/v1/automations/{}/runs", created["id"].as_str().unwrap());
    let call_sid = crate::support::sid("CA", 'd');
    app.ring(&line, &call_sid).await.expect(200);
    let params =
        [("AccountSid", line.account.as_str()), ("CallSid", call_sid.as_str()), ("CallStatus", "completed"), ("CallDuration", "30")];
    app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);

    let failing = app.until(&runs_path, |b| b["data"][0]["attempts"].as_i64() >= Some(1) && b["data"][0]["status"] == "pending").await;
    let run = &failing["data"][0];
    assert!(run["last_error"].as_str().unwrap().contains("HTTP 503"), "{run}");
    assert!(run["next_attempt_at"].is_string());
    assert!(sink.refused() >= 1);

    sink.set_down(false);
    let done = app.until(&runs_path, |b| b["data"][0]["status"] == "succeeded").await;
    assert!(done["data"][0]["attempts"].as_i64().unwrap() >= 2, "{}", done["data"][0]);
    assert_eq!(done["data"][0]["last_error"], Value::Null, "a success clears the earlier attempt's error");
    assert_eq!(sink.deliveries().len(), 1, "delivered once");
    let event: Value = serde_json::from_slice(&sink.deliveries()[0].body).unwrap();
    assert_eq!(event["call"]["ended_reason"], "caller_hangup");
    assert_eq!(event["call"]["duration_ms"], 30_000);
}

async fn a_model_that_refuses_the_request_fails_the_run_without_retries(backend: Backend) {
    let app = app_for_automations(backend, None).await;
    let llm = crate::support::fake_llm::FakeLlm::start().await;
    llm.script([Reply::fails(401), Reply::fails(401), Reply::fails(401)]);
    let (line, runs_path) = classifying_line(&app, &llm).await;
    end_a_call(&app, &line, 'r').await;
    let failed = app.until(&runs_path, |b| b["data"][0]["status"] == "failed").await;
    let run = &failed["data"][0];
    assert_eq!(run["attempts"], 1, "a 401 is not worth another attempt: {run}");
    assert!(
        run["last_error"].as_str().unwrap().contains("the model refused the request")
            && run["last_error"].as_str().unwrap().contains("401"),
        "{run}"
    );
    assert_eq!(run["next_attempt_at"], Value::Null);
}

async fn invalid_classifications_fail_clearly_and_can_be_retried(backend: Backend) {
    let app = app_for_automations(backend, None).await;
    let llm = crate::support::fake_llm::FakeLlm::start().await;
    llm.script([Reply::says("It went fine I think."), Reply::says(r#"{"sentiment":"great"}"#), Reply::says("{not json")]);
    let (line, runs_path) = classifying_line(&app, &llm).await;
    end_a_call(&app, &line, 'e').await;

    let failed = app.until(&runs_path, |b| b["data"][0]["status"] == "failed").await;
    let run = &failed["data"][0];
    assert!(run["last_error"].as_str().unwrap().contains("no valid classification in 3 tries"), "{run}");
    assert_eq!(llm.requests().len(), 3, "asked three times");
    assert!(llm.requests()[0]["response_format"]["json_schema"]["schema"]["required"].is_array(), "constrained by a JSON schema");

    llm.script([Reply::says(r#"{"sentiment":"positive","resolution":"resolved","satisfaction":5,"summary":"All good.","categories":{}}"#)]);
    let run_id = run["id"].as_str().unwrap();
    app.post(&format!("/api/v1/automation-runs/{run_id}/retry"), json!(null)).await.expect(200);
    app.until(&runs_path, |b| b["data"][0]["status"] == "succeeded").await;
    let detail = app.post(&format!("/api/v1/automation-runs/{run_id}/retry"), json!(null)).await.problem(409);
    assert!(detail.contains("succeeded"), "{detail}");
    let call = app.get("/api/v1/calls").await.expect(200)["data"][0].clone();
    assert_eq!(call["analysis"]["satisfaction"], 5);
}

/// A line whose app classifies every ended call with `llm`, and the path of its runs.
async fn classifying_line(app: &TestApp, llm: &crate::support::fake_llm::FakeLlm) -> (PhoneLine, String) {
    app.post("/api/v1/llm-providers", json!({ "name": "fake", "base_url": llm.base_url, "default_model": "m" })).await.expect(201);
    let line = app.phone_line(json!({ "name": "Ava" })).await;
    let app_id = app.get(&format!("/api/v1/agents/{}", line.agent)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let created = app
        .post(&format!("/api/v1/apps/{app_id}/automations"), json!({ "name": "classify", "actions": [{ "type": "ai_classify" }] }))
        .await
        .expect(201);
    (line, format!("/api/v1/automations/{}/runs", created["id"].as_str().unwrap()))
}

/// A call to `line` (SID filled with `letter`) that rings and ends at once.
async fn end_a_call(app: &TestApp, line: &PhoneLine, letter: char) {
    let call_sid = crate::support::sid("CA", letter);
    app.ring(line, &call_sid).await.expect(200);
    let params = [("AccountSid", line.account.as_str()), ("CallSid", call_sid.as_str()), ("CallStatus", "completed")];
    app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);
}

/// Some servers answer `response_format: json_schema` with a 500: the classification asks again
/// in JSON mode at once, without spending a try, and the next call starts there.
async fn a_refused_json_schema_falls_back_to_json_mode(backend: Backend) {
    let app = app_for_automations(backend, None).await;
    let llm = crate::support::fake_llm::FakeLlm::start().await;
    let valid = r#"{"sentiment":"neutral","resolution":"resolved","satisfaction":4,"summary":"Hours.","categories":{}}"#;
    llm.refuse_json_schema(500);
    llm.script([Reply::says(valid), Reply::says(valid)]);
    let (line, runs_path) = classifying_line(&app, &llm).await;
    for (n, letter) in [(1, 'f'), (2, 'b')] {
        end_a_call(&app, &line, letter).await;
        let runs = app
            .until(&runs_path, |b| {
                b["data"].as_array().unwrap().len() == n && b["data"].as_array().unwrap().iter().all(|r| r["status"] == "succeeded")
            })
            .await;
        assert_eq!(runs["data"][0]["attempts"], 1, "the refusal was not a failed attempt: {}", runs["data"][0]);
    }
    let formats: Vec<Value> = llm.requests().iter().map(|r| r["response_format"]["type"].clone()).collect();
    // The client retries a 500 once before giving up; then JSON mode, remembered for the next call.
    assert_eq!(formats, [json!("json_schema"), json!("json_schema"), json!("json_object"), json!("json_object")]);
}

/// A database with one ended call whose event waits for a webhook automation, and no server:
/// the test plays the workers itself.
struct QueueFixture {
    config: Config,
    db: switchboard::storage::Db,
    org: switchboard::domain::ids::OrgId,
    automation: switchboard::domain::ids::AutomationId,
    sink: WebhookSink,
    _dir: tempfile::TempDir,
}

async fn queue_fixture(backend: Backend) -> QueueFixture {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::support::fresh_database_url(backend, dir.path()).await;
    let config = Config { database_url: url, data_dir: dir.path().to_owned(), allow_private_webhook_targets: true, ..Config::default() };
    let db = switchboard::app::open_database(&config).await.unwrap();
    let org = orgs::create(&db, "acme", Actor::System).await.unwrap().id;
    let app = apps::create(&db, org, AppSpec::new("Support", "").unwrap(), Actor::System).await.unwrap();
    let sink = WebhookSink::start().await;
    let spec = webhook_to(&sink);
    let (automation, _) = automations::create(&db, org, app.id, spec, Actor::System).await.unwrap();
    let mut new = crate::calls::new_call("CA1", &app.id.to_string(), &uuid::Uuid::now_v7().to_string(), CallStatus::InProgress, 1);
    new.agent_id = None;
    let call = calls::open(&db, org, new).await.unwrap();
    let ending = CallEnding::new(EndedBy::Caller, EndReason::CallerHangup);
    calls::finish_conversation(&db, org, call.id, &ending).await.unwrap();
    calls::finish_conversation(&db, org, call.id, &ending).await.unwrap();
    assert_eq!(automations::dispatch_events(&db, 10).await.unwrap(), 1, "one event, one run");
    assert_eq!(automations::dispatch_events(&db, 10).await.unwrap(), 0);
    QueueFixture { config, db, org, automation: automation.id, sink, _dir: dir }
}

impl QueueFixture {
    async fn only_run(&self) -> switchboard::domain::automation::AutomationRun {
        let page = switchboard::storage::PageRequest { before: None, limit: 10 };
        let mut runs = automations::runs(&self.db, self.org, self.automation, page).await.unwrap().items;
        assert_eq!(runs.len(), 1);
        runs.remove(0)
    }
}

async fn a_crashed_worker_leaves_its_run_to_another(backend: Backend) {
    let fixture = queue_fixture(backend).await;
    let db = &fixture.db;
    let now = time::now();
    let first = automations::claim_due(db, now, now + chrono::Duration::seconds(30)).await.unwrap().expect("a due run");
    drop(first); // the worker dies between claim and completion
    assert!(automations::claim_due(db, now, now + chrono::Duration::seconds(30)).await.unwrap().is_none(), "leased");
    let later = now + chrono::Duration::seconds(31);
    let second = automations::claim_due(db, later, later + chrono::Duration::seconds(30)).await.unwrap().expect("the lease ran out");
    assert_eq!(second.run.attempts, 2);
    assert_eq!(second.automation.id, fixture.automation);
    Worker::from_config(db.clone(), &fixture.config, Egress::unrestricted(), switchboard::models::LoadedModels::none())
        .unwrap()
        .execute(second)
        .await;
    assert_eq!(fixture.only_run().await.status.as_str(), "succeeded");
    assert_eq!(fixture.sink.deliveries().len(), 1);
}

async fn a_run_out_of_retry_time_is_dead_until_retried(backend: Backend) {
    let fixture = queue_fixture(backend).await;
    let db = &fixture.db;
    fixture.sink.set_down(true);
    let worker =
        Worker::from_config(db.clone(), &fixture.config, Egress::unrestricted(), switchboard::models::LoadedModels::none()).unwrap();
    let now = time::now();
    let claimed = automations::claim_due(db, now, now + chrono::Duration::seconds(30)).await.unwrap().unwrap();
    worker.execute(claimed).await;
    let run = fixture.only_run().await;
    assert_eq!(run.status.as_str(), "pending", "retried while within the 24 hours");
    let next = run.next_attempt_at.unwrap();
    assert!(next > now + chrono::Duration::seconds(7) && next < now + chrono::Duration::seconds(13), "10 s ± 20%: {next}");

    // A day later the receiver is still down: the next failure gives up.
    let day_later = now + chrono::Duration::hours(25);
    let mut claimed = automations::claim_due(db, day_later, day_later + chrono::Duration::seconds(30)).await.unwrap().unwrap();
    claimed.run.give_up_at = now - chrono::Duration::seconds(1);
    worker.execute(claimed).await;
    let run = fixture.only_run().await;
    assert_eq!(run.status.as_str(), "dead");
    assert!(run.last_error.as_deref().unwrap().contains("gave up after 2 attempts"), "{:?}", run.last_error);
    assert!(automations::claim_due(db, day_later, day_later).await.unwrap().is_none(), "a dead run is not claimed");

    fixture.sink.set_down(false);
    let retried = automations::retry(db, fixture.org, run.id, Actor::System).await.unwrap();
    assert_eq!(retried.status.as_str(), "pending");
    let now = time::now();
    let claimed = automations::claim_due(db, now, now + chrono::Duration::seconds(30)).await.unwrap().unwrap();
    worker.execute(claimed).await;
    assert_eq!(fixture.only_run().await.status.as_str(), "succeeded");
    assert_eq!(fixture.sink.deliveries().len(), 1);
}

/// A process dies with a call's session; another process starts on the same database (and host)
/// while a first process still serves a live call: only the dead session's call is settled.
async fn a_restart_finalises_an_orphaned_call_exactly_once(backend: Backend) {
    let app = app_for_automations(backend, None).await;
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::says("Sure, one moment."), Reply::says("Still here.")]);
    let mut relay = connect(&app, &call).await;
    relay.say("Hello?").await;
    relay.utterance().await;
    app.twilio.set_call(&call.sid, "in-progress", None);
    // A call whose session died with its process: claimed, and the lease ran out.
    let dead_sid = crate::support::sid("CA", 'd');
    app.ring(&call.line, &dead_sid).await.expect(200);
    app.twilio.set_call(&dead_sid, "in-progress", None);
    let dead = calls::find_by_sid(&app.db, &dead_sid).await.unwrap().unwrap();
    let expired = switchboard::domain::time::now() - chrono::Duration::seconds(5);
    assert!(calls::claim_session(&app.db, app.org, dead.id, "crashed-host/1", expired).await.unwrap());
    // Another call rang but its WebSocket never connected; Twilio still has it live.
    let waiting_sid = crate::support::sid("CA", '7');
    app.ring(&call.line, &waiting_sid).await.expect(200);
    app.twilio.set_call(&waiting_sid, "in-progress", None);
    // And one rang whose caller hung up while no server was up.
    let gone_sid = crate::support::sid("CA", '6');
    app.ring(&call.line, &gone_sid).await.expect(200);
    app.twilio.set_call(&gone_sid, "completed", Some(4));

    // A second process on the same database and node name, as in a blue/green deploy.
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        database_url: app.database_url.clone(),
        data_dir: app.data_dir.path().to_owned(),
        twilio_api_base: app.twilio.base_url(),
        provider_verify_interval_secs: 0,
        ..Config::default()
    };
    let second = Application::build(config).await.expect("the second process starts without asking Twilio first");
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = stop.clone();
    let running = tokio::spawn(second.run(async move { signal.notified().await }));
    let record = app.until(&format!("/api/v1/calls/{}", dead.id), |r| r["ended_reason"].is_string()).await;
    assert_eq!((record["ended_by"].as_str(), record["ended_reason"].as_str()), (Some("system"), Some("server_restart")));
    assert!(app.twilio.call_updates().iter().any(|(sid, form)| sid == &dead_sid && form.contains(&("Status".into(), "completed".into()))));
    let gone = app
        .until("/api/v1/calls", |b| {
            b["data"].as_array().unwrap().iter().any(|c| c["call_sid"] == gone_sid.as_str() && c["status"] == "completed")
        })
        .await;
    let by_sid = |sid: &str| gone["data"].as_array().unwrap().iter().find(|c| c["call_sid"] == sid).unwrap().clone();
    assert_eq!(by_sid(&gone_sid)["duration_secs"], 4, "Twilio's answer");
    assert_eq!(by_sid(&waiting_sid)["ended_reason"], Value::Null, "a live call without a session is left to Twilio");
    assert!(app.twilio.call_updates().iter().all(|(sid, _)| sid != &waiting_sid), "and not hung up");
    assert_eq!(by_sid(&call.sid)["ended_reason"], Value::Null, "the first process's live call is not touched");
    assert!(app.twilio.call_updates().iter().all(|(sid, _)| sid != &call.sid));
    relay.say("Are you there?").await;
    assert_eq!(relay.utterance().await.text, "Still here.");
    stop.notify_one();
    running.await.unwrap().unwrap();

    // The dead session's call: Twilio's late callback adds no second event.
    let params = [("AccountSid", call.line.account.as_str()), ("CallSid", dead_sid.as_str()), ("CallStatus", "completed")];
    app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = app.get(&format!("/api/v1/calls/{}/events", dead.id)).await.expect(200);
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["call"]["ended_reason"], "server_restart");
    relay.close().await;
}

async fn automations_are_validated_and_private_targets_refused(backend: Backend) {
    // No egress exceptions: the receiver on loopback is a private target.
    let app = spawn_app_with(backend, |config| config.egress_allow.clear()).await;
    let line = app.phone_line(json!({ "name": "Ava" })).await;
    let app_id = app.get(&format!("/api/v1/agents/{}", line.agent)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/apps/{app_id}/automations");
    let invalid = |actions: Value| json!({ "name": "x", "actions": actions });
    let reply =
        app.post(&path, invalid(json!([{ "type": "email", "to": ["a@example.com"], "subject": "{{ calller }}", "body": "" }]))).await;
    assert_eq!(reply.body["errors"][0]["field"], "actions[0].subject");
    assert!(reply.problem(422).contains("calller"));
    app.post(&path, invalid(json!([]))).await.problem(422);
    assert!(app.post(&path, invalid(json!([{ "type": "sms", "to": "+1" }]))).await.problem(400).contains("unknown variant `sms`"));
    let loop_back = json!({ "name": "x", "trigger": "call_analyzed", "actions": [{ "type": "ai_classify" }] });
    assert!(app.post(&path, loop_back).await.problem(422).contains("call_analyzed"));
    let headers = invalid(json!([{ "type": "webhook", "url": "https://example.com", "headers": { "Idempotency-Key": "x" } }]));
    app.post(&path, headers).await.problem(422);

    // Webhooks may not reach loopback unless the configuration allows it: refused when saved,
    // and (saved while it was allowed) refused for good when delivered.
    let sink = WebhookSink::start().await;
    let hook = json!({ "name": "hook", "actions": [{ "type": "webhook", "url": sink.url }] });
    assert!(app.post(&path, hook.clone()).await.problem(422).contains("egress_allow"));
    let spec = webhook_to(&sink);
    let app_uuid: AppId = app_id.parse().unwrap();
    let (stored, secret) = automations::create(&app.db, app.org, app_uuid, spec, Actor::System).await.unwrap();
    let created = json!({ "id": stored.id.to_string(), "signing_secret": secret });
    let id = created["id"].as_str().unwrap();
    assert!(created["signing_secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(app.get(&format!("/api/v1/automations/{id}")).await.expect(200).get("signing_secret").is_none(), "shown once");
    let rotated = app.post(&format!("/api/v1/automations/{id}/signing-secret"), json!(null)).await.expect(200);
    let rotated = rotated["signing_secret"].as_str().unwrap();
    assert!(rotated.starts_with("whsec_") && rotated != created["signing_secret"].as_str().unwrap());
    let call_sid = crate::support::sid("CA", 'f');
    app.ring(&line, &call_sid).await.expect(200);
    let params = [("AccountSid", line.account.as_str()), ("CallSid", call_sid.as_str()), ("CallStatus", "completed")];
    app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);
    let runs = app.until(&format!("/api/v1/automations/{id}/runs"), |b| b["data"][0]["status"] == "failed").await;
    assert!(runs["data"][0]["last_error"].as_str().unwrap().contains("private or local address"), "{}", runs["data"][0]);
    assert_eq!(sink.deliveries().len(), 0);

    // A disabled automation creates no runs; changes are validated too.
    let patched = app.patch(&format!("/api/v1/automations/{id}"), json!({ "enabled": false, "name": "renamed" })).await.expect(200);
    assert_eq!((patched["enabled"].as_bool(), patched["name"].as_str()), (Some(false), Some("renamed")));
    app.patch(&format!("/api/v1/automations/{id}"), json!({ "actions": [] })).await.problem(422);
    let second = crate::support::sid("CA", '9');
    app.ring(&line, &second).await.expect(200);
    let params = [("AccountSid", line.account.as_str()), ("CallSid", second.as_str()), ("CallStatus", "completed")];
    app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.get(&format!("/api/v1/automations/{id}/runs")).await.expect(200)["data"].as_array().unwrap().len(), 1);
    app.delete(&format!("/api/v1/automations/{id}")).await.expect(204);
    app.get(&format!("/api/v1/automations/{id}/runs")).await.problem(404);
}

async fn stale_calls_are_settled_with_twilio(app: TestApp) {
    use switchboard::domain::ids::PhoneProviderId;
    use switchboard::telephony::twilio::{recovery, rest::TwilioClient};
    let line = app.phone_line(json!({ "name": "Ava" })).await;
    let app_id = app.get(&format!("/api/v1/agents/{}", line.agent)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let open = |sid: &str, minutes_ago: i64| {
        let mut new = crate::calls::new_call(sid, &app_id, &line.agent, CallStatus::InProgress, minutes_ago);
        new.provider_id = Some(PhoneProviderId(line.provider.parse().unwrap()));
        calls::open(&app.db, app.org, new)
    };
    let (stale_sid, recent_sid) = (crate::support::sid("CA", '5'), crate::support::sid("CA", '4'));
    let stale = open(&stale_sid, 7 * 60).await.unwrap();
    let recent = open(&recent_sid, 10).await.unwrap();
    app.twilio.set_call(&stale_sid, "completed", Some(95));
    app.twilio.set_call(&recent_sid, "completed", Some(5));
    // Calls Twilio cannot be asked about (no provider any more): settled after a day, not before.
    let unaskable = |sid: &str, hours_ago: i64| {
        calls::open(&app.db, app.org, crate::calls::new_call(sid, &app_id, &line.agent, CallStatus::InProgress, hours_ago * 60))
    };
    let abandoned = unaskable("CA-abandoned", 25).await.unwrap();
    let orphan = unaskable("CA-orphan", 8).await.unwrap();
    let twilio = TwilioClient::new(&app.twilio.base_url());
    assert_eq!(recovery::settle_stale_calls(&app.db, &twilio).await.unwrap(), 2);
    let record = app.get(&format!("/api/v1/calls/{}", abandoned.id)).await.expect(200);
    assert_eq!(
        (record["ended_reason"].as_str(), record["duration_secs"].as_i64()),
        (Some("abandoned"), Some(0)),
        "ends at its last activity"
    );
    assert_eq!(app.get(&format!("/api/v1/calls/{}", orphan.id)).await.expect(200)["ended_reason"], Value::Null);
    let record = app.get(&format!("/api/v1/calls/{}", stale.id)).await.expect(200);
    assert_eq!((record["status"].as_str(), record["duration_secs"].as_i64()), (Some("completed"), Some(95)));
    assert_eq!(app.get(&format!("/api/v1/calls/{}/events", stale.id)).await.expect(200).as_array().unwrap().len(), 1);
    assert_eq!(app.get(&format!("/api/v1/calls/{}/events", recent.id)).await.expect(200), json!([]), "not stale yet");
    assert_eq!(recovery::settle_stale_calls(&app.db, &twilio).await.unwrap(), 0, "settled once");
}
