//! Tickets: follow-up records an automation creates in an app (the `create_record` action),
//! linked to the call that caused them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::{AppId, CallId, OrgId, TicketId};
use super::text_enum;
use super::validation::{Invalid, bounded_text, required_text};

text_enum!(
    /// How urgent a ticket is.
    TicketPriority { Low => "low", Normal => "normal", High => "high", Urgent => "urgent" }
);

text_enum!(
    /// Where a ticket stands.
    TicketStatus { Open => "open", Pending => "pending", Resolved => "resolved", Closed => "closed" }
);

/// A stored ticket.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Ticket {
    pub id: TicketId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub app_id: AppId,
    pub call_id: Option<CallId>,
    pub title: String,
    pub description: String,
    pub priority: TicketPriority,
    pub status: TicketStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Longest title kept; templated titles are cut to it.
pub const TITLE_LIMIT: usize = 200;
/// Longest description kept; templated descriptions are cut to it.
pub const DESCRIPTION_LIMIT: usize = 100_000;

/// A rendered title and description made fit to store: trimmed, cut to their limits, and a
/// blank title replaced by a generic one.
pub fn fit_ticket_text(title: &str, description: &str) -> (String, String) {
    let title: String = title.trim().chars().take(TITLE_LIMIT).collect();
    let title = if title.is_empty() { "Follow up on a call".to_owned() } else { title };
    (title, description.chars().take(DESCRIPTION_LIMIT).collect())
}

/// Checks a title and description a person typed.
pub fn ticket_text(title: &str, description: &str) -> Result<(String, String), Invalid> {
    Ok((required_text("title", title, TITLE_LIMIT)?, bounded_text("description", description, DESCRIPTION_LIMIT)?))
}
