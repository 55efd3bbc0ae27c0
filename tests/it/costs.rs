//! What calls cost: usage metered from the model's own reports (in each way servers report it),
//! price lists, Twilio's price arriving after the call, the cost in the record, the list, the
//! event and analytics; and budgets that warn through automations and then turn calls away.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::telephony::twilio::{pricing, rest::TwilioClient};

use crate::conversations::{Call, connect, ring_agent};
use crate::support::fake_llm::{Reply, UsageReport};
use crate::support::webhook_sink::WebhookSink;
use crate::support::{Backend, LINE_TOKEN, PhoneLine, TestApp, on_both_backends, per_backend, sid, spawn_app, spawn_app_with};

on_both_backends!(a_call_is_priced_from_what_it_used_and_settled_by_twilios_late_price);
per_backend!(budgets_warn_through_automations_then_turn_calls_away);

async fn put(app: &TestApp, path: &str, body: Value) -> crate::support::Reply {
    app.send(Method::PUT, path, Some(&app.token), Some(&body)).await
}

/// One exchange and a goodbye on `call`, through the relay.
async fn converse(app: &TestApp, call: &Call) {
    call.llm.script([
        Reply::says("Your order ships tomorrow."),
        Reply::calls("endConversation", json!({ "summary": "Asked about shipping.", "closing_message": "Goodbye!" })),
    ]);
    let mut relay = connect(app, call).await;
    relay.say("When does my order ship?").await;
    assert_eq!(relay.utterance().await.text, "Your order ships tomorrow.");
    relay.say("Thanks, that's all.").await;
    assert_eq!(relay.utterance().await.text.trim(), "Goodbye!");
    relay.close().await;
}

/// Twilio's last status callback for a call that lasted `secs`.
async fn completed(app: &TestApp, line: &PhoneLine, call_sid: &str, secs: i64) {
    let secs = secs.to_string();
    let params = [("AccountSid", line.account.as_str()), ("CallSid", call_sid), ("CallStatus", "completed"), ("CallDuration", &secs)];
    app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN)).await.expect(204);
}

fn line<'a>(cost: &'a Value, item: &str) -> &'a Value {
    cost["lines"].as_array().unwrap().iter().find(|l| l["item"] == item).unwrap_or_else(|| panic!("no {item} line: {cost}"))
}

