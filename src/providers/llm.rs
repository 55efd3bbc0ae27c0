//! OpenAI-compatible Chat Completions, streamed. Works with OpenAI and the servers that copy its
//! API (vLLM, llama.cpp, Ollama, Groq, Together…): `POST {base_url}/chat/completions` with
//! `stream: true`, read as server-sent events (the `eventsource-stream` crate, each event capped
//! at [`MAX_EVENT_BYTES`]).
//!
//! [`ChatModel`] is the interface the agent runtime thinks through; [`LlmClient`] is its
//! OpenAI-compatible implementation, and tests or an embedded engine can be others.
//!
//! Servers stream differently, and all of these are accepted: SSE comments (`: ping`), explicit
//! `null`s for any field (`"tool_calls": null` beside text, `"delta": null`), unknown fields,
//! tool-call deltas assembled by `index` whether the server sends a call's name once (OpenAI)
//! or repeats the full name in every delta (llama-cpp-python), and an `error` object in the
//! stream. Timeouts: connect 5 s, first token `first_token_timeout`, then at most
//! `idle_timeout` between events, and `total_timeout` for the whole answer. A request that fails
//! before its first token for a reason worth retrying (unreachable, timeout, 429, 5xx) is tried
//! once more. Errors are typed ([`LlmError`]); an error body is read up to 16 KiB and reduced to
//! a short reason.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::egress::{Egress, Refused};

/// The largest server-sent event accepted; a larger one fails the stream.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// How much of an error body is read to explain a refusal.
const MAX_ERROR_BODY: usize = 16 << 10;

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
        #[derive(Serialize)]
        struct Function<'a> {
            name: &'a str,
            arguments: &'a str,
        }
        let function = Function { name: &self.name, arguments: &self.arguments };
        Typed { id: Some(&self.id), kind: "function", function }.serialize(serializer)
    }
}

/// The API's `{"type": "function", "function": …}` wrapper of tool calls and tools.
#[derive(Serialize)]
struct Typed<'a, T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: T,
}

/// A tool offered to the model: name, description and a JSON Schema of its parameters.
#[derive(Clone, Debug)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: String,
    pub parameters: Value,
}

/// The tool as the Chat Completions API takes it.
impl Serialize for ToolSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Function<'a> {
            name: &'a str,
            description: &'a str,
            parameters: &'a Value,
        }
        let function = Function { name: self.name, description: &self.description, parameters: &self.parameters };
        Typed { id: None, kind: "function", function }.serialize(serializer)
    }
}

/// A Chat Completions request's body, written straight from the request.
#[derive(Serialize)]
struct RequestBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "<[ToolSpec]>::is_empty")]
    tools: &'a [ToolSpec],
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<&'a Value>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
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
    /// The tokens the request used, as the server reported them (just before `Done`; absent
    /// when the server does not report usage).
    Usage(TokenUsage),
    Done,
    Failed(LlmError),
}

/// Tokens one request used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: i64,
    pub output: i64,
}

/// About four characters make a token in the languages these models speak most; used where a
/// server does not say.
pub fn estimate_tokens(characters: usize) -> i64 {
    characters.div_ceil(4) as i64
}

impl ChatRequest {
    /// The tokens the request's prompt (messages and tools) takes, estimated from its text
    /// (what each message says, and the tools' descriptions and parameters).
    pub fn estimated_input_tokens(&self) -> i64 {
        let messages: usize = self.messages.iter().map(ChatMessage::characters).sum();
        let tools: usize = self.tools.iter().map(|tool| tool.name.len() + tool.description.len() + tool.parameters.to_string().len()).sum();
        estimate_tokens(messages + tools)
    }
}

impl ChatMessage {
    /// The characters of what the message says (tool calls included), and its role.
    fn characters(&self) -> usize {
        /// The role and the message's framing, roughly, as a model's template writes them.
        const FRAMING: usize = 16;
        FRAMING
            + match self {
                ChatMessage::System { content } | ChatMessage::User { content } => content.len(),
                ChatMessage::Assistant { content, tool_calls } => {
                    content.len() + tool_calls.iter().map(|call| call.id.len() + call.name.len() + call.arguments.len()).sum::<usize>()
                }
                ChatMessage::Tool { tool_call_id, content } => tool_call_id.len() + content.len(),
            }
    }
}

