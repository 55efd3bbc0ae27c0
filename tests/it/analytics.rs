//! Analytics over known calls, on both databases: volume per day in a time zone, durations,
//! response-time percentiles, resolution, sentiment, ended reasons and the per-agent table; plus
//! retention and erasure of call data.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use switchboard::domain::call::{CallEnding, CallStatus, EndedBy, StatusEvent, TurnRole};
use switchboard::domain::event::{Analysis, Resolution, Sentiment};
use switchboard::domain::ids::CallId;
use switchboard::storage::calls::{self, NewTurn};
use switchboard::storage::retention;

use crate::calls::new_call;
use crate::support::{TestApp, on_both_backends};

on_both_backends!(analytics_reflect_known_calls, retention_purges_and_erasure_deletes);

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A finished call of an app's agent.
struct Known<'a> {
    sid: &'a str,
    agent: &'a str,
    start: &'a str,
    secs: i64,
    /// One agent turn per latency.
    latencies: &'a [i64],
    reason: &'a str,
}

async fn known_call(app: &TestApp, app_id: &str, known: Known<'_>) -> CallId {
    let Known { sid, agent, start, secs, latencies, reason } = known;
    let mut new = new_call(sid, app_id, agent, CallStatus::InProgress, 0);
    new.started_at = at(start);
    let call = calls::open(&app.db, app.org, new).await.unwrap();
    let turns: Vec<NewTurn> = latencies
        .iter()
        .enumerate()
        .map(|(i, latency)| {
            let when = at(start) + Duration::seconds(i as i64 + 1);
            NewTurn {
                role: TurnRole::Agent,
                text: "ok".into(),
                language: None,
                started_at: when,
                ended_at: Some(when),
                interrupted: false,
                latency_ms: Some(*latency),
            }
        })
        .collect();
    for turn in &turns {
        calls::append_turn(&app.db, app.org, call.id, turn).await.unwrap();
    }
    let event =
        StatusEvent { status: CallStatus::Completed, sequence: None, at: at(start) + Duration::seconds(secs), duration_secs: Some(secs) };
    calls::finish_conversation(&app.db, app.org, call.id, &CallEnding::new(EndedBy::Agent, reason.parse().unwrap())).await.unwrap();
    calls::apply_status_event(&app.db, app.org, call.id, &event).await.unwrap();
    call.id
}

fn analysis(sentiment: Sentiment, resolution: Resolution, satisfaction: i64) -> Analysis {
    Analysis { sentiment, resolution, satisfaction, summary: "s".into(), categories: Default::default() }
}

