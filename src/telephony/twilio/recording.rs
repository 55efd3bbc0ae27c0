//! Recordings Twilio makes of ConversationRelay calls (`<Start><Recording>` in the call's
//! TwiML; progress reaches the `/twilio/recording` webhook in `routes`). Once ready, the audio is
//! fetched with the account's credentials, sealed and stored through `crate::recording`, then
//! deleted at Twilio unless the phone service keeps Twilio's copy. A caller who opts out has the
//! recording stopped and deleted there. Fetches that fail are tried again by the periodic sweep.

use futures_util::future::BoxFuture;

use super::provisioning;
use super::rest::TwilioClient;
use crate::domain::call::Call;
use crate::domain::ids::RecordingId;
use crate::domain::recording::{RecordingSource, RecordingStatus};
use crate::recording::Recordings;
use crate::storage::recordings::Doomed;
use crate::storage::{Db, calls, phone_numbers, recordings};

/// Fetches of one recording before it counts as failed.
const MOST_ATTEMPTS: i64 = 5;
/// Recordings the sweep fetches at a time.
const SWEEP_BATCH: i64 = 20;

/// What fetching a recording needs.
#[derive(Clone)]
pub struct CarrierRecordings {
    pub db: Db,
    pub client: TwilioClient,
    pub recordings: Recordings,
}

impl CarrierRecordings {
    /// Fetches the finished recording `sid` of `call`, stores it and deletes Twilio's copy
    /// (unless the service keeps it). A failure is noted, to try again later.
    pub async fn fetch(&self, call: &Call, recording: RecordingId, sid: &str) {
        match self.try_fetch(call, recording, sid).await {
            Ok(()) => {}
            Err(why) => match recordings::fetch_failed(&self.db, call.org_id, recording, &why).await {
                Ok(attempts) if attempts >= MOST_ATTEMPTS => {
                    tracing::error!(call = %call.id, %why, attempts, "giving up fetching the call's recording from Twilio");
                    let _ = recordings::give_up(&self.db, call.org_id, recording, RecordingStatus::Failed, &why).await;
                }
                Ok(attempts) => tracing::warn!(call = %call.id, %why, attempts, "could not fetch the call's recording; will try again"),
                Err(e) => tracing::error!(call = %call.id, error = %e, "could not note a failed recording fetch"),
            },
        }
    }

    async fn try_fetch(&self, call: &Call, recording: RecordingId, sid: &str) -> Result<(), String> {
        let provider = call.provider_id.ok_or("the call's phone provider was removed")?;
        let credentials = provisioning::credentials(&self.db, call.org_id, provider).await.map_err(|e| e.to_string())?;
        let wav = self.client.download_recording(&credentials, sid).await.map_err(|e| e.to_string())?;
        let layout = crate::audio::wav::layout(&wav)?.ok_or("Twilio's recording is not a complete WAV file")?;
        let kept = self
            .recordings
            .keep(call.org_id, recording, wav, i64::from(layout.channels), layout.duration_ms as i64)
            .await
            .map_err(|e| e.to_string())?;
        let keep_carrier_copy = match call.phone_number_id {
            Some(number) => phone_numbers::get(&self.db, call.org_id, number).await.is_ok_and(|n| n.recording.keep_carrier_copy),
            None => false,
        };
        // An opted-out recording goes at Twilio too, whatever the service says.
        if !kept || !keep_carrier_copy {
            self.delete_at_carrier(call, sid).await;
        }
        tracing::info!(call = %call.id, kept, "fetched the call's recording from Twilio");
        Ok(())
    }

    /// Deletes Twilio's copy of a recording (ours is the one kept, or none is).
    pub async fn delete_at_carrier(&self, call: &Call, sid: &str) {
        if let Err(why) = self.delete_copy(call, sid).await {
            tracing::warn!(call = %call.id, %why, recording = %sid, "could not delete the recording at Twilio; delete it in the Twilio console");
        }
    }

    /// Deletes Twilio's copy of recording `sid`; one Twilio no longer has is fine.
    async fn delete_copy(&self, call: &Call, sid: &str) -> Result<(), String> {
        let provider = call.provider_id.ok_or("the call's phone provider was removed")?;
        let credentials = provisioning::credentials(&self.db, call.org_id, provider).await.map_err(|e| e.to_string())?;
        match self.client.delete_recording(&credentials, sid).await {
            Err(e) if !e.is_not_found() => Err(e.to_string()),
            _ => Ok(()),
        }
    }

    /// Before an expired recording is purged here: Twilio's copy goes too.
    pub fn erase_copy_of<'d>(&self, doomed: &'d Doomed) -> BoxFuture<'d, Result<(), String>> {
        let carrier = self.clone();
        Box::pin(async move {
            let call = calls::get(&carrier.db, doomed.org, doomed.call).await.map_err(|e| e.to_string())?;
            carrier.erase_carrier_copy(&call).await
        })
    }

    /// Before a call's recording is erased here: Twilio's copy goes too (a service may keep one).
    pub async fn erase_carrier_copy(&self, call: &Call) -> Result<(), String> {
        let recording = recordings::for_call(&self.db, call.org_id, call.id).await.map_err(|e| e.to_string())?;
        let Some(recording) = recording.filter(|r| r.source == RecordingSource::Carrier) else { return Ok(()) };
        match recordings::carrier_sid(&self.db, call.org_id, recording.id).await.map_err(|e| e.to_string())? {
            Some(sid) => self.delete_copy(call, &sid).await,
            None => Ok(()),
        }
    }

    /// The caller opted out: the recording stops at Twilio and is deleted there (when Twilio has
    /// not yet said which recording it is, its `completed` callback deletes it).
    pub async fn opt_out(&self, call: &Call) {
        let stopped = async {
            let Some(recording) = recordings::for_call(&self.db, call.org_id, call.id).await? else { return Ok(None) };
            recordings::opt_out(&self.db, call.org_id, recording.id).await?;
            recordings::carrier_sid(&self.db, call.org_id, recording.id).await
        };
        match stopped.await {
            Ok(Some(sid)) => {
                if let Some(provider) = call.provider_id
                    && let Ok(credentials) = provisioning::credentials(&self.db, call.org_id, provider).await
                    && let Err(e) = self.client.stop_recording(&credentials, &call.call_sid, &sid).await
                {
                    tracing::warn!(call = %call.id, error = %e, "could not stop the recording at Twilio");
                }
                self.delete_at_carrier(call, &sid).await;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(call = %call.id, error = %e, "could not note the caller's opt-out of the recording"),
        }
    }

    /// Fetches the recordings whose earlier fetch failed (or whose server stopped first).
    pub async fn sweep(&self) {
        let waiting = match recordings::awaiting_fetch(&self.db, SWEEP_BATCH).await {
            Ok(waiting) => waiting,
            Err(e) => return tracing::warn!(error = %e, "could not list recordings waiting to be fetched"),
        };
        for (org, recording, call, sid) in waiting {
            match calls::get(&self.db, org, call).await {
                Ok(call) => self.fetch(&call, recording, &sid).await,
                Err(e) => tracing::warn!(%call, error = %e, "a recording waits for a call that cannot be read"),
            }
        }
    }
}
