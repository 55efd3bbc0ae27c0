//! Phone numbers (phone services): which agent answers a number, through which provider.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::{Db, Page, PageRequest, Result, StorageError, Tx, apps, on_pool, on_tx, parse_stored};
use crate::domain::audit::Actor;
use crate::domain::ids::{AgentId, AppId, OrgId, PhoneNumberId, PhoneProviderId};
use crate::domain::phone_number::{AreaCode, Backup, E164, PhoneNumber, ServiceMode, ServiceStatus};
use crate::domain::recording::RecordingSettings;
use crate::domain::time;
use crate::domain::validation::Invalid;

/// The columns every query of this module reads back.
macro_rules! columns {
    () => {
        "id, org_id, app_id, provider_id, agent_id, number, twilio_sid, area_code, expand_languages, languages,
         generate_first_message, generated_first_message, mode, status, recording, backup, created_at, updated_at"
    };
}

/// A validated phone service to store.
pub struct NewPhoneNumber {
    pub app_id: AppId,
    pub provider_id: PhoneProviderId,
    pub agent_id: AgentId,
    pub number: E164,
    pub twilio_sid: Option<String>,
    pub area_code: Option<AreaCode>,
    pub expand_languages: bool,
    pub languages: Vec<String>,
    pub generate_first_message: bool,
    pub mode: ServiceMode,
    pub recording: RecordingSettings,
    pub backup: Option<Backup>,
    /// The number's voice settings before we attached it, restored when it is detached.
    pub previous_voice_settings: Option<serde_json::Value>,
}

/// Validated changes; `None` leaves a field as it is.
#[derive(Default)]
pub struct PhoneNumberChanges {
    pub agent_id: Option<AgentId>,
    pub expand_languages: Option<bool>,
    pub languages: Option<Vec<String>>,
    pub generate_first_message: Option<bool>,
    pub mode: Option<ServiceMode>,
    pub status: Option<ServiceStatus>,
    pub recording: Option<RecordingSettings>,
    /// `Some(None)` removes the backup.
    pub backup: Option<Option<Backup>>,
}

#[derive(sqlx::FromRow)]
struct NumberRow {
    id: Uuid,
    org_id: Uuid,
    app_id: Uuid,
    provider_id: Uuid,
    agent_id: Uuid,
    number: String,
    twilio_sid: Option<String>,
    area_code: Option<String>,
    expand_languages: bool,
    languages: Json<Vec<String>>,
    generate_first_message: bool,
    generated_first_message: Option<String>,
    mode: String,
    status: String,
    recording: Option<Json<RecordingSettings>>,
    backup: Option<Json<Backup>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl NumberRow {
    fn into_domain(self) -> Result<PhoneNumber> {
        let corrupt = |e: Invalid| StorageError::Corrupt(e.to_string());
        Ok(PhoneNumber {
            id: PhoneNumberId(self.id),
            org_id: OrgId(self.org_id),
            app_id: AppId(self.app_id),
            provider_id: PhoneProviderId(self.provider_id),
            agent_id: AgentId(self.agent_id),
            number: E164::parse("number", &self.number).map_err(corrupt)?,
            twilio_sid: self.twilio_sid,
            area_code: self.area_code.as_deref().map(AreaCode::parse).transpose().map_err(corrupt)?,
            expand_languages: self.expand_languages,
            languages: self.languages.0,
            generate_first_message: self.generate_first_message,
            generated_first_message: self.generated_first_message,
            mode: parse_stored("mode", &self.mode)?,
            status: parse_stored("status", &self.status)?,
            recording: self.recording.map(|json| json.0).unwrap_or_default(),
            backup: self.backup.map(|json| json.0),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Refuses an agent that is not in `app` of the organisation, with a field error.
async fn check_agent_in_app(tx: &mut Tx, org: OrgId, app: AppId, agent: AgentId) -> Result<()> {
    let found: Option<i32> = on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT 1 FROM agents WHERE id = $1 AND app_id = $2 AND org_id = $3")
            .bind(agent.0)
            .bind(app.0)
            .bind(org.0)
            .fetch_optional(conn)
            .await
    })?;
    found.map(|_| ()).ok_or_else(|| Invalid::new("agent_id", format!("no agent {agent} in this app")).into())
}

pub async fn create(db: &Db, org: OrgId, new: NewPhoneNumber, actor: Actor) -> Result<PhoneNumber> {
    let id = PhoneNumberId::generate();
    let mut tx = db.begin().await?;
    apps::ensure_exists(&mut tx, org, new.app_id).await?;
    check_agent_in_app(&mut tx, org, new.app_id, new.agent_id).await?;
    let provider: Option<i32> = on_tx!(&mut tx, |conn| {
        sqlx::query_scalar("SELECT 1 FROM phone_providers WHERE id = $1 AND org_id = $2")
            .bind(new.provider_id.0)
            .bind(org.0)
            .fetch_optional(conn)
            .await
    })?;
    if provider.is_none() {
        return Err(Invalid::new("provider_id", format!("no phone provider {} in this organisation", new.provider_id)).into());
    }
    let sql = concat!(
        "INSERT INTO phone_numbers (id, org_id, app_id, provider_id, agent_id, number, twilio_sid, area_code,
             expand_languages, languages, generate_first_message, mode, status, previous_voice_settings, recording, backup, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17) RETURNING ",
        columns!()
    );
    let row: NumberRow = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(id.0)
            .bind(org.0)
            .bind(new.app_id.0)
            .bind(new.provider_id.0)
            .bind(new.agent_id.0)
            .bind(new.number.as_str())
            .bind(&new.twilio_sid)
            .bind(new.area_code.as_ref().map(AreaCode::as_str))
            .bind(new.expand_languages)
            .bind(Json(&new.languages))
            .bind(new.generate_first_message)
            .bind(new.mode.as_str())
            .bind(ServiceStatus::Active.as_str())
            .bind(new.previous_voice_settings.as_ref().map(Json))
            .bind(Json(&new.recording))
            .bind(new.backup.as_ref().map(Json))
            .bind(time::now())
            .fetch_one(conn)
            .await
    })
    .map_err(|e| StorageError::conflict_on_unique(e, "this number already serves a phone service; remove that one first"))?;
    let number = row.into_domain()?;
    let change = Change::new(
        actor,
        "phone_number.created",
        id,
        json!({ "number": number.number, "agent_id": number.agent_id, "app_id": number.app_id }),
    );
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(number)
}

