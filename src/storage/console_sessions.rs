//! Console sign-in: who may sign in, failed attempts and lockout, and the server-side sessions
//! of signed-in browsers. A session's cookie is 32 random bytes; only its SHA-256 digest is
//! stored. Sessions end when idle for [`IDLE_LIMIT`], [`ABSOLUTE_LIMIT`] after sign-in, on sign-out,
//! on revocation, and all at once when the password changes. The role comes from the membership
//! at each request, so a changed role or a removed member takes effect at once.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::audit::{self, Change};
use super::tokens::{digest, random_secret};
use super::{Db, Result, StorageError, Tx, on_pool, on_tx, parse_stored};
use crate::domain::audit::Actor;
use crate::domain::ids::{ConsoleSessionId, OrgId, UserId};
use crate::domain::org::{ConsoleSession, Email, Role};
use crate::domain::time;

/// A session unused for this long has ended.
pub const IDLE_LIMIT: Duration = Duration::hours(12);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE_LIMIT: Duration = Duration::days(7);
/// Consecutive failed sign-ins that lock an account…
pub const FAILURES_BEFORE_LOCKOUT: i32 = 5;
/// …for this long.
pub const LOCKOUT: Duration = Duration::minutes(15);
/// `last_seen_at` is refreshed at most this often, so page views do not all turn into writes.
const SEEN_GRANULARITY: Duration = Duration::seconds(60);

/// A user who may try to sign in: their password hash, lockout and first organisation.
pub struct SignInCandidate {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub password_hash: String,
    pub locked_until: Option<DateTime<Utc>>,
}

/// Who a valid session cookie speaks for.
#[derive(Clone, Debug)]
pub struct SessionOwner {
    pub session_id: ConsoleSessionId,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub role: Role,
    pub email: Email,
    /// Every state-changing request of this session must carry it.
    pub csrf_token: String,
}

/// The user with this address and the organisation a sign-in opens (their oldest membership).
pub async fn sign_in_candidate(db: &Db, email: &Email) -> Result<Option<SignInCandidate>> {
    let row: Option<(Uuid, Uuid, String, Option<DateTime<Utc>>)> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT u.id, m.org_id, u.password_hash, u.locked_until FROM users u JOIN memberships m ON m.user_id = u.id
             WHERE u.email = $1 ORDER BY m.created_at, m.org_id LIMIT 1",
        )
        .bind(email.as_str())
        .fetch_optional(pool)
        .await
    })?;
    Ok(row.map(|(user, org, password_hash, locked_until)| SignInCandidate {
        user_id: UserId(user),
        org_id: OrgId(org),
        password_hash,
        locked_until,
    }))
}

/// Counts a failed sign-in; the [`FAILURES_BEFORE_LOCKOUT`]th in a row locks the account for
/// [`LOCKOUT`]. Returns when the account is locked until, if it now is.
pub async fn record_failed_sign_in(db: &Db, candidate: &SignInCandidate) -> Result<Option<DateTime<Utc>>> {
    let now = time::now();
    let mut tx = db.begin().await?;
    let (locked_until,): (Option<DateTime<Utc>>,) = on_tx!(&mut tx, |conn| {
        sqlx::query_as(
            "UPDATE users SET
               locked_until = CASE WHEN failed_sign_ins + 1 >= $2 THEN $3 ELSE locked_until END,
               failed_sign_ins = CASE WHEN failed_sign_ins + 1 >= $2 THEN 0 ELSE failed_sign_ins + 1 END
             WHERE id = $1 RETURNING locked_until",
        )
        .bind(candidate.user_id.0)
        .bind(FAILURES_BEFORE_LOCKOUT)
        .bind(now + LOCKOUT)
        .fetch_one(conn)
        .await
    })?;
    let locked = locked_until.filter(|until| *until > now);
    if locked.is_some() && candidate.locked_until.is_none_or(|before| before <= now) {
        let change = Change::new(Actor::System, "user.locked_out", candidate.user_id, json!({ "minutes": LOCKOUT.num_minutes() }));
        audit::record(&mut tx, candidate.org_id, change).await?;
    }
    tx.commit().await?;
    Ok(locked)
}

