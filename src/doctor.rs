//! `switchboard doctor`: checks a deployment the way its operator would, one finding per line,
//! each saying what to fix — the public URL Twilio is told, the database, where recordings go
//! (space, or the bucket), SMTP, every phone provider's credentials, every number's webhook URLs
//! at Twilio against what they should be (`--fix` puts drifted ones back), every LLM provider,
//! and who hears and speaks on each Media Streams number.

use std::path::Path;

use crate::agent::{model, speech};
use crate::app;
use crate::automations::email::Mailer;
use crate::config::Config;
use crate::domain::phone_number::ServiceMode;
use crate::domain::provider::PhoneProviderStatus;
use crate::models::{catalog, install};
use crate::providers::egress::Egress;
use crate::recording::store::RecordingStore;
use crate::storage::{Db, agents, llm_providers, phone_numbers, phone_providers};
use crate::telephony::twilio::provisioning;
use crate::telephony::twilio::rest::TwilioClient;

/// Free space below which recordings are at risk, and below which they will fail.
const LOW_SPACE: u64 = 1 << 30;
const NO_SPACE: u64 = 100 << 20;

/// How a check came out.
#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Ok,
    Warn,
    Fix,
}

/// The findings so far, printed as they come.
#[derive(Default)]
struct Findings {
    problems: usize,
}

impl Findings {
    fn note(&mut self, verdict: Verdict, what: &str, detail: impl std::fmt::Display) {
        let label = match verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fix => {
                self.problems += 1;
                "FIX "
            }
        };
        println!("{label}  {what}: {detail}");
    }
}

/// Runs every check; `Ok(false)` when something needs fixing.
pub async fn run(config: &Config, fix: bool) -> anyhow::Result<bool> {
    let mut findings = Findings::default();
    check_public_url(config, &mut findings);
    let db = match app::open_database(config).await {
        Ok(db) => {
            findings.note(Verdict::Ok, "database", "opens, migrations applied");
            db
        }
        Err(e) => {
            findings.note(Verdict::Fix, "database", format!("{e:#}: check database_url and that the server can reach it"));
            return Ok(false);
        }
    };
    check_recording_store(config, &mut findings).await;
    check_smtp(config, &mut findings).await;
    let twilio = TwilioClient::new(&config.twilio_api_base);
    check_phone_providers(&db, &twilio, &mut findings).await?;
    check_numbers(config, &db, &twilio, fix, &mut findings).await?;
    check_models(config, &db, &mut findings).await?;
    db.close().await;
    println!();
    match findings.problems {
        0 => println!("nothing to fix"),
        n => println!("{n} thing{} to fix", if n == 1 { "" } else { "s" }),
    }
    Ok(findings.problems == 0)
}

fn check_public_url(config: &Config, findings: &mut Findings) {
    let what = "public_base_url";
    let Some(url) = &config.public_base_url else {
        let detail = format!("not set, so Twilio is told http://{}; set it to the HTTPS URL Twilio reaches this server at", config.listen);
        return findings.note(Verdict::Fix, what, detail);
    };
    let Ok(parsed) = url::Url::parse(url) else { return findings.note(Verdict::Fix, what, format!("`{url}` is not a URL")) };
    let host = parsed.host_str().unwrap_or_default();
    let private = match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Err(_) => host == "localhost" || host.ends_with(".local") || host.ends_with(".internal"),
    };
    if private {
        findings.note(Verdict::Fix, what, format!("{url} is a private address Twilio cannot reach; use the public HTTPS URL"));
    } else if parsed.scheme() != "https" {
        findings.note(Verdict::Warn, what, format!("{url} is not HTTPS: calls' audio and signatures travel in the clear"));
    } else {
        findings.note(Verdict::Ok, what, url);
    }
}

async fn check_recording_store(config: &Config, findings: &mut Findings) {
    let what = "recordings";
    let store = match config.recording_store() {
        Ok(store) => store,
        Err(e) => return findings.note(Verdict::Fix, what, e),
    };
    let probe = "doctor/probe";
    let written = async {
        store.put(probe, b"switchboard doctor".to_vec()).await?;
        store.read(probe, 0, 18).await?;
        store.delete(probe).await
    };
    if let Err(e) = written.await {
        return findings.note(Verdict::Fix, what, format!("{} cannot be written and read back: {e}", store.describe()));
    }
    match &store {
        RecordingStore::Local { dir } => match free_space(dir) {
            Ok(free) if free < NO_SPACE => findings.note(Verdict::Fix, what, format!("{}: only {} MB free", store.describe(), free >> 20)),
            Ok(free) if free < LOW_SPACE => findings.note(
                Verdict::Warn,
                what,
                format!("{}: {} MB free; an hour of recorded calls takes about 115 MB", store.describe(), free >> 20),
            ),
            Ok(free) => findings.note(Verdict::Ok, what, format!("{}, {:.1} GB free", store.describe(), free as f64 / 1e9)),
            Err(e) => findings.note(Verdict::Warn, what, format!("{}: free space unknown ({e})", store.describe())),
        },
        RecordingStore::Bucket { .. } => findings.note(Verdict::Ok, what, format!("{} takes writes and deletes", store.describe())),
    }
}

