//! Retention: how long an organisation keeps transcripts and call records, and the purge that
//! enforces it. Transcripts go first (their turns, and the events that carry copies of them,
//! with those events' automation runs); whole call records go later. Each purge that removes
//! something is written to the audit log with its counts.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::{Db, Result, StorageError, Tx, on_pool, on_tx};
use crate::domain::audit::Actor;
use crate::domain::ids::OrgId;
use crate::domain::org::RetentionPolicy;

pub async fn policy(db: &Db, org: OrgId) -> Result<RetentionPolicy> {
    let row: Option<(Option<i64>, Option<i64>)> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT transcript_retention_days, record_retention_days FROM organizations WHERE id = $1")
            .bind(org.0)
            .fetch_optional(pool)
            .await
    })?;
    let (transcript_days, record_days) = row.ok_or(StorageError::NotFound)?;
    Ok(RetentionPolicy { transcript_days, record_days })
}

pub async fn set_policy(db: &Db, org: OrgId, policy: &RetentionPolicy, actor: Actor) -> Result<()> {
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, |conn| {
        sqlx::query("UPDATE organizations SET transcript_retention_days = $1, record_retention_days = $2 WHERE id = $3")
            .bind(policy.transcript_days)
            .bind(policy.record_days)
            .bind(org.0)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    let change = Change::new(actor, "retention.updated", org, json!(policy));
    audit::record(&mut tx, org, change).await?;
    tx.commit().await
}

/// Purges what every organisation's policy says has expired at `now`.
pub async fn purge_expired(db: &Db, now: DateTime<Utc>) -> Result<()> {
    let orgs: Vec<(Uuid, Option<i64>, Option<i64>)> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT id, transcript_retention_days, record_retention_days FROM organizations
             WHERE transcript_retention_days IS NOT NULL OR record_retention_days IS NOT NULL",
        )
        .fetch_all(pool)
        .await
    })?;
    for (org, transcript_days, record_days) in orgs {
        purge_org(db, OrgId(org), now, RetentionPolicy { transcript_days, record_days }).await?;
    }
    Ok(())
}

/// Audit entries deleted per statement, so a large purge never holds the database for long.
const AUDIT_PURGE_BATCH: i64 = 1000;

/// Deletes audit entries written before `before`, in batches; returns how many went.
pub async fn purge_audit(db: &Db, before: DateTime<Utc>) -> Result<u64> {
    let mut purged = 0;
    loop {
        let deleted = on_pool!(db, |pool| {
            sqlx::query("DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE created_at < $1 ORDER BY id LIMIT $2)")
                .bind(before)
                .bind(AUDIT_PURGE_BATCH)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })?;
        purged += deleted;
        if deleted < AUDIT_PURGE_BATCH as u64 {
            return Ok(purged);
        }
    }
}

/// Rows of `$1`'s calls that started before `$2`.
macro_rules! of_old_calls {
    () => {
        "org_id = $1 AND call_id IN (SELECT id FROM calls WHERE org_id = $1 AND started_at < $2)"
    };
}

async fn purge_org(db: &Db, org: OrgId, now: DateTime<Utc>, policy: RetentionPolicy) -> Result<()> {
    let cutoff = |days: Option<i64>| days.map(|d| now - chrono::Duration::days(d));
    let mut tx = db.begin().await?;
    let (mut turns, mut events, mut records) = (0, 0, 0);
    if let Some(before) = cutoff(policy.transcript_days) {
        turns = delete_old(&mut tx, concat!("DELETE FROM conversation_turns WHERE ", of_old_calls!()), org, before).await?;
        events = delete_old(&mut tx, concat!("DELETE FROM events WHERE ", of_old_calls!()), org, before).await?;
    }
    if let Some(before) = cutoff(policy.record_days) {
        records = delete_old(&mut tx, "DELETE FROM calls WHERE org_id = $1 AND started_at < $2", org, before).await?;
    }
    if turns + events + records > 0 {
        let details = json!({ "transcript_turns": turns, "events": events, "call_records": records, "policy": policy });
        audit::record(&mut tx, org, Change::new(Actor::System, "retention.purged", org, details)).await?;
    }
    tx.commit().await
}

/// Runs one purge statement (`$1` the organisation, `$2` the cutoff); returns the rows removed.
async fn delete_old(tx: &mut Tx, sql: &'static str, org: OrgId, before: DateTime<Utc>) -> Result<u64> {
    Ok(on_tx!(tx, |conn| sqlx::query(sql).bind(org.0).bind(before).execute(conn).await.map(|r| r.rows_affected()))?)
}
