//! Configuration: built-in defaults < TOML file (`--config`) < `SWITCHBOARD_*` environment
//! variables < command-line flags. Unknown keys in the file are errors; unknown `SWITCHBOARD_*`
//! variables are warned about (with the closest known name), since a typo there would otherwise
//! be silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::providers::egress::EgressPolicy;

/// Every configuration key, as written in TOML (and, upper-cased after `SWITCHBOARD_`, in the
/// environment).
pub const KEYS: &[&str] = &[
    "listen",
    "metrics_listen",
    "database_url",
    "data_dir",
    "public_base_url",
    "secret_key",
    "previous_secret_keys",
    "log",
    "twilio_api_base",
    "provider_verify_interval_secs",
    "node_id",
    "smtp_url",
    "smtp_from",
    "allow_private_targets",
    "allow_private_webhook_targets",
    "egress_allow",
    "rate_limit_per_token",
    "rate_limit_per_address",
    "trusted_proxies",
    "automation_retry_base_secs",
    "retention_interval_secs",
    "audit_retention_days",
    "shutdown_grace_secs",
    "session_lease_secs",
    "models_index_url",
    "models_auto_install",
    "recordings_s3_url",
    "recordings_s3_region",
    "recordings_s3_access_key_id",
    "recordings_s3_secret_access_key",
];
/// Variables with the prefix that are not configuration keys but are still ours.
const OTHER_VARIABLES: &[&str] = &["config"];
const ENV_PREFIX: &str = "SWITCHBOARD_";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Address `/metrics` is served on, apart from the public port (keep it private).
    pub metrics_listen: SocketAddr,
    /// `sqlite://path` (created with its folder) or `postgres://user:pass@host/db`.
    pub database_url: String,
    /// Folder for the master key file and first-start credentials.
    pub data_dir: PathBuf,
    /// The URL Twilio reaches this server at; defaults to `http://{listen}`.
    pub public_base_url: Option<String>,
    /// Base64 of the 32-byte master key; when absent, `{data_dir}/master.key` is used (created
    /// with mode 0600 on first start).
    pub secret_key: Option<String>,
    /// Earlier master keys (base64) still accepted for decrypting while `secrets rotate`
    /// re-encrypts stored credentials under `secret_key` (in the environment, comma-separated).
    #[serde(deserialize_with = "list_or_commas")]
    pub previous_secret_keys: Vec<String>,
    /// Log filter, e.g. `info` or `switchboard=debug,info`.
    pub log: String,
    /// Base URL of Twilio's REST API.
    pub twilio_api_base: String,
    /// How often every phone provider's credentials are checked again (0 = never).
    pub provider_verify_interval_secs: u64,
    /// This server's name among several sharing one database; restart recovery finishes only
    /// the calls whose sessions this node held. Defaults to the host name.
    pub node_id: String,
    /// The SMTP server of e-mail actions: `smtp://host:port` (plain), `smtp://…?tls=required`
    /// (STARTTLS) or `smtps://host:port` (TLS), with `user:password@` for authentication.
    pub smtp_url: Option<String>,
    /// The sender of e-mail actions.
    pub smtp_from: String,
    /// Let requests to URLs tenants set (LLM providers, webhooks) reach private, loopback and
    /// link-local addresses.
    pub allow_private_targets: bool,
    /// The earlier name of `allow_private_targets`, still honoured.
    pub allow_private_webhook_targets: bool,
    /// Private targets those requests may reach all the same: hosts, host:port pairs or CIDR
    /// networks (in the environment, comma-separated).
    #[serde(deserialize_with = "list_or_commas")]
    pub egress_allow: Vec<String>,
    /// API requests per minute one token may send (0 = no limit); bursts of a tenth of it.
    pub rate_limit_per_token: u32,
    /// API requests per minute one client address may send (0 = no limit).
    pub rate_limit_per_address: u32,
    /// Proxies (addresses or CIDRs) whose `X-Forwarded-For` names the client.
    #[serde(deserialize_with = "list_or_commas")]
    pub trusted_proxies: Vec<String>,
    /// The first wait before a failed automation action is tried again (doubling after that).
    pub automation_retry_base_secs: u64,
    /// How often expired transcripts and call records are purged (0 = never).
    pub retention_interval_secs: u64,
    /// On SIGTERM, how long live calls may go on before their agents say goodbye.
    pub shutdown_grace_secs: u64,
    /// How long a process's claim on a live call lasts without renewal (renewed every third of
    /// it): how soon after a process dies another settles its calls.
    pub session_lease_secs: u64,
    /// Days the audit log keeps its entries (0 keeps them forever).
    pub audit_retention_days: u64,
    /// The Python package index `models install` takes its wheels from (the JSON simple API).
    pub models_index_url: url::Url,
    /// When a `media_stream` agent needs the embedded speech engines and they are not
    /// installed, install them in the background (from `models_index_url`).
    pub models_auto_install: bool,
    /// Keep call recordings in an S3-compatible bucket instead of `{data_dir}/recordings` (for
    /// several nodes): the bucket's path-style URL, e.g. `https://s3.eu-west-1.amazonaws.com/calls`.
    pub recordings_s3_url: Option<url::Url>,
    /// The bucket's region (what the signature names; S3-compatible servers often ignore it).
    pub recordings_s3_region: String,
    pub recordings_s3_access_key_id: Option<String>,
    pub recordings_s3_secret_access_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            database_url: "sqlite://./data/switchboard.db".into(),
            data_dir: PathBuf::from("./data"),
            public_base_url: None,
            secret_key: None,
            previous_secret_keys: Vec::new(),
            log: "info".into(),
            twilio_api_base: "https://api.twilio.com".into(),
            provider_verify_interval_secs: 6 * 3600,
            node_id: default_node_id(),
            smtp_url: None,
            smtp_from: "Switchboard <switchboard@localhost>".into(),
            allow_private_targets: false,
            allow_private_webhook_targets: false,
            egress_allow: Vec::new(),
            rate_limit_per_token: 1200,
            rate_limit_per_address: 2400,
            trusted_proxies: Vec::new(),
            automation_retry_base_secs: 10,
            retention_interval_secs: 3600,
            shutdown_grace_secs: 300,
            session_lease_secs: 60,
            audit_retention_days: 365,
            models_index_url: url::Url::parse(crate::models::install::DEFAULT_INDEX_URL).expect("a valid URL"),
            models_auto_install: true,
            recordings_s3_url: None,
            recordings_s3_region: "us-east-1".into(),
            recordings_s3_access_key_id: None,
            recordings_s3_secret_access_key: None,
        }
    }
}

