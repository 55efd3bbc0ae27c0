//! Encryption of credentials at rest (DESIGN invariant 7) with XChaCha20-Poly1305 under the
//! 32-byte master key. Each ciphertext is bound to where it is stored (organisation, table, row,
//! column) through the associated data, so a ciphertext copied to another row does not decrypt.
//!
//! Stored layout: `0x01` (format version) ‖ 24-byte random nonce ‖ ciphertext with tag.
//!
//! Key rotation: a cipher encrypts under the current master key and decrypts under it or any
//! previous key (`previous_secret_keys`), so servers keep working while `secrets rotate`
//! re-encrypts stored values under the current key (`storage::rekey`).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("a stored secret could not be decrypted: wrong master key, or the value was moved or altered")]
    Decrypt,
}

/// Encrypts and decrypts secrets under the master key (and decrypts under previous keys).
pub struct Cipher {
    aead: XChaCha20Poly1305,
    previous: Vec<XChaCha20Poly1305>,
}

/// Which key opened a stored value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenedWith {
    Current,
    Previous,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(<master key redacted>)")
    }
}

/// Where a secret lives; it becomes the associated data of its ciphertext.
pub struct SecretSlot<'a> {
    pub org: uuid::Uuid,
    pub table: &'a str,
    pub row: uuid::Uuid,
    pub column: &'a str,
}

impl SecretSlot<'_> {
    fn associated_data(&self) -> Vec<u8> {
        format!("switchboard/v1/{}/{}/{}/{}", self.org, self.table, self.row, self.column).into_bytes()
    }
}

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Self { aead: XChaCha20Poly1305::new(key.into()), previous: Vec::new() }
    }

    /// Parses a base64 master key, which must decode to exactly 32 bytes.
    pub fn from_base64(key: &str) -> anyhow::Result<Self> {
        Ok(Self::new(&*decode_key("secret_key", key)?))
    }

    /// Also opens values sealed under these earlier master keys (base64), during a rotation.
    pub fn with_previous_keys(mut self, keys: &[String]) -> anyhow::Result<Self> {
        for (i, key) in keys.iter().enumerate() {
            let key = decode_key(&format!("previous_secret_keys[{i}]"), key)?;
            self.previous.push(XChaCha20Poly1305::new((&*key).into()));
        }
        Ok(self)
    }

    /// Reads the master key from `path`, creating it (mode 0600) with a fresh random key when the
    /// file does not exist yet.
    pub fn from_key_file(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text).with_context(|| format!("reading the key file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let encoded = generate_key()?;
                write_private_file(path, encoded.as_bytes())?;
                tracing::info!(path = %path.display(), "created a new master key file");
                Self::from_base64(&encoded)
            }
            Err(e) => Err(e).with_context(|| format!("reading the key file {}", path.display())),
        }
    }

    pub fn encrypt(&self, slot: &SecretSlot<'_>, plaintext: &str) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = slot.associated_data();
        let sealed = self
            .aead
            .encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: &aad })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, slot: &SecretSlot<'_>, stored: &[u8]) -> Result<Zeroizing<String>, CryptoError> {
        self.open(slot, stored).map(|(plain, _)| plain)
    }

    /// Decrypts and says whether the current key or a previous one opened the value.
    pub fn open(&self, slot: &SecretSlot<'_>, stored: &[u8]) -> Result<(Zeroizing<String>, OpenedWith), CryptoError> {
        if stored.len() < 1 + NONCE_LEN || stored[0] != FORMAT_V1 {
            return Err(CryptoError::Decrypt);
        }
        let nonce = XNonce::from_slice(&stored[1..1 + NONCE_LEN]);
        let aad = slot.associated_data();
        let payload = || Payload { msg: &stored[1 + NONCE_LEN..], aad: &aad };
        let (plain, opened_with) = match self.aead.decrypt(nonce, payload()) {
            Ok(plain) => (plain, OpenedWith::Current),
            Err(_) => {
                let plain = self.previous.iter().find_map(|key| key.decrypt(nonce, payload()).ok()).ok_or(CryptoError::Decrypt)?;
                (plain, OpenedWith::Previous)
            }
        };
        let plain = String::from_utf8(plain).map(Zeroizing::new).map_err(|_| CryptoError::Decrypt)?;
        Ok((plain, opened_with))
    }
}

