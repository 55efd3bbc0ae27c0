//! Whole conversations through the ConversationRelay WebSocket against a fake OpenAI-compatible
//! model: greeting, multi-turn, streaming, interruption, endConversation, transfer, DTMF, LLM
//! failure, caller hang-up, silence, and the handshake's signature.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_llm::{FakeLlm, Reply, StreamStyle};
use crate::support::relay_client::RelayClient;
use crate::support::{Backend, LINE_TOKEN, PhoneLine, TestApp, on_both_backends, sid};

on_both_backends!(
    the_dev_phone_holds_a_scripted_call,
    a_conversation_ends_with_end_conversation,
    interruptions_keep_only_what_was_heard,
    transfers_dial_the_configured_number,
    llm_failures_apologise_and_end,
    caller_hang_up_ends_the_session,
    relay_handshakes_must_be_signed,
    the_agent_switches_language,
    generated_first_messages_are_cached_and_refreshed,
    hanging_up_during_the_goodbye_is_clean,
    a_late_interruption_cuts_the_stored_turn,
    speech_while_the_agent_thinks_reaches_the_model,
    a_slow_answer_gets_the_agents_filler_the_transcript_never_sees,
    a_second_relay_socket_is_refused,
    tool_calls_work_in_llama_cpp_streaming_style,
    end_call_phrases_end_the_call,
    the_event_keeps_every_turn_when_the_callback_comes_first,
    the_event_keeps_every_turn_when_the_hang_up_comes_first,
    a_flooded_socket_keeps_both_directions_moving,
);

pub(crate) struct Call {
    pub llm: FakeLlm,
    pub line: PhoneLine,
    pub id: String,
    pub sid: String,
}

/// A line whose agent uses a fresh fake model.
pub(crate) async fn line_with_model(app: &TestApp, mut agent: Value) -> (FakeLlm, PhoneLine) {
    let llm = FakeLlm::start().await;
    let provider = app
        .post(
            "/api/v1/llm-providers",
            json!({ "name": "fake", "base_url": llm.base_url, "default_model": "fake-model", "api_key": "sk-test" }),
        )
        .await
        .expect(201);
    agent["llm_provider_id"] = provider["id"].clone();
    let line = app.phone_line(agent).await;
    (llm, line)
}

/// A line whose agent uses a fresh fake model, and a call ringing on it.
pub(crate) async fn ring_agent(app: &TestApp, agent: Value) -> Call {
    let (llm, line) = line_with_model(app, agent).await;
    let call_sid = sid("CA", 'c');
    let twiml = app.ring(&line, &call_sid).await;
    assert_eq!(twiml.status, 200, "{}", twiml.text);
    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    Call { llm, line, id, sid: call_sid }
}

pub(crate) async fn connect(app: &TestApp, call: &Call) -> RelayClient {
    let mut relay = RelayClient::connect(app.addr, &call.id, Some(LINE_TOKEN)).await.expect("the signed handshake is accepted");
    relay.setup(&call.sid).await;
    relay
}

