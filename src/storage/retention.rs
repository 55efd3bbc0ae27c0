//! Retention: how long an organisation keeps transcripts and call records, and the purge that
//! enforces it. Transcripts go first (their turns, and the events that carry copies of them,
//! with those events' automation runs); whole call records go later. Each purge that removes
//! something is written to the audit log with its counts.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::{Db, Result, StorageError, on_pool, on_tx};
use crate::domain::audit::Actor;
use crate::domain::ids::OrgId;
use crate::domain::org::RetentionPolicy;

pub async fn policy(db: &Db, org: OrgId) -> Result<RetentionPolicy> {
    let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT transcript_retention_days, record_retention_days, recording_retention_days FROM organizations WHERE id = $1")
            .bind(org.0)
            .fetch_optional(pool)
            .await
    })?;
    let (transcript_days, record_days, recording_days) = row.ok_or(StorageError::NotFound)?;
    Ok(RetentionPolicy { transcript_days, record_days, recording_days })
}

/// An organisation and its days of transcripts, records and recordings.
type PolicyRow = (Uuid, Option<i64>, Option<i64>, Option<i64>);

/// The policy of every organisation that has one.
pub async fn policies(db: &Db) -> Result<Vec<(OrgId, RetentionPolicy)>> {
    let rows: Vec<PolicyRow> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT id, transcript_retention_days, record_retention_days, recording_retention_days FROM organizations
             WHERE transcript_retention_days IS NOT NULL OR record_retention_days IS NOT NULL OR recording_retention_days IS NOT NULL",
        )
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(org, transcript_days, record_days, recording_days)| {
            (OrgId(org), RetentionPolicy { transcript_days, record_days, recording_days })
        })
        .collect())
}

pub async fn set_policy(db: &Db, org: OrgId, policy: &RetentionPolicy, actor: Actor) -> Result<()> {
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, |conn| {
        sqlx::query(
            "UPDATE organizations SET transcript_retention_days = $1, record_retention_days = $2, recording_retention_days = $3
             WHERE id = $4",
        )
        .bind(policy.transcript_days)
        .bind(policy.record_days)
        .bind(policy.recording_days)
        .bind(org.0)
        .execute(conn)
        .await
        .map(|_| ())
    })?;
    let change = Change::new(actor, "retention.updated", org, json!(policy));
    audit::record(&mut tx, org, change).await?;
    tx.commit().await
}

/// Purges the transcripts and call records every organisation's policy says have expired at
/// `now`. Recordings go first, through `crate::recording` (their audio is not in the database):
/// a call whose recording is still there is not deleted.
pub async fn purge_expired(db: &Db, now: DateTime<Utc>) -> Result<()> {
    for (org, policy) in policies(db).await? {
        purge_org(db, org, now, policy).await?;
    }
    Ok(())
}

/// Rows deleted per statement, each its own transaction, so a large purge never holds the
/// database (SQLite's single write lock) for long: live calls' turns are written in between.
const PURGE_BATCH: i64 = 1000;

/// Deletes audit entries written before `before`, in batches; returns how many went.
pub async fn purge_audit(db: &Db, before: DateTime<Utc>) -> Result<u64> {
    in_batches(|| async {
        Ok(on_pool!(db, |pool| {
            sqlx::query("DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE created_at < $1 ORDER BY id LIMIT $2)")
                .bind(before)
                .bind(PURGE_BATCH)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })?)
    })
    .await
}

/// Repeats a batch deletion until a batch comes back short; returns the rows removed.
async fn in_batches<F: Future<Output = Result<u64>>>(mut delete_batch: impl FnMut() -> F) -> Result<u64> {
    let mut deleted = 0;
    loop {
        let batch = delete_batch().await?;
        deleted += batch;
        if batch < PURGE_BATCH as u64 {
            return Ok(deleted);
        }
    }
}

/// Deletes `$3` rows of `{table}` (its key `{key}`, selected as `{columns}` of `t`) that belong
/// to `$1`'s calls started before `$2`.
macro_rules! of_old_calls {
    ($table:literal, $key:literal, $columns:literal) => {
        concat!(
            "DELETE FROM ",
            $table,
            " WHERE ",
            $key,
            " IN (SELECT ",
            $columns,
            " FROM ",
            $table,
            " t JOIN calls c ",
            "ON c.id = t.call_id WHERE t.org_id = $1 AND c.started_at < $2 LIMIT $3)"
        )
    };
}

async fn purge_org(db: &Db, org: OrgId, now: DateTime<Utc>, policy: RetentionPolicy) -> Result<()> {
    let cutoff = |days: Option<i64>| days.map(|d| now - chrono::Duration::days(d));
    let (mut turns, mut events, mut records) = (0, 0, 0);
    if let Some(before) = cutoff(policy.transcript_days) {
        turns = delete_old(db, of_old_calls!("conversation_turns", "(call_id, sequence)", "t.call_id, t.sequence"), org, before).await?;
        events = delete_old(db, of_old_calls!("events", "id", "t.id"), org, before).await?;
    }
    if let Some(before) = cutoff(policy.record_days) {
        let sql = "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE org_id = $1 AND started_at < $2 LIMIT $3)";
        records = delete_old(db, sql, org, before).await?;
    }
    if turns + events + records > 0 {
        let details = json!({ "transcript_turns": turns, "events": events, "call_records": records, "policy": policy });
        let mut tx = db.begin().await?;
        audit::record(&mut tx, org, Change::new(Actor::System, "retention.purged", org, details)).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Runs one purge statement (`$1` the organisation, `$2` the cutoff, `$3` the batch) until it
/// finds nothing more; returns the rows removed.
async fn delete_old(db: &Db, sql: &'static str, org: OrgId, before: DateTime<Utc>) -> Result<u64> {
    in_batches(|| async {
        Ok(on_pool!(db, |pool| sqlx::query(sql).bind(org.0).bind(before).bind(PURGE_BATCH).execute(pool).await.map(|r| r.rows_affected()))?)
    })
    .await
}
