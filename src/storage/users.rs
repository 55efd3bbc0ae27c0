//! Users and their memberships. Passwords are stored only as Argon2id hashes.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use serde_json::json;

use super::audit::{self, Change};
use super::{Db, Result, StorageError, Tx, on_tx};
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
    use argon2::{PasswordHash, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());
    }
}
