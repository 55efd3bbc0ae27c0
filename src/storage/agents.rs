//! Agents and their version history. The editable settings are stored as one JSON document (the
//! `AgentSpec`); each change writes the new version to `agent_versions` in the same transaction.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::{Db, Page, PageRequest, Result, StorageError, Tx, apps, delete_owned, on_pool, on_tx};
use crate::domain::agent::{Agent, AgentSpec, AgentVersion};
use crate::domain::audit::Actor;
use crate::domain::ids::{AgentId, AppId, OrgId};
use crate::domain::time;
use crate::domain::validation::Invalid;

/// The columns every query of this module reads back.
macro_rules! columns {
    () => {
        "id, org_id, app_id, spec, version, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    org_id: Uuid,
    app_id: Uuid,
    spec: Json<AgentSpec>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<AgentRow> for Agent {
    fn from(r: AgentRow) -> Self {
        Agent {
            id: AgentId(r.id),
            org_id: OrgId(r.org_id),
            app_id: AppId(r.app_id),
            spec: r.spec.0,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Refuses providers of another organisation (or none at all), and speech providers that cannot
/// do their job, with a field error.
async fn check_providers(tx: &mut Tx, org: OrgId, spec: &AgentSpec) -> Result<()> {
    if let Some(provider) = spec.llm_provider_id
        && !provider_row_exists(tx, org, "SELECT 1 FROM llm_providers WHERE id = $1 AND org_id = $2", provider.0).await?
    {
        return Err(Invalid::new("llm_provider_id", format!("no LLM provider {provider} in this organisation")).into());
    }
    let speech = [
        (
            spec.speech.speech_to_text_provider_id,
            "speech.speech_to_text_provider_id",
            "SELECT 1 FROM speech_providers WHERE id = $1 AND org_id = $2 AND transcription_model IS NOT NULL",
            "that transcribes (has a transcription model)",
        ),
        (
            spec.speech.text_to_speech_provider_id,
            "speech.text_to_speech_provider_id",
            "SELECT 1 FROM speech_providers WHERE id = $1 AND org_id = $2 AND speech_model IS NOT NULL",
            "that speaks (has a speech model)",
        ),
    ];
    for (provider, field, sql, able) in speech {
        if let Some(provider) = provider
            && !provider_row_exists(tx, org, sql, provider.0).await?
        {
            return Err(Invalid::new(field, format!("no speech provider {provider} {able} in this organisation")).into());
        }
    }
    Ok(())
}

async fn provider_row_exists(tx: &mut Tx, org: OrgId, sql: &'static str, id: Uuid) -> Result<bool> {
    let found: Option<i32> = on_tx!(tx, |conn| sqlx::query_scalar(sql).bind(id).bind(org.0).fetch_optional(conn).await)?;
    Ok(found.is_some())
}

async fn insert_version(tx: &mut Tx, org: OrgId, agent: &Agent) -> Result<()> {
    on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO agent_versions (agent_id, org_id, version, spec, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(agent.id.0)
            .bind(org.0)
            .bind(agent.version)
            .bind(Json(&agent.spec))
            .bind(agent.updated_at)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Creates an agent (version 1) in an app of the organisation.
pub async fn create(db: &Db, org: OrgId, app: AppId, spec: AgentSpec, actor: Actor) -> Result<Agent> {
    let now = time::now();
    let agent = Agent { id: AgentId::generate(), org_id: org, app_id: app, spec, version: 1, created_at: now, updated_at: now };
    let mut tx = db.begin().await?;
    apps::ensure_exists(&mut tx, org, app).await?;
    check_providers(&mut tx, org, &agent.spec).await?;
    on_tx!(&mut tx, |conn| {
        sqlx::query(
            "INSERT INTO agents (id, org_id, app_id, name, llm_provider_id, speech_to_text_provider_id, text_to_speech_provider_id,
                 spec, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(agent.id.0)
        .bind(org.0)
        .bind(app.0)
        .bind(&agent.spec.name)
        .bind(agent.spec.llm_provider_id.map(|p| p.0))
        .bind(agent.spec.speech.speech_to_text_provider_id.map(|p| p.0))
        .bind(agent.spec.speech.text_to_speech_provider_id.map(|p| p.0))
        .bind(Json(&agent.spec))
        .bind(agent.version)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ())
    })?;
    insert_version(&mut tx, org, &agent).await?;
    let change = Change::new(actor, "agent.created", agent.id, json!({ "name": agent.spec.name, "app_id": app }));
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(agent)
}

pub async fn get(db: &Db, org: OrgId, id: AgentId) -> Result<Agent> {
    let sql = concat!("SELECT ", columns!(), " FROM agents WHERE id = $1 AND org_id = $2");
    let row: Option<AgentRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(pool).await)?;
    row.map(Agent::from).ok_or(StorageError::NotFound)
}

/// The app's agents, newest first. An app of another organisation is `NotFound`.
pub async fn list(db: &Db, org: OrgId, app: AppId, page: PageRequest) -> Result<Page<Agent>> {
    apps::get(db, org, app).await?;
    let rows: Vec<AgentRow> = on_pool!(db, |pool| {
        sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM agents
             WHERE org_id = $1 AND app_id = $2 AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(org.0)
        .bind(app.0)
        .bind(page.before)
        .bind(page.fetch_limit())
        .fetch_all(pool)
        .await
    })?;
    Ok(Page::from_overfetch(rows.into_iter().map(Agent::from).collect(), page, |a| a.id.0))
}

/// Replaces the agent's spec with `spec`, as a new version, provided the agent is still at
/// `current.version` (otherwise `Conflict`: someone else changed it meanwhile). An unchanged
/// spec makes no new version.
pub async fn update(db: &Db, org: OrgId, current: &Agent, spec: AgentSpec, actor: Actor) -> Result<Agent> {
    if spec == current.spec {
        return Ok(current.clone());
    }
    let now = time::now();
    let mut tx = db.begin().await?;
    check_providers(&mut tx, org, &spec).await?;
    let row: Option<AgentRow> = on_tx!(&mut tx, |conn| {
        sqlx::query_as(concat!(
            "UPDATE agents SET name = $1, llm_provider_id = $2, speech_to_text_provider_id = $3, text_to_speech_provider_id = $4,
                 spec = $5, version = version + 1, updated_at = $6
             WHERE id = $7 AND org_id = $8 AND version = $9
             RETURNING ",
            columns!()
        ))
        .bind(&spec.name)
        .bind(spec.llm_provider_id.map(|p| p.0))
        .bind(spec.speech.speech_to_text_provider_id.map(|p| p.0))
        .bind(spec.speech.text_to_speech_provider_id.map(|p| p.0))
        .bind(Json(&spec))
        .bind(now)
        .bind(current.id.0)
        .bind(org.0)
        .bind(current.version)
        .fetch_optional(conn)
        .await
    })?;
    let agent = Agent::from(
        row.ok_or_else(|| StorageError::Conflict("the agent was changed by someone else meanwhile; read it again and retry".into()))?,
    );
    insert_version(&mut tx, org, &agent).await?;
    let change = Change::new(actor, "agent.updated", agent.id, json!({ "version": agent.version }));
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(agent)
}

/// Every version of the agent, newest first.
pub async fn versions(db: &Db, org: OrgId, id: AgentId) -> Result<Vec<AgentVersion>> {
    get(db, org, id).await?;
    let rows: Vec<(i64, Json<AgentSpec>, DateTime<Utc>)> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT version, spec, created_at FROM agent_versions WHERE agent_id = $1 AND org_id = $2 ORDER BY version DESC")
            .bind(id.0)
            .bind(org.0)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows.into_iter().map(|(version, spec, created_at)| AgentVersion { version, spec: spec.0, created_at }).collect())
}

/// The spec of one version of an agent.
pub async fn version(db: &Db, org: OrgId, id: AgentId, version: i64) -> Result<AgentSpec> {
    let spec: Option<Json<AgentSpec>> = on_pool!(db, |pool| {
        sqlx::query_scalar("SELECT spec FROM agent_versions WHERE agent_id = $1 AND org_id = $2 AND version = $3")
            .bind(id.0)
            .bind(org.0)
            .bind(version)
            .fetch_optional(pool)
            .await
    })?;
    spec.map(|s| s.0).ok_or(StorageError::NotFound)
}

pub async fn delete(db: &Db, org: OrgId, id: AgentId, actor: Actor) -> Result<()> {
    let change = Change::new(actor, "agent.deleted", id, json!({}));
    delete_owned(db, org, "agents", id.0, "phone numbers still route to this agent; give them another agent first", change).await
}
