//! The embedded language model: a small GGUF model that llama.cpp runs inside the server, so an
//! agent answers with no model server at all. It is one more [`ChatModel`]: the agent runtime,
//! the greeting and the classification ask it exactly as they ask an OpenAI-compatible server.
//!
//! - **The model's own formats.** A request's messages and tools, in the OpenAI shape, go
//!   through the model's chat template (its Jinja template, with llama.cpp's tool-calling
//!   support); the answer is read back by the parser for that format, so tool calls come out
//!   as [`LlmEvent::ToolCalls`] and never as text.
//! - **Constrained output.** The grammar the template produces for the tools offered is
//!   enforced while sampling (lazily: from the moment the model starts a tool call), so a small
//!   model cannot produce a malformed call. A `response_format` with a JSON schema (the
//!   classification's) constrains the whole answer to that schema.
//! - **Workers and slots.** A fixed number of generations run at once ([`EmbeddedLlm::load`]'s
//!   `workers`), each on its own thread with its own context, sharing the cores. Each context
//!   keeps [`CONVERSATIONS_PER_WORKER`] conversations (llama.cpp sequences): a slot is one of
//!   them. A request takes the free slot whose conversation shares the longest start with its
//!   prompt, so a call's next turn evaluates only what is new since its last one, even while
//!   other calls use the same worker; requests for one worker take turns. With every slot taken,
//!   a request waits at most [`QUEUE_DEADLINE`], then fails as a timeout (the voice pipeline
//!   says "One moment." while it waits).
//! - **Cancellation.** Dropping the stream's receiver (the caller interrupted, the call ended)
//!   stops the generation at its next token.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{AddBos, ChatTemplateResult, GrammarTriggerType, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::openai::OpenAIChatTemplateParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::ModelError;
use crate::providers::llm::{Answer, ChatModel, ChatRequest, Delta, LlmError, LlmEvent, TokenUsage, ToolCallAccumulator, answer_from};

/// How long a request waits for a free slot before it fails.
pub const QUEUE_DEADLINE: Duration = Duration::from_secs(20);
/// The context each conversation has: the prompt and the answer together.
const CONTEXT_TOKENS: u32 = 4096;
/// Conversations each worker's context keeps.
pub const CONVERSATIONS_PER_WORKER: usize = 4;
/// The longest answer.
const MAX_ANSWER_TOKENS: usize = 1024;
/// Tokens evaluated in one step of a long prompt.
const BATCH_TOKENS: usize = 512;

/// llama.cpp's global state, set up once per process.
fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        LlamaBackend::init().expect("llama.cpp's backend is initialised once, here")
    })
}

/// A model file, loaded once per process however many servers use it (the tests run many).
fn load_model(path: &Path) -> Result<&'static LlamaModel, ModelError> {
    static LOADED: Mutex<Vec<(PathBuf, &'static LlamaModel)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, model)) = loaded.iter().find(|(loaded, _)| loaded == path) {
        return Ok(model);
    }
    let model = LlamaModel::load_from_file(backend(), path, &LlamaModelParams::default())
        .map_err(|e| ModelError::Load { path: path.to_owned(), reason: e.to_string() })?;
    let model: &'static LlamaModel = Box::leak(Box::new(model));
    loaded.push((path.to_owned(), model));
    Ok(model)
}

/// How busy the embedded model is, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Generations at once.
    pub workers: usize,
    /// Conversations kept, and those with a request in progress.
    pub slots: usize,
    pub busy: usize,
    /// Requests waiting for a slot now.
    pub waiting: usize,
    /// Requests that found every slot busy and waited, since start.
    pub queued: u64,
    /// Requests that waited longer than [`QUEUE_DEADLINE`], since start.
    pub timed_out: u64,
    /// Tokens generated since start.
    pub generated_tokens: u64,
    /// Prompt tokens evaluated, and prompt tokens a slot's cache already held, since start.
    pub prompt_tokens_evaluated: u64,
    pub prompt_tokens_reused: u64,
}

