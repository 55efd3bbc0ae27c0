//! Call recording: the consent announcement before the agent's first words, Switchboard's own
//! two-channel recording of Media Streams calls, Twilio's recording of ConversationRelay calls
//! (signed callback, download, deleted at Twilio), the caller's keypad opt-out, sealed storage,
//! playback by byte range, erasure and the retention purge.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::domain::recording::{DEFAULT_ANNOUNCEMENT, OPTED_OUT_CONFIRMATION};
use switchboard::recording::Recordings;
use switchboard::recording::store::RecordingStore;
use switchboard::telephony::twilio::dev_phone::CallerAction;

use crate::conversations::{connect, ring_agent};
use crate::media_streams::{agent_says, media_line, place_call};
use crate::support::fake_llm::Reply;
use crate::support::{LINE_TOKEN, TestApp, fake_speech, on_both_backends, sid};

on_both_backends!(
    a_media_stream_call_is_recorded_on_two_channels_sealed_and_played_by_range,
    twilios_recording_of_a_relay_call_is_fetched_stored_and_deleted_at_twilio,
    a_caller_who_presses_9_is_not_recorded,
);

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|entry| if entry.path().is_dir() { files_under(&entry.path()) } else { vec![entry.path()] }).collect()
}

/// The two channels of a two-channel 16-bit WAV file.
fn channels(wav: &[u8]) -> (switchboard::audio::Audio, switchboard::audio::Audio) {
    let layout = switchboard::audio::wav::layout(wav).unwrap().unwrap();
    assert_eq!(layout.channels, 2);
    let samples: Vec<i16> = wav[layout.data_start..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let side =
        |offset: usize| switchboard::audio::Audio { rate: layout.rate, samples: samples.iter().skip(offset).step_by(2).copied().collect() };
    (side(0), side(1))
}

async fn get_bytes(app: &TestApp, path: &str, range: Option<&str>, token: &str) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(app.url(path)).bearer_auth(token);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

async fn a_media_stream_call_is_recorded_on_two_channels_sealed_and_played_by_range(app: TestApp) {
    let (llm, _fake, line) = media_line(&app, json!({ "name": "Ava", "first_message": "Hi, this is Ava." })).await;
    let number = format!("/api/v1/phone-numbers/{}", line.number_id);
    let refused = app.patch(&number, json!({ "recording": { "enabled": true, "announcement": { "xx": "Hi" } } })).await;
    assert_eq!(refused.body["errors"][0]["field"], "recording.announcement", "{}", refused.body);
    let saved = app.patch(&number, json!({ "recording": { "enabled": true } })).await.expect(200);
    assert_eq!(saved["recording"]["enabled"], true);
    llm.script([Reply::says("We open at nine.")]);

    let phone = fake_speech::FakeSpeech::start().await;
    let (act, mut events, call) = place_call(&app, &line, &phone);
    // The announcement, and the greeting right after it.
    assert_eq!(agent_says(&mut events).await, format!("{DEFAULT_ANNOUNCEMENT}Hi, this is Ava."));
    act.send(CallerAction::Say("When do you open?".into())).await.unwrap();
    assert_eq!(agent_says(&mut events).await, "We open at nine.");
    act.send(CallerAction::HangUp).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), call).await.unwrap().unwrap().unwrap();

    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let recording = app.until(&format!("/api/v1/calls/{id}/recording"), |r| r["status"] == "stored").await;
    assert_eq!((recording["source"].as_str(), recording["channels"].as_i64()), (Some("switchboard"), Some(2)), "{recording}");
    assert_eq!(recording["announcement"], DEFAULT_ANNOUNCEMENT);
    let detail = app.get(&format!("/api/v1/calls/{id}")).await.expect(200);
    assert_eq!(detail["transcript"][0]["text"], DEFAULT_ANNOUNCEMENT, "{detail}");
    assert_eq!(detail["recording"]["id"], recording["id"]);

    // At rest the audio is sealed: no WAV header, none of its samples.
    let stored = files_under(&app.data_dir.path().join("recordings"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    let at_rest = std::fs::read(&stored[0]).unwrap();
    let audio_path = format!("/api/v1/calls/{id}/recording/audio");
    let whole = get_bytes(&app, &audio_path, None, &app.token).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let wav = whole.bytes().await.unwrap().to_vec();
    assert_eq!(wav.len() as i64, recording["bytes"].as_i64().unwrap());
    assert!(!at_rest.starts_with(b"RIFF") && !at_rest.windows(64).any(|w| w == &wav[2000..2064]), "the bytes on disk are not the WAV");

    // The caller on the left, the agent on the right, each as heard.
    let (caller, agent) = channels(&wav);
    assert_eq!(fake_speech::hear(&caller), "When do you open?");
    assert_eq!(fake_speech::hear(&agent), format!("{DEFAULT_ANNOUNCEMENT}Hi, this is Ava.We open at nine."));
    let seconds = recording["duration_ms"].as_i64().unwrap() as f64 / 1000.0;
    assert!((seconds - caller.samples.len() as f64 / 8000.0).abs() < 0.1, "{seconds} s");

    // A player seeking: byte ranges, and one past the end.
    let len = wav.len();
    for (range, expected) in [("bytes=0-43", 0..44), ("bytes=70000-", 70_000..len), ("bytes=-100", len - 100..len)] {
        let part = get_bytes(&app, &audio_path, Some(range), &app.token).await;
        assert_eq!(part.status(), 206, "{range}");
        let content_range = format!("bytes {}-{}/{len}", expected.start, expected.end - 1);
        assert_eq!(part.headers()["content-range"].to_str().unwrap(), content_range);
        assert_eq!(part.bytes().await.unwrap().as_ref(), &wav[expected], "{range}");
    }
    let beyond = get_bytes(&app, &audio_path, Some(&format!("bytes={len}-")), &app.token).await;
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()["content-range"].to_str().unwrap(), format!("bytes */{len}"));

    // Another organisation sees nothing.
    let (_, other) = app.other_org().await;
    assert_eq!(get_bytes(&app, &audio_path, None, &other).await.status(), 404);

    // Erasing the call erases its recording: the sealed file and the row, both audited.
    assert_eq!(app.delete(&format!("/api/v1/calls/{id}")).await.status, 204);
    assert!(files_under(&app.data_dir.path().join("recordings")).is_empty());
    assert_eq!(app.get(&audio_path).await.status, 404);
    let audit = app.get("/api/v1/audit-log").await.expect(200);
    let actions: Vec<&str> = audit["data"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"recording.erased") && actions.contains(&"call.deleted"), "{actions:?}");
}