/// The host name, or `switchboard` when the system does not say.
fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "switchboard".to_owned())
}

/// Values given as command-line flags; they win over everything else.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_base_url: Option<String>,
}

impl Config {
    /// Where call recordings are kept: the S3-compatible bucket when one is configured, else a
    /// folder under `data_dir`.
    pub fn recording_store(&self) -> anyhow::Result<crate::recording::store::RecordingStore> {
        use crate::recording::store::{BucketAccess, RecordingStore};
        let Some(url) = &self.recordings_s3_url else { return Ok(RecordingStore::local(self.data_dir.join("recordings"))) };
        let (Some(key_id), Some(secret)) = (&self.recordings_s3_access_key_id, &self.recordings_s3_secret_access_key) else {
            anyhow::bail!("recordings_s3_url is set: set recordings_s3_access_key_id and recordings_s3_secret_access_key too");
        };
        RecordingStore::bucket(BucketAccess { url: url.clone(), region: self.recordings_s3_region.clone(), key_id, secret })
    }

    /// Where `switchboard models install` puts the models the server runs itself.
    pub fn models_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }

    /// Loads the effective configuration. Returns it with warnings about the environment.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<(Self, Vec<String>)> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            anyhow::ensure!(path.exists(), "the configuration file {} does not exist", path.display());
            figment = figment.merge(Toml::file_exact(path));
        }
        let config = Self::extract(figment.merge(Env::prefixed(ENV_PREFIX).only(KEYS)).merge(Serialized::globals(overrides)))?;
        Ok((config, unknown_variable_warnings(std::env::vars().map(|(k, _)| k))))
    }

    /// The configuration the layers make, checked.
    fn extract(layers: Figment) -> anyhow::Result<Self> {
        let config: Config = layers.extract().context("reading the configuration")?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.public_base_url {
            crate::domain::validation::http_url("public_base_url", url).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        crate::domain::validation::http_url("twilio_api_base", &self.twilio_api_base).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(smtp) = &self.smtp_url {
            let url = url::Url::parse(smtp).map_err(|e| anyhow::anyhow!("smtp_url: is not a URL ({e})"))?;
            anyhow::ensure!(matches!(url.scheme(), "smtp" | "smtps"), "smtp_url: must start with smtp:// or smtps://");
        }
        anyhow::ensure!(self.automation_retry_base_secs > 0, "automation_retry_base_secs: must be at least 1");
        anyhow::ensure!((3..=3600).contains(&self.session_lease_secs), "session_lease_secs: must be between 3 and 3600");
        self.egress_policy()?;
        Ok(())
    }

    /// Where requests to URLs tenants set may go.
    pub fn egress_policy(&self) -> anyhow::Result<EgressPolicy> {
        EgressPolicy::new(self.allow_private_targets || self.allow_private_webhook_targets, &self.egress_allow).map_err(anyhow::Error::msg)
    }

    /// The base URL carriers use to reach us, without a trailing slash.
    pub fn public_base_url(&self) -> String {
        match &self.public_base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The configuration as TOML with secrets replaced by `<redacted>`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.secret_key = shown.secret_key.map(|_| "<redacted>".into());
        shown.previous_secret_keys = shown.previous_secret_keys.iter().map(|_| "<redacted>".into()).collect();
        shown.database_url = redact_url_password(&shown.database_url);
        shown.smtp_url = shown.smtp_url.map(|url| redact_url_password(&url));
        shown.recordings_s3_secret_access_key = shown.recordings_s3_secret_access_key.map(|_| "<redacted>".into());
        toml::to_string_pretty(&shown).expect("the configuration serialises to TOML")
    }
}

