//! The embedded language model on this machine, measured as an operator deciding whether it is
//! enough needs it. The engine is sized as the server sizes it (one generation per two cores, on
//! all of them) and asked what a phone agent asks: its system prompt, the conversation so far,
//! the endConversation tool.
//!
//! - **One conversation**: the first answer with nothing read ahead (the whole prompt read
//!   cold), the first answer after the session's warm-up (the prompt read while the greeting
//!   plays), then six turns: first token p50/p95, tokens per second of the answers, prompt
//!   tokens read per second.
//! - **Concurrent conversations** (`CONVERSATIONS=1,2,3,4` by default): each warms up, then
//!   says its six lines, each two seconds (the caller speaking) after the last answer ended.
//!   Printed per N: the first turn's first token (median over the callers: it may wait for the
//!   prompt still being read), the later turns' first token p50/p95, answer tokens per second,
//!   requests that waited for a slot, and whether the later turns' p95 stays under 1 s.
//! - The process's memory (RSS) at the end.
//!
//! `cargo bench --bench embedded_llm` with the model installed (`MODELS=DIR`, by default
//! `target/models/models`, where scripts/test.sh installs it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use switchboard::agent::prompt::{CallContext, system_prompt};
use switchboard::agent::tools;
use switchboard::domain::agent::AgentSpec;
use switchboard::models::catalog::QWEN_FILE;
use switchboard::models::llm::EmbeddedLlm;
use switchboard::providers::llm::{ChatMessage, ChatModel, ChatRequest, LlmEvent};

/// What each caller says, one line a turn.
const LINES: [&str; 6] = [
    "Hi, I'd like to book a table for tonight.",
    "There will be four of us, around seven thirty.",
    "The name is Garcia, G A R C I A.",
    "Do you have anything vegetarian on the menu?",
    "Great. Is there parking nearby?",
    "Perfect, thank you so much.",
];
/// The caller speaking between the end of an answer and their next line.
const CALLER_SPEAKS: Duration = Duration::from_secs(2);
/// The goal an operator sizes for.
const FIRST_TOKEN_GOAL: Duration = Duration::from_secs(1);

fn main() {
    let models = std::env::var("MODELS").map_or_else(|_| PathBuf::from("target/models/models"), PathBuf::from);
    let file = models.join(QWEN_FILE);
    assert!(file.exists(), "{} is missing: install the models (`switchboard models install`) or set MODELS", file.display());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let slots = (cores / 2).max(1);
    let loading = Instant::now();
    let engine = Arc::new(EmbeddedLlm::load(&file, slots, cores).expect("the model loads"));
    println!("embedded model: {} ({slots} slot(s), {cores} threads), loaded in {:.1} s", file.display(), loading.elapsed().as_secs_f64());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        one_conversation(&engine).await;
        let counts: Vec<usize> = std::env::var("CONVERSATIONS")
            .unwrap_or_else(|_| "1,2,3,4".into())
            .split(',')
            .map(|n| n.trim().parse().expect("CONVERSATIONS lists numbers"))
            .collect();
        println!();
        println!(
            "{:>13} {:>12} {:>10} {:>10} {:>12} {:>8}  later turns' p95 < {} ms",
            "conversations",
            "1st turn ms",
            "p50 ms",
            "p95 ms",
            "answer tok/s",
            "waited",
            FIRST_TOKEN_GOAL.as_millis()
        );
        for n in counts {
            concurrent(&engine, n).await;
        }
    });
    println!();
    println!("memory: {} MB resident", resident_mb());
}

/// A bistro agent's conversation up to `turns` caller lines, with the answers it gave.
fn conversation(caller: usize, began: chrono::DateTime<chrono::Utc>, answers: &[String]) -> ChatRequest {
    let mut spec = AgentSpec::named("Ava");
    spec.instructions = "You answer the phone for Bella's Bistro, 12 Harbour Street. It opens at 11am and closes at 10pm every day. \
                         Take table bookings: ask for the number of people, the time and a name. The menu has pasta, pizza, salads \
                         and a vegetarian lasagne. There is a public car park behind the restaurant."
        .into();
    let context = CallContext { caller: &format!("+1415555{caller:04}"), now: began, other_languages: &[] };
    let mut messages = vec![
        ChatMessage::System { content: system_prompt(&spec, &context) },
        ChatMessage::Assistant { content: "Hi, this is Ava at Bella's Bistro. How can I help?".into(), tool_calls: vec![] },
    ];
    for (line, answer) in LINES.iter().zip(answers.iter().map(Some).chain(std::iter::repeat(None))) {
        messages.push(ChatMessage::User { content: (*line).into() });
        match answer {
            Some(answer) => messages.push(ChatMessage::Assistant { content: answer.clone(), tool_calls: vec![] }),
            None => break,
        }
    }
    ChatRequest { model: "embedded".into(), temperature: Some(0.7), messages, tools: tools::offered(&spec, &[]), response_format: None }
}