/// Bytes free for this user on the file system holding `dir`.
fn free_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string and `stats` a buffer statvfs fills on success.
    if unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    Ok(stats.f_bavail * stats.f_frsize)
}

async fn check_smtp(config: &Config, findings: &mut Findings) {
    let what = "smtp_url";
    let Some(url) = &config.smtp_url else {
        return findings.note(Verdict::Warn, what, "not set: e-mail actions of automations cannot send");
    };
    match Mailer::new(url, &config.smtp_from) {
        Ok(mailer) => match mailer.check().await {
            Ok(()) => findings.note(Verdict::Ok, what, "the SMTP server answers"),
            Err(e) => findings.note(Verdict::Fix, what, format!("the SMTP server does not answer: {e}")),
        },
        Err(e) => findings.note(Verdict::Fix, what, e),
    }
}

async fn check_phone_providers(db: &Db, twilio: &TwilioClient, findings: &mut Findings) -> anyhow::Result<()> {
    for provider in phone_providers::list_all(db).await? {
        let what = format!("phone provider “{}”", provider.name);
        let checked = provisioning::verify_provider(db, twilio, provider.org_id, provider.id).await?;
        match checked.status {
            PhoneProviderStatus::Active => findings.note(Verdict::Ok, &what, "active"),
            status => {
                let why = checked.last_error.unwrap_or_default();
                findings.note(Verdict::Fix, &what, format!("`{status}` {why}: correct its credentials in Settings → Phone providers"));
            }
        }
    }
    Ok(())
}

async fn check_numbers(config: &Config, db: &Db, twilio: &TwilioClient, fix: bool, findings: &mut Findings) -> anyhow::Result<()> {
    let base = config.public_base_url();
    for number in phone_numbers::all(db).await? {
        let what = format!("number {}", number.number.as_str());
        match provisioning::voice_drift(db, twilio, &base, &number, fix).await {
            Ok(None) => findings.note(Verdict::Ok, &what, format!("Twilio sends its calls to {base}")),
            Ok(Some(drift)) => {
                let fields: Vec<String> = drift
                    .fields
                    .iter()
                    .map(|(name, value)| if value.is_empty() { format!("{name} was unset") } else { format!("{name} was `{value}`") })
                    .collect();
                if drift.fixed {
                    findings.note(Verdict::Ok, &what, format!("put back at Twilio ({})", fields.join(", ")));
                } else {
                    let detail =
                        format!("its settings at Twilio differ ({}): run `switchboard doctor --fix` to put them back", fields.join(", "));
                    findings.note(Verdict::Fix, &what, detail);
                }
            }
            Err(e) => findings.note(Verdict::Fix, &what, format!("could not be checked at Twilio: {e}")),
        }
    }
    Ok(())
}

async fn check_models(config: &Config, db: &Db, findings: &mut Findings) -> anyhow::Result<()> {
    let egress = Egress::new(config.egress_policy()?);
    for provider in llm_providers::list_all(db).await? {
        let what = format!("LLM provider “{}”", provider.name);
        let checked = model::check(db, &egress, &provider).await?;
        match checked.answer {
            Ok(_) => findings.note(Verdict::Ok, &what, format!("{} answered in {} ms", provider.default_model, checked.latency_ms)),
            Err(why) => findings.note(Verdict::Fix, &what, format!("{} did not answer: {why}", provider.default_model)),
        }
    }
    let manifest = install::Manifest::read(&config.models_dir())?;
    let built_in_installed = manifest.get(catalog::WHISPER_BASE).is_some() && manifest.get(catalog::PIPER_JOE).is_some();
    for number in phone_numbers::all(db).await?.into_iter().filter(|n| n.mode == ServiceMode::MediaStream) {
        let what = format!("number {} (Media Streams)", number.number.as_str());
        let agent = agents::get(db, number.org_id, number.agent_id).await?;
        let sources = speech::sources_for(db, number.org_id, &agent.spec).await?;
        if sources.need_embedded() && !built_in_installed {
            let detail = "its agent uses the built-in speech, which is not installed: run `switchboard models install` (or give the agent a speech provider)";
            findings.note(Verdict::Fix, &what, detail);
        } else {
            findings.note(Verdict::Ok, &what, "someone hears and speaks for its agent");
        }
    }
    Ok(())
}