pub async fn get(db: &Db, org: OrgId, id: PhoneNumberId) -> Result<PhoneNumber> {
    let sql = concat!("SELECT ", columns!(), " FROM phone_numbers WHERE id = $1 AND org_id = $2");
    let row: Option<NumberRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(pool).await)?;
    row.ok_or(StorageError::NotFound)?.into_domain()
}

/// Finds the phone service of a number, whatever its organisation: an incoming call names only
/// the number dialled, and numbers are unique across the platform.
pub async fn find_by_number(db: &Db, number: &str) -> Result<Option<PhoneNumber>> {
    let sql = concat!("SELECT ", columns!(), " FROM phone_numbers WHERE number = $1");
    let row: Option<NumberRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(number).fetch_optional(pool).await)?;
    row.map(NumberRow::into_domain).transpose()
}

/// Every service, in every organisation, by number: what the operator's commands (`models
/// list`, `doctor`) look over.
pub async fn all(db: &Db) -> Result<Vec<PhoneNumber>> {
    let sql = concat!("SELECT ", columns!(), " FROM phone_numbers ORDER BY number");
    let rows: Vec<NumberRow> = on_pool!(db, |pool| sqlx::query_as(sql).fetch_all(pool).await)?;
    rows.into_iter().map(NumberRow::into_domain).collect()
}

/// The app's numbers, newest first. An app of another organisation is `NotFound`.
pub async fn list(db: &Db, org: OrgId, app: AppId, page: PageRequest) -> Result<Page<PhoneNumber>> {
    apps::get(db, org, app).await?;
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM phone_numbers
         WHERE org_id = $1 AND app_id = $2 AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    );
    let rows: Vec<NumberRow> = on_pool!(db, |pool| {
        sqlx::query_as(sql).bind(org.0).bind(app.0).bind(page.before).bind(page.fetch_limit()).fetch_all(pool).await
    })?;
    let numbers = rows.into_iter().map(NumberRow::into_domain).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(numbers, page, |n| n.id.0))
}

