//! Call recordings' audio: sealed under a key of its own (`sealed`), kept in the recording store
//! (`store`), read back by byte range for playback, and erased with its call, on request, or
//! when the retention policy says. Who captures the audio: Twilio on ConversationRelay calls
//! (`telephony/twilio/recording.rs` fetches it), Switchboard itself on Media Streams calls
//! (`telephony/twilio/media.rs`). The rows are in `storage::recordings`.

pub mod sealed;
pub mod store;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use zeroize::Zeroizing;

use crate::domain::audit::Actor;
use crate::domain::call::Call;
use crate::domain::ids::{CallId, OrgId, RecordingId};
use crate::domain::recording::RecordingSource;
use crate::storage::recordings::{self, Doomed, StoredAudio};
use crate::storage::{Db, StorageError, retention};
use sealed::{Header, RecordingKey, SealError};
use store::RecordingStore;

/// Recordings erased per query while purging.
const PURGE_BATCH: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the recording store failed: {0}")]
    Store(#[from] std::io::Error),
    #[error(transparent)]
    Sealed(#[from] SealError),
}

/// The recordings of this server: their rows and their store.
#[derive(Clone)]
pub struct Recordings {
    db: Db,
    store: Arc<RecordingStore>,
}

impl Recordings {
    pub fn new(db: Db, store: RecordingStore) -> Self {
        Self { db, store: Arc::new(store) }
    }

    pub fn store(&self) -> &RecordingStore {
        &self.store
    }

    /// Notes that `call` is being recorded by `source`, after callers heard `announcement`.
    pub async fn begin(&self, call: &Call, source: RecordingSource, announcement: &str) -> Result<RecordingId, RecordingError> {
        Ok(recordings::start(&self.db, call.org_id, call.id, source, Some(announcement)).await?.id)
    }

    /// The caller opted out: nothing of the recording is kept.
    pub async fn opt_out(&self, org: OrgId, recording: RecordingId) -> Result<(), RecordingError> {
        recordings::opt_out(&self.db, org, recording).await?;
        Ok(())
    }

    /// Seals and stores a recording's audio (a WAV file of `channels` channels). `false` when
    /// the caller opted out meanwhile: nothing is kept.
    pub async fn keep(
        &self,
        org: OrgId,
        recording: RecordingId,
        wav: Vec<u8>,
        channels: i64,
        duration_ms: i64,
    ) -> Result<bool, RecordingError> {
        let key = Zeroizing::new(sealed::new_key());
        // Each attempt writes its own object: one that loses a race deletes only what it wrote.
        let object_key = format!("{org}/{recording}.{}.sealed", uuid::Uuid::now_v7().simple());
        let bytes = wav.len() as i64;
        let sealing_key = key.clone();
        let sealed = tokio::task::spawn_blocking(move || sealed::seal(&sealing_key, &wav)).await.expect("sealing does not panic");
        self.store.put(&object_key, sealed).await?;
        let encoded = Zeroizing::new(BASE64.encode(*key));
        let audio = StoredAudio { object_key: &object_key, key: &encoded, bytes, channels, duration_ms };
        let kept = recordings::stored(&self.db, org, recording, audio).await?;
        if !kept {
            self.store.delete(&object_key).await?;
        }
        Ok(kept)
    }

    /// The stored audio of a recording, to read by range.
    pub async fn audio(&self, org: OrgId, recording: RecordingId) -> Result<RecordingAudio, RecordingError> {
        let (object_key, encoded) = recordings::audio_key(&self.db, org, recording).await?;
        let corrupt = || StorageError::Corrupt(format!("the key of recording {recording} is not 32 bytes of base64"));
        let decoded = Zeroizing::new(BASE64.decode(encoded.as_bytes()).map_err(|_| corrupt())?);
        let key: Zeroizing<RecordingKey> = Zeroizing::new(decoded.as_slice().try_into().map_err(|_| corrupt())?);
        let header = Header::parse(&self.store.read(&object_key, 0, sealed::HEADER).await?)?;
        Ok(RecordingAudio { store: self.store.clone(), object_key, key, header })
    }

    /// Erases a recording: its audio from the store, then its row (audited with `why`).
    pub async fn erase(&self, doomed: &Doomed, actor: Actor, why: &str) -> Result<(), RecordingError> {
        if let Some(object_key) = &doomed.object_key {
            self.store.delete(object_key).await?;
        }
        Ok(recordings::delete(&self.db, doomed, actor, why).await?)
    }

    /// Erases the recording of `call`, if it has one.
    pub async fn erase_for_call(&self, org: OrgId, call: CallId, actor: Actor, why: &str) -> Result<(), RecordingError> {
        match recordings::of_call(&self.db, org, call).await? {
            Some(doomed) => self.erase(&doomed, actor, why).await,
            None => Ok(()),
        }
    }

    /// Erases the recordings every organisation's retention policy says have expired at `now`
    /// (`recording_days`, or `record_days` when sooner: a recording goes with its record), each
    /// after `erase_elsewhere` (the carrier's copy) has gone; returns how many went. One whose
    /// copy elsewhere cannot go yet stays, with its organisation's later ones, for the next purge.
    pub async fn purge_expired(
        &self,
        now: DateTime<Utc>,
        erase_elsewhere: impl for<'d> Fn(&'d Doomed) -> BoxFuture<'d, Result<(), String>>,
    ) -> Result<u64, RecordingError> {
        let mut erased = 0;
        for (org, policy) in retention::policies(&self.db).await? {
            let days = [policy.recording_days, policy.record_days].into_iter().flatten().min();
            let Some(before) = days.map(|days| now - chrono::Duration::days(days)) else { continue };
            'org: loop {
                let batch = recordings::of_calls_before(&self.db, org, before, PURGE_BATCH).await?;
                for doomed in &batch {
                    if let Err(why) = erase_elsewhere(doomed).await {
                        tracing::warn!(recording = %doomed.id, %why, "an expired recording stays until its copy elsewhere can go");
                        break 'org;
                    }
                    self.erase(doomed, Actor::System, "retention").await?;
                    erased += 1;
                }
                if (batch.len() as i64) < PURGE_BATCH {
                    break;
                }
            }
        }
        Ok(erased)
    }
}

/// A stored recording's audio, opened for reading.
pub struct RecordingAudio {
    store: Arc<RecordingStore>,
    object_key: String,
    key: Zeroizing<RecordingKey>,
    header: Header,
}

impl RecordingAudio {
    /// The audio's length in bytes (a WAV file).
    pub fn len(&self) -> u64 {
        self.header.audio_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Audio bytes `start..end` (`end` past the audio reads to its end).
    pub async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, RecordingError> {
        let end = end.min(self.len());
        if start >= end {
            return Ok(Vec::new());
        }
        let (chunks, offset, len) = self.header.chunks_for(start, end);
        let sealed = self.store.read(&self.object_key, offset, len).await?;
        let opened = self.header.open_chunks(&self.key, chunks.start, &sealed)?;
        Ok(self.header.cut(&opened, chunks.start, start, end).to_vec())
    }
}
