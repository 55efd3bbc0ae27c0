//! The platform clock. Timestamps are UTC and truncated to microseconds, the precision PostgreSQL
//! keeps, so a value reads back identically from either database.

use chrono::{DateTime, SubsecRound, Utc};

/// Now, in UTC, at microsecond precision.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
