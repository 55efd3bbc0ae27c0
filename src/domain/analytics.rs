//! Analytics: the shape of a report and the calendar rule that cuts a time range into day, week
//! (Monday first) or month buckets in an IANA time zone. Bucket edges are local midnights, so a
//! day across a daylight-saving change is 23 or 25 hours long. The database does the counting
//! (`storage::analytics`).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::cost::{Currency, Money};
use super::ids::{AgentId, PhoneNumberId};
use super::text_enum;
use super::validation::Invalid;

text_enum!(
    /// How long one step of a series is.
    BucketSize { Day => "day", Week => "week", Month => "month" }
);

/// The most buckets one report may have.
pub const MAX_BUCKETS: usize = 400;

/// One step of a series: `[start, end)` in UTC, named by its local first day.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub label: String,
}

/// The earliest and latest years a report may cover: calendar arithmetic stays far from chrono's
/// limits, whatever the input.
pub const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// The buckets that cover `[from, to)`: the first holds `from`, the last holds the instant
/// before `to`.
pub fn buckets(from: DateTime<Utc>, to: DateTime<Utc>, size: BucketSize, zone: Tz) -> Result<Vec<Bucket>, Invalid> {
    for (field, at) in [("from", from), ("to", to)] {
        if !YEARS.contains(&at.year()) {
            return Err(Invalid::new(field, format!("must be between the years {} and {}", YEARS.start(), YEARS.end())));
        }
    }
    if from >= to {
        return Err(Invalid::new("from", "must be earlier than `to`"));
    }
    let out_of_range = || Invalid::new("to", "is too far in the future for the calendar");
    let local = from.with_timezone(&zone).date_naive();
    let mut day = match size {
        BucketSize::Day => local,
        BucketSize::Week => {
            local.checked_sub_days(Days::new(u64::from(local.weekday().num_days_from_monday()))).ok_or_else(out_of_range)?
        }
        BucketSize::Month => local.with_day(1).ok_or_else(out_of_range)?,
    };
    let mut out = Vec::new();
    while midnight(day, zone).ok_or_else(out_of_range)? < to {
        let next = match size {
            BucketSize::Day => day.checked_add_days(Days::new(1)),
            BucketSize::Week => day.checked_add_days(Days::new(7)),
            BucketSize::Month => day.checked_add_months(Months::new(1)),
        }
        .ok_or_else(out_of_range)?;
        let (start, end) = (midnight(day, zone).ok_or_else(out_of_range)?, midnight(next, zone).ok_or_else(out_of_range)?);
        out.push(Bucket { start, end, label: day.to_string() });
        if out.len() > MAX_BUCKETS {
            return Err(Invalid::new(
                "bucket",
                format!("the range needs more than {MAX_BUCKETS} buckets; use a larger bucket or a shorter range"),
            ));
        }
        day = next;
    }
    Ok(out)
}

/// The first instant of a local day: midnight, or the end of a gap in local time (daylight
/// saving; a whole skipped day, as in Pacific/Apia on 2011-12-30, starts when the next one does).
fn midnight(day: NaiveDate, zone: Tz) -> Option<DateTime<Utc>> {
    let start = day.and_hms_opt(0, 0, 0)?;
    (0..=48)
        .find_map(|hour| zone.from_local_datetime(&start.checked_add_signed(chrono::TimeDelta::hours(hour))?).earliest())
        .map(|t| t.with_timezone(&Utc))
}

/// Agent response times, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ResponseTime {
    pub average_ms: Option<f64>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

/// Figures over a set of calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CallFigures {
    pub calls: i64,
    pub total_duration_secs: i64,
    pub average_duration_secs: Option<f64>,
    /// The caller's last words to the agent's first token.
    pub response_time: ResponseTime,
    /// Media Streams calls: the caller's last word to the first sound of the answer.
    pub voice_to_voice: ResponseTime,
    /// Resolved calls over classified calls; `null` when none is classified.
    pub resolution_rate: Option<f64>,
    /// Calls the AI classification covers.
    pub classified_calls: i64,
    pub average_satisfaction: Option<f64>,
    pub cost: CostFigures,
}

/// What a set of calls cost, in the organisation's currency (provisional costs included).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CostFigures {
    pub total: Money,
    /// Over the calls with a cost.
    pub average_per_call: Option<Money>,
    /// The total over the calls classified as resolved: what each resolution cost.
    pub per_resolved_call: Option<Money>,
}

