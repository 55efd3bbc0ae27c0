//! OpenAI-compatible Chat Completions, streamed. Works with OpenAI and the servers that copy its
//! API (vLLM, llama.cpp, Ollama, Groq, Together…): `POST {base_url}/chat/completions` with
//! `stream: true`, read as server-sent events.
//!
//! Lenient by design: SSE comment lines (`: ping`) are skipped, unknown fields ignored, and
//! tool-call deltas are assembled by `index` (ids and names arrive once, arguments in pieces).
//! Timeouts: connect 5 s, first token `first_token_timeout`, then at most `idle_timeout` between
//! chunks. A request that fails before its first token is tried once more.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One message of the conversation, in the API's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        content: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A function the model asked to call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (JSON text, possibly invalid).
    pub arguments: String,
}

impl Serialize for ToolCall {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        json!({ "id": self.id, "type": "function", "function": { "name": self.name, "arguments": self.arguments } }).serialize(serializer)
    }
}

/// A tool offered to the model: name, description and a JSON Schema of its parameters.
#[derive(Clone, Debug)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: String,
    pub parameters: Value,
}

impl ToolSpec {
    /// The tool as the Chat Completions API takes it.
    pub fn to_json(&self) -> Value {
        json!({ "type": "function", "function": { "name": self.name, "description": self.description, "parameters": self.parameters } })
    }
}

/// What to ask.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub model: String,
    pub temperature: Option<f64>,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    /// The API's `response_format` (e.g. a JSON schema the answer must follow), when wanted.
    pub response_format: Option<Value>,
}

/// What the stream yields, in order: tokens as they come, then the tool calls (if any), then
/// `Done` — or `Failed` at any point.
#[derive(Clone, Debug, PartialEq)]
pub enum LlmEvent {
    Token(String),
    ToolCalls(Vec<ToolCall>),
    Done,
    Failed(String),
}

/// An OpenAI-compatible endpoint.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    pub first_token_timeout: Duration,
    pub idle_timeout: Duration,
}

impl LlmClient {
    pub fn new(base_url: &str, api_key: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("the HTTP client builds with static settings");
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            first_token_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
        }
    }

    /// Starts a streamed completion. Dropping the receiver stops the request.
    pub fn stream(&self, request: ChatRequest) -> mpsc::Receiver<LlmEvent> {
        let (tx, rx) = mpsc::channel(64);
        let client = self.clone();
        tokio::spawn(async move {
            let mut attempt = 1;
            loop {
                match client.run(&request, &tx).await {
                    Ok(()) => return,
                    Err(Failure { before_first_token: true, message }) if attempt == 1 => {
                        tracing::warn!(error = %message, "LLM request failed before its first token; retrying once");
                        attempt += 1;
                    }
                    Err(failure) => {
                        let _ = tx.send(LlmEvent::Failed(failure.message)).await;
                        return;
                    }
                }
            }
        });
        rx
    }

    /// The whole text of a completion (for work that needs no streaming, like classification).
    pub async fn complete(&self, request: ChatRequest) -> Result<String, String> {
        let mut stream = self.stream(request);
        let mut text = String::new();
        while let Some(event) = stream.recv().await {
            match event {
                LlmEvent::Token(token) => text.push_str(&token),
                LlmEvent::ToolCalls(_) => {}
                LlmEvent::Done => return Ok(text),
                LlmEvent::Failed(error) => return Err(error),
            }
        }
        Err("the model's stream ended early".to_owned())
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({ "model": request.model, "messages": request.messages, "stream": true });
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if !request.tools.is_empty() {
            body["tools"] = request.tools.iter().map(ToolSpec::to_json).collect();
        }
        if let Some(format) = &request.response_format {
            body["response_format"] = format.clone();
        }
        body
    }

    async fn run(&self, request: &ChatRequest, tx: &mpsc::Sender<LlmEvent>) -> Result<(), Failure> {
        let early = |message: String| Failure { before_first_token: true, message };
        let mut http = self.http.post(format!("{}/chat/completions", self.base_url)).json(&self.body(request));
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let mut response = tokio::time::timeout(self.first_token_timeout, http.send())
            .await
            .map_err(|_| early("no answer before the first-token timeout".into()))?
            .map_err(|e| early(format!("request failed: {e}")))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            return Err(early(format!("HTTP {status}: {}", text.chars().take(300).collect::<String>())));
        }
        let mut lines = SseLines::default();
        let mut calls = ToolCallAccumulator::default();
        let mut produced = false;
        loop {
            let wait = if produced { self.idle_timeout } else { self.first_token_timeout };
            let chunk = tokio::time::timeout(wait, response.chunk())
                .await
                .map_err(|_| Failure { before_first_token: !produced, message: "the model stopped sending".into() })?
                .map_err(|e| Failure { before_first_token: !produced, message: format!("stream broke: {e}") })?;
            let Some(chunk) = chunk else { break };
            for data in lines.push(&chunk) {
                if data == "[DONE]" {
                    return finish(tx, calls).await;
                }
                let Ok(parsed) = serde_json::from_str::<StreamChunk>(&data) else { continue };
                for choice in parsed.choices {
                    if let Some(content) = choice.delta.content.filter(|c| !c.is_empty()) {
                        produced = true;
                        if tx.send(LlmEvent::Token(content)).await.is_err() {
                            return Ok(()); // the listener is gone: stop quietly
                        }
                    }
                    for delta in choice.delta.tool_calls {
                        produced = true;
                        calls.add(delta);
                    }
                }
            }
        }
        finish(tx, calls).await
    }
}

