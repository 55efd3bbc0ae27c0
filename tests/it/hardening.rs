//! Findings of probing the running server as an attacker and an operator would, each kept
//! fixed: hostile characters, forged webhooks reusing another tenant's call, erasing a live call,
//! unbounded metric series, problem documentation, file permissions, tenant URLs aimed at
//! private addresses.

use serde_json::{Value, json};

use crate::support::{TestApp, on_both_backends, sid};

on_both_backends!(
    nul_characters_are_refused_in_input_and_never_lose_a_turn,
    a_webhook_reusing_another_organisations_call_sid_is_refused,
    a_live_call_cannot_be_erased_until_it_ends,
    odd_http_methods_share_one_metric_series,
    problem_types_are_documented_by_the_server,
    status_callbacks_that_overtake_the_voice_webhook_are_kept,
);

async fn nul_characters_are_refused_in_input_and_never_lose_a_turn(app: TestApp) {
    let detail = app.post("/api/v1/apps", json!({ "name": "Front\u{0}desk" })).await.problem(422);
    assert!(detail.contains("NUL character"), "{detail}");
    let app_id = app.create_app("Front desk").await;
    let reply = app.post(&format!("/api/v1/apps/{app_id}/agents"), json!({ "name": "Ava", "end_call_phrases": ["ok", "bye\u{0}"] })).await;
    assert_eq!(reply.body["errors"][0]["field"], "end_call_phrases[1]", "the field is named: {}", reply.body);
    reply.problem(422);

    // A caller's words with a NUL in them are stored without it, never dropped.
    let call = crate::conversations::ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([crate::support::fake_llm::Reply::says("Sure.")]);
    let mut relay = crate::conversations::connect(&app, &call).await;
    relay.say("Hello\u{0} there").await;
    relay.utterance().await;
    relay.close().await;
    let mut transcript = Value::Null;
    for _ in 0..100 {
        transcript = app.get(&format!("/api/v1/calls/{}", call.id)).await.expect(200)["transcript"].clone();
        if transcript.as_array().is_some_and(|t| t.len() >= 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let said: Vec<&str> =
        transcript.as_array().unwrap().iter().filter(|t| t["role"] == "caller").map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(said, ["Hello there"]);
}

async fn a_webhook_reusing_another_organisations_call_sid_is_refused(app: TestApp) {
    let line = app.phone_line(json!({ "name": "Ava" })).await;
    let call_sid = sid("CA", 'f');
    app.ring(&line, &call_sid).await.expect(200);
    // Another organisation with its own Twilio account and number gets a webhook for that SID.
    let (_, token) = app.other_org().await;
    let other_account = sid("AC", '9');
    app.twilio.add_account(&other_account, "other-token-0123456789abcdef0123");
    let body = json!({ "name": "Other", "account_sid": other_account, "auth_token": "other-token-0123456789abcdef0123" });
    let reply = app.send(reqwest::Method::POST, "/api/v1/phone-providers", Some(&token), Some(&body)).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let params = [
        ("AccountSid", other_account.as_str()),
        ("CallSid", call_sid.as_str()),
        ("CallStatus", "ringing"),
        ("From", "+14155550123"),
        ("To", "+14155550999"),
        ("Direction", "inbound"),
    ];
    let reply = app.twilio_post("/twilio/voice", &params, Some("other-token-0123456789abcdef0123")).await;
    assert!(reply.status == 409 || reply.status == 403, "refused cleanly, not a 500: {} {}", reply.status, reply.text);
    let calls = app.get("/api/v1/calls").await.expect(200);
    assert_eq!(calls["data"].as_array().unwrap().len(), 1);
    assert_eq!(calls["data"][0]["status"], "ringing", "the first organisation's record is untouched");
}

async fn a_live_call_cannot_be_erased_until_it_ends(app: TestApp) {
    let call = crate::conversations::ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([crate::support::fake_llm::Reply::says("Hello.")]);
    let mut relay = crate::conversations::connect(&app, &call).await;
    relay.say("Hi").await;
    relay.utterance().await;
    let path = format!("/api/v1/calls/{}", call.id);
    let detail = app.delete(&path).await.problem(409);
    assert!(detail.contains("still going on"), "{detail}");
    relay.close().await;
    for _ in 0..100 {
        if app.get(&path).await.body["ended_reason"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.delete(&path).await.status, 204, "once ended, it can be erased");
}

async fn odd_http_methods_share_one_metric_series(app: TestApp) {
    let client = reqwest::Client::new();
    for method in ["FOO", "BAR", "PROPFIND"] {
        client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), app.url("/healthz")).send().await.unwrap();
    }
    let metrics = reqwest::get(format!("http://{}/metrics", app.metrics_addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
    for method in ["FOO", "BAR", "PROPFIND"] {
        assert!(!metrics.contains(&format!("method=\"{method}\"")), "{method} made its own series");
    }
}

async fn problem_types_are_documented_by_the_server(app: TestApp) {
    let reply = app.post("/api/v1/apps", json!({ "name": "" })).await;
    let kind = reply.body["type"].as_str().unwrap().to_owned();
    assert_eq!(kind, "/problems/validation");
    let page = reqwest::get(app.url(&kind)).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("names the field"));
    assert_eq!(reqwest::get(app.url("/problems/nonsense")).await.unwrap().status(), 404);
}

/// The SQLite database and the data folder are the owner's only.
#[cfg(unix)]
#[tokio::test]
async fn the_data_folder_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite).await;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let database = app.database_url.trim_start_matches("sqlite://").split('?').next().unwrap().to_owned();
    let database = std::path::Path::new(&database);
    assert_eq!(mode(database), 0o600, "{}", database.display());
    for companion in ["-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{companion}", database.display()));
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert_eq!(mode(&app.data_dir.path().join("master.key")), 0o600);
}

