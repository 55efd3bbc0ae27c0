//! Automations and their runs — the durable job queue.
//!
//! - `dispatch_events` hands outbox events to the automations of their app: one run per
//!   (automation, event), created in the transaction that marks the event dispatched, so a crash
//!   between the two repeats the hand-over harmlessly (the pair is unique).
//! - `claim_due` takes the next due run under a lease; on PostgreSQL `FOR UPDATE SKIP LOCKED` lets
//!   several nodes claim side by side. A worker that dies leaves the lease to run out; the run is
//!   then claimed again (at least once). Every write of a worker names the attempt it claimed, so
//!   a worker whose lease was taken over changes nothing.
//! - `save_progress` records each finished action; a retried run resumes at the next one.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::secrets::SecretSlot;
use super::{Backend, Db, Page, PageRequest, Result, StorageError, apps, delete_owned, on_pool, on_tx, parse_stored};
use crate::domain::audit::Actor;
use crate::domain::automation::{Action, Automation, AutomationRun, AutomationSpec, Filters, RETRY_WINDOW, RunStatus, Trigger};
use crate::domain::event::CallEvent;
use crate::domain::ids::{AppId, AutomationId, AutomationRunId, CallId, OrgId};
use crate::domain::time;

const TABLE: &str = "automations";

macro_rules! columns {
    () => {
        "id, org_id, app_id, name, trigger, filters, actions, enabled, created_at, updated_at"
    };
}

macro_rules! run_columns {
    () => {
        "id, org_id, automation_id, event_id, call_id, status, attempts, next_step, outputs, last_error, next_attempt_at,
         give_up_at, created_at, updated_at, finished_at"
    };
}

/// Runs due at `$1`: waiting for their attempt, or claimed by a worker whose lease ran out.
macro_rules! due {
    () => {
        "(status = 'pending' OR (status = 'running' AND lease_until < $1)) AND next_attempt_at <= $1"
    };
}

#[derive(sqlx::FromRow)]
struct AutomationRow {
    id: Uuid,
    org_id: Uuid,
    app_id: Uuid,
    name: String,
    trigger: String,
    filters: Json<Filters>,
    actions: Json<Vec<Action>>,
    enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl AutomationRow {
    fn into_domain(self) -> Result<Automation> {
        Ok(Automation {
            id: AutomationId(self.id),
            org_id: OrgId(self.org_id),
            app_id: AppId(self.app_id),
            spec: AutomationSpec {
                name: self.name,
                trigger: parse_stored("trigger", &self.trigger)?,
                filters: self.filters.0,
                actions: self.actions.0,
                enabled: self.enabled,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: Uuid,
    org_id: Uuid,
    automation_id: Uuid,
    event_id: Uuid,
    call_id: Option<Uuid>,
    status: String,
    attempts: i64,
    next_step: i64,
    outputs: Json<Vec<Value>>,
    last_error: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    give_up_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl RunRow {
    fn into_domain(self) -> Result<AutomationRun> {
        Ok(AutomationRun {
            id: AutomationRunId(self.id),
            org_id: OrgId(self.org_id),
            automation_id: AutomationId(self.automation_id),
            event_id: self.event_id,
            call_id: self.call_id.map(CallId),
            status: parse_stored("status", &self.status)?,
            attempts: self.attempts,
            next_step: self.next_step,
            outputs: self.outputs.0,
            last_error: self.last_error,
            next_attempt_at: self.next_attempt_at,
            give_up_at: self.give_up_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
        })
    }
}

fn secret_slot(org: OrgId, id: AutomationId) -> SecretSlot<'static> {
    SecretSlot { org: org.0, table: TABLE, row: id.0, column: "secret" }
}

/// A new webhook signing secret: `whsec_` and 32 random bytes in hex.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the system has a random source");
    format!("whsec_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Creates an automation in an app; returns it with its webhook signing secret (shown once).
pub async fn create(db: &Db, org: OrgId, app: AppId, spec: AutomationSpec, actor: Actor) -> Result<(Automation, String)> {
    let id = AutomationId::generate();
    let secret = new_secret();
    let sealed = db.cipher().encrypt(&secret_slot(org, id), &secret);
    let sql = concat!(
        "INSERT INTO automations (id, org_id, app_id, name, trigger, filters, actions, enabled, secret_enc, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING ",
        columns!()
    );
    let mut tx = db.begin().await?;
    apps::ensure_exists(&mut tx, org, app).await?;
    let row: AutomationRow = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(id.0)
            .bind(org.0)
            .bind(app.0)
            .bind(&spec.name)
            .bind(spec.trigger.as_str())
            .bind(Json(&spec.filters))
            .bind(Json(&spec.actions))
            .bind(spec.enabled)
            .bind(&sealed)
            .bind(time::now())
            .fetch_one(conn)
            .await
    })?;
    audit::record(&mut tx, org, Change::new(actor, "automation.created", id, json!({ "name": spec.name, "app_id": app }))).await?;
    tx.commit().await?;
    Ok((row.into_domain()?, secret))
}

pub async fn get(db: &Db, org: OrgId, id: AutomationId) -> Result<Automation> {
    let sql = concat!("SELECT ", columns!(), " FROM automations WHERE id = $1 AND org_id = $2");
    let row: Option<AutomationRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(pool).await)?;
    row.ok_or(StorageError::NotFound)?.into_domain()
}

/// An app's automations, newest first.
pub async fn list(db: &Db, org: OrgId, app: AppId, page: PageRequest) -> Result<Page<Automation>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM automations WHERE org_id = $1 AND app_id = $2 AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    );
    let rows: Vec<AutomationRow> =
        on_pool!(db, |pool| sqlx::query_as(sql).bind(org.0).bind(app.0).bind(page.before).bind(page.fetch_limit()).fetch_all(pool).await)?;
    let items = rows.into_iter().map(AutomationRow::into_domain).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page, |a| a.id.0))
}

