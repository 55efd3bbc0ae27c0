//! Call records and transcripts.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, Page, PageRequest, Result, StorageError, on_pool, parse_stored};
use crate::domain::call::StatusEvent;
use crate::domain::call::{Call, CallDirection, CallStatus, Turn, TurnRole};
use crate::domain::ids::{AgentId, AppId, CallId, OrgId, PhoneNumberId, PhoneProviderId};

/// The columns every query of this module reads back.
macro_rules! columns {
    () => {
        "id, org_id, app_id, phone_number_id, provider_id, agent_id, agent_version, call_sid, from_number, to_number,
         direction, status, status_sequence, started_at, answered_at, ended_at, duration_secs, ended_by, ended_reason,
         outcome, summary, language, error_code"
    };
}

/// A call record to open when a call first reaches us.
pub struct NewCall {
    pub app_id: Option<AppId>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub provider_id: Option<PhoneProviderId>,
    pub agent_id: Option<AgentId>,
    pub agent_version: Option<i64>,
    pub call_sid: String,
    pub from: String,
    pub to: String,
    pub direction: CallDirection,
    pub status: CallStatus,
    pub started_at: DateTime<Utc>,
    /// Set when the call is refused at once (unknown number, disabled service…).
    pub refused_reason: Option<&'static str>,
}

/// Narrows a call listing; every field is optional.
#[derive(Default, Clone)]
pub struct CallFilter {
    pub app_id: Option<AppId>,
    pub agent_id: Option<AgentId>,
    pub phone_number_id: Option<PhoneNumberId>,
    pub status: Option<CallStatus>,
    pub started_from: Option<DateTime<Utc>>,
    pub started_to: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct CallRow {
    id: Uuid,
    org_id: Uuid,
    app_id: Option<Uuid>,
    phone_number_id: Option<Uuid>,
    provider_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    agent_version: Option<i64>,
    call_sid: String,
    from_number: String,
    to_number: String,
    direction: String,
    status: String,
    status_sequence: Option<i64>,
    started_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    duration_secs: Option<i64>,
    ended_by: Option<String>,
    ended_reason: Option<String>,
    outcome: Option<String>,
    summary: Option<String>,
    language: Option<String>,
    error_code: Option<String>,
}

impl CallRow {
    fn into_domain(self) -> Result<Call> {
        Ok(Call {
            id: CallId(self.id),
            org_id: OrgId(self.org_id),
            app_id: self.app_id.map(AppId),
            phone_number_id: self.phone_number_id.map(PhoneNumberId),
            provider_id: self.provider_id.map(PhoneProviderId),
            agent_id: self.agent_id.map(AgentId),
            agent_version: self.agent_version,
            call_sid: self.call_sid,
            from: self.from_number,
            to: self.to_number,
            direction: parse_stored("direction", &self.direction)?,
            status: parse_stored("status", &self.status)?,
            status_sequence: self.status_sequence,
            started_at: self.started_at,
            answered_at: self.answered_at,
            ended_at: self.ended_at,
            duration_secs: self.duration_secs,
            ended_by: self.ended_by,
            ended_reason: self.ended_reason,
            outcome: self.outcome,
            summary: self.summary,
            language: self.language,
            error_code: self.error_code,
        })
    }
}

/// Opens the record of a call, or returns the existing one when the carrier retries the same
/// call (idempotent on the call SID).
pub async fn open(db: &Db, org: OrgId, new: NewCall) -> Result<Call> {
    let refused = new.refused_reason.is_some();
    let sql = "INSERT INTO calls (id, org_id, app_id, phone_number_id, provider_id, agent_id, agent_version, call_sid,
                   from_number, to_number, direction, status, started_at, ended_by, ended_reason)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (call_sid) DO NOTHING";
    on_pool!(db, |pool| {
        sqlx::query(sql)
            .bind(CallId::generate().0)
            .bind(org.0)
            .bind(new.app_id.map(|a| a.0))
            .bind(new.phone_number_id.map(|p| p.0))
            .bind(new.provider_id.map(|p| p.0))
            .bind(new.agent_id.map(|a| a.0))
            .bind(new.agent_version)
            .bind(&new.call_sid)
            .bind(&new.from)
            .bind(&new.to)
            .bind(new.direction.as_str())
            .bind(new.status.as_str())
            .bind(new.started_at)
            .bind(refused.then_some("system"))
            .bind(new.refused_reason)
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    let sql = concat!("SELECT ", columns!(), " FROM calls WHERE call_sid = $1 AND org_id = $2");
    let row: Option<CallRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(&new.call_sid).bind(org.0).fetch_optional(pool).await)?;
    // Another organisation holding the same SID would be a carrier bug; refuse rather than mix.
    row.ok_or_else(|| StorageError::Conflict(format!("call {} belongs to another organisation", new.call_sid)))?.into_domain()
}

/// Finds a call by the carrier's call SID, whatever its organisation: carrier webhooks name the
/// call, and the record says whose it is.
pub async fn find_by_sid(db: &Db, call_sid: &str) -> Result<Option<Call>> {
    let sql = concat!("SELECT ", columns!(), " FROM calls WHERE call_sid = $1");
    let row: Option<CallRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(call_sid).fetch_optional(pool).await)?;
    row.map(CallRow::into_domain).transpose()
}

