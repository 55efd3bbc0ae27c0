//! The only place with SQL (DESIGN invariant 2). One [`Db`] handle serves SQLite (the embedded
//! default) or PostgreSQL (a `postgres://` URL); the backend is chosen once at start-up and every
//! query is written once, with `$1` placeholders both dialects accept. The same schema lives in
//! `migrations/sqlite` and `migrations/postgres`, each in its own dialect's DDL.
//!
//! Mapping: ids are UUIDs (BLOB on SQLite, `uuid` on Postgres), times are UTC (`TEXT` RFC 3339 on
//! SQLite, `timestamptz` on Postgres), lists and snapshots are JSON. Every tenant-owned query
//! filters by organisation (invariant 8). Changes and their audit entries commit together.

pub mod agents;
pub mod analytics;
pub mod apps;
pub mod audit;
pub mod automations;
pub mod backup;
pub mod calls;
pub mod console_sessions;
pub mod costs;
pub mod events;
pub mod llm_providers;
pub mod orgs;
pub mod phone_numbers;
pub mod phone_providers;
pub mod recordings;
pub mod rekey;
pub mod retention;
pub mod secrets;
pub mod speech_providers;
pub mod tickets;
pub mod tokens;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use uuid::Uuid;

use self::secrets::Cipher;

/// Runs `$body` with `$conn` bound to the concrete pool of either backend.
macro_rules! on_pool {
    ($db:expr, |$conn:ident| $body:expr) => {
        match &*$db.pool {
            $crate::storage::Pool::Sqlite($conn) => $body,
            $crate::storage::Pool::Postgres($conn) => $body,
        }
    };
}

/// Runs `$body` with `$conn` bound to the open transaction's connection of either backend.
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::storage::Tx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::storage::Tx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}
pub(crate) use {on_pool, on_tx};

/// Failures of storage calls, in domain terms.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or reference rule of the schema refused the change.
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Crypto(#[from] secrets::CryptoError),
    /// A referenced resource does not exist in the organisation.
    #[error(transparent)]
    Invalid(#[from] crate::domain::validation::Invalid),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// Maps a unique-constraint violation to `Conflict(message)`, anything else unchanged.
    pub(crate) fn conflict_on_unique(err: sqlx::Error, message: &str) -> Self {
        match err.as_database_error() {
            Some(db) if db.is_unique_violation() => StorageError::Conflict(message.to_owned()),
            _ => StorageError::Database(err),
        }
    }
}

/// Turns a stored text value back into a domain enum, or reports the row as corrupt.
pub(crate) fn parse_stored<T: FromStr<Err = String>>(column: &str, value: &str) -> Result<T> {
    value.parse().map_err(|e| StorageError::Corrupt(format!("{column}: {e}")))
}

pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// An open transaction on either backend. Dropping it without `commit` rolls back.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    /// What to append to a `SELECT` that reads rows this transaction will update: PostgreSQL
    /// locks them; SQLite already holds the database's write lock.
    pub(crate) fn row_lock(&self) -> &'static str {
        match self {
            Tx::Sqlite(_) => "",
            Tx::Postgres(_) => " FOR UPDATE",
        }
    }

    /// Holds `table` against concurrent writers of other transactions until this one ends, so a
    /// read-then-insert decision stays true (SQLite transactions already hold the write lock).
    pub(crate) async fn lock_table(&mut self, table: &'static str) -> Result<()> {
        if let Tx::Postgres(tx) = self {
            let sql = format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE");
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **tx).await?;
        }
        Ok(())
    }

    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Which database engine a [`Db`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database handle: a pool on one backend, the cipher for secrets at rest, and a signal
/// raised when this process commits an outbox event (so the automations worker need not wait
/// for its next poll; events from other nodes are found by polling).
#[derive(Clone)]
pub struct Db {
    pool: Arc<Pool>,
    cipher: Arc<Cipher>,
    outbox: Arc<tokio::sync::Notify>,
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://…`). A SQLite file and its folder are
    /// created when missing; SQLite runs in WAL mode with foreign keys on.
    pub async fn connect(url: &str, cipher: Cipher) -> anyhow::Result<Self> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // No statement may hold a connection (and its locks) for long: a stuck query fails
            // after 30 s instead of piling up requests behind it.
            let options = sqlx::postgres::PgConnectOptions::from_str(url)
                .context("parsing the PostgreSQL database_url")?
                .options([("statement_timeout", "30s")]);
            let pool = PgPoolOptions::new()
                .max_connections(20)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .context("connecting to PostgreSQL")?;
            Pool::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("parsing the SQLite database_url")?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            // The database, its WAL and shared-memory files (SQLite gives them the database's
            // mode) are the owner's only: created 0600 in a 0700 folder, and a warning if not.
            let file = Path::new(options.get_filename()).to_owned();
            if let Some(folder) = file.parent() {
                secrets::create_private_dir(folder).context("creating the database folder")?;
            }
            if !file.exists() {
                let mut create = std::fs::OpenOptions::new();
                create.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
                if let Err(e) = create.open(&file)
                    && e.kind() != std::io::ErrorKind::AlreadyExists
                {
                    return Err(e).with_context(|| format!("creating {}", file.display()));
                }
            }
            if let Some(folder) = file.parent().filter(|f| !f.as_os_str().is_empty()) {
                secrets::warn_if_readable_by_others(folder);
            }
            secrets::warn_if_readable_by_others(&file);
            let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await.context("opening the SQLite database")?;
            Pool::Sqlite(pool)
        } else {
            anyhow::bail!("database_url must start with sqlite:// or postgres://");
        };
        Ok(Self { pool: Arc::new(pool), cipher: Arc::new(cipher), outbox: Arc::default() })
    }

    pub fn backend(&self) -> Backend {
        match *self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations of this backend's folder. Processes starting together take
    /// turns: PostgreSQL's migrator holds an advisory lock; on SQLite an exclusive lock on a
    /// file beside the database does the same.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &*self.pool {
            Pool::Sqlite(pool) => {
                let lock_path = format!("{}.migrate-lock", pool.connect_options().get_filename().display());
                let _lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
                    file.lock()?;
                    Ok(file)
                })
                .await?
                .context("locking the SQLite database for migrations")?;
                sqlx::migrate!("./migrations/sqlite").run(pool).await
            }
            Pool::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
        .context("applying database migrations")
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        on_pool!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }

    /// Resolves when an outbox event has been committed since the last wait.
    pub async fn outbox_written(&self) {
        self.outbox.notified().await
    }

    pub(crate) fn announce_outbox_event(&self) {
        self.outbox.notify_one();
    }

    pub(crate) fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// Opens a transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so a
    /// transaction that reads before it writes cannot fail midway on a lock upgrade.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        Ok(match &*self.pool {
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }
}

