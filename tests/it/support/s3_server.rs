//! A real S3-compatible server on 127.0.0.1: moto's (`moto_server`, installed by scripts/test.sh
//! into target/contract-tools), with one bucket, for the recording store's tests. It checks the
//! requests' form, not their signatures.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct S3Server {
    pub port: u16,
    child: Child,
}

/// The bucket each server starts with.
pub const BUCKET: &str = "recordings";

impl S3Server {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let tool = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/contract-tools/bin/moto_server");
        assert!(tool.exists(), "{} is missing: run scripts/test.sh, which installs it", tool.display());
        let mut child = Command::new(tool)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        for _ in 0..200 {
            if let Ok(created) = reqwest::Client::new().put(format!("http://127.0.0.1:{port}/{BUCKET}")).send().await {
                assert!(created.status().is_success(), "creating the bucket: {}", created.status());
                return Self { port, child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("moto_server did not start listening on {port}");
    }

    /// The bucket's URL, as `recordings_s3_url` takes it.
    pub fn bucket_url(&self) -> String {
        format!("http://127.0.0.1:{}/{BUCKET}", self.port)
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}/{key}", self.bucket_url())
    }

    /// The keys in the bucket.
    pub async fn keys(&self) -> Vec<String> {
        let listing = reqwest::get(format!("{}?list-type=2", self.bucket_url())).await.unwrap().text().await.unwrap();
        listing.split("<Key>").skip(1).filter_map(|rest| rest.split("</Key>").next()).map(str::to_owned).collect()
    }

    /// An object's bytes as stored.
    pub async fn object(&self, key: &str) -> Vec<u8> {
        reqwest::get(self.object_url(key)).await.unwrap().bytes().await.unwrap().to_vec()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