/// One answer: its text, when its first token came, how many tokens and how long they took.
struct Timed {
    text: String,
    first_token: Duration,
    output_tokens: i64,
    generating: Duration,
    input_tokens: i64,
}

async fn ask(engine: &Arc<EmbeddedLlm>, request: ChatRequest) -> Timed {
    let started = Instant::now();
    let mut stream = engine.stream(request);
    let (mut text, mut first_token, mut usage) = (String::new(), None, None);
    while let Some(event) = stream.next().await {
        match event {
            LlmEvent::Token(token) => {
                first_token.get_or_insert(started.elapsed());
                text.push_str(&token);
            }
            LlmEvent::Usage(reported) => usage = Some(reported),
            LlmEvent::ToolCalls(_) => {
                first_token.get_or_insert(started.elapsed());
            }
            LlmEvent::Done => break,
            LlmEvent::Failed(error) => panic!("the model failed: {error}"),
        }
    }
    let first_token = first_token.unwrap_or(started.elapsed());
    let usage = usage.expect("the engine reports usage");
    Timed { text, first_token, output_tokens: usage.output, generating: started.elapsed() - first_token, input_tokens: usage.input }
}

async fn one_conversation(engine: &Arc<EmbeddedLlm>) {
    let cold = ask(engine, conversation(0, chrono::Utc::now(), &[])).await;
    let prefill = cold.input_tokens as f64 / cold.first_token.as_secs_f64();
    println!(
        "cold first answer: first token {} ms for a {}-token prompt ({prefill:.0} prompt tokens/s)",
        cold.first_token.as_millis(),
        cold.input_tokens
    );
    let (first_tokens, rate) = talk(engine, 1, Duration::ZERO).await;
    println!(
        "after the warm-up, {} turns: first token p50 {} ms, p95 {} ms; answers at {rate:.1} tokens/s",
        first_tokens.len(),
        percentile(&first_tokens, 50).as_millis(),
        percentile(&first_tokens, 95).as_millis()
    );
}

/// A caller's whole conversation, after the session's warm-up: the first-token latencies of
/// its turns, and the answers' tokens per second.
async fn talk(engine: &Arc<EmbeddedLlm>, caller: usize, pause: Duration) -> (Vec<Duration>, f64) {
    let began = chrono::Utc::now();
    engine.warm(conversation(caller, began, &[]));
    // The greeting plays while the prompt is read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut answers, mut first_tokens, mut tokens, mut generating) = (Vec::new(), Vec::new(), 0, Duration::ZERO);
    for _ in LINES {
        let request = conversation(caller, began, &answers);
        let timed = ask(engine, request).await;
        first_tokens.push(timed.first_token);
        tokens += timed.output_tokens;
        generating += timed.generating;
        answers.push(timed.text);
        tokio::time::sleep(pause).await;
    }
    (first_tokens, tokens as f64 / generating.as_secs_f64().max(1e-9))
}

async fn concurrent(engine: &Arc<EmbeddedLlm>, n: usize) {
    let before = engine.stats();
    let callers: Vec<_> = (0..n)
        .map(|caller| {
            let engine = Arc::clone(engine);
            tokio::spawn(async move {
                // Callers ring half a second apart.
                tokio::time::sleep(Duration::from_millis(500) * caller as u32).await;
                talk(&engine, 100 + caller, CALLER_SPEAKS).await
            })
        })
        .collect();
    let (mut first_turns, mut later_turns, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for caller in callers {
        let (latencies, rate) = caller.await.unwrap();
        first_turns.push(latencies[0]);
        later_turns.extend_from_slice(&latencies[1..]);
        rates.push(rate);
    }
    let after = engine.stats();
    let p95 = percentile(&later_turns, 95);
    println!(
        "{n:>13} {:>12} {:>10} {:>10} {:>12.1} {:>8}  {}",
        percentile(&first_turns, 50).as_millis(),
        percentile(&later_turns, 50).as_millis(),
        p95.as_millis(),
        rates.iter().sum::<f64>() / rates.len() as f64,
        after.queued - before.queued,
        if p95 < FIRST_TOKEN_GOAL { "yes" } else { "no" }
    );
}

fn percentile(values: &[Duration], p: usize) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) * p).div_ceil(100)]
}

fn resident_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok());
    kb.unwrap_or(0) / 1024
}
