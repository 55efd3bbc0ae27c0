//! A fake OpenAI-compatible Chat Completions server on 127.0.0.1: it streams scripted replies
//! as server-sent events in the chunk format of a real server, with delays and errors on demand,
//! and records every request. Two streaming styles seen in the wild:
//! - [`StreamStyle::OpenAi`]: a tool call's id and name once, arguments split across chunks,
//!   absent fields left out.
//! - [`StreamStyle::LlamaCppPython`] (llama-cpp-python's server): every field present with
//!   explicit `null`s (`"tool_calls": null` beside text), and the call's id, type and full name
//!   repeated in every tool-call delta.
//!
//! And the ways servers report token usage in a stream ([`UsageReport`]): OpenAI's last chunk
//! without choices when asked (`stream_options.include_usage`, with `"usage": null` in every
//! other chunk), llama.cpp's server's usage in the chunk that finishes the answer whether asked
//! or not, none at all, and a strict server that refuses the `stream_options` field.
//!
//! Every request is checked against OpenAI's published request schema (`openai_schema`) and
//! refused with a 400 in OpenAI's shape if it forbids it.

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

use super::openai_schema;

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

/// How the server reports the tokens a request used.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum UsageReport {
    /// OpenAI: a last chunk with `choices: []` and `usage`, only when the request asks.
    #[default]
    WhenAsked,
    /// llama.cpp's server: `usage` in the chunk with `finish_reason`, always.
    InFinalChunk,
    Never,
    /// Answers 400 to a request with `stream_options`, as some strict proxies do.
    RefusesStreamOptions,
}

/// How the server shapes its stream.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum StreamStyle {
    #[default]
    OpenAi,
    LlamaCppPython,
}

#[derive(Clone, Default)]
pub struct FakeLlm {
    pub base_url: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    answers: Arc<Mutex<Vec<(String, Reply)>>>,
    requests: Arc<Mutex<Vec<Value>>>,
    style: Arc<Mutex<StreamStyle>>,
    usage: Arc<Mutex<UsageReport>>,
    /// (prompt, completion) tokens of every answer, as counted here.
    counted: Arc<Mutex<Vec<(i64, i64)>>>,
    refuse_json_schema: Arc<Mutex<Option<u16>>>,
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

    /// Answer every request whose latest caller message contains `words` (in any case) with
    /// `reply`, before the script and as often as asked: like a real model, a question asked
    /// again after a cancelled request gets the same answer, whatever the timing.
    pub fn answer(&self, words: &str, reply: Reply) {
        self.answers.lock().unwrap().push((words.to_lowercase(), reply));
    }

    pub fn stream_like(&self, style: StreamStyle) {
        *self.style.lock().unwrap() = style;
    }

    pub fn report_usage(&self, usage: UsageReport) {
        *self.usage.lock().unwrap() = usage;
    }

    /// The (prompt, completion) tokens of every answer streamed whole, reported or not.
    pub fn counted(&self) -> Vec<(i64, i64)> {
        self.counted.lock().unwrap().clone()
    }

