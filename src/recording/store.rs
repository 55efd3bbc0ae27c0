//! Where sealed recordings are kept: a folder on the local disk (the default, under
//! `data_dir/recordings`), or an S3-compatible bucket that several nodes share (requests signed
//! with AWS Signature V4 by `rusty-s3`, sent with our HTTP client). Objects are written whole,
//! read by byte range, and deleted; deleting one already gone is fine.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusty_s3::actions::{DeleteObject, GetObject, PutObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// How long a signed request stays valid: it is sent at once.
const SIGNED_FOR: Duration = Duration::from_secs(300);
/// A whole recording's upload may take a while on a slow link.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A recording store.
pub enum RecordingStore {
    Local { dir: PathBuf },
    Bucket { bucket: Bucket, credentials: Credentials, http: reqwest::Client },
}

/// How to reach an S3-compatible bucket.
pub struct BucketAccess<'a> {
    /// The bucket's path-style URL: the endpoint, then the bucket's name.
    pub url: url::Url,
    pub region: String,
    pub key_id: &'a str,
    pub secret: &'a str,
}

impl RecordingStore {
    pub fn local(dir: impl Into<PathBuf>) -> Self {
        Self::Local { dir: dir.into() }
    }

    pub fn bucket(access: BucketAccess<'_>) -> anyhow::Result<Self> {
        let mut endpoint = access.url.clone();
        let name = endpoint
            .path_segments()
            .and_then(|mut segments| segments.find(|s| !s.is_empty()).map(str::to_owned))
            .ok_or_else(|| anyhow::anyhow!("recordings_s3_url must end with the bucket's name, e.g. https://s3.example.com/recordings"))?;
        endpoint.set_path("");
        let bucket = Bucket::new(endpoint, UrlStyle::Path, name, access.region)
            .map_err(|e| anyhow::anyhow!("recordings_s3_url is not a usable bucket URL: {e}"))?;
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(Duration::from_secs(5)).build()?;
        Ok(Self::Bucket { bucket, credentials: Credentials::new(access.key_id, access.secret), http })
    }

    /// Where the store is, for logs and `doctor`.
    pub fn describe(&self) -> String {
        match self {
            Self::Local { dir } => format!("the folder {}", dir.display()),
            Self::Bucket { bucket, .. } => format!("the bucket {}", bucket.base_url()),
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
            Self::Bucket { bucket, credentials, http } => {
                let url = PutObject::new(bucket, Some(credentials), key).sign(SIGNED_FOR);
                answered(http.put(url).body(bytes).send().await, key).await.map(|_| ())
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
            Self::Bucket { bucket, credentials, http } => {
                let url = GetObject::new(bucket, Some(credentials), key).sign(SIGNED_FOR);
                let range = format!("bytes={offset}-{}", offset + len.max(1) as u64 - 1);
                let response = answered(http.get(url).header(reqwest::header::RANGE, range).send().await, key).await?;
                let body = response.bytes().await.map_err(std::io::Error::other)?;
                Ok(body.slice(..len.min(body.len())).to_vec())
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
            // S3 answers 204 whether or not the object was there.
            Self::Bucket { bucket, credentials, http } => {
                let url = DeleteObject::new(bucket, Some(credentials), key).sign(SIGNED_FOR);
                answered(http.delete(url).send().await, key).await.map(|_| ())
            }
        }
    }
}

/// A bucket's answer, or what went wrong as an I/O error (a missing object as `NotFound`).
async fn answered(sent: reqwest::Result<reqwest::Response>, key: &str) -> std::io::Result<reqwest::Response> {
    let response = sent.map_err(|e| std::io::Error::other(format!("the recording bucket could not be reached: {}", e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let code = body.split("<Code>").nth(1).and_then(|rest| rest.split("</Code>").next()).unwrap_or("no error code").to_owned();
    let kind = if status == reqwest::StatusCode::NOT_FOUND { std::io::ErrorKind::NotFound } else { std::io::ErrorKind::Other };
    Err(std::io::Error::new(kind, format!("the recording bucket refused {key}: HTTP {} ({code})", status.as_u16())))
}
