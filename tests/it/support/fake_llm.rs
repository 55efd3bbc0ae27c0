//! A fake OpenAI-compatible Chat Completions server on 127.0.0.1: it streams scripted replies
//! as server-sent events, exactly in the API's chunk format (content deltas, tool-call deltas
//! split across chunks, `[DONE]`), with delays and errors on demand, and records every request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Clone, Default)]
pub struct Reply {
    pub tokens: Vec<String>,
    /// (name, arguments JSON) of tool calls to make after the tokens.
    pub tool_calls: Vec<(String, String)>,
    pub delay_per_token: Duration,
    /// Answer with this HTTP status instead.
    pub fail_with: Option<u16>,
}

impl Reply {
    pub fn says(text: &str) -> Self {
        let tokens = text.split_inclusive(' ').map(str::to_owned).collect();
        Self { tokens, ..Default::default() }
    }

    pub fn calls(name: &str, arguments: Value) -> Self {
        Self { tool_calls: vec![(name.to_owned(), arguments.to_string())], ..Default::default() }
    }

    pub fn slowly(mut self, delay: Duration) -> Self {
        self.delay_per_token = delay;
        self
    }

    pub fn fails(status: u16) -> Self {
        Self { fail_with: Some(status), ..Default::default() }
    }
}

#[derive(Clone, Default)]
pub struct FakeLlm {
    pub base_url: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeLlm {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeLlm { base_url: format!("http://{}/v1", listener.local_addr().unwrap()), ..Default::default() };
        let app = Router::new().route("/v1/chat/completions", post(complete)).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

fn chunk(delta: Value) -> Bytes {
    let body = json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake", "choices": [{ "index": 0, "delta": delta, "finish_reason": null }] });
    Bytes::from(format!("data: {body}\n\n"))
}

async fn complete(State(fake): State<FakeLlm>, axum::Json(request): axum::Json<Value>) -> Response {
    assert_eq!(request["stream"], true, "the client must stream");
    fake.requests.lock().unwrap().push(request);
    let reply = fake.script.lock().unwrap().pop_front().unwrap_or_else(|| Reply::says("Okay."));
    if let Some(status) = reply.fail_with {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(json!({ "error": { "message": "scripted failure" } }))).into_response();
    }
    let mut frames: Vec<(Duration, Bytes)> =
        vec![(Duration::ZERO, Bytes::from(": ping\n\n")), (Duration::ZERO, chunk(json!({ "role": "assistant" })))];
    for token in &reply.tokens {
        frames.push((reply.delay_per_token, chunk(json!({ "content": token }))));
    }
    for (i, (name, arguments)) in reply.tool_calls.iter().enumerate() {
        let (head, tail) = arguments.split_at(arguments.len() / 2);
        frames.push((Duration::ZERO, chunk(json!({ "tool_calls": [{ "index": i, "id": format!("call_{i}"), "type": "function", "function": { "name": name, "arguments": head } }] }))));
        frames.push((Duration::ZERO, chunk(json!({ "tool_calls": [{ "index": i, "function": { "arguments": tail } }] }))));
    }
    frames.push((Duration::ZERO, Bytes::from("data: [DONE]\n\n")));
    let stream = futures_util::stream::unfold(frames.into_iter(), |mut frames| async move {
        let (delay, bytes) = frames.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<_, std::io::Error>(bytes), frames))
    });
    ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
}
