//! Test harness: `spawn_app` builds the real application from real configuration, randomised for
//! isolation (fresh SQLite file or fresh PostgreSQL database, port 0, temporary data folder), and
//! returns a `TestApp` with request helpers. Logs stay silent unless `TEST_LOG` is set.

pub mod browser;
pub mod fake_index;
pub mod fake_llm;
pub mod fake_speech;
pub mod fake_twilio;
pub mod openai_schema;
pub mod relay_client;
pub mod s3_server;
pub mod server_process;
pub mod smtp_server;
pub mod twilio_openapi;
pub mod webhook_sink;

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use switchboard::app::Application;
use switchboard::config::Config;
use switchboard::domain::audit::Actor;
use switchboard::domain::ids::OrgId;
use switchboard::storage::{Db, orgs, tokens};
use tempfile::TempDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` is served (apart from the public port).
    pub metrics_addr: SocketAddr,
    pub token: String,
    pub org: OrgId,
    pub db: Db,
    pub backend: Backend,
    pub database_url: String,
    pub data_dir: TempDir,
    /// The fake Twilio REST API this server talks to.
    pub twilio: fake_twilio::FakeTwilio,
    client: reqwest::Client,
    /// Delivers the shutdown signal (SIGTERM) to the server.
    shutdown: Arc<tokio::sync::Notify>,
    /// The server's run, which ends when it has stopped.
    pub server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A response: status, content type and JSON body (`Value::Null` when empty or not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Asserts the status, printing the body on failure, and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts a problem+json error with this status and returns its `detail`.
    #[track_caller]
    pub fn problem(self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        assert_eq!(self.content_type, "application/problem+json", "body: {}", self.body);
        assert_eq!(self.body["status"], status);
        self.body["detail"].as_str().expect("a problem has a detail").to_owned()
    }
}

/// Creates an empty database for one test: a file in `dir`, or a new PostgreSQL database in the
/// cluster named by `TEST_POSTGRES_URL` (scripts/test.sh starts one).
pub async fn fresh_database_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join("switchboard.db").display()),
        Backend::Postgres => {
            use sqlx::Connection;
            let admin_url = std::env::var("TEST_POSTGRES_URL")
                .expect("TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL");
            let name = format!("sb_test_{}", uuid::Uuid::now_v7().simple());
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.expect("connecting to the test cluster");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("creating a test database");
            let mut url = url::Url::parse(&admin_url).unwrap();
            url.set_path(&name);
            url.to_string()
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like `spawn_app`, with a chance to change the configuration first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        switchboard::telemetry::init("debug");
    }
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(backend, data_dir.path()).await;
    let twilio = fake_twilio::FakeTwilio::start().await;
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.clone(),
        data_dir: data_dir.path().to_owned(),
        twilio_api_base: twilio.base_url(),
        provider_verify_interval_secs: 0,
        // The fake model servers and webhook receivers listen on loopback.
        egress_allow: vec!["127.0.0.1".into(), "::1".into(), "localhost".into()],
        // Nothing reaches the package index from a test; tests that install give a loopback one.
        models_auto_install: false,
        ..Config::default()
    };
    adjust(&mut config);
    let app = Application::build(config.clone()).await.expect("the application starts");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let signal = shutdown.clone();
    let server = tokio::spawn(app.run(async move { signal.notified().await }));
    let token = std::fs::read_to_string(data_dir.path().join("admin-token")).expect("first start wrote the admin token");
    let db = switchboard::app::open_database(&config).await.unwrap();
    let org = tokens::authenticate(&db, &token).await.unwrap().expect("the admin token is valid").org_id;
    TestApp {
        addr,
        metrics_addr,
        token,
        org,
        db,
        backend,
        database_url,
        data_dir,
        twilio,
        client: reqwest::Client::new(),
        shutdown,
        server,
    }
}

impl TestApp {
    /// Sends the server the shutdown signal, as SIGTERM would.
    pub fn begin_shutdown(&self) {
        self.shutdown.notify_one();
    }

    /// Stops this in-process server (waiting until it has) and points every helper at `addr`,
    /// a `switchboard serve` process on the same database.
    pub async fn hand_over_to(&mut self, addr: SocketAddr) {
        self.begin_shutdown();
        (&mut self.server).await.unwrap().unwrap();
        self.addr = addr;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A second organisation with its own token, for isolation tests.
    pub async fn other_org(&self) -> (OrgId, String) {
        let org = orgs::create(&self.db, "other", Actor::System).await.unwrap();
        let (_, token) =
            tokens::create(&self.db, org.id, "other-admin", switchboard::domain::org::Role::Admin, Actor::System).await.unwrap();
        (org.id, token.to_string())
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the server answers");
        read_reply(response).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, Some(&self.token), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(&self.token), Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::PATCH, path, Some(&self.token), Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, Some(&self.token), None).await
    }

    /// Follows `next_cursor` through every page of a list endpoint with `limit` per page.
    pub async fn collect_pages(&self, path: &str, limit: u32) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{path}{sep}limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let body = self.get(&url).await.expect(200);
            pages += 1;
            items.extend(body["data"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return (items, pages),
            }
        }
    }

    /// Posts a form to a Twilio webhook of ours, signed with `auth_token` as Twilio signs it
    /// (over the public URL and the sorted parameters); unsigned when `auth_token` is `None`.
    pub async fn twilio_post(&self, path: &str, params: &[(&str, &str)], auth_token: Option<&str>) -> Reply {
        let owned: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut request = self.client.post(self.url(path)).form(&owned);
        if let Some(token) = auth_token {
            let public_url = format!("http://{}{}", self.addr, path);
            request = request.header("X-Twilio-Signature", switchboard::telephony::twilio::signature::sign(token, &public_url, &owned));
        }
        read_reply(request.send().await.expect("the server answers")).await
    }

    /// The body of `GET path` once `condition` holds (background work is asked again every 50 ms,
    /// for up to 30 s).
    pub async fn until(&self, path: &str, condition: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let body = self.get(path).await.expect(200);
            if condition(&body) {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{path} never reached the expected state: {}", self.get(path).await.body);
    }

    /// Creates an app and returns its id.
    pub async fn create_app(&self, name: &str) -> String {
        self.post("/api/v1/apps", serde_json::json!({ "name": name })).await.expect(201)["id"].as_str().unwrap().to_owned()
    }

    /// Creates an agent in an app and returns its id.
    pub async fn create_agent(&self, app: &str, name: &str) -> String {
        let body = serde_json::json!({ "name": name, "instructions": "Help callers." });
        self.post(&format!("/api/v1/apps/{app}/agents"), body).await.expect(201)["id"].as_str().unwrap().to_owned()
    }
}

pub async fn read_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Reply { status, content_type, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

/// A number served by an agent through an active Twilio provider.
pub struct PhoneLine {
    pub agent: String,
    pub provider: String,
    pub number_id: String,
    pub account: String,
}

/// The auth token of the providers `phone_line` creates.
pub const LINE_TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// The number `phone_line` serves.
pub const LINE_NUMBER: &str = "+14155550100";

impl TestApp {
    /// An app, an agent made from `agent` (JSON fields), an active provider and a number routed
    /// to the agent, stored directly (provisioning has its own tests).
    pub async fn phone_line(&self, agent: Value) -> PhoneLine {
        use switchboard::domain::ids::{AgentId, AppId, PhoneProviderId};
        use switchboard::domain::phone_number::{E164, ServiceMode};
        use switchboard::storage::phone_numbers;
        let app = self.create_app("Support").await;
        let agent = self.post(&format!("/api/v1/apps/{app}/agents"), agent).await.expect(201)["id"].as_str().unwrap().to_owned();
        let account = sid("AC", '1');
        self.twilio.add_account(&account, LINE_TOKEN);
        let body = serde_json::json!({ "name": "T", "account_sid": account, "auth_token": LINE_TOKEN });
        let provider = self.post("/api/v1/phone-providers", body).await.expect(201);
        assert_eq!(provider["status"], "active");
        let provider = provider["id"].as_str().unwrap().to_owned();
        let provider_id = PhoneProviderId(provider.parse().unwrap());
        let new = phone_numbers::NewPhoneNumber {
            app_id: AppId(app.parse().unwrap()),
            provider_id,
            agent_id: AgentId(agent.parse().unwrap()),
            number: E164::parse("number", LINE_NUMBER).unwrap(),
            twilio_sid: Some(sid("PN", '2')),
            area_code: None,
            expand_languages: false,
            languages: vec![],
            generate_first_message: false,
            mode: ServiceMode::ConversationRelay,
            recording: Default::default(),
            backup: None,
            previous_voice_settings: None,
        };
        let number = phone_numbers::create(&self.db, self.org, new, Actor::System).await.unwrap();
        PhoneLine { agent, provider, number_id: number.id.to_string(), account }
    }

    /// Twilio's incoming-call webhook for `call_sid` to the line; returns the TwiML.
    pub async fn ring(&self, line: &PhoneLine, call_sid: &str) -> Reply {
        let params = [
            ("AccountSid", line.account.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", call_sid),
            ("CallStatus", "ringing"),
            ("Called", LINE_NUMBER),
            ("Caller", "+14155550123"),
            ("Direction", "inbound"),
            ("From", "+14155550123"),
            ("To", LINE_NUMBER),
        ];
        self.twilio_post("/twilio/voice", &params, Some(LINE_TOKEN)).await
    }

    /// Calls the line with `switchboard dial` as a user would (its own process, this app's data
    /// folder and database), `args` after the number; returns what it printed. The call must go
    /// through.
    pub async fn dial<S: AsRef<std::ffi::OsStr>>(&self, args: impl IntoIterator<Item = S>) -> String {
        let mut dial = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        dial.arg("--data-dir").arg(self.data_dir.path()).arg("--database-url").arg(&self.database_url);
        dial.args(["dial", LINE_NUMBER, "--from", "+14155550123", "--server", &format!("http://{}", self.addr)]).args(args);
        dial.env_remove("RUST_LOG").env("SWITCHBOARD_LOG", "warn");
        let output = tokio::task::spawn_blocking(move || dial.output().unwrap()).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
    }
}

/// A Twilio-shaped account SID / API key SID for tests.
pub fn sid(prefix: &str, fill: char) -> String {
    format!("{prefix}{}", fill.to_string().repeat(32))
}

/// Declares each named `async fn(TestApp)` as two tests: `<name>::sqlite` and `<name>::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::support::spawn_app($crate::support::Backend::Sqlite).await).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::support::spawn_app($crate::support::Backend::Postgres).await).await
                }
            }
        )+
    };
}
pub(crate) use on_both_backends;

/// Declares each named `async fn(Backend)` as a test on SQLite and one on PostgreSQL, for tests
/// that start (or stop) servers themselves.
macro_rules! per_backend {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() { super::$name($crate::support::Backend::Sqlite).await }
                #[tokio::test]
                async fn postgres() { super::$name($crate::support::Backend::Postgres).await }
            }
        )+
    };
}
pub(crate) use per_backend;
