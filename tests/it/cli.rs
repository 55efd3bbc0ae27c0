//! The `switchboard` binary as an operator uses it: admin commands, `config`, and `serve` with
//! graceful shutdown — and nothing secret in what it prints or logs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::sid;

const AUTH_TOKEN: &str = "abcdef0123456789abcdef0123456789";

fn switchboard(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("--data-dir").arg(dir).arg("--database-url").arg(format!("sqlite://{}/db/switchboard.db", dir.display()));
    cmd.env_remove("RUST_LOG").stdin(Stdio::null());
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

    let mut server = switchboard(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SWITCHBOARD_METRICS_LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        let stderr = server.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let found = log
            .lock()
            .unwrap()
            .lines()
            .find_map(|l| l.split("address=").nth(1).and_then(|a| a.split_whitespace().next()).map(str::to_owned));
        if let Some(addr) = found {
            break addr;
        }
        assert!(Instant::now() < deadline, "the server did not start: {}", log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

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

    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    let status = server.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    let log = log.lock().unwrap();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains(AUTH_TOKEN) && !log.contains(&token) && !log.contains(password.trim()), "a secret reached the log");
    assert!(!dir.path().join("admin-token").exists(), "no first-start bootstrap on a database that has an organisation");
}
