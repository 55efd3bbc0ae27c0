//! Provider verification and number lifecycle against the fake Twilio REST API: verify Active,
//! buy by area code, attach an existing number, list, edit, detach with and without release,
//! bad credentials, Twilio errors passed through, retries on 429.

use serde_json::{Value, json};

use crate::support::{TestApp, on_both_backends, sid};

on_both_backends!(
    providers_are_verified_with_twilio,
    numbers_are_bought_by_area_code_and_released,
    existing_numbers_are_attached_and_restored,
    twilio_errors_reach_the_user,
    a_backup_takes_the_calls_when_this_server_cannot,
    doctor_says_what_to_fix_and_puts_drifted_numbers_back,
);

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// An app with an agent and an active provider; returns (app, agent, provider, account).
async fn ready(app: &TestApp) -> (String, String, String, String) {
    let account = sid("AC", '5');
    app.twilio.add_account(&account, TOKEN);
    let app_id = app.create_app("Support").await;
    let agent = app.create_agent(&app_id, "Ava").await;
    let provider =
        app.post("/api/v1/phone-providers", json!({ "name": "Main", "account_sid": account, "auth_token": TOKEN })).await.expect(201);
    assert_eq!(provider["status"], "active");
    (app_id, agent, provider["id"].as_str().unwrap().to_owned(), account)
}

/// A backup number or deployment becomes the number's fallback at Twilio, so calls reach someone
/// while this server is down; it can never be this server, and removing it points the fallback
/// back here.
async fn a_backup_takes_the_calls_when_this_server_cannot(app: TestApp) {
    let (app_id, agent, provider, _) = ready(&app).await;
    app.twilio.offer("415", &["+14155550142"]);
    let base = format!("http://{}", app.addr);
    let body = json!({ "provider_id": provider, "agent_id": agent, "area_code": "415", "backup": { "forward_to": "+14155550199" } });
    let bought = app.post(&format!("/api/v1/apps/{app_id}/phone-numbers"), body).await.expect(201);
    assert_eq!(bought["backup"], json!({ "forward_to": "+14155550199" }));
    let fallback = || app.twilio.number("+14155550142").unwrap().voice["voice_fallback_url"].clone();
    assert_eq!(fallback(), "https://twimlets.com/forward?PhoneNumber=%2B14155550199", "Twilio forwards by itself");
    assert_eq!(app.twilio.number("+14155550142").unwrap().voice["voice_url"], format!("{base}/twilio/voice"));

    let number = format!("/api/v1/phone-numbers/{}", bought["id"].as_str().unwrap());
    let ourselves = app.patch(&number, json!({ "backup": { "deployment": base } })).await;
    assert_eq!(ourselves.body["errors"][0]["field"], "backup.deployment", "{}", ourselves.body);
    assert!(ourselves.problem(422).contains("is this server"));
    let both = app.patch(&number, json!({ "backup": { "forward_to": "+14155550199", "deployment": "https://b.example.com" } })).await;
    both.problem(400);
    let other = app.patch(&number, json!({ "backup": { "deployment": "https://sb-b.example.com/" } })).await.expect(200);
    assert_eq!(other["backup"], json!({ "deployment": "https://sb-b.example.com" }));
    assert_eq!(fallback(), "https://sb-b.example.com/twilio/voice");
    // Other changes leave the backup alone.
    app.patch(&number, json!({ "generate_first_message": true })).await.expect(200);
    assert_eq!(app.get(&number).await.expect(200)["backup"], other["backup"]);

    app.twilio.set_down(true);
    assert_eq!(app.patch(&number, json!({ "backup": null })).await.status, 502, "Twilio could not be told");
    assert_eq!(app.get(&number).await.expect(200)["backup"], other["backup"], "so nothing changed");
    app.twilio.set_down(false);
    assert!(app.patch(&number, json!({ "backup": null })).await.expect(200)["backup"].is_null());
    assert_eq!(fallback(), format!("{base}/twilio/fallback"));
}

