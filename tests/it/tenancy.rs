//! Tenant isolation: a token of one organisation sees none of another's rows, on every resource,
//! and learns nothing about their existence (404, never 403).

use reqwest::Method;
use serde_json::json;
use switchboard::domain::audit::Actor;
use switchboard::domain::call::{CallDirection, CallStatus};
use switchboard::storage::calls::{self, NewCall};

use crate::support::{TestApp, on_both_backends, sid};

on_both_backends!(organisations_see_only_their_own_rows);

async fn organisations_see_only_their_own_rows(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let agent = app.create_agent(&app_id, "Ava").await;
    let llm = app
        .post("/api/v1/llm-providers", json!({ "name": "L", "base_url": "http://127.0.0.1:9/v1", "default_model": "m" }))
        .await
        .expect(201);
    let phone = app
        .post(
            "/api/v1/phone-providers",
            json!({ "name": "T", "account_sid": sid("AC", 'd'), "auth_token": "0123456789abcdef0123456789abcdef" }),
        )
        .await
        .expect(201);
    let number = switchboard::storage::phone_numbers::create(
        &app.db,
        app.org,
        switchboard::storage::phone_numbers::NewPhoneNumber {
            app_id: app_id.parse().map(switchboard::domain::ids::AppId).unwrap(),
            provider_id: phone["id"].as_str().unwrap().parse().map(switchboard::domain::ids::PhoneProviderId).unwrap(),
            agent_id: agent.parse().map(switchboard::domain::ids::AgentId).unwrap(),
            number: switchboard::domain::phone_number::E164::parse("number", "+14155550100").unwrap(),
            twilio_sid: None,
            area_code: None,
            expand_languages: false,
            languages: vec![],
            generate_first_message: false,
            mode: switchboard::domain::phone_number::ServiceMode::ConversationRelay,
            recording: Default::default(),
            backup: None,
            previous_voice_settings: None,
        },
        Actor::System,
    )
    .await
    .unwrap();
    let call = calls::open(
        &app.db,
        app.org,
        NewCall {
            app_id: None,
            phone_number_id: Some(number.id),
            provider_id: None,
            agent_id: None,
            agent_version: None,
            call_sid: "CA-tenancy".into(),
            from: "+14155550123".into(),
            to: "+14155550100".into(),
            direction: CallDirection::Inbound,
            status: CallStatus::Ringing,
            started_at: switchboard::domain::time::now(),
            refused_reason: None,
            is_test: false,
        },
    )
    .await
    .unwrap();
    let automation = app
        .post(
            &format!("/api/v1/apps/{app_id}/automations"),
            json!({ "name": "A", "actions": [{ "type": "webhook", "url": "https://example.com/h" }] }),
        )
        .await
        .expect(201);
    let ticket = switchboard::storage::tickets::create(
        &app.db,
        app.org,
        &switchboard::storage::tickets::NewTicket {
            app_id: app_id.parse().map(switchboard::domain::ids::AppId).unwrap(),
            call_id: Some(call.id),
            title: "T".into(),
            description: String::new(),
            priority: switchboard::domain::ticket::TicketPriority::Normal,
            status: switchboard::domain::ticket::TicketStatus::Open,
            source: "tenancy".into(),
        },
    )
    .await
    .unwrap();
    let token_list = app.get("/api/v1/api-tokens").await.expect(200);
    let token_id = token_list["data"][0]["id"].as_str().unwrap().to_owned();

    let (_, other) = app.other_org().await;
    let as_other = |method: Method, path: String| {
        let other = other.clone();
        let app = &app;
        async move { app.send(method, &path, Some(&other), Some(&json!({}))).await }
    };

    let owned = [
        format!("/api/v1/apps/{app_id}"),
        format!("/api/v1/agents/{agent}"),
        format!("/api/v1/llm-providers/{}", llm["id"].as_str().unwrap()),
        format!("/api/v1/phone-providers/{}", phone["id"].as_str().unwrap()),
        format!("/api/v1/phone-numbers/{}", number.id),
        format!("/api/v1/automations/{}", automation["id"].as_str().unwrap()),
    ];
    for path in &owned {
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            as_other(method.clone(), path.clone()).await.problem(404);
        }
    }
    for path in [
        format!("/api/v1/calls/{}", call.id),
        format!("/api/v1/agents/{agent}/versions"),
        format!("/api/v1/apps/{app_id}/agents"),
        format!("/api/v1/apps/{app_id}/phone-numbers"),
        format!("/api/v1/apps/{app_id}/automations"),
        format!("/api/v1/apps/{app_id}/tickets"),
        format!("/api/v1/apps/{app_id}/analytics"),
        format!("/api/v1/automations/{}/runs", automation["id"].as_str().unwrap()),
        format!("/api/v1/calls/{}/events", call.id),
        format!("/api/v1/tickets/{}", ticket.id),
    ] {
        as_other(Method::GET, path).await.problem(404);
    }
    as_other(Method::PATCH, format!("/api/v1/tickets/{}", ticket.id)).await.problem(404);
    as_other(Method::POST, format!("/api/v1/automations/{}/signing-secret", automation["id"].as_str().unwrap())).await.problem(404);
    as_other(Method::DELETE, format!("/api/v1/calls/{}", call.id)).await.problem(404);
    let intruder = json!({ "name": "Intruder", "actions": [{ "type": "webhook", "url": "https://example.com/h" }] });
    app.send(Method::POST, &format!("/api/v1/apps/{app_id}/automations"), Some(&other), Some(&intruder)).await.problem(404);
    app.send(Method::POST, &format!("/api/v1/apps/{app_id}/agents"), Some(&other), Some(&json!({ "name": "Intruder" }))).await.problem(404);
    as_other(Method::DELETE, format!("/api/v1/api-tokens/{token_id}")).await.problem(404);

    for list in ["/api/v1/apps", "/api/v1/llm-providers", "/api/v1/phone-providers", "/api/v1/calls"] {
        let reply = as_other(Method::GET, list.to_owned()).await.expect(200);
        assert_eq!(reply["data"], json!([]), "{list} leaks rows");
    }
    let other_log = as_other(Method::GET, "/api/v1/audit-log".to_owned()).await.expect(200);
    assert!(other_log["data"].as_array().unwrap().iter().all(|e| e["resource_id"] != app_id.as_str()));
    let other_tokens = as_other(Method::GET, "/api/v1/api-tokens".to_owned()).await.expect(200);
    assert!(other_tokens["data"].as_array().unwrap().iter().all(|t| t["id"] != token_id.as_str()));

    // Referencing another organisation's LLM provider from one's own agent is refused.
    let theirs = app.send(Method::POST, "/api/v1/apps", Some(&other), Some(&json!({ "name": "Theirs" }))).await.expect(201);
    let reply = app
        .send(
            Method::POST,
            &format!("/api/v1/apps/{}/agents", theirs["id"].as_str().unwrap()),
            Some(&other),
            Some(&json!({ "name": "X", "llm_provider_id": llm["id"] })),
        )
        .await;
    assert_eq!(reply.body["errors"][0]["field"], "llm_provider_id");
    reply.problem(422);

    // Everything of the first organisation is still there.
    for path in &owned {
        app.get(path).await.expect(200);
    }
    app.get(&format!("/api/v1/calls/{}", call.id)).await.expect(200);
    app.get(&format!("/api/v1/tickets/{}", ticket.id)).await.expect(200);
}