/// The call record with its transcript, once `condition` holds (turns are written as spoken).
async fn record_when(app: &TestApp, call: &Call, condition: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let detail = app.get(&format!("/api/v1/calls/{}", call.id)).await.expect(200);
        if condition(&detail) {
            return detail;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the call record never reached the expected state: {}", app.get(&format!("/api/v1/calls/{}", call.id)).await.body);
}

fn roles(detail: &Value) -> Vec<&str> {
    detail["transcript"].as_array().unwrap().iter().map(|t| t["role"].as_str().unwrap()).collect()
}

async fn a_conversation_ends_with_end_conversation(app: TestApp) {
    let call = ring_agent(
        &app,
        json!({ "name": "Ava", "instructions": "You help Acme customers with billing.", "first_message": "Hi, this is Ava from Acme." }),
    )
    .await;
    call.llm.script([
        Reply::says("Sure, what is your account number?").slowly(Duration::from_millis(20)),
        Reply::calls("endConversation", json!({ "summary": "Caller asked about a bill for account 42.", "next_steps": "Send a corrected invoice.", "closing_message": "Thanks for calling, goodbye!" })),
    ]);
    let mut relay = connect(&app, &call).await;
    relay.say("Hi, I have a question about my bill.").await;
    let answer = relay.utterance().await;
    assert_eq!(answer.text, "Sure, what is your account number?");
    assert!(answer.tokens >= 6, "streamed token by token, not buffered: {} messages", answer.tokens);

    relay.say("It's 42. That's all, thanks.").await;
    let goodbye = relay.utterance().await;
    assert_eq!(goodbye.text.trim(), "Thanks for calling, goodbye!");
    let end = relay.next().await.expect("an end message after the goodbye");
    assert_eq!(end["type"], "end");
    let handoff: Value = serde_json::from_str(end["handoffData"].as_str().unwrap()).unwrap();
    assert_eq!(handoff, json!({ "action": "hangup", "reason": "agent_ended" }));
    relay.close().await;

    let detail = record_when(&app, &call, |d| d["ended_reason"] == "agent_ended").await;
    assert_eq!(detail["ended_by"], "agent");
    assert_eq!(detail["outcome"], "completed");
    assert_eq!(detail["summary"], "Caller asked about a bill for account 42. Next steps: Send a corrected invoice.");
    assert_eq!(roles(&detail), ["agent", "caller", "agent", "caller", "tool", "agent"]);
    let transcript = detail["transcript"].as_array().unwrap();
    assert_eq!(transcript[0]["text"], "Hi, this is Ava from Acme.");
    assert_eq!(transcript[2]["text"], "Sure, what is your account number?");
    assert!(transcript[2]["latency_ms"].as_i64().unwrap() >= 0);
    assert_eq!(transcript[5]["text"], "Thanks for calling, goodbye!");
    let tool: Value = serde_json::from_str(transcript[4]["text"].as_str().unwrap()).unwrap();
    assert_eq!(tool["tool"], "endConversation");
    for turn in transcript {
        assert!(turn["started_at"].is_string() && turn["language"] == "en-US", "{turn}");
    }

    // What the model was given: the system prompt, the greeting, the conversation, the tools.
    let requests = call.llm.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first["model"], "fake-model");
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("You help Acme customers with billing.") && system.contains("+14155550123"), "{system}");
    assert_eq!(first["messages"][1], json!({ "role": "assistant", "content": "Hi, this is Ava from Acme." }));
    assert_eq!(first["messages"][2], json!({ "role": "user", "content": "Hi, I have a question about my bill." }));
    let tools: Vec<&str> = first["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(tools, ["endConversation"]);
    assert_eq!(requests[1]["messages"].as_array().unwrap().len(), 5);
}

async fn interruptions_keep_only_what_was_heard(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([
        Reply::says("Let me tell you everything about our many plans and prices in great detail now").slowly(Duration::from_millis(100)),
        Reply::says("Of course, the basic plan."),
    ]);
    let mut relay = connect(&app, &call).await;
    relay.say("What plans do you have?").await;
    let first = relay.next().await.unwrap();
    assert_eq!(first["token"], "Let ");
    relay.send(json!({ "type": "interrupt", "utteranceUntilInterrupt": "Let me", "durationUntilInterruptMs": "460" })).await;
    relay.say("Just the cheapest one.").await;
    // Tokens already in flight may arrive; the next utterance is the answer to the new question.
    let answer = loop {
        let u = relay.utterance().await;
        if u.text.contains("basic plan") {
            break u;
        }
    };
    assert!(answer.text.ends_with("Of course, the basic plan."), "{}", answer.text);
    let requests = call.llm.requests();
    let history = requests[1]["messages"].as_array().unwrap();
    assert_eq!(history[history.len() - 2], json!({ "role": "assistant", "content": "Let me" }), "the model only knows what was heard");
    let detail = record_when(&app, &call, |d| d["transcript"].as_array().unwrap().len() >= 4).await;
    let interrupted = &detail["transcript"][1];
    assert_eq!((interrupted["text"].as_str(), interrupted["interrupted"].as_bool()), (Some("Let me"), Some(true)));
    relay.close().await;
}