impl EngineStats {
    /// The figures in Prometheus' text exposition format, appended to `out`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let figures: [(&str, &str, &str, String); 8] = [
            ("workers", "gauge", "Generations the embedded model runs at once.", self.workers.to_string()),
            ("slots", "gauge", "Conversations the embedded model keeps read.", self.slots.to_string()),
            ("busy", "gauge", "Slots of the embedded model with a request in progress.", self.busy.to_string()),
            ("waiting", "gauge", "Requests waiting for a slot of the embedded model.", self.waiting.to_string()),
            ("queued_total", "counter", "Requests that found every slot of the embedded model busy.", self.queued.to_string()),
            ("timed_out_total", "counter", "Requests that waited too long for a slot of the embedded model.", self.timed_out.to_string()),
            ("generated_tokens_total", "counter", "Tokens the embedded model generated.", self.generated_tokens.to_string()),
            (
                "prompt_tokens_reused_total",
                "counter",
                "Prompt tokens a slot of the embedded model had read already.",
                self.prompt_tokens_reused.to_string(),
            ),
        ];
        for (name, kind, help, value) in figures {
            let _ = write!(
                out,
                "# HELP switchboard_embedded_llm_{name} {help}\n# TYPE switchboard_embedded_llm_{name} {kind}\nswitchboard_embedded_llm_{name} {value}\n"
            );
        }
    }
}

/// A GGUF model served by llama.cpp in this process.
pub struct EmbeddedLlm {
    model: &'static LlamaModel,
    template: LlamaChatTemplate,
    /// One sender per worker's thread.
    workers: Vec<std::sync::mpsc::Sender<Job>>,
    /// The free slots and what their contexts hold.
    free: Arc<Mutex<Vec<FreeSlot>>>,
    slots: Arc<Semaphore>,
    queue_deadline: Duration,
    waiting: AtomicUsize,
    queued: AtomicU64,
    timed_out: AtomicU64,
    counts: Arc<TokenCounts>,
}

/// Tokens counted since start.
#[derive(Default)]
struct TokenCounts {
    generated: AtomicU64,
    evaluated: AtomicU64,
    reused: AtomicU64,
}

/// A slot nobody uses: a worker's conversation, and the tokens its cache holds.
struct FreeSlot {
    worker: usize,
    sequence: i32,
    cached: Vec<LlamaToken>,
}

/// A request for a slot's thread.
struct Job {
    prepared: Prepared,
    sequence: i32,
    cached: Vec<LlamaToken>,
    /// Where the answer goes; none to read the prompt only (a warm-up).
    events: Option<mpsc::Sender<LlmEvent>>,
    /// Given back with the slot when the answer ends.
    permit: OwnedSemaphorePermit,
}

/// A request rendered through the model's template.
struct Prepared {
    template: ChatTemplateResult,
    prompt: Vec<LlamaToken>,
    temperature: f32,
}

