//! Apps: the containers that hold agents and phone numbers.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::{AppId, OrgId};
use super::validation::{Invalid, bounded_text, required_text};

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct App {
    pub id: AppId,
    #[serde(skip)]
    pub org_id: OrgId,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The editable part of an app, validated.
#[derive(Clone, Debug)]
pub struct AppSpec {
    pub name: String,
    pub description: String,
}

impl AppSpec {
    pub fn new(name: &str, description: &str) -> Result<Self, Invalid> {
        Ok(Self { name: required_text("name", name, 100)?, description: bounded_text("description", description, 2000)? })
    }
}