/// Why a model gave no (complete) answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("could not reach the model server: {0}")]
    Unreachable(String),
    #[error("the model server did not answer in time ({0})")]
    Timeout(&'static str),
    /// The server answered the request with an error status.
    #[error("the model server answered HTTP {status}: {reason}")]
    Refused { status: u16, reason: String },
    #[error("the model's stream broke: {0}")]
    Broken(String),
    /// The egress policy does not let requests reach the endpoint.
    #[error(transparent)]
    NotAllowed(#[from] Refused),
}

impl LlmError {
    /// Whether asking again at once may help (the request itself was not the problem).
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Refused { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            LlmError::NotAllowed(_) => false,
            _ => true,
        }
    }
}

/// A model's answer as it streams: tokens, tool calls, usage, then `Done` or `Failed`. Dropping
/// it stops the answer.
pub type Answer = std::pin::Pin<Box<dyn futures_util::Stream<Item = LlmEvent> + Send + Sync>>;

/// The answer whose events arrive on `events` (from a task or a thread that produces them).
pub fn answer_from(mut events: mpsc::Receiver<LlmEvent>) -> Answer {
    Box::pin(futures_util::stream::poll_fn(move |cx| events.poll_recv(cx)))
}

/// A model that answers a conversation, streamed.
pub trait ChatModel: Send + Sync {
    fn stream(&self, request: ChatRequest) -> Answer;

    /// Reads the start of a conversation ahead (the system prompt and the greeting, while the
    /// greeting plays), so the answer to what follows starts sooner. A model server needs
    /// nothing: this does nothing unless a model keeps what it read.
    fn warm(&self, _conversation: ChatRequest) {}
}

/// The whole text of a completion, for work that needs no streaming (classification, greetings).
pub async fn complete(model: &dyn ChatModel, request: ChatRequest) -> Result<String, LlmError> {
    let mut stream = model.stream(request);
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event {
            LlmEvent::Token(token) => text.push_str(&token),
            LlmEvent::ToolCalls(_) | LlmEvent::Usage(_) => {}
            LlmEvent::Done => return Ok(text),
            LlmEvent::Failed(error) => return Err(error),
        }
    }
    Err(LlmError::Broken("the stream ended early".to_owned()))
}

/// An OpenAI-compatible endpoint, reached through the egress policy.
#[derive(Clone)]
pub struct LlmClient {
    egress: Egress,
    base_url: String,
    api_key: Option<String>,
    /// Whether to ask for usage in the stream (`stream_options`); cleared for a server that
    /// refuses the option.
    asks_usage: Arc<std::sync::atomic::AtomicBool>,
    pub first_token_timeout: Duration,
    pub idle_timeout: Duration,
    pub total_timeout: Duration,
}

impl LlmClient {
    pub fn new(egress: Egress, base_url: &str, api_key: Option<String>) -> Self {
        Self {
            egress,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            asks_usage: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            first_token_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(120),
        }
    }

