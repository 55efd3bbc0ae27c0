//! Audit log storage: entries are appended inside the transaction of the change they record.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Db, Page, PageRequest, Result, Tx, on_pool, on_tx};
use crate::domain::audit::{Actor, AuditEntry};
use crate::domain::ids::{AuditEntryId, OrgId};
use crate::domain::time;

/// A change about to be recorded.
pub struct Change<'a> {
    pub actor: Actor,
    /// `<resource type>.<verb>`, e.g. `agent.updated`.
    pub action: &'a str,
    pub resource_id: String,
    pub details: serde_json::Value,
}

impl<'a> Change<'a> {
    pub fn new(actor: Actor, action: &'a str, resource_id: impl std::fmt::Display, details: serde_json::Value) -> Self {
        Self { actor, action, resource_id: resource_id.to_string(), details }
    }

    /// The kind of resource, named by the action's prefix.
    fn resource_type(&self) -> &'a str {
        self.action.split_once('.').map_or(self.action, |(kind, _)| kind)
    }
}

pub(crate) async fn record(tx: &mut Tx, org: OrgId, change: Change<'_>) -> Result<()> {
    let sql = "INSERT INTO audit_log (id, org_id, actor, action, resource_type, resource_id, details, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    on_tx!(tx, |conn| {
        sqlx::query(sql)
            .bind(AuditEntryId::generate().0)
            .bind(org.0)
            .bind(change.actor.label())
            .bind(change.action)
            .bind(change.resource_type())
            .bind(&change.resource_id)
            .bind(Json(&change.details))
            .bind(time::now())
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    org_id: Uuid,
    actor: String,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    details: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

/// The organisation's audit log, newest first.
/// Which entries to list.
#[derive(Debug, Default)]
pub struct AuditFilter {
    /// An action (`user.created`) or the resource part of actions (`user`).
    pub action: Option<String>,
    /// `token:<id>`, `user:<id>` or `system`.
    pub actor: Option<String>,
}

pub async fn list(db: &Db, org: OrgId, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditEntry>> {
    let sql = "SELECT id, org_id, actor, action, resource_type, resource_id, details, created_at
               FROM audit_log WHERE org_id = $1 AND ($2 IS NULL OR id < $2)
                 AND ($3 IS NULL OR action = $3 OR action LIKE $4 ESCAPE '\\') AND ($5 IS NULL OR actor = $5)
               ORDER BY id DESC LIMIT $6";
    // `user` finds `user.created`, `user.signed_in`, …: a prefix up to a dot, taken literally
    // (`llm_provider` has an underscore, which LIKE would read as a wildcard).
    let prefix = filter.action.as_ref().map(|a| format!("{}.%", a.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let rows: Vec<AuditRow> = on_pool!(db, |pool| {
        sqlx::query_as(sql)
            .bind(org.0)
            .bind(page.before)
            .bind(filter.action.as_deref())
            .bind(prefix.as_deref())
            .bind(filter.actor.as_deref())
            .bind(page.fetch_limit())
            .fetch_all(pool)
            .await
    })?;
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: AuditEntryId(r.id),
            org_id: OrgId(r.org_id),
            actor: r.actor,
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            details: r.details.0,
            created_at: r.created_at,
        })
        .collect();
    Ok(Page::from_overfetch(entries, page, |e| e.id.0))
}
