//! Assembles the running server: configuration → master key → database (migrated) → first-start
//! bootstrap → HTTP router on a bound listener; then runs it with its background work (recovery
//! of orphaned calls, session leases, automations, credential checks, retention) and drains it
//! on shutdown. Tests build the same [`Application`] on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::agent::call_log::TranscriptWriter;
use crate::agent::live::LiveSessions;
use crate::automations::Worker;
use crate::config::Config;
use crate::domain::org::Email;
use crate::http::{self, AppState};
use crate::models::LoadedModels;
use crate::providers::egress::Egress;
use crate::recording::Recordings;
use crate::storage::backup::MasterKeys;
use crate::storage::secrets::{Cipher, write_private_file};
use crate::storage::{Db, calls, orgs, retention};
use crate::telephony::twilio::recording::CarrierRecordings;
use crate::telephony::twilio::rest::TwilioClient;
use crate::telephony::twilio::{pricing, provisioning, recovery};

/// The e-mail of the owner a first start creates.
pub const FIRST_OWNER_EMAIL: &str = "admin@switchboard.local";

/// A server ready to serve: database migrated, listener bound.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    metrics_listener: TcpListener,
    metrics: axum::Router,
    db: Db,
    twilio: TwilioClient,
    /// Period of the background credential check; zero turns it off.
    verify_every: Duration,
    automations: Worker,
    /// Period of the retention purge; zero turns it off.
    purge_every: Duration,
    audit_retention: Option<chrono::Duration>,
    live: Arc<LiveSessions>,
    /// How long live calls may go on after a shutdown signal.
    shutdown_grace: Duration,
    recordings: Recordings,
}

/// How long sessions told to wind down get to say goodbye before the server stops anyway.
const WIND_DOWN_LIMIT: Duration = Duration::from_secs(30);
/// How long the server keeps answering Twilio after its last call's session ended.
const CALLBACK_LINGER: Duration = Duration::from_secs(3);

/// The master key: from `secret_key`, else from `{data_dir}/master.key` (created when missing).
pub fn master_cipher(config: &Config) -> anyhow::Result<Cipher> {
    let current = match &config.secret_key {
        Some(key) => Cipher::from_base64(key)?,
        None => Cipher::from_key_file(&config.data_dir.join("master.key"))?,
    };
    current.with_previous_keys(&config.previous_secret_keys)
}

/// The master keys as configured, base64, for a backup.
pub fn master_keys(config: &Config) -> anyhow::Result<MasterKeys> {
    let current = match &config.secret_key {
        Some(key) => key.trim().to_owned(),
        None => {
            let path = config.data_dir.join("master.key");
            std::fs::read_to_string(&path).with_context(|| format!("reading the master key {}", path.display()))?.trim().to_owned()
        }
    };
    Ok(MasterKeys { current, previous: config.previous_secret_keys.clone() })
}

/// Connects to the configured database and applies pending migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database_url, master_cipher(config)?).await?;
    db.migrate().await?;
    Ok(db)
}

