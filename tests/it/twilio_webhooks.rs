//! Twilio's webhooks against the real server: signatures, call records, TwiML for both modes,
//! refusals, status callbacks (duplicates, reordering), fallback and the connect action.

use serde_json::json;
use switchboard::domain::ids::PhoneProviderId;
use switchboard::domain::provider::PhoneProviderStatus;
use switchboard::storage::phone_providers;

use crate::support::{LINE_NUMBER as NUMBER, LINE_TOKEN as TOKEN, PhoneLine, TestApp, on_both_backends, sid};

on_both_backends!(
    signed_incoming_call_opens_a_record_and_connects_the_agent,
    forged_or_missing_signatures_change_nothing,
    refused_calls_are_still_recorded,
    status_callbacks_complete_the_record,
    fallback_and_connect_action_answer_twiml,
);

const CALLER: &str = "+14155550123";

/// An agent whose greeting needs escaping, on an active line.
async fn set_up(app: &TestApp) -> PhoneLine {
    app.phone_line(json!({ "name": "Ava", "first_message": r#"Hi <there> & "welcome" to Bob's"# })).await
}

fn incoming<'a>(call_sid: &'a str, account: &'a str, to: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", account),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Called", to),
        ("Caller", CALLER),
        ("Direction", "inbound"),
        ("From", CALLER),
        ("To", to),
        ("FromCountry", "US"),
    ]
}

async fn calls_of(app: &TestApp) -> Vec<serde_json::Value> {
    app.get("/api/v1/calls").await.expect(200)["data"].as_array().unwrap().clone()
}

async fn signed_incoming_call_opens_a_record_and_connects_the_agent(app: TestApp) {
    let line = set_up(&app).await;
    let call_sid = sid("CA", 'a');
    let reply = app.twilio_post("/twilio/voice", &incoming(&call_sid, &line.account, NUMBER), Some(TOKEN)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.content_type.starts_with("text/xml"));
    let calls = calls_of(&app).await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (call["call_sid"].as_str(), call["from"].as_str(), call["to"].as_str()),
        (Some(call_sid.as_str()), Some(CALLER), Some(NUMBER))
    );
    assert_eq!(call["agent_id"], line.agent.as_str());
    assert_eq!(call["agent_version"], 1);
    assert_eq!(call["phone_number_id"], line.number_id.as_str());
    assert_eq!(call["status"], "ringing");
    let call_id = call["id"].as_str().unwrap();
    let expected = format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="http://{addr}/twilio/connect-action">"#,
            r#"<ConversationRelay url="ws://{addr}/twilio/relay/{call}" language="en-US" interruptible="any" dtmfDetection="true" "#,
            r#"welcomeGreeting="Hi &lt;there&gt; &amp; &quot;welcome&quot; to Bob&apos;s"><Parameter name="call_id" value="{call}"/>"#,
            r#"</ConversationRelay></Connect></Response>"#
        ),
        addr = app.addr,
        call = call_id
    );
    assert_eq!(reply.text, expected);

    // Twilio retries: the same call gets the same record.
    let again = app.twilio_post("/twilio/voice", &incoming(&call_sid, &line.account, NUMBER), Some(TOKEN)).await;
    assert_eq!(again.text, expected);
    assert_eq!(calls_of(&app).await.len(), 1);

    // The service's settings apply from the next call: languages, then media streams.
    let number_path = format!("/api/v1/phone-numbers/{}", line.number_id);
    app.patch(&number_path, json!({ "expand_languages": true, "languages": ["fr", "es-MX", "en"] })).await.expect(200);
    let reply = app.twilio_post("/twilio/voice", &incoming(&sid("CA", 'b'), &line.account, NUMBER), Some(TOKEN)).await;
    assert!(reply.text.contains(r#"<Language code="fr-FR"/><Language code="es-MX"/><Parameter"#), "{}", reply.text);
    // Media streams need someone to hear and speak: a speech provider.
    let refused = app.patch(&number_path, json!({ "mode": "media_stream" })).await.problem(422);
    assert!(refused.contains("speech provider"), "{refused}");
    let speech = crate::support::fake_speech::FakeSpeech::start().await;
    let body = json!({ "name": "S", "base_url": speech.base_url, "api_key": crate::support::fake_speech::API_KEY,
        "transcription_model": crate::support::fake_speech::TRANSCRIPTION_MODEL, "speech_model": crate::support::fake_speech::SPEECH_MODEL,
        "default_voice": "alloy" });
    app.post("/api/v1/speech-providers", body).await.expect(201);
    app.patch(&number_path, json!({ "mode": "media_stream" })).await.expect(200);
    let reply = app.twilio_post("/twilio/voice", &incoming(&sid("CA", 'c'), &line.account, NUMBER), Some(TOKEN)).await;
    let media_call = calls_of(&app).await[0]["id"].as_str().unwrap().to_owned();
    let app_id = app.get(&number_path).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let listed = app.get(&format!("/api/v1/apps/{app_id}/phone-numbers")).await.expect(200);
    assert_eq!(listed["data"][0]["calls_last_7_days"], 3, "{listed}");
    assert!(listed["data"][0]["last_call_at"].is_string());
    assert_eq!(
        reply.text,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect action="http://{addr}/twilio/connect-action"><Stream url="ws://{addr}/twilio/media/{media_call}"><Parameter name="call_id" value="{media_call}"/></Stream></Connect></Response>"#,
            addr = app.addr
        )
    );
}