impl EmbeddedLlm {
    /// Loads the model at `path` with `workers` generations at once, sharing `threads` cores.
    pub fn load(path: &Path, workers: usize, threads: usize) -> Result<Self, ModelError> {
        let model = load_model(path)?;
        let template =
            model.chat_template(None).map_err(|e| ModelError::Load { path: path.to_owned(), reason: format!("no chat template: {e}") })?;
        let count = workers.max(1);
        let threads_per_worker = i32::try_from((threads / count).max(1)).unwrap_or(1);
        let free = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(TokenCounts::default());
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let (jobs, receiver) = std::sync::mpsc::channel::<Job>();
            let (ready, started) = std::sync::mpsc::channel();
            let (slot_free, counts) = (Arc::clone(&free), Arc::clone(&counts));
            std::thread::Builder::new()
                .name(format!("llm-worker-{index}"))
                .spawn(move || {
                    // Each conversation has CONTEXT_TOKENS of the context's cache.
                    let params = LlamaContextParams::default()
                        .with_n_ctx(NonZeroU32::new(CONTEXT_TOKENS * CONVERSATIONS_PER_WORKER as u32))
                        .with_n_seq_max(CONVERSATIONS_PER_WORKER as u32)
                        .with_n_batch(BATCH_TOKENS as u32)
                        .with_n_threads(threads_per_worker)
                        .with_n_threads_batch(threads_per_worker);
                    let mut context = match model.new_context(backend(), params) {
                        Ok(context) => {
                            let _ = ready.send(Ok(()));
                            context
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e.to_string()));
                            return;
                        }
                    };
                    for job in receiver {
                        let Job { prepared, sequence, cached, events, permit } = job;
                        let run = generate(model, &mut context, &prepared, sequence, cached, events.as_ref());
                        counts.generated.fetch_add(run.generated, Ordering::Relaxed);
                        counts.evaluated.fetch_add(run.evaluated, Ordering::Relaxed);
                        counts.reused.fetch_add(run.reused, Ordering::Relaxed);
                        let slot = FreeSlot { worker: index, sequence, cached: run.held };
                        slot_free.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(slot);
                        drop(permit);
                    }
                })
                .map_err(|e| ModelError::Load { path: path.to_owned(), reason: e.to_string() })?;
            started
                .recv()
                .map_err(|e| e.to_string())
                .and_then(|created| created)
                .map_err(|reason| ModelError::Load { path: path.to_owned(), reason: format!("no context: {reason}") })?;
            let mut free = free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            free.extend((0..CONVERSATIONS_PER_WORKER as i32).map(|sequence| FreeSlot { worker: index, sequence, cached: Vec::new() }));
            workers.push(jobs);
        }
        Ok(Self {
            model,
            template,
            workers,
            free,
            slots: Arc::new(Semaphore::new(count * CONVERSATIONS_PER_WORKER)),
            queue_deadline: QUEUE_DEADLINE,
            waiting: AtomicUsize::new(0),
            queued: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            counts,
        })
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            workers: self.workers.len(),
            slots: self.workers.len() * CONVERSATIONS_PER_WORKER,
            busy: self.workers.len() * CONVERSATIONS_PER_WORKER - self.slots.available_permits(),
            waiting: self.waiting.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            generated_tokens: self.counts.generated.load(Ordering::Relaxed),
            prompt_tokens_evaluated: self.counts.evaluated.load(Ordering::Relaxed),
            prompt_tokens_reused: self.counts.reused.load(Ordering::Relaxed),
        }
    }

    /// The request as the model reads it: its template applied, tokenised.
    fn prepare(&self, request: &ChatRequest) -> Result<Prepared, LlmError> {
        let refused = |reason: String| LlmError::Refused { status: 400, reason };
        let messages = serde_json::to_string(&request.messages).map_err(|e| refused(e.to_string()))?;
        let tools = match request.tools.is_empty() {
            true => None,
            false => Some(serde_json::to_string(&request.tools).map_err(|e| refused(e.to_string()))?),
        };
        let schema = request.response_format.as_ref().and_then(answer_schema).map(|schema| schema.to_string());
        let params = OpenAIChatTemplateParams {
            messages_json: &messages,
            tools_json: tools.as_deref(),
            tool_choice: None,
            json_schema: schema.as_deref(),
            grammar: None,
            reasoning_format: None,
            chat_template_kwargs: None,
            add_generation_prompt: true,
            use_jinja: true,
            parallel_tool_calls: false,
            enable_thinking: false,
            add_bos: false,
            add_eos: false,
            parse_tool_calls: tools.is_some(),
        };
        let template = self
            .model
            .apply_chat_template_oaicompat(&self.template, &params)
            .map_err(|e| refused(format!("the chat template could not be applied: {e}")))?;
        let prompt = self
            .model
            .str_to_token(&template.prompt, AddBos::Always)
            .map_err(|e| refused(format!("the prompt could not be tokenised: {e}")))?;
        let room = CONTEXT_TOKENS as usize - MAX_ANSWER_TOKENS.min(CONTEXT_TOKENS as usize / 4);
        if prompt.len() > room {
            return Err(refused(format!("the conversation takes {} tokens; the embedded model reads {room} at most", prompt.len())));
        }
        Ok(Prepared { template, prompt, temperature: request.temperature.unwrap_or(0.7) as f32 })
    }

    /// Reads `conversation` into a free slot, if one is free now (a warm-up never waits).
    async fn warm(self: Arc<Self>, conversation: ChatRequest) {
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else { return };
        let engine = Arc::clone(&self);
        match tokio::task::spawn_blocking(move || engine.prepare(&conversation)).await {
            Ok(Ok(prepared)) => self.hand_to_slot(prepared, None, permit).await,
            Ok(Err(error)) => tracing::debug!(%error, "the conversation could not be read ahead"),
            Err(e) => tracing::debug!(error = %e, "the conversation could not be read ahead"),
        }
    }

    /// Waits for a free slot and gives the request to it.
    async fn run(self: Arc<Self>, request: ChatRequest, events: mpsc::Sender<LlmEvent>) {
        if self.slots.available_permits() == 0 {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = tokio::time::timeout(self.queue_deadline, Arc::clone(&self.slots).acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let Ok(Ok(permit)) = permit else {
            self.timed_out.fetch_add(1, Ordering::Relaxed);
            let _ = events.send(LlmEvent::Failed(LlmError::Timeout("every slot of the embedded model stayed busy"))).await;
            return;
        };
        let engine = Arc::clone(&self);
        let prepared = match tokio::task::spawn_blocking(move || engine.prepare(&request)).await {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(error)) => {
                let _ = events.send(LlmEvent::Failed(error)).await;
                return;
            }
            Err(e) => {
                let _ = events.send(LlmEvent::Failed(LlmError::Broken(e.to_string()))).await;
                return;
            }
        };
        self.hand_to_slot(prepared, Some(events), permit).await;
    }

    /// Gives a prepared request to the free slot whose cache shares the longest start with it
    /// (of those that share nothing, the one whose conversation was read longest ago).
    async fn hand_to_slot(&self, prepared: Prepared, events: Option<mpsc::Sender<LlmEvent>>, permit: OwnedSemaphorePermit) {
        let FreeSlot { worker, sequence, cached } = {
            let mut free = self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Slots come back to the end of the list: the first of equals is the oldest.
            let best = (0..free.len())
                .rev()
                .max_by_key(|&i| shared_start(&free[i].cached, &prepared.prompt))
                .expect("a permit is held, so a slot is free");
            free.remove(best)
        };
        let job = Job { prepared, sequence, cached, events, permit };
        if let Err(std::sync::mpsc::SendError(job)) = self.workers[worker].send(job)
            && let Some(events) = job.events
        {
            let _ = events.send(LlmEvent::Failed(LlmError::Broken("the embedded model's slot stopped".into()))).await;
        }
    }
}

