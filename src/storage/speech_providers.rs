//! Speech providers (the vendors Media Streams calls hear and speak through). The API key is
//! stored encrypted; the models and voice are plain settings.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::secrets::SecretSlot;
use super::{Db, Page, PageRequest, Result, StorageError, delete_owned, on_pool, on_tx, parse_stored};
use crate::domain::audit::Actor;
use crate::domain::ids::{OrgId, SpeechProviderId};
use crate::domain::provider::{SpeechProvider, SpeechProviderKind};
use crate::domain::time;

const TABLE: &str = "speech_providers";
/// The columns every query of this module reads back.
macro_rules! columns {
    () => {
        "id, org_id, name, kind, base_url, transcription_model, speech_model, default_voice,
         api_key_enc IS NOT NULL AS has_api_key, created_at, updated_at"
    };
}

/// A provider's validated settings, everything but its key (which is written separately).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SpeechSettings {
    pub name: String,
    pub base_url: String,
    pub transcription_model: Option<String>,
    pub speech_model: Option<String>,
    pub default_voice: Option<String>,
}

impl SpeechSettings {
    /// The settings a provider has now.
    pub fn of(provider: &SpeechProvider) -> Self {
        SpeechSettings {
            name: provider.name.clone(),
            base_url: provider.base_url.clone(),
            transcription_model: provider.transcription_model.clone(),
            speech_model: provider.speech_model.clone(),
            default_voice: provider.default_voice.clone(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct SpeechRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    kind: String,
    base_url: String,
    transcription_model: Option<String>,
    speech_model: Option<String>,
    default_voice: Option<String>,
    has_api_key: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SpeechRow> for SpeechProvider {
    type Error = StorageError;

    fn try_from(r: SpeechRow) -> Result<Self> {
        Ok(SpeechProvider {
            id: SpeechProviderId(r.id),
            org_id: OrgId(r.org_id),
            name: r.name,
            kind: parse_stored("speech_providers.kind", &r.kind)?,
            base_url: r.base_url,
            transcription_model: r.transcription_model,
            speech_model: r.speech_model,
            default_voice: r.default_voice,
            has_api_key: r.has_api_key,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn slot(org: OrgId, id: SpeechProviderId) -> SecretSlot<'static> {
    SecretSlot { org: org.0, table: TABLE, row: id.0, column: "api_key" }
}

/// Stores a provider whose settings (and key) were verified against the vendor.
pub async fn create(
    db: &Db,
    org: OrgId,
    kind: SpeechProviderKind,
    settings: SpeechSettings,
    api_key: Option<&str>,
    actor: Actor,
) -> Result<SpeechProvider> {
    let id = SpeechProviderId::generate();
    let key_enc = api_key.map(|k| db.cipher().encrypt(&slot(org, id), k));
    let sql = concat!(
        "INSERT INTO speech_providers (id, org_id, name, kind, base_url, api_key_enc, transcription_model, speech_model,
             default_voice, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING ",
        columns!()
    );
    let mut tx = db.begin().await?;
    let row: SpeechRow = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(id.0)
            .bind(org.0)
            .bind(&settings.name)
            .bind(kind.as_str())
            .bind(&settings.base_url)
            .bind(&key_enc)
            .bind(&settings.transcription_model)
            .bind(&settings.speech_model)
            .bind(&settings.default_voice)
            .bind(time::now())
            .fetch_one(conn)
            .await
    })?;
    let mut details = json!(settings);
    details["kind"] = json!(kind);
    audit::record(&mut tx, org, Change::new(actor, "speech_provider.created", id, details)).await?;
    tx.commit().await?;
    row.try_into()
}

pub async fn get(db: &Db, org: OrgId, id: SpeechProviderId) -> Result<SpeechProvider> {
    let sql = concat!("SELECT ", columns!(), " FROM speech_providers WHERE id = $1 AND org_id = $2");
    let row: Option<SpeechRow> = on_pool!(db, |pool| { sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(pool).await })?;
    row.ok_or(StorageError::NotFound)?.try_into()
}

pub async fn list(db: &Db, org: OrgId, page: PageRequest) -> Result<Page<SpeechProvider>> {
    let sql =
        concat!("SELECT ", columns!(), " FROM speech_providers WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3");
    let rows: Vec<SpeechRow> =
        on_pool!(db, |pool| { sqlx::query_as(sql).bind(org.0).bind(page.before).bind(page.fetch_limit()).fetch_all(pool).await })?;
    let providers = rows.into_iter().map(SpeechProvider::try_from).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(providers, page, |p| p.id.0))
}

/// The provider's API key, decrypted, for calling the vendor.
pub async fn api_key(db: &Db, org: OrgId, id: SpeechProviderId) -> Result<Option<zeroize::Zeroizing<String>>> {
    super::open_api_key(db, TABLE, org, id.0).await
}

/// Replaces the provider's settings; `api_key: Some(None)` removes the key, `None` keeps it.
pub async fn update(
    db: &Db,
    org: OrgId,
    id: SpeechProviderId,
    settings: SpeechSettings,
    api_key: Option<Option<&str>>,
    actor: Actor,
) -> Result<SpeechProvider> {
    let key_enc = api_key.flatten().map(|key| db.cipher().encrypt(&slot(org, id), key));
    let sql = concat!(
        "UPDATE speech_providers SET name = $1, base_url = $2, transcription_model = $3, speech_model = $4, default_voice = $5,
             api_key_enc = CASE WHEN $6 THEN $7 ELSE api_key_enc END, updated_at = $8
         WHERE id = $9 AND org_id = $10 RETURNING ",
        columns!()
    );
    let mut tx = db.begin().await?;
    let row: Option<SpeechRow> = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(&settings.name)
            .bind(&settings.base_url)
            .bind(&settings.transcription_model)
            .bind(&settings.speech_model)
            .bind(&settings.default_voice)
            .bind(api_key.is_some())
            .bind(&key_enc)
            .bind(time::now())
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(conn)
            .await
    })?;
    let provider = SpeechProvider::try_from(row.ok_or(StorageError::NotFound)?)?;
    let mut details = json!(settings);
    details["api_key_changed"] = json!(api_key.is_some());
    audit::record(&mut tx, org, Change::new(actor, "speech_provider.updated", id, details)).await?;
    tx.commit().await?;
    Ok(provider)
}

pub async fn delete(db: &Db, org: OrgId, id: SpeechProviderId, actor: Actor) -> Result<()> {
    let change = Change::new(actor, "speech_provider.deleted", id, json!({}));
    delete_owned(db, org, TABLE, id.0, "agents still use this speech provider; point them elsewhere first", change).await
}
