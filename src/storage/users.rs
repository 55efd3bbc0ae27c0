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

/// Creates a user with a password and makes them a member of `org` with `role`.
pub async fn create(db: &Db, org: OrgId, email: &Email, password: &str, role: Role, actor: Actor) -> Result<User> {
    let mut tx = db.begin().await?;
    let user = insert(&mut tx, org, email, password, role, actor).await?;
    tx.commit().await?;
    Ok(user)
}

pub(crate) async fn insert(tx: &mut Tx, org: OrgId, email: &Email, password: &str, role: Role, actor: Actor) -> Result<User> {
    let user = User { id: UserId::generate(), email: email.clone(), role, created_at: time::now() };
    let hash = hash_password(password);
    on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user.id.0)
            .bind(user.email.as_str())
            .bind(&hash)
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
