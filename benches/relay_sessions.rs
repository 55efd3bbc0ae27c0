//! Density of ConversationRelay calls, measured as an operator would see it: the Switchboard
//! server, the stub model and the load generator run as three processes (this benchmark runs
//! itself again in the `model` and `server` roles), so the server's figures, read from
//! `/proc/<pid>`, are its own.
//!
//! For each N: N relay sessions are opened (signed voice webhook, WebSocket, `setup`), left idle,
//! then every caller speaks three times at random moments over a window sized for about 460
//! turns a second; the model answers each prompt with a fixed first-token delay. Printed: the
//! latency the server adds (prompt in → first token out, minus the model's delay) at p50 and p99,
//! the server's CPU time per session opened, per second of an idle session, per turn (read
//! before anyone hangs up) and per call ended (the callers then hang up together and the server
//! finalises each call), its memory per idle session, and whether all N sessions were held.
//!
//! `cargo bench --bench relay_sessions` (`SESSIONS=500,2000,5000` by default; about four file
//! descriptors per session).

use std::time::{Duration, Instant};

mod support;

use axum::response::IntoResponse;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use support::{Socket, answer_call, runtime, spawn_role, usage};

/// The stub model's time to first token.
const MODEL_DELAY: Duration = Duration::from_millis(200);
/// How many times each caller speaks.
const TURNS_PER_CALL: usize = 3;
/// How long the open sessions are watched while nobody speaks.
const IDLE: Duration = Duration::from_secs(5);
/// The turn rate the window is sized for.
const TURNS_PER_SECOND: f64 = 460.0;

fn main() {
    match std::env::var(support::ROLE).as_deref() {
        Ok("model") => runtime().block_on(serve_model()),
        Ok("server") => runtime().block_on(serve_switchboard()),
        _ => runtime().block_on(generate_load()),
    }
}

/// Role `model`: a stand-in OpenAI-compatible model that waits `MODEL_DELAY`, then streams a
/// two-token answer. Prints its URL.
async fn serve_model() {
    async fn complete() -> impl IntoResponse {
        support::streamed_answer(&["Sure, ", "done."], MODEL_DELAY)
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("http://{}/v1", listener.local_addr().unwrap());
    axum::serve(listener, axum::Router::new().route("/v1/chat/completions", axum::routing::post(complete))).await.unwrap();
}

/// Role `server`: Switchboard on SQLite with one number whose agent uses the model at
/// `MODEL_URL`. Prints its base URL and the Twilio account, then serves until killed.
async fn serve_switchboard() {
    let bench = support::serve(std::env::var("MODEL_URL").ok(), |_| {}).await;
    println!("{} {}", bench.base, bench.account);
    std::future::pending::<()>().await;
}

async fn open_session(http: &reqwest::Client, base: &str, account: &str, call: u64) -> Socket {
    let mut socket = answer_call(http, base, account, call, "relay").await;
    socket.send(Message::Text(json!({ "type": "setup", "callSid": format!("CA{call:032x}") }).to_string().into())).await.unwrap();
    socket
}

/// One caller: speaks at each of `moments` (from `start`), and times each answer's first token.
/// The socket is handed back still open: hanging up is measured on its own.
async fn converse(mut socket: Socket, start: Instant, moments: Vec<Duration>) -> (Socket, Vec<Duration>) {
    let mut waits = Vec::with_capacity(moments.len());
    for moment in moments {
        tokio::time::sleep_until((start + moment).into()).await;
        let prompt = json!({ "type": "prompt", "voicePrompt": "Hello, can you help me?", "lang": "en-US", "last": true });
        let sent = Instant::now();
        socket.send(Message::Text(prompt.to_string().into())).await.unwrap();
        let mut first = None;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    first.get_or_insert_with(|| sent.elapsed());
                    let message: Value = serde_json::from_str(&text).unwrap();
                    if message["last"] == true {
                        break;
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("the session closed: {other:?}"),
            }
        }
        waits.push(first.unwrap());
    }
    (socket, waits)
}

/// A small deterministic generator for the callers' moments.
fn moments(seed: u64, window: Duration) -> Vec<Duration> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out: Vec<Duration> = (0..TURNS_PER_CALL).map(|_| window.mul_f64((next() % 10_000) as f64 / 10_000.0)).collect();
    out.sort();
    out
}

async fn generate_load() {
    let sizes: Vec<usize> =
        std::env::var("SESSIONS").unwrap_or_else(|_| "500,2000,5000".into()).split(',').filter_map(|n| n.trim().parse().ok()).collect();
    let (mut model, model_url) = spawn_role("model", &[]).await;
    let (mut server, ready) = spawn_role("server", &[("MODEL_URL", &model_url)]).await;
    let (base, account) = ready.split_once(' ').map(|(b, a)| (b.to_owned(), a.to_owned())).unwrap();
    let pid = server.id();
    let http = reqwest::Client::new();
    let mut call = 0u64;
    for sessions in sizes {
        let (cpu_before, rss_before) = usage(pid);
        let mut sockets = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            call += 1;
            sockets.push(open_session(&http, &base, &account, call).await);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu_open, rss_open) = usage(pid);
        // What open sessions cost while nobody speaks (timers, heartbeats).
        tokio::time::sleep(IDLE).await;
        let (cpu_idle, _) = usage(pid);
        let window = Duration::from_secs_f64((sessions * TURNS_PER_CALL) as f64 / TURNS_PER_SECOND);
        let start = Instant::now() + Duration::from_millis(200);
        let tasks: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(i, socket)| tokio::spawn(converse(socket, start, moments(call + i as u64, window))))
            .collect();
        let mut added = Vec::with_capacity(sessions * TURNS_PER_CALL);
        let mut open = Vec::with_capacity(sessions);
        for task in tasks {
            if let Ok((socket, waits)) = task.await {
                open.push(socket);
                added.extend(waits.into_iter().map(|w| w.saturating_sub(MODEL_DELAY)));
            }
        }
        let held = open.len();
        // Let the last answers' writes land, then read the turns' CPU before anyone hangs up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (cpu_turns, _) = usage(pid);
        // The callers hang up; the server finalises each call (record, usage, cost, event).
        drop(open);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (cpu_ended, _) = usage(pid);
        added.sort();
        let at = |q: f64| added[((added.len() as f64 * q) as usize).min(added.len() - 1)].as_secs_f64() * 1000.0;
        println!(
            "{sessions} sessions ({held} held through {} turns over {:.1} s): server-added latency to first token p50 {:.1} ms, p99 {:.1} ms; \
             server CPU {:.2} ms per session opened, {:.3} ms per idle session-second, {:.3} ms per turn, {:.2} ms per call ended; \
             server memory {:.1} KiB per idle session",
            added.len(),
            window.as_secs_f64(),
            at(0.50),
            at(0.99),
            (cpu_open - cpu_before) * 1000.0 / sessions as f64,
            (cpu_idle - cpu_open) * 1000.0 / sessions as f64 / IDLE.as_secs_f64(),
            (cpu_turns - cpu_idle) * 1000.0 / added.len() as f64,
            (cpu_ended - cpu_turns) * 1000.0 / held as f64,
            rss_open.saturating_sub(rss_before) as f64 / sessions as f64,
        );
    }
    let _ = server.kill();
    let _ = model.kill();
}
