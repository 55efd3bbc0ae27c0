//! Provider verification and the lifecycle of numbers at Twilio: buy or attach a number and
//! point it at us, then restore or release it when its phone service is removed. Storage keeps
//! what we did; this module keeps Twilio and storage in step.

use serde_json::json;

use super::rest::{Credentials, IncomingNumber, Purchase, TwilioClient, TwilioError, VoiceSettings};
use crate::domain::audit::Actor;
use crate::domain::ids::{AgentId, AppId, OrgId, PhoneNumberId, PhoneProviderId};
use crate::domain::phone_number::{AreaCode, Backup, E164, NumberOffer, OwnedNumber, PhoneNumber, ServiceMode};
use crate::domain::provider::{PhoneProvider, PhoneProviderStatus};
use crate::domain::recording::RecordingSettings;
use crate::storage::phone_numbers::{self, NewPhoneNumber};
use crate::storage::{Db, StorageError, phone_providers};

/// Failures of provisioning, in carrier-neutral terms for the API to explain.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The request cannot be carried out as asked (the message says why).
    #[error("{0}")]
    Refused(String),
    /// The carrier refused the request.
    #[error("{0}")]
    CarrierRefused(String),
    /// The carrier rejected the account's credentials; the provider is marked accordingly.
    #[error("{0}; the provider is now marked invalid_credentials: update its auth token")]
    BadCredentials(String),
    /// The carrier could not be reached, or its answer could not be read.
    #[error("{0}")]
    CarrierUnavailable(String),
}

impl From<TwilioError> for ProvisioningError {
    fn from(e: TwilioError) -> Self {
        match e {
            e if e.is_bad_credentials() => ProvisioningError::BadCredentials(e.to_string()),
            e @ (TwilioError::Unreachable(_) | TwilioError::Unreadable(_)) => ProvisioningError::CarrierUnavailable(e.to_string()),
            e @ TwilioError::Refused { .. } => ProvisioningError::CarrierRefused(e.to_string()),
        }
    }
}

/// How to get the number of a new phone service.
pub enum NumberSource {
    /// Buy any number in this area code.
    Buy(AreaCode),
    /// Use this number: attach it if the account owns it, else buy it.
    Number(E164),
    /// Attach the account's number with this SID.
    Sid(String),
}

/// The credentials for REST calls: the API key when the provider has one, else the auth token.
pub async fn credentials(db: &Db, org: OrgId, provider: PhoneProviderId) -> Result<Credentials, StorageError> {
    let secrets = phone_providers::secrets(db, org, provider).await?;
    let (username, password) = match secrets.api_key {
        Some((sid, secret)) => (sid, secret),
        None => (secrets.account_sid.clone(), secrets.auth_token),
    };
    Ok(Credentials { account_sid: secrets.account_sid, username, password })
}

/// Asks Twilio about the account and records what it says: `active`/`suspended`/`closed`,
/// `invalid_credentials` when Twilio refuses them, `unreachable` when it cannot be asked.
pub async fn verify_provider(db: &Db, twilio: &TwilioClient, org: OrgId, id: PhoneProviderId) -> Result<PhoneProvider, StorageError> {
    let creds = credentials(db, org, id).await?;
    let (status, error) = match twilio.fetch_account(&creds).await {
        Ok(account) => match account.status.as_str() {
            "active" => (PhoneProviderStatus::Active, None),
            "suspended" => (PhoneProviderStatus::Suspended, Some("Twilio reports the account as suspended".to_owned())),
            "closed" => (PhoneProviderStatus::Closed, Some("Twilio reports the account as closed".to_owned())),
            other => (PhoneProviderStatus::Unreachable, Some(format!("Twilio reported an unknown account status `{other}`"))),
        },
        Err(e) if e.is_bad_credentials() => (PhoneProviderStatus::InvalidCredentials, Some(e.to_string())),
        Err(e) => (PhoneProviderStatus::Unreachable, Some(e.to_string())),
    };
    phone_providers::record_verification(db, org, id, status, error.as_deref()).await
}

/// Passes `result` on; when Twilio refused the provider's credentials, first marks the provider
/// `invalid_credentials` so the problem shows where users look.
async fn noting_bad_credentials<T>(
    db: &Db,
    org: OrgId,
    provider: PhoneProviderId,
    result: Result<T, ProvisioningError>,
) -> Result<T, ProvisioningError> {
    if let Err(ProvisioningError::BadCredentials(reason)) = &result
        && let Err(storage) =
            phone_providers::record_verification(db, org, provider, PhoneProviderStatus::InvalidCredentials, Some(reason)).await
    {
        tracing::error!(error = ?storage, "could not mark a provider's credentials invalid");
    }
    result
}

