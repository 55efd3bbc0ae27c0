//! Call records and transcripts: where the call is stored. `open` on the first webhook,
//! `append_turn` as each turn is spoken, then the end: `finish_conversation` (the agent runtime)
//! or `apply_status_event` (the carrier), whichever comes first, finalises the record and writes
//! its `call.ended` event in the same transaction (see `finalize`), exactly once per call.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::Change;
use super::{Db, Page, PageRequest, Result, StorageError, Tx, costs, events, on_pool, on_tx, parse_stored};
use crate::domain::audit::Actor;
use crate::domain::call::{Call, CallDirection, CallEnding, CallStatus, EndReason, EndedBy, StatusEvent, Turn, TurnRole, VoiceLatency};
use crate::domain::cost::{CallCost, CallUsage};
use crate::domain::event::{Analysis, EventType};
use crate::domain::ids::{AgentId, AppId, CallId, OrgId, PhoneNumberId, PhoneProviderId};
use crate::domain::time;

/// The columns every query of this module reads back.
macro_rules! columns {
    () => {
        "id, org_id, app_id, phone_number_id, provider_id, agent_id, agent_version, call_sid, from_number, to_number,
         direction, status, status_sequence, started_at, answered_at, ended_at, duration_secs, ended_by, ended_reason,
         outcome, summary, language, error_code, analysis, usage, cost, session_node, session_lease_until, is_test"
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
    pub refused_reason: Option<EndReason>,
    /// A test call from the console.
    pub is_test: bool,
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
    pub ended_reason: Option<crate::domain::call::EndReason>,
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
    analysis: Option<Json<Analysis>>,
    usage: Option<Json<CallUsage>>,
    cost: Option<Json<CallCost>>,
    session_node: Option<String>,
    session_lease_until: Option<DateTime<Utc>>,
    is_test: bool,
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
            analysis: self.analysis.map(|a| a.0),
            usage: self.usage.map(|u| u.0),
            cost: self.cost.map(|c| c.0),
            session_node: self.session_node,
            session_lease_until: self.session_lease_until,
            is_test: self.is_test,
        })
    }
}

/// Opens the record of a call, or returns the existing one when the carrier retries the same
/// call (idempotent on the call SID).
pub async fn open(db: &Db, org: OrgId, new: NewCall) -> Result<Call> {
    let refused = new.refused_reason.is_some();
    let sql = concat!(
        r#"INSERT INTO calls (id, org_id, app_id, phone_number_id, provider_id, agent_id, agent_version, call_sid,
                   from_number, to_number, direction, status, started_at, ended_by, ended_reason, is_test)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (call_sid) DO NOTHING
               RETURNING "#,
        columns!()
    );
    let created: Option<CallRow> = on_pool!(db, |pool| {
        sqlx::query_as(sql)
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
            .bind(refused.then_some(EndedBy::System.as_str()))
            .bind(new.refused_reason.map(EndReason::as_str))
            .bind(new.is_test)
            .fetch_optional(pool)
            .await
    })?;
    if let Some(created) = created {
        return created.into_domain();
    }
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

/// Reads a call inside a transaction that will update it (locked on PostgreSQL).
pub(crate) async fn lock(tx: &mut Tx, org: OrgId, id: CallId) -> Result<Call> {
    let sql = format!(concat!("SELECT ", columns!(), " FROM calls WHERE id = $1 AND org_id = $2{}"), tx.row_lock());
    let row: Option<CallRow> =
        on_tx!(tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id.0).bind(org.0).fetch_optional(conn).await)?;
    row.ok_or(StorageError::NotFound)?.into_domain()
}