/// The voice settings the number had before we attached it, if we attached it.
pub async fn previous_voice_settings(db: &Db, org: OrgId, id: PhoneNumberId) -> Result<Option<serde_json::Value>> {
    let row: Option<Option<Json<serde_json::Value>>> = on_pool!(db, |pool| {
        sqlx::query_scalar("SELECT previous_voice_settings FROM phone_numbers WHERE id = $1 AND org_id = $2")
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.ok_or(StorageError::NotFound)?.map(|json| json.0))
}

/// Caches a generated first message, unless the service's agent changed meanwhile (the
/// greeting would be for the wrong agent).
pub async fn set_generated_first_message(db: &Db, org: OrgId, id: PhoneNumberId, agent: AgentId, greeting: &str) -> Result<()> {
    on_pool!(db, |pool| {
        sqlx::query("UPDATE phone_numbers SET generated_first_message = $1 WHERE id = $2 AND org_id = $3 AND agent_id = $4")
            .bind(greeting)
            .bind(id.0)
            .bind(org.0)
            .bind(agent.0)
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Forgets the generated greetings of the agent's services (the agent changed); returns the
/// services that generate one, to write them again.
pub async fn forget_generated_greetings(db: &Db, org: OrgId, agent: AgentId) -> Result<Vec<PhoneNumberId>> {
    let ids: Vec<Uuid> = on_pool!(db, |pool| {
        sqlx::query_scalar(
            "UPDATE phone_numbers SET generated_first_message = NULL
             WHERE org_id = $1 AND agent_id = $2 AND generate_first_message = $3 RETURNING id",
        )
        .bind(org.0)
        .bind(agent.0)
        .bind(true)
        .fetch_all(pool)
        .await
    })?;
    Ok(ids.into_iter().map(PhoneNumberId).collect())
}

/// The numbers `agent` answers.
pub async fn answered_by(db: &Db, org: OrgId, agent: AgentId) -> Result<Vec<PhoneNumberId>> {
    let ids: Vec<Uuid> = on_pool!(db, |pool| {
        sqlx::query_scalar("SELECT id FROM phone_numbers WHERE org_id = $1 AND agent_id = $2 ORDER BY id")
            .bind(org.0)
            .bind(agent.0)
            .fetch_all(pool)
            .await
    })?;
    Ok(ids.into_iter().map(PhoneNumberId).collect())
}

/// Call counts of one number.
#[derive(Clone, Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct CallActivity {
    /// Calls since midnight UTC.
    pub calls_today: i64,
    pub calls_last_7_days: i64,
    pub last_call_at: Option<DateTime<Utc>>,
}

/// Call activity of every number of the app that has had calls, keyed by number id, in one
/// query (calls carry the app of the number that took them).
pub async fn call_activity(db: &Db, org: OrgId, app: AppId) -> Result<std::collections::HashMap<PhoneNumberId, CallActivity>> {
    let now = time::now();
    let midnight = now.date_naive().and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let week_ago = now - chrono::Duration::days(7);
    let rows: Vec<(Uuid, i64, i64, Option<DateTime<Utc>>)> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT phone_number_id, COUNT(*) FILTER (WHERE started_at >= $3), COUNT(*) FILTER (WHERE started_at >= $4), MAX(started_at)
             FROM calls WHERE org_id = $1 AND app_id = $2 AND phone_number_id IS NOT NULL GROUP BY phone_number_id",
        )
        .bind(org.0)
        .bind(app.0)
        .bind(midnight)
        .bind(week_ago)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(id, today, week, last)| {
            (PhoneNumberId(id), CallActivity { calls_today: today, calls_last_7_days: week, last_call_at: last })
        })
        .collect())
}

/// Applies changes; they take effect from the next call.
pub async fn update(db: &Db, org: OrgId, id: PhoneNumberId, changes: PhoneNumberChanges, actor: Actor) -> Result<PhoneNumber> {
    let current = get(db, org, id).await?;
    let mut tx = db.begin().await?;
    if let Some(agent) = changes.agent_id {
        check_agent_in_app(&mut tx, org, current.app_id, agent).await?;
    }
    // A new agent or new toggles make a cached generated first message stale.
    let stale_greeting = changes.agent_id.is_some() || changes.generate_first_message.is_some() || changes.languages.is_some();
    let sql = concat!(
        "UPDATE phone_numbers SET agent_id = COALESCE($1, agent_id), expand_languages = COALESCE($2, expand_languages),
             languages = COALESCE($3, languages), generate_first_message = COALESCE($4, generate_first_message),
             mode = COALESCE($5, mode), status = COALESCE($6, status),
             generated_first_message = CASE WHEN $7 THEN NULL ELSE generated_first_message END, updated_at = $8,
             recording = COALESCE($11, recording), backup = CASE WHEN $12 THEN $13 ELSE backup END
         WHERE id = $9 AND org_id = $10 RETURNING ",
        columns!()
    );
    let row: Option<NumberRow> = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(changes.agent_id.map(|a| a.0))
            .bind(changes.expand_languages)
            .bind(changes.languages.as_ref().map(Json))
            .bind(changes.generate_first_message)
            .bind(changes.mode.map(ServiceMode::as_str))
            .bind(changes.status.map(ServiceStatus::as_str))
            .bind(stale_greeting)
            .bind(time::now())
            .bind(id.0)
            .bind(org.0)
            .bind(changes.recording.as_ref().map(Json))
            .bind(changes.backup.is_some())
            .bind(changes.backup.as_ref().and_then(|b| b.as_ref().map(Json)))
            .fetch_optional(conn)
            .await
    })?;
    let number = row.ok_or(StorageError::NotFound)?.into_domain()?;
    let change = Change::new(
        actor,
        "phone_number.updated",
        id,
        json!({
            "agent_id": changes.agent_id, "expand_languages": changes.expand_languages, "languages": changes.languages,
            "generate_first_message": changes.generate_first_message, "mode": changes.mode, "status": changes.status,
            "recording": changes.recording, "backup": changes.backup,
        }),
    );
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(number)
}

/// Removes the phone service from the platform (the carrier side is the caller's business);
/// `released` records whether the number was also given back to the carrier.
pub async fn delete(db: &Db, org: OrgId, id: PhoneNumberId, actor: Actor, released: bool) -> Result<()> {
    let change = Change::new(actor, "phone_number.deleted", id, json!({ "released": released }));
    super::delete_owned(db, org, "phone_numbers", id.0, "the phone number is still referenced", change).await
}