/// Opens a session for a user whose password was right and clears their failed attempts.
/// Returns the session's cookie value, which is never retrievable again.
pub async fn start(db: &Db, candidate: &SignInCandidate, user_agent: &str, ip: &str) -> Result<Zeroizing<String>> {
    let now = time::now();
    let secret = random_secret(32);
    let user_agent: String = user_agent.chars().take(300).collect();
    let mut tx = db.begin().await?;
    let id = ConsoleSessionId::generate();
    on_tx!(&mut tx, |conn| {
        sqlx::query("UPDATE users SET failed_sign_ins = 0, locked_until = NULL WHERE id = $1")
            .bind(candidate.user_id.0)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id, token_hash, csrf_token, user_id, org_id, created_at, last_seen_at, expires_at, user_agent, ip)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)",
        )
        .bind(id.0)
        .bind(digest(&secret))
        .bind(random_secret(24).as_str())
        .bind(candidate.user_id.0)
        .bind(candidate.org_id.0)
        .bind(now)
        .bind(now + IDLE_LIMIT)
        .bind(&user_agent)
        .bind(ip)
        .execute(conn)
        .await
        .map(|_| ())
    })?;
    let change = Change::new(Actor::User(candidate.user_id), "user.signed_in", id, json!({ "ip": ip, "user_agent": user_agent }));
    audit::record(&mut tx, candidate.org_id, change).await?;
    tx.commit().await?;
    Ok(secret)
}

/// The owner of a live session cookie, refreshing its idle deadline; `None` for unknown, ended
/// or revoked sessions, and for users no longer in the session's organisation.
pub async fn authenticate(db: &Db, presented: &str) -> Result<Option<SessionOwner>> {
    let now = time::now();
    type Row = (Uuid, Uuid, Uuid, String, String, String, DateTime<Utc>, DateTime<Utc>);
    let row: Option<Row> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT s.id, s.user_id, s.org_id, s.csrf_token, m.role, u.email, s.created_at, s.last_seen_at
             FROM console_sessions s
             JOIN memberships m ON m.org_id = s.org_id AND m.user_id = s.user_id
             JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
        )
        .bind(digest(presented))
        .bind(now)
        .fetch_optional(pool)
        .await
    })?;
    let Some((id, user, org, csrf_token, role, email, created_at, last_seen_at)) = row else { return Ok(None) };
    if last_seen_at < now - SEEN_GRANULARITY {
        let expires_at = (now + IDLE_LIMIT).min(created_at + ABSOLUTE_LIMIT);
        on_pool!(db, |pool| {
            sqlx::query("UPDATE console_sessions SET last_seen_at = $1, expires_at = $2 WHERE id = $3")
                .bind(now)
                .bind(expires_at)
                .bind(id)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
    }
    Ok(Some(SessionOwner {
        session_id: ConsoleSessionId(id),
        user_id: UserId(user),
        org_id: OrgId(org),
        role: parse_stored("role", &role)?,
        email: Email::parse(&email).map_err(|e| StorageError::Corrupt(format!("users.email: {e}")))?,
        csrf_token,
    }))
}

/// The user's live sessions, newest first.
pub async fn list(db: &Db, user: UserId) -> Result<Vec<ConsoleSession>> {
    type Row = (Uuid, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>, String, String);
    let rows: Vec<Row> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT id, created_at, last_seen_at, expires_at, user_agent, ip FROM console_sessions
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at DESC, id DESC",
        )
        .bind(user.0)
        .bind(time::now())
        .fetch_all(pool)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(id, created_at, last_seen_at, expires_at, user_agent, ip)| ConsoleSession {
            id: ConsoleSessionId(id),
            created_at,
            last_seen_at,
            expires_at,
            user_agent,
            ip,
        })
        .collect())
}

/// Ends one of the user's sessions (signing out is ending one's own). `NotFound` for a session
/// that is not theirs; ending an ended session is harmless.
pub async fn revoke(db: &Db, org: OrgId, user: UserId, id: ConsoleSessionId) -> Result<()> {
    let mut tx = db.begin().await?;
    let updated = on_tx!(&mut tx, |conn| {
        sqlx::query("UPDATE console_sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND user_id = $3")
            .bind(time::now())
            .bind(id.0)
            .bind(user.0)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    if updated == 0 {
        return Err(StorageError::NotFound);
    }
    audit::record(&mut tx, org, Change::new(Actor::User(user), "user.session_ended", id, json!({}))).await?;
    tx.commit().await
}

/// Ends every session of a user except `keep` (the one that changed the password, if any).
pub(crate) async fn revoke_all(tx: &mut Tx, user: UserId, keep: Option<ConsoleSessionId>) -> Result<()> {
    on_tx!(tx, |conn| {
        sqlx::query("UPDATE console_sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR id <> $3)")
            .bind(time::now())
            .bind(user.0)
            .bind(keep.map(|k| k.0))
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    Ok(())
}
