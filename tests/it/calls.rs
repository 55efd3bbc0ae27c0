//! Call records: listing with filters and pagination, and one call with its transcript.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use switchboard::domain::call::{CallDirection, CallStatus, TurnRole};
use switchboard::domain::ids::{AgentId, AppId};
use switchboard::storage::calls::{self, NewCall, NewTurn};

use crate::support::{TestApp, on_both_backends};

on_both_backends!(calls_filter_and_paginate, a_call_shows_its_transcript);

pub(crate) fn new_call(sid: &str, app: &str, agent: &str, status: CallStatus, minutes_ago: i64) -> NewCall {
    NewCall {
        app_id: Some(AppId(app.parse().unwrap())),
        phone_number_id: None,
        provider_id: None,
        agent_id: Some(AgentId(agent.parse().unwrap())),
        agent_version: Some(1),
        call_sid: sid.to_owned(),
        from: "+14155550123".into(),
        to: "+14155550100".into(),
        direction: CallDirection::Inbound,
        status,
        started_at: switchboard::domain::time::now() - Duration::minutes(minutes_ago),
        refused_reason: None,
        is_test: false,
    }
}

fn sids(body: &[Value]) -> Vec<&str> {
    body.iter().map(|c| c["call_sid"].as_str().unwrap()).collect()
}

async fn calls_filter_and_paginate(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let ava = app.create_agent(&app_id, "Ava").await;
    let ben = app.create_agent(&app_id, "Ben").await;
    for (i, (agent, status)) in
        [(&ava, CallStatus::Completed), (&ben, CallStatus::InProgress), (&ava, CallStatus::Completed), (&ben, CallStatus::Failed)]
            .into_iter()
            .enumerate()
    {
        calls::open(&app.db, app.org, new_call(&format!("CA{i}"), &app_id, agent, status, 40 - 10 * i as i64)).await.unwrap();
    }
    // A retried webhook for the same call opens no second record.
    let again = calls::open(&app.db, app.org, new_call("CA0", &app_id, &ava, CallStatus::Ringing, 0)).await.unwrap();
    assert_eq!(again.status, CallStatus::Completed);

    let (all, pages) = app.collect_pages("/api/v1/calls", 3).await;
    assert_eq!(pages, 2);
    assert_eq!(sids(&all), ["CA3", "CA2", "CA1", "CA0"]);

    let by_agent = app.get(&format!("/api/v1/calls?agent_id={ava}")).await.expect(200);
    assert_eq!(sids(by_agent["data"].as_array().unwrap()), ["CA2", "CA0"]);
    let by_status = app.get("/api/v1/calls?status=in-progress").await.expect(200);
    assert_eq!(sids(by_status["data"].as_array().unwrap()), ["CA1"]);
    let since = (Utc::now() - Duration::minutes(25)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let recent = app.get(&format!("/api/v1/calls?from={since}&app_id={app_id}")).await.expect(200);
    assert_eq!(sids(recent["data"].as_array().unwrap()), ["CA3", "CA2"]);
    let until = (Utc::now() - Duration::minutes(25)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let older = app.get(&format!("/api/v1/calls?to={until}")).await.expect(200);
    assert_eq!(sids(older["data"].as_array().unwrap()), ["CA1", "CA0"]);

    app.get("/api/v1/calls?status=ringing-ish").await.problem(400);
    app.get("/api/v1/calls?from=yesterday").await.problem(400);
    app.get(&format!("/api/v1/calls?from={since}&to={since}")).await.problem(400);
}

async fn a_call_shows_its_transcript(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let ava = app.create_agent(&app_id, "Ava").await;
    let call = calls::open(&app.db, app.org, new_call("CA42", &app_id, &ava, CallStatus::InProgress, 1)).await.unwrap();
    let start = switchboard::domain::time::now();
    for (i, (role, text)) in
        [(TurnRole::Agent, "Hi, this is Ava."), (TurnRole::Caller, "My bill is wrong."), (TurnRole::Agent, "Let me check that.")]
            .into_iter()
            .enumerate()
    {
        let turn = NewTurn {
            role,
            text: text.into(),
            language: Some("en-US".into()),
            started_at: start + Duration::seconds(3 * i as i64),
            ended_at: Some(start + Duration::seconds(3 * i as i64 + 2)),
            interrupted: false,
            latency_ms: (role == TurnRole::Agent).then_some(420),
        };
        assert_eq!(calls::append_turn(&app.db, app.org, call.id, &turn).await.unwrap(), i as i64 + 1);
    }
    let detail = app.get(&format!("/api/v1/calls/{}", call.id)).await.expect(200);
    assert_eq!(detail["call_sid"], "CA42");
    assert_eq!(detail["from"], "+14155550123");
    assert_eq!(detail["agent_id"], ava.as_str());
    assert_eq!(detail["status"], "in-progress");
    let transcript = detail["transcript"].as_array().unwrap();
    assert_eq!(transcript.len(), 3);
    assert_eq!(
        transcript[1],
        json!({
            "sequence": 2, "role": "caller", "text": "My bill is wrong.", "language": "en-US",
            "started_at": transcript[1]["started_at"], "ended_at": transcript[1]["ended_at"],
            "interrupted": false, "latency_ms": null, "voice_latency": null,
        })
    );
    let t0 = chrono::DateTime::parse_from_rfc3339(transcript[0]["started_at"].as_str().unwrap()).unwrap();
    assert_eq!(t0, start);

    app.get("/api/v1/calls/01900000-0000-7000-8000-000000000000").await.problem(404);
}
