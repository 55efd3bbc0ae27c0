//! Agents: defaults, validation, versions on every change, optimistic concurrency and deletion.

use serde_json::json;

use crate::support::{TestApp, on_both_backends};

on_both_backends!(
    agents_are_versioned,
    agent_input_is_validated,
    agents_in_use_cannot_be_deleted,
    prompt_preview_shows_what_the_model_gets
);

async fn agents_are_versioned(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let llm = app
        .post("/api/v1/llm-providers", json!({ "name": "local", "base_url": "http://127.0.0.1:9/v1", "default_model": "qwen" }))
        .await
        .expect(201);
    let body = json!({
        "name": "Ava",
        "instructions": "You answer billing questions.",
        "phone_instructions": "Keep answers short.",
        "first_message": "Hi, this is Ava from Acme. How can I help?",
        "llm_provider_id": llm["id"],
        "temperature": 0.4,
        "tools": ["switchLanguage"],
    });
    let agent = app.post(&format!("/api/v1/apps/{app_id}/agents"), body).await.expect(201);
    assert_eq!(agent["version"], 1);
    assert_eq!(agent["conversation_timeout_secs"], 30);
    assert_eq!(agent["max_call_duration_secs"], 1800);
    assert_eq!(agent["tools"], json!(["endConversation", "switchLanguage"]));
    assert_eq!(agent["app_id"], app_id.as_str());
    let id = agent["id"].as_str().unwrap();

    let changed =
        app.patch(&format!("/api/v1/agents/{id}"), json!({ "conversation_timeout_secs": 45, "temperature": null })).await.expect(200);
    assert_eq!(changed["version"], 2);
    assert_eq!(changed["conversation_timeout_secs"], 45);
    assert_eq!(changed["temperature"], serde_json::Value::Null);
    assert_eq!(changed["first_message"], agent["first_message"]);

    let unchanged = app.patch(&format!("/api/v1/agents/{id}"), json!({ "conversation_timeout_secs": 45 })).await.expect(200);
    assert_eq!(unchanged["version"], 2, "a no-op change makes no version");

    let versions = app.get(&format!("/api/v1/agents/{id}/versions")).await.expect(200);
    let versions = versions["data"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[1]["spec"]["conversation_timeout_secs"], 30);
    assert_eq!(versions[1]["spec"]["temperature"], 0.4);

    let listed = app.get(&format!("/api/v1/apps/{app_id}/agents")).await.expect(200);
    assert_eq!(listed["data"][0]["id"], id);
    assert_eq!(listed["data"][0]["version"], 2);
}

async fn agent_input_is_validated(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let path = format!("/api/v1/apps/{app_id}/agents");
    let cases = [
        (json!({ "instructions": "no name" }), "name"),
        (json!({ "name": "A", "conversation_timeout_secs": 2 }), "conversation_timeout_secs"),
        (json!({ "name": "A", "max_call_duration_secs": 100000 }), "max_call_duration_secs"),
        (json!({ "name": "A", "temperature": 2.5 }), "temperature"),
        (json!({ "name": "A", "tools": ["transferCall"] }), "transfer_number"),
        (json!({ "name": "A", "transfer_number": "555-0100" }), "transfer_number"),
        (json!({ "name": "A", "first_message": "x".repeat(1001) }), "first_message"),
        (json!({ "name": "A", "llm_provider_id": "01900000-0000-7000-8000-000000000000" }), "llm_provider_id"),
    ];
    for (body, field) in cases {
        let reply = app.post(&path, body.clone()).await;
        assert_eq!(reply.body["errors"][0]["field"], field, "{body}: {}", reply.body);
        reply.problem(422);
    }
    let detail = app.post(&path, json!({ "name": "A", "tools": ["hangUp"] })).await.problem(400);
    assert!(detail.contains("hangUp"), "{detail}");
    let detail = app.post(&path, json!({ "name": "A", "promt": "typo" })).await.problem(400);
    assert!(detail.contains("unknown field `promt`"), "{detail}");
    app.post("/api/v1/apps/01900000-0000-7000-8000-000000000000/agents", json!({ "name": "A" })).await.problem(404);
    app.get("/api/v1/agents/not-a-uuid").await.problem(400);
    assert_eq!(app.get(&path).await.expect(200)["data"].as_array().unwrap().len(), 0);
}

async fn agents_in_use_cannot_be_deleted(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let agent = app.create_agent(&app_id, "Ava").await;
    let detail = app.delete(&format!("/api/v1/apps/{app_id}")).await.problem(409);
    assert!(detail.contains("agents"), "{detail}");
    app.delete(&format!("/api/v1/agents/{agent}")).await.expect(204);
    app.get(&format!("/api/v1/agents/{agent}")).await.problem(404);
    app.delete(&format!("/api/v1/apps/{app_id}")).await.expect(204);
}

async fn prompt_preview_shows_what_the_model_gets(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let body = json!({ "name": "Ava", "instructions": "You sell tickets.", "phone_instructions": "Spell out prices.", "end_call_instructions": "Confirm the booking first.", "tools": ["switchLanguage"] });
    let agent = app.post(&format!("/api/v1/apps/{app_id}/agents"), body).await.expect(201)["id"].as_str().unwrap().to_owned();
    let preview = app.get(&format!("/api/v1/agents/{agent}/prompt-preview?caller=%2B14155550123&languages=fr,es-MX")).await.expect(200);
    let prompt = preview["system_prompt"].as_str().unwrap();
    for part in ["You are Ava", "You sell tickets.", "Spell out prices.", "Confirm the booking first.", "fr-FR, es-MX", "+14155550123"] {
        assert!(prompt.contains(part), "`{part}` missing:\n{prompt}");
    }
    let tools: Vec<&str> = preview["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(tools, ["endConversation", "switchLanguage"]);
    let english_only = app.get(&format!("/api/v1/agents/{agent}/prompt-preview")).await.expect(200);
    assert!(english_only["system_prompt"].as_str().unwrap().contains("Speak English."));
    app.get(&format!("/api/v1/agents/{agent}/prompt-preview?languages=tlh")).await.problem(422);
    app.get(&format!("/api/v1/agents/{agent}/prompt-preview?caller=555")).await.problem(422);
}