/// One step of the volume series.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    /// The bucket's local first day (`YYYY-MM-DD`).
    pub bucket: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub calls: i64,
    pub total_duration_secs: i64,
    pub average_duration_secs: Option<f64>,
    pub cost: Money,
}

/// One phone number's row of the per-number table.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NumberFigures {
    pub phone_number_id: PhoneNumberId,
    /// The number (E.164; `null` once removed).
    pub number: Option<String>,
    pub calls: i64,
    pub cost: CostFigures,
}

/// One agent's row of the per-agent table.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentFigures {
    pub agent_id: AgentId,
    /// The agent's current name (`null` once deleted).
    pub name: Option<String>,
    #[serde(flatten)]
    pub figures: CallFigures,
}

/// An app's analytics over a time range.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: BucketSize,
    pub time_zone: String,
    pub totals: CallFigures,
    /// Classified calls per sentiment (`positive`, `neutral`, `negative`).
    pub sentiment: BTreeMap<String, i64>,
    /// Calls per ended reason (`unknown` for calls without one).
    pub ended_reasons: BTreeMap<String, i64>,
    pub series: Vec<SeriesPoint>,
    pub agents: Vec<AgentFigures>,
    pub numbers: Vec<NumberFigures>,
    /// The currency of every cost.
    pub currency: Currency,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn days_follow_local_midnight_across_daylight_saving() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let days = buckets(at("2026-11-01T04:00:00Z"), at("2026-11-03T05:00:00Z"), BucketSize::Day, zone).unwrap();
        let labels: Vec<&str> = days.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["2026-11-01", "2026-11-02"]);
        assert_eq!(days[0].start, at("2026-11-01T04:00:00Z"));
        assert_eq!((days[0].end - days[0].start).num_hours(), 25, "clocks went back that night");
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let utc: Tz = "UTC".parse().unwrap();
        let weeks = buckets(at("2026-11-25T10:00:00Z"), at("2026-12-01T00:00:00Z"), BucketSize::Week, utc).unwrap();
        assert_eq!(weeks.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(), ["2026-11-23", "2026-11-30"]);
        let months = buckets(at("2026-01-15T00:00:00Z"), at("2026-03-01T00:00:00Z"), BucketSize::Month, utc).unwrap();
        assert_eq!(months.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(), ["2026-01-01", "2026-02-01"]);
        assert!(buckets(at("2020-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z"), BucketSize::Day, utc).is_err());
    }

    #[test]
    fn skipped_days_and_far_dates_never_panic() {
        for zone in ["Pacific/Apia", "Pacific/Fakaofo", "Pacific/Kwajalein", "Asia/Manila"] {
            let zone: Tz = zone.parse().unwrap();
            for start in ["2011-12-29T00:00:00Z", "1993-08-19T00:00:00Z", "1971-01-01T00:00:00Z"] {
                let from = at(start);
                let days = buckets(from, from + chrono::TimeDelta::days(5), BucketSize::Day, zone).unwrap();
                assert!(days.windows(2).all(|w| w[0].end == w[1].start), "contiguous in {zone}: {days:?}");
            }
        }
        let apia: Tz = "Pacific/Apia".parse().unwrap();
        let days = buckets(at("2011-12-29T00:00:00Z"), at("2012-01-02T00:00:00Z"), BucketSize::Day, apia).unwrap();
        let skipped = days.iter().find(|b| b.label == "2011-12-30").expect("the skipped day still has a bucket");
        assert_eq!(skipped.start, skipped.end, "and it is empty");
        let utc: Tz = "UTC".parse().unwrap();
        let far = DateTime::<Utc>::MAX_UTC;
        assert_eq!(buckets(at("2026-01-01T00:00:00Z"), far, BucketSize::Month, utc).unwrap_err().field, "to");
        assert_eq!(buckets(DateTime::<Utc>::MIN_UTC, at("2026-01-01T00:00:00Z"), BucketSize::Day, utc).unwrap_err().field, "from");
        assert_eq!(buckets(at("9999-12-01T00:00:00Z"), at("9999-12-31T23:00:00Z"), BucketSize::Month, utc).unwrap().len(), 1);
    }
}