/// `switchboard doctor` on a deployment with things wrong: a private public URL, a number
/// someone changed in Twilio's console, a model server that is not there. It says what to fix and
/// fails; `--fix` puts the number back.
async fn doctor_says_what_to_fix_and_puts_drifted_numbers_back(app: TestApp) {
    let (app_id, agent, provider, _) = ready(&app).await;
    app.twilio.offer("415", &["+14155550142"]);
    let body = json!({ "provider_id": provider, "agent_id": agent, "area_code": "415" });
    app.post(&format!("/api/v1/apps/{app_id}/phone-numbers"), body).await.expect(201);
    app.twilio.set_voice("+14155550142", "voice_url", "https://old.example.com/voice");
    let dead_model = json!({ "name": "Gone", "base_url": "http://127.0.0.1:9/v1", "default_model": "m" });
    app.post("/api/v1/llm-providers", dead_model).await.expect(201);
    let base = format!("http://{}", app.addr);
    let output = tokio::task::spawn_blocking({
        let mut doctor = doctor(&app, false);
        move || doctor.output().unwrap()
    });
    let output = output.await.unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{report}");
    for line in [
        format!("FIX   public_base_url: {base} is a private address Twilio cannot reach"),
        "ok    database: opens".to_owned(),
        "ok    recordings: the folder".to_owned(),
        "ok    phone provider “Main”: active".to_owned(),
        "FIX   number +14155550142: its settings at Twilio differ (voice_url was `https://old.example.com/voice`)".to_owned(),
        "FIX   LLM provider “Gone”: m did not answer".to_owned(),
    ] {
        assert!(report.contains(&line), "`{line}` missing from:\n{report}");
    }
    let fixed = tokio::task::spawn_blocking({
        let mut doctor = doctor(&app, true);
        move || doctor.output().unwrap()
    });
    let fixed = String::from_utf8_lossy(&fixed.await.unwrap().stdout).into_owned();
    assert!(fixed.contains("ok    number +14155550142: put back at Twilio"), "{fixed}");
    assert_eq!(app.twilio.number("+14155550142").unwrap().voice["voice_url"], format!("{base}/twilio/voice"));
}

/// `switchboard doctor` (`--fix`) for the test server's database, Twilio and URL.
fn doctor(app: &TestApp, fix: bool) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("--data-dir").arg(app.data_dir.path()).arg("--database-url").arg(&app.database_url).arg("doctor");
    if fix {
        cmd.arg("--fix");
    }
    cmd.env_remove("RUST_LOG").env("SWITCHBOARD_LOG", "error").env("SWITCHBOARD_ALLOW_PRIVATE_TARGETS", "true");
    cmd.env("SWITCHBOARD_TWILIO_API_BASE", app.twilio.base_url()).env("SWITCHBOARD_PUBLIC_BASE_URL", format!("http://{}", app.addr));
    cmd
}

async fn providers_are_verified_with_twilio(app: TestApp) {
    let (_, _, provider, account) = ready(&app).await;
    let path = format!("/api/v1/phone-providers/{provider}");

    app.twilio.set_account_status(&account, "suspended");
    let checked = app.post(&format!("{path}/verify"), json!({})).await.expect(200);
    assert_eq!(checked["status"], "suspended");
    app.twilio.set_account_status(&account, "active");
    assert_eq!(app.post(&format!("{path}/verify"), json!({})).await.expect(200)["status"], "active");

    app.twilio.set_down(true);
    let unreachable = app.post(&format!("{path}/verify"), json!({})).await.expect(200);
    assert_eq!(unreachable["status"], "unreachable");
    assert!(unreachable["last_error"].as_str().unwrap().contains("503"), "{unreachable}");
    app.twilio.set_down(false);

    let wrong = app
        .post("/api/v1/phone-providers", json!({ "name": "Typo", "account_sid": sid("AC", '6'), "auth_token": "wrong" }))
        .await
        .expect(201);
    assert_eq!(wrong["status"], "invalid_credentials");
    app.post(&format!("/api/v1/phone-providers/{}/verify", wrong["id"].as_str().unwrap()), json!({})).await.expect(200);
    app.post("/api/v1/phone-providers/01900000-0000-7000-8000-000000000000/verify", json!({})).await.problem(404);
}

