//! Phone services: listing with agents and status, editing, validation and removal. Numbers are
//! stored directly here; provisioning them through the carrier is the Twilio integration's job.

use serde_json::json;
use switchboard::domain::audit::Actor;
use switchboard::domain::ids::{AgentId, AppId, PhoneProviderId};
use switchboard::domain::phone_number::{E164, ServiceMode};
use switchboard::storage::StorageError;
use switchboard::storage::phone_numbers::{self, NewPhoneNumber};

use crate::support::{TestApp, on_both_backends, sid};

on_both_backends!(phone_numbers_are_listed_edited_and_removed);

fn new_number(app: &str, provider: &str, agent: &str, number: &str) -> NewPhoneNumber {
    NewPhoneNumber {
        app_id: AppId(app.parse().unwrap()),
        provider_id: PhoneProviderId(provider.parse().unwrap()),
        agent_id: AgentId(agent.parse().unwrap()),
        number: E164::parse("number", number).unwrap(),
        // No carrier SID: these numbers exist only here, so removing one calls nobody.
        twilio_sid: None,
        area_code: None,
        expand_languages: false,
        languages: vec![],
        generate_first_message: false,
        mode: ServiceMode::ConversationRelay,
        recording: Default::default(),
        backup: None,
        previous_voice_settings: None,
    }
}

async fn phone_numbers_are_listed_edited_and_removed(app: TestApp) {
    let app_id = app.create_app("Support").await;
    let other_app = app.create_app("Sales").await;
    let ava = app.create_agent(&app_id, "Ava").await;
    let ben = app.create_agent(&app_id, "Ben").await;
    let stranger = app.create_agent(&other_app, "Cy").await;
    let provider = app
        .post(
            "/api/v1/phone-providers",
            json!({ "name": "T", "account_sid": sid("AC", 'a'), "auth_token": "0123456789abcdef0123456789abcdef" }),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let number =
        phone_numbers::create(&app.db, app.org, new_number(&app_id, &provider, &ava, "+14155550100"), Actor::System).await.unwrap();
    let duplicate = phone_numbers::create(&app.db, app.org, new_number(&app_id, &provider, &ben, "+14155550100"), Actor::System).await;
    assert!(matches!(duplicate, Err(StorageError::Conflict(_))), "one number, one service");
    let wrong_app = phone_numbers::create(&app.db, app.org, new_number(&app_id, &provider, &stranger, "+14155550101"), Actor::System).await;
    assert!(matches!(wrong_app, Err(StorageError::Invalid(ref i)) if i.field == "agent_id"));

    let listed = app.get(&format!("/api/v1/apps/{app_id}/phone-numbers")).await.expect(200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["number"], "+14155550100");
    assert_eq!(listed["data"][0]["agent_id"], ava.as_str());
    assert_eq!(listed["data"][0]["status"], "active");
    assert_eq!(listed["data"][0]["mode"], "conversation_relay");
    assert_eq!(app.get(&format!("/api/v1/apps/{other_app}/phone-numbers")).await.expect(200)["data"], json!([]));

    let path = format!("/api/v1/phone-numbers/{}", number.id);
    let refused = app.patch(&path, json!({ "agent_id": ben, "mode": "media_stream" })).await.problem(422);
    assert!(refused.contains("speech provider") && refused.contains("conversation_relay"), "{refused}");
    let changed = app
        .patch(&path, json!({ "agent_id": ben, "expand_languages": true, "languages": ["fr", "es-MX", "fr"], "mode": "conversation_relay", "status": "disabled" }))
        .await
        .expect(200);
    assert_eq!(changed["agent_id"], ben.as_str());
    assert_eq!(changed["languages"], json!(["fr", "es-MX"]));
    assert_eq!(changed["mode"], "conversation_relay");
    assert_eq!(changed["status"], "disabled");
    assert_eq!(app.get(&path).await.expect(200), changed);

    for (body, field) in [
        (json!({ "agent_id": stranger }), "agent_id"),
        (json!({ "languages": ["tlh"] }), "languages"),
        (json!({ "status": "error" }), "status"),
    ] {
        let reply = app.patch(&path, body).await;
        assert_eq!(reply.body["errors"][0]["field"], field, "{}", reply.body);
        reply.problem(422);
    }
    app.patch(&path, json!({ "mode": "sip" })).await.problem(400);
    app.patch(&path, json!({ "number": "+14155550199" })).await.problem(400);

    let detail = app.delete(&format!("/api/v1/phone-providers/{provider}")).await.problem(409);
    assert!(detail.contains("phone numbers"), "{detail}");
    let detail = app.delete(&format!("/api/v1/agents/{ben}")).await.problem(409);
    assert!(detail.contains("phone numbers"), "{detail}");

    app.delete(&path).await.expect(204);
    app.get(&path).await.problem(404);
    app.delete(&format!("/api/v1/agents/{ben}")).await.expect(204);
}