    /// The endpoint, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn body<'a>(&self, request: &'a ChatRequest) -> RequestBody<'a> {
        RequestBody {
            model: &request.model,
            messages: &request.messages,
            stream: true,
            stream_options: self.asks_usage.load(Ordering::Relaxed).then_some(StreamOptions { include_usage: true }),
            temperature: request.temperature,
            tools: &request.tools,
            response_format: request.response_format.as_ref(),
        }
    }

    async fn run(&self, request: &ChatRequest, tx: &mpsc::Sender<LlmEvent>, deadline: Instant) -> Result<(), Failure> {
        let early = |error: LlmError| Failure { before_first_token: true, error };
        let url = url::Url::parse(&format!("{}/chat/completions", self.base_url))
            .map_err(|e| early(LlmError::Unreachable(format!("the endpoint is not a URL ({e})"))))?;
        let mut http = self.egress.client_for(&url).map_err(|refused| early(refused.into()))?.post(url).json(&self.body(request));
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let first_wait = deadline.min(Instant::now() + self.first_token_timeout);
        let response = tokio::time::timeout_at(first_wait, http.send())
            .await
            .map_err(|_| early(LlmError::Timeout("no answer before the first-token timeout")))?
            .map_err(|e| {
                early(Refused::behind(&e).cloned().map_or_else(|| LlmError::Unreachable(e.without_url().to_string()), LlmError::from))
            })?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let reason = error_reason(response, first_wait).await;
            return Err(early(LlmError::Refused { status, reason }));
        }
        let since_last_event = Arc::new(AtomicUsize::new(0));
        let counter = since_last_event.clone();
        let bytes = response.bytes_stream().map(move |chunk| {
            let chunk = chunk.map_err(|e| e.without_url().to_string())?;
            if counter.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len() > MAX_EVENT_BYTES {
                return Err(format!("an event exceeded {MAX_EVENT_BYTES} bytes"));
            }
            Ok(chunk)
        });
        let mut events = std::pin::pin!(server_sent_events(bytes));
        let mut calls = ToolCallAccumulator::default();
        let mut usage = None;
        let mut produced = false;
        loop {
            let wait = deadline.min(Instant::now() + if produced { self.idle_timeout } else { self.first_token_timeout });
            let failure = |error| Failure { before_first_token: !produced, error };
            let event = tokio::time::timeout_at(wait, events.next())
                .await
                .map_err(|_| failure(LlmError::Timeout(if produced { "the model stopped sending" } else { "no first token" })))?;
            let Some(event) = event else { break };
            let event = event.map_err(|e| failure(LlmError::Broken(e.to_string())))?;
            since_last_event.store(0, Ordering::Relaxed);
            if event.data == "[DONE]" {
                break;
            }
            let parsed = match serde_json::from_str::<StreamChunk>(&event.data) {
                Ok(parsed) => parsed,
                Err(e) => {
                    tracing::warn!(error = %e, data = %event.data.chars().take(200).collect::<String>(), "skipped an unreadable chunk of the model's stream");
                    continue;
                }
            };
            if let Some(error) = parsed.error {
                return Err(failure(LlmError::Broken(error.summary())));
            }
            // OpenAI reports usage in a last chunk without choices; other servers in the last
            // chunk with content, or in every chunk as a running total: the last one counts.
            if let Some(reported) = parsed.usage {
                usage = Some(TokenUsage { input: reported.prompt_tokens, output: reported.completion_tokens });
            }
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
        let calls = calls.finish();
        if !calls.is_empty() {
            let _ = tx.send(LlmEvent::ToolCalls(calls)).await;
        }
        if let Some(usage) = usage {
            let _ = tx.send(LlmEvent::Usage(usage)).await;
        }
        let _ = tx.send(LlmEvent::Done).await;
        Ok(())
    }
}

impl ChatModel for LlmClient {
    fn stream(&self, request: ChatRequest) -> Answer {
        let (tx, rx) = mpsc::channel(64);
        let client = self.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + client.total_timeout;
            let mut retried = false;
            loop {
                match client.run(&request, &tx, deadline).await {
                    Ok(()) => return,
                    Err(Failure { error: LlmError::Refused { status: 400 | 422, reason }, .. })
                        if reason.contains("stream_options") && client.asks_usage.swap(false, Ordering::Relaxed) =>
                    {
                        tracing::warn!(%reason, "the model server refuses `stream_options`; asking again without usage reports");
                    }
                    Err(Failure { before_first_token: true, error }) if !retried && error.is_transient() => {
                        tracing::warn!(%error, "LLM request failed before its first token; retrying once");
                        retried = true;
                    }
                    Err(failure) => {
                        let _ = tx.send(LlmEvent::Failed(failure.error)).await;
                        return;
                    }
                }
            }
        });
        answer_from(rx)
    }
}

/// Server-sent events read from `bytes`. One byte-order mark at the start is skipped, as the
/// standard says, however the chunks split it; and the parser (`eventsource-stream` 0.2.3, which
/// panics on a stream that starts with one: it cuts a single byte of it) is never shown a
/// stream that starts with one: the bytes are put behind an empty comment line.
fn server_sent_events<B, E>(
    bytes: impl futures_util::Stream<Item = Result<B, E>>,
) -> impl futures_util::Stream<Item = Result<eventsource_stream::Event, eventsource_stream::EventStreamError<E>>>
where
    B: Into<bytes::Bytes> + AsRef<[u8]>,
{
    const BOM: &[u8] = "\u{feff}".as_bytes();
    // The start of the stream, until it is known whether it begins with a mark.
    let mut start = Some(Vec::with_capacity(BOM.len()));
    bytes
        .map(move |chunk| {
            let chunk = chunk?;
            let Some(mut head) = start.take() else { return Ok(chunk.into()) };
            head.extend_from_slice(chunk.as_ref());
            if head.len() < BOM.len() && BOM.starts_with(&head) {
                start = Some(head);
                return Ok(bytes::Bytes::new());
            }
            let rest = head.strip_prefix(BOM).unwrap_or(&head);
            Ok([b":\n".as_slice(), rest].concat().into())
        })
        .eventsource()
}

