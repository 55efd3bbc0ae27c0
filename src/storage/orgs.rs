//! Organisations.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Change};
use super::{Db, Result, StorageError, Tx, on_pool, on_tx};
use crate::domain::audit::Actor;
use crate::domain::ids::OrgId;
use crate::domain::org::Organization;
use crate::domain::time;

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
}

impl From<OrgRow> for Organization {
    fn from(r: OrgRow) -> Self {
        Organization { id: OrgId(r.id), name: r.name, created_at: r.created_at }
    }
}

/// Creates an organisation (its name already validated).
pub async fn create(db: &Db, name: &str, actor: Actor) -> Result<Organization> {
    let mut tx = db.begin().await?;
    let org = insert(&mut tx, name, actor).await?;
    tx.commit().await?;
    Ok(org)
}

pub(crate) async fn insert(tx: &mut Tx, name: &str, actor: Actor) -> Result<Organization> {
    let org = Organization { id: OrgId::generate(), name: name.to_owned(), created_at: time::now() };
    on_tx!(tx, |conn| {
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(org.id.0)
            .bind(&org.name)
            .bind(org.created_at)
            .execute(conn)
            .await
            .map(|_| ())
    })?;
    let change = Change::new(actor, "organization.created", org.id, json!({ "name": org.name }));
    audit::record(tx, org.id, change).await?;
    Ok(org)
}

pub async fn get(db: &Db, id: OrgId) -> Result<Organization> {
    let row: Option<OrgRow> = on_pool!(db, |pool| {
        sqlx::query_as("SELECT id, name, created_at FROM organizations WHERE id = $1").bind(id.0).fetch_optional(pool).await
    })?;
    row.map(Organization::from).ok_or(StorageError::NotFound)
}

/// How many organisations exist: zero means a first start.
pub async fn count(db: &Db) -> Result<i64> {
    Ok(on_pool!(db, |pool| { sqlx::query_scalar("SELECT COUNT(*) FROM organizations").fetch_one(pool).await })?)
}

/// What a first start creates: an organisation, its owner and an admin API token.
pub struct Bootstrap {
    pub org: Organization,
    pub owner: crate::domain::org::User,
    pub token: zeroize::Zeroizing<String>,
}

/// Creates the first organisation with an owner and an API token, all or nothing, unless an
/// organisation exists: of several nodes starting at once on an empty database, one creates it
/// and the others get `None`.
pub async fn bootstrap(
    db: &Db,
    org_name: &str,
    owner_email: &crate::domain::org::Email,
    owner_password: &str,
) -> Result<Option<Bootstrap>> {
    let mut tx = db.begin().await?;
    tx.lock_table("organizations").await?;
    let existing: i64 = on_tx!(&mut tx, |conn| sqlx::query_scalar("SELECT COUNT(*) FROM organizations").fetch_one(conn).await)?;
    if existing > 0 {
        return Ok(None);
    }
    let org = insert(&mut tx, org_name, Actor::System).await?;
    let owner = super::users::insert(
        &mut tx,
        org.id,
        owner_email,
        &super::users::hash_password(owner_password),
        crate::domain::org::Role::Owner,
        Actor::System,
    )
    .await?;
    let (_, token) = super::tokens::insert(&mut tx, org.id, "admin", crate::domain::org::Role::Admin, Actor::System).await?;
    tx.commit().await?;
    Ok(Some(Bootstrap { org, owner, token }))
}
