//! G.711 μ-law, the telephone network's 8-bit audio: Twilio's Media Streams carry it at 8 kHz.
//! Both directions are table lookups built at compile time (fast in debug builds too), with the
//! same rounding as the reference encoder (ITU-T G.711 as in Sun's `g711.c` and Python's
//! `audioop`): 14-bit magnitude, bias 33, eight segments.

/// The linear sample of each μ-law byte.
const DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut byte = 0;
    while byte < 256 {
        let u = !(byte as u8);
        let magnitude = ((((u & 0x0F) as i32) << 3) + 0x84) << ((u & 0x70) >> 4);
        table[byte] = if u & 0x80 != 0 { (0x84 - magnitude) as i16 } else { (magnitude - 0x84) as i16 };
        byte += 1;
    }
    table
};

/// The μ-law byte of each 14-bit sample (the 16-bit sample shifted right by 2), indexed by the
/// sample's two's-complement bits.
const ENCODE: [u8; 1 << 14] = {
    const SEGMENT_ENDS: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
    let mut table = [0u8; 1 << 14];
    let mut index = 0;
    while index < (1 << 14) {
        // Back from the index to the signed 14-bit sample.
        let sample = if index >= (1 << 13) { index as i32 - (1 << 14) } else { index as i32 };
        let (magnitude, mask) = if sample < 0 { (-sample, 0x7F) } else { (sample, 0xFF) };
        let biased = if magnitude > 8159 { 8159 } else { magnitude } + 0x21;
        let mut segment = 0;
        while segment < 8 && biased > SEGMENT_ENDS[segment] {
            segment += 1;
        }
        table[index] = if segment >= 8 { 0x7F ^ mask } else { ((segment << 4) as u8 | ((biased >> (segment + 1)) & 0x0F) as u8) ^ mask };
        index += 1;
    }
    table
};

/// The μ-law byte of silence.
pub const SILENCE: u8 = 0xFF;

/// The linear sample a μ-law byte stands for.
pub fn decode(byte: u8) -> i16 {
    DECODE[byte as usize]
}

/// The μ-law byte for a linear sample.
pub fn encode(sample: i16) -> u8 {
    ENCODE[((sample >> 2) as u16 & 0x3FFF) as usize]
}

/// Decodes μ-law bytes, appending the samples to `out`.
pub fn decode_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|b| DECODE[*b as usize]));
}

/// Encodes samples, appending the μ-law bytes to `out`.
pub fn encode_into(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|s| encode(*s)));
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn sha256(bytes: &[u8]) -> String {
        Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Golden values from Python's `audioop` (the reference rounding), computed by:
    /// `audioop.ulaw2lin(bytes(range(256)), 2)` and `audioop.lin2ulaw(<every i16, little-endian>, 2)`.
    #[test]
    fn every_byte_and_every_sample_match_the_reference() {
        let decoded: Vec<u8> = (0..=255u8).flat_map(|b| decode(b).to_le_bytes()).collect();
        assert_eq!(sha256(&decoded), "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827");
        let encoded: Vec<u8> = (i16::MIN..=i16::MAX).map(encode).collect();
        assert_eq!(sha256(&encoded), "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a");
        for (sample, byte) in [
            (-32768, 0),
            (-8159, 31),
            (-1000, 78),
            (-33, 122),
            (-1, 126),
            (0, 255),
            (1, 255),
            (33, 251),
            (1000, 206),
            (8159, 159),
            (32767, 128),
        ] {
            assert_eq!(encode(sample), byte, "{sample}");
        }
        assert_eq!((decode(0), decode(0x7F), decode(0x80), decode(0xFF)), (-32124, 0, 32124, 0));
    }

    #[test]
    fn a_round_trip_keeps_order_and_every_code() {
        // Louder stays louder (monotonic), and every byte but the negative zero survives.
        let mut previous = i16::MIN;
        for sample in i16::MIN..=i16::MAX {
            let heard = decode(encode(sample));
            assert!(heard >= previous, "{sample}");
            previous = heard;
        }
        for byte in (0..=255u8).filter(|b| *b != 0x7F) {
            assert_eq!(encode(decode(byte)), byte);
        }
    }

    #[test]
    fn silence_is_zero() {
        assert_eq!((decode(SILENCE), encode(0)), (0, SILENCE));
    }
}