async fn numbers_are_bought_by_area_code_and_released(app: TestApp) {
    let (app_id, agent, provider, _) = ready(&app).await;
    app.twilio.offer("415", &["+14155550142", "+14155550143"]);

    let offers = app.get(&format!("/api/v1/phone-providers/{provider}/available-numbers?area_code=415")).await.expect(200);
    assert_eq!(offers["data"][0]["phone_number"], "+14155550142");
    app.get(&format!("/api/v1/phone-providers/{provider}/available-numbers?area_code=41")).await.problem(422);
    app.get(&format!("/api/v1/phone-providers/{provider}/available-numbers?country=USA")).await.problem(422);

    let body = json!({ "provider_id": provider, "agent_id": agent, "area_code": "415", "expand_languages": true, "languages": ["fr"], "generate_first_message": false });
    let bought = app.post(&format!("/api/v1/apps/{app_id}/phone-numbers"), body).await.expect(201);
    assert_eq!(bought["number"], "+14155550142");
    assert_eq!(bought["area_code"], "415");
    assert_eq!(bought["status"], "active");
    assert_eq!(bought["mode"], "conversation_relay");
    let at_twilio = app.twilio.number("+14155550142").expect("bought at Twilio");
    assert_eq!(bought["twilio_sid"], at_twilio.sid.as_str());
    let base = format!("http://{}", app.addr);
    assert_eq!(at_twilio.voice["voice_url"], format!("{base}/twilio/voice"));
    assert_eq!(at_twilio.voice["voice_fallback_url"], format!("{base}/twilio/fallback"));
    assert_eq!(at_twilio.voice["status_callback"], format!("{base}/twilio/status"));
    assert_eq!(at_twilio.voice["voice_method"], "POST");

    let listed = app.get(&format!("/api/v1/apps/{app_id}/phone-numbers")).await.expect(200);
    let row = &listed["data"][0];
    assert_eq!(
        (row["agent_name"].as_str(), row["calls_today"].as_i64(), row["calls_last_7_days"].as_i64()),
        (Some("Ava"), Some(0), Some(0))
    );
    assert_eq!(row["last_call_at"], Value::Null);

    // Removing without release keeps the number in the account. Clearing our URLs needs empty
    // values, which Twilio's description refuses (and so does the fake): the service is removed
    // all the same, and the answer says exactly what was left at Twilio.
    let number_path = format!("/api/v1/phone-numbers/{}", bought["id"].as_str().unwrap());
    let partial = app.delete(&number_path).await.expect(200);
    assert_eq!(partial["removed"], true);
    assert_eq!(
        partial["left_at_twilio"],
        json!({ "voice_url": format!("{base}/twilio/voice"), "voice_fallback_url": format!("{base}/twilio/fallback"), "status_callback": format!("{base}/twilio/status") })
    );
    assert!(partial["detail"].as_str().unwrap().contains("Twilio console"), "{partial}");
    app.get(&number_path).await.problem(404);
    let kept = app.twilio.number("+14155550142").expect("still in the account");
    assert_eq!(kept.voice["voice_url"], format!("{base}/twilio/voice"));

    // Buy it again by number, then remove with release.
    let again = app
        .post(&format!("/api/v1/apps/{app_id}/phone-numbers"), json!({ "provider_id": provider, "agent_id": agent, "area_code": "415" }))
        .await
        .expect(201);
    assert_eq!(again["number"], "+14155550143");
    app.delete(&format!("/api/v1/phone-numbers/{}?release=true", again["id"].as_str().unwrap())).await.expect(204);
    assert!(app.twilio.number("+14155550143").is_none(), "released at Twilio");
    app.get(&format!("/api/v1/phone-numbers/{}", again["id"].as_str().unwrap())).await.problem(404);
    let log = app.get("/api/v1/audit-log?limit=1").await.expect(200);
    assert_eq!(log["data"][0]["details"]["released"], true);
}

