//! Tickets of an app. An automation's ticket carries its source (run and action), so a retried
//! run finds the ticket it made before instead of making a second one.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::{Db, Page, PageRequest, Result, StorageError, on_pool, on_tx, parse_stored};
use crate::domain::audit::Actor;
use crate::domain::ids::{AppId, CallId, OrgId, TicketId};
use crate::domain::ticket::{Ticket, TicketPriority, TicketStatus};
use crate::domain::time;

macro_rules! columns {
    () => {
        "id, org_id, app_id, call_id, title, description, priority, status, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    id: Uuid,
    org_id: Uuid,
    app_id: Uuid,
    call_id: Option<Uuid>,
    title: String,
    description: String,
    priority: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TicketRow {
    fn into_domain(self) -> Result<Ticket> {
        Ok(Ticket {
            id: TicketId(self.id),
            org_id: OrgId(self.org_id),
            app_id: AppId(self.app_id),
            call_id: self.call_id.map(CallId),
            title: self.title,
            description: self.description,
            priority: parse_stored("priority", &self.priority)?,
            status: parse_stored("status", &self.status)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A ticket to create.
pub struct NewTicket {
    pub app_id: AppId,
    pub call_id: Option<CallId>,
    pub title: String,
    pub description: String,
    pub priority: TicketPriority,
    pub status: TicketStatus,
    /// What made it (`run:<id>:<action index>`); the same source never makes two tickets.
    pub source: String,
}

/// Creates the ticket, or returns the one its source already made.
pub async fn create(db: &Db, org: OrgId, new: &NewTicket) -> Result<Ticket> {
    let now = time::now();
    let mut tx = db.begin().await?;
    let inserted = on_tx!(&mut tx, |conn| {
        sqlx::query(
            "INSERT INTO tickets (id, org_id, app_id, call_id, title, description, priority, status, source, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT (source) DO NOTHING",
        )
        .bind(TicketId::generate().0)
        .bind(org.0)
        .bind(new.app_id.0)
        .bind(new.call_id.map(|c| c.0))
        .bind(&new.title)
        .bind(&new.description)
        .bind(new.priority.as_str())
        .bind(new.status.as_str())
        .bind(&new.source)
        .bind(now)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
    })?;
    let sql = concat!("SELECT ", columns!(), " FROM tickets WHERE source = $1 AND org_id = $2");
    let row: TicketRow = on_tx!(&mut tx, |conn| sqlx::query_as(sql).bind(&new.source).bind(org.0).fetch_one(conn).await)?;
    let ticket = row.into_domain()?;
    if inserted == 1 {
        let change = Change::new(Actor::System, "ticket.created", ticket.id, json!({ "source": new.source, "call_id": new.call_id }));
        audit::record(&mut tx, org, change).await?;
    }
    tx.commit().await?;
    Ok(ticket)
}

pub async fn get(db: &Db, org: OrgId, id: TicketId) -> Result<Ticket> {
    let sql = concat!("SELECT ", columns!(), " FROM tickets WHERE id = $1 AND org_id = $2");
    let row: Option<TicketRow> = on_pool!(db, |pool| sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(pool).await)?;
    row.ok_or(StorageError::NotFound)?.into_domain()
}

/// An app's tickets, newest first, optionally only those of one call.
pub async fn list(db: &Db, org: OrgId, app: AppId, call: Option<CallId>, page: PageRequest) -> Result<Page<Ticket>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM tickets WHERE org_id = $1 AND app_id = $2 AND ($3 IS NULL OR call_id = $3) AND ($4 IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5"
    );
    let rows: Vec<TicketRow> = on_pool!(db, |pool| {
        sqlx::query_as(sql).bind(org.0).bind(app.0).bind(call.map(|c| c.0)).bind(page.before).bind(page.fetch_limit()).fetch_all(pool).await
    })?;
    let items = rows.into_iter().map(TicketRow::into_domain).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_overfetch(items, page, |t| t.id.0))
}

/// Validated changes; `None` leaves a field as it is.
#[derive(Default)]
pub struct TicketChanges {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<TicketPriority>,
    pub status: Option<TicketStatus>,
}

pub async fn update(db: &Db, org: OrgId, id: TicketId, changes: &TicketChanges, actor: Actor) -> Result<Ticket> {
    let sql = concat!(
        "UPDATE tickets SET title = COALESCE($1, title), description = COALESCE($2, description), priority = COALESCE($3, priority),
             status = COALESCE($4, status), updated_at = $5
         WHERE id = $6 AND org_id = $7 RETURNING ",
        columns!()
    );
    let mut tx = db.begin().await?;
    let row: Option<TicketRow> = on_tx!(&mut tx, |conn| {
        sqlx::query_as(sql)
            .bind(&changes.title)
            .bind(&changes.description)
            .bind(changes.priority.map(TicketPriority::as_str))
            .bind(changes.status.map(TicketStatus::as_str))
            .bind(time::now())
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(conn)
            .await
    })?;
    let ticket = row.ok_or(StorageError::NotFound)?.into_domain()?;
    let change = Change::new(actor, "ticket.updated", id, json!({ "status": ticket.status, "priority": ticket.priority }));
    audit::record(&mut tx, org, change).await?;
    tx.commit().await?;
    Ok(ticket)
}
