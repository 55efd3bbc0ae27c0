//! What the benchmarks need: the real server on 127.0.0.1 (on a SQLite file, or a fresh
//! PostgreSQL database), serving one number whose agent may use a given LLM endpoint; and, for
//! benchmarks that run as several processes, a way to start this benchmark again in a role and
//! read a process's CPU time and memory.

use std::process::{Child, Command, Stdio};

use switchboard::app::Application;
use switchboard::config::Config;
use switchboard::domain::agent::AgentSpec;
use switchboard::domain::app::AppSpec;
use switchboard::domain::audit::Actor;
use switchboard::domain::ids::{AgentId, AppId, OrgId, PhoneNumberId};
use switchboard::domain::phone_number::{E164, ServiceMode};
use switchboard::domain::provider::{PhoneProviderKind, PhoneProviderStatus};
use switchboard::storage::{Db, agents, apps, llm_providers, orgs, phone_numbers, phone_providers};

pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// The environment variable that tells a benchmark process which role it plays.
pub const ROLE: &str = "SWITCHBOARD_BENCH_ROLE";
pub const NUMBER: &str = "+14155550100";

/// A running server and the Twilio account that owns its number.
#[allow(dead_code)] // each benchmark uses what it needs
pub struct Bench {
    pub base: String,
    pub account: String,
    pub db: Db,
    pub org: OrgId,
    pub app: AppId,
    pub agent: AgentId,
    pub number: PhoneNumberId,
    _data: tempfile::TempDir,
}

/// Starts the server with one active number, after `adjust` changes its configuration; its
/// agent uses `llm_base_url` when given. `BENCH_LOG` (a level) shows the server's log.
pub async fn serve(llm_base_url: Option<String>, adjust: impl FnOnce(&mut Config)) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/bench.db", dir.path().display()),
        data_dir: dir.path().to_owned(),
        provider_verify_interval_secs: 0,
        log: std::env::var("BENCH_LOG").unwrap_or_else(|_| "error".into()),
        // The stubs and receivers of the benchmarks listen on loopback.
        allow_private_targets: true,
        ..Config::default()
    };
    adjust(&mut config);
    if std::env::var_os("BENCH_LOG").is_some() {
        switchboard::telemetry::init(&config.log);
    }
    let app = Application::build(config.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run(std::future::pending()));

    let db = switchboard::app::open_database(&config).await.unwrap();
    let org = orgs::create(&db, "bench", Actor::System).await.unwrap().id;
    let app_row = apps::create(&db, org, AppSpec::new("Bench", "").unwrap(), Actor::System).await.unwrap();
    let mut spec = AgentSpec::named("Ava");
    spec.first_message = "Hi, this is Ava. How can I help?".into();
    spec.conversation_timeout_secs = 600;
    if let Some(base_url) = llm_base_url {
        let llm = llm_providers::NewLlmProvider { name: "stub".into(), base_url, default_model: "stub".into(), api_key: None };
        spec.llm_provider_id = Some(llm_providers::create(&db, org, llm, Actor::System).await.unwrap().id);
    }
    let agent = agents::create(&db, org, app_row.id, spec.validate().unwrap(), Actor::System).await.unwrap();
    let account = format!("AC{}", "1".repeat(32));
    let provider = phone_providers::NewPhoneProvider {
        name: "T".into(),
        kind: PhoneProviderKind::Twilio,
        account_sid: account.clone(),
        auth_token: TOKEN.into(),
        api_key: None,
    };
    let provider = phone_providers::create(&db, org, provider, Actor::System).await.unwrap();
    phone_providers::record_verification(&db, org, provider.id, PhoneProviderStatus::Active, None).await.unwrap();
    let number = phone_numbers::NewPhoneNumber {
        app_id: app_row.id,
        provider_id: provider.id,
        agent_id: agent.id,
        number: E164::parse("number", NUMBER).unwrap(),
        twilio_sid: None,
        area_code: None,
        expand_languages: false,
        languages: vec![],
        generate_first_message: false,
        mode: ServiceMode::ConversationRelay,
        recording: Default::default(),
        backup: None,
        previous_voice_settings: None,
    };
    let number = phone_numbers::create(&db, org, number, Actor::System).await.unwrap().id;
    Bench { base, account, db, org, app: app_row.id, agent: agent.id, number, _data: dir }
}