async fn transfers_dial_the_configured_number(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava", "tools": ["transferCall"], "transfer_number": "+14155550199" })).await;
    call.llm.script([Reply::calls(
        "transferCall",
        json!({ "reason": "caller asked for a person", "closing_message": "Connecting you to a colleague." }),
    )]);
    let mut relay = connect(&app, &call).await;
    relay.say("I want to talk to a human.").await;
    assert_eq!(relay.utterance().await.text, "Connecting you to a colleague.");
    let end = relay.next().await.unwrap();
    let handoff = end["handoffData"].as_str().unwrap().to_owned();
    relay.close().await;
    assert_eq!(serde_json::from_str::<Value>(&handoff).unwrap()["to"], "+14155550199");

    let params = [
        ("AccountSid", call.line.account.as_str()),
        ("CallSid", call.sid.as_str()),
        ("SessionStatus", "ended"),
        ("HandoffData", handoff.as_str()),
        ("CallStatus", "in-progress"),
    ];
    let twiml = app.twilio_post("/twilio/connect-action", &params, Some(LINE_TOKEN)).await;
    assert_eq!(twiml.text, r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial>+14155550199</Dial></Response>"#);
    let detail = record_when(&app, &call, |d| d["ended_reason"] == "transferred").await;
    assert_eq!((detail["ended_by"].as_str(), detail["outcome"].as_str()), (Some("agent"), Some("transferred")));
    let requests = call.llm.requests();
    let offered: Vec<&str> = requests[0]["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(offered, ["endConversation", "transferCall"]);
}

async fn llm_failures_apologise_and_end(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::fails(500), Reply::fails(503)]);
    let mut relay = connect(&app, &call).await;
    relay.send(json!({ "type": "dtmf", "digit": "5" })).await;
    let apology = relay.utterance().await;
    assert!(apology.text.contains("I'm sorry"), "{}", apology.text);
    assert_eq!(relay.next().await.unwrap()["type"], "end");
    assert_eq!(call.llm.requests().len(), 2, "one retry before giving up");
    let digits = call.llm.requests()[0]["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert!(digits.contains("pressed 5"), "{digits}");
    let detail = record_when(&app, &call, |d| d["ended_reason"] == "llm_error").await;
    assert_eq!(detail["ended_by"], "system");
    relay.close().await;
}

async fn caller_hang_up_ends_the_session(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::says("One moment while I look that up for you").slowly(Duration::from_millis(200))]);
    let mut relay = connect(&app, &call).await;
    relay.say("Where is my order?").await;
    relay.next().await.unwrap();
    relay.close().await;
    let detail = record_when(&app, &call, |d| d["ended_reason"] == "caller_hangup").await;
    assert_eq!(detail["ended_by"], "caller");
    assert_eq!(roles(&detail), ["caller", "agent"]);
    assert_eq!(detail["transcript"][1]["interrupted"], true);

    // The call is over: the socket cannot be opened again.
    assert!(RelayClient::connect(app.addr, &call.id, Some(LINE_TOKEN)).await.is_err());
}

async fn relay_handshakes_must_be_signed(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    for token in [None, Some("ffffffffffffffffffffffffffffffff")] {
        let err = RelayClient::connect(app.addr, &call.id, token).await.err().expect("refused");
        assert!(err.to_string().contains("403"), "{err}");
    }
    // An unknown call is refused like a bad signature: nothing is said about which calls exist.
    let err = RelayClient::connect(app.addr, "01900000-0000-7000-8000-000000000000", Some(LINE_TOKEN)).await.err().unwrap();
    assert!(err.to_string().contains("403"), "{err}");
    assert!(call.llm.requests().is_empty());
}

/// Silence: the agent checks in once, then ends the call (takes about 12 s: the minimum
/// timeout is 5 s).
#[tokio::test]
async fn silence_gets_a_check_in_then_ends_the_call() {
    let app = crate::support::spawn_app(Backend::Sqlite).await;
    let call = ring_agent(&app, json!({ "name": "Ava", "conversation_timeout_secs": 5 })).await;
    let mut relay = connect(&app, &call).await;
    let check_in = relay.utterance().await;
    assert_eq!(check_in.text, "Are you still there?");
    let goodbye = relay.utterance().await;
    assert!(goodbye.text.contains("Goodbye"), "{}", goodbye.text);
    assert_eq!(relay.next().await.unwrap()["type"], "end");
    let detail = record_when(&app, &call, |d| d["ended_reason"] == "inactivity_timeout").await;
    assert_eq!(detail["ended_by"], "agent");
    assert!(call.llm.requests().is_empty(), "nothing was said, so the model was never asked");
}

