//! Usage and costs: the organisation's currency and budget, each provider's price list, what a
//! call used (written by its session) and the cost computed from them (`refresh`, run when the
//! call is finalised and again whenever an input arrives late: the carrier's price, the
//! recording's length, the session's last words). A cost that takes a month's spending over a
//! budget threshold writes a `budget.threshold_reached` event in the same transaction, once per
//! month and threshold.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::{Db, Result, StorageError, Tx, events, on_pool, on_tx};
use crate::domain::audit::Actor;
use crate::domain::call::Call;
use crate::domain::cost::{
    Budget, BudgetLevel, BudgetStatus, CallCost, CallUsage, CarrierPrice, CarrierPrices, CostInputs, CostSettings, Currency, ModelPrices,
    Money, PriceLists, SpeechPrices, Spending, month_of,
};
use crate::domain::ids::{CallId, LlmProviderId, OrgId};
use crate::domain::time;

/// How many times the carrier is asked for a call's price before the price list stands for it.
pub const PRICE_CHECKS: i64 = 8;

pub async fn settings(db: &Db, org: OrgId) -> Result<CostSettings> {
    let mut tx = db.begin().await?;
    let settings = settings_in(&mut tx, org).await?;
    tx.commit().await?;
    Ok(settings)
}

async fn settings_in(tx: &mut Tx, org: OrgId) -> Result<CostSettings> {
    let row: Option<(String, Option<Json<Budget>>)> = on_tx!(tx, |conn| {
        sqlx::query_as("SELECT currency, budget FROM organizations WHERE id = $1").bind(org.0).fetch_optional(conn).await
    })?;
    let (currency, budget) = row.ok_or(StorageError::NotFound)?;
    Ok(CostSettings { currency: stored_currency(&currency)?, budget: budget.map(|b| b.0) })
}

fn stored_currency(code: &str) -> Result<Currency> {
    Currency::parse(code).map_err(|e| StorageError::Corrupt(format!("organizations.currency: {}", e.message)))
}

pub async fn set_settings(db: &Db, org: OrgId, settings: &CostSettings, actor: Actor) -> Result<()> {
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, |conn| {
        sqlx::query("UPDATE organizations SET currency = $1, budget = $2 WHERE id = $3")
            .bind(settings.currency.as_str())
            .bind(settings.budget.as_ref().map(Json))
            .bind(org.0)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    audit::record(&mut tx, org, Change::new(actor, "costs.updated", org, json!(settings))).await?;
    tx.commit().await
}

/// The kinds of provider that have a price list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PricedProvider {
    Phone,
    Model,
    Speech,
}

impl PricedProvider {
    fn table(self) -> &'static str {
        match self {
            PricedProvider::Phone => "phone_providers",
            PricedProvider::Model => "llm_providers",
            PricedProvider::Speech => "speech_providers",
        }
    }
}

/// The price list of provider `id` (all zero when none was set).
pub async fn prices<P: DeserializeOwned + Default + Send + Unpin + 'static>(
    db: &Db,
    org: OrgId,
    kind: PricedProvider,
    id: Uuid,
) -> Result<P> {
    let mut tx = db.begin().await?;
    let prices = prices_in::<P>(&mut tx, org, kind, id).await?.ok_or(StorageError::NotFound)?;
    tx.commit().await?;
    Ok(prices.unwrap_or_default())
}

/// Sets the price list of provider `id`; the costs of calls already settled keep the prices
/// they were computed with.
pub async fn set_prices<P: serde::Serialize + Sync>(
    db: &Db,
    org: OrgId,
    kind: PricedProvider,
    id: Uuid,
    prices: &P,
    actor: Actor,
) -> Result<()> {
    let mut tx = db.begin().await?;
    let sql = format!("UPDATE {} SET prices = $1 WHERE id = $2 AND org_id = $3", kind.table());
    let updated = on_tx!(&mut tx, |conn| sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(Json(prices))
        .bind(id)
        .bind(org.0)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    if updated == 0 {
        return Err(StorageError::NotFound);
    }
    let action = format!("{}.prices_updated", kind.table().trim_end_matches('s'));
    audit::record(&mut tx, org, Change::new(actor, &action, id, json!(prices))).await?;
    tx.commit().await
}

/// The price list of provider `id`: `None` when there is no such provider, `Some(None)` when
/// it has no prices.
async fn prices_in<P: DeserializeOwned + Send + Unpin + 'static>(
    tx: &mut Tx,
    org: OrgId,
    kind: PricedProvider,
    id: Uuid,
) -> Result<Option<Option<P>>> {
    let sql = format!("SELECT prices FROM {} WHERE id = $1 AND org_id = $2", kind.table());
    let row: Option<(Option<Json<P>>,)> =
        on_tx!(tx, |conn| sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).bind(org.0).fetch_optional(conn).await)?;
    Ok(row.map(|(prices,)| prices.map(|p| p.0)))
}