/// Finds a call by id, whatever its organisation: a carrier's WebSocket names only the call,
/// and its signature is checked against the call's own provider.
pub async fn find_by_id(db: &Db, id: CallId) -> Result<Option<Call>> {
    let sql = concat!("SELECT ", columns!(), " FROM calls WHERE id = $1");
    let row: Option<CallRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(id.0).fetch_optional(pool).await)?;
    row.map(CallRow::into_domain).transpose()
}

/// Applies a carrier status event (see `Call::with_status_event`). Concurrent events are
/// serialised by re-reading and retrying when another one got in first.
pub async fn apply_status_event(db: &Db, org: OrgId, id: CallId, event: &StatusEvent) -> Result<Call> {
    for _ in 0..5 {
        let current = get(db, org, id).await?;
        let next = current.with_status_event(event);
        let sql = concat!(
            "UPDATE calls SET status = $1, status_sequence = $2, answered_at = $3, ended_at = $4, duration_secs = $5,
                 ended_by = $6, ended_reason = $7
             WHERE id = $8 AND org_id = $9 AND status = $10 AND status_sequence IS NOT DISTINCT FROM $11
               AND ended_at IS NOT DISTINCT FROM $12
             RETURNING ",
            columns!()
        );
        let row: Option<CallRow> = on_pool!(db, |pool| {
            sqlx::query_as(sql)
                .bind(next.status.as_str())
                .bind(next.status_sequence)
                .bind(next.answered_at)
                .bind(next.ended_at)
                .bind(next.duration_secs)
                .bind(&next.ended_by)
                .bind(&next.ended_reason)
                .bind(id.0)
                .bind(org.0)
                .bind(current.status.as_str())
                .bind(current.status_sequence)
                .bind(current.ended_at)
                .fetch_optional(pool)
                .await
        })?;
        if let Some(row) = row {
            return row.into_domain();
        }
    }
    Err(StorageError::Conflict(format!("call {id} changed too often to apply a status event")))
}

/// How a conversation ended, as the agent runtime saw it.
pub struct CallEnding<'a> {
    pub ended_by: &'a str,
    pub reason: &'a str,
    pub summary: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub language: Option<&'a str>,
}

