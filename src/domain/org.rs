//! Organisations (tenants), their people and their roles.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::{OrgId, UserId};
use super::text_enum;
use super::validation::{Invalid, required_text};

text_enum!(
    /// What a member may do in an organisation.
    Role { Owner => "owner", Admin => "admin", Member => "member" }
);

/// A tenant. Every tenant-owned row carries its id.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// How long an organisation keeps call data; `None` keeps it forever.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Days to keep transcripts (the turns and the events that copy them).
    pub transcript_days: Option<i64>,
    /// Days to keep call records (with everything attached to them).
    pub record_days: Option<i64>,
    /// Days to keep call recordings (never longer than their records).
    #[serde(default)]
    pub recording_days: Option<i64>,
}

impl RetentionPolicy {
    /// Every period lies between 1 day and 100 years, and transcripts go no later than records.
    pub fn validate(self) -> Result<Self, Invalid> {
        for (field, days) in
            [("transcript_days", self.transcript_days), ("record_days", self.record_days), ("recording_days", self.recording_days)]
        {
            if let Some(days) = days {
                super::validation::in_range(field, days, 1, 36_500, "days")?;
            }
        }
        if let (Some(transcripts), Some(records)) = (self.transcript_days, self.record_days)
            && transcripts > records
        {
            return Err(Invalid::new("transcript_days", "cannot be longer than record_days: a transcript goes with its record"));
        }
        if let (Some(recordings), Some(records)) = (self.recording_days, self.record_days)
            && recordings > records
        {
            return Err(Invalid::new("recording_days", "cannot be longer than record_days: a recording goes with its record"));
        }
        Ok(self)
    }
}

/// A person who belongs to an organisation.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// A validated organisation name.
pub fn org_name(value: &str) -> Result<String, Invalid> {
    required_text("name", value, 100)
}

/// An e-mail address, lower-cased, with one `@` and a dotted domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = "email")]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let value = value.trim().to_lowercase();
        let valid = value.len() <= 254
            && !value.chars().any(char::is_whitespace)
            && matches!(value.split_once('@'), Some((local, domain))
                if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                    && !domain.starts_with('.') && !domain.ends_with('.'));
        if valid {
            Ok(Self(value))
        } else {
            Err(Invalid::new("email", format!("`{value}` is not an e-mail address like name@example.com")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse(" Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@example.com", "ann@example", "a b@example.com", "a@b@c.com"] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn roles_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), *role);
        }
        assert!("root".parse::<Role>().unwrap_err().contains("owner, admin, member"));
    }
}

/// An API token as shown: never the token itself, which is shown once at creation.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: super::ids::TokenId,
    pub name: String,
    /// `admin` tokens change things; `member` tokens only read.
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A signed-in browser of a user, as the sessions page lists it.
#[derive(Clone, Debug)]
pub struct ConsoleSession {
    pub id: super::ids::ConsoleSessionId,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: String,
    pub ip: String,
}

/// A password a user chooses: 12 to 200 characters.
pub fn new_password(field: &'static str, value: &str) -> Result<String, Invalid> {
    let length = value.chars().count();
    if length < 12 {
        Err(Invalid::new(field, "must be at least 12 characters long"))
    } else if length > 200 {
        Err(Invalid::new(field, "must be at most 200 characters long"))
    } else {
        Ok(value.to_owned())
    }
}

impl Role {
    /// Whether this role may change things (members only read).
    pub fn can_change(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// A validated role for an API token: `admin` or `member` (owners are people).
pub fn token_role(value: Role) -> Result<Role, Invalid> {
    match value {
        Role::Owner => Err(Invalid::new("role", "an API token can be `admin` or `member`; `owner` is for people")),
        role => Ok(role),
    }
}

/// A validated token name.
pub fn token_name(value: &str) -> Result<String, Invalid> {
    required_text("name", value, 100)
}