/// Writes the lifecycle fields of a call read with `lock`.
async fn write(tx: &mut Tx, call: &Call) -> Result<()> {
    let sql = "UPDATE calls SET status = $1, status_sequence = $2, answered_at = $3, ended_at = $4, duration_secs = $5,
                   ended_by = $6, ended_reason = $7, summary = $8, outcome = $9, language = $10
               WHERE id = $11 AND org_id = $12";
    on_tx!(tx, |conn| {
        sqlx::query(sql)
            .bind(call.status.as_str())
            .bind(call.status_sequence)
            .bind(call.answered_at)
            .bind(call.ended_at)
            .bind(call.duration_secs)
            .bind(&call.ended_by)
            .bind(&call.ended_reason)
            .bind(&call.summary)
            .bind(&call.outcome)
            .bind(&call.language)
            .bind(call.id.0)
            .bind(call.org_id.0)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// Marks the call final and writes its `call.ended` event, unless it was finalised before.
/// Returns whether this call did it. Callers hold the call's row (see `lock`).
async fn finalize(tx: &mut Tx, call: &Call) -> Result<bool> {
    let sql = "UPDATE calls SET finalized_at = $1 WHERE id = $2 AND org_id = $3 AND finalized_at IS NULL";
    let updated = on_tx!(tx, |conn| sqlx::query(sql)
        .bind(time::now())
        .bind(call.id.0)
        .bind(call.org_id.0)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    if updated == 0 {
        return Ok(false);
    }
    let cost = costs::refresh(tx, call.org_id, call.id).await?.0;
    events::write(tx, &Call { cost, ..call.clone() }, EventType::CallEnded).await?;
    Ok(true)
}

/// Applies a carrier status event (see `Call::with_status_event`); a final status finalises the
/// call unless its conversation already did. For restart recovery, whose sessions are gone.
pub async fn apply_status_event(db: &Db, org: OrgId, id: CallId, event: &StatusEvent) -> Result<Call> {
    change_and_finalize(db, org, id, |call| {
        let next = call.with_status_event(event);
        let over = next.status.is_final();
        (next, over)
    })
    .await
}

/// Applies a status callback from the carrier. A final status finalises the call, unless an
/// agent session holds it: the caller's hang-up reaches the session at about the same moment,
/// and the session finalises the call once its last turns are stored, so the `call.ended`
/// event carries them. Returns whether finalisation was left to the session (the caller then
/// calls [`finalize_if_open`] after a grace period, in case the session died).
pub async fn apply_status_callback(db: &Db, org: OrgId, id: CallId, event: &StatusEvent) -> Result<bool> {
    let mut left_to_session = false;
    change_and_finalize(db, org, id, |call| {
        let next = call.with_status_event(event);
        left_to_session = next.status.is_final() && next.session_alive(time::now());
        let over = next.status.is_final() && !left_to_session;
        (next, over)
    })
    .await?;
    Ok(left_to_session)
}

/// Finalises a call whose final status is recorded, if nothing finalised it yet.
pub async fn finalize_if_open(db: &Db, org: OrgId, id: CallId) -> Result<Call> {
    change_and_finalize(db, org, id, |call| {
        let over = call.status.is_final() || call.ended_reason.is_some();
        (call, over)
    })
    .await
}

/// Records how a conversation ended (see `Call::with_ending`) and finalises the call, in one
/// transaction: the end of a conversation and its `call.ended` event commit together.
pub async fn finish_conversation(db: &Db, org: OrgId, id: CallId, ending: &CallEnding<'_>) -> Result<Call> {
    finish_conversation_at(db, org, id, ending, time::now()).await
}

/// Like [`finish_conversation`], for a conversation known to have ended at `at`.
pub async fn finish_conversation_at(db: &Db, org: OrgId, id: CallId, ending: &CallEnding<'_>, at: DateTime<Utc>) -> Result<Call> {
    change_and_finalize(db, org, id, |call| (call.with_ending(ending, at), true)).await
}

/// Reads the call, writes what `change` makes of it and, when `change` says the call is over,
/// finalises it, all in one transaction; then wakes the automations worker if an event was
/// written.
async fn change_and_finalize(db: &Db, org: OrgId, id: CallId, change: impl FnOnce(Call) -> (Call, bool)) -> Result<Call> {
    let mut tx = db.begin().await?;
    let before = lock(&mut tx, org, id).await?;
    let billed_secs = before.duration_secs;
    let (next, over) = change(before);
    write(&mut tx, &next).await?;
    let finalized = over && finalize(&mut tx, &next).await?;
    // The carrier's length of a call already final (its last callback) changes what it cost.
    let budget_event = !finalized && next.duration_secs != billed_secs && costs::refresh(&mut tx, org, id).await?.1;
    tx.commit().await?;
    if finalized || budget_event {
        db.announce_outbox_event();
    }
    Ok(next)
}

/// Claims the call for the agent session of process `owner`, leased until `lease_until`, unless
/// a session already holds it: the claim is one conditional update, so two sockets racing for
/// one call get one session.
pub async fn claim_session(db: &Db, org: OrgId, id: CallId, owner: &str, lease_until: DateTime<Utc>) -> Result<bool> {
    let claimed = on_pool!(db, |pool| {
        sqlx::query("UPDATE calls SET session_node = $1, session_lease_until = $2 WHERE id = $3 AND org_id = $4 AND session_node IS NULL")
            .bind(owner)
            .bind(lease_until)
            .bind(id.0)
            .bind(org.0)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(claimed == 1)
}

/// Extends the leases of every open call whose session `owner` holds; returns how many.
pub async fn renew_session_leases(db: &Db, owner: &str, lease_until: DateTime<Utc>) -> Result<u64> {
    let renewed = on_pool!(db, |pool| {
        sqlx::query("UPDATE calls SET session_lease_until = $1 WHERE session_node = $2 AND finalized_at IS NULL")
            .bind(lease_until)
            .bind(owner)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(renewed)
}

/// Calls not yet finalised whose agent session is gone (its lease ran out: the process that held
/// it died) and, with `untaken`, those no session ever took; oldest first, at most 1,000, across
/// organisations (restart recovery).
pub async fn orphaned(db: &Db, now: DateTime<Utc>, untaken: bool) -> Result<Vec<Call>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM calls WHERE finalized_at IS NULL AND started_at < $1
           AND ((session_node IS NOT NULL AND (session_lease_until IS NULL OR session_lease_until < $1)) OR ($2 AND session_node IS NULL))
         ORDER BY started_at LIMIT 1000"
    );
    let rows: Vec<CallRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(now).bind(untaken).fetch_all(pool).await)?;
    rows.into_iter().map(CallRow::into_domain).collect()
}

/// Calls not yet finalised that started before `before`, whatever their organisation, oldest
/// first (at most 1,000).
pub async fn unfinalized(db: &Db, before: DateTime<Utc>) -> Result<Vec<Call>> {
    let sql = concat!("SELECT ", columns!(), " FROM calls WHERE finalized_at IS NULL AND started_at < $1 ORDER BY started_at LIMIT 1000");
    let rows: Vec<CallRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(before).fetch_all(pool).await)?;
    rows.into_iter().map(CallRow::into_domain).collect()
}

/// Stores an AI classification on the call and, the first time, writes its `call.analyzed`
/// event in the same transaction.
pub async fn record_analysis(db: &Db, org: OrgId, id: CallId, analysis: &Analysis) -> Result<Call> {
    let mut tx = db.begin().await?;
    let mut call = lock(&mut tx, org, id).await?;
    let sql = "UPDATE calls SET analysis = $1, sentiment = $2, resolution = $3, satisfaction = $4 WHERE id = $5 AND org_id = $6";
    on_tx!(&mut tx, |conn| {
        sqlx::query(sql)
            .bind(Json(analysis))
            .bind(analysis.sentiment.as_str())
            .bind(analysis.resolution.as_str())
            .bind(analysis.satisfaction)
            .bind(id.0)
            .bind(org.0)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
    })?;
    call.analysis = Some(analysis.clone());
    events::write(&mut tx, &call, EventType::CallAnalyzed).await?;
    tx.commit().await?;
    db.announce_outbox_event();
    Ok(call)
}

/// Erases a call, its transcript and its events (right to erasure), and audits it.
pub async fn delete(db: &Db, org: OrgId, id: CallId, actor: Actor) -> Result<()> {
    let change = Change::new(actor, "call.deleted", id, serde_json::json!({}));
    super::delete_owned(db, org, "calls", id.0, "the call cannot be deleted", change).await
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
           AND ($9 IS NULL OR ended_reason = $9)
         ORDER BY id DESC LIMIT $10"
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
            .bind(filter.ended_reason.map(crate::domain::call::EndReason::as_str))
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
    voice_latency: Option<Json<VoiceLatency>>,
}

const TRANSCRIPT: &str = "SELECT sequence, role, text, language, started_at, ended_at, interrupted, latency_ms, voice_latency
                          FROM conversation_turns WHERE call_id = $1 AND org_id = $2 ORDER BY sequence";

/// The call's transcript in spoken order.
pub async fn transcript(db: &Db, org: OrgId, call: CallId) -> Result<Vec<Turn>> {
    let rows: Vec<TurnRow> = on_pool!(db, |pool| sqlx::query_as(TRANSCRIPT).bind(call.0).bind(org.0).fetch_all(pool).await)?;
    into_turns(rows)
}

/// The transcript as the transaction sees it.
pub(crate) async fn transcript_in(tx: &mut Tx, org: OrgId, call: CallId) -> Result<Vec<Turn>> {
    let rows: Vec<TurnRow> = on_tx!(tx, |conn| sqlx::query_as(TRANSCRIPT).bind(call.0).bind(org.0).fetch_all(conn).await)?;
    into_turns(rows)
}

fn into_turns(rows: Vec<TurnRow>) -> Result<Vec<Turn>> {
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
                voice_latency: r.voice_latency.map(|l| l.0),
            })
        })
        .collect()
}

