//! Call recordings: one row per recorded call, from the moment recording starts to the audio
//! stored (or why there is none). The audio itself lives in the recording store
//! (`crate::recording`); here is where it is (`object_key`) and its key, sealed under the master
//! key like a credential (`recordings.key`).

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::audit::{self, Change};
use super::secrets::SecretSlot;
use super::{Db, Result, StorageError, costs, on_pool, on_tx, parse_stored};
use crate::domain::audit::Actor;
use crate::domain::ids::{CallId, OrgId, RecordingId};
use crate::domain::recording::{Recording, RecordingSource, RecordingStatus};
use crate::domain::time;

macro_rules! columns {
    () => {
        "id, call_id, status, source, announcement, channels, duration_ms, bytes, detail, opted_out_at, created_at, stored_at"
    };
}

#[derive(sqlx::FromRow)]
struct RecordingRow {
    id: Uuid,
    call_id: Uuid,
    status: String,
    source: String,
    announcement: Option<String>,
    channels: Option<i64>,
    duration_ms: Option<i64>,
    bytes: Option<i64>,
    detail: Option<String>,
    opted_out_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    stored_at: Option<DateTime<Utc>>,
}

impl RecordingRow {
    fn into_domain(self) -> Result<Recording> {
        Ok(Recording {
            id: RecordingId(self.id),
            call_id: CallId(self.call_id),
            status: parse_stored("status", &self.status)?,
            source: parse_stored("source", &self.source)?,
            announcement: self.announcement,
            channels: self.channels,
            duration_ms: self.duration_ms,
            bytes: self.bytes,
            detail: self.detail,
            opted_out_at: self.opted_out_at,
            created_at: self.created_at,
            stored_at: self.stored_at,
        })
    }
}

fn key_slot(org: OrgId, id: RecordingId) -> SecretSlot<'static> {
    SecretSlot { org: org.0, table: "recordings", row: id.0, column: "key" }
}