/// One page of a newest-first listing. `next_cursor` is the last item's id when more may follow.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Uuid>,
}

/// Where a listing starts and how much it returns.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    /// Return items strictly older than this id (ids are UUIDv7, so older = smaller).
    pub before: Option<Uuid>,
    pub limit: u32,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only signals "more".
    pub(crate) fn from_overfetch(mut items: Vec<T>, request: PageRequest, id_of: impl Fn(&T) -> Uuid) -> Self {
        let more = items.len() > request.limit as usize;
        items.truncate(request.limit as usize);
        let next_cursor = if more { items.last().map(id_of) } else { None };
        Self { items, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

impl PageRequest {
    /// The SQL `LIMIT`: one more than asked, to learn whether another page exists.
    pub(crate) fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

/// Deletes one tenant-owned row by id and records it in the audit log, in one transaction.
/// A row still referenced elsewhere is refused with `Conflict(in_use)`.
/// The sealed `api_key_enc` of a provider row of `table` (one of our own constants), opened.
async fn open_api_key(
    db: &Db,
    table: &'static str,
    org: crate::domain::ids::OrgId,
    id: Uuid,
) -> Result<Option<zeroize::Zeroizing<String>>> {
    let sql = format!("SELECT api_key_enc FROM {table} WHERE id = $1 AND org_id = $2");
    let sealed: Option<Option<Vec<u8>>> =
        on_pool!(db, |pool| { sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).bind(id).bind(org.0).fetch_optional(pool).await })?;
    let slot = secrets::SecretSlot { org: org.0, table, row: id, column: "api_key" };
    match sealed.ok_or(StorageError::NotFound)? {
        Some(sealed) => Ok(Some(db.cipher().decrypt(&slot, &sealed)?)),
        None => Ok(None),
    }
}

pub(crate) async fn delete_owned(
    db: &Db,
    org: crate::domain::ids::OrgId,
    table: &'static str,
    id: Uuid,
    in_use: &str,
    change: audit::Change<'_>,
) -> Result<()> {
    // `table` is one of our own constants, never input.
    let sql = format!("DELETE FROM {table} WHERE id = $1 AND org_id = $2");
    let mut tx = db.begin().await?;
    let deleted = on_tx!(&mut tx, |conn| {
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(id).bind(org.0).execute(conn).await.map(|r| r.rows_affected())
    })
    .map_err(|e| match e.as_database_error() {
        Some(db_err) if db_err.is_foreign_key_violation() => StorageError::Conflict(in_use.to_owned()),
        _ => StorageError::Database(e),
    })?;
    if deleted == 0 {
        return Err(StorageError::NotFound);
    }
    audit::record(&mut tx, org, change).await?;
    tx.commit().await
}