impl Application {
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        // The data folder holds the master key and first-start credentials: the owner's only.
        crate::storage::secrets::create_private_dir(&config.data_dir)?;
        crate::storage::secrets::warn_if_readable_by_others(&config.data_dir);
        let db = open_database(&config).await?;
        bootstrap_first_start(&db, &config).await?;
        let twilio = TwilioClient::new(&config.twilio_api_base);
        let listener = TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
        let metrics_listener = TcpListener::bind(config.metrics_listen)
            .await
            .with_context(|| format!("listening for metrics on {} (set metrics_listen)", config.metrics_listen))?;
        // Without a configured public URL, carriers are told the address actually bound.
        config.listen = listener.local_addr()?;
        let verify_every = Duration::from_secs(config.provider_verify_interval_secs);
        let purge_every = Duration::from_secs(config.retention_interval_secs);
        let audit_retention =
            (config.audit_retention_days > 0).then(|| chrono::Duration::days(config.audit_retention_days.min(36_500) as i64));
        let egress = Egress::new(config.egress_policy()?);
        let rate_limits = Arc::new(http::rate_limit::RateLimits::from_config(&config)?);
        let models = LoadedModels::load(config.models_dir(), config.models_auto_install.then(|| config.models_index_url.clone())).await;
        let automations = Worker::from_config(db.clone(), &config, egress.clone(), models.clone())?;
        let live = LiveSessions::new(&config.node_id, Duration::from_secs(config.session_lease_secs));
        let shutdown_grace = Duration::from_secs(config.shutdown_grace_secs);
        let recording_store = config.recording_store()?;
        tracing::info!(store = %recording_store.describe(), "where call recordings are kept");
        let recordings = Recordings::new(db.clone(), recording_store);
        let state = AppState {
            db: db.clone(),
            config: Arc::new(config),
            metrics: Default::default(),
            twilio: twilio.clone(),
            live: live.clone(),
            transcripts: TranscriptWriter::start(db.clone()),
            sign_in_limiter: Default::default(),
            egress,
            rate_limits,
            speech_cache: Default::default(),
            models,
            recordings: recordings.clone(),
        };
        let metrics = http::metrics_router(state.clone());
        Ok(Self {
            listener,
            router: http::router(state),
            metrics_listener,
            metrics,
            db,
            twilio,
            verify_every,
            automations,
            purge_every,
            audit_retention,
            live,
            shutdown_grace,
            recordings,
        })
    }

    /// The address actually bound (differs from the configuration when it asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then drains (see [`drain`]), finishes in-flight requests
    /// and closes the database.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(address = %self.local_addr(), metrics = %self.metrics_addr(), "serving");
        let metrics_listener = self.metrics_listener;
        let metrics = self.metrics;
        let mut background = vec![
            tokio::spawn(async move {
                if let Err(e) = axum::serve(metrics_listener, metrics).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            }),
            tokio::spawn(self.automations.run()),
            tokio::spawn(recover_orphaned_calls(self.db.clone(), self.twilio.clone(), self.live.lease())),
            tokio::spawn(renew_session_leases(self.db.clone(), self.live.clone())),
        ];
        if !self.verify_every.is_zero() {
            background.push(tokio::spawn(verify_providers_periodically(self.db.clone(), self.twilio.clone(), self.verify_every)));
        }
        let carrier_recordings =
            CarrierRecordings { db: self.db.clone(), client: self.twilio.clone(), recordings: self.recordings.clone() };
        background.push(tokio::spawn(settle_stale_calls_periodically(self.db.clone(), self.twilio.clone(), carrier_recordings)));
        if !self.purge_every.is_zero() {
            let carrier = CarrierRecordings { db: self.db.clone(), client: self.twilio.clone(), recordings: self.recordings.clone() };
            let purge = purge_expired_periodically(self.db.clone(), carrier, self.purge_every, self.audit_retention);
            background.push(tokio::spawn(purge));
        }
        let (live, grace) = (self.live.clone(), self.shutdown_grace);
        let drained = async move {
            shutdown.await;
            drain(&live, grace).await;
        };
        // Calls' audio goes out 20 ms at a time: small writes must not wait for the peer's
        // acknowledgement of the last one (Nagle's algorithm), or frames go out in pairs.
        let listener = self.listener.tap_io(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
            }
        });
        axum::serve(listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(drained)
            .await
            .context("serving HTTP")?;
        for task in background {
            task.abort();
        }
        self.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// A deploy without cut-off calls: the node stops taking calls (`/readyz` answers 503, new calls
/// hear an apology) while it keeps serving the webhooks of its live calls; those go on until they
/// end or `grace` is over; then every agent says a short goodbye and ends its call
/// (`server_shutdown`), and the server stops once they have (at most [`WIND_DOWN_LIMIT`] later).
async fn drain(live: &LiveSessions, grace: Duration) {
    live.begin_draining();
    let had_calls = live.count() > 0;
    tracing::info!(live_calls = live.count(), grace_secs = grace.as_secs(), "draining: no new calls, live calls go on");
    if tokio::time::timeout(grace, live.until_empty()).await.is_err() {
        tracing::warn!(live_calls = live.count(), "the grace period is over: agents say goodbye");
        live.wind_down();
        if tokio::time::timeout(WIND_DOWN_LIMIT, live.until_empty()).await.is_err() {
            tracing::warn!(live_calls = live.count(), "stopping with calls still live");
        }
    }
    if had_calls {
        // Twilio asks `/twilio/connect-action` what to do next, and posts the final status, just
        // after a session ends: answer those before the listener closes.
        tokio::time::sleep(CALLBACK_LINGER).await;
    }
}

/// Checks every phone provider's credentials once per `period`, starting one period after start.
async fn verify_providers_periodically(db: Db, twilio: TwilioClient, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        provisioning::verify_all(&db, &twilio).await;
    }
}

