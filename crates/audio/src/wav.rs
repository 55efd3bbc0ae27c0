//! WAV files of 16-bit mono PCM: written for transcription requests and recordings, read from
//! speech servers (as they stream) and from files a caller plays.

use super::Audio;

/// A WAV header is this long when its `data` chunk follows `fmt ` directly.
pub const WAV_HEADER: usize = 44;

/// The sample rate of a 16-bit mono PCM WAV and where its samples start; `None` until the
/// header has arrived.
pub fn format(bytes: &[u8]) -> Result<Option<(u32, usize)>, String> {
    let unreadable = |why: &str| format!("the WAV audio {why}");
    if bytes.len() < 12 {
        return Ok(None);
    }
    if &bytes[8..12] != b"WAVE" {
        return Err(unreadable("is not WAVE"));
    }
    let (mut at, mut rate) = (12, None);
    while bytes.len() >= at + 8 {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("four bytes")) as usize;
        match &bytes[at..at + 4] {
            b"fmt " => {
                if bytes.len() < at + 8 + 16 {
                    return Ok(None);
                }
                let format = &bytes[at + 8..at + 8 + 16];
                let (encoding, channels, bits) = (
                    u16::from_le_bytes([format[0], format[1]]),
                    u16::from_le_bytes([format[2], format[3]]),
                    u16::from_le_bytes([format[14], format[15]]),
                );
                if (encoding, channels, bits) != (1, 1, 16) {
                    return Err(unreadable("is not 16-bit mono PCM"));
                }
                rate = Some(u32::from_le_bytes(format[4..8].try_into().expect("four bytes")));
            }
            b"data" => return Ok(Some((rate.ok_or_else(|| unreadable("has data before its format"))?, at + 8))),
            _ => {}
        }
        at += 8 + size + size % 2;
    }
    Ok(None)
}

/// A WAV file of `audio` (16-bit mono PCM).
pub fn encode(audio: &Audio) -> Vec<u8> {
    let data = (audio.samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(WAV_HEADER + data as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&audio.rate.to_le_bytes());
    out.extend_from_slice(&(audio.rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    out.extend(audio.samples.iter().flat_map(|s| s.to_le_bytes()));
    out
}

/// The audio of a whole WAV file.
pub fn decode(bytes: &[u8]) -> Result<Audio, String> {
    let (rate, start) = format(bytes)?.ok_or("the WAV file ends before its audio starts")?;
    let samples = bytes[start..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    Ok(Audio { rate, samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_files_read_back_and_odd_ones_are_refused() {
        let audio = Audio { rate: 16_000, samples: vec![0, 1, -1, i16::MAX, i16::MIN] };
        let file = encode(&audio);
        assert_eq!(format(&file), Ok(Some((16_000, WAV_HEADER))));
        assert_eq!(decode(&file), Ok(audio));
        let mut stereo = file.clone();
        stereo[22] = 2; // channels
        assert!(matches!(format(&stereo), Err(why) if why.contains("16-bit mono")));
        assert_eq!(format(&file[..30]), Ok(None), "a header still arriving");
        assert!(decode(&file[..30]).is_err());
    }
}