/// A caller who hangs up at once: Twilio's final status callback can reach us before the voice
/// webhook's record is committed. In a concurrent burst, every call still ends `completed`, with
/// its `call.ended` event, and no record is doubled.
async fn status_callbacks_that_overtake_the_voice_webhook_are_kept(app: TestApp) {
    let line = app.phone_line(json!({ "name": "Ava" })).await;
    let calls = 40;
    for i in 0..calls {
        let call_sid = format!("CA{:032x}", 0xabc000 + i);
        let callback = [
            ("AccountSid", line.account.clone()),
            ("CallSid", call_sid.clone()),
            ("CallStatus", "completed".to_owned()),
            ("CallDuration", "0".to_owned()),
            ("From", "+14155550123".to_owned()),
            ("To", crate::support::LINE_NUMBER.to_owned()),
            ("Direction", "inbound".to_owned()),
        ];
        let app_url = app.url("");
        let (voice, status) = (line_ring(&app, &line, &call_sid), async move {
            let params: Vec<(&str, &str)> = callback.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let signed = switchboard::telephony::twilio::signature::sign(
                crate::support::LINE_TOKEN,
                &format!("{app_url}/twilio/status"),
                &params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(),
            );
            reqwest::Client::new()
                .post(format!("{app_url}/twilio/status"))
                .header("X-Twilio-Signature", signed)
                .form(&params)
                .send()
                .await
                .unwrap()
                .status()
        });
        // Odd calls: the callback strictly first; even calls: both at once.
        if i % 2 == 1 {
            assert!(status.await.is_success());
            assert!(voice.await < 500, "a late voice webhook is answered");
        } else {
            let (voice_status, status) = tokio::join!(voice, status);
            assert!(status.is_success(), "{status}");
            assert!(voice_status < 500, "voice answered {voice_status}");
        }
    }
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = app.get("/api/v1/calls?limit=200").await.expect(200)["data"].as_array().unwrap().clone();
        if listed.len() == calls as usize && listed.iter().all(|c| c["status"] == "completed" && c["ended_reason"].is_string()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed.len(), calls as usize, "one record per call");
    for call in &listed {
        assert_eq!(call["status"], "completed", "{call}");
        let events = app.get(&format!("/api/v1/calls/{}/events", call["id"].as_str().unwrap())).await.expect(200);
        assert_eq!(events.as_array().unwrap().iter().filter(|e| e["type"] == "call.ended").count(), 1, "{call}");
    }
}