async fn forged_or_missing_signatures_change_nothing(app: TestApp) {
    let line = set_up(&app).await;
    let call_sid = sid("CA", 'd');
    let params = incoming(&call_sid, &line.account, NUMBER);
    for path in ["/twilio/voice", "/twilio/status", "/twilio/fallback", "/twilio/connect-action"] {
        assert_eq!(app.twilio_post(path, &params, None).await.status, 403, "{path} unsigned");
        assert_eq!(app.twilio_post(path, &params, Some("fedcba9876543210fedcba9876543210")).await.status, 403, "{path} forged");
    }
    assert!(calls_of(&app).await.is_empty(), "a rejected webhook leaves no record");

    // A valid signature over different parameters does not verify either.
    let signed = app.twilio_post("/twilio/voice", &params, Some(TOKEN)).await;
    assert_eq!(signed.status, 200);
    let owned: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let signature = switchboard::telephony::twilio::signature::sign(TOKEN, &app.url("/twilio/status"), &owned);
    let response = reqwest::Client::new()
        .post(app.url("/twilio/status"))
        .header("X-Twilio-Signature", signature)
        .form(&[("CallSid", call_sid.as_str()), ("CallStatus", "completed"), ("To", NUMBER)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(calls_of(&app).await[0]["status"], "ringing");

    // A number and account we do not know: nobody can vouch for the request.
    let fresh_sid = sid("CA", '8');
    let unknown_account = incoming(&fresh_sid, "ACffffffffffffffffffffffffffffffff", "+14155559999");
    assert_eq!(app.twilio_post("/twilio/voice", &unknown_account, Some(TOKEN)).await.status, 403);
}

async fn refused_calls_are_still_recorded(app: TestApp) {
    let line = set_up(&app).await;
    let number_path = format!("/api/v1/phone-numbers/{}", line.number_id);
    app.patch(&number_path, json!({ "status": "disabled" })).await.expect(200);
    let reply = app.twilio_post("/twilio/voice", &incoming(&sid("CA", 'e'), &line.account, NUMBER), Some(TOKEN)).await;
    assert!(reply.text.contains("<Say>") && reply.text.ends_with("<Hangup/></Response>"), "{}", reply.text);
    assert!(!reply.text.contains("Connect"));
    assert_eq!(calls_of(&app).await[0]["ended_reason"], "service_disabled");

    app.patch(&number_path, json!({ "status": "active" })).await.expect(200);
    let provider = PhoneProviderId(line.provider.parse().unwrap());
    phone_providers::record_verification(&app.db, app.org, provider, PhoneProviderStatus::Suspended, Some("account suspended"))
        .await
        .unwrap();
    let reply = app.twilio_post("/twilio/voice", &incoming(&sid("CA", 'f'), &line.account, NUMBER), Some(TOKEN)).await;
    assert!(reply.text.contains("<Say>") && reply.text.contains("<Hangup/>"));
    assert_eq!(calls_of(&app).await[0]["ended_reason"], "provider_inactive");

    // A number of our Twilio account that no service uses: refused, recorded, signature checked.
    let reply = app.twilio_post("/twilio/voice", &incoming(&sid("CA", '9'), &line.account, "+14155550177"), Some(TOKEN)).await;
    assert!(reply.text.contains("not in service"), "{}", reply.text);
    let newest = &calls_of(&app).await[0];
    assert_eq!((newest["ended_reason"].as_str(), newest["to"].as_str()), (Some("unknown_number"), Some("+14155550177")));
    assert_eq!(newest["agent_id"], serde_json::Value::Null);
}

async fn status_callbacks_complete_the_record(app: TestApp) {
    let line = set_up(&app).await;
    let call_sid = sid("CA", '3');
    app.twilio_post("/twilio/voice", &incoming(&call_sid, &line.account, NUMBER), Some(TOKEN)).await;
    let event = |status: &'static str, seq: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let mut params = vec![
            ("AccountSid", line.account.as_str()),
            ("CallSid", call_sid.as_str()),
            ("CallStatus", status),
            ("SequenceNumber", seq),
            ("CallbackSource", "call-progress-events"),
            ("From", CALLER),
            ("To", NUMBER),
        ];
        params.extend(extra);
        params
    };
    let answered = event("in-progress", "1", vec![("Timestamp", "Mon, 23 Nov 2026 10:00:05 +0000")]);
    let completed =
        event("completed", "2", vec![("Timestamp", "Mon, 23 Nov 2026 10:01:05 +0000"), ("CallDuration", "60"), ("Duration", "1")]);
    // Out of order and duplicated: completed first, twice, then the late answer.
    for params in [&completed, &completed, &answered] {
        assert_eq!(app.twilio_post("/twilio/status", params, Some(TOKEN)).await.status, 204);
    }
    let call = &calls_of(&app).await[0];
    assert_eq!(call["status"], "completed");
    assert_eq!(call["duration_secs"], 60);
    assert_eq!(call["ended_at"], "2026-11-23T10:01:05Z");
    assert_eq!(call["answered_at"], "2026-11-23T10:00:05Z");
    assert_eq!(call["ended_reason"], "caller_hangup");

    let reply = app.twilio_post("/twilio/status", &event("sleeping", "3", vec![]), Some(TOKEN)).await;
    assert_eq!(reply.status, 400);
}

async fn fallback_and_connect_action_answer_twiml(app: TestApp) {
    let line = set_up(&app).await;
    let call_sid = sid("CA", '4');
    app.twilio_post("/twilio/voice", &incoming(&call_sid, &line.account, NUMBER), Some(TOKEN)).await;
    let mut params = incoming(&call_sid, &line.account, NUMBER);
    params.extend([("ErrorCode", "11200"), ("ErrorUrl", "http://example.test/twilio/voice")]);
    let reply = app.twilio_post("/twilio/fallback", &params, Some(TOKEN)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.contains("<Say>We are sorry") && reply.text.ends_with("<Hangup/></Response>"), "{}", reply.text);
    assert_eq!(calls_of(&app).await[0]["error_code"], "11200");

    let mut params = incoming(&call_sid, &line.account, NUMBER);
    params.extend([("SessionId", "VX123"), ("SessionStatus", "ended"), ("SessionDuration", "12")]);
    let reply = app.twilio_post("/twilio/connect-action", &params, Some(TOKEN)).await;
    assert_eq!(reply.text, r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#);
}