/// Twilio's signed recording callbacks for `sid` of `call_sid` on the line's account.
async fn recording_callback(app: &TestApp, account: &str, call_sid: &str, sid: &str, status: &str, token: Option<&str>) -> u16 {
    let params = [
        ("AccountSid", account),
        ("CallSid", call_sid),
        ("RecordingSid", sid),
        ("RecordingStatus", status),
        ("RecordingChannels", "2"),
        ("RecordingSource", "StartCallRecordingTwiML"),
        ("RecordingStartTime", "Mon, 30 Nov 2026 10:00:00 +0000"),
    ];
    app.twilio_post("/twilio/recording", &params, token).await.status.as_u16()
}

async fn twilios_recording_of_a_relay_call_is_fetched_stored_and_deleted_at_twilio(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava", "first_message": "Hi!" })).await;
    let number = format!("/api/v1/phone-numbers/{}", call.line.number_id);
    app.patch(&number, json!({ "recording": { "enabled": true, "announcement": { "en": "We record our calls." } } })).await.expect(200);
    let call_sid = sid("CA", 'd');
    let twiml = app.ring(&call.line, &call_sid).await;
    assert!(
        twiml.text.contains(r#"<Start><Recording channels="dual""#)
            && twiml.text.contains(&format!(r#"recordingStatusCallback="http://{}/twilio/recording""#, app.addr))
            && twiml.text.contains(r#"<Say language="en-US">We record our calls.</Say><Connect"#),
        "{}",
        twiml.text
    );
    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/api/v1/calls/{id}/recording")).await.expect(200)["status"], "recording");

    let wav = switchboard::audio::wav::encode_two_channels(8000, &[1000; 8000], &[-1000; 8000]);
    let recording_sid = app.twilio.record(&call_sid, wav.clone());
    let account = call.line.account.clone();
    assert_eq!(recording_callback(&app, &account, &call_sid, &recording_sid, "completed", None).await, 403, "unsigned");
    assert_eq!(recording_callback(&app, &account, &call_sid, &recording_sid, "in-progress", Some(LINE_TOKEN)).await, 204);
    assert_eq!(recording_callback(&app, &account, &call_sid, &recording_sid, "completed", Some(LINE_TOKEN)).await, 204);
    let stored = app.until(&format!("/api/v1/calls/{id}/recording"), |r| r["status"] == "stored").await;
    assert_eq!((stored["source"].as_str(), stored["duration_ms"].as_i64()), (Some("carrier"), Some(1000)), "{stored}");
    let audio = get_bytes(&app, &format!("/api/v1/calls/{id}/recording/audio"), None, &app.token).await;
    assert_eq!(audio.bytes().await.unwrap().as_ref(), wav.as_slice(), "the audio Twilio recorded, as it was");
    assert_eq!(app.twilio.recording_status(&recording_sid), None, "deleted at Twilio: the only copy is ours");
    // A repeated callback changes nothing.
    assert_eq!(recording_callback(&app, &account, &call_sid, &recording_sid, "completed", Some(LINE_TOKEN)).await, 204);
    assert_eq!(app.get(&format!("/api/v1/calls/{id}/recording")).await.expect(200)["stored_at"], stored["stored_at"]);

    // A service that keeps Twilio's copy: erasing the recording erases that copy too.
    app.patch(&number, json!({ "recording": { "enabled": true, "keep_carrier_copy": true } })).await.expect(200);
    let kept_sid = sid("CA", 'f');
    app.ring(&call.line, &kept_sid).await;
    let kept_id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let kept_recording = app.twilio.record(&kept_sid, wav.clone());
    assert_eq!(recording_callback(&app, &account, &kept_sid, &kept_recording, "completed", Some(LINE_TOKEN)).await, 204);
    app.until(&format!("/api/v1/calls/{kept_id}/recording"), |r| r["status"] == "stored").await;
    assert_eq!(app.twilio.recording_status(&kept_recording).as_deref(), Some("completed"), "Twilio keeps its copy");
    app.twilio.set_down(true);
    assert_eq!(app.delete(&format!("/api/v1/calls/{kept_id}")).await.status, 502, "Twilio's copy could not go");
    app.twilio.set_down(false);
    app.get(&format!("/api/v1/calls/{kept_id}/recording")).await.expect(200);
    assert_eq!(app.delete(&format!("/api/v1/calls/{kept_id}")).await.status, 204);
    assert_eq!(app.twilio.recording_status(&kept_recording), None, "erased everywhere");

    // Erasing only the recording keeps the call.
    assert_eq!(app.delete(&format!("/api/v1/calls/{id}/recording")).await.status, 204);
    assert_eq!(app.get(&format!("/api/v1/calls/{id}/recording")).await.status, 404);
    app.get(&format!("/api/v1/calls/{id}")).await.expect(200);

    // The retention purge erases Twilio's kept copy too; while Twilio is away it waits.
    let purged_sid = sid("CA", '9');
    app.ring(&call.line, &purged_sid).await;
    let purged_id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let purged_recording = app.twilio.record(&purged_sid, wav.clone());
    assert_eq!(recording_callback(&app, &account, &purged_sid, &purged_recording, "completed", Some(LINE_TOKEN)).await, 204);
    app.until(&format!("/api/v1/calls/{purged_id}/recording"), |r| r["status"] == "stored").await;
    let policy = json!({ "record_days": 30, "recording_days": 1 });
    app.send(reqwest::Method::PUT, "/api/v1/retention", Some(&app.token), Some(&policy)).await.expect(200);
    let carrier = switchboard::telephony::twilio::recording::CarrierRecordings {
        db: app.db.clone(),
        client: switchboard::telephony::twilio::rest::TwilioClient::new(&app.twilio.base_url()),
        recordings: Recordings::new(app.db.clone(), RecordingStore::local(app.data_dir.path().join("recordings"))),
    };
    let later = switchboard::domain::time::now() + chrono::Duration::days(2);
    app.twilio.set_down(true);
    assert_eq!(carrier.recordings.purge_expired(later, |d| carrier.erase_copy_of(d)).await.unwrap(), 0);
    app.twilio.set_down(false);
    assert!(carrier.recordings.purge_expired(later, |d| carrier.erase_copy_of(d)).await.unwrap() >= 1);
    assert_eq!(app.twilio.recording_status(&purged_recording), None, "purged at Twilio too");
    assert_eq!(app.get(&format!("/api/v1/calls/{purged_id}/recording")).await.status, 404);
    app.send(reqwest::Method::PUT, "/api/v1/retention", Some(&app.token), Some(&json!({}))).await.expect(200);
}

async fn a_caller_who_presses_9_is_not_recorded(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava", "first_message": "Hi!" })).await;
    let number = format!("/api/v1/phone-numbers/{}", call.line.number_id);
    let settings = json!({ "recording": { "enabled": true, "caller_may_opt_out": true } });
    app.patch(&number, settings).await.expect(200);
    let call_sid = sid("CA", 'e');
    let twiml = app.ring(&call.line, &call_sid).await;
    assert!(twiml.text.contains("press 9"), "the default wording says how to opt out: {}", twiml.text);
    let calls = app.get("/api/v1/calls").await.expect(200);
    let id = calls["data"][0]["id"].as_str().unwrap().to_owned();
    let recording_sid = app.twilio.record(&call_sid, switchboard::audio::wav::encode_two_channels(8000, &[1; 800], &[2; 800]));
    let account = call.line.account.clone();
    assert_eq!(recording_callback(&app, &account, &call_sid, &recording_sid, "in-progress", Some(LINE_TOKEN)).await, 204);

    let relayed = crate::conversations::Call { id: id.clone(), sid: call_sid.clone(), ..call };
    let mut relay = connect(&app, &relayed).await;
    relay.send(json!({ "type": "dtmf", "digit": "9" })).await;
    assert_eq!(relay.utterance().await.text, OPTED_OUT_CONFIRMATION);
    let opted_out = app.until(&format!("/api/v1/calls/{id}/recording"), |r| r["status"] == "opted_out").await;
    assert!(opted_out["opted_out_at"].is_string(), "{opted_out}");
    for _ in 0..100 {
        if app.twilio.recording_status(&recording_sid).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.twilio.recording_status(&recording_sid), None, "stopped and deleted at Twilio");
    assert!(relayed.llm.requests().is_empty(), "the key was no question for the model");
    // Twilio's last callback for it fetches nothing.
    assert_eq!(recording_callback(&app, &account, &call_sid, &recording_sid, "completed", Some(LINE_TOKEN)).await, 204);
    let audio = app.get(&format!("/api/v1/calls/{id}/recording/audio")).await;
    assert!(audio.problem(409).contains("opted_out"));
    relay.close().await;
}

/// The retention purge erases recordings past `recording_days` (sealed audio and row), before
/// any call record of theirs goes; a policy keeping recordings longer than records is refused.
#[tokio::test]
async fn recordings_past_their_retention_are_purged() {
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite).await;
    let refused = app
        .send(reqwest::Method::PUT, "/api/v1/retention", Some(&app.token), Some(&json!({ "record_days": 10, "recording_days": 30 })))
        .await;
    assert_eq!(refused.body["errors"][0]["field"], "recording_days", "{}", refused.body);
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    let store = RecordingStore::local(app.data_dir.path().join("recordings"));
    let recordings = Recordings::new(app.db.clone(), store);
    let call_id = switchboard::domain::ids::CallId(call.id.parse().unwrap());
    let row = switchboard::storage::recordings::start(
        &app.db,
        app.org,
        call_id,
        switchboard::domain::recording::RecordingSource::Switchboard,
        None,
    )
    .await
    .unwrap();
    let wav = switchboard::audio::wav::encode_two_channels(8000, &[3; 80], &[4; 80]);
    assert!(recordings.keep(app.org, row.id, wav, 2, 10).await.unwrap());
    assert_eq!(files_under(&app.data_dir.path().join("recordings")).len(), 1);
    let policy = json!({ "transcript_days": null, "record_days": null, "recording_days": 1 });
    let saved: Value = app.send(reqwest::Method::PUT, "/api/v1/retention", Some(&app.token), Some(&policy)).await.expect(200);
    assert_eq!(saved["recording_days"], 1);

    let now = switchboard::domain::time::now();
    /// A recording Switchboard made has no copy elsewhere.
    fn nowhere_else(_: &switchboard::storage::recordings::Doomed) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    assert_eq!(recordings.purge_expired(now, nowhere_else).await.unwrap(), 0, "not yet a day old");
    assert_eq!(recordings.purge_expired(now + chrono::Duration::days(2), nowhere_else).await.unwrap(), 1);
    assert!(files_under(&app.data_dir.path().join("recordings")).is_empty());
    assert_eq!(app.get(&format!("/api/v1/calls/{}/recording", call.id)).await.status, 404);
    app.get(&format!("/api/v1/calls/{}", call.id)).await.expect(200);
}

/// With `recordings_s3_url` set, recordings go to an S3-compatible bucket (moto's server on
/// loopback): sealed there, played by range through the API, and erased from the bucket with
/// their call.
#[tokio::test]
async fn recordings_can_live_in_an_s3_compatible_bucket() {
    let s3 = crate::support::s3_server::S3Server::start().await;
    let app = crate::support::spawn_app_with(crate::support::Backend::Sqlite, |config| {
        config.recordings_s3_url = Some(s3.bucket_url().parse().unwrap());
        config.recordings_s3_access_key_id = Some("switchboard".into());
        config.recordings_s3_secret_access_key = Some("not-a-real-secret".into());
    })
    .await;
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    let call_id = switchboard::domain::ids::CallId(call.id.parse().unwrap());
    let source = switchboard::domain::recording::RecordingSource::Switchboard;
    let row = switchboard::storage::recordings::start(&app.db, app.org, call_id, source, None).await.unwrap();
    let samples: Vec<i16> = (0..80_000).map(|i| ((i * 37) % 2000) as i16 - 1000).collect();
    let wav = switchboard::audio::wav::encode_two_channels(8000, &samples, &samples);
    let config = switchboard::config::Config {
        recordings_s3_url: Some(s3.bucket_url().parse().unwrap()),
        recordings_s3_access_key_id: Some("switchboard".into()),
        recordings_s3_secret_access_key: Some("not-a-real-secret".into()),
        ..Default::default()
    };
    let recordings = Recordings::new(app.db.clone(), config.recording_store().unwrap());
    assert!(recordings.keep(app.org, row.id, wav.clone(), 2, 10_000).await.unwrap());

    let keys = s3.keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&app.org.to_string()), "{keys:?}");
    let at_rest = s3.object(&keys[0]).await;
    assert!(!at_rest.starts_with(b"RIFF") && !at_rest.windows(64).any(|w| w == &wav[5000..5064]), "sealed in the bucket");
    let audio_path = format!("/api/v1/calls/{}/recording/audio", call.id);
    let whole = get_bytes(&app, &audio_path, None, &app.token).await;
    assert_eq!(whole.bytes().await.unwrap().as_ref(), wav.as_slice());
    let part = get_bytes(&app, &audio_path, Some("bytes=100000-200000"), &app.token).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &wav[100_000..=200_000]);

    assert_eq!(app.delete(&format!("/api/v1/calls/{}", call.id)).await.status, 204);
    assert!(s3.keys().await.is_empty(), "erased from the bucket");
}
