//! Session assembly: everything a call's agent session needs, read from storage — the agent
//! version the call was answered with, its model, the greeting and the languages of the phone
//! service. Every transport (ConversationRelay now, Media Streams next) starts sessions from here.

use std::sync::Arc;

use super::call_log::{StoredCallLog, TranscriptWriter};
use super::live::LiveSessions;
use super::model;
use super::session::{RecordingConsent, SessionSetup};
use super::usage::{MeteredModel, UsageMeter};
use crate::domain::call::Call;
use crate::domain::cost::Transport;
use crate::domain::phone_number::ServiceMode;
use crate::models::LoadedModels;
use crate::providers::egress::Egress;
use crate::providers::llm::ChatModel;
use crate::storage::{Db, StorageError, agents, phone_numbers};

/// The session setup for `call`, as its phone service says, writing through this process's
/// transcript writer and registered with its live sessions.
pub async fn for_call(
    db: &Db,
    egress: &Egress,
    models: &LoadedModels,
    call: &Call,
    live: Arc<LiveSessions>,
    transcripts: TranscriptWriter,
) -> Result<SessionSetup<StoredCallLog>, StorageError> {
    let (Some(agent_id), Some(number_id)) = (call.agent_id, call.phone_number_id) else { return Err(StorageError::NotFound) };
    let org = call.org_id;
    let mut agent = match call.agent_version {
        Some(version) => agents::version(db, org, agent_id, version).await?,
        None => agents::get(db, org, agent_id).await?.spec,
    };
    let number = phone_numbers::get(db, org, number_id).await?;
    let transport = match number.mode {
        ServiceMode::ConversationRelay => Transport::ConversationRelay,
        ServiceMode::MediaStream => Transport::MediaStreams,
    };
    let meter = UsageMeter::new(transport);
    let llm = model::for_agent(db, egress, models, org, &agent).await?.map(|found| {
        if found.provider_id.is_none() && agent.end_call_phrases.is_empty() {
            agent.end_call_phrases = model::EMBEDDED_END_CALL_PHRASES.map(str::to_owned).to_vec();
        }
        let metered = MeteredModel::new(found.client, found.provider_id, meter.clone());
        (Arc::new(metered) as Arc<dyn ChatModel>, found.model)
    });
    Ok(SessionSetup {
        log: StoredCallLog { db: db.clone(), org, call: call.id, transcripts, meter },
        caller: call.from.clone(),
        greeting: Some(number.greeting(&agent).to_owned()),
        carrier_speaks_greeting: number.mode == ServiceMode::ConversationRelay,
        other_languages: number.other_languages(),
        recording: number
            .recording
            .announcement_for(super::speech::CALL_LANGUAGE)
            .map(|announcement| RecordingConsent { announcement, caller_may_opt_out: number.recording.caller_may_opt_out }),
        agent,
        llm,
        live,
    })
}
