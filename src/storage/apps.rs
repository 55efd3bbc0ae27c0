//! Apps.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::{Db, Page, PageRequest, Result, StorageError, Tx, delete_owned, on_pool, on_tx};
use crate::domain::app::{App, AppSpec};
use crate::domain::audit::Actor;
use crate::domain::ids::{AppId, OrgId};
use crate::domain::time;

#[derive(sqlx::FromRow)]
struct AppRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    description: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<AppRow> for App {
    fn from(r: AppRow) -> Self {
        App {
            id: AppId(r.id),
            org_id: OrgId(r.org_id),
            name: r.name,
            description: r.description,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub async fn create(db: &Db, org: OrgId, spec: AppSpec, actor: Actor) -> Result<App> {
    let now = time::now();
    let app = App { id: AppId::generate(), org_id: org, name: spec.name, description: spec.description, created_at: now, updated_at: now };
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, |conn| {
        sqlx::query("INSERT INTO apps (id, org_id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
            .bind(app.id.0)
            .bind(org.0)
            .bind(&app.name)
            .bind(&app.description)
            .bind(now)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    let change = Change::new(actor, "app.created", app.id, json!({ "name": app.name }));
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(app)
}

pub async fn get(db: &Db, org: OrgId, id: AppId) -> Result<App> {
    let row: Option<AppRow> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT id, org_id, name, description, created_at, updated_at FROM apps WHERE id = $1 AND org_id = $2")
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(pool)
            .await
    })?;
    row.map(App::from).ok_or(StorageError::NotFound)
}

/// Fails with `NotFound` unless the app exists in the organisation; used inside a change's
/// transaction so the check and the change see the same state.
pub(crate) async fn ensure_exists(tx: &mut Tx, org: OrgId, id: AppId) -> Result<()> {
    let found: Option<i32> = on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT 1 FROM apps WHERE id = $1 AND org_id = $2").bind(id.0).bind(org.0).fetch_optional(conn).await
    })?;
    found.map(|_| ()).ok_or(StorageError::NotFound)
}

pub async fn list(db: &Db, org: OrgId, page: PageRequest) -> Result<Page<App>> {
    let rows: Vec<AppRow> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT id, org_id, name, description, created_at, updated_at FROM apps
             WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(org.0)
        .bind(page.before)
        .bind(page.fetch_limit())
        .fetch_all(pool)
        .await
    })?;
    Ok(Page::from_overfetch(rows.into_iter().map(App::from).collect(), page, |a| a.id.0))
}

pub async fn update(db: &Db, org: OrgId, id: AppId, spec: AppSpec, actor: Actor) -> Result<App> {
    let mut tx = db.begin().await?;
    let row: Option<AppRow> = on_tx!(&mut tx, |conn| {
        sqlx::query_as(
            "UPDATE apps SET name = $1, description = $2, updated_at = $3 WHERE id = $4 AND org_id = $5
             RETURNING id, org_id, name, description, created_at, updated_at",
        )
        .bind(&spec.name)
        .bind(&spec.description)
        .bind(time::now())
        .bind(id.0)
        .bind(org.0)
        .fetch_optional(conn)
        .await
    })?;
    let app = App::from(row.ok_or(StorageError::NotFound)?);
    let change = Change::new(actor, "app.updated", id, json!({ "name": app.name }));
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(app)
}

pub async fn delete(db: &Db, org: OrgId, id: AppId, actor: Actor) -> Result<()> {
    let change = Change::new(actor, "app.deleted", id, json!({}));
    delete_owned(db, org, "apps", id.0, "the app still has agents or phone numbers; remove them first", change).await
}