    /// Answer every request whose `response_format` is a JSON schema with this status, as some
    /// servers do (llama.cpp's with 500).
    pub fn refuse_json_schema(&self, status: u16) {
        *self.refuse_json_schema.lock().unwrap() = Some(status);
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

fn chunk(delta: Value) -> Bytes {
    data(
        json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake", "choices": [{ "index": 0, "delta": delta, "finish_reason": null }] }),
    )
}

fn data(body: Value) -> Bytes {
    Bytes::from(format!("data: {body}\n\n"))
}

/// This server's token count: a token per word of the messages, four per message.
fn prompt_tokens(request: &Value) -> i64 {
    let messages = request["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    messages.iter().map(|m| 4 + m["content"].as_str().unwrap_or_default().split_whitespace().count() as i64).sum()
}

/// A text delta in the server's style.
fn text_delta(style: StreamStyle, token: &str) -> Value {
    match style {
        StreamStyle::OpenAi => json!({ "content": token }),
        StreamStyle::LlamaCppPython => json!({ "role": null, "content": token, "function_call": null, "tool_calls": null }),
    }
}

/// The deltas of tool call `i`, its arguments in two pieces, in the server's style.
fn tool_call_deltas(style: StreamStyle, i: usize, name: &str, arguments: &str) -> [Value; 2] {
    let (head, tail) = arguments.split_at(arguments.len() / 2);
    let id = format!("call_{i}");
    match style {
        StreamStyle::OpenAi => [
            json!({ "tool_calls": [{ "index": i, "id": id, "type": "function", "function": { "name": name, "arguments": head } }] }),
            json!({ "tool_calls": [{ "index": i, "function": { "arguments": tail } }] }),
        ],
        StreamStyle::LlamaCppPython => [head, tail].map(|part| {
            json!({ "role": null, "content": null, "function_call": null,
                    "tool_calls": [{ "index": i, "id": id, "type": "function", "function": { "name": name, "arguments": part } }] })
        }),
    }
}

async fn complete(State(fake): State<FakeLlm>, axum::Json(request): axum::Json<Value>) -> Response {
    assert_eq!(request["stream"], true, "the client must stream");
    let problems = openai_schema::chat_violations(&request);
    if !problems.is_empty() {
        eprintln!("the fake model refuses a request OpenAI's schema forbids: {problems:?}");
        fake.requests.lock().unwrap().push(request);
        let error = json!({ "error": { "message": problems.join("; "), "type": "invalid_request_error" } });
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let usage = *fake.usage.lock().unwrap();
    let asks_usage = request["stream_options"]["include_usage"] == true;
    if usage == UsageReport::RefusesStreamOptions && request.get("stream_options").is_some() {
        fake.requests.lock().unwrap().push(request);
        let error =
            json!({ "error": { "message": "Unrecognized request argument supplied: stream_options", "type": "invalid_request_error" } });
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    let prompt = prompt_tokens(&request);
    let refusal = *fake.refuse_json_schema.lock().unwrap();
    if let Some(status) = refusal.filter(|_| request["response_format"]["type"] == "json_schema") {
        fake.requests.lock().unwrap().push(request);
        return (StatusCode::from_u16(status).unwrap(), "Internal Server Error: response_format json_schema unsupported").into_response();
    }
    let latest_caller_words = request["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_lowercase();
    let answer = fake.answers.lock().unwrap().iter().find(|(words, _)| latest_caller_words.contains(words)).map(|(_, r)| r.clone());
    fake.requests.lock().unwrap().push(request);
    let reply = answer.unwrap_or_else(|| fake.script.lock().unwrap().pop_front().unwrap_or_else(|| Reply::says("Okay.")));
    let style = *fake.style.lock().unwrap();
    if let Some(status) = reply.fail_with {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(json!({ "error": { "message": "scripted failure" } }))).into_response();
    }
    let mut frames: Vec<(Duration, Bytes)> =
        vec![(Duration::ZERO, Bytes::from(": ping\n\n")), (Duration::ZERO, chunk(json!({ "role": "assistant" })))];
    for token in &reply.tokens {
        frames.push((reply.delay_per_token, chunk(text_delta(style, token))));
    }
    for (i, (name, arguments)) in reply.tool_calls.iter().enumerate() {
        for delta in tool_call_deltas(style, i, name, arguments) {
            frames.push((Duration::ZERO, chunk(delta)));
        }
    }
    let completion = (reply.tokens.len() + 8 * reply.tool_calls.len()) as i64;
    let reported = json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion });
    match usage {
        UsageReport::WhenAsked if asks_usage => {
            // OpenAI names `usage` in every chunk once asked: null until the last.
            for (_, bytes) in frames.iter_mut().skip(1) {
                let mut body: Value = serde_json::from_slice(&bytes[6..]).unwrap();
                body["usage"] = Value::Null;
                *bytes = data(body);
            }
            frames.push((
                Duration::ZERO,
                data(json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": reported })),
            ));
        }
        UsageReport::InFinalChunk => frames.push((
            Duration::ZERO,
            data(json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake",
                         "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }], "usage": reported,
                         "timings": { "prompt_n": prompt, "predicted_n": completion } })),
        )),
        _ => {}
    }
    frames.push((Duration::ZERO, Bytes::from("data: [DONE]\n\n")));
    let counted = fake.counted.clone();
    let stream = futures_util::stream::unfold(frames.into_iter(), move |mut frames| {
        let counted = counted.clone();
        async move {
            let (delay, bytes) = frames.next()?;
            tokio::time::sleep(delay).await;
            if frames.len() == 0 {
                // The whole answer goes out with this frame.
                counted.lock().unwrap().push((prompt, completion));
            }
            Some((Ok::<_, std::io::Error>(bytes), frames))
        }
    });
    ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
}
