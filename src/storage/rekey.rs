//! Re-encrypts every stored credential under the current master key (`switchboard secrets
//! rotate`). Online: servers run with the new key as current and the old one among
//! `previous_secret_keys`, so they open both while this runs. Resumable: each value is rewritten
//! in its own transaction, only if it is still the value read (a credential changed meanwhile
//! is already under the current key), with an audit entry; values already under the current key
//! are left alone, so running it again finishes an interrupted rotation.

use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::secrets::{OpenedWith, SecretSlot};
use super::{Db, Result, on_pool, on_tx};
use crate::domain::audit::Actor;
use crate::domain::ids::OrgId;

/// A sealed column: its table, the column in the secret's slot (stored as `{column}_enc`) and
/// the resource type its audit entries name.
struct SealedColumn {
    table: &'static str,
    column: &'static str,
    resource: &'static str,
}

/// Every column that holds a sealed credential.
const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn { table: "phone_providers", column: "auth_token", resource: "phone_provider" },
    SealedColumn { table: "phone_providers", column: "api_key_secret", resource: "phone_provider" },
    SealedColumn { table: "llm_providers", column: "api_key", resource: "llm_provider" },
    SealedColumn { table: "speech_providers", column: "api_key", resource: "speech_provider" },
    SealedColumn { table: "automations", column: "secret", resource: "automation" },
    SealedColumn { table: "recordings", column: "key", resource: "recording" },
];

/// Rows read per query while walking a table.
const PAGE: i64 = 200;

/// What a rotation did, or a survey found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Values re-encrypted under the current key.
    pub rekeyed: u64,
    /// Values already under the current key.
    pub current: u64,
    /// Values under a previous key, left as they are (a survey).
    pub previous: u64,
    /// Values no configured key opens (listed as `table.column id`), left as they are.
    pub unreadable: Vec<String>,
}

/// Re-encrypts every value a previous key sealed under the current key.
pub async fn rotate(db: &Db, actor: Actor) -> Result<Rotation> {
    walk(db, Some(actor)).await
}

/// Counts which key opens each stored credential, changing nothing.
pub async fn survey(db: &Db) -> Result<Rotation> {
    walk(db, None).await
}

/// Opens every stored credential; with `rekey_as`, re-encrypts those a previous key opened.
async fn walk(db: &Db, rekey_as: Option<Actor>) -> Result<Rotation> {
    let mut rotation = Rotation::default();
    for sealed in SEALED_COLUMNS {
        let mut after = Uuid::nil();
        loop {
            let page = read_page(db, sealed, after).await?;
            for (id, org, stored) in &page {
                let slot = SecretSlot { org: *org, table: sealed.table, row: *id, column: sealed.column };
                match db.cipher().open(&slot, stored) {
                    Ok((_, OpenedWith::Current)) => rotation.current += 1,
                    Ok((_, OpenedWith::Previous)) if rekey_as.is_none() => rotation.previous += 1,
                    Ok((plain, OpenedWith::Previous)) => {
                        let resealed = db.cipher().encrypt(&slot, &plain);
                        let actor = rekey_as.expect("rewriting only when rotating");
                        if rewrite(db, sealed, OrgId(*org), *id, stored, &resealed, actor).await? {
                            rotation.rekeyed += 1;
                        } else {
                            rotation.current += 1; // changed meanwhile, so sealed under the current key
                        }
                    }
                    Err(_) => rotation.unreadable.push(format!("{}.{} {id}", sealed.table, sealed.column)),
                }
            }
            match page.last() {
                Some((id, ..)) if page.len() as i64 == PAGE => after = *id,
                _ => break,
            }
        }
    }
    Ok(rotation)
}

async fn read_page(db: &Db, sealed: &SealedColumn, after: Uuid) -> Result<Vec<(Uuid, Uuid, Vec<u8>)>> {
    let sql = format!(
        "SELECT id, org_id, {column}_enc FROM {table} WHERE {column}_enc IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
        table = sealed.table,
        column = sealed.column
    );
    Ok(on_pool!(db, |pool| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(after).bind(PAGE).fetch_all(pool).await)?)
}

/// Replaces `old` with `new` if the row still holds `old`; audits the change with it.
async fn rewrite(db: &Db, sealed: &SealedColumn, org: OrgId, id: Uuid, old: &[u8], new: &[u8], actor: Actor) -> Result<bool> {
    let sql =
        format!("UPDATE {table} SET {column}_enc = $1 WHERE id = $2 AND {column}_enc = $3", table = sealed.table, column = sealed.column);
    let mut tx = db.begin().await?;
    let changed = on_tx!(&mut tx, |conn| {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(new).bind(id).bind(old).execute(conn).await.map(|done| done.rows_affected())
    })?;
    if changed == 0 {
        return Ok(false);
    }
    let action = format!("{}.rekeyed", sealed.resource);
    audit::record(&mut tx, org, Change::new(actor, &action, id, json!({ "credential": sealed.column }))).await?;
    tx.commit().await?;
    Ok(true)
}