impl ChatModel for Arc<EmbeddedLlm> {
    fn stream(&self, request: ChatRequest) -> Answer {
        let (events, receiver) = mpsc::channel(64);
        tokio::spawn(Arc::clone(self).run(request, events));
        answer_from(receiver)
    }

    fn warm(&self, conversation: ChatRequest) {
        tokio::spawn(Arc::clone(self).warm(conversation));
    }
}

/// The JSON schema an OpenAI `response_format` asks for: `json_schema`'s schema, or any object
/// for `json_object`.
fn answer_schema(format: &Value) -> Option<Value> {
    match format.get("type").and_then(Value::as_str)? {
        "json_schema" => format.pointer("/json_schema/schema").cloned(),
        "json_object" => Some(serde_json::json!({ "type": "object" })),
        _ => None,
    }
}

fn shared_start(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(a, b)| a == b).count()
}

/// Runs one request on a slot's context, whose cache holds `cached`; returns what the cache
/// holds afterwards and what was counted. Every outcome reaches `events`.
fn generate<'m>(
    model: &'m LlamaModel,
    context: &mut LlamaContext<'_>,
    prepared: &Prepared,
    sequence: i32,
    cached: Vec<LlamaToken>,
    events: Option<&mpsc::Sender<LlmEvent>>,
) -> Generation<'m> {
    let mut run = Generation { model, sequence, held: cached, logits_at: 0, generated: 0, evaluated: 0, reused: 0 };
    if events.is_some_and(mpsc::Sender::is_closed) {
        // Nobody waits for this answer any more (the caller spoke again while it waited its turn).
        return run;
    }
    let outcome = run.read_prompt(context, &prepared.prompt).and_then(|()| match events {
        Some(events) => run.answer(context, prepared, events),
        None => Ok(()),
    });
    if let Err(Stop::Failed(reason)) = outcome {
        // What the conversation's cache holds after a failure is unknown: it starts afresh.
        let _ = context.clear_kv_cache_seq(Some(sequence as u32), None, None);
        run.held.clear();
        match events {
            Some(events) => drop(events.blocking_send(LlmEvent::Failed(LlmError::Broken(reason)))),
            None => tracing::debug!(%reason, "the conversation could not be read ahead"),
        }
    }
    run
}

/// Why an answer stopped early.
enum Stop {
    /// Nobody listens any more.
    Cancelled,
    Failed(String),
}

/// One answer in progress: the tokens the context's cache holds, the tokens generated, and the
/// prompt's tokens evaluated and reused from the cache.
struct Generation<'m> {
    model: &'m LlamaModel,
    /// The conversation's sequence in the context.
    sequence: i32,
    held: Vec<LlamaToken>,
    /// Where the last evaluated batch put the logits the next token is chosen from.
    logits_at: i32,
    generated: u64,
    evaluated: u64,
    reused: u64,
}