/// Numbers for sale through the provider, in `country` and optionally an area code.
pub async fn numbers_for_sale(
    db: &Db,
    twilio: &TwilioClient,
    org: OrgId,
    provider: PhoneProviderId,
    country: &str,
    area_code: Option<&AreaCode>,
) -> Result<Vec<NumberOffer>, ProvisioningError> {
    let creds = provider_credentials(db, org, provider).await?;
    let result = twilio.search_local_numbers(&creds, country, area_code.map(AreaCode::as_str)).await.map_err(ProvisioningError::from);
    Ok(noting_bad_credentials(db, org, provider, result)
        .await?
        .into_iter()
        .map(|n| NumberOffer {
            phone_number: n.phone_number,
            friendly_name: n.friendly_name,
            locality: n.locality,
            region: n.region,
            iso_country: n.iso_country,
        })
        .collect())
}

/// One page of the numbers the provider's account owns (`page` is a previous page's token),
/// and the token of the next page.
pub async fn owned_numbers(
    db: &Db,
    twilio: &TwilioClient,
    org: OrgId,
    provider: PhoneProviderId,
    page: Option<&str>,
    limit: u32,
) -> Result<(Vec<OwnedNumber>, Option<String>), ProvisioningError> {
    let creds = provider_credentials(db, org, provider).await?;
    let result = twilio.list_incoming_numbers(&creds, page, limit).await.map_err(ProvisioningError::from);
    let page = noting_bad_credentials(db, org, provider, result).await?;
    let numbers = page
        .numbers
        .into_iter()
        .map(|n| OwnedNumber { sid: n.sid, phone_number: n.phone_number, friendly_name: n.friendly_name, voice_url: n.voice.voice_url })
        .collect();
    Ok((numbers, page.next_page))
}

/// The credentials of a provider of the organisation (`NotFound` for another's).
async fn provider_credentials(db: &Db, org: OrgId, provider: PhoneProviderId) -> Result<Credentials, StorageError> {
    phone_providers::get(db, org, provider).await?;
    credentials(db, org, provider).await
}

