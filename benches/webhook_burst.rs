//! Bursts of incoming calls, as a busy contact centre's Twilio account sends them: signed
//! `POST /twilio/voice` webhooks for new calls at a fixed rate (open loop: each request leaves at
//! its scheduled moment whether or not earlier ones have been answered, so a slow server shows as
//! latency, not as a slower load). The server runs in its own process (this benchmark again, in
//! the `server` role), so its CPU time, read from `/proc`, is its own.
//!
//! Printed per database: requests sent and answered per second, latency from the scheduled send
//! to the whole answer (p50, p99, max), errors, and the server's CPU use. Goal: p99 under 10 ms
//! at 1,000 webhooks a second for 30 s on SQLite.
//!
//! `cargo bench --bench webhook_burst` (`RATE=1000`, `SECONDS=30`; `POSTGRES_URL=postgres://…`
//! also runs it on a fresh database on that PostgreSQL server).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::telephony::twilio::signature;
use tokio::sync::Mutex;

use support::{TOKEN, incoming_call, spawn_role, usage};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match std::env::var(support::ROLE).as_deref() {
        Ok("server") => runtime.block_on(serve()),
        _ => runtime.block_on(generate_load()),
    }
}

/// Role `server`: Switchboard with one number, on SQLite or on `DATABASE_URL`. Prints its base
/// URL and the Twilio account, then serves until killed.
async fn serve() {
    let database = std::env::var("DATABASE_URL").ok();
    let bench = support::serve(None, |config| {
        if let Some(url) = database {
            config.database_url = url;
        }
    })
    .await;
    println!("{} {}", bench.base, bench.account);
    std::future::pending::<()>().await;
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn generate_load() {
    let (rate, seconds) = (setting("RATE", 1000), setting("SECONDS", 30));
    burst("SQLite", None, rate, seconds).await;
    if let Ok(url) = std::env::var("POSTGRES_URL") {
        let fresh = support::fresh_postgres_database(&url).await;
        burst("PostgreSQL", Some(&fresh), rate, seconds).await;
    }
}

async fn burst(database: &str, url: Option<&str>, rate: u64, seconds: u64) {
    let env: Vec<(&str, &str)> = url.map(|u| vec![("DATABASE_URL", u)]).unwrap_or_default();
    let (mut server, ready) = spawn_role("server", &env).await;
    let (base, account) = ready.split_once(' ').unwrap();
    let url = Arc::new(format!("{base}/twilio/voice"));
    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    warm_up(&client, &url, account).await;

    let total = rate * seconds;
    let results = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let (cpu_before, _) = usage(server.id());
    let start = Instant::now() + Duration::from_millis(100);
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
        let (client, url, results) = (client.clone(), url.clone(), results.clone());
        let params = incoming_call(account, 1_000_000 + i);
        requests.spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let signed = signature::sign(TOKEN, &url, &params);
            let answered = match client.post(url.as_str()).header("X-Twilio-Signature", signed).form(&params).send().await {
                Ok(response) if response.status() == 200 => response.text().await.is_ok_and(|body| body.contains("<ConversationRelay")),
                _ => false,
            };
            results.lock().await.push((at.elapsed(), answered));
        });
        // Keep the scheduler ahead of the clock without holding every future at once.
        while requests.len() > rate as usize * 2 {
            requests.join_next().await;
        }
    }
    while requests.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let (cpu_after, rss) = usage(server.id());
    server.kill().unwrap();
    server.wait().unwrap();

    let results = results.lock().await;
    let errors = results.iter().filter(|(_, ok)| !ok).count();
    let mut latencies: Vec<Duration> = results.iter().map(|(latency, _)| *latency).collect();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{database}: {total} incoming-call webhooks at {rate}/s for {seconds} s, answered in {elapsed:.1} s: p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms; {errors} errors; server CPU {:.0}% of one core, {} MiB resident (goal: p99 < 10 ms)",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(*latencies.last().unwrap()),
        100.0 * (cpu_after - cpu_before) / elapsed,
        rss / 1024
    );
}

/// A few hundred calls first, so connections, caches and the database pool are warm.
async fn warm_up(client: &reqwest::Client, url: &str, account: &str) {
    for i in 0..300 {
        let params = incoming_call(account, i);
        let signed = signature::sign(TOKEN, url, &params);
        let response = client.post(url).header("X-Twilio-Signature", signed).form(&params).send().await.unwrap();
        assert_eq!(response.status(), 200, "the server answers the warm-up calls");
    }
}
