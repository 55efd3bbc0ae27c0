//! WAV files of 16-bit PCM: mono ones written for transcription requests and read from speech
//! servers (as they stream) and from files a caller plays; two-channel ones for call recordings.

use super::Audio;

/// A WAV header is this long when its `data` chunk follows `fmt ` directly.
pub const WAV_HEADER: usize = 44;

/// The sample rate of a 16-bit mono PCM WAV and where its samples start; `None` until the
/// header has arrived.
pub fn format(bytes: &[u8]) -> Result<Option<(u32, usize)>, String> {
    match layout(bytes)? {
        Some(Layout { channels: 1, rate, data_start, .. }) => Ok(Some((rate, data_start))),
        Some(_) => Err("the WAV audio is not 16-bit mono PCM".into()),
        None => Ok(None),
    }
}

/// What a 16-bit PCM WAV holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub rate: u32,
    pub channels: u16,
    /// Where the samples start.
    pub data_start: usize,
    /// The length of the audio (what the file holds of it, when its header says more).
    pub duration_ms: u64,
}

/// The layout of a 16-bit PCM WAV (any number of channels); `None` until the header has arrived.
pub fn layout(bytes: &[u8]) -> Result<Option<Layout>, String> {
    let unreadable = |why: &str| format!("the WAV audio {why}");
    if bytes.len() < 12 {
        return Ok(None);
    }
    if &bytes[8..12] != b"WAVE" {
        return Err(unreadable("is not WAVE"));
    }
    let (mut at, mut pcm) = (12, None);
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
                if (encoding, bits) != (1, 16) || channels == 0 {
                    return Err(unreadable("is not 16-bit PCM"));
                }
                pcm = Some((u32::from_le_bytes(format[4..8].try_into().expect("four bytes")), channels));
            }
            b"data" => {
                let (rate, channels) = pcm.ok_or_else(|| unreadable("has data before its format"))?;
                let held = size.min(bytes.len() - (at + 8)) as u64;
                let duration_ms = held * 1000 / (u64::from(rate.max(1)) * 2 * u64::from(channels));
                return Ok(Some(Layout { rate, channels, data_start: at + 8, duration_ms }));
            }
            _ => {}
        }
        at += 8 + size + size % 2;
    }
    Ok(None)
}

/// A WAV file of `audio` (16-bit mono PCM).
pub fn encode(audio: &Audio) -> Vec<u8> {
    encode_pcm(audio.rate, 1, &audio.samples)
}

/// A two-channel WAV file (16-bit PCM) of `left` and `right` at `rate`; the shorter channel is
/// padded with silence.
pub fn encode_two_channels(rate: u32, left: &[i16], right: &[i16]) -> Vec<u8> {
    let frames = left.len().max(right.len());
    let at = |channel: &[i16], i: usize| channel.get(i).copied().unwrap_or(0);
    let interleaved: Vec<i16> = (0..frames).flat_map(|i| [at(left, i), at(right, i)]).collect();
    encode_pcm(rate, 2, &interleaved)
}

/// A WAV file of interleaved 16-bit samples.
fn encode_pcm(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let block = 2 * channels;
    let mut out = Vec::with_capacity(WAV_HEADER + data as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    out.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
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
        let mut eight_bit = file.clone();
        eight_bit[34] = 8;
        assert!(layout(&eight_bit).is_err());
        assert_eq!(format(&file[..30]), Ok(None), "a header still arriving");
        assert!(decode(&file[..30]).is_err());
    }

    #[test]
    fn two_channel_files_interleave_and_pad_the_shorter_side() {
        let file = encode_two_channels(8000, &[1, 2, 3], &[-1]);
        assert_eq!((u16::from_le_bytes([file[22], file[23]]), u32::from_le_bytes(file[28..32].try_into().unwrap())), (2, 32_000));
        let samples: Vec<i16> = file[WAV_HEADER..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        assert_eq!(samples, [1, -1, 2, 0, 3, 0]);
        assert_eq!(u32::from_le_bytes(file[40..44].try_into().unwrap()) as usize, file.len() - WAV_HEADER);
        let second = encode_two_channels(8000, &[0; 8000], &[0; 4000]);
        assert_eq!(layout(&second), Ok(Some(Layout { rate: 8000, channels: 2, data_start: WAV_HEADER, duration_ms: 1000 })));
    }
}
