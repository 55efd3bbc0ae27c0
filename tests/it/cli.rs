//! The `switchboard` binary as an operator uses it: admin commands, `config`, and `serve` with
//! graceful shutdown — and nothing secret in what it prints or logs.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::sid;

const AUTH_TOKEN: &str = "abcdef0123456789abcdef0123456789";

fn switchboard(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("--data-dir").arg(dir).arg("--database-url").arg(format!("sqlite://{}/db/switchboard.db", dir.display()));
    cmd.env_remove("RUST_LOG").env("SWITCHBOARD_MODELS_AUTO_INSTALL", "false").stdin(Stdio::null());
    cmd
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("the binary runs");
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "failed: {stderr}");
    (stdout, stderr)
}

#[tokio::test]
async fn operator_commands_and_a_served_api() {
    let dir = tempfile::tempdir().unwrap();
    let (org, _) = run_ok(switchboard(dir.path()).args(["admin", "create-org", "Acme"]));
    let org = org.trim().to_owned();
    assert_eq!(org.len(), 36, "prints the new organisation's id: {org}");
    let (token, _) = run_ok(switchboard(dir.path()).args(["admin", "create-token", "--org", &org, "--name", "ci"]));
    let token = token.trim().to_owned();
    assert!(token.starts_with("sbt_"));
    let (password, stderr) = run_ok(switchboard(dir.path()).args(["admin", "create-user", "--org", &org, "--email", "Ops@Acme.example"]));
    assert!(password.trim().len() >= 20 && stderr.contains("ops@acme.example"), "{stderr}");
    let bad = switchboard(dir.path()).args(["admin", "create-user", "--org", &org, "--email", "nope"]).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("e-mail"));

    let (shown, warnings) = run_ok(
        switchboard(dir.path())
            .arg("config")
            .env("SWITCHBOARD_SECRET_KEY", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=")
            .env("SWITCHBOARD_LISTN", "0.0.0.0:1"),
    );
    assert!(shown.contains("secret_key = \"<redacted>\"") && !shown.contains("QUJD"), "{shown}");
    assert!(warnings.contains("SWITCHBOARD_LISTN; did you mean SWITCHBOARD_LISTEN?"), "{warnings}");

    let mut serve = switchboard(dir.path());
    serve.args(["serve", "--listen", "127.0.0.1:0"]).env("SWITCHBOARD_LOG", "debug");
    let mut server = crate::support::server_process::ServerProcess::spawn(serve).await;
    let addr = server.addr;

    let client = reqwest::Client::new();
    let created = client
        .post(format!("http://{addr}/api/v1/phone-providers"))
        .bearer_auth(&token)
        .json(&json!({ "name": "Main", "account_sid": sid("AC", 'e'), "auth_token": AUTH_TOKEN }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let listed =
        client.get(format!("http://{addr}/api/v1/phone-providers")).bearer_auth(&token).send().await.unwrap().text().await.unwrap();
    assert!(listed.contains("Main") && !listed.contains(AUTH_TOKEN));

    assert!(Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap().success());
    let (status, log) = server.wait();
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains(AUTH_TOKEN) && !log.contains(&token) && !log.contains(password.trim()), "a secret reached the log");
    assert!(!dir.path().join("admin-token").exists(), "no first-start bootstrap on a database that has an organisation");
}

/// An operator's backup of a live server, restored on another machine; then a master key
/// rotation while the server runs, finished by running it again, and audited.
#[tokio::test]
async fn backups_restore_elsewhere_and_master_keys_rotate() {
    use switchboard::config::Config;
    use switchboard::domain::ids::{LlmProviderId, PhoneProviderId};
    use switchboard::storage::{llm_providers, phone_providers};

    let app = crate::support::spawn_app(crate::support::Backend::Sqlite).await;
    let line = app.phone_line(json!({ "name": "Ava" })).await;
    let body = json!({ "name": "Hosted", "base_url": "https://models.example.com/v1", "default_model": "m", "api_key": "sk-before" });
    let llm: LlmProviderId = app.post("/api/v1/llm-providers", body).await.expect(201)["id"].as_str().unwrap().parse().unwrap();
    let provider: PhoneProviderId = line.provider.parse().unwrap();
    let live = |cmd: &mut Command| {
        cmd.arg("--data-dir").arg(app.data_dir.path()).arg("--database-url").arg(&app.database_url);
    };

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("switchboard.backup");
    let mut backup = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    live(&mut backup);
    run_ok(backup.arg("backup").arg(&file));
    #[cfg(unix)]
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions()) & 0o777, 0o600);
    let mut again = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    live(&mut again);
    assert!(!again.arg("backup").arg(&file).output().unwrap().status.success(), "a backup never overwrites a file");
    app.post("/api/v1/apps", json!({ "name": "After the backup" })).await.expect(201);

    // Another machine: an empty data folder gets the database and its key.
    let elsewhere = tempfile::tempdir().unwrap();
    let (_, said) = run_ok(switchboard(elsewhere.path()).arg("restore").arg(&file));
    assert!(said.contains("stored credentials open"), "{said}");
    let restored_config = Config {
        database_url: format!("sqlite://{}/db/switchboard.db", elsewhere.path().display()),
        data_dir: elsewhere.path().to_owned(),
        ..Config::default()
    };
    let restored = switchboard::app::open_database(&restored_config).await.unwrap();
    assert_eq!(llm_providers::api_key(&restored, app.org, llm).await.unwrap().unwrap().as_str(), "sk-before");
    assert_eq!(phone_providers::secrets(&restored, app.org, provider).await.unwrap().auth_token.as_str(), crate::support::LINE_TOKEN);
    let apps = switchboard::storage::apps::list(&restored, app.org, switchboard::storage::PageRequest { before: None, limit: 50 })
        .await
        .unwrap()
        .items;
    assert!(apps.iter().all(|a| a.name != "After the backup"), "the copy is of the moment of the backup");
    restored.close().await;
    let refused = switchboard(elsewhere.path()).arg("restore").arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    run_ok(switchboard(elsewhere.path()).arg("restore").arg(&file).arg("--force"));
    assert!(elsewhere.path().join("db/switchboard.db.before-restore").exists());

    // Rotation: the new key current, the old one previous; every credential moves over.
    let old_key = std::fs::read_to_string(app.data_dir.path().join("master.key")).unwrap();
    let (new_key, _) = run_ok(switchboard(elsewhere.path()).args(["secrets", "generate-key"]));
    let rotate = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        live(&mut cmd);
        cmd.args(["secrets", "rotate"])
            .env("SWITCHBOARD_SECRET_KEY", new_key.trim())
            .env("SWITCHBOARD_PREVIOUS_SECRET_KEYS", old_key.trim());
        cmd
    };
    let (_, said) = run_ok(&mut rotate());
    assert!(said.contains("2 credentials re-encrypted under the current key, 0 already were"), "{said}");
    let (_, said) = run_ok(&mut rotate());
    assert!(said.contains("0 credentials re-encrypted under the current key, 2 already were"), "{said}");
    let rotated_config =
        Config { database_url: app.database_url.clone(), secret_key: Some(new_key.trim().to_owned()), ..restored_config.clone() };
    let rotated = switchboard::app::open_database(&rotated_config).await.unwrap();
    assert_eq!(llm_providers::api_key(&rotated, app.org, llm).await.unwrap().unwrap().as_str(), "sk-before");
    assert_eq!(phone_providers::secrets(&rotated, app.org, provider).await.unwrap().auth_token.as_str(), crate::support::LINE_TOKEN);
    rotated.close().await;
    let audit = app.get("/api/v1/audit-log?action=llm_provider").await.expect(200);
    let actions: Vec<&str> = audit["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["llm_provider.rekeyed", "llm_provider.created"]);
}
