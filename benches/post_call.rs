//! How soon a finished call reaches a webhook: Twilio's final status callback finalises the call
//! and writes its `call.ended` event; the automations worker hands it to a webhook automation
//! and delivers it, signed, to a receiver on 127.0.0.1. Prints the latency from the callback to
//! the delivery and the throughput when many calls end at once. The real server on SQLite; the receiver answers 204 at once.
//!
//! `cargo bench --bench post_call` (set `CALLS=n` to change the count, default 300).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use switchboard::domain::audit::Actor;
use switchboard::domain::automation::{Action, AutomationSpec, Filters, Trigger};
use switchboard::storage::automations;
use switchboard::telephony::twilio::signature;

use support::{TOKEN, incoming_call};

/// When each call's event arrived, by call SID.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    arrivals.lock().unwrap().insert(event["call"]["call_sid"].as_str().unwrap().to_owned(), Instant::now());
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = Router::new().route("/hook", post(receive)).with_state(arrivals.clone());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let bench = support::serve(None, |config| config.allow_private_webhook_targets = true).await;
    let spec = AutomationSpec {
        name: "hook".into(),
        trigger: Trigger::AgentConversationEnded,
        filters: Filters::default(),
        actions: vec![Action::Webhook { url: hook, headers: Default::default() }],
        enabled: true,
    };
    automations::create(&bench.db, bench.org, bench.app, spec, Actor::System).await.unwrap();
    let client = reqwest::Client::new();
    let voice = format!("{}/twilio/voice", bench.base);
    let status = format!("{}/twilio/status", bench.base);
    let send = |url: String, params: Vec<(String, String)>| {
        let client = client.clone();
        async move {
            let signed = signature::sign(TOKEN, &url, &params);
            let response = client.post(&url).header("X-Twilio-Signature", signed).form(&params).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    for i in 0..calls {
        send(voice.clone(), incoming_call(&bench.account, i as u64)).await;
    }

    // One call at a time: the latency of a single delivery.
    let single = calls.min(20);
    let mut latencies = Vec::new();
    for i in 0..single {
        let sid = format!("CA{i:032x}");
        let ended = Instant::now();
        send(status.clone(), completed(&bench.account, &sid)).await;
        let arrived = wait_for(&arrivals, &sid).await;
        latencies.push(arrived - ended);
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "post-call, SQLite, {single} calls ended one at a time: status callback → signed webhook delivered p50 {:.0} ms, max {:.0} ms",
        ms(latencies[latencies.len() / 2]),
        ms(*latencies.last().unwrap())
    );

    // The rest end at once: how fast the queue drains.
    let burst: Vec<String> = (single..calls).map(|i| format!("CA{i:032x}")).collect();
    let started = Instant::now();
    let callbacks = burst.iter().map(|sid| send(status.clone(), completed(&bench.account, sid)));
    futures_util::future::join_all(callbacks).await;
    for sid in &burst {
        wait_for(&arrivals, sid).await;
    }
    let elapsed = started.elapsed();
    println!(
        "post-call, SQLite, {} calls ending at once: all delivered in {:.2} s ({:.0} events/s, {} concurrent runs per node)",
        burst.len(),
        elapsed.as_secs_f64(),
        burst.len() as f64 / elapsed.as_secs_f64(),
        switchboard::automations::CONCURRENCY
    );
}

fn completed(account: &str, sid: &str) -> Vec<(String, String)> {
    [("AccountSid", account), ("CallSid", sid), ("CallStatus", "completed"), ("CallDuration", "42")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn wait_for(arrivals: &Arrivals, sid: &str) -> Instant {
    loop {
        if let Some(at) = arrivals.lock().unwrap().get(sid) {
            return *at;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
