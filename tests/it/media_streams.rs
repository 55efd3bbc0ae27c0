//! Media Streams calls, where Switchboard hears and speaks itself: speech providers verified
//! when saved, numbers that need them, and whole calls through the dev phone's audio mode (real
//! time, Twilio's playback buffer and marks) against a fake model and a fake OpenAI-compatible
//! speech server whose "voice" reads back exactly what survived the telephone path.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::providers::egress::Egress;
use switchboard::providers::speech::{OpenAiSpeech, SpeakingVoice, SpeechToText, TextToSpeech};
use switchboard::telephony::twilio::dev_phone::{self, AudioPhone, CallerAction, Dial, PhoneEvent};
use tokio::sync::mpsc;

use crate::support::fake_llm::{FakeLlm, Reply};
use crate::support::fake_speech::{self, FakeSpeech, SpeechStyle};
use crate::support::{LINE_NUMBER, LINE_TOKEN, PhoneLine, TestApp, on_both_backends};

on_both_backends!(
    speech_providers_are_verified_when_saved,
    media_stream_numbers_need_someone_to_hear_and_speak,
    a_media_stream_call_holds_a_whole_conversation,
    a_caller_talking_while_the_agent_thinks_then_hanging_up_mid_sentence,
    a_caller_speaking_while_the_agent_pauses_between_sentences_interrupts_it,
    the_dev_phone_speaks_and_records_from_the_terminal,
    deepgram_hears_and_elevenlabs_speaks,
);

