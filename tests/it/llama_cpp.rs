//! The optional real-model profile: a scripted call through the relay against llama.cpp's
//! OpenAI-compatible server (llama-cpp-python) and a small chat model from PyPI. It checks what
//! our fake cannot prove: that a real server's streaming, its explicit nulls and its quirks
//! reach the caller as words. Ignored unless run by `scripts/llama-profile.sh`, which installs
//! the server and the model, starts them on loopback and sets `TEST_LLAMA_URL`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::relay_client::RelayClient;
use crate::support::{Backend, LINE_TOKEN, sid, spawn_app};

#[tokio::test]
#[ignore = "needs a llama.cpp server: run scripts/llama-profile.sh"]
async fn a_scripted_call_with_a_real_model() {
    let base_url = std::env::var("TEST_LLAMA_URL").expect("TEST_LLAMA_URL names the llama.cpp server's /v1 URL");
    let app = spawn_app(Backend::Sqlite).await;
    let provider = app
        .post("/api/v1/llm-providers", json!({ "name": "llama.cpp", "base_url": base_url, "default_model": "smollm2" }))
        .await
        .expect(201);
    let agent = json!({
        "name": "Ava",
        "instructions": "You answer the phone for Bella's Bistro. It opens 11am to 10pm every day. Answer in one short sentence.",
        "first_message": "Hi, this is Ava at Bella's Bistro.",
        "llm_provider_id": provider["id"],
        "end_call_phrases": ["Goodbye"],
    });
    let line = app.phone_line(agent).await;
    let call_sid = sid("CA", 'a');
    app.ring(&line, &call_sid).await.expect(200);
    let call_id = app.get("/api/v1/calls").await.expect(200)["data"][0]["id"].as_str().unwrap().to_owned();
    let mut relay = RelayClient::connect(app.addr, &call_id, Some(LINE_TOKEN)).await.expect("signed handshake");
    relay.setup(&call_sid).await;

    relay.say("Hi! When are you open today?").await;
    let answer = relay.utterance().await;
    assert!(!answer.text.trim().is_empty(), "the model's words reach the caller");
    assert!(answer.tokens >= 2, "streamed, not sent whole: {answer:?}");
    relay.say("Great, thank you.").await;
    let second = relay.utterance().await;
    assert!(!second.text.trim().is_empty());
    relay.close().await;

    let mut detail = Value::Null;
    for _ in 0..100 {
        detail = app.get(&format!("/api/v1/calls/{call_id}")).await.expect(200);
        if detail["ended_reason"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let turns = detail["transcript"].as_array().unwrap();
    let roles: Vec<&str> = turns.iter().map(|t| t["role"].as_str().unwrap()).collect();
    assert_eq!(roles[..4], ["agent", "caller", "agent", "caller"], "{detail}");
    assert!(turns.iter().filter(|t| t["role"] == "agent").all(|t| !t["text"].as_str().unwrap().trim().is_empty()), "no empty agent turn");
    assert!(turns[2]["latency_ms"].as_i64().is_some(), "the first token's latency is stored");
}
