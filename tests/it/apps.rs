//! Apps: create, read, list with pagination, update, delete, validation and the audit trail.

use serde_json::json;

use crate::support::{TestApp, on_both_backends};

on_both_backends!(app_lifecycle_is_audited, apps_paginate_newest_first, app_input_is_validated);

async fn app_lifecycle_is_audited(app: TestApp) {
    let created = app.post("/api/v1/apps", json!({ "name": " Support line ", "description": "Inbound support" })).await.expect(201);
    assert_eq!(created["name"], "Support line");
    let id = created["id"].as_str().unwrap();

    let read = app.get(&format!("/api/v1/apps/{id}")).await.expect(200);
    assert_eq!(read, created);

    let updated = app.patch(&format!("/api/v1/apps/{id}"), json!({ "name": "Sales" })).await.expect(200);
    assert_eq!(updated["name"], "Sales");
    assert_eq!(updated["description"], "Inbound support");

    app.delete(&format!("/api/v1/apps/{id}")).await.expect(204);
    app.get(&format!("/api/v1/apps/{id}")).await.problem(404);
    app.delete(&format!("/api/v1/apps/{id}")).await.problem(404);

    let log = app.get("/api/v1/audit-log").await.expect(200);
    let actions: Vec<&str> = log["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(&actions[..3], ["app.deleted", "app.updated", "app.created"]);
    assert!(log["data"][0]["actor"].as_str().unwrap().starts_with("token:"));
    assert_eq!(log["data"][0]["resource_id"], id);
}

async fn apps_paginate_newest_first(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(app.create_app(&format!("app {i}")).await);
    }
    let (items, pages) = app.collect_pages("/api/v1/apps", 3).await;
    assert_eq!(pages, 3);
    let listed: Vec<&str> = items.iter().map(|a| a["id"].as_str().unwrap()).collect();
    ids.reverse();
    assert_eq!(listed, ids);

    app.get("/api/v1/apps?limit=0").await.problem(400);
    app.get("/api/v1/apps?limit=500").await.problem(400);
    let detail = app.get("/api/v1/apps?cursor=bogus").await.problem(400);
    assert!(detail.contains("cursor"), "{detail}");
    app.get("/api/v1/apps?colour=blue").await.problem(400);
}

async fn app_input_is_validated(app: TestApp) {
    let problem = app.post("/api/v1/apps", json!({ "name": "   " })).await;
    assert_eq!(problem.body["errors"][0]["field"], "name");
    problem.problem(422);
    let long = "x".repeat(101);
    let detail = app.post("/api/v1/apps", json!({ "name": long })).await.problem(422);
    assert!(detail.contains("limit is 100"), "{detail}");
    let detail = app.post("/api/v1/apps", json!({ "name": "A", "owner": "me" })).await.problem(400);
    assert!(detail.contains("unknown field `owner`"), "{detail}");
    let detail = app.post("/api/v1/apps", json!({ "name": 5 })).await.problem(400);
    assert!(detail.contains("name"), "{detail}");
    // Nothing was half-written by the failures above.
    assert_eq!(app.get("/api/v1/apps").await.expect(200)["data"].as_array().unwrap().len(), 0);
}