/// Notes that `call` is being recorded by `source`, after callers heard `announcement`; a call
/// already noted keeps its row.
pub async fn start(db: &Db, org: OrgId, call: CallId, source: RecordingSource, announcement: Option<&str>) -> Result<Recording> {
    let sql = "INSERT INTO recordings (id, org_id, call_id, status, source, announcement, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (call_id) DO NOTHING";
    on_pool!(db, |pool| {
        sqlx::query(sql)
            .bind(RecordingId::generate().0)
            .bind(org.0)
            .bind(call.0)
            .bind(RecordingStatus::Recording.as_str())
            .bind(source.as_str())
            .bind(announcement)
            .bind(time::now())
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    for_call(db, org, call).await?.ok_or(StorageError::NotFound)
}

/// The recording of `call`, if it was recorded.
pub async fn for_call(db: &Db, org: OrgId, call: CallId) -> Result<Option<Recording>> {
    let sql = concat!("SELECT ", columns!(), " FROM recordings WHERE call_id = $1 AND org_id = $2");
    let row: Option<RecordingRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(call.0).bind(org.0).fetch_optional(pool).await)?;
    row.map(RecordingRow::into_domain).transpose()
}

/// Moves a recording on to `status` from one of `from`; whether it moved (it may have been opted
/// out or stored meanwhile).
async fn advance(
    db: &Db,
    org: OrgId,
    id: RecordingId,
    from: &[RecordingStatus],
    status: RecordingStatus,
    detail: Option<&str>,
) -> Result<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let moved = on_pool!(db, |pool| {
        sqlx::query(
            "UPDATE recordings SET status = $1, detail = COALESCE($2, detail)
             WHERE id = $3 AND org_id = $4 AND status IN ($5, $6, $7)",
        )
        .bind(status.as_str())
        .bind(detail)
        .bind(id.0)
        .bind(org.0)
        .bind(from.first().copied())
        .bind(from.get(1).copied())
        .bind(from.get(2).copied())
        .execute(pool)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(moved == 1)
}

/// The carrier's id for the recording, as it starts.
pub async fn note_carrier_sid(db: &Db, org: OrgId, id: RecordingId, carrier_sid: &str) -> Result<()> {
    on_pool!(db, |pool| {
        sqlx::query("UPDATE recordings SET carrier_sid = $1 WHERE id = $2 AND org_id = $3")
            .bind(carrier_sid)
            .bind(id.0)
            .bind(org.0)
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

/// The carrier has finished a recording (`carrier_sid`): it waits to be fetched. Whether it
/// should be (`false` when the caller opted out meanwhile, or it was already taken).
pub async fn carrier_finished(db: &Db, org: OrgId, id: RecordingId, carrier_sid: &str) -> Result<bool> {
    note_carrier_sid(db, org, id, carrier_sid).await?;
    advance(db, org, id, &[RecordingStatus::Recording], RecordingStatus::Processing, None).await
}

/// Twilio's id for a carrier recording, once it has said.
pub async fn carrier_sid(db: &Db, org: OrgId, id: RecordingId) -> Result<Option<String>> {
    let sid: Option<Option<String>> = on_pool!(db, |pool| {
        sqlx::query_scalar("SELECT carrier_sid FROM recordings WHERE id = $1 AND org_id = $2")
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(pool)
            .await
    })?;
    sid.ok_or(StorageError::NotFound)
}

/// The caller pressed the opt-out key: the recording stops and is not kept. Whether it was
/// still going (a second press changes nothing).
pub async fn opt_out(db: &Db, org: OrgId, id: RecordingId) -> Result<bool> {
    let moved = on_pool!(db, |pool| {
        sqlx::query("UPDATE recordings SET status = $1, opted_out_at = $2 WHERE id = $3 AND org_id = $4 AND status IN ($5, $6)")
            .bind(RecordingStatus::OptedOut.as_str())
            .bind(time::now())
            .bind(id.0)
            .bind(org.0)
            .bind(RecordingStatus::Recording.as_str())
            .bind(RecordingStatus::Processing.as_str())
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(moved == 1)
}

/// There is no audio, and why (the carrier had none, or fetching it failed for good).
pub async fn give_up(db: &Db, org: OrgId, id: RecordingId, status: RecordingStatus, why: &str) -> Result<()> {
    advance(db, org, id, &[RecordingStatus::Recording, RecordingStatus::Processing], status, Some(why)).await.map(|_| ())
}

/// Counts a failed fetch from the carrier; returns the attempts so far.
pub async fn fetch_failed(db: &Db, org: OrgId, id: RecordingId, why: &str) -> Result<i64> {
    let attempts: Option<i64> = on_pool!(db, |pool| {
        sqlx::query_scalar("UPDATE recordings SET attempts = attempts + 1, detail = $1 WHERE id = $2 AND org_id = $3 RETURNING attempts")
            .bind(why)
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(pool)
            .await
    })?;
    attempts.ok_or(StorageError::NotFound)
}

/// Where a stored recording's audio is and what it is.
pub struct StoredAudio<'a> {
    pub object_key: &'a str,
    /// The recording's own key (base64), sealed here under the master key.
    pub key: &'a str,
    pub bytes: i64,
    pub channels: i64,
    pub duration_ms: i64,
}

/// The audio is in the store. `false` when the recording was opted out meanwhile: the caller
/// must then delete what it stored.
pub async fn stored(db: &Db, org: OrgId, id: RecordingId, audio: StoredAudio<'_>) -> Result<bool> {
    let key_enc = db.cipher().encrypt(&key_slot(org, id), audio.key);
    let call: Option<Uuid> = on_pool!(db, |pool| {
        sqlx::query_scalar(
            "UPDATE recordings SET status = $1, object_key = $2, key_enc = $3, bytes = $4, channels = $5, duration_ms = $6,
                 stored_at = $7, detail = NULL
             WHERE id = $8 AND org_id = $9 AND status IN ($10, $11) RETURNING call_id",
        )
        .bind(RecordingStatus::Stored.as_str())
        .bind(audio.object_key)
        .bind(&key_enc)
        .bind(audio.bytes)
        .bind(audio.channels)
        .bind(audio.duration_ms)
        .bind(time::now())
        .bind(id.0)
        .bind(org.0)
        .bind(RecordingStatus::Recording.as_str())
        .bind(RecordingStatus::Processing.as_str())
        .fetch_optional(pool)
        .await
    })?;
    // The recording's minutes join its call's cost.
    if let Some(call) = call {
        costs::refresh_call(db, org, CallId(call)).await?;
    }
    Ok(call.is_some())
}

/// Where a stored recording's audio is, and its key, opened.
pub async fn audio_key(db: &Db, org: OrgId, id: RecordingId) -> Result<(String, Zeroizing<String>)> {
    let row: Option<(Option<String>, Option<Vec<u8>>)> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT object_key, key_enc FROM recordings WHERE id = $1 AND org_id = $2 AND status = $3")
            .bind(id.0)
            .bind(org.0)
            .bind(RecordingStatus::Stored.as_str())
            .fetch_optional(pool)
            .await
    })?;
    let (Some(object_key), Some(sealed)) = row.ok_or(StorageError::NotFound)? else {
        return Err(StorageError::Corrupt(format!("recording {id} is stored without its audio's place or key")));
    };
    Ok((object_key, db.cipher().decrypt(&key_slot(org, id), &sealed)?))
}

/// A recording whose stored audio is to go, and where it is.
pub struct Doomed {
    pub org: OrgId,
    pub id: RecordingId,
    pub call: CallId,
    pub object_key: Option<String>,
}

/// Recordings of calls that started before `before` (at most `limit`), of `org`.
pub async fn of_calls_before(db: &Db, org: OrgId, before: DateTime<Utc>, limit: i64) -> Result<Vec<Doomed>> {
    let rows: Vec<(Uuid, Uuid, Option<String>)> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT r.id, r.call_id, r.object_key FROM recordings r JOIN calls c ON c.id = r.call_id
             WHERE r.org_id = $1 AND c.started_at < $2 ORDER BY r.id LIMIT $3",
        )
        .bind(org.0)
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows.into_iter().map(|(id, call, object_key)| Doomed { org, id: RecordingId(id), call: CallId(call), object_key }).collect())
}

/// The recording of `call`, to erase with it.
pub async fn of_call(db: &Db, org: OrgId, call: CallId) -> Result<Option<Doomed>> {
    let row: Option<(Uuid, Option<String>)> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT id, object_key FROM recordings WHERE call_id = $1 AND org_id = $2")
            .bind(call.0)
            .bind(org.0)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.map(|(id, object_key)| Doomed { org, id: RecordingId(id), call, object_key }))
}

/// Carrier recordings finished and not yet fetched (a fetch that failed, or a server that
/// stopped before it was done), oldest first.
pub async fn awaiting_fetch(db: &Db, limit: i64) -> Result<Vec<(OrgId, RecordingId, CallId, String)>> {
    let rows: Vec<(Uuid, Uuid, Uuid, String)> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT org_id, id, call_id, carrier_sid FROM recordings
             WHERE status = $1 AND carrier_sid IS NOT NULL ORDER BY id LIMIT $2",
        )
        .bind(RecordingStatus::Processing.as_str())
        .bind(limit)
        .fetch_all(pool)
        .await
    })?;
    Ok(rows.into_iter().map(|(org, id, call, sid)| (OrgId(org), RecordingId(id), CallId(call), sid)).collect())
}

/// Deletes the row of a recording whose audio is gone, with an audit entry saying why.
pub async fn delete(db: &Db, doomed: &Doomed, actor: Actor, why: &str) -> Result<()> {
    let mut tx = db.begin().await?;
    let deleted = on_tx!(&mut tx, |conn| {
        sqlx::query("DELETE FROM recordings WHERE id = $1 AND org_id = $2")
            .bind(doomed.id.0)
            .bind(doomed.org.0)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    if deleted == 1 {
        let change = Change::new(actor, "recording.erased", doomed.id, json!({ "call_id": doomed.call, "why": why }));
        audit::record(&mut tx, doomed.org, change).await?;
    }
    tx.commit().await
}
