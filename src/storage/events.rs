//! The event outbox. An event is written in the transaction that caused it (a call's
//! finalisation, a classification), at most once per call and type (a unique key), and handed to
//! automations later by `automations::dispatch_events`.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::{Db, Result, Tx, calls, on_pool, on_tx};
use crate::domain::call::Call;
use crate::domain::cost::BudgetStatus;
use crate::domain::event::{CallEvent, CallSnapshot, EventType, SCHEMA_VERSION};
use crate::domain::ids::{CallId, OrgId};
use crate::domain::time;

/// Writes the `kind` event of `call`, snapshotting the record and transcript as the transaction
/// sees them. A second event of the same kind for the same call is not written.
pub(crate) async fn write(tx: &mut Tx, call: &Call, kind: EventType) -> Result<()> {
    insert(tx, call, kind, None).await.map(|_| ())
}

/// Writes the `budget.threshold_reached` event of the call whose cost took the month to
/// `budget`; returns whether it was written (a call has at most one).
pub(crate) async fn write_budget(tx: &mut Tx, call: &Call, budget: BudgetStatus) -> Result<bool> {
    insert(tx, call, EventType::BudgetThresholdReached, Some(budget)).await
}

async fn insert(tx: &mut Tx, call: &Call, kind: EventType, budget: Option<BudgetStatus>) -> Result<bool> {
    let turns = calls::transcript_in(tx, call.org_id, call.id).await?;
    let agent_name: Option<String> = match call.agent_id {
        Some(agent) => on_tx!(tx, |conn| {
            sqlx::query_scalar("SELECT name FROM agents WHERE id = $1 AND org_id = $2")
                .bind(agent.0)
                .bind(call.org_id.0)
                .fetch_optional(conn)
                .await
        })?,
        None => None,
    };
    let event = CallEvent {
        event_id: Uuid::now_v7(),
        event_type: kind,
        schema_version: SCHEMA_VERSION,
        created_at: time::now(),
        org_id: call.org_id,
        call: CallSnapshot::new(call, agent_name, &turns, call.analysis.clone()),
        budget,
    };
    let sql = "INSERT INTO events (id, org_id, app_id, call_id, type, schema_version, payload, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (call_id, type) DO NOTHING";
    let written = on_tx!(tx, |conn| {
        sqlx::query(sql)
            .bind(event.event_id)
            .bind(call.org_id.0)
            .bind(call.app_id.map(|a| a.0))
            .bind(call.id.0)
            .bind(kind.as_str())
            .bind(SCHEMA_VERSION)
            .bind(Json(&event))
            .bind(event.created_at)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(written == 1)
}

#[derive(sqlx::FromRow)]
struct EventRow {
    payload: Json<CallEvent>,
    dispatched_at: Option<DateTime<Utc>>,
}

/// An event with its delivery state.
pub struct StoredEvent {
    pub event: CallEvent,
    /// When automations were given the event.
    pub dispatched_at: Option<DateTime<Utc>>,
}

/// A call's events, oldest first.
pub async fn for_call(db: &Db, org: OrgId, call: CallId) -> Result<Vec<StoredEvent>> {
    let rows: Vec<EventRow> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT payload, dispatched_at FROM events WHERE call_id = $1 AND org_id = $2 ORDER BY id")
            .bind(call.0)
            .bind(org.0)
            .fetch_all(pool)
            .await
    })?;
    Ok(rows.into_iter().map(|r| StoredEvent { event: r.payload.0, dispatched_at: r.dispatched_at }).collect())
}
