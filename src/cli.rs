//! The `switchboard` command line: `serve`, `migrate`, `admin …`, `config` and `dial`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::{self, Application};
use crate::config::{Config, Overrides};
use crate::domain::audit::Actor;
use crate::domain::ids::OrgId;
use crate::domain::org::{self, Email, Role};
use crate::domain::phone_number::E164;
use crate::storage::{orgs, phone_numbers, phone_providers, tokens, users};
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
    /// caller says (or give a script); `/dtmf 12`, `/interrupt`, `/wait 3` and `/hangup` act.
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
    },
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
        Command::Dial { to, from, server, script } => dial(&config, to, from, server, script).await,
    }
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

async fn dial(config: &Config, to: String, from: String, server: Option<String>, script: Option<PathBuf>) -> anyhow::Result<()> {
    let to = E164::parse("to", &to)?;
    let from = E164::parse("from", &from)?;
    let script = match script {
        Some(path) => Some(
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?.lines().map(str::to_owned).collect(),
        ),
        None => None,
    };
    let db = app::open_database(config).await?;
    let number = phone_numbers::find_by_number(&db, to.as_str())
        .await?
        .with_context(|| format!("{} is not one of your phone numbers", to.as_str()))?;
    let secrets = phone_providers::secrets(&db, number.org_id, number.provider_id).await?;
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
    };
    let outcome = dev_phone::from_terminal(dial, script).await?;
    println!("{}", outcome.summary);
    anyhow::ensure!(outcome.ok, "the call did not go through");
    Ok(())
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