struct Failure {
    before_first_token: bool,
    error: LlmError,
}

/// A short reason from an error response: the API's `error.message` when there is one, else the
/// start of the body, on one line.
pub(super) async fn error_reason(mut response: reqwest::Response, deadline: Instant) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    reason_from_body(&body)
}

/// What a tenant may see of an error answer: the API's own error message (see [`ErrorBody`]),
/// on one line, at most 200 characters — never any other content, which may come from a server that is not a model
/// server at all (a provider URL pointed at an internal service).
pub(super) fn reason_from_body(body: &[u8]) -> String {
    let found =
        serde_json::from_slice::<ErrorBody>(body).ok().and_then(|body| body.error.or(body.detail).map(|e| e.summary()).or(body.err_msg));
    match found {
        Some(summary) => {
            let message: String =
                summary.split_whitespace().collect::<Vec<_>>().join(" ").chars().filter(|c| !c.is_control()).take(200).collect();
            if message.is_empty() { "the server reported an error".to_owned() } else { message }
        }
        _ if body.iter().all(u8::is_ascii_whitespace) => "no reason given".to_owned(),
        _ => format!("the answer is not an API error ({} bytes, not shown)", body.len()),
    }
}

/// `null` where a value was expected reads as the value's default.
fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An error answer: OpenAI's `error`, or what other vendors use (`detail`: ElevenLabs and
/// FastAPI servers; `err_msg`: Deepgram).
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ApiErrorObject>,
    #[serde(default)]
    detail: Option<ApiErrorObject>,
    #[serde(default)]
    err_msg: Option<String>,
}

/// The API's `error` object; some servers send a bare string instead, FastAPI a list of
/// validation problems.
#[derive(Deserialize)]
#[serde(untagged)]
enum ApiErrorObject {
    Object {
        #[serde(default)]
        message: Option<String>,
    },
    Text(String),
    Problems(Vec<Problem>),
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    msg: String,
}

