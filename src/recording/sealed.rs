//! The sealed form of a recording: the audio encrypted under the recording's own key in chunks,
//! so a range of it (an audio player seeking) is read and opened without the rest.
//!
//! Layout: a 40-byte header — `SBREC\0\0\x01`, the chunk size (u32 LE), 4 zero bytes, the
//! audio's length (u64 LE), a random 16-byte nonce prefix — then the chunks, each
//! XChaCha20-Poly1305 over `CHUNK` bytes of audio (the last one shorter) with its 16-byte tag.
//! A chunk's nonce is the prefix and its index, and its associated data the whole header, so
//! chunks cannot be reordered, swapped between recordings, or cut off without failing to open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const MAGIC: &[u8; 8] = b"SBREC\0\0\x01";
/// Audio bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
pub const HEADER: usize = 40;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SealError {
    #[error("the stored recording is not in the sealed format")]
    NotSealed,
    #[error("the stored recording does not open with its key: altered, cut short, or another recording's")]
    Open,
}

/// A recording's own key.
pub type RecordingKey = [u8; 32];

/// A new random key.
pub fn new_key() -> RecordingKey {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).expect("the operating system provides randomness");
    key
}

/// The sealed form of `audio`.
pub fn seal(key: &RecordingKey, audio: &[u8]) -> Vec<u8> {
    let mut prefix = [0u8; 16];
    getrandom::getrandom(&mut prefix).expect("the operating system provides randomness");
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&(CHUNK as u32).to_le_bytes());
    header[16..24].copy_from_slice(&(audio.len() as u64).to_le_bytes());
    header[24..].copy_from_slice(&prefix);
    let aead = XChaCha20Poly1305::new(key.into());
    let mut out = Vec::with_capacity(HEADER + audio.len() + audio.len().div_ceil(CHUNK) * TAG);
    out.extend_from_slice(&header);
    for (index, chunk) in audio.chunks(CHUNK).enumerate() {
        let sealed =
            aead.encrypt(&nonce(&header, index as u64), Payload { msg: chunk, aad: &header }).expect("sealing in memory cannot fail");
        out.extend_from_slice(&sealed);
    }
    out
}

/// A sealed recording's header, read.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    bytes: [u8; HEADER],
    /// The audio's length.
    pub audio_len: u64,
}

impl Header {
    pub fn parse(bytes: &[u8]) -> Result<Self, SealError> {
        let bytes: [u8; HEADER] = bytes.get(..HEADER).and_then(|b| b.try_into().ok()).ok_or(SealError::NotSealed)?;
        let chunk = u32::from_le_bytes(bytes[8..12].try_into().expect("four bytes"));
        if &bytes[..8] != MAGIC || chunk as usize != CHUNK {
            return Err(SealError::NotSealed);
        }
        Ok(Self { audio_len: u64::from_le_bytes(bytes[16..24].try_into().expect("eight bytes")), bytes })
    }

    /// The chunks holding audio bytes `start..end`, and where they are in the sealed form
    /// (offset, length).
    pub fn chunks_for(&self, start: u64, end: u64) -> (std::ops::Range<u64>, u64, usize) {
        let end = end.min(self.audio_len);
        let chunks = start / CHUNK as u64..end.div_ceil(CHUNK as u64);
        let offset = HEADER as u64 + chunks.start * (CHUNK + TAG) as u64;
        let last_end = (chunks.end * CHUNK as u64).min(self.audio_len);
        let sealed_len = (last_end - chunks.start * CHUNK as u64) as usize + (chunks.end - chunks.start) as usize * TAG;
        (chunks, offset, sealed_len)
    }

    /// Opens consecutive sealed chunks starting at chunk `first`.
    pub fn open_chunks(&self, key: &RecordingKey, first: u64, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let aead = XChaCha20Poly1305::new(key.into());
        let mut audio = Vec::with_capacity(sealed.len());
        for (i, chunk) in sealed.chunks(CHUNK + TAG).enumerate() {
            let index = first + i as u64;
            let expected = (self.audio_len - (index * CHUNK as u64).min(self.audio_len)).min(CHUNK as u64) as usize + TAG;
            if chunk.len() != expected {
                return Err(SealError::Open);
            }
            let opened = aead.decrypt(&nonce(&self.bytes, index), Payload { msg: chunk, aad: &self.bytes }).map_err(|_| SealError::Open)?;
            audio.extend_from_slice(&opened);
        }
        Ok(audio)
    }

    /// Audio bytes `start..end` (within the audio) out of chunks opened from chunk `first`.
    pub fn cut<'a>(&self, opened: &'a [u8], first: u64, start: u64, end: u64) -> &'a [u8] {
        let skip = (start - first * CHUNK as u64) as usize;
        &opened[skip..skip + (end.min(self.audio_len) - start) as usize]
    }
}

fn nonce(header: &[u8; HEADER], index: u64) -> XNonce {
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(&header[24..]);
    nonce[16..].copy_from_slice(&index.to_le_bytes());
    nonce.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audio bytes `start..end` of a sealed recording, opened.
    fn open_range(key: &RecordingKey, sealed: &[u8], start: u64, end: u64) -> Result<Vec<u8>, SealError> {
        let header = Header::parse(sealed)?;
        let (chunks, offset, len) = header.chunks_for(start, end);
        let window = sealed.get(offset as usize..offset as usize + len).ok_or(SealError::Open)?;
        let audio = header.open_chunks(key, chunks.start, window)?;
        Ok(header.cut(&audio, chunks.start, start, end).to_vec())
    }

    #[test]
    fn any_range_opens_to_the_same_bytes_and_nothing_else_opens() {
        let audio: Vec<u8> = (0..CHUNK * 2 + 1000).map(|i| (i * 7 % 251) as u8).collect();
        let key = new_key();
        let sealed = seal(&key, &audio);
        assert_eq!(sealed.len(), HEADER + audio.len() + 3 * TAG);
        assert!(!sealed.windows(64).any(|w| audio.windows(64).take(10).any(|a| a == w)), "no plain audio in the sealed form");
        for (start, end) in
            [(0, 10), (CHUNK as u64 - 5, CHUNK as u64 + 5), (0, audio.len() as u64), (CHUNK as u64 * 2 + 999, audio.len() as u64)]
        {
            assert_eq!(open_range(&key, &sealed, start, end).unwrap(), &audio[start as usize..end as usize], "{start}..{end}");
        }
        assert_eq!(open_range(&new_key(), &sealed, 0, 10), Err(SealError::Open), "another key");
        let mut altered = sealed.clone();
        altered[HEADER + 5] ^= 1;
        assert_eq!(open_range(&key, &altered, 0, 10), Err(SealError::Open), "an altered byte");
        let mut shortened = sealed.clone();
        shortened[16] -= 1; // the header claims one byte less
        assert_eq!(open_range(&key, &shortened, 0, 10), Err(SealError::Open), "a header that lies about the length");
        assert_eq!(Header::parse(b"RIFF....WAVEfmt ......................."), Err(SealError::NotSealed));
    }

    #[test]
    fn empty_audio_seals_to_a_header() {
        let key = new_key();
        let sealed = seal(&key, &[]);
        assert_eq!(sealed.len(), HEADER);
        assert_eq!(Header::parse(&sealed).unwrap().audio_len, 0);
    }
}