/// Settles calls whose sessions died, in the background so start-up never waits for Twilio:
/// at once (with calls no session ever took), then once per session lease (leases run out that
/// long after their process dies).
async fn recover_orphaned_calls(db: Db, twilio: TwilioClient, lease: Duration) {
    let mut untaken = true;
    let mut ticks = tokio::time::interval(lease);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match recovery::recover_orphaned_calls(&db, &twilio, untaken).await {
            Ok(0) => {}
            Ok(settled) => tracing::warn!(calls = settled, "finalised calls whose agent sessions were gone"),
            Err(e) => tracing::warn!(error = ?e, "could not look for calls whose sessions were gone"),
        }
        untaken = false;
    }
}

/// Keeps this process's claims on its live calls from running out.
async fn renew_session_leases(db: Db, live: Arc<LiveSessions>) {
    let mut ticks = tokio::time::interval(live.lease_renewal());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if live.count() == 0 {
            continue;
        }
        if let Err(e) = calls::renew_session_leases(&db, live.owner(), crate::domain::time::now() + live.lease()).await {
            tracing::error!(error = ?e, "could not renew the leases of live calls");
        }
    }
}

/// Asks Twilio about stale open calls and the prices of ended ones, and fetches the recordings
/// still waiting to be, every quarter of an hour.
async fn settle_stale_calls_periodically(db: Db, twilio: TwilioClient, carrier_recordings: CarrierRecordings) {
    let period = Duration::from_secs(15 * 60);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = recovery::settle_stale_calls(&db, &twilio).await {
            tracing::warn!(error = ?e, "could not settle stale calls");
        }
        carrier_recordings.sweep().await;
        if let Err(e) = pricing::settle_prices(&db, &twilio, crate::domain::time::now()).await {
            tracing::warn!(error = ?e, "could not settle the carrier's call prices");
        }
    }
}

/// Purges expired recordings, transcripts and call records, and audit entries older than
/// `audit_retention` (when set), once per `period`, starting at once.
async fn purge_expired_periodically(db: Db, carrier: CarrierRecordings, period: Duration, audit_retention: Option<chrono::Duration>) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = crate::domain::time::now();
        match carrier.recordings.purge_expired(now, |doomed| carrier.erase_copy_of(doomed)).await {
            Ok(0) => {}
            Ok(erased) => tracing::info!(erased, "erased recordings past their retention"),
            Err(e) => tracing::warn!(error = %e, "could not purge expired recordings"),
        }
        if let Err(e) = retention::purge_expired(&db, now).await {
            tracing::warn!(error = ?e, "could not purge expired call data");
        }
        if let Some(keep) = audit_retention {
            match retention::purge_audit(&db, now - keep).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "purged audit entries past audit_retention_days"),
                Err(e) => tracing::warn!(error = ?e, "could not purge old audit entries"),
            }
        }
    }
}

/// On an empty database: creates the `default` organisation, an owner and an admin API token,
/// and writes the token and the owner's password to files only the server's user can read.
async fn bootstrap_first_start(db: &Db, config: &Config) -> anyhow::Result<()> {
    if orgs::count(db).await? > 0 {
        return Ok(());
    }
    let password = crate::storage::users::generate_password();
    let email = Email::parse(FIRST_OWNER_EMAIL).expect("the first owner's address is valid");
    let Some(created) = orgs::bootstrap(db, "default", &email, &password).await? else {
        tracing::info!("another server created the first organisation at the same moment");
        return Ok(());
    };
    let token_file = replace_private_file(config.data_dir.join("admin-token"), created.token.as_bytes())?;
    let password_file = replace_private_file(config.data_dir.join("admin-password"), password.as_bytes())?;
    tracing::info!(
        org = %created.org.id,
        owner = created.owner.email.as_str(),
        token_file = %token_file.display(),
        password_file = %password_file.display(),
        "first start: created organisation `default`; its admin API token and owner password are in these files"
    );
    Ok(())
}

fn replace_private_file(path: PathBuf, contents: &[u8]) -> anyhow::Result<PathBuf> {
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("replacing {}", path.display())),
    }
    write_private_file(&path, contents)
        .context("writing first-start credentials; run `switchboard admin create-token` to make a new token")?;
    Ok(path)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
