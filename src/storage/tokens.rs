//! API tokens. A token is `sbt_` plus 43 base64url characters (32 random bytes); only its SHA-256
//! digest is stored, so a database leak does not leak usable tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::audit::{self, Change};
use super::{Db, Page, PageRequest, Result, StorageError, Tx, on_pool, on_tx, parse_stored};
use crate::domain::audit::Actor;
use crate::domain::ids::{OrgId, TokenId};
use crate::domain::org::{ApiToken, Role};
use crate::domain::time;

const PREFIX: &str = "sbt_";
/// `last_used_at` is refreshed at most this often, so reads do not turn into writes.
const LAST_USED_GRANULARITY: Duration = Duration::seconds(60);

/// Who a valid token speaks for.
#[derive(Clone, Copy, Debug)]
pub struct TokenOwner {
    pub token_id: TokenId,
    pub org_id: OrgId,
    pub role: Role,
}

/// The stored form of a bearer secret (API token or console session cookie): SHA-256, in hex.
pub(crate) fn digest(secret: &str) -> String {
    let hash = Sha256::digest(secret.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes` random bytes in base64url (no padding).
pub(crate) fn random_secret(bytes: usize) -> Zeroizing<String> {
    let mut random = Zeroizing::new(vec![0u8; bytes]);
    getrandom::getrandom(random.as_mut()).expect("the operating system provides randomness");
    Zeroizing::new(URL_SAFE_NO_PAD.encode(random.as_slice()))
}

fn generate_token() -> Zeroizing<String> {
    Zeroizing::new(format!("{PREFIX}{}", random_secret(32).as_str()))
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    fn into_domain(self) -> Result<ApiToken> {
        Ok(ApiToken {
            id: TokenId(self.id),
            name: self.name,
            role: parse_stored("role", &self.role)?,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// Creates a token; returns its record and the token itself, which is never retrievable again.
pub async fn create(db: &Db, org: OrgId, name: &str, role: Role, actor: Actor) -> Result<(ApiToken, Zeroizing<String>)> {
    let mut tx = db.begin().await?;
    let created = insert(&mut tx, org, name, role, actor).await?;
    tx.commit().await?;
    Ok(created)
}

pub(crate) async fn insert(tx: &mut Tx, org: OrgId, name: &str, role: Role, actor: Actor) -> Result<(ApiToken, Zeroizing<String>)> {
    let secret = generate_token();
    let token =
        ApiToken { id: TokenId::generate(), name: name.to_owned(), role, created_at: time::now(), last_used_at: None, revoked_at: None };
    on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO api_tokens (id, org_id, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(token.id.0)
            .bind(org.0)
            .bind(&token.name)
            .bind(role.as_str())
            .bind(digest(&secret))
            .bind(token.created_at)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    let change = Change::new(actor, "api_token.created", token.id, json!({ "name": token.name, "role": role.as_str() }));
    audit::record(tx, org, change).await?;
    Ok((token, secret))
}

/// Finds the live token matching `presented` and notes its use; `None` for unknown or revoked.
pub async fn authenticate(db: &Db, presented: &str) -> Result<Option<TokenOwner>> {
    if !presented.starts_with(PREFIX) {
        return Ok(None);
    }
    let hash = digest(presented);
    let found: Option<(Uuid, Uuid, String)> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT id, org_id, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(&hash)
            .fetch_optional(pool)
            .await
    })?;
    let Some((id, org, role)) = found else { return Ok(None) };
    let role = parse_stored("role", &role)?;
    let now = time::now();
    on_pool!(db, |pool| {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
            .bind(now)
            .bind(id)
            .bind(now - LAST_USED_GRANULARITY)
            .execute(pool)
            .await
            .map(|_| ())
    })?;
    Ok(Some(TokenOwner { token_id: TokenId(id), org_id: OrgId(org), role }))
}

/// The organisation's tokens, newest first, revoked ones included.
pub async fn list(db: &Db, org: OrgId, page: PageRequest) -> Result<Page<ApiToken>> {
    let sql = "SELECT id, name, role, created_at, last_used_at, revoked_at FROM api_tokens
               WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3";
    let rows: Vec<TokenRow> =
        on_pool!(db, |pool| { sqlx::query_as(sql).bind(org.0).bind(page.before).bind(page.fetch_limit()).fetch_all(pool).await })?;
    let tokens = rows.into_iter().map(TokenRow::into_domain).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(tokens, page, |t| t.id.0))
}

/// Revokes a token; it stops working at once. Revoking twice is harmless.
pub async fn revoke(db: &Db, org: OrgId, id: TokenId, actor: Actor) -> Result<ApiToken> {
    let mut tx = db.begin().await?;
    let row: Option<TokenRow> = on_tx!(&mut tx, |conn| {
        sqlx::query_as(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND org_id = $3
             RETURNING id, name, role, created_at, last_used_at, revoked_at",
        )
        .bind(time::now())
        .bind(id.0)
        .bind(org.0)
        .fetch_optional(conn)
        .await
    })?;
    let token = row.ok_or(StorageError::NotFound)?.into_domain()?;
    let change = Change::new(actor, "api_token.revoked", id, json!({ "name": token.name }));
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = generate_token();
        let b = generate_token();
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43);
        assert_ne!(*a, *b);
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(digest(&a), digest(&b));
    }
}