async fn existing_numbers_are_attached_and_restored(app: TestApp) {
    let (app_id, agent, provider, account) = ready(&app).await;
    let old =
        [("voice_url", "https://old.example.com/voice"), ("voice_method", "GET"), ("status_callback", "https://old.example.com/status")];
    let first_sid = app.twilio.own(&account, "+13125550100", &old);
    app.twilio.own(&account, "+13125550101", &[]);
    // Every property of a number may be null in Twilio's description: such an entry is skipped.
    app.twilio.own(&account, "", &[]);

    let (owned, pages) = app.collect_pages(&format!("/api/v1/phone-providers/{provider}/incoming-numbers"), 1).await;
    assert_eq!(pages, 3);
    assert_eq!(owned.iter().map(|n| n["phone_number"].as_str().unwrap()).collect::<Vec<_>>(), ["+13125550100", "+13125550101"]);
    assert_eq!(owned[0]["voice_url"], "https://old.example.com/voice");

    let attached = app
        .post(
            &format!("/api/v1/apps/{app_id}/phone-numbers"),
            json!({ "provider_id": provider, "agent_id": agent, "phone_number": "+13125550100" }),
        )
        .await
        .expect(201);
    assert_eq!(attached["twilio_sid"], first_sid.as_str());
    assert_eq!(attached["area_code"], Value::Null);
    assert_eq!(app.twilio.number("+13125550100").unwrap().voice["voice_url"], format!("http://{}/twilio/voice", app.addr));

    let detail = app
        .post(
            &format!("/api/v1/apps/{app_id}/phone-numbers"),
            json!({ "provider_id": provider, "agent_id": agent, "twilio_sid": first_sid }),
        )
        .await
        .problem(409);
    assert!(detail.contains("already serves"), "{detail}");

    // Editing applies to the record; removing restores what the number had before, sending only
    // what changes. The number had no fallback URL, and ours cannot be cleared with a value the
    // description allows: the answer names it.
    let path = format!("/api/v1/phone-numbers/{}", attached["id"].as_str().unwrap());
    app.patch(&path, json!({ "status": "disabled" })).await.expect(200);
    let partial = app.delete(&path).await.expect(200);
    assert_eq!(partial["left_at_twilio"], json!({ "voice_fallback_url": format!("http://{}/twilio/fallback", app.addr) }));
    let restored = app.twilio.number("+13125550100").expect("kept in the account");
    assert_eq!(restored.voice["voice_url"], "https://old.example.com/voice");
    assert_eq!(restored.voice["voice_method"], "GET");
    assert_eq!(restored.voice["status_callback"], "https://old.example.com/status");

    let by_sid = app
        .post(
            &format!("/api/v1/apps/{app_id}/phone-numbers"),
            json!({ "provider_id": provider, "agent_id": agent, "twilio_sid": first_sid, "mode": "media_stream" }),
        )
        .await
        .problem(422);
    assert!(by_sid.contains("speech provider"), "no one to hear and speak: {by_sid}");
    assert!(app.twilio.number("+13125550100").unwrap().voice["voice_url"] == "https://old.example.com/voice", "nothing changed at Twilio");
    let by_sid = app
        .post(
            &format!("/api/v1/apps/{app_id}/phone-numbers"),
            json!({ "provider_id": provider, "agent_id": agent, "twilio_sid": first_sid, "mode": "conversation_relay" }),
        )
        .await
        .expect(201);
    assert_eq!((by_sid["number"].as_str(), by_sid["mode"].as_str()), (Some("+13125550100"), Some("conversation_relay")));
    let missing = sid("PN", 'f');
    let detail = app
        .post(&format!("/api/v1/apps/{app_id}/phone-numbers"), json!({ "provider_id": provider, "agent_id": agent, "twilio_sid": missing }))
        .await
        .problem(422);
    assert!(detail.contains("no number"), "{detail}");
}

