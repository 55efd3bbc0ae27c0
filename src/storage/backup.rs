//! Backups of a SQLite deployment, as one file: a tar archive of `manifest.json`, a consistent
//! copy of the live database (`VACUUM INTO`, which reads one snapshot while the server goes on
//! writing) and the master keys that open its credentials. The file is created 0600 and never
//! overwrites another. PostgreSQL deployments use the database's own tools (the README says how)
//! and keep the master key apart.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::{Db, Pool, secrets};

const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "switchboard.db";
const KEYS: &str = "master-keys.json";

/// What a backup says about itself.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The Switchboard version that wrote it.
    pub version: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub database_bytes: u64,
}

/// The master keys (base64): the current one, and any previous ones still in use. Wiped from
/// memory when dropped.
#[derive(Serialize, Deserialize)]
pub struct MasterKeys {
    pub current: String,
    pub previous: Vec<String>,
}

impl Drop for MasterKeys {
    fn drop(&mut self) {
        self.current.zeroize();
        self.previous.iter_mut().for_each(Zeroize::zeroize);
    }
}

/// Writes a backup of the live SQLite database `db` and `keys` to `to`.
pub async fn write(db: &Db, keys: &MasterKeys, to: &Path) -> anyhow::Result<Manifest> {
    let Pool::Sqlite(pool) = &*db.pool else {
        anyhow::bail!(
            "`switchboard backup` copies SQLite databases; back up PostgreSQL with pg_dump (see the README) and keep the master key apart"
        );
    };
    let folder = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new().prefix(".switchboard-backup").tempdir_in(folder).context("creating a staging folder")?;
    let copy = staging.path().join(DATABASE);
    sqlx::query("VACUUM INTO $1").bind(copy.to_string_lossy().as_ref()).execute(pool).await.context("copying the live database")?;
    let manifest = Manifest {
        format: FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at: crate::domain::time::now(),
        database_bytes: std::fs::metadata(&copy)?.len(),
    };
    let archive = staging.path().join("backup.tar");
    {
        let file = std::fs::File::create(&archive)?;
        let mut tar = tar::Builder::new(file);
        append_bytes(&mut tar, MANIFEST, &serde_json::to_vec_pretty(&manifest)?)?;
        append_bytes(&mut tar, KEYS, &Zeroizing::new(serde_json::to_vec(keys)?))?;
        let mut database = std::fs::File::open(&copy)?;
        let mut header = entry_header(manifest.database_bytes);
        tar.append_data(&mut header, DATABASE, &mut database)?;
        tar.into_inner()?.sync_all()?;
    }
    // Private from the start, and never over another file.
    let mut target = std::fs::OpenOptions::new();
    target.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut target, 0o600);
    let mut out = target.open(to).with_context(|| format!("creating {} (it must not exist yet)", to.display()))?;
    std::io::copy(&mut std::fs::File::open(&archive)?, &mut out)?;
    out.sync_all()?;
    Ok(manifest)
}

fn append_bytes(tar: &mut tar::Builder<std::fs::File>, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    tar.append_data(&mut entry_header(bytes.len() as u64), name, bytes)
}

/// A private file's header.
fn entry_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(crate::domain::time::now().timestamp().max(0) as u64);
    header.set_cksum();
    header
}

/// A backup read back: its manifest, its keys, and its database unpacked into a staging folder
/// beside the restore target (removed when this is dropped).
pub struct Unpacked {
    pub manifest: Manifest,
    pub keys: MasterKeys,
    pub database: PathBuf,
    _staging: tempfile::TempDir,
}

/// Reads the backup at `from`, unpacking its database next to `beside`.
pub fn unpack(from: &Path, beside: &Path) -> anyhow::Result<Unpacked> {
    let folder = beside.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    secrets::create_private_dir(folder)?;
    let staging = tempfile::Builder::new().prefix(".switchboard-restore").tempdir_in(folder)?;
    let file = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let (mut manifest, mut keys, mut database) = (None, None, None);
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().context("reading the backup (is it a Switchboard backup file?)")? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        match name.as_str() {
            MANIFEST => manifest = Some(serde_json::from_slice::<Manifest>(&read_all(&mut entry)?).context("reading the manifest")?),
            KEYS => keys = Some(serde_json::from_slice::<MasterKeys>(&read_all(&mut entry)?).context("reading the master keys")?),
            DATABASE => {
                let path = staging.path().join(DATABASE);
                entry.unpack(&path)?;
                #[cfg(unix)]
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                database = Some(path);
            }
            _ => {}
        }
    }
    let missing = |what: &str| anyhow::anyhow!("{} is not a complete Switchboard backup: it has no {what}", from.display());
    let manifest = manifest.ok_or_else(|| missing(MANIFEST))?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "{} is a backup of format {}, which this version (format {FORMAT}) does not read",
        from.display(),
        manifest.format
    );
    Ok(Unpacked {
        manifest,
        keys: keys.ok_or_else(|| missing(KEYS))?,
        database: database.ok_or_else(|| missing(DATABASE))?,
        _staging: staging,
    })
}

fn read_all(entry: &mut impl Read) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(Vec::new());
    entry.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The file of a `sqlite://` database URL; `None` for other databases.
pub fn sqlite_file(database_url: &str) -> anyhow::Result<Option<PathBuf>> {
    if !database_url.starts_with("sqlite:") {
        return Ok(None);
    }
    let options: sqlx::sqlite::SqliteConnectOptions = database_url.parse().context("parsing the SQLite database_url")?;
    Ok(Some(options.get_filename().to_owned()))
}