async fn finish(tx: &mpsc::Sender<LlmEvent>, calls: ToolCallAccumulator) -> Result<(), Failure> {
    let calls = calls.finish();
    if !calls.is_empty() {
        let _ = tx.send(LlmEvent::ToolCalls(calls)).await;
    }
    let _ = tx.send(LlmEvent::Done).await;
    Ok(())
}

struct Failure {
    before_first_token: bool,
    message: String,
}

/// Splits a byte stream into the `data:` payloads of server-sent events.
#[derive(Default)]
struct SseLines {
    buffer: Vec<u8>,
}

impl SseLines {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(data) = line.strip_prefix("data:") {
                out.push(data.trim_start().to_owned());
            }
        }
        out
    }
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default)]
    choices: Vec<StreamChoice>,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default)]
    delta: Delta,
}

#[derive(Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Assembles tool calls from deltas keyed by `index` (a missing index means the last call).
#[derive(Default)]
struct ToolCallAccumulator {
    calls: BTreeMap<usize, ToolCall>,
}

impl ToolCallAccumulator {
    fn add(&mut self, delta: ToolCallDelta) {
        let index = delta.index.unwrap_or_else(|| self.calls.keys().next_back().copied().unwrap_or(0));
        let call = self.calls.entry(index).or_insert_with(|| ToolCall { id: String::new(), name: String::new(), arguments: String::new() });
        if let Some(id) = delta.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = delta.function {
            if let Some(name) = function.name {
                call.name.push_str(&name);
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_iter()
            .filter(|(_, c)| !c.name.is_empty())
            .map(|(i, mut c)| {
                if c.id.is_empty() {
                    c.id = format!("call_{i}");
                }
                c
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_lines_survive_arbitrary_chunking_and_skip_comments() {
        let stream = b": ping\n\ndata: {\"a\":1}\r\n\ndata:[DONE]\n";
        for split in 1..stream.len() {
            let mut lines = SseLines::default();
            let mut out = lines.push(&stream[..split]);
            out.extend(lines.push(&stream[split..]));
            assert_eq!(out, ["{\"a\":1}", "[DONE]"], "split at {split}");
        }
    }

    #[test]
    fn tool_calls_assemble_across_deltas_and_indexes() {
        let deltas = [
            r#"{"index":0,"id":"call_a","function":{"name":"endConv","arguments":""}}"#,
            r#"{"index":1,"id":"call_b","function":{"name":"switchLanguage","arguments":"{\"lang"}}"#,
            r#"{"index":0,"function":{"name":"ersation","arguments":"{\"summary\":"}}"#,
            r#"{"index":0,"function":{"arguments":"\"done\"}"}}"#,
            r#"{"index":1,"function":{"arguments":"uage\":\"fr-FR\"}"}}"#,
        ];
        let mut acc = ToolCallAccumulator::default();
        for d in deltas {
            acc.add(serde_json::from_str(d).unwrap());
        }
        let calls = acc.finish();
        assert_eq!(calls[0], ToolCall { id: "call_a".into(), name: "endConversation".into(), arguments: r#"{"summary":"done"}"#.into() });
        assert_eq!(calls[1].arguments, r#"{"language":"fr-FR"}"#);
    }

    #[test]
    fn messages_serialise_in_the_api_shape() {
        let m = ChatMessage::Assistant {
            content: String::new(),
            tool_calls: vec![ToolCall { id: "c1".into(), name: "endConversation".into(), arguments: "{}".into() }],
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({ "role": "assistant", "content": "", "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "endConversation", "arguments": "{}" } }] })
        );
        assert_eq!(serde_json::to_value(ChatMessage::Tool { tool_call_id: "c1".into(), content: "ok".into() }).unwrap()["role"], "tool");
    }
}