/// The signed voice webhook of `call_sid` on the line; its HTTP status.
async fn line_ring(app: &TestApp, line: &crate::support::PhoneLine, call_sid: &str) -> u16 {
    app.ring(line, call_sid).await.status.as_u16()
}

/// A turn spoken while another process holds SQLite's write lock past the server's busy timeout
/// (a long purge, a backup) is stored once the lock is gone, not lost.
#[tokio::test]
async fn a_turn_spoken_while_the_database_is_busy_is_stored_once_it_is_free() {
    use sqlx::Connection;
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite).await;
    let call = crate::conversations::ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([crate::support::fake_llm::Reply::says("Sure.")]);
    let mut relay = crate::conversations::connect(&app, &call).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut blocker = sqlx::SqliteConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut blocker).await.unwrap();
    relay.say("Hello while the database is busy").await;
    tokio::time::sleep(std::time::Duration::from_millis(5_600)).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    let mut said = Vec::new();
    for _ in 0..200 {
        let transcript = app.get(&format!("/api/v1/calls/{}", call.id)).await.expect(200)["transcript"].clone();
        said = transcript
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["role"] == "caller")
            .map(|t| t["text"].as_str().unwrap().to_owned())
            .collect();
        if !said.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(said, ["Hello while the database is busy"]);
    relay.close().await;
}

/// Tenant-set URLs (LLM providers, webhooks) reach private addresses only where `egress_allow`
/// says: refused when saved with a message naming the setting, and refused again at connect
/// time for a stored URL whose name resolves to a private address.
#[tokio::test]
async fn tenant_urls_reach_private_addresses_only_where_the_operator_allows() {
    use switchboard::domain::audit::Actor;
    use switchboard::storage::llm_providers::{self, NewLlmProvider};
    let llm = crate::support::fake_llm::FakeLlm::start().await;
    let port = url::Url::parse(&llm.base_url).unwrap().port().unwrap();
    let app = crate::support::spawn_app_with(crate::support::Backend::Sqlite, |config| {
        config.egress_allow = vec![format!("127.0.0.1:{port}")];
    })
    .await;
    for base_url in [
        "http://169.254.169.254/latest".to_owned(),
        "http://10.0.0.5/v1".to_owned(),
        "http://198.18.0.1/v1".to_owned(),
        format!("http://localhost:{port}/v1"),
        format!("http://[::1]:{port}/v1"),
        format!("http://127.0.0.1:{}/v1", port.wrapping_add(1)),
    ] {
        let reply = app.post("/api/v1/llm-providers", json!({ "name": "Internal", "base_url": base_url, "default_model": "m" })).await;
        assert_eq!(reply.body["errors"][0]["field"], "base_url", "{base_url}: {}", reply.body);
        let detail = reply.body["errors"][0]["message"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("egress_allow") && detail.contains("allow_private_targets"), "{base_url}: {detail}");
        reply.problem(422);
    }
    let allowed =
        app.post("/api/v1/llm-providers", json!({ "name": "Local", "base_url": llm.base_url, "default_model": "m" })).await.expect(201);
    llm.script([crate::support::fake_llm::Reply::says("OK")]);
    let tested = app.post(&format!("/api/v1/llm-providers/{}/test", allowed["id"].as_str().unwrap()), json!({})).await.expect(200);
    assert_eq!(tested["ok"], true, "{tested}");

    // Stored before the policy changed: the name is refused where it is resolved, for good.
    let new =
        NewLlmProvider { name: "Old".into(), base_url: format!("http://localhost:{port}/v1"), default_model: "m".into(), api_key: None };
    let stored = llm_providers::create(&app.db, app.org, new, Actor::System).await.unwrap();
    let tested = app.post(&format!("/api/v1/llm-providers/{}/test", stored.id), json!({})).await.expect(200);
    let error = tested["error"].as_str().unwrap_or_default();
    assert!(tested["ok"] == false && error.contains("localhost resolves to") && error.contains("egress_allow"), "{tested}");

    let app_id = app.create_app("Front desk").await;
    let hook = json!({ "name": "hook", "trigger": "agent_conversation_ended", "actions": [
        { "type": "webhook", "url": "https://hooks.example.com/a" }, { "type": "webhook", "url": "http://10.1.2.3/hook" } ] });
    let reply = app.post(&format!("/api/v1/apps/{app_id}/automations"), hook).await;
    assert_eq!(reply.body["errors"][0]["field"], "actions[1].url", "{}", reply.body);
    reply.problem(422);
}