impl ApiErrorObject {
    fn summary(&self) -> String {
        match self {
            ApiErrorObject::Object { message: Some(message) } | ApiErrorObject::Text(message) => message.clone(),
            ApiErrorObject::Problems(problems) => problems.iter().map(|p| p.msg.as_str()).collect::<Vec<_>>().join("; "),
            ApiErrorObject::Object { message: None } => "the server reported an error".to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct StreamChunk {
    #[serde(default, deserialize_with = "null_as_default")]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    usage: Option<ReportedUsage>,
    #[serde(default)]
    error: Option<ApiErrorObject>,
}

#[derive(Deserialize)]
struct ReportedUsage {
    #[serde(default)]
    prompt_tokens: i64,
    #[serde(default)]
    completion_tokens: i64,
}

#[derive(Deserialize)]
struct StreamChoice {
    #[serde(default, deserialize_with = "null_as_default")]
    delta: Delta,
}

/// What one chunk adds to the answer, in the OpenAI shape (the embedded model's parser writes
/// the same).
#[derive(Default, Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub(crate) content: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
pub(crate) struct ToolCallDelta {
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
pub(crate) struct ToolCallAccumulator {
    calls: BTreeMap<usize, ToolCall>,
}

impl ToolCallAccumulator {
    pub(crate) fn add(&mut self, delta: ToolCallDelta) {
        let index = delta.index.unwrap_or_else(|| self.calls.keys().next_back().copied().unwrap_or(0));
        let call = self.calls.entry(index).or_insert_with(|| ToolCall { id: String::new(), name: String::new(), arguments: String::new() });
        if let Some(id) = delta.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(function) = delta.function {
            // OpenAI names a call once; llama-cpp-python repeats the full name in every delta. A
            // name that starts with the name so far replaces it (a repeat is the same name); any
            // other fragment is appended.
            if let Some(name) = function.name.filter(|n| !n.is_empty()) {
                if name.starts_with(call.name.as_str()) {
                    call.name = name;
                } else {
                    call.name.push_str(&name);
                }
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    pub(crate) fn finish(self) -> Vec<ToolCall> {
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

    /// Fuzz target: any bytes a model server streams, cut into chunks anywhere, are framed into
    /// server-sent events and read as chunks, tool-call deltas and errors without a panic; the
    /// assembled calls all have a name and an id.
    #[test]
    fn fuzz_any_model_stream() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        bolero::check!().with_type::<(Vec<u8>, Vec<u8>)>().for_each(|(stream, cuts)| {
            let mut pieces = Vec::new();
            let mut rest = stream.as_slice();
            for cut in cuts {
                let at = usize::from(*cut).min(rest.len());
                let (piece, tail) = rest.split_at(at);
                pieces.push(Ok::<_, std::convert::Infallible>(piece.to_vec()));
                rest = tail;
            }
            pieces.push(Ok(rest.to_vec()));
            let mut calls = ToolCallAccumulator::default();
            runtime.block_on(async {
                let mut events = std::pin::pin!(server_sent_events(futures_util::stream::iter(pieces)));
                while let Some(Ok(event)) = events.next().await {
                    if let Ok(chunk) = serde_json::from_str::<StreamChunk>(&event.data) {
                        let _ = chunk.error.map(|e| e.summary());
                        chunk.choices.into_iter().flat_map(|c| c.delta.tool_calls).for_each(|delta| calls.add(delta));
                    }
                }
            });
            assert!(calls.finish().iter().all(|call| !call.name.is_empty() && !call.id.is_empty()));
        });
    }

    /// A stream may start with a byte-order mark (the standard says to skip one); the parser
    /// underneath panicked on one (found by the fuzz target above).
    #[tokio::test]
    async fn a_byte_order_mark_at_the_start_is_skipped_however_it_is_split() {
        let read = |pieces: Vec<&'static [u8]>| async move {
            let stream = futures_util::stream::iter(pieces.into_iter().map(Ok::<_, std::convert::Infallible>));
            server_sent_events(stream).filter_map(|event| async move { event.ok().map(|e| e.data) }).collect::<Vec<_>>().await
        };
        let bom = "\u{feff}".as_bytes();
        assert_eq!(read(vec![bom, b"data: a\n\n"]).await, ["a"]);
        assert_eq!(read(vec![&bom[..1], &bom[1..2], b"", &bom[2..], b"data: a\n\ndata: b\n\n"]).await, ["a", "b"]);
        assert_eq!(read(vec![b"data: a\n\n"]).await, ["a"]);
        assert_eq!(read(vec![bom, b""]).await, Vec::<String>::new());
        // A second mark is content, not a reason to panic.
        assert!(read(vec![bom, bom, b"data: a\n\n"]).await.len() <= 1);
        assert_eq!(read(vec![&bom[..2], b"data: a\n\n"]).await.len(), 0, "a broken mark is no event");
    }

    fn accumulate(deltas: &[&str]) -> Vec<ToolCall> {
        let mut acc = ToolCallAccumulator::default();
        for d in deltas {
            acc.add(serde_json::from_str(d).unwrap());
        }
        acc.finish()
    }

    #[test]
    fn error_answers_show_only_the_apis_own_message() {
        assert_eq!(reason_from_body(br#"{"error":{"message":"Invalid API key\nprovided","type":"auth"}}"#), "Invalid API key provided");
        assert_eq!(reason_from_body(br#"{"error":"model not found"}"#), "model not found");
        assert_eq!(reason_from_body(br#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#), "Invalid API key");
        assert_eq!(reason_from_body(br#"{"detail":[{"loc":["body","text"],"msg":"field required"}]}"#), "field required");
        assert_eq!(
            reason_from_body(br#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"x"}"#),
            "Invalid credentials."
        );
        let page = b"<html><body>internal admin console: db password hunter2</body></html>";
        let shown = reason_from_body(page);
        assert!(!shown.contains("hunter2") && !shown.contains("admin"), "{shown}");
        assert_eq!(shown, format!("the answer is not an API error ({} bytes, not shown)", page.len()));
        assert_eq!(reason_from_body(b"  "), "no reason given");
    }

    #[test]
    fn tool_calls_assemble_across_deltas_and_indexes() {
        let calls = accumulate(&[
            r#"{"index":0,"id":"call_a","function":{"name":"endConv","arguments":""}}"#,
            r#"{"index":1,"id":"call_b","function":{"name":"switchLanguage","arguments":"{\"lang"}}"#,
            r#"{"index":0,"function":{"name":"ersation","arguments":"{\"summary\":"}}"#,
            r#"{"index":0,"function":{"arguments":"\"done\"}"}}"#,
            r#"{"index":1,"function":{"arguments":"uage\":\"fr-FR\"}"}}"#,
        ]);
        assert_eq!(calls[0], ToolCall { id: "call_a".into(), name: "endConversation".into(), arguments: r#"{"summary":"done"}"#.into() });
        assert_eq!(calls[1].arguments, r#"{"language":"fr-FR"}"#);
    }

    #[test]
    fn a_name_repeated_in_every_delta_is_one_name() {
        // llama-cpp-python's style: id, type and the full name on every delta, nulls elsewhere.
        let calls = accumulate(&[
            r#"{"index":0,"id":"call_x","type":"function","function":{"name":"endConversation","arguments":""}}"#,
            r#"{"index":0,"id":"call_x","type":"function","function":{"name":"endConversation","arguments":"{\"summary\": "}}"#,
            r#"{"index":0,"id":"call_x","type":"function","function":{"name":"endConversation","arguments":"\"Booked\"}"}}"#,
            r#"{"index":null,"id":null,"function":{"name":null,"arguments":null}}"#,
        ]);
        assert_eq!(calls, [ToolCall { id: "call_x".into(), name: "endConversation".into(), arguments: r#"{"summary": "Booked"}"#.into() }]);
    }

    #[test]
    fn explicit_nulls_never_drop_a_chunk() {
        for (data, text) in [
            (
                r#"{"choices":[{"index":0,"delta":{"content":"Hi","tool_calls":null,"function_call":null,"role":null},"finish_reason":null,"logprobs":null}]}"#,
                Some("Hi"),
            ),
            (r#"{"choices":[{"delta":null}]}"#, None),
            (r#"{"choices":null,"usage":{"prompt_tokens":3}}"#, None),
            (r#"{"choices":[{"delta":{"content":null,"tool_calls":[{"index":0,"function":null}]}}]}"#, None),
        ] {
            let chunk: StreamChunk = serde_json::from_str(data).unwrap_or_else(|e| panic!("{data}: {e}"));
            let content = chunk.choices.into_iter().next().and_then(|c| c.delta.content);
            assert_eq!(content.as_deref(), text, "{data}");
        }
        let failed: StreamChunk = serde_json::from_str(r#"{"error":{"message":"context length exceeded","code":400}}"#).unwrap();
        assert_eq!(failed.error.unwrap().summary(), "context length exceeded");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(LlmError::Refused { status: 503, reason: String::new() }.is_transient());
        assert!(LlmError::Refused { status: 429, reason: String::new() }.is_transient());
        assert!(LlmError::Unreachable("refused".into()).is_transient());
        assert!(!LlmError::Refused { status: 400, reason: String::new() }.is_transient());
        assert!(!LlmError::Refused { status: 401, reason: String::new() }.is_transient());
        let refused = Egress::new(Default::default()).client_for(&url::Url::parse("http://10.0.0.1/v1").unwrap()).unwrap_err();
        assert!(!LlmError::NotAllowed(refused).is_transient());
    }

    #[test]
    fn messages_serialise_in_the_api_shape() {
        let m = ChatMessage::Assistant {
            content: String::new(),
            tool_calls: vec![ToolCall { id: "c1".into(), name: "endConversation".into(), arguments: "{}".into() }],
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({ "role": "assistant", "content": "", "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "endConversation", "arguments": "{}" } }] })
        );
        assert_eq!(serde_json::to_value(ChatMessage::Tool { tool_call_id: "c1".into(), content: "ok".into() }).unwrap()["role"], "tool");
    }
}
