//! Phone and LLM providers: credentials are write-only, encrypted at rest, and validated.

use serde_json::{Value, json};

use crate::support::{Backend, TestApp, on_both_backends, sid};

on_both_backends!(phone_provider_secrets_never_leave, phone_provider_input_is_validated, llm_provider_keys_are_write_only);

const AUTH_TOKEN: &str = "f00dfacecafebabe0123456789abcdef";
const KEY_SECRET: &str = "sk-secret-never-shown-0123456789";

/// Every stored byte (SQLite) or every row as text (PostgreSQL) of the provider tables.
async fn stored_bytes(app: &TestApp) -> Vec<u8> {
    match app.backend {
        Backend::Sqlite => {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                if let Ok(b) = std::fs::read(app.data_dir.path().join(format!("switchboard.db{suffix}"))) {
                    bytes.extend(b);
                }
            }
            bytes
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT row_to_json(p)::text FROM phone_providers p UNION ALL SELECT row_to_json(l)::text FROM llm_providers l
                 UNION ALL SELECT row_to_json(a)::text FROM audit_log a",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert!(!rows.is_empty());
            rows.concat().into_bytes()
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn phone_provider_secrets_never_leave(app: TestApp) {
    let body = json!({
        "name": "Main Twilio",
        "account_sid": sid("AC", 'a'),
        "auth_token": AUTH_TOKEN,
        "api_key_sid": sid("SK", 'b'),
        "api_key_secret": KEY_SECRET,
    });
    app.twilio.add_account(&sid("AC", 'a'), "another-token-the-api-key-replaces");
    app.twilio.add_api_key(&sid("AC", 'a'), &sid("SK", 'b'), KEY_SECRET);
    let created = app.post("/api/v1/phone-providers", body.clone()).await.expect(201);
    assert_eq!(created["status"], "active", "verified with the API key: {created}");
    assert!(created["last_verified_at"].is_string());
    assert_eq!(created["kind"], "twilio");
    assert_eq!(created["api_key_sid"], sid("SK", 'b'));
    let id = created["id"].as_str().unwrap();

    let detail = app.post("/api/v1/phone-providers", body).await.problem(409);
    assert!(detail.contains("account SID"), "{detail}");

    let listed = app.get("/api/v1/phone-providers").await.expect(200);
    let read = app.get(&format!("/api/v1/phone-providers/{id}")).await.expect(200);
    let renamed = app.patch(&format!("/api/v1/phone-providers/{id}"), json!({ "name": "Renamed" })).await.expect(200);
    assert_eq!(renamed["name"], "Renamed");
    let log = app.get("/api/v1/audit-log").await.expect(200);
    for shown in [&created, &listed, &read, &renamed, &log] {
        let text = shown.to_string();
        assert!(!text.contains(AUTH_TOKEN) && !text.contains(KEY_SECRET), "secret in a response: {text}");
    }
    let stored = stored_bytes(&app).await;
    assert!(!contains(&stored, AUTH_TOKEN) && !contains(&stored, KEY_SECRET), "plaintext secret in the database");
    assert!(contains(&stored, &sid("AC", 'a')), "the search would find plaintext if it were there");

    // New credentials are checked at once: without the API key, this auth token is refused.
    let rotated = app
        .patch(&format!("/api/v1/phone-providers/{id}"), json!({ "auth_token": "0123456789abcdef0123456789abcdef", "api_key_sid": null }))
        .await
        .expect(200);
    assert_eq!(rotated["status"], "invalid_credentials");
    assert!(rotated["last_error"].as_str().unwrap().contains("20003"), "{rotated}");
    assert_eq!(rotated["api_key_sid"], Value::Null);

    app.delete(&format!("/api/v1/phone-providers/{id}")).await.expect(204);
    app.get(&format!("/api/v1/phone-providers/{id}")).await.problem(404);
}

async fn phone_provider_input_is_validated(app: TestApp) {
    let base = json!({ "name": "T", "account_sid": sid("AC", 'a'), "auth_token": AUTH_TOKEN });
    let cases = [
        (json!({ "account_sid": "AC123" }), "account_sid"),
        (json!({ "account_sid": sid("SK", 'a') }), "account_sid"),
        (json!({ "auth_token": "" }), "auth_token"),
        (json!({ "auth_token": "has space" }), "auth_token"),
        (json!({ "name": "" }), "name"),
        (json!({ "api_key_sid": sid("AC", 'b'), "api_key_secret": "x" }), "api_key_sid"),
        (json!({ "api_key_sid": sid("SK", 'b') }), "api_key_secret"),
        (json!({ "api_key_secret": "x" }), "api_key_sid"),
    ];
    for (changes, field) in cases {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
        let reply = app.post("/api/v1/phone-providers", body.clone()).await;
        assert_eq!(reply.body["errors"][0]["field"], field, "{body}: {}", reply.body);
        reply.problem(422);
    }
    let mut wrong_kind = base.clone();
    wrong_kind["kind"] = json!("vonage");
    let detail = app.post("/api/v1/phone-providers", wrong_kind).await.problem(400);
    assert!(detail.contains("twilio"), "{detail}");
    assert_eq!(app.get("/api/v1/phone-providers").await.expect(200)["data"], json!([]));
}

async fn llm_provider_keys_are_write_only(app: TestApp) {
    let embedded = app.get("/api/v1/embedded-model").await.expect(200);
    assert_eq!((embedded["installed"].as_bool(), embedded["in_use"].as_bool()), (Some(false), Some(false)), "no models here: {embedded}");
    assert!(embedded["description"].as_str().unwrap().contains("models install"));
    let created = app
        .post(
            "/api/v1/llm-providers",
            json!({ "name": "OpenAI", "base_url": "https://api.openai.com/v1/", "default_model": "gpt-4o-mini", "api_key": KEY_SECRET }),
        )
        .await
        .expect(201);
    assert_eq!(created["base_url"], "https://api.openai.com/v1");
    assert_eq!(created["has_api_key"], true);
    assert!(!created.to_string().contains(KEY_SECRET));
    let id = created["id"].as_str().unwrap();
    let stored = stored_bytes(&app).await;
    assert!(!contains(&stored, KEY_SECRET), "plaintext API key in the database");

    let changed =
        app.patch(&format!("/api/v1/llm-providers/{id}"), json!({ "api_key": null, "default_model": "gpt-4.1" })).await.expect(200);
    assert_eq!(changed["has_api_key"], false);
    assert_eq!(changed["default_model"], "gpt-4.1");

    for (body, field) in [
        (json!({ "name": "x", "base_url": "ftp://example.com", "default_model": "m" }), "base_url"),
        (json!({ "name": "x", "base_url": "not a url", "default_model": "m" }), "base_url"),
        (json!({ "name": "x", "base_url": "http://127.0.0.1:8000/v1", "default_model": "two words" }), "default_model"),
    ] {
        let reply = app.post("/api/v1/llm-providers", body).await;
        assert_eq!(reply.body["errors"][0]["field"], field, "{}", reply.body);
        reply.problem(422);
    }

    let app_id = app.create_app("Support").await;
    app.post(&format!("/api/v1/apps/{app_id}/agents"), json!({ "name": "Ava", "llm_provider_id": id })).await.expect(201);
    let detail = app.delete(&format!("/api/v1/llm-providers/{id}")).await.problem(409);
    assert!(detail.contains("agents"), "{detail}");
}
