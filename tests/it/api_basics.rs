//! Cross-cutting API behaviour: authentication, body limits, malformed input, health, metrics,
//! the OpenAPI document, languages and API tokens.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::json;

use crate::support::{Backend, TestApp, on_both_backends, per_backend, read_reply};

on_both_backends!(
    requests_need_a_valid_token,
    bad_requests_get_problem_documents,
    health_metrics_and_languages,
    api_tokens_work_until_revoked,
    member_tokens_only_read
);
per_backend!(servers_starting_at_once_create_one_first_organisation);

/// Two nodes starting together on an empty database: one creates `default`, the other finds it.
async fn servers_starting_at_once_create_one_first_organisation(backend: Backend) {
    use switchboard::app::{Application, open_database};
    use switchboard::config::Config;
    use switchboard::storage::orgs;

    let dir = tempfile::tempdir().unwrap();
    let database_url = crate::support::fresh_database_url(backend, dir.path()).await;
    let config = |node: &str| Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.clone(),
        data_dir: dir.path().join(node),
        secret_key: Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
        provider_verify_interval_secs: 0,
        ..Config::default()
    };
    let (a, b) = tokio::join!(Application::build(config("a")), Application::build(config("b")));
    let (_a, _b) = (a.expect("node a starts"), b.expect("node b starts"));
    let db = open_database(&config("a")).await.unwrap();
    assert_eq!(orgs::count(&db).await.unwrap(), 1);
    let tokens = ["a", "b"].iter().filter(|node| dir.path().join(node).join("admin-token").exists()).count();
    assert_eq!(tokens, 1, "one node wrote the first-start credentials");
}

async fn requests_need_a_valid_token(app: TestApp) {
    for token in [None, Some("sbt_not-a-real-token"), Some("garbage")] {
        let reply = app.send(Method::GET, "/api/v1/apps", token, None).await;
        reply.problem(401);
    }
    let reply =
        reqwest::Client::new().get(app.url("/api/v1/apps")).header("Authorization", format!("Basic {}", app.token)).send().await.unwrap();
    assert_eq!(reply.status(), 401);
    assert_eq!(reply.headers()["www-authenticate"], "Bearer");
}

