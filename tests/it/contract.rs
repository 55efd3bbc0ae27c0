//! The API contract, probed from outside with the tools an integrator uses: schemathesis (from
//! PyPI) generates requests for every operation of `/api/v1/openapi.json` and fails on any 5xx,
//! undocumented status, wrong content type or response that breaks its schema; and a Python
//! client generated from the document by openapi-python-client (PyPI) runs a small script.
//! `scripts/test.sh` installs both into `target/contract-tools` (a virtual environment).

use std::path::PathBuf;

use crate::support::{Backend, TestApp, per_backend};

per_backend!(schemathesis_finds_no_server_error_or_contract_breach);

/// A program of the contract tools' virtual environment.
fn contract_tool(name: &str) -> PathBuf {
    let tool = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/contract-tools/bin").join(name);
    assert!(tool.exists(), "{} is missing: run scripts/test.sh, which installs the contract tools", tool.display());
    tool
}

/// A server whose API answers as fast as it is asked (the probe is not a client to slow down).
async fn unlimited_app(backend: Backend) -> TestApp {
    crate::support::spawn_app_with(backend, |config| {
        config.rate_limit_per_token = 0;
        config.rate_limit_per_address = 0;
    })
    .await
}

async fn schemathesis_finds_no_server_error_or_contract_breach(backend: Backend) {
    let app = unlimited_app(backend).await;
    let reports = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(contract_tool("schemathesis"))
        .arg("run")
        .arg(format!("http://{}/api/v1/openapi.json", app.addr))
        .args(["--header", &format!("Authorization: Bearer {}", app.token)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        ])
        // Revoking the probe's own token would leave the rest of the run unauthorised; the
        // operation has its own tests.
        .args(["--exclude-operation-id", "api_tokens_revoke"])
        .args(["--max-examples", "15", "--seed", "20261129", "--no-color"])
        .current_dir(reports.path())
        .output()
        .await
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "schemathesis found contract breaches:\n{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("Tested: 86"), "every operation but the excluded one was probed:\n{report}");
}

#[tokio::test]
async fn a_client_generated_from_the_document_works() {
    let app = unlimited_app(Backend::Sqlite).await;
    let work = tempfile::tempdir().unwrap();
    let document = work.path().join("openapi.json");
    std::fs::write(&document, app.get("/api/v1/openapi.json").await.text).unwrap();
    let settings = work.path().join("generator.yaml");
    std::fs::write(&settings, "post_hooks: []\n").unwrap();
    let generated = tokio::process::Command::new(contract_tool("openapi-python-client"))
        .arg("generate")
        .arg("--path")
        .arg(&document)
        .arg("--output-path")
        .arg(work.path().join("switchboard_client"))
        .args(["--meta", "none", "--config"])
        .arg(&settings)
        .output()
        .await
        .expect("openapi-python-client runs");
    let said = format!("{}{}", String::from_utf8_lossy(&generated.stdout), String::from_utf8_lossy(&generated.stderr));
    assert!(generated.status.success() && !said.contains("Unable to process"), "the generator could not read every schema:\n{said}");

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contract/use_generated_client.py");
    let run = tokio::process::Command::new(contract_tool("python"))
        .arg(script)
        .arg(format!("http://{}", app.addr))
        .arg(&app.token)
        .env("PYTHONPATH", work.path())
        .output()
        .await
        .expect("python runs");
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success() && said.contains("generated client: ok"), "{said}");
}