/// A finished turn of the conversation, to append to the transcript.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTurn {
    pub role: TurnRole,
    pub text: String,
    pub language: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub interrupted: bool,
    pub latency_ms: Option<i64>,
}

/// Words as stored: without NUL characters, which PostgreSQL's text cannot hold (a caller's
/// words are never refused for one).
fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') { std::borrow::Cow::Owned(text.replace('\0', "")) } else { std::borrow::Cow::Borrowed(text) }
}

/// Appends a turn to a call's transcript as soon as it is spoken; returns its sequence number.
/// Turns of one call are appended by one session, in order.
pub async fn append_turn(db: &Db, org: OrgId, call: CallId, turn: &NewTurn) -> Result<i64> {
    append_turns(db, &[(org, call, turn)]).await?.pop().flatten().ok_or(StorageError::NotFound)
}

/// The most turns [`append_turns`] writes in one statement.
pub const MAX_TURNS_PER_APPEND: usize = 100;

/// Appends turns of different calls in one statement (a group commit of many live calls'
/// turns); each gets the next sequence number of its call. Returns each turn's sequence, or
/// `None` for a turn whose call no longer exists. At most one turn per call, and at most
/// [`MAX_TURNS_PER_APPEND`] turns.
pub async fn append_turns(db: &Db, turns: &[(OrgId, CallId, &NewTurn)]) -> Result<Vec<Option<i64>>> {
    assert!(turns.len() <= MAX_TURNS_PER_APPEND, "at most {MAX_TURNS_PER_APPEND} turns per append");
    if turns.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<String> = (0..turns.len())
        .map(|i| {
            let p = 9 * i;
            format!("(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7, p + 8, p + 9)
        })
        .collect();
    let sql = format!(
        "WITH new (call_id, org_id, role, text, language, started_at, ended_at, interrupted, latency_ms) AS (VALUES {})
         INSERT INTO conversation_turns (call_id, org_id, sequence, role, text, language, started_at, ended_at, interrupted, latency_ms)
         SELECT c.id, c.org_id, (SELECT COALESCE(MAX(t.sequence), 0) + 1 FROM conversation_turns t WHERE t.call_id = c.id),
                n.role, n.text, n.language, n.started_at, n.ended_at, n.interrupted, n.latency_ms
         FROM new n JOIN calls c ON c.id = n.call_id AND c.org_id = n.org_id
         RETURNING call_id, sequence",
        rows.join(", ")
    );
    let stored: Vec<(Uuid, i64)> = on_pool!(db, |pool| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()));
        for (org, call, turn) in turns {
            query = query
                .bind(call.0)
                .bind(org.0)
                .bind(turn.role.as_str())
                .bind(storable(&turn.text))
                .bind(&turn.language)
                .bind(turn.started_at)
                .bind(turn.ended_at)
                .bind(turn.interrupted)
                .bind(turn.latency_ms);
        }
        query.fetch_all(pool).await
    })?;
    Ok(turns.iter().map(|(_, call, _)| stored.iter().find(|(id, _)| *id == call.0).map(|(_, sequence)| *sequence)).collect())
}

