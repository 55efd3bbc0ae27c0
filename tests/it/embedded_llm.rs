//! The embedded language model as `switchboard models install` installs it (scripts/test.sh
//! names the folder in `SWITCHBOARD_TEST_MODELS`): Qwen2.5 0.5B run by llama.cpp in the test's
//! own process. Its answers stream, its tool calls come out as calls (never as text), a JSON
//! schema constrains a classification, a slot reuses the start of the conversation it already
//! read, and a dropped stream stops the generation. Then whole calls with no LLM provider: the
//! relay and the console's test call are answered by the embedded model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchboard::agent::tools;
use switchboard::domain::agent::AgentSpec;
use switchboard::models::llm::EmbeddedLlm;
use switchboard::providers::llm::{ChatMessage, ChatModel, ChatRequest, LlmEvent, ToolCall};

use crate::turn_models::installed_models_dir;

fn engine() -> Arc<EmbeddedLlm> {
    static ENGINE: std::sync::OnceLock<Arc<EmbeddedLlm>> = std::sync::OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let file = installed_models_dir().join(switchboard::models::catalog::QWEN_FILE);
            Arc::new(EmbeddedLlm::load(&file, 1, 2).expect("the embedded model loads"))
        })
        .clone()
}

/// Everything one request streamed, in order.
struct Answer {
    tokens: Vec<String>,
    calls: Vec<ToolCall>,
    events: Vec<LlmEvent>,
}

impl Answer {
    fn text(&self) -> String {
        self.tokens.concat()
    }
}

async fn ask(request: ChatRequest) -> Answer {
    let mut stream = engine().stream(request);
    let mut answer = Answer { tokens: Vec::new(), calls: Vec::new(), events: Vec::new() };
    while let Some(event) = tokio::time::timeout(Duration::from_secs(120), stream.next()).await.expect("the model answers") {
        match &event {
            LlmEvent::Token(token) => answer.tokens.push(token.clone()),
            LlmEvent::ToolCalls(calls) => answer.calls.extend(calls.iter().cloned()),
            LlmEvent::Failed(error) => panic!("the model failed: {error}"),
            LlmEvent::Usage(_) | LlmEvent::Done => {}
        }
        answer.events.push(event);
    }
    answer
}

fn bistro(messages: &[(&str, &str)]) -> ChatRequest {
    let mut conversation = vec![ChatMessage::System {
        content: "You answer the phone for Bella's Bistro. It opens at 11am and closes at 10pm every day. \
                  Answer in one short sentence. When the caller says goodbye, call endConversation."
            .into(),
    }];
    for (role, text) in messages {
        conversation.push(match *role {
            "caller" => ChatMessage::User { content: (*text).into() },
            _ => ChatMessage::Assistant { content: (*text).into(), tool_calls: vec![] },
        });
    }
    ChatRequest {
        model: "embedded".into(),
        temperature: Some(0.0),
        messages: conversation,
        tools: tools::offered(&AgentSpec::named("Ava"), &[]),
        response_format: None,
    }
}

#[tokio::test]
async fn answers_stream_as_words_and_end_with_usage() {
    let answer = ask(bistro(&[("caller", "Hi! What time do you close tonight?")])).await;
    assert!(answer.tokens.len() >= 3, "streamed token by token: {:?}", answer.tokens);
    assert!(answer.text().contains("10"), "it read the instructions: {:?}", answer.text());
    assert!(answer.calls.is_empty(), "no tool for a question: {:?}", answer.calls);
    assert!(!answer.text().contains("<tool_call>") && !answer.text().contains("<|im_end|>"), "{:?}", answer.text());
    let n = answer.events.len();
    assert_eq!(answer.events[n - 1], LlmEvent::Done);
    let LlmEvent::Usage(usage) = &answer.events[n - 2] else { panic!("usage before Done: {:?}", answer.events[n - 2]) };
    assert!(usage.input > 50 && usage.output >= answer.tokens.len() as i64, "{usage:?}");
}

#[tokio::test]
async fn a_tool_call_comes_out_as_a_valid_call_and_never_as_text() {
    let request = ChatRequest {
        model: "embedded".into(),
        temperature: Some(0.0),
        messages: vec![
            ChatMessage::System {
                content: "You end phone calls. Whatever the caller says, respond only by calling the endConversation tool.".into(),
            },
            ChatMessage::User { content: "I moved my order to Tuesday. Thanks, bye!".into() },
        ],
        tools: tools::offered(&AgentSpec::named("Ava"), &[]),
        response_format: None,
    };
    let answer = ask(request).await;
    let [call] = answer.calls.as_slice() else { panic!("one tool call, not {:?} (said {:?})", answer.calls, answer.text()) };
    assert_eq!(call.name, "endConversation");
    let arguments: Value = serde_json::from_str(&call.arguments).expect("the grammar keeps the arguments JSON");
    assert!(arguments["summary"].is_string() && arguments["closing_message"].is_string(), "{arguments}");
    assert!(tools::parse(call).is_ok(), "the session can act on it");
    assert!(!call.id.is_empty());
    assert!(answer.text().trim().is_empty(), "the call is not read out: {:?}", answer.text());
}

