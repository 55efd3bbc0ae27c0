//! `switchboard serve` as a child process, for the tests that need a real process: signals,
//! `kill -9`, several nodes on one database. Its log (stderr) is collected; its address is read
//! from the `serving` line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestApp;

pub struct ServerProcess {
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `command` (a `switchboard serve` with its settings) and waits until it serves.
    pub async fn spawn(mut command: Command) -> Self {
        let mut child = command.env("SWITCHBOARD_METRICS_LISTEN", "127.0.0.1:0").stderr(Stdio::piped()).spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let collected = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = collected.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = log.lock().unwrap().lines().find_map(|l| l.split("address=").nth(1)?.split_whitespace().next()?.parse().ok());
            if let Some(addr) = found {
                break addr;
            }
            assert!(Instant::now() < deadline, "the server did not start: {}", log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Self { addr, child, log, reader: Some(reader) }
    }

    /// A node serving `app`'s database, data folder and fake Twilio, named `node_id`, whose
    /// claims on calls last `lease_secs`.
    pub async fn node_of(app: &TestApp, node_id: &str, lease_secs: u64) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("serve")
            .env_remove("RUST_LOG")
            .env("SWITCHBOARD_LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD_DATABASE_URL", &app.database_url)
            .env("SWITCHBOARD_DATA_DIR", app.data_dir.path())
            .env("SWITCHBOARD_TWILIO_API_BASE", app.twilio.base_url())
            .env("SWITCHBOARD_EGRESS_ALLOW", "127.0.0.1")
            .env("SWITCHBOARD_NODE_ID", node_id)
            .env("SWITCHBOARD_SESSION_LEASE_SECS", lease_secs.to_string())
            .env("SWITCHBOARD_PROVIDER_VERIFY_INTERVAL_SECS", "0")
            .env("SWITCHBOARD_MODELS_AUTO_INSTALL", "false")
            .env("SWITCHBOARD_LOG", "info")
            .stdin(Stdio::null());
        Self::spawn(command).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the process gets no chance to finish anything.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to exit; returns its status and its whole log.
    pub fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.log())
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