async fn the_dev_phone_holds_a_scripted_call(app: TestApp) {
    let agent = json!({
        "name": "Ava",
        "first_message": "Hi, this is Ava.",
        "conversation_timeout_secs": 5,
        "speech": { "filler_after_ms": 300 },
    });
    let (llm, _line) = line_with_model(&app, agent).await;
    llm.script([
        // Slower than the filler: the script waits through "One moment." for the answer.
        Reply::says("We open at nine.").slowly(Duration::from_millis(600)),
        Reply::calls("endConversation", json!({ "summary": "Opening hours.", "closing_message": "Goodbye!" })),
    ]);
    let script = app.data_dir.path().join("script.txt");
    // The agent checks in after 5 s of silence, while the script waits.
    std::fs::write(&script, "When do you open?\n/wait 8\nThanks, bye.\n").unwrap();
    let stdout = app.dial(["--script", script.to_str().unwrap()]).await;
    let lines = [
        "agent: Hi, this is Ava.",
        "you: When do you open?",
        "agent: One moment.",
        "agent: We open at nine.",
        "agent: Are you still there?",
        "you: Thanks, bye.",
        "agent: Goodbye!",
        "call ended by the agent (agent_ended)",
    ];
    let at: Vec<Option<usize>> = lines.iter().map(|line| stdout.find(line)).collect();
    assert!(at.iter().all(Option::is_some) && at.is_sorted(), "{lines:#?} in this order, as they happened:\n{stdout}");
    let calls = app.get("/api/v1/calls").await.expect(200);
    let id = calls["data"][0]["id"].as_str().unwrap();
    let detail = app.get(&format!("/api/v1/calls/{id}")).await.expect(200);
    assert_eq!((detail["status"].as_str(), detail["ended_reason"].as_str()), (Some("completed"), Some("agent_ended")));
    assert!(detail["duration_secs"].is_i64() && detail["answered_at"].is_string(), "{detail}");
    // The filler is not a turn; the check-in is.
    assert_eq!(roles(&detail), ["agent", "caller", "agent", "agent", "caller", "tool", "agent"]);
}