async fn bad_requests_get_problem_documents(app: TestApp) {
    let client = reqwest::Client::new();
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let reply = client
        .post(app.url("/api/v1/apps"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    read_reply(reply).await.problem(413);

    let reply = client
        .post(app.url("/api/v1/apps"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let detail = read_reply(reply).await.problem(400);
    assert!(detail.contains("not valid JSON"), "{detail}");

    let reply = client.post(app.url("/api/v1/apps")).bearer_auth(&app.token).body("{\"name\":\"x\"}").send().await.unwrap();
    let detail = read_reply(reply).await.problem(400);
    assert!(detail.contains("Content-Type"), "{detail}");

    let detail = app.get("/api/v1/apps/123").await.problem(400);
    assert!(detail.contains("UUID"), "{detail}");
    assert_eq!(app.get("/api/v1/apps").await.expect(200)["data"], json!([]), "nothing was written");
}

async fn health_metrics_and_languages(app: TestApp) {
    let client = reqwest::Client::new();
    assert_eq!(client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(app.url("/readyz")).send().await.unwrap().status(), 200);

    let languages = app.get("/api/v1/languages").await.expect(200);
    let languages = languages["data"].as_array().unwrap();
    assert_eq!(languages.len(), 30);
    assert_eq!(languages[0]["id"], "en");
    assert_eq!(languages[0]["always_on"], true);

    app.get("/api/v1/apps").await.expect(200);
    assert_eq!(client.get(app.url("/metrics")).send().await.unwrap().status(), 404, "never on the public port");
    let metrics = client.get(format!("http://{}/metrics", app.metrics_addr)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"switchboard_http_requests_total{method="GET",route="/api/v1/apps",status="200"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"switchboard_http_request_duration_seconds_count{method="GET",route="/api/v1/languages"} 1"#), "{metrics}");
    for gauge in [
        "switchboard_live_calls 0",
        "switchboard_draining 0",
        "switchboard_transcript_turns_waiting 0",
        "switchboard_automation_runs_due 0",
    ] {
        assert!(metrics.contains(gauge), "{gauge} in {metrics}");
    }

    // The OpenAPI document describes exactly the routes the router serves.
    let doc: serde_json::Value = client.get(app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase())))
        .collect();
    let expected: BTreeSet<String> = [
        "GET /healthz",
        "GET /readyz",
        "GET /api/v1/openapi.json",
        "GET /api/v1/phone-providers",
        "POST /api/v1/phone-providers",
        "GET /api/v1/phone-providers/{id}",
        "PATCH /api/v1/phone-providers/{id}",
        "DELETE /api/v1/phone-providers/{id}",
        "POST /api/v1/phone-providers/{id}/verify",
        "GET /api/v1/phone-providers/{id}/available-numbers",
        "GET /api/v1/phone-providers/{id}/incoming-numbers",
        "POST /api/v1/apps/{app_id}/phone-numbers",
        "GET /api/v1/llm-providers",
        "POST /api/v1/llm-providers",
        "GET /api/v1/llm-providers/{id}",
        "POST /api/v1/llm-providers/{id}/test",
        "PATCH /api/v1/llm-providers/{id}",
        "DELETE /api/v1/llm-providers/{id}",
        "GET /api/v1/apps",
        "POST /api/v1/apps",
        "GET /api/v1/apps/{app_id}",
        "PATCH /api/v1/apps/{app_id}",
        "DELETE /api/v1/apps/{app_id}",
        "GET /api/v1/apps/{app_id}/agents",
        "POST /api/v1/apps/{app_id}/agents",
        "GET /api/v1/agents/{id}",
        "PATCH /api/v1/agents/{id}",
        "DELETE /api/v1/agents/{id}",
        "GET /api/v1/agents/{id}/versions",
        "GET /api/v1/agents/{id}/prompt-preview",
        "GET /api/v1/apps/{app_id}/phone-numbers",
        "GET /api/v1/phone-numbers/{id}",
        "PATCH /api/v1/phone-numbers/{id}",
        "DELETE /api/v1/phone-numbers/{id}",
        "GET /api/v1/calls",
        "GET /api/v1/calls/{id}",
        "DELETE /api/v1/calls/{id}",
        "GET /api/v1/calls/{id}/events",
        "GET /api/v1/calls/{id}/automation-runs",
        "GET /api/v1/calls/{id}/recording",
        "DELETE /api/v1/calls/{id}/recording",
        "GET /api/v1/calls/{id}/recording/audio",
        "GET /api/v1/apps/{app_id}/automations",
        "POST /api/v1/apps/{app_id}/automations",
        "GET /api/v1/automations/{id}",
        "PATCH /api/v1/automations/{id}",
        "DELETE /api/v1/automations/{id}",
        "GET /api/v1/automations/{id}/runs",
        "POST /api/v1/automations/{id}/signing-secret",
        "POST /api/v1/automation-runs/{id}/retry",
        "GET /api/v1/apps/{app_id}/tickets",
        "GET /api/v1/tickets/{id}",
        "PATCH /api/v1/tickets/{id}",
        "GET /api/v1/apps/{app_id}/analytics",
        "GET /api/v1/retention",
        "PUT /api/v1/retention",
        "GET /api/v1/languages",
        "GET /api/v1/audit-log",
        "GET /api/v1/api-tokens",
        "POST /api/v1/api-tokens",
        "DELETE /api/v1/api-tokens/{id}",
        "GET /api/v1/users",
        "POST /api/v1/users",
        "PATCH /api/v1/users/{id}",
        "DELETE /api/v1/users/{id}",
        "POST /twilio/voice",
        "POST /twilio/status",
        "POST /twilio/recording",
        "POST /twilio/fallback",
        "POST /twilio/connect-action",
        "GET /twilio/relay/{call_id}",
        "GET /twilio/media/{call_id}",
        "GET /api/v1/speech-engines",
        "GET /api/v1/speech-providers",
        "POST /api/v1/speech-providers",
        "GET /api/v1/speech-providers/{id}",
        "PATCH /api/v1/speech-providers/{id}",
        "DELETE /api/v1/speech-providers/{id}",
        "GET /api/v1/cost-settings",
        "GET /api/v1/embedded-model",
        "PUT /api/v1/cost-settings",
        "GET /api/v1/spending",
        "GET /api/v1/phone-providers/{id}/prices",
        "PUT /api/v1/phone-providers/{id}/prices",
        "GET /api/v1/llm-providers/{id}/prices",
        "PUT /api/v1/llm-providers/{id}/prices",
        "GET /api/v1/speech-providers/{id}/prices",
        "PUT /api/v1/speech-providers/{id}/prices",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(documented, expected);
    // A generated client needs unique operation ids and the errors it will meet, as problems.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with(['4', '5']) && response.get("content").is_some() {
                    assert!(response["content"].get("application/problem+json").is_some(), "{method} {path} {status}: {response}");
                    assert!(response["content"].get("application/json").is_none(), "{method} {path} {status}");
                }
            }
            if path.starts_with("/api/v1/") && path != "/api/v1/openapi.json" {
                for status in ["400", "401", "500"] {
                    assert!(operation["responses"].get(status).is_some(), "{method} {path} does not document {status}");
                }
                if method != "get" {
                    assert!(operation["responses"].get("403").is_some(), "{method} {path} does not document 403");
                }
            }
        }
    }
    assert!(ids.contains("phone_providers_list") && ids.contains("calls_list"), "{ids:?}");
    // And the document is valid OpenAPI 3.1, as a standard validator reads it.
    let file = app.data_dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let output = std::process::Command::new("python3").args(["-m", "openapi_spec_validator"]).arg(&file).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "the OpenAPI document is invalid (scripts/test.sh installs openapi-spec-validator): {}{}",
        String::from_utf8_lossy(&output.stdout).chars().take(2000).collect::<String>(),
        String::from_utf8_lossy(&output.stderr).chars().take(2000).collect::<String>()
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete =
            path.replace("{app_id}", "01900000-0000-7000-8000-000000000000").replace("{id}", "01900000-0000-7000-8000-000000000000");
        for method in item.as_object().unwrap().keys() {
            let reply = app.send(method.to_uppercase().parse().unwrap(), &concrete, Some(&app.token), None).await;
            assert!(
                ![404, 405].contains(&reply.status.as_u16()) || reply.content_type == "application/problem+json",
                "{method} {path} is documented but not routed"
            );
        }
    }
}