/// The signed incoming-call webhook form for a new call.
pub fn incoming_call(account: &str, call: u64) -> Vec<(String, String)> {
    [
        ("AccountSid", account.to_owned()),
        ("CallSid", format!("CA{call:032x}")),
        ("CallStatus", "ringing".into()),
        ("Direction", "inbound".into()),
        ("From", "+14155550123".into()),
        ("To", NUMBER.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Rings the number as Twilio would for call number `call` and opens the call's socket
/// (`relay` or `media`) named in the TwiML, signed; the handshake sends each frame at once.
#[allow(dead_code)]
pub async fn answer_call(http: &reqwest::Client, base: &str, account: &str, call: u64, socket: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let params = incoming_call(account, call);
    let url = format!("{base}/twilio/voice");
    let signed = switchboard::telephony::twilio::signature::sign(TOKEN, &url, &params);
    let twiml = http.post(&url).header("X-Twilio-Signature", signed).form(&params).send().await.unwrap().text().await.unwrap();
    let marker = format!("/twilio/{socket}/");
    let call_id = twiml.split(&marker).nth(1).unwrap_or_else(|| panic!("no {socket} socket in {twiml}")).split('"').next().unwrap();
    let socket_url = format!("{}{marker}{call_id}", base.replacen("http", "ws", 1));
    let mut request = socket_url.as_str().into_client_request().unwrap();
    let signed = switchboard::telephony::twilio::signature::sign(TOKEN, &socket_url, &[]);
    request.headers_mut().insert("X-Twilio-Signature", signed.parse().unwrap());
    tokio_tungstenite::connect_async_with_config(request, None, true).await.unwrap().0
}

/// Rings the number for call number `call` and opens its Media Streams socket, which Twilio
/// starts with `connected` and `start`.
#[allow(dead_code)]
pub async fn open_media_stream(http: &reqwest::Client, base: &str, account: &str, call: u64) -> Socket {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut socket = answer_call(http, base, account, call, "media").await;
    let start = serde_json::json!({ "event": "start", "sequenceNumber": "1", "start": { "streamSid": format!("MZ{call:032x}"),
        "callSid": format!("CA{call:032x}"), "accountSid": account, "tracks": ["inbound"], "customParameters": {},
        "mediaFormat": { "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1 } } });
    let connected = serde_json::json!({ "event": "connected", "protocol": "Call", "version": "1.0.0" });
    socket.send(Message::Text(connected.to_string().into())).await.unwrap();
    socket.send(Message::Text(start.to_string().into())).await.unwrap();
    socket
}

/// The runtime each role of a benchmark runs on.
#[allow(dead_code)]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// Starts this benchmark again in `role`, and returns the child and its first line of output.
#[allow(dead_code)] // each benchmark uses what it needs
pub async fn spawn_role(role: &str, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line.trim().to_owned()
    })
    .await
    .unwrap();
    assert!(!line.is_empty(), "the {role} role reports where it listens");
    (child, line)
}

/// CPU seconds (user + system) and resident memory (KiB) of a process.
#[allow(dead_code)]
pub fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
    (ticks as f64 / clock_ticks_per_second(), rss)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A new, empty PostgreSQL database on the server of `url` (which names any database there);
/// returns its URL.
#[allow(dead_code)]
pub async fn fresh_postgres_database(url: &str) -> String {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(url).await.expect("the PostgreSQL server answers");
    let name = format!("switchboard_bench_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let mut fresh = url::Url::parse(url).unwrap();
    fresh.set_path(&name);
    fresh.to_string()
}

/// Waits `delay` to the microsecond: Tokio's timers round up to the next millisecond, which a
/// benchmark's server-added latency would otherwise count as the server's.
#[allow(dead_code)]
pub async fn exactly(delay: std::time::Duration) {
    let deadline = std::time::Instant::now() + delay;
    tokio::time::sleep(delay.saturating_sub(std::time::Duration::from_millis(1))).await;
    while std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

/// A stub model's streamed Chat Completions answer: after `delay`, one SSE event per token,
/// then `[DONE]`.
#[allow(dead_code)]
pub fn streamed_answer(tokens: &[&str], delay: std::time::Duration) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut events: Vec<String> =
        tokens.iter().map(|token| format!("data: {}\n\n", serde_json::json!({ "choices": [{ "delta": { "content": token } }] }))).collect();
    events.push("data: [DONE]\n\n".to_owned());
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let event = events.get(i).cloned();
        async move {
            if i == 0 {
                exactly(delay).await;
            }
            event.map(|e| (Ok::<_, std::io::Error>(e), i + 1))
        }
    });
    ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream)).into_response()
}

/// The server's own account of each answer's wait on the last `calls` calls (the stored
/// `voice_latency` of their agent turns, read through the API): for each of `parts` (a step and
/// what a stub adds to it by design), p50 and p95 beyond that, in whole milliseconds.
#[allow(dead_code)]
pub async fn voice_latency(http: &reqwest::Client, base: &str, token: &str, calls: usize, parts: &[(&str, std::time::Duration)]) -> String {
    use std::time::Duration;
    let get = |path: String| http.get(format!("{base}{path}")).bearer_auth(token).send();
    let mut ids = Vec::new();
    let mut cursor = String::new();
    while ids.len() < calls {
        let page: serde_json::Value = get(format!("/api/v1/calls?limit=100{cursor}")).await.unwrap().json().await.unwrap();
        ids.extend(page["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let mut added: Vec<Vec<Duration>> = vec![Vec::new(); parts.len()];
    for id in ids.iter().take(calls) {
        let call: serde_json::Value = get(format!("/api/v1/calls/{id}")).await.unwrap().json().await.unwrap();
        for latency in call["transcript"].as_array().into_iter().flatten().map(|t| &t["voice_latency"]).filter(|l| l.is_object()) {
            for ((name, stub), values) in parts.iter().zip(&mut added) {
                let ms = latency[format!("{name}_ms")].as_u64().unwrap_or_default();
                values.push(Duration::from_millis(ms).saturating_sub(*stub));
            }
        }
    }
    let at = |values: &mut Vec<Duration>, q: f64| {
        values.sort();
        values.get(((values.len() as f64 * q) as usize).min(values.len().saturating_sub(1))).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    parts
        .iter()
        .zip(&mut added)
        .map(|((name, _), values)| format!("{name} p50 {:.0} ms, p95 {:.0} ms", at(values, 0.50), at(values, 0.95)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a load generator playing Twilio reads of a message from the server: its event and, for
/// a mark, its name.
#[allow(dead_code)]
#[derive(serde::Deserialize)]
pub struct FromServer<'a> {
    pub event: &'a str,
    #[serde(borrow)]
    pub mark: Option<MarkName<'a>>,
}

#[allow(dead_code)]
#[derive(serde::Deserialize)]
pub struct MarkName<'a> {
    pub name: &'a str,
}

/// Twilio's message returning mark `name` on stream `sid`: its audio has played (or was cleared).
#[allow(dead_code)]
pub fn mark_played(sid: &str, sequence: u64, name: &str) -> tokio_tungstenite::tungstenite::Message {
    let mark = serde_json::json!({ "event": "mark", "sequenceNumber": sequence.to_string(), "streamSid": sid, "mark": { "name": name } });
    tokio_tungstenite::tungstenite::Message::Text(mark.to_string().into())
}
