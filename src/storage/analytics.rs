//! Analytics queries: the database counts, sums, averages and ranks; Rust only assembles the
//! report. The same SQL runs on both backends: portable aggregates with explicit casts,
//! percentiles by the nearest-rank rule through window functions (`ROW_NUMBER`, `COUNT OVER`),
//! and the time buckets passed in as a `VALUES` list, since their edges come from the calendar
//! of the requested time zone (`domain::analytics::buckets`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, Result, on_pool};
use crate::domain::analytics::{AgentFigures, Bucket, CallFigures, CostFigures, NumberFigures, ResponseTime, SeriesPoint};
use crate::domain::cost::Money;
use crate::domain::ids::{AgentId, AppId, OrgId, PhoneNumberId};

/// Which calls a report covers.
pub struct Scope {
    pub org: OrgId,
    pub app: AppId,
    pub agent: Option<AgentId>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Count the console's test calls too (left out by default).
    pub include_test_calls: bool,
}

/// Calls in scope: `c` is the calls table; `$1`–`$5` are org, app, agent, from, to.
fn in_scope(scope: &Scope) -> String {
    let tests = if scope.include_test_calls { "" } else { " AND c.is_test = FALSE" };
    format!("c.org_id = $1 AND c.app_id = $2 AND ($3 IS NULL OR c.agent_id = $3) AND c.started_at >= $4 AND c.started_at < $5{tests}")
}