fn amount(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("not an amount: {value}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

async fn a_call_is_priced_from_what_it_used_and_settled_by_twilios_late_price(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    let model_provider = app.get("/api/v1/llm-providers").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let prices = json!({ "per_minute": 0.0085, "conversation_relay_per_minute": 0.07 });
    put(&app, &format!("/api/v1/phone-providers/{}/prices", call.line.provider), prices.clone()).await.expect(200);
    put(
        &app,
        &format!("/api/v1/llm-providers/{model_provider}/prices"),
        json!({ "input_per_million_tokens": 150, "output_per_million_tokens": 600 }),
    )
    .await
    .expect(200);
    let stored = app.get(&format!("/api/v1/phone-providers/{}/prices", call.line.provider)).await.expect(200);
    assert_eq!((&stored["per_minute"], &stored["recording_per_minute"]), (&prices["per_minute"], &json!(0.0)), "{stored}");

    converse(&app, &call).await;
    app.twilio.set_call(&call.sid, "completed", Some(65));
    completed(&app, &call.line, &call.sid, 65).await;
    let path = format!("/api/v1/calls/{}", call.id);
    let detail = app.until(&path, |d| d["cost"]["lines"].as_array().is_some_and(|l| l[0]["quantity"] == 2.0)).await;

    // Tokens as the model server counted them (OpenAI's way: asked for, in a last chunk).
    let counted = call.llm.counted();
    assert_eq!(counted.len(), 2);
    let (prompt, completion) = counted.iter().fold((0, 0), |(p, c), (dp, dc)| (p + dp, c + dc));
    assert!(call.llm.requests().iter().all(|r| r["stream_options"]["include_usage"] == true));
    let usage = &detail["usage"];
    assert_eq!((usage["model_input_tokens"].as_i64(), usage["model_output_tokens"].as_i64()), (Some(prompt), Some(completion)), "{usage}");
    assert_eq!((usage["model_tokens_estimated"].as_bool(), usage["transport"].as_str()), (Some(false), Some("conversation_relay")));
    assert_eq!(usage["model_provider_id"], model_provider.as_str());

    // Until Twilio says what the call cost, its price list's rate stands for it.
    let cost = &detail["cost"];
    assert_eq!((cost["currency"].as_str(), cost["final"].as_bool()), (Some("USD"), Some(false)), "{cost}");
    let carrier = line(cost, "carrier");
    assert_eq!((carrier["basis"].as_str(), carrier["unit"].as_str()), (Some("price_list"), Some("minute")));
    assert!(close(amount(&carrier["amount"]), 0.017), "two started minutes: {carrier}");
    assert!(close(amount(&line(cost, "conversation_relay")["amount"]), 0.14));
    let input = line(cost, "model_input");
    assert!(close(amount(&input["amount"]), prompt as f64 * 150.0 / 1e6), "{input}");
    assert!(close(amount(&input["quantity"]), prompt as f64 / 1e6));
    assert!(close(amount(&line(cost, "model_output")["amount"]), completion as f64 * 600.0 / 1e6));
    let sum: f64 = cost["lines"].as_array().unwrap().iter().map(|l| amount(&l["amount"])).sum();
    assert!(close(amount(&cost["total"]), sum), "{cost}");
    let listed = app.get("/api/v1/calls").await.expect(200);
    assert_eq!(listed["data"][0]["cost"], *cost, "the call list shows the cost too");

    // The event carries the usage and the provisional cost (schema version 3).
    let events = app.get(&format!("{path}/events")).await.expect(200);
    let event = &events[0];
    assert_eq!((event["type"].as_str(), event["schema_version"].as_i64()), (Some("call.ended"), Some(3)));
    assert_eq!(event["call"]["usage"], *usage);
    assert_eq!(event["call"]["cost"]["final"], false);
    assert!(event["call"]["cost"]["lines"].as_array().unwrap().iter().any(|l| l["item"] == "model_input"), "{event}");

    // Twilio fills the price in later: asked too early, it has none yet, then it does.
    let twilio = TwilioClient::new(&app.twilio.base_url());
    let now = switchboard::domain::time::now();
    assert_eq!(pricing::settle_prices(&app.db, &twilio, now).await.unwrap(), 0, "the call just ended: not asked yet");
    let later = now + chrono::Duration::minutes(5);
    assert_eq!(pricing::settle_prices(&app.db, &twilio, later).await.unwrap(), 0, "no price at Twilio yet");
    assert_eq!(app.get(&path).await.expect(200)["cost"]["final"], false);
    app.twilio.price_call(&call.sid, "-0.02000");
    assert_eq!(pricing::settle_prices(&app.db, &twilio, later).await.unwrap(), 1);
    let settled = app.get(&path).await.expect(200)["cost"].clone();
    assert_eq!(settled["final"], true, "{settled}");
    let carrier = line(&settled, "carrier");
    assert_eq!((carrier["basis"].as_str(), amount(&carrier["amount"])), (Some("carrier_price"), 0.02), "{carrier}");
    assert!(close(amount(&settled["total"]), amount(&cost["total"]) - 0.017 + 0.02), "{settled}");
    assert_eq!(pricing::settle_prices(&app.db, &twilio, later).await.unwrap(), 0, "a settled call is not asked about again");

    // Analytics: per day, per agent, per number; per call and per resolved call.
    let app_id = app.get(&format!("/api/v1/agents/{}", call.line.agent)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let report = app.get(&format!("/api/v1/apps/{app_id}/analytics")).await.expect(200);
    let total = amount(&settled["total"]);
    assert_eq!(report["currency"], "USD");
    assert!(
        close(amount(&report["totals"]["cost"]["total"]), total) && close(amount(&report["totals"]["cost"]["average_per_call"]), total)
    );
    assert!(report["totals"]["cost"]["per_resolved_call"].is_null(), "no call is classified resolved: {report}");
    assert!(close(amount(&report["agents"][0]["cost"]["total"]), total));
    assert_eq!(report["numbers"][0]["number"], crate::support::LINE_NUMBER);
    assert!(close(amount(&report["numbers"][0]["cost"]["total"]), total));
    let by_day: f64 = report["series"].as_array().unwrap().iter().map(|p| amount(&p["cost"])).sum();
    assert!(close(by_day, total), "{report}");
}

/// Each way a model server reports usage (or does not) ends in the call's usage; where it does
/// not, the tokens are estimated and marked so.
#[tokio::test]
async fn token_usage_is_counted_however_the_server_reports_it() {
    for report in [UsageReport::WhenAsked, UsageReport::InFinalChunk, UsageReport::Never, UsageReport::RefusesStreamOptions] {
        let app = spawn_app(Backend::Sqlite).await;
        let call = ring_agent(&app, json!({ "name": "Ava" })).await;
        call.llm.report_usage(report);
        converse(&app, &call).await;
        let detail = app
            .until(&format!("/api/v1/calls/{}", call.id), |d| d["usage"]["model_output_tokens"].as_i64() > Some(0) && d["cost"].is_object())
            .await;
        let usage = &detail["usage"];
        let counted = call.llm.counted();
        let (prompt, completion) = counted.iter().fold((0, 0), |(p, c), (dp, dc)| (p + dp, c + dc));
        let tokens = (usage["model_input_tokens"].as_i64().unwrap(), usage["model_output_tokens"].as_i64().unwrap());
        let estimated = usage["model_tokens_estimated"].as_bool().unwrap();
        match report {
            UsageReport::WhenAsked | UsageReport::InFinalChunk => {
                assert_eq!((tokens, estimated), ((prompt, completion), false), "{report:?}: {usage}");
            }
            UsageReport::Never | UsageReport::RefusesStreamOptions => {
                assert!(estimated, "{report:?}: {usage}");
                assert!(tokens.0 > 50 && tokens.1 > 0, "{report:?}: the prompt and the answers, estimated: {usage}");
            }
        }
        if report == UsageReport::RefusesStreamOptions {
            let requests = call.llm.requests();
            assert_eq!(requests.len(), 3, "refused once, asked again without the option, then the second turn");
            assert!(requests[0].get("stream_options").is_some() && requests[1..].iter().all(|r| r.get("stream_options").is_none()));
        }
        let cost = &detail["cost"];
        assert!(cost["lines"].as_array().unwrap().iter().all(|l| l["basis"] != "estimated" || estimated), "{cost}");
    }
}

/// Prices and budgets refuse what makes no sense, naming what to fix; another organisation's
/// provider is not found.
#[tokio::test]
async fn prices_and_budgets_are_validated() {
    let app = spawn_app(Backend::Sqlite).await;
    let line = app.phone_line(json!({ "name": "Ava" })).await;
    let prices = format!("/api/v1/phone-providers/{}/prices", line.provider);
    // A value of the wrong kind does not fit the body's type (400); one that fits but breaks a
    // rule is refused by that rule (422).
    let problem = put(&app, &prices, json!({ "per_minute": -1 })).await.problem(400);
    assert!(problem.contains("at least 0"), "{problem}");
    let problem = put(&app, &prices, json!({ "per_minute": 0.0000000001 })).await.problem(400);
    assert!(problem.contains("9 decimal places"), "{problem}");
    let problem = put(&app, &prices, json!({ "per_hour": 1 })).await.problem(400);
    assert!(problem.contains("per_hour"), "{problem}");
    let unknown = format!("/api/v1/llm-providers/{}/prices", uuid::Uuid::now_v7());
    put(&app, &unknown, json!({})).await.problem(404);
    let (_, other_token) = app.other_org().await;
    let theirs = app.send(Method::PUT, &prices, Some(&other_token), Some(&json!({ "per_minute": 1 }))).await;
    assert_eq!(theirs.status, 404, "another organisation's provider: {}", theirs.text);

    let problem = put(&app, "/api/v1/cost-settings", json!({ "currency": "EURO" })).await.problem(400);
    assert!(problem.contains("three letters"), "{problem}");
    let problem = put(&app, "/api/v1/cost-settings", json!({ "currency": "EUR", "budget": { "monthly_limit": 0 } })).await.problem(422);
    assert!(problem.contains("budget.monthly_limit"), "{problem}");
    let problem =
        put(&app, "/api/v1/cost-settings", json!({ "budget": { "monthly_limit": 10, "warn_at_percent": 120 } })).await.problem(422);
    assert!(problem.contains("budget.warn_at_percent"), "{problem}");
    let saved = put(&app, "/api/v1/cost-settings", json!({ "currency": "eur", "budget": { "monthly_limit": 250.5 } })).await.expect(200);
    assert_eq!(
        saved,
        json!({ "currency": "EUR", "budget": { "monthly_limit": 250.5, "warn_at_percent": 80, "hard_stop": false,
        "stop_message": "We're sorry, we can't take your call right now. Please try again later." } })
    );
    assert_eq!(app.get("/api/v1/cost-settings").await.expect(200), saved);
}

async fn budgets_warn_through_automations_then_turn_calls_away(backend: Backend) {
    let app = spawn_app_with(backend, |config: &mut Config| config.allow_private_webhook_targets = true).await;
    let line = app.phone_line(json!({ "name": "Ava" })).await;
    let app_id = app.get(&format!("/api/v1/agents/{}", line.agent)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let budget = json!({ "monthly_limit": 0.10, "warn_at_percent": 50, "hard_stop": true, "stop_message": "Sorry, our lines are closed until next month." });
    put(&app, "/api/v1/cost-settings", json!({ "currency": "USD", "budget": budget })).await.expect(200);
    put(&app, &format!("/api/v1/phone-providers/{}/prices", line.provider), json!({ "per_minute": 0.06 })).await.expect(200);

    // The trigger is about the organisation: filters and classification make no sense on it, and
    // an automation in any app hears it.
    let automations = format!("/api/v1/apps/{app_id}/automations");
    let sink = WebhookSink::start().await;
    let hook = json!([{ "type": "webhook", "url": sink.url }]);
    let filtered = json!({ "name": "b", "trigger": "budget_threshold_reached", "filters": { "min_duration_secs": 5 }, "actions": hook });
    assert!(app.post(&automations, filtered).await.problem(422).contains("filters"));
    let classify = json!({ "name": "b", "trigger": "budget_threshold_reached", "actions": [{ "type": "ai_classify" }] });
    assert!(app.post(&automations, classify).await.problem(422).contains("ai_classify"));
    app.post(&automations, json!({ "name": "budget", "trigger": "budget_threshold_reached", "actions": hook })).await.expect(201);
    let elsewhere = app.create_app("Sales").await;
    let other_sink = WebhookSink::start().await;
    let other_hook = json!([{ "type": "webhook", "url": other_sink.url }]);
    app.post(
        &format!("/api/v1/apps/{elsewhere}/automations"),
        json!({ "name": "b", "trigger": "budget_threshold_reached", "actions": other_hook }),
    )
    .await
    .expect(201);

    // A minute at 0.06 reaches the warning (50%); a second one the limit.
    let first = sid("CA", 'e');
    app.ring(&line, &first).await.expect(200);
    completed(&app, &line, &first, 60).await;
    let warning = wait_for_deliveries(&sink, 1).await.remove(0);
    assert_eq!((warning["type"].as_str(), warning["schema_version"].as_i64()), (Some("budget.threshold_reached"), Some(3)));
    assert_eq!(warning["budget"]["level"], "warning", "{warning}");
    assert_eq!((amount(&warning["budget"]["spent"]), warning["budget"]["percent"].as_i64()), (0.06, Some(60)));
    assert_eq!(warning["call"]["call_sid"], first.as_str(), "the call that crossed the threshold");
    let second = sid("CA", 'f');
    app.ring(&line, &second).await.expect(200);
    completed(&app, &line, &second, 60).await;
    let limit = wait_for_deliveries(&sink, 2).await.remove(1);
    assert_eq!((limit["budget"]["level"].as_str(), limit["budget"]["stopping_calls"].as_bool()), (Some("limit"), Some(true)));
    assert_eq!(wait_for_deliveries(&other_sink, 2).await.len(), 2, "automations of every app hear it");

    let spending = app.get("/api/v1/spending").await.expect(200);
    assert_eq!((amount(&spending["spent"]), spending["calls"].as_i64()), (0.12, Some(2)), "{spending}");
    assert_eq!((spending["budget"]["percent"].as_i64(), spending["budget"]["stopping_calls"].as_bool()), (Some(120), Some(true)));

    // The hard stop: new calls hear the message and are hung up on; no more budget events.
    let third = sid("CA", 'g');
    let twiml = app.ring(&line, &third).await.text;
    assert!(twiml.contains("Sorry, our lines are closed until next month.") && twiml.contains("<Hangup/>"), "{twiml}");
    let calls = app.get("/api/v1/calls").await.expect(200);
    let turned_away = calls["data"].as_array().unwrap().iter().find(|c| c["call_sid"] == third.as_str()).unwrap();
    assert_eq!(turned_away["ended_reason"], "budget_exhausted", "{turned_away}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.deliveries().len(), 2);

    // A higher limit lets calls in again.
    let raised = json!({ "monthly_limit": 5, "hard_stop": true });
    put(&app, "/api/v1/cost-settings", json!({ "currency": "USD", "budget": raised })).await.expect(200);
    let twiml = app.ring(&line, &sid("CA", 'h')).await.text;
    assert!(twiml.contains("<Connect "), "{twiml}");
}

/// The JSON bodies `sink` received, once there are `count`.
async fn wait_for_deliveries(sink: &WebhookSink, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        let deliveries = sink.deliveries();
        if deliveries.len() >= count {
            return deliveries.iter().map(|d| serde_json::from_slice(&d.body).unwrap()).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{count} deliveries never came: {}", sink.deliveries().len());
}
