//! Phone providers. The auth token and API key secret are stored encrypted (see `secrets`);
//! nothing in this module returns them except `credentials`, for talking to the carrier.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::audit::{self, Change};
use super::secrets::SecretSlot;
use super::{Db, Page, PageRequest, Result, StorageError, delete_owned, on_pool, on_tx, parse_stored};
use crate::domain::audit::Actor;
use crate::domain::ids::{OrgId, PhoneProviderId};
use crate::domain::provider::{PhoneProvider, PhoneProviderKind, PhoneProviderStatus};
use crate::domain::time;

const TABLE: &str = "phone_providers";
/// The columns every query of this module reads back.
macro_rules! columns {
    () => {
        "id, org_id, name, kind, account_sid, api_key_sid, status, last_verified_at, last_error, created_at, updated_at"
    };
}

/// A validated API key pair (`SK…` SID and its secret).
pub struct ApiKey {
    pub sid: String,
    pub secret: String,
}

/// A validated provider to create.
pub struct NewPhoneProvider {
    pub name: String,
    pub kind: PhoneProviderKind,
    pub account_sid: String,
    pub auth_token: String,
    pub api_key: Option<ApiKey>,
}

/// Validated changes; `None` leaves a field as it is. `api_key: Some(None)` removes the key.
#[derive(Default)]
pub struct PhoneProviderChanges {
    pub name: Option<String>,
    pub auth_token: Option<String>,
    pub api_key: Option<Option<ApiKey>>,
}

impl PhoneProviderChanges {
    fn touches_credentials(&self) -> bool {
        self.auth_token.is_some() || self.api_key.is_some()
    }
}

#[derive(sqlx::FromRow)]
struct ProviderRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    kind: String,
    account_sid: String,
    api_key_sid: Option<String>,
    status: String,
    last_verified_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ProviderRow {
    fn into_domain(self) -> Result<PhoneProvider> {
        Ok(PhoneProvider {
            id: PhoneProviderId(self.id),
            org_id: OrgId(self.org_id),
            name: self.name,
            kind: parse_stored("kind", &self.kind)?,
            account_sid: self.account_sid,
            api_key_sid: self.api_key_sid,
            status: parse_stored("status", &self.status)?,
            last_verified_at: self.last_verified_at,
            last_error: self.last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn slot(org: OrgId, id: PhoneProviderId, column: &'static str) -> SecretSlot<'static> {
    SecretSlot { org: org.0, table: TABLE, row: id.0, column }
}

pub async fn create(db: &Db, org: OrgId, new: NewPhoneProvider, actor: Actor) -> Result<PhoneProvider> {
    let id = PhoneProviderId::generate();
    let now = time::now();
    let token_enc = db.cipher().encrypt(&slot(org, id, "auth_token"), &new.auth_token);
    let key_secret_enc = new.api_key.as_ref().map(|k| db.cipher().encrypt(&slot(org, id, "api_key_secret"), &k.secret));
    let sql = concat!("INSERT INTO phone_providers (id, org_id, name, kind, account_sid, auth_token_enc, api_key_sid, api_key_secret_enc, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING ", columns!(), "");
    let mut tx = db.begin().await?;
    let row: ProviderRow = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(id.0)
            .bind(org.0)
            .bind(&new.name)
            .bind(new.kind.as_str())
            .bind(&new.account_sid)
            .bind(&token_enc)
            .bind(new.api_key.as_ref().map(|k| &k.sid))
            .bind(&key_secret_enc)
            .bind(PhoneProviderStatus::Unverified.as_str())
            .bind(now)
            .fetch_one(conn)
            .await
    })
    .map_err(|e| StorageError::conflict_on_unique(e, "a phone provider with this account SID already exists"))?;
    let provider = row.into_domain()?;
    let change = Change::new(actor, "phone_provider.created", id, json!({ "name": provider.name, "account_sid": provider.account_sid }));
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(provider)
}

pub async fn get(db: &Db, org: OrgId, id: PhoneProviderId) -> Result<PhoneProvider> {
    let sql = concat!("SELECT ", columns!(), " FROM phone_providers WHERE id = $1 AND org_id = $2");
    let row: Option<ProviderRow> = on_pool!(db, |pool| { sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(pool).await })?;
    row.ok_or(StorageError::NotFound)?.into_domain()
}

pub async fn list(db: &Db, org: OrgId, page: PageRequest) -> Result<Page<PhoneProvider>> {
    let sql =
        concat!("SELECT ", columns!(), " FROM phone_providers WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3");
    let rows: Vec<ProviderRow> =
        on_pool!(db, |pool| { sqlx::query_as(sql).bind(org.0).bind(page.before).bind(page.fetch_limit()).fetch_all(pool).await })?;
    let providers = rows.into_iter().map(ProviderRow::into_domain).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(providers, page, |p| p.id.0))
}

/// The providers holding a Twilio account, in every organisation: a webhook for a number we do
/// not serve names only its account, whose auth token then tells whether the request is genuine.
pub async fn find_by_account_sid(db: &Db, account_sid: &str) -> Result<Vec<PhoneProvider>> {
    let sql = concat!("SELECT ", columns!(), " FROM phone_providers WHERE account_sid = $1 ORDER BY id");
    let rows: Vec<ProviderRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(account_sid).fetch_all(pool).await)?;
    rows.into_iter().map(ProviderRow::into_domain).collect()
}

/// A provider's credentials, decrypted: for checking webhook signatures (`auth_token`) and
/// calling the carrier (the API key when set, else the auth token).
pub struct ProviderSecrets {
    pub account_sid: String,
    pub auth_token: Zeroizing<String>,
    pub api_key: Option<(String, Zeroizing<String>)>,
}

pub async fn secrets(db: &Db, org: OrgId, id: PhoneProviderId) -> Result<ProviderSecrets> {
    Ok(with_secrets(db, org, id).await?.1)
}

#[derive(sqlx::FromRow)]
struct SealedProviderRow {
    #[sqlx(flatten)]
    provider: ProviderRow,
    auth_token_enc: Vec<u8>,
    api_key_secret_enc: Option<Vec<u8>>,
}

/// A provider and its decrypted credentials, read at once (a webhook checks the signature with
/// the one and answers with the other).
pub async fn with_secrets(db: &Db, org: OrgId, id: PhoneProviderId) -> Result<(PhoneProvider, ProviderSecrets)> {
    let sql = concat!("SELECT ", columns!(), ", auth_token_enc, api_key_secret_enc FROM phone_providers WHERE id = $1 AND org_id = $2");
    let row: Option<SealedProviderRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(pool).await)?;
    let SealedProviderRow { provider, auth_token_enc, api_key_secret_enc } = row.ok_or(StorageError::NotFound)?;
    let auth_token = db.cipher().decrypt(&slot(org, id, "auth_token"), &auth_token_enc)?;
    let api_key = match (provider.api_key_sid.clone(), api_key_secret_enc) {
        (Some(sid), Some(enc)) => Some((sid, db.cipher().decrypt(&slot(org, id, "api_key_secret"), &enc)?)),
        _ => None,
    };
    let secrets = ProviderSecrets { account_sid: provider.account_sid.clone(), auth_token, api_key };
    Ok((provider.into_domain()?, secrets))
}