/// Replaces an automation's settings; runs already created keep going with the new actions.
pub async fn update(db: &Db, org: OrgId, id: AutomationId, spec: AutomationSpec, actor: Actor) -> Result<Automation> {
    let sql = concat!(
        "UPDATE automations SET name = $1, trigger = $2, filters = $3, actions = $4, enabled = $5, updated_at = $6
         WHERE id = $7 AND org_id = $8 RETURNING ",
        columns!()
    );
    let mut tx = db.begin().await?;
    let row: Option<AutomationRow> = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(&spec.name)
            .bind(spec.trigger.as_str())
            .bind(Json(&spec.filters))
            .bind(Json(&spec.actions))
            .bind(spec.enabled)
            .bind(time::now())
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(conn)
            .await
    })?;
    let automation = row.ok_or(StorageError::NotFound)?.into_domain()?;
    audit::record(&mut tx, org, Change::new(actor, "automation.updated", id, json!({ "name": spec.name, "enabled": spec.enabled })))
        .await?;
    tx.commit().await?;
    Ok(automation)
}

pub async fn delete(db: &Db, org: OrgId, id: AutomationId, actor: Actor) -> Result<()> {
    delete_owned(db, org, TABLE, id.0, "the automation is in use", Change::new(actor, "automation.deleted", id, json!({}))).await
}

/// Replaces the automation's webhook signing secret; returns the new one (shown once).
/// Deliveries from then on are signed with it.
pub async fn rotate_secret(db: &Db, org: OrgId, id: AutomationId, actor: Actor) -> Result<String> {
    let secret = new_secret();
    let sealed = db.cipher().encrypt(&secret_slot(org, id), &secret);
    let mut tx = db.begin().await?;
    let updated = on_tx!(&mut tx, |conn| {
        sqlx::query("UPDATE automations SET secret_enc = $1, updated_at = $2 WHERE id = $3 AND org_id = $4")
            .bind(&sealed)
            .bind(time::now())
            .bind(id.0)
            .bind(org.0)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
    })?;
    if updated == 0 {
        return Err(StorageError::NotFound);
    }
    audit::record(&mut tx, org, Change::new(actor, "automation.secret_rotated", id, json!({}))).await?;
    tx.commit().await?;
    Ok(secret)
}