/// Checks every provider's credentials again; run periodically in the background.
pub async fn verify_all(db: &Db, twilio: &TwilioClient) {
    let providers = match phone_providers::list_all(db).await {
        Ok(providers) => providers,
        Err(e) => return tracing::error!(error = ?e, "could not list providers to verify"),
    };
    for provider in providers {
        match verify_provider(db, twilio, provider.org_id, provider.id).await {
            Ok(checked) if checked.status != provider.status => {
                tracing::info!(provider = %provider.id, from = %provider.status, to = %checked.status, "provider status changed");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(provider = %provider.id, error = ?e, "could not verify a provider"),
        }
    }
}

/// A phone service to create, before its number is known.
pub struct ServiceRequest {
    pub app_id: AppId,
    pub provider_id: PhoneProviderId,
    pub agent_id: AgentId,
    pub expand_languages: bool,
    pub languages: Vec<String>,
    pub generate_first_message: bool,
    pub mode: ServiceMode,
    pub recording: RecordingSettings,
    pub backup: Option<Backup>,
    pub source: NumberSource,
}

/// Gets the number from Twilio (bought or attached, pointed at `public_base_url`) and stores the
/// phone service. If storing fails, Twilio is put back as it was: a bought number is released,
/// an attached one gets its old voice settings.
pub async fn create_service(
    db: &Db,
    twilio: &TwilioClient,
    public_base_url: &str,
    org: OrgId,
    request: ServiceRequest,
    actor: Actor,
) -> Result<PhoneNumber, ProvisioningError> {
    let provider_id = request.provider_id;
    let result = create_service_unchecked(db, twilio, public_base_url, org, request, actor).await;
    noting_bad_credentials(db, org, provider_id, result).await
}

async fn create_service_unchecked(
    db: &Db,
    twilio: &TwilioClient,
    public_base_url: &str,
    org: OrgId,
    request: ServiceRequest,
    actor: Actor,
) -> Result<PhoneNumber, ProvisioningError> {
    let provider = phone_providers::get(db, org, request.provider_id).await?;
    if provider.status != PhoneProviderStatus::Active {
        return Err(ProvisioningError::Refused(format!(
            "the phone provider is `{}`, not `active`; fix its credentials or verify it again first",
            provider.status
        )));
    }
    let creds = credentials(db, org, provider.id).await?;
    let ours = VoiceSettings::pointing_at(public_base_url, request.backup.as_ref());
    let existing = match &request.source {
        NumberSource::Buy(_) => None,
        NumberSource::Number(number) => twilio.find_incoming_number(&creds, number.as_str()).await?,
        NumberSource::Sid(sid) => Some(twilio.fetch_incoming_number(&creds, sid).await.map_err(|e| {
            if e.is_not_found() { ProvisioningError::Refused(format!("the Twilio account has no number {sid}")) } else { e.into() }
        })?),
    };
    if let Some(number) = &existing
        && phone_numbers::find_by_number(db, &number.phone_number).await?.is_some()
    {
        return Err(StorageError::Conflict(format!("{} already serves a phone service; remove that one first", number.phone_number)).into());
    }
    let (incoming, previous) = match existing {
        Some(number) => {
            let outcome = change_voice_settings(twilio, &creds, &number.sid, &number.voice, &ours).await?;
            if let Some(refusal) = outcome.refusal {
                change_voice_settings(twilio, &creds, &number.sid, &ours, &number.voice).await.ok();
                return Err(ProvisioningError::Refused(format!(
                    "Twilio would not detach the application that answers {} ({refusal}); remove it from the number in the Twilio console, then try again",
                    number.phone_number
                )));
            }
            let previous = number.voice.clone();
            (number, Some(previous))
        }
        None => {
            let purchase = match &request.source {
                NumberSource::Buy(code) => Purchase::AnyInAreaCode(code.as_str()),
                NumberSource::Number(number) => Purchase::Exactly(number.as_str()),
                NumberSource::Sid(_) => unreachable!("a SID always names an existing number"),
            };
            (twilio.buy_number(&creds, purchase, &ours).await?, None)
        }
    };
    let stored = store(db, org, request, &incoming, previous.as_ref(), actor).await;
    if stored.is_err() {
        undo(twilio, &creds, &incoming, &ours, previous.as_ref()).await;
    }
    stored
}

/// What a change of voice settings left undone at Twilio.
#[derive(Debug, Default)]
pub struct LeftAtTwilio {
    /// Fields Twilio kept (snake_case names, as in its console and JSON) with their values.
    pub fields: Vec<(String, String)>,
    /// Twilio's reason.
    pub refusal: Option<String>,
}

/// Turns a number's voice settings from `current` into `wanted`, sending only what changes:
/// values to set in one request, then fields to clear in another. Clearing sends empty values,
/// which Twilio's API description does not list; if Twilio refuses them, the fields it kept are
/// returned rather than failing, so the caller can say exactly what was left.
async fn change_voice_settings(
    twilio: &TwilioClient,
    creds: &Credentials,
    sid: &str,
    current: &VoiceSettings,
    wanted: &VoiceSettings,
) -> Result<LeftAtTwilio, TwilioError> {
    let changes = wanted.changes_from(current);
    if !changes.set.is_empty() {
        twilio.update_voice_fields(creds, sid, &changes.set).await?;
    }
    if changes.clear.is_empty() {
        return Ok(LeftAtTwilio::default());
    }
    let clear: Vec<(&'static str, String)> = changes.clear.iter().map(|name| (*name, String::new())).collect();
    match twilio.update_voice_fields(creds, sid, &clear).await {
        Ok(_) => Ok(LeftAtTwilio::default()),
        Err(e @ TwilioError::Refused { .. }) if !e.is_bad_credentials() && !e.is_not_found() => {
            tracing::warn!(number = sid, error = %e, "Twilio would not clear voice settings");
            Ok(LeftAtTwilio { fields: current.named(&changes.clear), refusal: Some(e.to_string()) })
        }
        Err(e) => Err(e),
    }
}

async fn store(
    db: &Db,
    org: OrgId,
    request: ServiceRequest,
    incoming: &IncomingNumber,
    previous: Option<&VoiceSettings>,
    actor: Actor,
) -> Result<PhoneNumber, ProvisioningError> {
    let number = E164::parse("phone_number", &incoming.phone_number)
        .map_err(|_| ProvisioningError::Refused(format!("Twilio returned `{}`, which is not an E.164 number", incoming.phone_number)))?;
    let area_code = match &request.source {
        NumberSource::Buy(code) => Some(code.clone()),
        _ => None,
    };
    let new = NewPhoneNumber {
        app_id: request.app_id,
        provider_id: request.provider_id,
        agent_id: request.agent_id,
        number,
        twilio_sid: Some(incoming.sid.clone()),
        area_code,
        expand_languages: request.expand_languages,
        languages: request.languages,
        generate_first_message: request.generate_first_message,
        mode: request.mode,
        recording: request.recording,
        backup: request.backup,
        previous_voice_settings: previous.map(|p| json!(p)),
    };
    Ok(phone_numbers::create(db, org, new, actor).await?)
}

async fn undo(
    twilio: &TwilioClient,
    creds: &Credentials,
    incoming: &IncomingNumber,
    ours: &VoiceSettings,
    previous: Option<&VoiceSettings>,
) {
    let result = match previous {
        Some(settings) => change_voice_settings(twilio, creds, &incoming.sid, ours, settings).await.map(|_| ()),
        None => twilio.release_number(creds, &incoming.sid).await,
    };
    if let Err(e) = result {
        tracing::error!(number = %incoming.phone_number, error = %e, "could not undo a Twilio change after a failed store");
    }
}

/// Removes a phone service. Its number stays in the Twilio account with the voice settings it
/// A number whose voice settings at Twilio are not what this server set.
pub struct Drift {
    /// The settings that differ, as Twilio names them, with what Twilio has now.
    pub fields: Vec<(String, String)>,
    /// Whether they were put back.
    pub fixed: bool,
}

/// Compares the service's number at Twilio with what it should be (calls to this server, the
/// fallback to its backup) and, with `fix`, puts it back.
pub async fn voice_drift(
    db: &Db,
    twilio: &TwilioClient,
    public_base_url: &str,
    number: &PhoneNumber,
    fix: bool,
) -> Result<Option<Drift>, ProvisioningError> {
    let Some(sid) = &number.twilio_sid else { return Ok(None) };
    let creds = credentials(db, number.org_id, number.provider_id).await?;
    let current = twilio.fetch_incoming_number(&creds, sid).await?.voice;
    let wanted = VoiceSettings::pointing_at(public_base_url, number.backup.as_ref());
    let changes = wanted.changes_from(&current);
    if changes.set.is_empty() && changes.clear.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = changes.set.iter().map(|(name, _)| *name).chain(changes.clear.iter().copied()).collect();
    let fields = current.named(&names);
    if fix {
        change_voice_settings(twilio, &creds, sid, &current, &wanted).await?;
    }
    Ok(Some(Drift { fields, fixed: fix }))
}

/// Points Twilio's fallback for the service's number at `backup` (or back at this server), so
/// calls still reach someone when this server cannot answer them.
pub async fn set_backup(
    db: &Db,
    twilio: &TwilioClient,
    public_base_url: &str,
    number: &PhoneNumber,
    backup: Option<&Backup>,
) -> Result<(), ProvisioningError> {
    let Some(sid) = &number.twilio_sid else { return Ok(()) };
    let settings = VoiceSettings::pointing_at(public_base_url, backup);
    let fields = [
        ("VoiceFallbackUrl", settings.voice_fallback_url.unwrap_or_default()),
        ("VoiceFallbackMethod", settings.voice_fallback_method.unwrap_or_default()),
    ];
    let result = async {
        let creds = credentials(db, number.org_id, number.provider_id).await?;
        Ok(twilio.update_voice_fields(&creds, sid, &fields).await.map(|_| ())?)
    };
    noting_bad_credentials(db, number.org_id, number.provider_id, result.await).await
}

/// had before we attached it (none, for a number we bought), unless `release` is asked, which
/// gives the number back to Twilio. A number Twilio no longer has is simply forgotten. When
/// Twilio refuses to clear some of our settings, the service is removed all the same and the
/// answer says what was left at Twilio.
pub async fn remove_service(
    db: &Db,
    twilio: &TwilioClient,
    org: OrgId,
    id: PhoneNumberId,
    release: bool,
    actor: Actor,
) -> Result<LeftAtTwilio, ProvisioningError> {
    let number = phone_numbers::get(db, org, id).await?;
    let result = remove_service_unchecked(db, twilio, org, &number, release, actor).await;
    noting_bad_credentials(db, org, number.provider_id, result).await
}

async fn remove_service_unchecked(
    db: &Db,
    twilio: &TwilioClient,
    org: OrgId,
    number: &PhoneNumber,
    release: bool,
    actor: Actor,
) -> Result<LeftAtTwilio, ProvisioningError> {
    let id = number.id;
    let mut left = LeftAtTwilio::default();
    if let Some(sid) = &number.twilio_sid {
        let creds = credentials(db, org, number.provider_id).await?;
        let outcome = if release {
            twilio.release_number(&creds, sid).await.map(|()| LeftAtTwilio::default())
        } else {
            let previous: VoiceSettings =
                phone_numbers::previous_voice_settings(db, org, id).await?.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
            match twilio.fetch_incoming_number(&creds, sid).await {
                Ok(current) => change_voice_settings(twilio, &creds, sid, &current.voice, &previous).await,
                Err(e) => Err(e),
            }
        };
        match outcome {
            Ok(outcome) => left = outcome,
            Err(e) if e.is_not_found() => {
                tracing::info!(number = %number.number.as_str(), "Twilio no longer has the number; forgetting it")
            }
            Err(e) => return Err(e.into()),
        }
    }
    phone_numbers::delete(db, org, id, actor, release).await?;
    Ok(left)
}