/// A list written as a TOML array or, as environment variables are, one comma-separated string.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        List(Vec<String>),
        Commas(String),
    }
    Ok(match Written::deserialize(deserializer)? {
        Written::List(items) => items,
        Written::Commas(text) => text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect(),
    })
}

fn redact_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("<redacted>"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

fn unknown_variable_warnings(names: impl Iterator<Item = String>) -> Vec<String> {
    names
        .filter_map(|name| {
            let key = name.strip_prefix(ENV_PREFIX)?.to_lowercase();
            if KEYS.contains(&key.as_str()) || OTHER_VARIABLES.contains(&key.as_str()) {
                return None;
            }
            let closest = KEYS.iter().max_by(|a, b| strsim::jaro_winkler(&key, a).total_cmp(&strsim::jaro_winkler(&key, b)))?;
            Some(format!("ignoring unknown environment variable {name}; did you mean {ENV_PREFIX}{}?", closest.to_uppercase()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz target: any text as the configuration file is read or refused with an error, never
    /// a panic; what is read passes its own checks again.
    #[test]
    fn fuzz_any_configuration_file() {
        bolero::check!().with_type::<String>().for_each(|text| {
            let layers = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
            if let Ok(config) = Config::extract(layers) {
                config.check().unwrap();
                let _ = config.redacted_toml();
            }
        });
        // Text that is TOML with every kind of value, so the sample reaches the checks too.
        bolero::check!().with_type::<(String, String, u16, bool)>().for_each(|(url, list, port, flag)| {
            let text = format!(
                "public_base_url = {url:?}\negress_allow = {list:?}\nlisten = \"127.0.0.1:{port}\"\nallow_private_targets = {flag}\n"
            );
            let _ = Config::extract(Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&text)));
        });
    }

    #[test]
    fn misspelled_variables_get_a_suggestion() {
        let warnings = unknown_variable_warnings(
            ["SWITCHBOARD_DATABSE_URL", "SWITCHBOARD_LISTEN", "SWITCHBOARD_CONFIG", "PATH"].map(String::from).into_iter(),
        );
        assert_eq!(warnings, ["ignoring unknown environment variable SWITCHBOARD_DATABSE_URL; did you mean SWITCHBOARD_DATABASE_URL?"]);
    }

    #[test]
    fn layers_apply_in_order_and_unknown_file_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchboard.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nlog = \"debug\"\n").unwrap();
        let flags = Overrides { listen: Some("127.0.0.1:9100".parse().unwrap()), ..Default::default() };
        let (config, _) = Config::load(Some(&file), &flags).unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.log, "debug");
        assert_eq!(config.database_url, Config::default().database_url);

        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&file), &Overrides::default()).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn egress_allow_reads_a_list_or_comma_separated_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchboard.toml");
        std::fs::write(&file, "egress_allow = [\"127.0.0.1:8081\", \"10.0.0.0/8\"]\n").unwrap();
        let (config, _) = Config::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(config.egress_allow, ["127.0.0.1:8081", "10.0.0.0/8"]);
        std::fs::write(&file, "egress_allow = \"models.internal:8000, 10.0.0.0/8,\"\n").unwrap();
        let (config, _) = Config::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(config.egress_allow, ["models.internal:8000", "10.0.0.0/8"]);
        std::fs::write(&file, "egress_allow = \"10.0.0.0/40\"\n").unwrap();
        let err = format!("{:#}", Config::load(Some(&file), &Overrides::default()).unwrap_err());
        assert!(err.contains("egress_allow: `10.0.0.0/40`"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let config = Config {
            secret_key: Some("c2VjcmV0".into()),
            previous_secret_keys: vec!["b2xkc2VjcmV0".into()],
            database_url: "postgres://sb:hunter2@127.0.0.1:5432/sb".into(),
            ..Config::default()
        };
        let shown = config.redacted_toml();
        assert!(!shown.contains("c2VjcmV0") && !shown.contains("b2xkc2VjcmV0") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn public_base_url_defaults_to_listen_address() {
        assert_eq!(Config::default().public_base_url(), "http://127.0.0.1:8080");
        let config = Config { public_base_url: Some("https://sb.example.com/".into()), ..Config::default() };
        assert_eq!(config.public_base_url(), "https://sb.example.com");
    }
}