async fn the_agent_switches_language(app: TestApp) {
    let (llm, line) = line_with_model(&app, json!({ "name": "Ava", "tools": ["switchLanguage"] })).await;
    app.patch(&format!("/api/v1/phone-numbers/{}", line.number_id), json!({ "expand_languages": true, "languages": ["fr"] }))
        .await
        .expect(200);
    let call_sid = sid("CA", 'f');
    let twiml = app.ring(&line, &call_sid).await;
    assert!(twiml.text.contains(r#"<Language code="fr-FR"/>"#), "{}", twiml.text);
    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let call = Call { llm, line, id, sid: call_sid };
    call.llm.script([Reply::calls("switchLanguage", json!({ "language": "fr-FR" })), Reply::says("Bonjour, comment puis-je vous aider ?")]);
    let mut relay = connect(&app, &call).await;
    relay.send(json!({ "type": "prompt", "voicePrompt": "Bonjour, je parle français.", "lang": "fr-FR", "last": true })).await;
    let switch = relay.next().await.unwrap();
    assert_eq!(switch, json!({ "type": "language", "ttsLanguage": "fr-FR", "transcriptionLanguage": "fr-FR" }));
    assert_eq!(relay.utterance().await.text, "Bonjour, comment puis-je vous aider ?");
    let requests = call.llm.requests();
    let offered: Vec<&str> = requests[0]["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(offered, ["endConversation", "switchLanguage"]);
    let tool_result = requests[1]["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((tool_result["role"].as_str(), tool_result["tool_call_id"].as_str()), (Some("tool"), Some("call_0")));
    let detail = record_when(&app, &call, |d| d["transcript"].as_array().unwrap().len() >= 3).await;
    let last = detail["transcript"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["role"].as_str(), last["language"].as_str()), (Some("agent"), Some("fr-FR")));
    relay.close().await;
}

async fn generated_first_messages_are_cached_and_refreshed(app: TestApp) {
    let (llm, line) =
        line_with_model(&app, json!({ "name": "Ava", "first_message": "Own greeting.", "instructions": "You work at Acme." })).await;
    llm.script([Reply::says("Hello, Acme here, how can I help?"), Reply::says("Hi again from the new Ava.")]);
    let path = format!("/api/v1/phone-numbers/{}", line.number_id);
    app.patch(&path, json!({ "generate_first_message": true })).await.expect(200);
    generated(&app, &path, "Hello, Acme here, how can I help?").await;
    let system = llm.requests()[0]["messages"][0]["content"].as_str().unwrap().to_owned();
    assert!(system.contains("You work at Acme."), "{system}");

    let twiml = app.ring(&line, &sid("CA", 'g')).await;
    assert!(twiml.text.contains(r#"welcomeGreeting="Hello, Acme here, how can I help?""#), "{}", twiml.text);

    // The agent changes: the cached greeting is stale and written again.
    app.patch(&format!("/api/v1/agents/{}", line.agent), json!({ "instructions": "You work at Acme, now with more joy." }))
        .await
        .expect(200);
    generated(&app, &path, "Hi again from the new Ava.").await;
    assert_eq!(llm.requests().len(), 2);
}

/// Waits until the phone number at `path` has cached `expected` as its greeting.
async fn generated(app: &TestApp, path: &str, expected: &str) {
    for _ in 0..100 {
        if app.get(path).await.expect(200)["generated_first_message"] == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never generated `{expected}`: {}", app.get(path).await.body);
}

async fn hanging_up_during_the_goodbye_is_clean(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::calls("endConversation", json!({ "summary": "Quick question answered.", "closing_message": "Thank you so much for calling us today, have a wonderful evening, goodbye!" }))]);
    let mut relay = connect(&app, &call).await;
    relay.say("That's all, bye.").await;
    relay.utterance().await;
    relay.close().await; // the caller hangs up while the goodbye plays
    let detail = record_when(&app, &call, |d| d["ended_reason"] == "agent_ended").await;
    assert_eq!(detail["ended_by"], "agent", "the agent's ending, recorded before the goodbye, stands");
    // The server is fine and takes the next call.
    let next = app.ring(&call.line, &sid("CA", 'h')).await;
    assert_eq!(next.status, 200);
}

/// The session needs no carrier: driven through its channels, it ends a call that reaches its
/// maximum duration with a polite goodbye.
#[tokio::test]
async fn the_session_runs_without_a_transport_and_ends_at_max_duration() {
    use std::sync::Arc;

    use switchboard::agent::call_log::{StoredCallLog, TranscriptWriter};
    use switchboard::agent::session::{AgentCommand, Session, SessionSetup};
    use switchboard::agent::usage::UsageMeter;
    use switchboard::domain::agent::AgentSpec;
    use switchboard::domain::call::EndReason;
    use switchboard::domain::ids::CallId;
    use switchboard::providers::egress::Egress;
    use switchboard::providers::llm::{ChatModel, LlmClient};

    let app = crate::support::spawn_app(Backend::Sqlite).await;
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    let mut agent = AgentSpec::named("Ava");
    agent.max_call_duration_secs = 1;
    let setup = SessionSetup {
        log: StoredCallLog {
            db: app.db.clone(),
            org: app.org,
            call: CallId(call.id.parse().unwrap()),
            transcripts: TranscriptWriter::start(app.db.clone()),
            meter: UsageMeter::default(),
        },
        caller: "+14155550123".into(),
        agent,
        llm: Some((Arc::new(LlmClient::new(Egress::unrestricted(), &call.llm.base_url, None)) as Arc<dyn ChatModel>, "fake-model".into())),
        greeting: None,
        carrier_speaks_greeting: true,
        other_languages: vec![],
        recording: None,
        live: switchboard::agent::live::LiveSessions::new("test", std::time::Duration::from_secs(60)),
    };
    let (commands_tx, mut commands) = tokio::sync::mpsc::channel(16);
    let (events, events_rx) = tokio::sync::mpsc::channel(16);
    let session = tokio::spawn(Session::new(setup, commands_tx).run(events_rx));
    let Some(AgentCommand::Speak { token, last: true }) = commands.recv().await else { panic!("a goodbye first") };
    assert!(token.contains("time limit"), "{token}");
    let Some(AgentCommand::End(ending)) = commands.recv().await else { panic!("then the end") };
    assert_eq!(ending.reason, EndReason::MaxDuration);
    assert_eq!(session.await.unwrap().reason, EndReason::MaxDuration);
    drop(events);
    let detail = record_when(&app, &call, |d| d["ended_reason"] == "max_duration").await;
    assert_eq!(detail["ended_by"], "agent");
}

/// If Twilio has not ended the call a few seconds after the agent ended the session, the call is
/// hung up through the REST API (takes about 6 s).
#[tokio::test]
async fn a_call_twilio_leaves_up_is_hung_up_through_the_api() {
    let app = crate::support::spawn_app(Backend::Sqlite).await;
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::calls("endConversation", json!({ "summary": "Done.", "closing_message": "Bye!" }))]);
    let mut relay = connect(&app, &call).await;
    relay.say("Bye.").await;
    relay.utterance().await;
    assert_eq!(relay.next().await.unwrap()["type"], "end");
    relay.close().await;
    for _ in 0..100 {
        if let Some((sid, form)) = app.twilio.call_updates().first() {
            assert_eq!(sid, &call.sid);
            assert_eq!(form, &vec![("Status".to_owned(), "completed".to_owned())]);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the call was never hung up through the REST API");
}

/// A model streams faster than a voice speaks: the interruption arrives after the whole reply
/// was sent, and still cuts the stored turn and the model's history to what was heard.
async fn a_late_interruption_cuts_the_stored_turn(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::says("Our plans are Basic at ten dollars and Pro at thirty dollars a month."), Reply::says("Basic it is.")]);
    let mut relay = connect(&app, &call).await;
    relay.say("What plans do you have?").await;
    assert!(relay.utterance().await.text.ends_with("a month."), "the whole reply streamed");
    relay.send(json!({ "type": "interrupt", "utteranceUntilInterrupt": "Our plans are Basic", "durationUntilInterruptMs": "1200" })).await;
    relay.say("The cheap one.").await;
    assert_eq!(relay.utterance().await.text, "Basic it is.");
    let history = call.llm.requests()[1]["messages"].as_array().unwrap().clone();
    assert_eq!(history[history.len() - 2], json!({ "role": "assistant", "content": "Our plans are Basic" }));
    let detail = record_when(&app, &call, |d| d["transcript"].as_array().unwrap().len() >= 4).await;
    let cut = &detail["transcript"][1];
    assert_eq!((cut["text"].as_str(), cut["interrupted"].as_bool()), (Some("Our plans are Basic"), Some(true)));
    relay.close().await;
}

/// The caller adds words before the first token: the request is asked again with both.
async fn speech_while_the_agent_thinks_reaches_the_model(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::says("A table?").slowly(Duration::from_millis(1_500)), Reply::says("Two people at seven, noted.")]);
    let mut relay = connect(&app, &call).await;
    relay.say("I'd like a table").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.say("for two at seven").await;
    assert_eq!(relay.utterance().await.text, "Two people at seven, noted.");
    let requests = call.llm.requests();
    let history = requests.last().unwrap()["messages"].as_array().unwrap();
    assert_eq!(
        history[history.len() - 2..],
        [json!({ "role": "user", "content": "I'd like a table" }), json!({ "role": "user", "content": "for two at seven" })]
    );
    let detail = record_when(&app, &call, |d| d["transcript"].as_array().unwrap().len() >= 3).await;
    assert_eq!(roles(&detail), ["caller", "caller", "agent"]);
    relay.close().await;
}

