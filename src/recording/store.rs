//! Where sealed recordings are kept: a folder on the local disk (the default, under
//! `data_dir/recordings`). Objects are written whole (to a temporary name, then renamed), read by
//! byte range, and deleted; a missing object reads as `NotFound` and deletes as done.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// A recording store.
#[derive(Debug)]
pub enum RecordingStore {
    Local { dir: PathBuf },
}

impl RecordingStore {
    pub fn local(dir: impl Into<PathBuf>) -> Self {
        Self::Local { dir: dir.into() }
    }

    /// Where the store is, for logs and `doctor`.
    pub fn describe(&self) -> String {
        match self {
            Self::Local { dir } => format!("the folder {}", dir.display()),
        }
    }

    fn path(dir: &Path, key: &str) -> PathBuf {
        // Keys are ours (`{org}/{recording}.sealed`), never input; no part climbs out.
        debug_assert!(key.split('/').all(|part| !part.is_empty() && part != ".." && part != "."));
        dir.join(key)
    }

    /// Stores `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> std::io::Result<()> {
        match self {
            Self::Local { dir } => {
                let path = Self::path(dir, key);
                if let Some(folder) = path.parent() {
                    tokio::fs::create_dir_all(folder).await?;
                }
                let partial = path.with_extension("partial");
                tokio::fs::write(&partial, bytes).await?;
                tokio::fs::rename(&partial, &path).await
            }
        }
    }

    /// `len` bytes of `key` from `offset` (fewer where the object ends).
    pub async fn read(&self, key: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Local { dir } => {
                let mut file = tokio::fs::File::open(Self::path(dir, key)).await?;
                file.seek(SeekFrom::Start(offset)).await?;
                let mut bytes = Vec::with_capacity(len);
                file.take(len as u64).read_to_end(&mut bytes).await?;
                Ok(bytes)
            }
        }
    }

    /// Deletes `key`; one already gone is fine.
    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        match self {
            Self::Local { dir } => match tokio::fs::remove_file(Self::path(dir, key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}