/// Stores what a call's session used (replacing what it stored before; a classification's
/// tokens stay) and brings the call's cost up to date.
pub async fn record_usage(db: &Db, org: OrgId, call: CallId, usage: &CallUsage) -> Result<()> {
    change_usage(db, org, call, |stored| usage.clone().keeping_classification_of(&stored)).await
}

/// Adds the tokens a classification of the call took (`provider`'s; `estimated` when some were
/// not reported) and brings the call's cost up to date.
pub async fn record_classification(
    db: &Db,
    org: OrgId,
    call: CallId,
    provider: Option<LlmProviderId>,
    tokens: (i64, i64),
    estimated: bool,
) -> Result<()> {
    change_usage(db, org, call, |stored| CallUsage {
        classification_provider_id: provider,
        classification_input_tokens: stored.classification_input_tokens + tokens.0,
        classification_output_tokens: stored.classification_output_tokens + tokens.1,
        classification_tokens_estimated: stored.classification_tokens_estimated || estimated,
        ..stored
    })
    .await
}

/// Writes what `change` makes of the call's stored usage, and its cost, in one transaction.
async fn change_usage(db: &Db, org: OrgId, call: CallId, change: impl FnOnce(CallUsage) -> CallUsage) -> Result<()> {
    let mut tx = db.begin().await?;
    let stored = super::calls::lock(&mut tx, org, call).await?.usage.unwrap_or_default();
    let usage = change(stored);
    on_tx!(&mut tx, |conn| {
        sqlx::query("UPDATE calls SET usage = $1 WHERE id = $2 AND org_id = $3")
            .bind(Json(&usage))
            .bind(call.0)
            .bind(org.0)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    refresh_and_commit(db, tx, org, call).await
}

/// Records the carrier's price for a call (`None`: not known yet, or `give_up`: not coming) and
/// brings its cost up to date.
pub async fn record_carrier_price(db: &Db, org: OrgId, call: CallId, price: Option<&CarrierPrice>, give_up: bool) -> Result<()> {
    let mut tx = db.begin().await?;
    on_tx!(&mut tx, |conn| {
        sqlx::query(
            "UPDATE calls SET carrier_price = COALESCE($1, carrier_price), carrier_price_unit = COALESCE($2, carrier_price_unit),
                 price_checks = price_checks + 1
             WHERE id = $3 AND org_id = $4",
        )
        .bind(price.map(|p| p.amount.nanos()))
        .bind(price.map(|p| p.currency.as_str().to_owned()))
        .bind(call.0)
        .bind(org.0)
        .execute(conn)
        .await
        .map(|_| ())
    })?;
    if give_up {
        let sql = "UPDATE calls SET price_checks = $1 WHERE id = $2 AND org_id = $3";
        on_tx!(&mut tx, |conn| sqlx::query(sql).bind(PRICE_CHECKS).bind(call.0).bind(org.0).execute(conn).await.map(|_| ()))?;
    }
    refresh_and_commit(db, tx, org, call).await
}

/// Recomputes a call's cost after a late input (its recording's length) and stores it.
pub async fn refresh_call(db: &Db, org: OrgId, call: CallId) -> Result<()> {
    refresh_and_commit(db, db.begin().await?, org, call).await
}

/// Brings the call's cost up to date in `tx` and commits it; wakes the automations worker when
/// a budget event was written.
async fn refresh_and_commit(db: &Db, mut tx: Tx, org: OrgId, call: CallId) -> Result<()> {
    let budget_event = refresh(&mut tx, org, call).await?.1;
    tx.commit().await?;
    if budget_event {
        db.announce_outbox_event();
    }
    Ok(())
}

/// What a call's cost depends on beyond the call record: the carrier's price, how often it was
/// asked for, whether the call is final; and the total it had before.
type CostRow = (Option<i64>, Option<String>, i64, Option<DateTime<Utc>>, Option<i64>);

/// Computes and stores the cost of a finalised call from what is known now; an open call is
/// left alone (finalisation computes it). Returns the cost, and whether a budget event was
/// written.
pub(crate) async fn refresh(tx: &mut Tx, org: OrgId, id: CallId) -> Result<(Option<CallCost>, bool)> {
    let call = super::calls::lock(tx, org, id).await?;
    let sql = "SELECT carrier_price, carrier_price_unit, price_checks, finalized_at, cost_total FROM calls WHERE id = $1 AND org_id = $2";
    let row: Option<CostRow> = on_tx!(tx, |conn| sqlx::query_as(sql).bind(id.0).bind(org.0).fetch_optional(conn).await)?;
    let (carrier_price, carrier_unit, checks, finalized_at, total_before) = row.ok_or(StorageError::NotFound)?;
    if finalized_at.is_none() {
        return Ok((None, false));
    }
    let usage = call.usage.clone().unwrap_or_default();
    let settings = settings_in(tx, org).await?;
    let mut prices = PriceLists { currency: settings.currency.clone(), ..PriceLists::default() };
    if let Some(provider) = call.provider_id {
        prices.carrier = prices_in::<CarrierPrices>(tx, org, PricedProvider::Phone, provider.0).await?.flatten().unwrap_or_default();
    }
    if let Some(provider) = usage.model_provider_id {
        prices.model = prices_in::<ModelPrices>(tx, org, PricedProvider::Model, provider.0).await?.flatten();
    }
    if let Some(provider) = usage.classification_provider_id {
        prices.classification = prices_in::<ModelPrices>(tx, org, PricedProvider::Model, provider.0).await?.flatten();
    }
    if let Some(provider) = usage.transcription_provider_id {
        prices.transcription = prices_in::<SpeechPrices>(tx, org, PricedProvider::Speech, provider.0).await?.flatten();
    }
    if let Some(provider) = usage.synthesis_provider_id {
        prices.synthesis = prices_in::<SpeechPrices>(tx, org, PricedProvider::Speech, provider.0).await?.flatten();
    }
    let recording_ms: Option<Option<i64>> = on_tx!(tx, |conn| {
        sqlx::query_scalar("SELECT duration_ms FROM recordings WHERE call_id = $1 AND org_id = $2 AND status = 'stored'")
            .bind(id.0)
            .bind(org.0)
            .fetch_optional(conn)
            .await
    })?;
    let carrier_price = match (carrier_price, carrier_unit) {
        (Some(nanos), Some(unit)) => Some(CarrierPrice { amount: Money::from_nanos(nanos), currency: stored_currency(&unit)? }),
        _ => None,
    };
    let inputs = CostInputs {
        usage,
        call_secs: billable_secs(&call),
        recording_secs: recording_ms.flatten().map(|ms| (ms + 999) / 1000),
        carrier_price,
        carrier_price_given_up: checks >= PRICE_CHECKS || call.provider_id.is_none(),
        prices,
    };
    let cost = inputs.cost();
    let sql = "UPDATE calls SET cost = $1, cost_total = $2, cost_settled_at = $3 WHERE id = $4 AND org_id = $5";
    on_tx!(tx, |conn| sqlx::query(sql)
        .bind(Json(&cost))
        .bind(cost.total.nanos())
        .bind(cost.settled.then(time::now))
        .bind(id.0)
        .bind(org.0)
        .execute(conn)
        .await
        .map(|_| ()))?;
    let month = month_of(call.started_at);
    let sql = "INSERT INTO spending (org_id, month, spent, calls) VALUES ($1, $2, $3, $4)
               ON CONFLICT (org_id, month) DO UPDATE SET spent = spending.spent + excluded.spent, calls = spending.calls + excluded.calls";
    on_tx!(tx, |conn| sqlx::query(sql)
        .bind(org.0)
        .bind(&month)
        .bind(cost.total.nanos() - total_before.unwrap_or(0))
        .bind(i64::from(total_before.is_none()))
        .execute(conn)
        .await
        .map(|_| ()))?;
    let budget_event = match settings.budget {
        Some(budget) => check_budget(tx, &Call { cost: Some(cost.clone()), ..call }, &budget, settings.currency).await?,
        None => false,
    };
    Ok((Some(cost), budget_event))
}

/// The call's billable length: the carrier's, else from answer (or start) to end.
fn billable_secs(call: &Call) -> i64 {
    call.duration_secs.unwrap_or_else(|| match call.ended_at {
        Some(ended) if call.answered_at.is_some() => (ended - call.answered_at.unwrap_or(call.started_at)).num_seconds().max(0),
        _ => 0,
    })
}

/// The organisation's spending in `month` (`2026-11`), and the calls it was spent on.
async fn spent_in(tx: &mut Tx, org: OrgId, month: &str) -> Result<(Money, i64)> {
    let row: Option<(i64, i64)> = on_tx!(tx, |conn| {
        sqlx::query_as("SELECT spent, calls FROM spending WHERE org_id = $1 AND month = $2")
            .bind(org.0)
            .bind(month)
            .fetch_optional(conn)
            .await
    })?;
    let (spent, calls) = row.unwrap_or_default();
    Ok((Money::from_nanos(spent), calls))
}

/// Writes a budget event for `call` when the spending of its month has reached a threshold no
/// event was written for yet. The threshold is claimed only if the event is written (an event
/// per call and type), so a threshold this call cannot report fires with the next call.
async fn check_budget(tx: &mut Tx, call: &Call, budget: &Budget, currency: Currency) -> Result<bool> {
    let month = month_of(call.started_at);
    let (spent, _) = spent_in(tx, call.org_id, &month).await?;
    let Some(level) = budget.level(spent) else { return Ok(false) };
    let levels: &[BudgetLevel] =
        if level == BudgetLevel::Limit { &[BudgetLevel::Warning, BudgetLevel::Limit] } else { &[BudgetLevel::Warning] };
    let mut new_levels = Vec::new();
    for level in levels {
        let sql = "SELECT 1 FROM budget_alerts WHERE org_id = $1 AND month = $2 AND level = $3";
        let seen: Option<i32> =
            on_tx!(tx, |conn| sqlx::query_scalar(sql).bind(call.org_id.0).bind(&month).bind(level.as_str()).fetch_optional(conn).await)?;
        if seen.is_none() {
            new_levels.push(*level);
        }
    }
    if new_levels.is_empty() {
        return Ok(false);
    }
    let status = BudgetStatus::new(budget, currency, month.clone(), spent);
    if !events::write_budget(tx, call, status).await? {
        return Ok(false);
    }
    let now = time::now();
    for level in new_levels {
        let sql = "INSERT INTO budget_alerts (org_id, month, level, call_id, created_at) VALUES ($1, $2, $3, $4, $5)";
        on_tx!(tx, |conn| sqlx::query(sql)
            .bind(call.org_id.0)
            .bind(&month)
            .bind(level.as_str())
            .bind(call.id.0)
            .bind(now)
            .execute(conn)
            .await
            .map(|_| ()))?;
    }
    Ok(true)
}

/// The organisation's spending in the month of `now`, against its budget.
pub async fn spending(db: &Db, org: OrgId, now: DateTime<Utc>) -> Result<Spending> {
    let settings = settings(db, org).await?;
    let month = month_of(now);
    let mut tx = db.begin().await?;
    let (spent, calls) = spent_in(&mut tx, org, &month).await?;
    tx.commit().await?;
    let budget = settings.budget.map(|budget| BudgetStatus::new(&budget, settings.currency.clone(), month.clone(), spent));
    Ok(Spending { month, currency: settings.currency, spent, calls, budget })
}

/// What callers hear instead of an agent while the budget stops new calls, if it does.
pub async fn stop_message(db: &Db, org: OrgId, now: DateTime<Utc>) -> Result<Option<String>> {
    let settings = settings(db, org).await?;
    let Some(budget) = settings.budget.filter(|b| b.hard_stop) else { return Ok(None) };
    let month = month_of(now);
    let mut tx = db.begin().await?;
    let (spent, _) = spent_in(&mut tx, org, &month).await?;
    tx.commit().await?;
    Ok(budget.stops_calls(spent).then_some(budget.stop_message))
}

/// How long after a call its carrier price is asked for at most; older calls (those from before
/// costs were kept among them) are not asked about.
const PRICE_WINDOW: chrono::Duration = chrono::Duration::days(2);

/// Finalised calls whose carrier price has not come in yet and may still be asked for, oldest
/// first: finalised before `ended_before` (Twilio fills the price in a little after the call),
/// and within [`PRICE_WINDOW`] of it.
pub async fn awaiting_carrier_price(db: &Db, ended_before: DateTime<Utc>, limit: i64) -> Result<Vec<Call>> {
    let ids: Vec<(Uuid, Uuid)> = on_pool!(db, |pool| {
        sqlx::query_as(
            "SELECT id, org_id FROM calls
             WHERE cost_settled_at IS NULL AND finalized_at IS NOT NULL AND finalized_at < $1 AND finalized_at > $2
               AND provider_id IS NOT NULL AND price_checks < $3
             ORDER BY finalized_at LIMIT $4",
        )
        .bind(ended_before)
        .bind(ended_before - PRICE_WINDOW)
        .bind(PRICE_CHECKS)
        .bind(limit)
        .fetch_all(pool)
        .await
    })?;
    let mut calls = Vec::with_capacity(ids.len());
    for (id, org) in ids {
        calls.push(super::calls::get(db, OrgId(org), CallId(id)).await?);
    }
    Ok(calls)
}