async fn api_tokens_work_until_revoked(app: TestApp) {
    let created = app.post("/api/v1/api-tokens", json!({ "name": "ci" })).await.expect(201);
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sbt_"));
    let id = created["id"].as_str().unwrap();
    app.send(Method::GET, "/api/v1/apps", Some(&token), None).await.expect(200);

    let listed = app.get("/api/v1/api-tokens").await.expect(200);
    assert!(!listed.to_string().contains(&token), "a listed token shows its secret");
    let ci = listed["data"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap();
    assert!(ci["last_used_at"].is_string(), "use is recorded: {ci}");

    let revoked = app.delete(&format!("/api/v1/api-tokens/{id}")).await.expect(200);
    assert!(revoked["revoked_at"].is_string());
    app.send(Method::GET, "/api/v1/apps", Some(&token), None).await.problem(401);
    app.post("/api/v1/api-tokens", json!({ "name": "" })).await.problem(422);
    assert_eq!(ci["role"], "admin", "tokens act as admins unless made members");
}

/// A `member` token reads everything of its organisation and changes nothing, on every route.
async fn member_tokens_only_read(app: TestApp) {
    let member = app.post("/api/v1/api-tokens", json!({ "name": "dashboard", "role": "member" })).await.expect(201);
    assert_eq!(member["role"], "member");
    let token = member["token"].as_str().unwrap().to_owned();
    let app_id = app.create_app("Support").await;
    app.send(Method::GET, "/api/v1/apps", Some(&token), None).await.expect(200);
    app.send(Method::GET, &format!("/api/v1/apps/{app_id}/analytics"), Some(&token), None).await.expect(200);
    for (method, path, body) in [
        (Method::POST, "/api/v1/apps".to_owned(), Some(json!({ "name": "Sneaky" }))),
        (Method::PATCH, format!("/api/v1/apps/{app_id}"), Some(json!({ "name": "Renamed" }))),
        (Method::DELETE, format!("/api/v1/apps/{app_id}"), None),
        (Method::POST, "/api/v1/api-tokens".to_owned(), Some(json!({ "name": "escalate", "role": "admin" }))),
        (Method::PUT, "/api/v1/retention".to_owned(), Some(json!({ "transcript_days": 1, "record_days": 1 }))),
    ] {
        let detail = app.send(method.clone(), &path, Some(&token), body.as_ref()).await.problem(403);
        assert!(detail.contains("`member` role"), "{method} {path}: {detail}");
    }
    assert_eq!(app.get(&format!("/api/v1/apps/{app_id}")).await.expect(200)["name"], "Support", "nothing changed");
    let owner = app.post("/api/v1/api-tokens", json!({ "name": "root", "role": "owner" })).await.problem(422);
    assert!(owner.contains("`admin` or `member`"), "{owner}");
}

/// The published JSON Schema of the event payload matches the types; a published version never
/// changes in place. Run with `UPDATE_EVENT_SCHEMA=1` to write a new version's file.
#[test]
fn the_event_schema_is_published() {
    let version = switchboard::domain::event::SCHEMA_VERSION;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/events/call-event.v{version}.schema.json"));
    let generated = serde_json::to_string_pretty(&switchboard::domain::event::json_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_EVENT_SCHEMA").is_some() && !path.exists() {
        std::fs::write(&path, &generated).unwrap();
    }
    let published = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        published == generated,
        "{} differs from the payload types: add a new schema version instead of changing v{version}",
        path.display()
    );
}