async fn analytics_reflect_known_calls(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let ava = app.create_agent(&app_id, "Ava").await;
    let bob = app.create_agent(&app_id, "Bob").await;
    // New York days: 2026-11-02 runs 05:00Z to 05:00Z next day (EST).
    let a = known_call(
        &app,
        &app_id,
        Known { sid: "CA1", agent: &ava, start: "2026-11-02T06:00:00Z", secs: 60, latencies: &[100, 200, 300], reason: "agent_ended" },
    )
    .await;
    let b = known_call(
        &app,
        &app_id,
        Known { sid: "CA2", agent: &ava, start: "2026-11-03T04:30:00Z", secs: 120, latencies: &[400], reason: "caller_hangup" },
    )
    .await;
    let c = known_call(
        &app,
        &app_id,
        Known { sid: "CA3", agent: &bob, start: "2026-11-03T06:00:00Z", secs: 30, latencies: &[1000], reason: "agent_ended" },
    )
    .await;
    known_call(
        &app,
        &app_id,
        Known { sid: "CA4", agent: &bob, start: "2026-11-10T06:00:00Z", secs: 999, latencies: &[5], reason: "agent_ended" },
    )
    .await; // outside the range
    calls::record_analysis(&app.db, app.org, a, &analysis(Sentiment::Positive, Resolution::Resolved, 5)).await.unwrap();
    calls::record_analysis(&app.db, app.org, b, &analysis(Sentiment::Negative, Resolution::Unresolved, 2)).await.unwrap();
    calls::record_analysis(&app.db, app.org, c, &analysis(Sentiment::Positive, Resolution::Resolved, 4)).await.unwrap();

    let path =
        format!("/api/v1/apps/{app_id}/analytics?from=2026-11-02T05:00:00Z&to=2026-11-05T05:00:00Z&bucket=day&time_zone=America/New_York");
    let report = app.get(&path).await.expect(200);
    let totals = &report["totals"];
    assert_eq!(totals["calls"], 3);
    assert_eq!(totals["total_duration_secs"], 210);
    assert_eq!(totals["average_duration_secs"], 70.0);
    // Latencies 100, 200, 300, 400, 1000: nearest rank p50 = 300, p95 = 1000, mean 400.
    assert_eq!(totals["response_time"], json!({ "average_ms": 400.0, "p50_ms": 300, "p95_ms": 1000 }));
    assert_eq!(totals["resolution_rate"].as_f64().unwrap(), 2.0 / 3.0);
    assert_eq!(totals["average_satisfaction"].as_f64().unwrap(), 11.0 / 3.0);
    assert_eq!(report["sentiment"], json!({ "negative": 1, "positive": 2 }));
    assert_eq!(report["ended_reasons"], json!({ "agent_ended": 2, "caller_hangup": 1 }));
    let series: Vec<(String, i64)> = report["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["bucket"].as_str().unwrap().to_owned(), p["calls"].as_i64().unwrap()))
        .collect();
    // CA2 at 04:30Z on the 3rd is still the 2nd in New York.
    assert_eq!(series, [("2026-11-02".to_owned(), 2), ("2026-11-03".to_owned(), 1), ("2026-11-04".to_owned(), 0)]);
    let agents = report["agents"].as_array().unwrap();
    let ava_row = agents.iter().find(|r| r["name"] == "Ava").unwrap();
    assert_eq!((ava_row["calls"].as_i64(), ava_row["average_duration_secs"].as_f64()), (Some(2), Some(90.0)));
    assert_eq!(ava_row["response_time"]["p95_ms"], 400);
    assert_eq!(ava_row["resolution_rate"], 0.5);
    let bob_row = agents.iter().find(|r| r["name"] == "Bob").unwrap();
    assert_eq!((bob_row["calls"].as_i64(), bob_row["average_satisfaction"].as_f64()), (Some(1), Some(4.0)));

    let only_bob = app.get(&format!("{path}&agent_id={bob}")).await.expect(200);
    assert_eq!(only_bob["totals"]["calls"], 1);
    let weekly = app
        .get(&format!("/api/v1/apps/{app_id}/analytics?from=2026-11-02T00:00:00Z&to=2026-11-16T00:00:00Z&bucket=week"))
        .await
        .expect(200);
    assert_eq!(weekly["series"].as_array().unwrap().iter().map(|p| p["calls"].as_i64().unwrap()).collect::<Vec<_>>(), [3, 1]);

    let detail = app.get(&format!("/api/v1/apps/{app_id}/analytics?time_zone=Mars/Olympus")).await.problem(422);
    assert!(detail.contains("IANA"), "{detail}");
    app.get(&format!("/api/v1/apps/{app_id}/analytics?from=2026-11-05T00:00:00Z&to=2026-11-01T00:00:00Z")).await.problem(422);
    app.get(&format!("/api/v1/apps/{app_id}/analytics?bucket=hour")).await.problem(400);
}

async fn retention_purges_and_erasure_deletes(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let agent = app.create_agent(&app_id, "Ava").await;
    let now = switchboard::domain::time::now();
    let day = |n: i64| (now - Duration::days(n)).to_rfc3339();
    let old =
        known_call(&app, &app_id, Known { sid: "CA1", agent: &agent, start: &day(40), secs: 10, latencies: &[100], reason: "agent_ended" })
            .await;
    // A long call: its transcript is purged in several batches.
    let long = vec![100; 1_200];
    let middle =
        known_call(&app, &app_id, Known { sid: "CA2", agent: &agent, start: &day(10), secs: 10, latencies: &long, reason: "agent_ended" })
            .await;
    let recent =
        known_call(&app, &app_id, Known { sid: "CA3", agent: &agent, start: &day(1), secs: 10, latencies: &[100], reason: "agent_ended" })
            .await;

    app.send(reqwest::Method::PUT, "/api/v1/retention", Some(&app.token), Some(&json!({ "transcript_days": 60, "record_days": 30 })))
        .await
        .problem(422);
    let policy = json!({ "transcript_days": 7, "record_days": 30 });
    app.send(reqwest::Method::PUT, "/api/v1/retention", Some(&app.token), Some(&policy)).await.expect(200);
    let kept = app.get("/api/v1/retention").await.expect(200);
    assert_eq!(kept, json!({ "transcript_days": 7, "record_days": 30, "recording_days": null }), "recordings kept as long as records");
    retention::purge_expired(&app.db, now).await.unwrap();

    app.get(&format!("/api/v1/calls/{old}")).await.problem(404);
    let kept = app.get(&format!("/api/v1/calls/{middle}")).await.expect(200);
    assert_eq!(kept["transcript"].as_array().unwrap().len(), 0, "the transcript expired, the record not yet");
    assert_eq!(app.get(&format!("/api/v1/calls/{middle}/events")).await.expect(200), json!([]));
    assert_eq!(app.get(&format!("/api/v1/calls/{recent}")).await.expect(200)["transcript"].as_array().unwrap().len(), 1);
    let audit = app.get("/api/v1/audit-log").await.expect(200);
    let purge = audit["data"].as_array().unwrap().iter().find(|e| e["action"] == "retention.purged").expect("the purge is audited");
    assert_eq!((purge["details"]["call_records"].as_i64(), purge["details"]["transcript_turns"].as_i64()), (Some(1), Some(1_201)));

    app.delete(&format!("/api/v1/calls/{recent}")).await.expect(204);
    app.get(&format!("/api/v1/calls/{recent}")).await.problem(404);
    app.delete(&format!("/api/v1/calls/{recent}")).await.problem(404);
    let audit = app.get("/api/v1/audit-log").await.expect(200);
    assert!(
        audit["data"].as_array().unwrap().iter().any(|e| e["action"] == "call.deleted" && e["resource_id"] == recent.to_string().as_str())
    );

    // The audit log keeps its own retention: entries older than the cutoff go, newer ones stay.
    let entries = audit["data"].as_array().unwrap().len();
    assert_eq!(retention::purge_audit(&app.db, now - chrono::Duration::days(1)).await.unwrap(), 0);
    assert_eq!(app.get("/api/v1/audit-log").await.expect(200)["data"].as_array().unwrap().len(), entries);
    assert!(
        retention::purge_audit(&app.db, switchboard::domain::time::now() + chrono::Duration::seconds(1)).await.unwrap() as usize >= entries
    );
    assert_eq!(app.get("/api/v1/audit-log").await.expect(200)["data"], json!([]));
}