/// The model is slow (or the embedded model busy): after the agent's `filler_after_ms` Twilio is
/// given the filler to say on its own, then the answer; the transcript has only the answer, and
/// an interruption of the filler alone does not cut anything.
async fn a_slow_answer_gets_the_agents_filler_the_transcript_never_sees(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava", "speech": { "filler": "Just a sec.", "filler_after_ms": 300 } })).await;
    call.llm.script([Reply::says("Your order ships Monday.").slowly(Duration::from_millis(1_000)), Reply::says("Noted.")]);
    let mut relay = connect(&app, &call).await;
    relay.say("Where is my order?").await;
    let filler = relay.utterance().await;
    assert_eq!((filler.text.as_str(), filler.tokens), ("Just a sec.", 1), "said whole, on its own");
    relay.send(json!({ "type": "interrupt", "utteranceUntilInterrupt": "Just a", "durationUntilInterruptMs": "300" })).await;
    assert_eq!(relay.utterance().await.text, "Your order ships Monday.");
    // A fast answer needs no filler.
    relay.say("Thanks.").await;
    assert_eq!(relay.utterance().await.text, "Noted.");
    let detail = record_when(&app, &call, |d| d["transcript"].as_array().unwrap().len() >= 4).await;
    let texts: Vec<&str> = detail["transcript"].as_array().unwrap().iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["Where is my order?", "Your order ships Monday.", "Thanks.", "Noted."]);
    assert!(detail["transcript"].as_array().unwrap().iter().all(|t| t["interrupted"] != true), "{detail}");
    relay.close().await;
}

