//! How much the server adds to an agent's response time, and what a live call costs in memory.
//! Opens N concurrent ConversationRelay sessions against the real server (SQLite), each agent
//! backed by a local OpenAI-compatible stub whose first token comes after a fixed delay. Every
//! caller says one line at the same moment; we time prompt in → first token out and subtract the
//! stub's own delay.
//!
//! `cargo bench --bench relay_sessions` (set `SESSIONS=100,1000` to choose N; needs about
//! 4 file descriptors per session).

use std::time::{Duration, Instant};

mod support;

use axum::body::Body;
use axum::response::IntoResponse;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::telephony::twilio::signature;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use support::{TOKEN, incoming_call};

/// The stub model's time to first token.
const MODEL_DELAY: Duration = Duration::from_millis(200);

/// A stand-in model: waits `MODEL_DELAY`, then streams a two-token answer.
async fn stub_model() -> String {
    async fn complete() -> impl IntoResponse {
        let frames = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"Sure, \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"done.\"}}]}\n\n",
            "data: [DONE]\n\n",
        ];
        let stream = futures_util::stream::unfold(0usize, move |i| async move {
            if i == 0 {
                tokio::time::sleep(MODEL_DELAY).await;
            }
            frames.get(i).map(|f| (Ok::<_, std::io::Error>(*f), i + 1))
        });
        ([("content-type", "text/event-stream")], Body::from_stream(stream))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().route("/v1/chat/completions", axum::routing::post(complete))).await.unwrap()
    });
    url
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> =
        std::env::var("SESSIONS").unwrap_or_else(|_| "100,1000".into()).split(',').filter_map(|n| n.trim().parse().ok()).collect();
    let bench = support::serve(Some(stub_model().await), |_| {}).await;
    let (base, account) = (bench.base.clone(), bench.account.clone());
    let ws_base = base.replacen("http", "ws", 1);
    let http = reqwest::Client::new();
    let mut call_counter = 0u64;
    for sessions in sizes {
        let rss_before = rss_kib();
        let mut sockets = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            call_counter += 1;
            let params = incoming_call(&account, call_counter);
            let url = format!("{base}/twilio/voice");
            let twiml = http
                .post(&url)
                .header("X-Twilio-Signature", signature::sign(TOKEN, &url, &params))
                .form(&params)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let call_id = twiml.split("/twilio/relay/").nth(1).unwrap().split('"').next().unwrap().to_owned();
            let relay_url = format!("{ws_base}/twilio/relay/{call_id}");
            let mut request = relay_url.as_str().into_client_request().unwrap();
            request.headers_mut().insert("X-Twilio-Signature", signature::sign(TOKEN, &relay_url, &[]).parse().unwrap());
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            socket
                .send(Message::Text(json!({ "type": "setup", "callSid": format!("CA{call_counter:032x}") }).to_string().into()))
                .await
                .unwrap();
            sockets.push(socket);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_open = rss_kib();
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|mut socket| {
                tokio::spawn(async move {
                    let prompt = json!({ "type": "prompt", "voicePrompt": "Hello, can you help me?", "lang": "en-US", "last": true });
                    let sent = Instant::now();
                    socket.send(Message::Text(prompt.to_string().into())).await.unwrap();
                    loop {
                        match socket.next().await {
                            Some(Ok(Message::Text(_))) => break sent.elapsed(),
                            Some(Ok(_)) => continue,
                            other => panic!("the session closed: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        let mut added: Vec<Duration> = Vec::with_capacity(sessions);
        for task in tasks {
            added.push(task.await.unwrap().saturating_sub(MODEL_DELAY));
        }
        added.sort();
        let at = |q: f64| added[((added.len() as f64 * q) as usize).min(added.len() - 1)].as_secs_f64() * 1000.0;
        println!(
            "{sessions} concurrent relay sessions: server-added latency to first token p50 {:.1} ms, p99 {:.1} ms (model delay {} ms subtracted); \
             memory ≈ {:.1} KiB per open session (RSS growth of this process, client sockets included)",
            at(0.50),
            at(0.99),
            MODEL_DELAY.as_millis(),
            rss_open.saturating_sub(rss_before) as f64 / sessions as f64
        );
    }
}
