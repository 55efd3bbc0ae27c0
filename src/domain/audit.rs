//! The audit log: who changed what, when. Entries are written in the same transaction as the
//! change they describe, so the log never claims a change that did not happen.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::{AuditEntryId, OrgId, TokenId, UserId};

/// Who acted: an API token, a console user, or the system itself (CLI, background jobs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Token(TokenId),
    User(UserId),
    System,
}

impl Actor {
    /// The stored form: `token:<id>`, `user:<id>` or `system`.
    pub fn label(self) -> String {
        match self {
            Actor::Token(id) => format!("token:{id}"),
            Actor::User(id) => format!("user:{id}"),
            Actor::System => "system".to_owned(),
        }
    }
}

/// One recorded change.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: AuditEntryId,
    #[serde(skip)]
    pub org_id: OrgId,
    /// `token:<id>`, `user:<id>` or `system`.
    pub actor: String,
    /// What happened, e.g. `agent.updated`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    /// Non-secret details of the change.
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}