/// Too many requests from one token or one address are answered 429 with `Retry-After`, as
/// problem+json; the limit of one token does not slow another.
#[tokio::test]
async fn api_requests_over_the_rate_limit_wait_as_told() {
    let app = crate::support::spawn_app_with(crate::support::Backend::Sqlite, |config| {
        config.rate_limit_per_token = 60; // one a second, bursts of six
        config.rate_limit_per_address = 0;
    })
    .await;
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..8).map(|_| app.get("/api/v1/apps"))).await.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 6, "{statuses:?}");
    let limited = app.get("/api/v1/apps").await;
    let retry_after: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert!(limited.problem(429).contains("API token"));
    let other = app.post("/api/v1/api-tokens", json!({ "name": "second" })).await;
    assert_eq!(other.status.as_u16(), 429, "the same token is still limited");
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    app.get("/api/v1/apps").await.expect(200);

    let app = crate::support::spawn_app_with(crate::support::Backend::Sqlite, |config| {
        config.rate_limit_per_address = 60;
    })
    .await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        // Without a token: guessing tokens is slowed too.
        statuses.push(client.get(format!("http://{}/api/v1/apps", app.addr)).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 429, 429]);
    let unlimited = client.get(format!("http://{}/healthz", app.addr)).send().await.unwrap();
    assert_eq!(unlimited.status(), 200, "only the API is limited");
}

/// Fuzz target over the live server: signed Twilio webhooks (voice, status, fallback,
/// connect-action) for the line's account, with any values for any parameters Twilio sends
/// (statuses, durations, sequence numbers, timestamps, numbers, unknown names), never get a 5xx.
/// `cargo test` runs a bounded random sample (`BOLERO_RANDOM_TEST_TIME_MS`).
#[test]
fn fuzz_signed_webhooks_with_any_parameters() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(crate::support::spawn_app(crate::support::Backend::Sqlite));
    let line = runtime.block_on(app.phone_line(json!({ "name": "Ava" })));
    // A failing case is reported, not recovered from: nothing is used after an unwind.
    let (runtime, app) = (std::panic::AssertUnwindSafe(runtime), std::panic::AssertUnwindSafe(app));
    const PATHS: [&str; 4] = ["/twilio/voice", "/twilio/status", "/twilio/fallback", "/twilio/connect-action"];
    const NAMES: [&str; 9] =
        ["CallStatus", "CallDuration", "SequenceNumber", "Timestamp", "From", "To", "Direction", "ErrorCode", "HandoffData"];
    bolero::check!().with_type::<(u8, u8, Vec<(u8, String)>, Vec<(String, String)>)>().for_each(|(path, call, known, unknown)| {
        let call_sid = sid("CA", ['a', 'b', 'c', 'd'][usize::from(*call % 4)]);
        let mut params = vec![
            ("AccountSid".to_owned(), line.account.clone()),
            ("CallSid".to_owned(), call_sid),
            ("To".to_owned(), crate::support::LINE_NUMBER.to_owned()),
            ("From".to_owned(), "+14155550199".to_owned()),
        ];
        params.extend(known.iter().map(|(name, value)| (NAMES[usize::from(*name) % NAMES.len()].to_owned(), value.clone())));
        params.extend(unknown.iter().cloned());
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let path = PATHS[usize::from(*path) % PATHS.len()];
        let reply = runtime.block_on(app.twilio_post(path, &pairs, Some(crate::support::LINE_TOKEN)));
        assert!(reply.status.as_u16() < 500, "{path} {params:?} answered {}: {}", reply.status, reply.text);
    });
}