/// The aggregates of `CallFigures` that come straight from the calls table.
const FIGURES: &str = "COUNT(*) AS calls,
    CAST(COALESCE(SUM(c.duration_secs), 0) AS BIGINT) AS total_duration_secs,
    CAST(AVG(c.duration_secs) AS DOUBLE PRECISION) AS average_duration_secs,
    CAST(COALESCE(SUM(CASE WHEN c.resolution = 'resolved' THEN 1 ELSE 0 END), 0) AS BIGINT) AS resolved,
    CAST(COALESCE(SUM(CASE WHEN c.resolution IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS classified,
    CAST(AVG(c.satisfaction) AS DOUBLE PRECISION) AS average_satisfaction,
    CAST(COALESCE(SUM(c.cost_total), 0) AS BIGINT) AS cost_total,
    CAST(COALESCE(SUM(CASE WHEN c.cost_total IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS costed";

#[derive(sqlx::FromRow)]
struct FiguresRow {
    group_id: Option<Uuid>,
    calls: i64,
    total_duration_secs: i64,
    average_duration_secs: Option<f64>,
    resolved: i64,
    classified: i64,
    average_satisfaction: Option<f64>,
    cost_total: i64,
    costed: i64,
}

impl FiguresRow {
    fn cost(&self) -> CostFigures {
        let total = Money::from_nanos(self.cost_total);
        let per = |count: i64| (count > 0).then(|| Money::from_nanos(self.cost_total / count));
        CostFigures { total, average_per_call: per(self.costed), per_resolved_call: per(self.resolved) }
    }

    fn figures(&self, response_time: ResponseTime, voice_to_voice: ResponseTime) -> CallFigures {
        CallFigures {
            calls: self.calls,
            total_duration_secs: self.total_duration_secs,
            average_duration_secs: self.average_duration_secs,
            response_time,
            voice_to_voice,
            resolution_rate: (self.classified > 0).then(|| self.resolved as f64 / self.classified as f64),
            classified_calls: self.classified,
            average_satisfaction: self.average_satisfaction,
            cost: self.cost(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct LatencyRow {
    group_id: Option<Uuid>,
    average_ms: Option<f64>,
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
}

/// Everything a report needs: totals, per agent (with names), sentiment, ended reasons, series.
pub struct Figures {
    pub totals: CallFigures,
    pub agents: Vec<AgentFigures>,
    pub numbers: Vec<NumberFigures>,
    pub sentiment: BTreeMap<String, i64>,
    pub ended_reasons: BTreeMap<String, i64>,
    pub series: Vec<SeriesPoint>,
}

/// Computes the figures of `scope` over `buckets`.
pub async fn figures(db: &Db, scope: &Scope, buckets: &[Bucket]) -> Result<Figures> {
    let in_scope = in_scope(scope);
    let totals_sql = format!("SELECT CAST(NULL AS UUID) AS group_id, {FIGURES} FROM calls c WHERE {in_scope}");
    let per_agent_sql =
        format!("SELECT c.agent_id AS group_id, {FIGURES} FROM calls c WHERE {in_scope} AND c.agent_id IS NOT NULL GROUP BY c.agent_id");
    let per_number_sql = format!(
        "SELECT c.phone_number_id AS group_id, {FIGURES} FROM calls c WHERE {in_scope} AND c.phone_number_id IS NOT NULL
         GROUP BY c.phone_number_id"
    );
    let totals: Vec<FiguresRow> = fetch(db, scope, &totals_sql).await?;
    let per_number: Vec<FiguresRow> = fetch(db, scope, &per_number_sql).await?;
    let numbers: Vec<(Uuid, String)> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT id, number FROM phone_numbers WHERE org_id = $1 AND app_id = $2")
            .bind(scope.org.0)
            .bind(scope.app.0)
            .fetch_all(pool)
            .await
    })?;
    let numbers = per_number
        .iter()
        .filter_map(|row| {
            let id = row.group_id?;
            Some(NumberFigures {
                phone_number_id: PhoneNumberId(id),
                number: numbers.iter().find(|(number, _)| *number == id).map(|(_, e164)| e164.clone()),
                calls: row.calls,
                cost: row.cost(),
            })
        })
        .collect();
    let per_agent: Vec<FiguresRow> = fetch(db, scope, &per_agent_sql).await?;
    let overall_latency: Vec<LatencyRow> = fetch(db, scope, &latency_sql(&in_scope, None, RESPONSE_TIME)).await?;
    let agent_latency: Vec<LatencyRow> = fetch(db, scope, &latency_sql(&in_scope, Some("c.agent_id"), RESPONSE_TIME)).await?;
    let overall_wait: Vec<LatencyRow> = fetch(db, scope, &latency_sql(&in_scope, None, VOICE_TO_VOICE)).await?;
    let agent_wait: Vec<LatencyRow> = fetch(db, scope, &latency_sql(&in_scope, Some("c.agent_id"), VOICE_TO_VOICE)).await?;
    let latency_of = |rows: &[LatencyRow], group: Option<Uuid>| {
        rows.iter()
            .find(|r| r.group_id == group)
            .map(|r| ResponseTime { average_ms: r.average_ms, p50_ms: r.p50_ms, p95_ms: r.p95_ms })
            .unwrap_or_default()
    };
    let names: Vec<(Uuid, String)> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT id, name FROM agents WHERE org_id = $1 AND app_id = $2")
            .bind(scope.org.0)
            .bind(scope.app.0)
            .fetch_all(pool)
            .await
    })?;
    let agents = per_agent
        .iter()
        .filter_map(|row| {
            let id = row.group_id?;
            Some(AgentFigures {
                agent_id: AgentId(id),
                name: names.iter().find(|(agent, _)| *agent == id).map(|(_, name)| name.clone()),
                figures: row.figures(latency_of(&agent_latency, Some(id)), latency_of(&agent_wait, Some(id))),
            })
        })
        .collect();
    let sentiment = counts(db, scope, "c.sentiment", "c.sentiment IS NOT NULL").await?;
    let ended_reasons = counts(db, scope, "COALESCE(c.ended_reason, 'unknown')", "1 = 1").await?;
    Ok(Figures {
        totals: totals
            .first()
            .map(|row| row.figures(latency_of(&overall_latency, None), latency_of(&overall_wait, None)))
            .unwrap_or_default(),
        agents,
        numbers,
        sentiment,
        ended_reasons,
        series: series(db, scope, buckets).await?,
    })
}

/// Agent turns' caller's words → first token.
const RESPONSE_TIME: &str = "t.latency_ms";
/// Agent turns' caller's last word → first sound of the answer.
const VOICE_TO_VOICE: &str = "t.voice_to_voice_ms";

/// Average and nearest-rank p50/p95 of agent turn latencies (`column`, one of the constants
/// above), grouped by `group` (all together when `None`).
fn latency_sql(in_scope: &str, group: Option<&str>, column: &str) -> String {
    let partition = group.map(|g| format!("PARTITION BY {g} ")).unwrap_or_default();
    let group = group.unwrap_or("CAST(NULL AS UUID)");
    format!(
        "WITH ranked AS (
             SELECT {group} AS group_id, {column} AS ms,
                    ROW_NUMBER() OVER ({partition}ORDER BY {column}) AS rn, COUNT(*) OVER ({partition}) AS n
             FROM conversation_turns t JOIN calls c ON c.id = t.call_id
             WHERE {in_scope} AND t.role = 'agent' AND {column} IS NOT NULL)
         SELECT group_id, CAST(AVG(ms) AS DOUBLE PRECISION) AS average_ms,
                MIN(CASE WHEN rn * 100 >= 50 * n THEN ms END) AS p50_ms,
                MIN(CASE WHEN rn * 100 >= 95 * n THEN ms END) AS p95_ms
         FROM ranked GROUP BY group_id"
    )
}

async fn fetch<T>(db: &Db, scope: &Scope, sql: &str) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    Ok(on_pool!(db, |pool| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(scope.org.0)
            .bind(scope.app.0)
            .bind(scope.agent.map(|a| a.0))
            .bind(scope.from)
            .bind(scope.to)
            .fetch_all(pool)
            .await
    })?)
}

/// Calls in scope per value of `key` (an expression over `c`), among those matching `filter`.
async fn counts(db: &Db, scope: &Scope, key: &str, filter: &str) -> Result<BTreeMap<String, i64>> {
    let sql = format!("SELECT {key} AS k, COUNT(*) AS n FROM calls c WHERE {} AND {filter} GROUP BY {key}", in_scope(scope));
    let rows: Vec<(String, i64)> = fetch(db, scope, &sql).await?;
    Ok(rows.into_iter().collect())
}

/// Volume and duration per bucket, empty buckets included.
async fn series(db: &Db, scope: &Scope, buckets: &[Bucket]) -> Result<Vec<SeriesPoint>> {
    let values: Vec<String> = (0..buckets.len()).map(|i| format!("(${}, ${}, ${})", 6 + 3 * i, 7 + 3 * i, 8 + 3 * i)).collect();
    let sql = format!(
        "WITH buckets (idx, starts, ends) AS (VALUES {})
         SELECT b.idx AS idx, COUNT(c.id) AS calls, CAST(COALESCE(SUM(c.duration_secs), 0) AS BIGINT) AS total,
                CAST(AVG(c.duration_secs) AS DOUBLE PRECISION) AS average, CAST(COALESCE(SUM(c.cost_total), 0) AS BIGINT) AS cost
         FROM buckets b LEFT JOIN calls c ON {} AND c.started_at >= b.starts AND c.started_at < b.ends
         GROUP BY b.idx ORDER BY b.idx",
        values.join(", "),
        in_scope(scope)
    );
    let rows: Vec<(i64, i64, i64, Option<f64>, i64)> = on_pool!(db, |pool| {
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(scope.org.0)
            .bind(scope.app.0)
            .bind(scope.agent.map(|a| a.0))
            .bind(scope.from)
            .bind(scope.to);
        for (i, bucket) in buckets.iter().enumerate() {
            query = query.bind(i as i64).bind(bucket.start).bind(bucket.end);
        }
        query.fetch_all(pool).await
    })?;
    Ok(rows
        .into_iter()
        .map(|(idx, calls, total, average, cost)| {
            let bucket = &buckets[idx as usize];
            SeriesPoint {
                bucket: bucket.label.clone(),
                start: bucket.start,
                end: bucket.end,
                calls,
                total_duration_secs: total,
                average_duration_secs: average,
                cost: Money::from_nanos(cost),
            }
        })
        .collect())
}