/// Cuts a stored turn down to what the caller heard before speaking over it, and marks it
/// interrupted.
pub async fn cut_turn(db: &Db, org: OrgId, call: CallId, sequence: i64, heard: &str) -> Result<()> {
    let sql = "UPDATE conversation_turns SET text = $1, interrupted = TRUE WHERE call_id = $2 AND org_id = $3 AND sequence = $4";
    let updated = on_pool!(db, |pool| {
        sqlx::query(sql).bind(storable(heard)).bind(call.0).bind(org.0).bind(sequence).execute(pool).await.map(|r| r.rows_affected())
    })?;
    if updated == 0 { Err(StorageError::NotFound) } else { Ok(()) }
}

/// Records where the caller's wait for a stored agent turn went.
pub async fn set_voice_latency(db: &Db, org: OrgId, call: CallId, sequence: i64, latency: &VoiceLatency) -> Result<()> {
    let sql = "UPDATE conversation_turns SET voice_latency = $1, voice_to_voice_ms = $2
               WHERE call_id = $3 AND org_id = $4 AND sequence = $5 AND role = 'agent'";
    let updated = on_pool!(db, |pool| {
        sqlx::query(sql)
            .bind(Json(latency))
            .bind(latency.voice_to_voice_ms)
            .bind(call.0)
            .bind(org.0)
            .bind(sequence)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    if updated == 0 { Err(StorageError::NotFound) } else { Ok(()) }
}