/// A base64 master key, which must decode to exactly 32 bytes; `setting` names it in errors.
fn decode_key(setting: &str, key: &str) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(BASE64.decode(key.trim()).with_context(|| format!("{setting} is not valid base64"))?);
    let key: [u8; 32] =
        bytes.as_slice().try_into().map_err(|_| anyhow::anyhow!("{setting} must decode to 32 bytes, got {}", bytes.len()))?;
    Ok(Zeroizing::new(key))
}

/// A new random master key, base64.
pub fn generate_key() -> anyhow::Result<Zeroizing<String>> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(key.as_mut()).context("reading randomness for the master key")?;
    Ok(Zeroizing::new(BASE64.encode(key.as_slice())))
}

/// Creates a folder (and its missing parents) only its owner can enter (mode 0700).
pub fn create_private_dir(folder: &Path) -> anyhow::Result<()> {
    if folder.as_os_str().is_empty() || folder.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder).with_context(|| format!("creating {}", folder.display()))
}

/// Logs a warning when others than the owner may read `path` (a data folder or a database file).
pub fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "others than the owner may read this; `chmod go-rwx` it");
        }
    }
}

/// Writes a file only its owner can read (mode 0600), creating its folder; refuses to overwrite.
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if let Some(folder) = path.parent() {
        create_private_dir(folder)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(column: &str) -> SecretSlot<'_> {
        SecretSlot { org: uuid::Uuid::nil(), table: "phone_providers", row: uuid::Uuid::max(), column }
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let cipher = Cipher::new(&[7; 32]);
        let stored = cipher.encrypt(&slot("auth_token"), "s3cret-token");
        assert!(!stored.windows(12).any(|w| w == b"s3cret-token"));
        assert_eq!(cipher.decrypt(&slot("auth_token"), &stored).unwrap().as_str(), "s3cret-token");
    }

    #[test]
    fn a_moved_or_altered_ciphertext_does_not_decrypt() {
        let cipher = Cipher::new(&[7; 32]);
        let mut stored = cipher.encrypt(&slot("auth_token"), "s3cret");
        assert!(cipher.decrypt(&slot("api_key_secret"), &stored).is_err());
        assert!(Cipher::new(&[8; 32]).decrypt(&slot("auth_token"), &stored).is_err());
        let last = stored.len() - 1;
        stored[last] ^= 1;
        assert!(cipher.decrypt(&slot("auth_token"), &stored).is_err());
    }

    #[test]
    fn previous_keys_open_old_values_and_new_ones_use_the_current_key() {
        let old = generate_key().unwrap();
        let new = generate_key().unwrap();
        let sealed_before = Cipher::from_base64(&old).unwrap().encrypt(&slot("auth_token"), "s3cret");
        let rotating = Cipher::from_base64(&new).unwrap().with_previous_keys(&[old.to_string()]).unwrap();
        let (plain, with) = rotating.open(&slot("auth_token"), &sealed_before).unwrap();
        assert_eq!((plain.as_str(), with), ("s3cret", OpenedWith::Previous));
        let sealed_now = rotating.encrypt(&slot("auth_token"), "s3cret");
        assert_eq!(rotating.open(&slot("auth_token"), &sealed_now).unwrap().1, OpenedWith::Current);
        assert!(Cipher::from_base64(&old).unwrap().decrypt(&slot("auth_token"), &sealed_now).is_err());
        let err = Cipher::from_base64(&new).unwrap().with_previous_keys(&["c2hvcnQ=".into()]).unwrap_err().to_string();
        assert!(err.contains("previous_secret_keys[0]"), "{err}");
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let first = Cipher::from_key_file(&path).unwrap();
        let sealed = first.encrypt(&slot("c"), "x");
        let second = Cipher::from_key_file(&path).unwrap();
        assert_eq!(second.decrypt(&slot("c"), &sealed).unwrap().as_str(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn base64_keys_must_be_32_bytes() {
        assert!(Cipher::from_base64(&BASE64.encode([1u8; 32])).is_ok());
        assert!(Cipher::from_base64(&BASE64.encode([1u8; 16])).unwrap_err().to_string().contains("32 bytes"));
        assert!(Cipher::from_base64("%%%").is_err());
    }
}