/// The automation's webhook signing secret, decrypted.
pub async fn signing_secret(db: &Db, org: OrgId, id: AutomationId) -> Result<zeroize::Zeroizing<String>> {
    let sealed: Option<Vec<u8>> = on_pool!(db, |pool| {
        sqlx::query_scalar("SELECT secret_enc FROM automations WHERE id = $1 AND org_id = $2")
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(pool)
            .await
    })?;
    Ok(db.cipher().decrypt(&secret_slot(org, id), &sealed.ok_or(StorageError::NotFound)?)?)
}

/// What `FOR UPDATE SKIP LOCKED` becomes on this backend: SQLite runs one writer at a time, so
/// it needs nothing.
fn skip_locked(db: &Db) -> &'static str {
    match db.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
    }
}

#[derive(sqlx::FromRow)]
struct PendingEvent {
    id: Uuid,
    org_id: Uuid,
    app_id: Option<Uuid>,
    payload: Json<CallEvent>,
}

/// Creates the runs of up to `batch` undispatched events (for every enabled automation of the
/// event's app whose trigger and filters match) and marks the events dispatched. Returns how
/// many runs were created.
pub async fn dispatch_events(db: &Db, batch: i64) -> Result<usize> {
    // A read first, so an idle poll takes no write lock.
    let waiting: Option<i32> =
        on_pool!(db, |pool| sqlx::query_scalar("SELECT 1 FROM events WHERE dispatched_at IS NULL LIMIT 1").fetch_optional(pool).await)?;
    if waiting.is_none() {
        return Ok(0);
    }
    let mut tx = db.begin().await?;
    let select =
        format!("SELECT id, org_id, app_id, payload FROM events WHERE dispatched_at IS NULL ORDER BY id LIMIT $1{}", skip_locked(db));
    let pending: Vec<PendingEvent> =
        on_tx!(&mut tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(select.as_str())).bind(batch).fetch_all(conn).await)?;
    let now = time::now();
    let mut created = 0;
    for event in pending {
        let trigger = Trigger::ALL.iter().copied().find(|t| t.event_type() == event.payload.0.event_type);
        // Whose automations: the event's app's, or every app's ($2 NULL) for an organisation-wide
        // trigger.
        let scope = match trigger {
            Some(trigger) if trigger.is_organisation_wide() => Some((trigger, None)),
            Some(trigger) => event.app_id.map(|app| (trigger, Some(app))),
            None => None,
        };
        if let Some((trigger, app)) = scope {
            let sql = concat!(
                "SELECT ",
                columns!(),
                " FROM automations WHERE org_id = $1 AND ($2 IS NULL OR app_id = $2) AND trigger = $3 AND enabled = $4"
            );
            let rows: Vec<AutomationRow> = on_tx!(&mut tx, |conn| {
                sqlx::query_as(sql).bind(event.org_id).bind(app).bind(trigger.as_str()).bind(true).fetch_all(conn).await
            })?;
            for automation in rows.into_iter().map(AutomationRow::into_domain) {
                let automation = automation?;
                if !automation.spec.filters.admit(&event.payload.0) {
                    continue;
                }
                let sql = "INSERT INTO automation_runs (id, org_id, automation_id, event_id, call_id, status, attempts, next_step, outputs,
                               next_attempt_at, give_up_at, created_at, updated_at)
                           VALUES ($1, $2, $3, $4, $5, 'pending', 0, 0, $6, $7, $8, $7, $7)
                           ON CONFLICT (automation_id, event_id) DO NOTHING";
                created += on_tx!(&mut tx, |conn| {
                    sqlx::query(sql)
                        .bind(AutomationRunId::generate().0)
                        .bind(event.org_id)
                        .bind(automation.id.0)
                        .bind(event.id)
                        .bind(event.payload.0.call.id.0)
                        .bind(Json(Vec::<Value>::new()))
                        .bind(now)
                        .bind(now + RETRY_WINDOW)
                        .execute(conn)
                        .await
                        .map(|r| r.rows_affected() as usize)
                })?;
            }
        }
        on_tx!(&mut tx, |conn| {
            sqlx::query("UPDATE events SET dispatched_at = $1 WHERE id = $2").bind(now).bind(event.id).execute(conn).await.map(|_| ())
        })?;
    }
    tx.commit().await?;
    Ok(created)
}

