//! LLM providers (OpenAI-compatible endpoints). The API key is stored encrypted.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::secrets::SecretSlot;
use super::{Db, Page, PageRequest, Result, StorageError, delete_owned, on_pool, on_tx};
use crate::domain::audit::Actor;
use crate::domain::ids::{LlmProviderId, OrgId};
use crate::domain::provider::LlmProvider;
use crate::domain::time;

const TABLE: &str = "llm_providers";
/// The columns every query of this module reads back.
macro_rules! columns {
    () => {
        "id, org_id, name, base_url, default_model, api_key_enc IS NOT NULL AS has_api_key, created_at, updated_at"
    };
}

/// A validated provider to create.
pub struct NewLlmProvider {
    pub name: String,
    pub base_url: String,
    pub default_model: String,
    pub api_key: Option<String>,
}

/// Validated changes; `None` leaves a field as it is. `api_key: Some(None)` removes the key.
#[derive(Default)]
pub struct LlmProviderChanges {
    pub name: Option<String>,
    pub base_url: Option<String>,
    pub default_model: Option<String>,
    pub api_key: Option<Option<String>>,
}

#[derive(sqlx::FromRow)]
struct LlmRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    base_url: String,
    default_model: String,
    has_api_key: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<LlmRow> for LlmProvider {
    fn from(r: LlmRow) -> Self {
        LlmProvider {
            id: LlmProviderId(r.id),
            org_id: OrgId(r.org_id),
            name: r.name,
            base_url: r.base_url,
            default_model: r.default_model,
            has_api_key: r.has_api_key,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn slot(org: OrgId, id: LlmProviderId) -> SecretSlot<'static> {
    SecretSlot { org: org.0, table: TABLE, row: id.0, column: "api_key" }
}

pub async fn create(db: &Db, org: OrgId, new: NewLlmProvider, actor: Actor) -> Result<LlmProvider> {
    let id = LlmProviderId::generate();
    let key_enc = new.api_key.as_ref().map(|k| db.cipher().encrypt(&slot(org, id), k));
    let sql = concat!(
        "INSERT INTO llm_providers (id, org_id, name, base_url, api_key_enc, default_model, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ",
        columns!(),
        ""
    );
    let mut tx = db.begin().await?;
    let row: LlmRow = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(id.0)
            .bind(org.0)
            .bind(&new.name)
            .bind(&new.base_url)
            .bind(&key_enc)
            .bind(&new.default_model)
            .bind(time::now())
            .fetch_one(conn)
            .await
    })?;
    let change = Change::new(
        actor,
        "llm_provider.created",
        id,
        json!({ "name": new.name, "base_url": new.base_url, "default_model": new.default_model }),
    );
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(row.into())
}

pub async fn get(db: &Db, org: OrgId, id: LlmProviderId) -> Result<LlmProvider> {
    let sql = concat!("SELECT ", columns!(), " FROM llm_providers WHERE id = $1 AND org_id = $2");
    let row: Option<LlmRow> = on_pool!(db, |pool| { sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(pool).await })?;
    row.map(LlmProvider::from).ok_or(StorageError::NotFound)
}

pub async fn list(db: &Db, org: OrgId, page: PageRequest) -> Result<Page<LlmProvider>> {
    let sql = concat!("SELECT ", columns!(), " FROM llm_providers WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3");
    let rows: Vec<LlmRow> =
        on_pool!(db, |pool| { sqlx::query_as(sql).bind(org.0).bind(page.before).bind(page.fetch_limit()).fetch_all(pool).await })?;
    Ok(Page::from_overfetch(rows.into_iter().map(LlmProvider::from).collect(), page, |p| p.id.0))
}

/// Every provider, in every organisation (for `doctor`).
pub async fn list_all(db: &Db) -> Result<Vec<LlmProvider>> {
    let sql = concat!("SELECT ", columns!(), " FROM llm_providers ORDER BY id");
    let rows: Vec<LlmRow> = on_pool!(db, |pool| sqlx::query_as(sql).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(LlmProvider::from).collect())
}

/// The provider's API key, decrypted, for calling the model.
pub async fn api_key(db: &Db, org: OrgId, id: LlmProviderId) -> Result<Option<zeroize::Zeroizing<String>>> {
    super::open_api_key(db, TABLE, org, id.0).await
}

pub async fn update(db: &Db, org: OrgId, id: LlmProviderId, changes: LlmProviderChanges, actor: Actor) -> Result<LlmProvider> {
    let (set_key, key_enc) = match &changes.api_key {
        None => (false, None),
        Some(None) => (true, None),
        Some(Some(key)) => (true, Some(db.cipher().encrypt(&slot(org, id), key))),
    };
    let sql = concat!(
        "UPDATE llm_providers SET name = COALESCE($1, name), base_url = COALESCE($2, base_url),
             default_model = COALESCE($3, default_model),
             api_key_enc = CASE WHEN $4 THEN $5 ELSE api_key_enc END, updated_at = $6
         WHERE id = $7 AND org_id = $8 RETURNING ",
        columns!(),
        ""
    );
    let mut tx = db.begin().await?;
    let row: Option<LlmRow> = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(&changes.name)
            .bind(&changes.base_url)
            .bind(&changes.default_model)
            .bind(set_key)
            .bind(&key_enc)
            .bind(time::now())
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(conn)
            .await
    })?;
    let provider = LlmProvider::from(row.ok_or(StorageError::NotFound)?);
    let change = Change::new(
        actor,
        "llm_provider.updated",
        id,
        json!({
            "name": changes.name, "base_url": changes.base_url, "default_model": changes.default_model,
            "api_key_changed": changes.api_key.is_some(),
        }),
    );
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(provider)
}

pub async fn delete(db: &Db, org: OrgId, id: LlmProviderId, actor: Actor) -> Result<()> {
    let change = Change::new(actor, "llm_provider.deleted", id, json!({}));
    delete_owned(db, org, TABLE, id.0, "agents still use this LLM provider; point them elsewhere first", change).await
}