#[tokio::test]
async fn a_json_schema_constrains_the_whole_answer() {
    let schema = json!({
        "type": "object",
        "properties": {
            "sentiment": { "type": "string", "enum": ["positive", "neutral", "negative"] },
            "satisfaction": { "type": "integer", "minimum": 1, "maximum": 5 },
        },
        "required": ["sentiment", "satisfaction"],
        "additionalProperties": false,
    });
    let request = ChatRequest {
        model: "embedded".into(),
        temperature: Some(0.0),
        messages: vec![ChatMessage::User { content: "The caller said: 'Thanks so much, that fixed it!' Rate the call.".into() }],
        tools: vec![],
        response_format: Some(json!({ "type": "json_schema", "json_schema": { "name": "rating", "schema": schema, "strict": true } })),
    };
    let text = ask(request).await.text();
    let rating: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("JSON, not {text:?}: {e}"));
    assert!(["positive", "neutral", "negative"].contains(&rating["sentiment"].as_str().unwrap()), "{rating}");
    assert!((1..=5).contains(&rating["satisfaction"].as_i64().unwrap()), "{rating}");
    assert_eq!(rating.as_object().unwrap().len(), 2, "{rating}");
}

#[tokio::test]
async fn the_next_turn_reads_only_what_is_new() {
    let engine = engine();
    let first = bistro(&[("caller", "Do you take reservations for large groups on weekends?")]);
    let said = ask(first).await.text();
    let before = engine.stats();
    let next = ask(bistro(&[
        ("caller", "Do you take reservations for large groups on weekends?"),
        ("agent", &said),
        ("caller", "Great, thanks."),
    ]))
    .await;
    let after = engine.stats();
    let LlmEvent::Usage(usage) = next.events[next.events.len() - 2] else { panic!("usage") };
    let evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated;
    let reused = after.prompt_tokens_reused - before.prompt_tokens_reused;
    assert_eq!(evaluated + reused, usage.input as u64, "every prompt token is either read or reused");
    assert!(evaluated < 40 && reused > 100, "only the new turn is read: {evaluated} read, {reused} reused");
}