/// A run a worker holds: the run, what to do and the event it acts on.
pub struct ClaimedRun {
    pub run: AutomationRun,
    pub automation: Automation,
    pub event: CallEvent,
}

/// Claims the run that is due first (pending, or running with an expired lease) until
/// `lease_until`, counting an attempt. `None` when nothing is due.
/// How many runs are due now, whatever their organisation (the queue depth `/metrics` shows).
pub async fn due_count(db: &Db, now: DateTime<Utc>) -> Result<i64> {
    let sql = concat!("SELECT COUNT(*) FROM automation_runs WHERE ", due!());
    Ok(on_pool!(db, |pool| sqlx::query_scalar(sql).bind(now).fetch_one(pool).await)?)
}

pub async fn claim_due(db: &Db, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Result<Option<ClaimedRun>> {
    // A read first, so an idle poll takes no write lock.
    let due: Option<i32> = on_pool!(db, |pool| {
        sqlx::query_scalar(concat!("SELECT 1 FROM automation_runs WHERE ", due!(), " LIMIT 1")).bind(now).fetch_optional(pool).await
    })?;
    if due.is_none() {
        return Ok(None);
    }
    let sql = format!(
        concat!(
            "UPDATE automation_runs SET status = 'running', attempts = attempts + 1, lease_until = $2, updated_at = $1
             WHERE id = (SELECT id FROM automation_runs WHERE ",
            due!(),
            " ORDER BY next_attempt_at LIMIT 1{})
             RETURNING ",
            run_columns!()
        ),
        skip_locked(db)
    );
    let row: Option<RunRow> =
        on_pool!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(now).bind(lease_until).fetch_optional(pool).await)?;
    let Some(run) = row.map(RunRow::into_domain).transpose()? else { return Ok(None) };
    let automation = get(db, run.org_id, run.automation_id).await?;
    let payload: Option<Json<CallEvent>> = on_pool!(db, |pool| {
        sqlx::query_scalar("SELECT payload FROM events WHERE id = $1 AND org_id = $2")
            .bind(run.event_id)
            .bind(run.org_id.0)
            .fetch_optional(pool)
            .await
    })?;
    let event = payload.ok_or(StorageError::NotFound)?.0;
    Ok(Some(ClaimedRun { run, automation, event }))
}

/// Records that the claimed attempt finished action `next_step - 1` with these outputs. Returns
/// `false` when the attempt no longer holds the run (its lease ran out and another took it).
pub async fn save_progress(db: &Db, run: &AutomationRun, next_step: i64, outputs: &[Value]) -> Result<bool> {
    let sql = "UPDATE automation_runs SET next_step = $1, outputs = $2, updated_at = $3
               WHERE id = $4 AND status = 'running' AND attempts = $5";
    let updated = on_pool!(db, |pool| {
        sqlx::query(sql)
            .bind(next_step)
            .bind(Json(outputs))
            .bind(time::now())
            .bind(run.id.0)
            .bind(run.attempts)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(updated == 1)
}

/// How an attempt ended.
pub enum AttemptOutcome {
    Succeeded,
    /// Try again at this time.
    RetryAt(DateTime<Utc>, String),
    /// Stop: `Failed` (cannot succeed) or `Dead` (out of retry time).
    Stopped(RunStatus, String),
}

/// Records the end of the claimed attempt; ignored when another attempt holds the run.
pub async fn finish_attempt(db: &Db, run: &AutomationRun, outcome: AttemptOutcome) -> Result<()> {
    let now = time::now();
    let (status, error, next_attempt, finished) = match outcome {
        AttemptOutcome::Succeeded => (RunStatus::Succeeded, None, None, Some(now)),
        AttemptOutcome::RetryAt(at, error) => (RunStatus::Pending, Some(error), Some(at), None),
        AttemptOutcome::Stopped(status, error) => (status, Some(error), None, Some(now)),
    };
    // A success clears the error of an earlier failed attempt.
    let sql = "UPDATE automation_runs SET status = $1,
                   last_error = CASE WHEN $1 = 'succeeded' THEN NULL ELSE COALESCE($2, last_error) END, next_attempt_at = $3, lease_until = NULL,
                   finished_at = $4, updated_at = $5
               WHERE id = $6 AND status = 'running' AND attempts = $7";
    on_pool!(db, |pool| {
        sqlx::query(sql)
            .bind(status.as_str())
            .bind(error)
            .bind(next_attempt)
            .bind(finished)
            .bind(now)
            .bind(run.id.0)
            .bind(run.attempts)
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// An automation's runs, newest first.
pub async fn runs(db: &Db, org: OrgId, automation: AutomationId, page: PageRequest) -> Result<Page<AutomationRun>> {
    let sql = concat!(
        "SELECT ",
        run_columns!(),
        " FROM automation_runs WHERE org_id = $1 AND automation_id = $2 AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    );
    let rows: Vec<RunRow> = on_pool!(db, |pool| {
        sqlx::query_as(sql).bind(org.0).bind(automation.0).bind(page.before).bind(page.fetch_limit()).fetch_all(pool).await
    })?;
    let items = rows.into_iter().map(RunRow::into_domain).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page, |r| r.id.0))
}

/// The runs a call's events started, oldest first.
pub async fn runs_for_call(db: &Db, org: OrgId, call: CallId) -> Result<Vec<AutomationRun>> {
    let sql = concat!("SELECT ", run_columns!(), " FROM automation_runs WHERE org_id = $1 AND call_id = $2 ORDER BY id");
    let rows: Vec<RunRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(org.0).bind(call.0).fetch_all(pool).await)?;
    rows.into_iter().map(RunRow::into_domain).collect()
}

/// Puts a failed or dead run back in the queue, due now, with a fresh retry window. It resumes
/// at the action that failed.
pub async fn retry(db: &Db, org: OrgId, id: AutomationRunId, actor: Actor) -> Result<AutomationRun> {
    let now = time::now();
    let sql = concat!(
        "UPDATE automation_runs SET status = 'pending', next_attempt_at = $1, give_up_at = $2, finished_at = NULL, updated_at = $1
         WHERE id = $3 AND org_id = $4 AND status IN ('failed', 'dead') RETURNING ",
        run_columns!()
    );
    let mut tx = db.begin().await?;
    let row: Option<RunRow> =
        on_tx!(&mut tx, |conn| sqlx::query_as(sql).bind(now).bind(now + RETRY_WINDOW).bind(id.0).bind(org.0).fetch_optional(conn).await)?;
    let Some(row) = row else {
        let status: Option<String> = on_tx!(&mut tx, |conn| {
            sqlx::query_scalar("SELECT status FROM automation_runs WHERE id = $1 AND org_id = $2")
                .bind(id.0)
                .bind(org.0)
                .fetch_optional(conn)
                .await
        })?;
        return Err(match status {
            None => StorageError::NotFound,
            Some(status) => StorageError::Conflict(format!("the run is {status}; only failed or dead runs can be retried")),
        });
    };
    audit::record(&mut tx, org, Change::new(actor, "automation_run.retried", id, json!({}))).await?;
    tx.commit().await?;
    row.into_domain()
}