/// Records how a call ended. The first recorded ending wins: a later one (say, the carrier's
/// `completed` after the agent hung up) does not overwrite it.
pub async fn record_ending(db: &Db, org: OrgId, id: CallId, ending: &CallEnding<'_>) -> Result<()> {
    on_pool!(db, |pool| {
        sqlx::query(
            "UPDATE calls SET ended_by = COALESCE(ended_by, $1), ended_reason = COALESCE(ended_reason, $2),
                 summary = COALESCE(summary, $3), outcome = COALESCE(outcome, $4), language = COALESCE($5, language)
             WHERE id = $6 AND org_id = $7",
        )
        .bind(ending.ended_by)
        .bind(ending.reason)
        .bind(ending.summary)
        .bind(ending.outcome)
        .bind(ending.language)
        .bind(id.0)
        .bind(org.0)
        .execute(pool)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// Notes the carrier's error code for a call (from the fallback webhook).
pub async fn record_error_code(db: &Db, org: OrgId, id: CallId, code: &str) -> Result<()> {
    on_pool!(db, |pool| {
        sqlx::query("UPDATE calls SET error_code = $1 WHERE id = $2 AND org_id = $3")
            .bind(code)
            .bind(id.0)
            .bind(org.0)
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

pub async fn get(db: &Db, org: OrgId, id: CallId) -> Result<Call> {
    let sql = concat!("SELECT ", columns!(), " FROM calls WHERE id = $1 AND org_id = $2");
    let row: Option<CallRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(pool).await)?;
    row.ok_or(StorageError::NotFound)?.into_domain()
}

/// Calls matching `filter`, newest first.
pub async fn list(db: &Db, org: OrgId, filter: &CallFilter, page: PageRequest) -> Result<Page<Call>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM calls
         WHERE org_id = $1 AND ($2 IS NULL OR id < $2)
           AND ($3 IS NULL OR app_id = $3) AND ($4 IS NULL OR agent_id = $4) AND ($5 IS NULL OR phone_number_id = $5)
           AND ($6 IS NULL OR status = $6) AND ($7 IS NULL OR started_at >= $7) AND ($8 IS NULL OR started_at < $8)
         ORDER BY id DESC LIMIT $9"
    );
    let rows: Vec<CallRow> = on_pool!(db, |pool| {
        sqlx::query_as(sql)
            .bind(org.0)
            .bind(page.before)
            .bind(filter.app_id.map(|a| a.0))
            .bind(filter.agent_id.map(|a| a.0))
            .bind(filter.phone_number_id.map(|p| p.0))
            .bind(filter.status.map(CallStatus::as_str))
            .bind(filter.started_from)
            .bind(filter.started_to)
            .bind(page.fetch_limit())
            .fetch_all(pool)
            .await
    })?;
    let calls = rows.into_iter().map(CallRow::into_domain).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(calls, page, |c| c.id.0))
}

#[derive(sqlx::FromRow)]
struct TurnRow {
    sequence: i64,
    role: String,
    text: String,
    language: Option<String>,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    interrupted: bool,
    latency_ms: Option<i64>,
}

/// The call's transcript in spoken order.
pub async fn transcript(db: &Db, org: OrgId, call: CallId) -> Result<Vec<Turn>> {
    let rows: Vec<TurnRow> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT sequence, role, text, language, started_at, ended_at, interrupted, latency_ms
             FROM conversation_turns WHERE call_id = $1 AND org_id = $2 ORDER BY sequence",
        )
        .bind(call.0)
        .bind(org.0)
        .fetch_all(pool)
        .await
    })?;
    rows.into_iter()
        .map(|r| {
            Ok(Turn {
                sequence: r.sequence,
                role: parse_stored("role", &r.role)?,
                text: r.text,
                language: r.language,
                started_at: r.started_at,
                ended_at: r.ended_at,
                interrupted: r.interrupted,
                latency_ms: r.latency_ms,
            })
        })
        .collect()
}

/// A finished turn of the conversation, to append to the transcript.
pub struct NewTurn {
    pub role: TurnRole,
    pub text: String,
    pub language: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub interrupted: bool,
    pub latency_ms: Option<i64>,
}

/// Appends a turn to a call's transcript as soon as it is spoken; returns its sequence number.
/// Turns of one call are appended by one session, in order.
pub async fn append_turn(db: &Db, org: OrgId, call: CallId, turn: &NewTurn) -> Result<i64> {
    let sql =
        "INSERT INTO conversation_turns (call_id, org_id, sequence, role, text, language, started_at, ended_at, interrupted, latency_ms)
               SELECT c.id, c.org_id, (SELECT COALESCE(MAX(t.sequence), 0) + 1 FROM conversation_turns t WHERE t.call_id = c.id),
                      $3, $4, $5, $6, $7, $8, $9
               FROM calls c WHERE c.id = $1 AND c.org_id = $2
               RETURNING sequence";
    let sequence: Option<i64> = on_pool!(db, |pool| {
        sqlx::query_scalar(sql)
            .bind(call.0)
            .bind(org.0)
            .bind(turn.role.as_str())
            .bind(&turn.text)
            .bind(&turn.language)
            .bind(turn.started_at)
            .bind(turn.ended_at)
            .bind(turn.interrupted)
            .bind(turn.latency_ms)
            .fetch_optional(pool)
            .await
    })?;
    sequence.ok_or(StorageError::NotFound)
}