async fn a_second_relay_socket_is_refused(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::says("Still here.")]);
    let mut relay = connect(&app, &call).await;
    let err = RelayClient::connect(app.addr, &call.id, Some(LINE_TOKEN)).await.err().expect("a second socket is refused");
    assert!(err.to_string().contains("409"), "{err}");
    relay.say("Hello?").await;
    assert_eq!(relay.utterance().await.text, "Still here.", "the first session goes on");
    assert_eq!(call.llm.requests().len(), 1, "the refused socket started nothing");
    relay.close().await;
}

/// llama-cpp-python repeats the tool's full name in every delta and sends explicit nulls.
async fn tool_calls_work_in_llama_cpp_streaming_style(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.stream_like(StreamStyle::LlamaCppPython);
    call.llm.script([
        Reply::says("Happy to help."),
        Reply::calls("endConversation", json!({ "summary": "Asked about hours.", "closing_message": "Goodbye!" })),
    ]);
    let mut relay = connect(&app, &call).await;
    relay.say("Hi").await;
    assert_eq!(relay.utterance().await.text, "Happy to help.", "text beside `tool_calls: null` is spoken");
    relay.say("Thanks, bye").await;
    assert_eq!(relay.utterance().await.text, "Goodbye!");
    assert_eq!(relay.next().await.unwrap()["type"], "end");
    let detail = record_when(&app, &call, |d| d["ended_reason"] == "agent_ended").await;
    assert_eq!(detail["summary"], "Asked about hours.");
    let tool = detail["transcript"].as_array().unwrap().iter().find(|t| t["role"] == "tool").unwrap();
    assert!(tool["text"].as_str().unwrap().contains(r#""tool":"endConversation""#), "{tool}");
}

async fn end_call_phrases_end_the_call(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava", "end_call_phrases": ["Goodbye", "Have a nice day"] })).await;
    call.llm.script([Reply::says("You're booked for Friday. Goodbye!")]);
    let mut relay = connect(&app, &call).await;
    relay.say("That's all.").await;
    assert_eq!(relay.utterance().await.text, "You're booked for Friday. Goodbye!");
    let end = relay.next().await.unwrap();
    assert_eq!(end["type"], "end");
    let detail = record_when(&app, &call, |d| d["ended_reason"] == "agent_ended").await;
    assert_eq!((detail["ended_by"].as_str(), detail["outcome"].as_str()), (Some("agent"), Some("completed")));
}

async fn the_event_keeps_every_turn_when_the_callback_comes_first(app: TestApp) {
    hang_up_racing_the_final_callback(app, true).await;
}

async fn the_event_keeps_every_turn_when_the_hang_up_comes_first(app: TestApp) {
    hang_up_racing_the_final_callback(app, false).await;
}

/// The caller hangs up mid-reply: Twilio closes the socket and posts the final status callback
/// at about the same moment. Whichever the server sees first, `call.ended` holds every turn the
/// session stored, the words cut short included.
async fn hang_up_racing_the_final_callback(app: TestApp, callback_first: bool) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::says("One moment while I look that up for you").slowly(Duration::from_millis(200))]);
    let mut relay = connect(&app, &call).await;
    relay.say("Where is my order?").await;
    relay.next().await.unwrap();
    let params =
        [("AccountSid", call.line.account.as_str()), ("CallSid", call.sid.as_str()), ("CallStatus", "completed"), ("CallDuration", "7")];
    let callback = app.twilio_post("/twilio/status", &params, Some(LINE_TOKEN));
    if callback_first {
        // Twilio's callback is committed before the socket closes.
        callback.await.expect(204);
        relay.close().await;
    } else {
        // The socket closes and the callback follows at once, racing the session's last writes.
        let (reply, ()) = tokio::join!(callback, relay.close());
        reply.expect(204);
    }
    let mut events = Value::Null;
    for _ in 0..100 {
        events = app.get(&format!("/api/v1/calls/{}/events", call.id)).await.expect(200);
        if !events.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events.as_array().unwrap().len(), 1, "one call.ended: {events}");
    let ended = &events[0]["call"];
    let turns = ended["transcript"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "the caller's words and the agent's cut-short reply: {ended}");
    assert_eq!((turns[1]["role"].as_str(), turns[1]["interrupted"].as_bool()), (Some("agent"), Some(true)));
    assert_eq!(ended["language"], "en-US", "the session's language is in the event");
    assert_eq!(ended["status"], "completed");
    if callback_first {
        assert_eq!(ended["duration_ms"], 7_000, "Twilio's duration, which came first, is kept");
    }
}