#[tokio::test]
async fn a_dropped_stream_frees_its_slot_at_once() {
    let engine = engine();
    let long = ChatRequest {
        model: "embedded".into(),
        temperature: Some(0.7),
        messages: vec![ChatMessage::User { content: "Count from one to five hundred in words.".into() }],
        tools: vec![],
        response_format: None,
    };
    let mut stream = engine.stream(long);
    while !matches!(stream.next().await, Some(LlmEvent::Token(_))) {}
    drop(stream);
    // The slot is given back at the next token, not after five hundred numbers.
    let started = Instant::now();
    while engine.stats().busy > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the slot was not freed: {:?}", engine.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fresh installation with the models and no LLM provider at all: the console's test call (the
/// dev phone, through the real call path) is answered by the embedded model, whose goodbye ends
/// the call, and the ai_classify automation classifies the call with it too.
#[tokio::test]
async fn in_chromium_a_test_call_is_answered_by_the_embedded_model() {
    use switchboard::domain::org::Role;

    use crate::console::{PASSWORD, add_user};
    use crate::support::browser::Browser;
    let app = crate::turn_models::app_with_the_models().await;
    add_user(&app, "admin@acme.example", Role::Admin).await;
    let line = app
        .phone_line(json!({
            "name": "Ava",
            "instructions": "You answer the phone for Bella's Bistro. It opens at 11am and closes at 10pm every day.",
            "first_message": "Hi, this is Ava at Bella's Bistro.",
            "temperature": 0,
        }))
        .await;
    let app_id = app.get(&format!("/api/v1/agents/{}", line.agent)).await.expect(200)["app_id"].as_str().unwrap().to_owned();
    let automation = json!({ "name": "classify", "actions": [{ "type": "ai_classify" }] });
    let automation = app.post(&format!("/api/v1/apps/{app_id}/automations"), automation).await.expect(201);

    let browser = Browser::open(app.url("")).await;
    browser.sign_in("admin@acme.example", PASSWORD).await;
    browser.go("/settings/llm-providers").await;
    assert!(browser.text("main").await.contains("Embedded"), "the built-in provider is shown");
    browser.go(&format!("/numbers/{}/test-call", line.number_id)).await;
    browser.wait_for_text("#test-status", "Connected").await;
    browser.fill("#test-words", "What time do you close tonight?").await;
    browser.press("#test-say button[type=submit]").await;
    // A cold model reads the agent's whole prompt first (some seconds on two cores).
    browser.wait_for_text_within("#test-conversation", "10", Duration::from_secs(30)).await;
    // The caller lets the answer play out before saying goodbye.
    tokio::time::sleep(Duration::from_secs(4)).await;
    browser.fill("#test-words", "Perfect, that's all I needed. Goodbye!").await;
    browser.press("#test-say button[type=submit]").await;
    browser.wait_for_text_within("#test-status", "Call over", Duration::from_secs(30)).await;
    browser.screenshot("test-call-embedded-model").await;
    browser.close().await;

    let id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let detail = app.until(&format!("/api/v1/calls/{id}"), |d| d["ended_reason"].is_string()).await;
    assert_eq!(detail["ended_reason"], "agent_ended", "the goodbye ended the call: {detail}");
    let agent_turns: Vec<&str> =
        detail["transcript"].as_array().unwrap().iter().filter(|t| t["role"] == "agent").map(|t| t["text"].as_str().unwrap()).collect();
    assert!(agent_turns.len() >= 3 && agent_turns[1].contains("10"), "greeting, the hours, the goodbye: {agent_turns:?}");
    assert!(detail["usage"]["model_input_tokens"].as_i64().unwrap() > 0, "{}", detail["usage"]);
    assert!(detail["usage"]["model_provider_id"].is_null(), "no provider: the embedded model");

    let embedded = app.get("/api/v1/embedded-model").await.expect(200);
    assert_eq!(
        (embedded["installed"].as_bool(), embedded["in_use"].as_bool(), embedded["workers"].as_u64()),
        (Some(true), Some(true), Some(1))
    );
    let metrics = reqwest::get(format!("http://{}/metrics", app.metrics_addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_embedded_llm_workers 1\n"), "{metrics}");
    assert!(!metrics.contains("switchboard_embedded_llm_generated_tokens_total 0\n"), "{metrics}");

    let runs = format!("/api/v1/automations/{}/runs", automation["id"].as_str().unwrap());
    let runs = app.until(&runs, |b| b["data"][0]["status"].as_str().is_some_and(|s| s == "succeeded" || s == "failed")).await;
    assert_eq!(runs["data"][0]["status"], "succeeded", "{}", runs["data"][0]);
    let analysis = app.get(&format!("/api/v1/calls/{id}")).await.expect(200)["analysis"].clone();
    assert!(["positive", "neutral", "negative"].contains(&analysis["sentiment"].as_str().unwrap()), "{analysis}");
    assert!((1..=5).contains(&analysis["satisfaction"].as_i64().unwrap()), "{analysis}");
}

/// `switchboard dial --script` against a server with the models and no LLM provider: the
/// embedded model answers the dev phone, and its goodbye ends the call.
#[tokio::test]
async fn the_dev_phone_holds_a_scripted_call_with_the_embedded_model() {
    let app = crate::turn_models::app_with_the_models().await;
    app.phone_line(json!({
        "name": "Ava",
        "instructions": "You answer the phone for Bella's Bistro. It opens at 11am and closes at 10pm every day.",
        "first_message": "Hi, this is Ava at Bella's Bistro.",
        "temperature": 0,
    }))
    .await;
    let script = app.data_dir.path().join("script.txt");
    // The script waits through the filler for each answer (a cold model first reads the agent's
    // whole prompt).
    std::fs::write(&script, "What time do you close tonight?\nPerfect, that's all I needed. Goodbye!\n").unwrap();
    let stdout = app.dial(["--script", script.to_str().unwrap()]).await;
    // While the model reads, the caller hears the agent's filler, which is not an answer.
    let said: Vec<&str> = stdout.lines().filter_map(|line| line.strip_prefix("agent: ")).filter(|words| *words != "One moment.").collect();
    assert!(said.len() >= 3 && said[0].contains("Ava") && said[1].contains("10"), "greeting, the hours, the goodbye:\n{stdout}");
    assert!(stdout.contains("call ended by the agent (agent_ended)"), "the goodbye ended the call:\n{stdout}");
}