impl Generation<'_> {
    /// Evaluates what the conversation's cache lacks of the prompt (the prompt's last token at
    /// least: its logits give the first answer token).
    fn read_prompt(&mut self, context: &mut LlamaContext<'_>, prompt: &[LlamaToken]) -> Result<(), Stop> {
        let reused = shared_start(&self.held, prompt).min(prompt.len().saturating_sub(1));
        context.clear_kv_cache_seq(Some(self.sequence as u32), Some(reused as u32), None).map_err(|e| Stop::Failed(e.to_string()))?;
        self.held = prompt[..reused].to_vec();
        (self.reused, self.evaluated) = (reused as u64, (prompt.len() - reused) as u64);
        let mut batch = LlamaBatch::new(BATCH_TOKENS, 1);
        for chunk in prompt[reused..].chunks(BATCH_TOKENS) {
            self.logits_at = chunk.len() as i32 - 1;
            batch.clear();
            for (offset, &token) in chunk.iter().enumerate() {
                let position = self.held.len() + offset;
                let last = position == prompt.len() - 1;
                batch.add(token, position as i32, &[self.sequence], last).map_err(|e| Stop::Failed(e.to_string()))?;
            }
            context.decode(&mut batch).map_err(|e| Stop::Failed(format!("the prompt could not be evaluated: {e}")))?;
            self.held.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Samples the answer after [`Self::read_prompt`] and streams it to `events`.
    fn answer(&mut self, context: &mut LlamaContext<'_>, prepared: &Prepared, events: &mpsc::Sender<LlmEvent>) -> Result<(), Stop> {
        let mut batch = LlamaBatch::new(1, 1);
        let mut sampler = sampler(self.model, prepared).map_err(Stop::Failed)?;
        let mut reader = AnswerReader::new(&prepared.template).map_err(Stop::Failed)?;
        let mut undecoded = Vec::new();
        while (self.generated as usize) < MAX_ANSWER_TOKENS {
            let mut candidates = context.token_data_array_ith(self.logits_at);
            candidates.apply_sampler(&sampler);
            let token = candidates.selected_token().ok_or_else(|| Stop::Failed("no token could be chosen".into()))?;
            self.generated += 1;
            // A grammar that cannot take the token (llama.cpp's grammar throws when a token
            // runs past a finished tool call) ends the answer, as the end of the text does.
            if self.model.is_eog_token(token) || sampler.try_accept(token).is_err() {
                break;
            }
            undecoded.extend(piece(self.model, token));
            let text = take_utf8(&mut undecoded);
            for words in reader.read(&text, true).map_err(Stop::Failed)? {
                events.blocking_send(LlmEvent::Token(words)).map_err(|_| Stop::Cancelled)?;
            }
            if reader.stopped {
                break;
            }
            batch.clear();
            batch.add(token, self.held.len() as i32, &[self.sequence], true).map_err(|e| Stop::Failed(e.to_string()))?;
            context.decode(&mut batch).map_err(|e| Stop::Failed(format!("the answer could not be evaluated: {e}")))?;
            self.held.push(token);
            self.logits_at = 0;
        }
        let rest = String::from_utf8_lossy(&undecoded).into_owned();
        for words in reader.read(&rest, false).map_err(Stop::Failed)? {
            events.blocking_send(LlmEvent::Token(words)).map_err(|_| Stop::Cancelled)?;
        }
        let calls = reader.calls.finish();
        if !calls.is_empty() {
            events.blocking_send(LlmEvent::ToolCalls(calls)).map_err(|_| Stop::Cancelled)?;
        }
        let usage = TokenUsage { input: prepared.prompt.len() as i64, output: self.generated as i64 };
        events.blocking_send(LlmEvent::Usage(usage)).map_err(|_| Stop::Cancelled)?;
        events.blocking_send(LlmEvent::Done).map_err(|_| Stop::Cancelled)
    }
}

/// Sampling for the request: the grammar of its tools or answer schema (from the first tool-call
/// marker on, when lazy), then greedy at temperature 0 or the usual top-k, top-p and temperature.
fn sampler(model: &LlamaModel, prepared: &Prepared) -> Result<LlamaSampler, String> {
    let mut chain = Vec::new();
    if let Some(grammar) = &prepared.template.grammar {
        let constrained = if prepared.template.grammar_lazy {
            let (patterns, tokens) = lazy_triggers(&prepared.template);
            LlamaSampler::grammar_lazy_patterns(model, grammar, "root", &patterns, &tokens)
        } else {
            LlamaSampler::grammar(model, grammar, "root")
        };
        chain.push(constrained.map_err(|e| format!("the answer's grammar could not be used: {e}"))?);
    }
    if prepared.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        chain.extend([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(0.95, 1),
            LlamaSampler::temp(prepared.temperature),
            LlamaSampler::dist(rand_seed()),
        ]);
    }
    Ok(LlamaSampler::chain_simple(chain))
}