async fn twilio_errors_reach_the_user(app: TestApp) {
    let (app_id, agent, provider, account) = ready(&app).await;
    let numbers = format!("/api/v1/apps/{app_id}/phone-numbers");
    let detail = app.post(&numbers, json!({ "provider_id": provider, "agent_id": agent, "area_code": "999" })).await.problem(422);
    assert!(detail.contains("No phone numbers found in area code 999") && detail.contains("21452"), "{detail}");
    let detail =
        app.post(&numbers, json!({ "provider_id": provider, "agent_id": agent, "phone_number": "+14155550999" })).await.problem(422);
    assert!(detail.contains("not available"), "{detail}");

    for (body, field) in [
        (json!({ "provider_id": provider, "agent_id": agent }), "area_code"),
        (json!({ "provider_id": provider, "agent_id": agent, "area_code": "415", "phone_number": "+14155550100" }), "area_code"),
        (json!({ "provider_id": provider, "agent_id": agent, "area_code": "4155" }), "area_code"),
        (json!({ "provider_id": provider, "agent_id": agent, "phone_number": "4155550100" }), "phone_number"),
        (json!({ "provider_id": provider, "agent_id": agent, "twilio_sid": "PN123" }), "twilio_sid"),
        (json!({ "provider_id": provider, "agent_id": agent, "area_code": "415", "languages": ["xx"] }), "languages"),
        (json!({ "provider_id": "01900000-0000-7000-8000-000000000000", "agent_id": agent, "area_code": "415" }), "provider_id"),
        (json!({ "provider_id": provider, "agent_id": "01900000-0000-7000-8000-000000000000", "area_code": "415" }), "agent_id"),
    ] {
        let reply = app.post(&numbers, body.clone()).await;
        assert_eq!(reply.body["errors"][0]["field"], field, "{body}: {}", reply.body);
        reply.problem(422);
    }

    // 429s are retried with back-off.
    app.twilio.offer("212", &["+12125550100"]);
    app.twilio.throttle(2);
    let offers = app.get(&format!("/api/v1/phone-providers/{provider}/available-numbers?area_code=212")).await.expect(200);
    assert_eq!(offers["data"][0]["phone_number"], "+12125550100");

    // Twilio down: 502, nothing stored.
    app.twilio.set_down(true);
    let detail = app.post(&numbers, json!({ "provider_id": provider, "agent_id": agent, "area_code": "212" })).await.problem(502);
    assert!(detail.contains("could not be reached"), "{detail}");
    app.twilio.set_down(false);
    assert_eq!(app.get(&numbers).await.expect(200)["data"], json!([]));

    // Credentials revoked at Twilio: the provider is marked, and provisioning is refused.
    app.twilio.add_account(&account, "a-rotated-token");
    let detail = app.get(&format!("/api/v1/phone-providers/{provider}/available-numbers?area_code=212")).await.problem(422);
    assert!(detail.contains("20003"), "{detail}");
    assert_eq!(app.get(&format!("/api/v1/phone-providers/{provider}")).await.expect(200)["status"], "invalid_credentials");
    let detail = app.post(&numbers, json!({ "provider_id": provider, "agent_id": agent, "area_code": "212" })).await.problem(422);
    assert!(detail.contains("invalid_credentials"), "{detail}");
}

/// Live-call control, which the relay adapter and recovery use to end calls.
#[tokio::test]
async fn calls_can_be_hung_up() {
    use switchboard::telephony::twilio::rest::{Credentials, TwilioClient};
    let twilio = crate::support::fake_twilio::FakeTwilio::start().await;
    let account = sid("AC", '7');
    twilio.add_account(&account, TOKEN);
    let client = TwilioClient::new(&twilio.base_url());
    let creds = Credentials { account_sid: account.clone(), username: account.clone(), password: TOKEN.to_owned().into() };
    let call = sid("CA", '7');
    client.hang_up(&creds, &call).await.unwrap();
    let updates = twilio.call_updates();
    assert_eq!(updates, [(call.clone(), vec![("Status".to_owned(), "completed".to_owned())])]);

    let wrong = Credentials { password: "nope".to_owned().into(), ..creds };
    let err = client.hang_up(&wrong, &call).await.unwrap_err();
    assert!(err.is_bad_credentials(), "{err}");
}

/// Providers are checked again in the background, so a suspension shows without anyone asking.
#[tokio::test]
async fn providers_are_checked_again_periodically() {
    let app = crate::support::spawn_app_with(crate::support::Backend::Sqlite, |c| c.provider_verify_interval_secs = 1).await;
    let (_, _, provider, account) = ready(&app).await;
    app.twilio.set_account_status(&account, "suspended");
    let path = format!("/api/v1/phone-providers/{provider}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let current = app.get(&path).await.expect(200);
        if current["status"] == "suspended" {
            assert!(current["last_error"].as_str().unwrap().contains("suspended"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the background check never ran: {current}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