/// Every provider of every organisation, for the periodic credential check.
pub async fn list_all(db: &Db) -> Result<Vec<PhoneProvider>> {
    let sql = concat!("SELECT ", columns!(), " FROM phone_providers ORDER BY id");
    let rows: Vec<ProviderRow> = on_pool!(db, |pool| sqlx::query_as(sql).fetch_all(pool).await)?;
    rows.into_iter().map(ProviderRow::into_domain).collect()
}

/// Stores the outcome of checking the credentials with the carrier.
pub async fn record_verification(
    db: &Db,
    org: OrgId,
    id: PhoneProviderId,
    status: PhoneProviderStatus,
    error: Option<&str>,
) -> Result<PhoneProvider> {
    let now = time::now();
    let sql = concat!(
        "UPDATE phone_providers SET status = $1, last_error = $2, last_verified_at = $3, updated_at = $3
         WHERE id = $4 AND org_id = $5 RETURNING ",
        columns!()
    );
    let row: Option<ProviderRow> = on_pool!(db, |pool| {
        sqlx::query_as(sql).bind(status.as_str()).bind(error).bind(now).bind(id.0).bind(org.0).fetch_optional(pool).await
    })?;
    row.ok_or(StorageError::NotFound)?.into_domain()
}

/// Applies changes. New credentials make the provider `unverified` until checked again.
pub async fn update(db: &Db, org: OrgId, id: PhoneProviderId, changes: PhoneProviderChanges, actor: Actor) -> Result<PhoneProvider> {
    let current = get(db, org, id).await?;
    let name = changes.name.clone().unwrap_or(current.name);
    let status = if changes.touches_credentials() { PhoneProviderStatus::Unverified } else { current.status };
    let token_enc = changes.auth_token.as_ref().map(|t| db.cipher().encrypt(&slot(org, id, "auth_token"), t));
    let (set_key, key_sid, key_secret_enc) = match &changes.api_key {
        None => (false, None, None),
        Some(None) => (true, None, None),
        Some(Some(key)) => (true, Some(key.sid.clone()), Some(db.cipher().encrypt(&slot(org, id, "api_key_secret"), &key.secret))),
    };
    let sql = concat!(
        "UPDATE phone_providers SET name = $1, status = $2,
             auth_token_enc = COALESCE($3, auth_token_enc),
             api_key_sid = CASE WHEN $4 THEN $5 ELSE api_key_sid END,
             api_key_secret_enc = CASE WHEN $4 THEN $6 ELSE api_key_secret_enc END,
             last_error = CASE WHEN $7 THEN NULL ELSE last_error END,
             updated_at = $8
         WHERE id = $9 AND org_id = $10 RETURNING ",
        columns!(),
        ""
    );
    let mut tx = db.begin().await?;
    let row: Option<ProviderRow> = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(&name)
            .bind(status.as_str())
            .bind(&token_enc)
            .bind(set_key)
            .bind(&key_sid)
            .bind(&key_secret_enc)
            .bind(changes.touches_credentials())
            .bind(time::now())
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(conn)
            .await
    })?;
    let provider = row.ok_or(StorageError::NotFound)?.into_domain()?;
    let change = Change::new(
        actor,
        "phone_provider.updated",
        id,
        json!({
            "name_changed": changes.name.is_some(),
            "auth_token_changed": changes.auth_token.is_some(),
            "api_key_changed": changes.api_key.is_some(),
        }),
    );
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(provider)
}

pub async fn delete(db: &Db, org: OrgId, id: PhoneProviderId, actor: Actor) -> Result<()> {
    let change = Change::new(actor, "phone_provider.deleted", id, json!({}));
    delete_owned(db, org, TABLE, id.0, "the phone provider still serves phone numbers; remove them first", change).await
}