/// The template's triggers as llama.cpp's lazy grammar reads them: words and patterns found
/// anywhere in the answer make one pattern; a full pattern must match the whole answer so far.
fn lazy_triggers(template: &ChatTemplateResult) -> (Vec<String>, Vec<LlamaToken>) {
    let (mut patterns, mut anywhere, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    for trigger in &template.grammar_triggers {
        match trigger.trigger_type {
            GrammarTriggerType::Token => tokens.extend(trigger.token),
            GrammarTriggerType::Word => anywhere.push(regex_escape(&trigger.value)),
            GrammarTriggerType::Pattern => anywhere.push(trigger.value.clone()),
            GrammarTriggerType::PatternFull => {
                let value = &trigger.value;
                let start = if value.starts_with('^') { "" } else { "^" };
                let end = if value.ends_with('$') { "" } else { "$" };
                patterns.push(format!("{start}{value}{end}"));
            }
        }
    }
    if !anywhere.is_empty() {
        patterns.push(format!("^[\\s\\S]*?({})[\\s\\S]*", anywhere.join("|")));
    }
    (patterns, tokens)
}

fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if ".^$|()*+?[]{}\\".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn rand_seed() -> u32 {
    let mut seed = [0u8; 4];
    getrandom::getrandom(&mut seed).map_or(0, |()| u32::from_le_bytes(seed))
}

/// The token's text, special tokens included (the parser reads the tool-call markers).
fn piece(model: &LlamaModel, token: LlamaToken) -> Vec<u8> {
    match model.token_to_piece_bytes(token, 32, true, None) {
        Err(llama_cpp_2::TokenToStringError::InsufficientBufferSpace(needed)) => {
            model.token_to_piece_bytes(token, needed.unsigned_abs() as usize, true, None).unwrap_or_default()
        }
        bytes => bytes.unwrap_or_default(),
    }
}

/// The complete characters at the start of `bytes`, taken out; a character cut between two
/// tokens stays for the next.
fn take_utf8(bytes: &mut Vec<u8>) -> String {
    let complete = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        // Not UTF-8 at all: passed on, replaced.
        Err(_) => bytes.len(),
    };
    let text = String::from_utf8_lossy(&bytes[..complete]).into_owned();
    bytes.drain(..complete);
    text
}

/// Reads the answer as the model's chat format writes it: the words meant for the caller, and
/// the tool calls, assembled.
struct AnswerReader {
    parser: llama_cpp_2::openai::ChatParseStateOaicompat,
    /// The stop strings of the template, and the answer so far (to find them).
    stops: Vec<String>,
    text: String,
    stopped: bool,
    /// The parser has read the whole answer.
    read_all: bool,
    calls: ToolCallAccumulator,
}

impl AnswerReader {
    fn new(template: &ChatTemplateResult) -> Result<Self, String> {
        let parser = template.streaming_state_oaicompat().map_err(|e| format!("the answer's parser could not start: {e}"))?;
        Ok(Self {
            parser,
            stops: template.additional_stops.clone(),
            text: String::new(),
            stopped: false,
            read_all: false,
            calls: ToolCallAccumulator::default(),
        })
    }

    /// Reads the next text of the answer (`partial` until the last); returns the words for the
    /// caller it completes.
    fn read(&mut self, added: &str, partial: bool) -> Result<Vec<String>, String> {
        if self.read_all {
            return Ok(Vec::new());
        }
        let mut added = added;
        self.text.push_str(added);
        if let Some(at) = self.stops.iter().filter_map(|stop| self.text.find(stop.as_str())).min() {
            // Only what comes before the stop string is read.
            let keep = added.len().saturating_sub(self.text.len() - at);
            added = &added[..keep];
            self.stopped = true;
        }
        self.read_all = !partial || self.stopped;
        let deltas = self.parser.update(added, !self.read_all).map_err(|e| format!("the answer could not be read: {e}"))?;
        let mut words = Vec::new();
        for delta in deltas {
            let delta: Delta = serde_json::from_str(&delta).map_err(|e| format!("the answer's parser wrote {delta}: {e}"))?;
            words.extend(delta.content.filter(|text| !text.is_empty()));
            for call in delta.tool_calls {
                self.calls.add(call);
            }
        }
        Ok(words)
    }
}
