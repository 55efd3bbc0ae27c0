//! Users and their memberships. Passwords are stored only as Argon2id hashes. Hashing and
//! verifying take tens of milliseconds of CPU: request handlers run them off the async runtime.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::{Db, Result, StorageError, Tx, on_pool, on_tx};
use crate::domain::audit::Actor;
use crate::domain::ids::{OrgId, UserId};
use crate::domain::org::{Email, Role, User};
use crate::domain::time;

/// Hashes a password with Argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).expect("the operating system provides randomness");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("Argon2id with default parameters accepts any password").to_string()
}

/// A random password of 24 base64url characters (144 bits), for accounts made for someone.
pub fn generate_password() -> String {
    super::tokens::random_secret(18).to_string()
}

/// Whether `password` matches a stored hash. A malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash no password is known for: verifying against it when an address is unknown takes as
/// long as a real check, so the answer's timing does not tell which addresses have accounts.
pub static DECOY_HASH: LazyLock<String> = LazyLock::new(|| hash_password("no account has this password"));

/// Replaces a user's password (already hashed), clears any lockout and ends their console
/// sessions except `keep`. Audited in every organisation the user belongs to.
pub async fn set_password_hash(
    db: &Db,
    user: UserId,
    hash: &str,
    keep: Option<crate::domain::ids::ConsoleSessionId>,
    actor: Actor,
) -> Result<()> {
    let mut tx = db.begin().await?;
    let orgs: Vec<(Uuid,)> = on_tx!(&mut tx, |conn| {
        let updated = sqlx::query("UPDATE users SET password_hash = $1, failed_sign_ins = 0, locked_until = NULL WHERE id = $2")
            .bind(hash)
            .bind(user.0)
            .execute(&mut *conn)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        sqlx::query_as("SELECT org_id FROM memberships WHERE user_id = $1").bind(user.0).fetch_all(conn).await.map_err(StorageError::from)
    })?;
    super::console_sessions::revoke_all(&mut tx, user, keep).await?;
    for (org,) in orgs {
        audit::record(&mut tx, OrgId(org), Change::new(actor, "user.password_changed", user, json!({}))).await?;
    }
    tx.commit().await
}

/// The id of the user with this address.
pub async fn find_by_email(db: &Db, email: &Email) -> Result<UserId> {
    let row: Option<(Uuid,)> =
        on_pool!(db, |pool| { sqlx::query_as("SELECT id FROM users WHERE email = $1").bind(email.as_str()).fetch_optional(pool).await })?;
    row.map(|(id,)| UserId(id)).ok_or(StorageError::NotFound)
}

/// Creates a user with a password (already hashed by [`hash_password`]) and makes them a member
/// of `org` with `role`.
pub async fn create(db: &Db, org: OrgId, email: &Email, password_hash: &str, role: Role, actor: Actor) -> Result<User> {
    let mut tx = db.begin().await?;
    let user = insert(&mut tx, org, email, password_hash, role, actor).await?;
    tx.commit().await?;
    Ok(user)
}

pub(crate) async fn insert(tx: &mut Tx, org: OrgId, email: &Email, hash: &str, role: Role, actor: Actor) -> Result<User> {
    let user = User { id: UserId::generate(), email: email.clone(), role, created_at: time::now() };
    on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user.id.0)
            .bind(user.email.as_str())
            .bind(hash)
            .bind(user.created_at)
            .execute(&mut *conn)
            .await
            .map_err(|e| StorageError::conflict_on_unique(e, "a user with this email already exists"))?;
        sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(org.0)
            .bind(user.id.0)
            .bind(role.as_str())
            .bind(user.created_at)
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(StorageError::from)
    })?;
    let change = Change::new(actor, "user.created", user.id, json!({ "email": user.email.as_str(), "role": role }));
    audit::record(tx, org, change).await?;
    Ok(user)
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    id: Uuid,
    email: String,
    role: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl MemberRow {
    fn into_domain(self) -> Result<User> {
        Ok(User {
            id: UserId(self.id),
            email: Email::parse(&self.email).map_err(|e| StorageError::Corrupt(format!("users.email: {e}")))?,
            role: super::parse_stored("role", &self.role)?,
            created_at: self.created_at,
        })
    }
}

macro_rules! members {
    () => {
        "SELECT u.id, u.email, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id"
    };
}

/// The organisation's members, in the order they joined.
pub async fn list(db: &Db, org: OrgId) -> Result<Vec<User>> {
    let sql = concat!(members!(), " WHERE m.org_id = $1 ORDER BY m.created_at, u.id");
    let rows: Vec<MemberRow> = on_pool!(db, |pool| { sqlx::query_as(sql).bind(org.0).fetch_all(pool).await })?;
    rows.into_iter().map(MemberRow::into_domain).collect()
}