/// A deploy: on the shutdown signal the node stops taking calls (`/readyz` 503, new calls hear
/// an apology) while its live call goes on; after the grace period the agent says goodbye,
/// the call ends with `server_shutdown`, and the server stops.
#[tokio::test]
async fn a_shutdown_drains_live_calls_before_stopping() {
    use switchboard::storage::calls;

    let app = crate::support::spawn_app_with(Backend::Sqlite, |config| config.shutdown_grace_secs = 2).await;
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    call.llm.script([Reply::says("Hello there."), Reply::says("Yes, still here.")]);
    let mut relay = connect(&app, &call).await;
    relay.say("Hi").await;
    assert_eq!(relay.utterance().await.text, "Hello there.");

    app.begin_shutdown();
    let mut ready = 200;
    for _ in 0..50 {
        ready = app.get("/readyz").await.status.as_u16();
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, 503, "the load balancer is told at once");
    let newcomer = sid("CA", 'n');
    let refused = app.ring(&call.line, &newcomer).await;
    assert!(refused.text.contains("<Say>") && refused.text.contains("<Hangup/>"), "{}", refused.text);

    relay.say("Are you still there?").await;
    assert_eq!(relay.utterance().await.text, "Yes, still here.", "the live call goes on while draining");
    let goodbye = relay.utterance().await;
    assert!(goodbye.text.contains("call us back"), "after the grace period: {}", goodbye.text);
    assert_eq!(relay.next().await.unwrap()["type"], "end");
    relay.close().await;

    let stopped = tokio::time::timeout(Duration::from_secs(10), app.server).await.expect("the server stops once its calls have ended");
    stopped.unwrap().unwrap();
    let ended = calls::find_by_sid(&app.db, &call.sid).await.unwrap().unwrap();
    assert_eq!((ended.ended_by.as_deref(), ended.ended_reason.as_deref()), (Some("system"), Some("server_shutdown")));
    let turned_away = calls::find_by_sid(&app.db, &newcomer).await.unwrap().unwrap();
    assert_eq!(turned_away.ended_reason.as_deref(), Some("server_draining"));
}

/// The caller's side floods the socket (hundreds of keypresses) while a long reply streams the
/// other way: neither direction waits for the other, and every key reaches the model.
async fn a_flooded_socket_keeps_both_directions_moving(app: TestApp) {
    let call = ring_agent(&app, json!({ "name": "Ava" })).await;
    let long = "word ".repeat(400);
    call.llm.script([Reply::says(long.trim_end()), Reply::says("Got your number.")]);
    let mut relay = connect(&app, &call).await;
    relay.say("Read me the terms").await;
    for _ in 0..300 {
        relay.send(json!({ "type": "dtmf", "digit": "1" })).await;
    }
    let reply = relay.utterance().await;
    assert_eq!(reply.text.split_whitespace().count(), 400, "the whole reply arrived");
    assert_eq!(relay.utterance().await.text, "Got your number.");
    let requests = call.llm.requests();
    let last = requests.last().unwrap()["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert_eq!(last, format!("(The caller pressed {} on the keypad.)", "1".repeat(300)));
    relay.close().await;
}