/// `base` with the fields of `changes` set (or replaced).
fn with(base: &Value, changes: Value) -> Value {
    let mut body = base.clone();
    for (key, value) in changes.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn provider_body(fake: &FakeSpeech, changes: Value) -> Value {
    let body = json!({ "name": "Fake speech", "base_url": fake.base_url, "api_key": fake_speech::API_KEY,
        "transcription_model": fake_speech::TRANSCRIPTION_MODEL, "speech_model": fake_speech::SPEECH_MODEL, "default_voice": "alloy" });
    with(&body, changes)
}

/// Creating a speech provider from `body` is refused, naming `field`; returns the detail.
async fn refused(app: &TestApp, field: &str, body: Value) -> String {
    let reply = app.post("/api/v1/speech-providers", body).await;
    assert_eq!(reply.body["errors"][0]["field"], field, "{}", reply.body);
    reply.problem(422)
}

/// Places a call to the line through the dev phone: what the caller does, what they hear, and
/// the call's outcome.
pub(crate) fn place_call(
    app: &TestApp,
    line: &PhoneLine,
    fake: &FakeSpeech,
) -> (mpsc::Sender<CallerAction>, mpsc::Receiver<PhoneEvent>, tokio::task::JoinHandle<anyhow::Result<dev_phone::Outcome>>) {
    let (act, actions) = mpsc::channel(8);
    let (hear, events) = mpsc::channel(64);
    (act, events, tokio::spawn(dev_phone::call(dial(app, line, fake), actions, hear)))
}

async fn speech_providers_are_verified_when_saved(app: TestApp) {
    let fake = FakeSpeech::start().await;
    let refused = |field: &'static str, body: Value| refused(&app, field, body);
    let detail = refused("api_key", provider_body(&fake, json!({ "api_key": "sk-wrong" }))).await;
    assert!(detail.contains("Incorrect API key"), "the vendor's words are passed on: {detail}");
    let detail = refused("transcription_model", provider_body(&fake, json!({ "transcription_model": "whisper-9" }))).await;
    assert!(detail.contains("whisper-9") && detail.contains("transcribing"), "{detail}");
    refused("speech_model", provider_body(&fake, json!({ "speech_model": "tts-9" }))).await;
    refused("transcription_model", provider_body(&fake, json!({ "transcription_model": null, "speech_model": null }))).await;
    refused("default_voice", provider_body(&fake, json!({ "default_voice": null }))).await;
    refused("base_url", provider_body(&fake, json!({ "base_url": "http://127.0.0.1:9/v1" }))).await;
    assert!(app.get("/api/v1/speech-providers").await.expect(200)["data"].as_array().unwrap().is_empty(), "nothing was stored");

    let (spoken, heard) = (fake.spoken().len(), fake.heard().len());
    let both = app.post("/api/v1/speech-providers", provider_body(&fake, json!({}))).await.expect(201);
    assert_eq!((both["kind"].as_str(), both["has_api_key"].as_bool()), (Some("openai"), Some(true)));
    assert!(!both.to_string().contains(fake_speech::API_KEY), "the key is never shown: {both}");
    fake.answer_like(SpeechStyle::Wav22k);
    let speaks = app
        .post(
            "/api/v1/speech-providers",
            provider_body(&fake, json!({ "name": "Voice only", "transcription_model": null, "default_voice": "nova" })),
        )
        .await
        .expect(201);
    assert_eq!(fake.spoken().len(), spoken + 2, "each speaking provider said a test word");
    assert_eq!(fake.heard().len(), heard + 1, "the transcribing one transcribed a test utterance");

    // Agents name providers that can do the job.
    let app_id = app.create_app("Support").await;
    let speech = json!({ "speech_to_text_provider_id": speaks["id"], "text_to_speech_provider_id": speaks["id"] });
    let reply = app.post(&format!("/api/v1/apps/{app_id}/agents"), json!({ "name": "Ava", "speech": speech })).await;
    assert_eq!(reply.body["errors"][0]["field"], "speech.speech_to_text_provider_id", "{}", reply.body);
    reply.problem(422);
    let speech =
        json!({ "speech_to_text_provider_id": both["id"], "text_to_speech_provider_id": speaks["id"], "voices": { "fr": "juliette" } });
    let agent = app.post(&format!("/api/v1/apps/{app_id}/agents"), json!({ "name": "Ava", "speech": speech })).await.expect(201);
    assert_eq!(agent["speech"]["end_of_turn_silence_ms"], 700, "absent settings take their defaults: {agent}");
    assert_eq!(agent["speech"]["patience_ms"], 2000, "{agent}");
    let impatient = json!({ "name": "Ava", "speech": { "patience_ms": 50 } });
    let reply = app.post(&format!("/api/v1/apps/{app_id}/agents"), impatient).await;
    assert_eq!(reply.body["errors"][0]["field"], "speech.patience_ms", "{}", reply.body);
    reply.problem(422);
    let path = format!("/api/v1/speech-providers/{}", speaks["id"].as_str().unwrap());
    assert!(app.delete(&path).await.problem(409).contains("agents still use"));

    // A new name is not checked again; a new key is, and a wrong one changes nothing.
    let spoken = fake.spoken().len();
    app.patch(&path, json!({ "name": "Nova" })).await.expect(200);
    assert_eq!(fake.spoken().len(), spoken);
    let reply = app.patch(&path, json!({ "api_key": "sk-stolen", "default_voice": "echo" })).await;
    assert_eq!(reply.body["errors"][0]["field"], "api_key", "{}", reply.body);
    reply.problem(422);
    let kept = app.get(&path).await.expect(200);
    assert_eq!((kept["name"].as_str(), kept["default_voice"].as_str()), (Some("Nova"), Some("nova")));
    let changed = app.patch(&path, json!({ "default_voice": "echo" })).await.expect(200);
    assert_eq!(changed["default_voice"], "echo");
    assert_eq!(fake.spoken().last().unwrap().1, "echo", "checked with the new voice");
}

/// A line whose agent thinks with a fake model and hears and speaks through a fake speech
/// server; the number uses media streams.
pub(crate) async fn media_line(app: &TestApp, mut agent: Value) -> (FakeLlm, FakeSpeech, PhoneLine) {
    let llm = FakeLlm::start().await;
    let fake = FakeSpeech::start().await;
    let model = json!({ "name": "fake", "base_url": llm.base_url, "default_model": "fake-model" });
    agent["llm_provider_id"] = app.post("/api/v1/llm-providers", model).await.expect(201)["id"].clone();
    let line = app.phone_line(agent).await;
    let number = format!("/api/v1/phone-numbers/{}", line.number_id);
    // Nobody hears or speaks for the agent yet, unless the server has the embedded engines.
    if !app.data_dir.path().join("models").exists() {
        let refused = app.patch(&number, json!({ "mode": "media_stream" })).await.problem(422);
        assert!(refused.contains("speech provider") && refused.contains("models install"), "{refused}");
    }
    app.post("/api/v1/speech-providers", provider_body(&fake, json!({}))).await.expect(201);
    assert_eq!(app.patch(&number, json!({ "mode": "media_stream" })).await.expect(200)["mode"], "media_stream");
    (llm, fake, line)
}

fn dial(app: &TestApp, line: &PhoneLine, fake: &FakeSpeech) -> Dial {
    let speech = Arc::new(OpenAiSpeech::new(
        Egress::unrestricted(),
        &fake.base_url,
        Some(fake_speech::API_KEY.into()),
        fake_speech::TRANSCRIPTION_MODEL,
        fake_speech::SPEECH_MODEL,
    ));
    dial_speaking_with(app, line, speech.clone(), speech, "echo")
}

/// The dev phone calling `line`, speaking through `mouth` in `voice` and listening through `ears`.
pub fn dial_speaking_with(app: &TestApp, line: &PhoneLine, mouth: Arc<dyn TextToSpeech>, ears: Arc<dyn SpeechToText>, voice: &str) -> Dial {
    Dial {
        to: LINE_NUMBER.into(),
        from: "+14155550123".into(),
        server: format!("http://{}", app.addr),
        public_base_url: format!("http://{}", app.addr),
        account_sid: line.account.clone(),
        auth_token: LINE_TOKEN.into(),
        test: false,
        audio: Some(AudioPhone {
            mouth: Some(mouth),
            voice: SpeakingVoice::new(voice, "en-US"),
            ears: Some(ears),
            record: None,
            speaker: None,
        }),
    }
}

/// The next thing the phone hears that `pick` takes, skipping the rest.
pub async fn hear<T>(events: &mut mpsc::Receiver<PhoneEvent>, mut pick: impl FnMut(PhoneEvent) -> Option<T>) -> T {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("the phone heard something")
            .expect("the call goes on");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

/// What the phone had heard of the agent's words when it interrupted them.
pub async fn interrupted(events: &mut mpsc::Receiver<PhoneEvent>) -> String {
    hear(events, |event| match event {
        PhoneEvent::Interrupted { heard } => Some(heard),
        _ => None,
    })
    .await
}

pub async fn agent_says(events: &mut mpsc::Receiver<PhoneEvent>) -> String {
    hear(events, |event| match event {
        PhoneEvent::Token(words) => Some(words),
        _ => None,
    })
    .await
}

async fn media_stream_numbers_need_someone_to_hear_and_speak(app: TestApp) {
    let (_llm, fake, line) = media_line(&app, json!({ "name": "Ava", "first_message": "Hello." })).await;
    let call_sid = crate::support::sid("CA", 'm');
    let twiml = app.ring(&line, &call_sid).await;
    assert!(twiml.text.contains("<Stream url=\"ws://"), "{}", twiml.text);
    let call_id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();

    // The greeting is synthesised ahead (when the number was saved, and again when it rings if
    // it is not in the cache), so the call's first words start with its stream.
    let greeted = || fake.spoken().iter().any(|(text, voice)| text == "Hello." && voice == "alloy");
    for _ in 0..100 {
        if greeted() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(greeted(), "{:?}", fake.spoken());
    // A new greeting is synthesised as soon as the agent changes, before any call.
    app.patch(&format!("/api/v1/agents/{}", line.agent), json!({ "first_message": "Welcome back." })).await.expect(200);
    let regreeted = || fake.spoken().iter().any(|(text, _)| text == "Welcome back.");
    for _ in 0..100 {
        if regreeted() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(regreeted(), "{:?}", fake.spoken());

    // The handshake is signed like the relay's; an unsigned one learns nothing.
    let url = format!("ws://{}/twilio/media/{call_id}", app.addr);
    let Err(unsigned) = tokio_tungstenite::connect_async(url.as_str()).await else { panic!("an unsigned handshake was accepted") };
    assert!(unsigned.to_string().contains("403"), "{unsigned}");

    // Without a provider that speaks, new calls are turned away politely, and the record says why.
    let provider = app.get("/api/v1/speech-providers").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/api/v1/speech-providers/{provider}")).await.expect(204);
    let refused = app.ring(&line, &crate::support::sid("CA", 'n')).await;
    assert!(refused.text.contains("<Say>") && refused.text.contains("<Hangup/>"), "{}", refused.text);
    let calls = app.get("/api/v1/calls").await.expect(200);
    assert_eq!(calls["data"][0]["ended_reason"], "no_speech_provider", "{calls}");
}

async fn a_media_stream_call_holds_a_whole_conversation(app: TestApp) {
    let agent =
        json!({ "name": "Ava", "first_message": "Hello, this is Ava. How can I help?", "speech": { "end_of_turn_silence_ms": 300 } });
    let (llm, fake, line) = media_line(&app, agent).await;
    llm.script([
        Reply::says("Your order ships on Monday."),
        Reply::says(
            "Order 42 found. I can move it to Tuesday, Wednesday or Friday, whichever suits you best. Our couriers deliver between nine and five.",
        ),
        Reply::calls("endConversation", json!({ "summary": "Moved order 42 to Tuesday.", "closing_message": "Done. Goodbye!" })),
    ]);
    let (act, mut events, call) = place_call(&app, &line, &fake);

    assert_eq!(agent_says(&mut events).await, "Hello, this is Ava. How can I help?");
    act.send(CallerAction::Say("I need to change my order.".into())).await.unwrap();
    assert_eq!(agent_says(&mut events).await, "Your order ships on Monday.");
    // Keys reach the model. Over its long answer the caller says "mhm, okay", which lets it go
    // on, then answers, which cuts it off.
    act.send(CallerAction::Digits("42#".into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    act.send(CallerAction::Say("Mhm, okay.".into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    act.send(CallerAction::Say("Tuesday please.".into())).await.unwrap();
    let heard = interrupted(&mut events).await;
    assert!(heard.starts_with("Order 42 found. I can"), "the phone heard the start of the answer: {heard:?}");
    assert_eq!(agent_says(&mut events).await, "Done. Goodbye!");
    let outcome = tokio::time::timeout(Duration::from_secs(20), call).await.unwrap().unwrap().unwrap();
    assert!(outcome.summary.starts_with("call ended by the agent"), "{}", outcome.summary);

    let calls = app.get("/api/v1/calls").await.expect(200);
    let id = calls["data"][0]["id"].as_str().unwrap();
    let detail = app.until(&format!("/api/v1/calls/{id}"), |d| d["status"] == "completed").await;
    assert_eq!((detail["ended_by"].as_str(), detail["ended_reason"].as_str()), (Some("agent"), Some("agent_ended")), "{detail}");
    let turns: Vec<(String, String, bool)> = detail["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["role"].as_str().unwrap().to_owned(), t["text"].as_str().unwrap().to_owned(), t["interrupted"] == true))
        .collect();
    let expected = [
        ("agent", "Hello, this is Ava. How can I help?", false),
        ("caller", "I need to change my order.", false),
        ("agent", "Your order ships on Monday.", false),
        ("caller", "42", false),
        // What the caller heard before speaking: the sentences whose marks came back; the
        // backchannel is no turn.
        ("agent", "Order 42 found.", true),
        ("caller", "Tuesday please.", false),
    ];
    for (i, (role, content, interrupted)) in expected.iter().enumerate() {
        assert_eq!((turns[i].0.as_str(), turns[i].2), (*role, *interrupted), "turn {i}: {turns:?}");
        assert!(turns[i].1.contains(content), "turn {i}: {turns:?}");
    }
    assert_eq!(turns.last().unwrap().1, "Done. Goodbye!", "{turns:?}");
    assert!(!turns[4].1.contains("couriers"), "the caller never heard the last sentence: {turns:?}");
    assert!(turns.iter().all(|(_, text, _)| !text.contains("Mhm")), "{turns:?}");
    // Each answer to the caller's words keeps where their wait went: the end-of-turn silence
    // (300 ms of audio), then transcription, model, synthesis and the first frame sent.
    let answered = &detail["transcript"][2]["voice_latency"];
    assert_eq!(answered["end_of_turn_ms"], 300, "{answered}");
    let parts: i64 = ["end_of_turn_ms", "transcription_ms", "first_token_ms", "first_audio_ms", "first_frame_ms"]
        .iter()
        .map(|part| answered[part].as_i64().unwrap())
        .sum();
    assert!((parts - answered["voice_to_voice_ms"].as_i64().unwrap()).abs() <= 5, "{answered}");
    let events = app.until(&format!("/api/v1/calls/{id}/events"), |e| !e.as_array().unwrap().is_empty()).await;
    let event = &events[0];
    assert_eq!(event["schema_version"], 3, "{event}");
    assert!(event["call"]["latency"]["voice_to_voice_p50_ms"].as_i64().is_some_and(|ms| ms >= 300), "{event}");
    assert_eq!(event["call"]["transcript"]["turns"][2]["voice_latency"], *answered);
    // The model was told the caller heard only the first sentence.
    let third = llm.requests()[2]["messages"].to_string();
    assert!(third.contains("Order 42 found.") && !third.contains("couriers"), "{third}");
    // Recognition in the call's language; the agent's voice is the provider's default.
    assert!(fake.heard().iter().any(|(text, language)| text == "I need to change my order." && language == "en"), "{:?}", fake.heard());
    assert!(fake.spoken().iter().any(|(text, voice)| text.starts_with("Hello, this is Ava.") && voice == "alloy"), "{:?}", fake.spoken());
    // What the call used: the audio sent to be transcribed, the characters sent to be spoken
    // (the greeting may come from the cache), and the model's tokens as the server counted them.
    let usage = app.until(&format!("/api/v1/calls/{id}"), |d| d["usage"]["synthesis_characters"].as_i64() > Some(0)).await["usage"].clone();
    assert_eq!(usage["transport"], "media_streams", "{usage}");
    assert!(usage["transcription_ms"].as_i64().unwrap() >= 1_000, "three utterances were heard: {usage}");
    assert!(usage["transcription_provider_id"].is_string() && usage["transcription_provider_id"] == usage["synthesis_provider_id"]);
    let spoken: i64 = fake.spoken().iter().map(|(text, _)| text.chars().count() as i64).sum();
    let answers = ["Your order ships on Monday.", "Done. Goodbye!"].iter().map(|t| t.len() as i64).sum::<i64>();
    let characters = usage["synthesis_characters"].as_i64().unwrap();
    assert!((answers..=spoken).contains(&characters), "{characters} characters of {spoken} spoken: {usage}");
    let counted: i64 = llm.counted().iter().map(|(prompt, _)| prompt).sum();
    assert_eq!((usage["model_input_tokens"].as_i64(), usage["model_tokens_estimated"].as_bool()), (Some(counted), Some(false)), "{usage}");
}

/// The timing a real caller produces: a second sentence while the model is still thinking about
/// the first (both reach it, as two turns), then a hang-up while the agent is mid-sentence (the
/// record keeps what had played, and the call ends as the caller's).
async fn a_caller_talking_while_the_agent_thinks_then_hanging_up_mid_sentence(app: TestApp) {
    let agent = json!({ "name": "Ava", "first_message": "Hi, Ava here.", "speech": { "end_of_turn_silence_ms": 300 } });
    let (llm, fake, line) = media_line(&app, agent).await;
    llm.script([
        Reply::says("Let me look that up for you.").slowly(Duration::from_millis(1500)),
        Reply::says("Order 42 ships on Tuesday."),
        Reply::says(
            "Tuesday's delivery window is nine to five. The courier texts you an hour before they arrive, with a link to follow the van on a map and to leave a note for the driver. Anything else?",
        ),
    ]);
    let (act, mut events, call) = place_call(&app, &line, &fake);
    assert_eq!(agent_says(&mut events).await, "Hi, Ava here.");
    act.send(CallerAction::Say("Where is my order?".into())).await.unwrap();
    // The caller's turn ends 300 ms after their last word; the model is slow to begin.
    tokio::time::sleep(Duration::from_millis(700)).await;
    act.send(CallerAction::Say("It's order 42.".into())).await.unwrap();
    assert_eq!(agent_says(&mut events).await, "Order 42 ships on Tuesday.");
    let asked_again = llm.requests()[1]["messages"].to_string();
    assert!(asked_again.contains("Where is my order?") && asked_again.contains("It's order 42."), "{asked_again}");

    act.send(CallerAction::Say("When?".into())).await.unwrap();
    // The answer starts about half a second later; its first sentence plays for 0.9 s and the
    // second for 3 s. The caller hangs up during the second.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    act.send(CallerAction::HangUp).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), call).await.unwrap().unwrap().unwrap();

    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let detail = app.until(&format!("/api/v1/calls/{id}"), |d| d["ended_reason"].is_string()).await;
    assert_eq!((detail["ended_by"].as_str(), detail["ended_reason"].as_str()), (Some("caller"), Some("caller_hangup")), "{detail}");
    let turns: Vec<(&str, &str)> =
        detail["transcript"].as_array().unwrap().iter().map(|t| (t["role"].as_str().unwrap(), t["text"].as_str().unwrap())).collect();
    assert_eq!(
        &turns[1..4],
        [("caller", "Where is my order?"), ("caller", "It's order 42."), ("agent", "Order 42 ships on Tuesday.")],
        "{turns:?}"
    );
    let (role, last) = turns[5];
    assert_eq!(role, "agent", "{turns:?}");
    assert_eq!(last, "Tuesday's delivery window is nine to five.", "only what played is kept: {turns:?}");
    assert_eq!(detail["transcript"][5]["interrupted"], true, "{detail}");
}

/// A loaded synthesiser leaves a pause between two sentences of an answer; the caller speaks
/// in it. The agent is still speaking (its next sentence is on the way), so that is an
/// interruption like any other: the phone is told so (with nothing of the pause heard), the
/// next sentence never plays, and the record keeps the first sentence, marked interrupted.
async fn a_caller_speaking_while_the_agent_pauses_between_sentences_interrupts_it(app: TestApp) {
    let agent = json!({ "name": "Ava", "first_message": "Hi, Ava here.", "speech": { "end_of_turn_silence_ms": 300 } });
    let (llm, fake, line) = media_line(&app, agent).await;
    llm.script([
        Reply::says("Tuesday's delivery window is nine to five. The courier texts you an hour before."),
        Reply::says("Sure, go ahead."),
    ]);
    fake.slow_to_speak("The courier", Duration::from_secs(6));
    let (act, mut events, call) = place_call(&app, &line, &fake);
    assert_eq!(agent_says(&mut events).await, "Hi, Ava here.");
    act.send(CallerAction::Say("When?".into())).await.unwrap();
    // The phone hears the first sentence end: the pause has begun.
    assert_eq!(agent_says(&mut events).await, "Tuesday's delivery window is nine to five.");
    act.send(CallerAction::Say("Wait, one question.".into())).await.unwrap();
    assert_eq!(interrupted(&mut events).await, "", "nothing of the pause was heard");
    assert_eq!(agent_says(&mut events).await, "Sure, go ahead.");
    act.send(CallerAction::HangUp).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), call).await.unwrap().unwrap().unwrap();

    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let detail = app.until(&format!("/api/v1/calls/{id}"), |d| d["ended_reason"].is_string()).await;
    let turns: Vec<(&str, &str, bool)> = detail["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["role"].as_str().unwrap(), t["text"].as_str().unwrap(), t["interrupted"] == true))
        .collect();
    assert_eq!(
        &turns[1..],
        [
            ("caller", "When?", false),
            ("agent", "Tuesday's delivery window is nine to five.", true),
            ("caller", "Wait, one question.", false),
            ("agent", "Sure, go ahead.", false)
        ],
        "{turns:?}"
    );
    let asked = llm.requests()[1]["messages"].to_string();
    assert!(!asked.contains("courier"), "the model knows the caller never heard the second sentence: {asked}");
}

/// A server with the turn-taking models installed hears real speech with Silero VAD and ends a
/// finished question at a short pause by Smart Turn's ear, long before the agent's (here long)
/// end-of-turn silence; `/metrics` shows the model at work.
#[tokio::test]
async fn with_the_models_a_finished_question_ends_the_turn_at_a_short_pause() {
    let app = crate::turn_models::app_with_the_models().await;
    let agent = json!({ "name": "Ava", "first_message": "Hi, Ava here.", "speech": { "end_of_turn_silence_ms": 2000 } });
    let (llm, fake, line) = media_line(&app, agent).await;
    llm.script([Reply::says("We open at nine tomorrow.")]);
    let question = "Can you tell me when you open tomorrow?";
    fake.hear_every_utterance_as(question);
    let spoken = app.data_dir.path().join("question.wav");
    let status = std::process::Command::new("espeak-ng").args(["-v", "en-us", "-w"]).arg(&spoken).arg(question).status().unwrap();
    assert!(status.success());

    // The phone's own ears read the agent's coded voice.
    let phone = FakeSpeech::start().await;
    let (act, mut events, call) = place_call(&app, &line, &phone);
    assert_eq!(agent_says(&mut events).await, "Hi, Ava here.");
    act.send(CallerAction::Play(spoken)).await.unwrap();
    assert_eq!(agent_says(&mut events).await, "We open at nine tomorrow.");
    act.send(CallerAction::HangUp).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), call).await.unwrap().unwrap().unwrap();

    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let detail = app.until(&format!("/api/v1/calls/{id}"), |d| d["transcript"][2]["voice_latency"].is_object()).await;
    assert_eq!(detail["transcript"][1]["text"], question, "{detail}");
    let waited = detail["transcript"][2]["voice_latency"]["end_of_turn_ms"].as_i64().unwrap();
    assert!(waited < 1000, "the model ended the turn, not 2 s of silence: {waited} ms");
    let metrics = reqwest::get(format!("http://{}/metrics", app.metrics_addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_end_of_turn_finished_total 1"), "{metrics}");
}

/// `switchboard dial --audio` as a user runs it: lines said through an OpenAI-compatible speech
/// server, the agent's words transcribed and printed, what the caller heard in a WAV file.
async fn the_dev_phone_speaks_and_records_from_the_terminal(app: TestApp) {
    let (llm, fake, _line) = media_line(&app, json!({ "name": "Ava", "first_message": "Hi, this is Ava." })).await;
    llm.script([
        Reply::says("We open at nine."),
        Reply::calls("endConversation", json!({ "summary": "Opening hours.", "closing_message": "Goodbye!" })),
    ]);
    let record = app.data_dir.path().join("heard.wav");
    let stdout = app
        .dial([
            "--audio",
            "--say",
            "When do you open?",
            "--say",
            "Thanks, bye.",
            "--speech-url",
            &fake.base_url,
            "--speech-key",
            fake_speech::API_KEY,
            "--record",
            record.to_str().unwrap(),
        ])
        .await;
    for line in
        ["agent: Hi, this is Ava.", "you: When do you open?", "agent: We open at nine.", "agent: Goodbye!", "call ended by the agent"]
    {
        assert!(stdout.contains(line), "`{line}` missing from:\n{stdout}");
    }
    let heard = switchboard::audio::wav::decode(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(heard.rate, 8000);
    assert!(fake_speech::hear(&heard).starts_with("Hi, this is Ava."), "the recording holds what the caller heard");
    assert!(heard.samples.len() > 8000, "and the time between: {} samples", heard.samples.len());
}

/// The agent hears through Deepgram's streaming API and speaks through ElevenLabs', each
/// verified when saved; the phone itself talks through the OpenAI-compatible fake.
async fn deepgram_hears_and_elevenlabs_speaks(app: TestApp) {
    let fake = FakeSpeech::start().await;
    let refused = |field: &'static str, body: Value| refused(&app, field, body);
    let deepgram = json!({ "name": "Deepgram", "kind": "deepgram", "base_url": fake.base_url, "api_key": fake_speech::API_KEY,
        "transcription_model": fake_speech::DEEPGRAM_MODEL });
    assert!(refused("api_key", with(&deepgram, json!({ "api_key": "dg-wrong" }))).await.contains("Invalid credentials."));
    assert!(refused("transcription_model", with(&deepgram, json!({ "transcription_model": "nova-9" }))).await.contains("No such model"));
    refused("speech_model", with(&deepgram, json!({ "speech_model": "aura", "default_voice": "x" }))).await;
    let hears = app.post("/api/v1/speech-providers", deepgram.clone()).await.expect(201);
    let voice = "21m00Tcm4TlvDq8ikWAM";
    let elevenlabs = json!({ "name": "ElevenLabs", "kind": "elevenlabs", "base_url": fake.base_url, "api_key": fake_speech::API_KEY,
        "speech_model": fake_speech::ELEVENLABS_MODEL, "default_voice": voice });
    assert!(refused("api_key", with(&elevenlabs, json!({ "api_key": "el-wrong" }))).await.contains("Invalid API key"));
    assert!(refused("speech_model", with(&elevenlabs, json!({ "speech_model": "eleven_v9" }))).await.contains("does not exist"));
    let speaks = app.post("/api/v1/speech-providers", elevenlabs).await.expect(201);
    let without_url =
        app.post("/api/v1/speech-providers", json!({ "name": "D", "kind": "deepgram", "transcription_model": "nova-3" })).await;
    assert_eq!(
        without_url.body["errors"][0]["field"], "base_url",
        "Deepgram's own API is the default, which this machine cannot reach: {}",
        without_url.body
    );

    let llm = FakeLlm::start().await;
    let model = json!({ "name": "fake", "base_url": llm.base_url, "default_model": "fake-model" });
    let llm_id = app.post("/api/v1/llm-providers", model).await.expect(201)["id"].clone();
    llm.script([
        Reply::says("We open at nine."),
        Reply::calls("endConversation", json!({ "summary": "Opening hours.", "closing_message": "Goodbye!" })),
    ]);
    let agent = json!({ "name": "Ava", "first_message": "Hi, this is Ava.", "llm_provider_id": llm_id,
        "speech": { "speech_to_text_provider_id": hears["id"], "text_to_speech_provider_id": speaks["id"], "end_of_turn_silence_ms": 300 } });
    let line = app.phone_line(agent).await;
    app.patch(&format!("/api/v1/phone-numbers/{}", line.number_id), json!({ "mode": "media_stream" })).await.expect(200);
    let (act, mut events, call) = place_call(&app, &line, &fake);
    assert_eq!(agent_says(&mut events).await, "Hi, this is Ava.");
    act.send(CallerAction::Say("When do you open tomorrow?".into())).await.unwrap();
    assert_eq!(agent_says(&mut events).await, "We open at nine.");
    act.send(CallerAction::Say("Thanks, bye.".into())).await.unwrap();
    assert_eq!(agent_says(&mut events).await, "Goodbye!");
    let outcome = tokio::time::timeout(Duration::from_secs(20), call).await.unwrap().unwrap().unwrap();
    assert!(outcome.summary.starts_with("call ended by the agent"), "{}", outcome.summary);
    // Deepgram was asked in the call's language; ElevenLabs spoke with the provider's voice.
    assert!(fake.heard().contains(&("When do you open tomorrow?".to_owned(), "en-US".to_owned())), "{:?}", fake.heard());
    assert!(fake.spoken().contains(&("We open at nine.".to_owned(), voice.to_owned())), "{:?}", fake.spoken());
}