/// One member of the organisation.
pub async fn get(db: &Db, org: OrgId, user: UserId) -> Result<User> {
    let sql = concat!(members!(), " WHERE m.org_id = $1 AND m.user_id = $2");
    let row: Option<MemberRow> = on_pool!(db, |pool| { sqlx::query_as(sql).bind(org.0).bind(user.0).fetch_optional(pool).await })?;
    row.ok_or(StorageError::NotFound)?.into_domain()
}

/// Makes an existing user (of another organisation) a member of `org` with `role`.
pub async fn add_existing(db: &Db, org: OrgId, email: &Email, role: Role, actor: Actor) -> Result<User> {
    let mut tx = db.begin().await?;
    let now = time::now();
    let found: Option<(Uuid,)> = on_tx!(&mut tx, |conn| {
        sqlx::query_as("SELECT id FROM users WHERE email = $1").bind(email.as_str()).fetch_optional(conn).await
    })?;
    let (id,) = found.ok_or(StorageError::NotFound)?;
    on_tx!(&mut tx, |conn| {
        sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(org.0)
            .bind(id)
            .bind(role.as_str())
            .bind(now)
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(|e| StorageError::conflict_on_unique(e, "this person is already a member of the organisation"))
    })?;
    audit::record(&mut tx, org, Change::new(actor, "user.added", UserId(id), json!({ "email": email.as_str(), "role": role }))).await?;
    tx.commit().await?;
    Ok(User { id: UserId(id), email: email.clone(), role, created_at: now })
}

/// Owners left in the organisation, read inside `tx` (and locked on PostgreSQL), so two
/// concurrent changes cannot remove the last two owners at once.
async fn owners(tx: &mut Tx, org: OrgId) -> Result<i64> {
    let lock = tx.row_lock();
    let (count,): (i64,) = on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM (SELECT user_id FROM memberships WHERE org_id = $1 AND role = 'owner'{lock}) AS owners"
        )))
        .bind(org.0)
        .fetch_one(conn)
        .await
    })?;
    Ok(count)
}

/// Changes a member's role. The last owner stays an owner.
pub async fn change_role(db: &Db, org: OrgId, user: UserId, role: Role, actor: Actor) -> Result<User> {
    let mut tx = db.begin().await?;
    let before = member_role(&mut tx, org, user).await?;
    if before == Role::Owner && role != Role::Owner && owners(&mut tx, org).await? <= 1 {
        return Err(StorageError::Conflict("the organisation needs at least one owner: make someone else an owner first".into()));
    }
    on_tx!(&mut tx, |conn| {
        sqlx::query("UPDATE memberships SET role = $1 WHERE org_id = $2 AND user_id = $3")
            .bind(role.as_str())
            .bind(org.0)
            .bind(user.0)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    audit::record(&mut tx, org, Change::new(actor, "user.role_changed", user, json!({ "from": before, "to": role }))).await?;
    tx.commit().await?;
    get(db, org, user).await
}

/// Removes a member from the organisation (their console sessions in it end). The last owner
/// cannot be removed. The person's account stays if they belong elsewhere.
pub async fn remove(db: &Db, org: OrgId, user: UserId, actor: Actor) -> Result<()> {
    let mut tx = db.begin().await?;
    let role = member_role(&mut tx, org, user).await?;
    if role == Role::Owner && owners(&mut tx, org).await? <= 1 {
        return Err(StorageError::Conflict("the last owner cannot be removed: make someone else an owner first".into()));
    }
    on_tx!(&mut tx, |conn| {
        sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2").bind(org.0).bind(user.0).execute(&mut *conn).await?;
        sqlx::query("UPDATE console_sessions SET revoked_at = $1 WHERE org_id = $2 AND user_id = $3 AND revoked_at IS NULL")
            .bind(time::now())
            .bind(org.0)
            .bind(user.0)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    audit::record(&mut tx, org, Change::new(actor, "user.removed", user, json!({ "role": role }))).await?;
    tx.commit().await
}

async fn member_role(tx: &mut Tx, org: OrgId, user: UserId) -> Result<Role> {
    let lock = tx.row_lock();
    let row: Option<(String,)> = on_tx!(tx, |conn| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2{lock}")))
            .bind(org.0)
            .bind(user.0)
            .fetch_optional(conn)
            .await
    })?;
    super::parse_stored("role", &row.ok_or(StorageError::NotFound)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(!verify_password(&DECOY_HASH, ""));
    }
}
