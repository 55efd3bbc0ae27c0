//! Whisper's weights as published in CTranslate2's format (`model.bin`, `vocabulary.txt`),
//! rewritten in the format whisper.cpp loads (`ggml`). Nothing is computed, only moved: the
//! fused query/key/value projections are split, tensors take whisper.cpp's names, small tensors
//! become 32-bit floats as whisper.cpp expects, the byte-level vocabulary is decoded to bytes,
//! and the 80-band mel filterbank (`audio::mel`) is written beside them.

use std::collections::BTreeMap;

use crate::audio::mel;

/// Why a model could not be converted.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ConvertError {
    #[error("not a CTranslate2 Whisper model: {0}")]
    NotWhisper(String),
    #[error("the model file is cut short or malformed at byte {0}")]
    Truncated(usize),
    #[error("the model lacks {0}")]
    Missing(String),
    #[error("{name} has an unexpected shape {shape:?} or type")]
    Shape { name: String, shape: Vec<u32> },
    #[error("the vocabulary has {0} entries, fewer than the model's text tokens")]
    Vocabulary(usize),
}

/// CTranslate2's data types, as numbered in its files.
const FLOAT16: u8 = 4;
const INT8: u8 = 1;
const INT16: u8 = 2;

/// One variable of a CTranslate2 model: its shape, type and raw little-endian bytes.
struct Variable<'a> {
    shape: Vec<u32>,
    dtype: u8,
    bytes: &'a [u8],
}

/// Reads a CTranslate2 model file (binary version 6): a spec name, then named variables.
fn read_variables(model: &[u8]) -> Result<BTreeMap<String, Variable<'_>>, ConvertError> {
    let mut reader = Reader { bytes: model, at: 0 };
    let version = reader.u32()?;
    let spec = reader.string()?;
    if version != 6 || spec != "WhisperSpec" {
        return Err(ConvertError::NotWhisper(format!("binary version {version}, spec {spec:?}")));
    }
    let _revision = reader.u32()?;
    let count = reader.u32()?;
    let mut variables = BTreeMap::new();
    for _ in 0..count {
        let name = reader.string()?;
        let rank = reader.take(1)?[0];
        let shape = (0..rank).map(|_| reader.u32()).collect::<Result<Vec<_>, _>>()?;
        let dtype = reader.take(1)?[0];
        let length = reader.u32()? as usize;
        let bytes = reader.take(length)?;
        variables.insert(name, Variable { shape, dtype, bytes });
    }
    Ok(variables)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ConvertError> {
        let piece = self
            .bytes
            .get(self.at..self.at.checked_add(n).ok_or(ConvertError::Truncated(self.at))?)
            .ok_or(ConvertError::Truncated(self.at))?;
        self.at += n;
        Ok(piece)
    }

    fn u32(&mut self) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    /// A length (u16, counting a closing NUL) and UTF-8 text.
    fn string(&mut self) -> Result<String, ConvertError> {
        let length = usize::from(u16::from_le_bytes(self.take(2)?.try_into().expect("two bytes")));
        let at = self.at;
        let text = self.take(length)?;
        let text = text.strip_suffix(&[0]).unwrap_or(text);
        String::from_utf8(text.to_vec()).map_err(|_| ConvertError::Truncated(at))
    }
}

/// The model's size, read from its tensors.
struct Dimensions {
    vocabulary: u32,
    audio_context: u32,
    text_context: u32,
    state: u32,
    encoder_heads: u32,
    decoder_heads: u32,
    encoder_layers: u32,
    decoder_layers: u32,
    mels: u32,
}

/// whisper.cpp's model from a CTranslate2 Whisper `model` and its `vocabulary` (one token per
/// line, in GPT-2's byte-level spelling).
pub fn convert(model: &[u8], vocabulary: &str) -> Result<Vec<u8>, ConvertError> {
    let variables = read_variables(model)?;
    let get = |name: &str| variables.get(name).ok_or_else(|| ConvertError::Missing(name.to_owned()));
    let scalar = |name: &str| -> Result<u32, ConvertError> {
        let v = get(name)?;
        match (v.dtype, v.bytes) {
            (INT8, [b]) => Ok(u32::from(*b)),
            (INT16, [a, b]) => Ok(u32::from(u16::from_le_bytes([*a, *b]))),
            _ => Err(ConvertError::Shape { name: name.to_owned(), shape: v.shape.clone() }),
        }
    };
    let shape = |name: &str| get(name).map(|v| v.shape.clone());
    let layers =
        |prefix: &str| (0..).take_while(|i| variables.contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))).count() as u32;
    let (embeddings, conv1, audio_positions, text_positions) = (
        shape("decoder/embeddings/weight")?,
        shape("encoder/conv1/weight")?,
        shape("encoder/position_encodings/encodings")?,
        shape("decoder/position_encodings/encodings")?,
    );
    let (&[vocabulary_size, state], &[_, mels, _], &[audio_context, _], &[text_context, _]) =
        (embeddings.as_slice(), conv1.as_slice(), audio_positions.as_slice(), text_positions.as_slice())
    else {
        return Err(ConvertError::NotWhisper("unexpected embedding, convolution or position shapes".into()));
    };
    let dims = Dimensions {
        vocabulary: vocabulary_size,
        audio_context,
        text_context,
        state,
        encoder_heads: scalar("encoder/num_heads")?,
        decoder_heads: scalar("decoder/num_heads")?,
        encoder_layers: layers("encoder"),
        decoder_layers: layers("decoder"),
        mels,
    };
    if mels as usize != mel::MEL_BANDS {
        return Err(ConvertError::NotWhisper(format!("{mels} mel bands; only 80 are supported")));
    }

    let mut out = Vec::with_capacity(model.len() + model.len() / 50);
    put_header(&mut out, &dims);
    put_vocabulary(&mut out, vocabulary)?;
    let mut writer = TensorWriter { out, variables: &variables };
    writer.encoder(&dims)?;
    writer.decoder(&dims)?;
    Ok(writer.out)
}

fn put_i32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&(value as i32).to_le_bytes());
}

fn put_header(out: &mut Vec<u8>, dims: &Dimensions) {
    put_i32(out, 0x6767_6d6c); // "ggml"
    for value in [
        dims.vocabulary,
        dims.audio_context,
        dims.state,
        dims.encoder_heads,
        dims.encoder_layers,
        dims.text_context,
        dims.state,
        dims.decoder_heads,
        dims.decoder_layers,
        dims.mels,
        1, // weights in 16-bit floats
    ] {
        put_i32(out, value);
    }
    put_i32(out, mel::MEL_BANDS as u32);
    put_i32(out, mel::FREQUENCY_BINS as u32);
    for weight in mel::filterbank() {
        out.extend_from_slice(&weight.to_le_bytes());
    }
}

/// The text tokens (those before `<|endoftext|>`), as bytes.
fn put_vocabulary(out: &mut Vec<u8>, vocabulary: &str) -> Result<(), ConvertError> {
    let lines: Vec<&str> = vocabulary.split('\n').collect();
    let text_tokens = lines.iter().position(|line| *line == "<|endoftext|>").ok_or(ConvertError::Vocabulary(lines.len()))?;
    let decode = byte_decoder();
    put_i32(out, text_tokens as u32);
    for token in &lines[..text_tokens] {
        let bytes: Vec<u8> = token.chars().map(|c| decode.get(&c).copied().unwrap_or(b'?')).collect();
        put_i32(out, bytes.len() as u32);
        out.extend_from_slice(&bytes);
    }
    Ok(())
}

/// GPT-2's byte-level spelling read back: printable bytes stand for themselves, the others were
/// moved to code points from 256 on, in order.
fn byte_decoder() -> BTreeMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                shifted += 1;
                (char::from_u32(255 + shifted).expect("a valid code point"), b)
            }
        })
        .collect()
}

struct TensorWriter<'a, 'b> {
    out: Vec<u8>,
    variables: &'b BTreeMap<String, Variable<'a>>,
}

impl<'a, 'b> TensorWriter<'a, 'b> {
    fn variable(&self, name: &str) -> Result<&'b Variable<'a>, ConvertError> {
        let variables: &'b BTreeMap<String, Variable<'a>> = self.variables;
        let v = variables.get(name).ok_or_else(|| ConvertError::Missing(name.to_owned()))?;
        if v.dtype != FLOAT16 || v.bytes.len() != v.shape.iter().map(|d| *d as usize).product::<usize>() * 2 {
            return Err(ConvertError::Shape { name: name.to_owned(), shape: v.shape.clone() });
        }
        Ok(v)
    }

    /// Writes one tensor: its shape (`shape`, outermost first), name and 16-bit floats,
    /// widened to 32 bits when `wide`.
    fn tensor(&mut self, name: &str, shape: &[u32], halves: &[u8], wide: bool) {
        put_i32(&mut self.out, shape.len() as u32);
        put_i32(&mut self.out, name.len() as u32);
        put_i32(&mut self.out, u32::from(!wide)); // 0: 32-bit floats, 1: 16-bit
        for dim in shape.iter().rev() {
            put_i32(&mut self.out, *dim);
        }
        self.out.extend_from_slice(name.as_bytes());
        if wide {
            for half in halves.chunks_exact(2) {
                self.out.extend_from_slice(&f16_to_f32(u16::from_le_bytes([half[0], half[1]])).to_le_bytes());
            }
        } else {
            self.out.extend_from_slice(halves);
        }
    }

    /// Copies a variable whole; vectors become 32-bit floats.
    fn copy(&mut self, to: &str, from: &str) -> Result<(), ConvertError> {
        let v = self.variable(from)?;
        let (shape, bytes) = (v.shape.clone(), v.bytes);
        self.tensor(to, &shape, bytes, shape.len() < 2);
        Ok(())
    }

    /// A layer norm: `gamma` and `beta` become `weight` and `bias`.
    fn norm(&mut self, to: &str, from: &str) -> Result<(), ConvertError> {
        self.copy(&format!("{to}.weight"), &format!("{from}/gamma"))?;
        self.copy(&format!("{to}.bias"), &format!("{from}/beta"))
    }

    /// A linear layer whose weight and bias are copied whole.
    fn linear(&mut self, to: &str, from: &str) -> Result<(), ConvertError> {
        self.copy(&format!("{to}.weight"), &format!("{from}/weight"))?;
        self.copy(&format!("{to}.bias"), &format!("{from}/bias"))
    }

    /// A fused projection split into equal parts along its outputs: `parts` names each part's
    /// target (`attn.query`, …). Whisper's key projection has no bias, so a `.key` part keeps
    /// none (CTranslate2 stores zeros there).
    fn split(&mut self, from: &str, parts: &[String]) -> Result<(), ConvertError> {
        let (weight, bias) = (self.variable(&format!("{from}/weight"))?, self.variable(&format!("{from}/bias"))?);
        let [rows, columns] = weight.shape[..] else {
            return Err(ConvertError::Shape { name: from.to_owned(), shape: weight.shape.clone() });
        };
        let rows = rows / parts.len() as u32;
        let (weights, biases) = (weight.bytes, bias.bytes);
        let (weight_part, bias_part) = (rows as usize * columns as usize * 2, rows as usize * 2);
        for (i, part) in parts.iter().enumerate() {
            self.tensor(&format!("{part}.weight"), &[rows, columns], &weights[i * weight_part..(i + 1) * weight_part], false);
            if !part.ends_with(".key") {
                self.tensor(&format!("{part}.bias"), &[rows], &biases[i * bias_part..(i + 1) * bias_part], true);
            }
        }
        Ok(())
    }

    fn encoder(&mut self, dims: &Dimensions) -> Result<(), ConvertError> {
        let positions = self.variable("encoder/position_encodings/encodings")?;
        let (shape, bytes) = (positions.shape.clone(), positions.bytes);
        self.tensor("encoder.positional_embedding", &shape, bytes, true);
        for conv in ["conv1", "conv2"] {
            self.copy(&format!("encoder.{conv}.weight"), &format!("encoder/{conv}/weight"))?;
            let bias = self.variable(&format!("encoder/{conv}/bias"))?;
            let bytes = bias.bytes;
            self.tensor(&format!("encoder.{conv}.bias"), &[dims.state, 1], bytes, true);
        }
        for i in 0..dims.encoder_layers {
            let (to, from) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
            self.norm(&format!("{to}.attn_ln"), &format!("{from}/self_attention/layer_norm"))?;
            self.split(
                &format!("{from}/self_attention/linear_0"),
                &[format!("{to}.attn.query"), format!("{to}.attn.key"), format!("{to}.attn.value")],
            )?;
            self.linear(&format!("{to}.attn.out"), &format!("{from}/self_attention/linear_1"))?;
            self.feed_forward(&to, &from)?;
        }
        self.norm("encoder.ln_post", "encoder/layer_norm")
    }

    fn decoder(&mut self, dims: &Dimensions) -> Result<(), ConvertError> {
        let positions = self.variable("decoder/position_encodings/encodings")?;
        let (shape, bytes) = (positions.shape.clone(), positions.bytes);
        self.tensor("decoder.positional_embedding", &shape, bytes, true);
        self.copy("decoder.token_embedding.weight", "decoder/embeddings/weight")?;
        for i in 0..dims.decoder_layers {
            let (to, from) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
            self.norm(&format!("{to}.attn_ln"), &format!("{from}/self_attention/layer_norm"))?;
            self.split(
                &format!("{from}/self_attention/linear_0"),
                &[format!("{to}.attn.query"), format!("{to}.attn.key"), format!("{to}.attn.value")],
            )?;
            self.linear(&format!("{to}.attn.out"), &format!("{from}/self_attention/linear_1"))?;
            self.norm(&format!("{to}.cross_attn_ln"), &format!("{from}/attention/layer_norm"))?;
            self.linear(&format!("{to}.cross_attn.query"), &format!("{from}/attention/linear_0"))?;
            self.split(&format!("{from}/attention/linear_1"), &[format!("{to}.cross_attn.key"), format!("{to}.cross_attn.value")])?;
            self.linear(&format!("{to}.cross_attn.out"), &format!("{from}/attention/linear_2"))?;
            self.feed_forward(&to, &from)?;
        }
        self.norm("decoder.ln", "decoder/layer_norm")
    }

    fn feed_forward(&mut self, to: &str, from: &str) -> Result<(), ConvertError> {
        self.norm(&format!("{to}.mlp_ln"), &format!("{from}/ffn/layer_norm"))?;
        self.linear(&format!("{to}.mlp.0"), &format!("{from}/ffn/linear_0"))?;
        self.linear(&format!("{to}.mlp.2"), &format!("{from}/ffn/linear_1"))
    }
}

/// An IEEE half-precision float, widened.
fn f16_to_f32(half: u16) -> f32 {
    let sign = u32::from(half >> 15) << 31;
    let exponent = u32::from((half >> 10) & 0x1f);
    let mantissa = u32::from(half & 0x3ff);
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        // Subnormal: a normal number in 32 bits.
        (0, _) => {
            let shift = mantissa.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | (((mantissa << shift) & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (mantissa << 13),
        _ => sign | ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CTranslate2 model file holding `variables` (name, shape, dtype, bytes).
    fn ct2_file(variables: &[(String, Vec<u32>, u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        out.extend_from_slice(&6u32.to_le_bytes());
        string(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(variables.len() as u32).to_le_bytes());
        for (name, shape, dtype, bytes) in variables {
            string(&mut out, name);
            out.push(shape.len() as u8);
            for dim in shape {
                out.extend_from_slice(&dim.to_le_bytes());
            }
            out.push(*dtype);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&0u32.to_le_bytes()); // no aliases
        out
    }

    /// A whole Whisper of state width 4 with one layer each side; each tensor's halves count up
    /// from a different start, so where each value lands can be checked.
    fn tiny_whisper() -> Vec<u8> {
        let mut variables = Vec::new();
        let mut next = 0u16;
        let mut tensor = |name: &str, shape: &[u32]| {
            let count: u32 = shape.iter().product();
            let bytes = (0..count).flat_map(|i| (next + i as u16).to_le_bytes()).collect();
            next += 1000;
            variables.push((name.to_owned(), shape.to_vec(), FLOAT16, bytes));
        };
        tensor("encoder/conv1/weight", &[4, 80, 3]);
        tensor("encoder/conv1/bias", &[4]);
        tensor("encoder/conv2/weight", &[4, 4, 3]);
        tensor("encoder/conv2/bias", &[4]);
        tensor("encoder/position_encodings/encodings", &[6, 4]);
        tensor("decoder/position_encodings/encodings", &[5, 4]);
        tensor("decoder/embeddings/weight", &[3, 4]);
        for side in ["encoder", "decoder"] {
            tensor(&format!("{side}/layer_norm/gamma"), &[4]);
            tensor(&format!("{side}/layer_norm/beta"), &[4]);
            let layer = format!("{side}/layer_0");
            for norm in ["self_attention", "ffn"] {
                tensor(&format!("{layer}/{norm}/layer_norm/gamma"), &[4]);
                tensor(&format!("{layer}/{norm}/layer_norm/beta"), &[4]);
            }
            tensor(&format!("{layer}/self_attention/linear_0/weight"), &[12, 4]);
            tensor(&format!("{layer}/self_attention/linear_0/bias"), &[12]);
            tensor(&format!("{layer}/self_attention/linear_1/weight"), &[4, 4]);
            tensor(&format!("{layer}/self_attention/linear_1/bias"), &[4]);
            tensor(&format!("{layer}/ffn/linear_0/weight"), &[8, 4]);
            tensor(&format!("{layer}/ffn/linear_0/bias"), &[8]);
            tensor(&format!("{layer}/ffn/linear_1/weight"), &[4, 8]);
            tensor(&format!("{layer}/ffn/linear_1/bias"), &[4]);
        }
        let cross = "decoder/layer_0/attention";
        tensor(&format!("{cross}/layer_norm/gamma"), &[4]);
        tensor(&format!("{cross}/layer_norm/beta"), &[4]);
        tensor(&format!("{cross}/linear_0/weight"), &[4, 4]);
        tensor(&format!("{cross}/linear_0/bias"), &[4]);
        tensor(&format!("{cross}/linear_1/weight"), &[8, 4]);
        tensor(&format!("{cross}/linear_1/bias"), &[8]);
        tensor(&format!("{cross}/linear_2/weight"), &[4, 4]);
        tensor(&format!("{cross}/linear_2/bias"), &[4]);
        variables.push(("encoder/num_heads".into(), vec![], INT16, 2u16.to_le_bytes().to_vec()));
        variables.push(("decoder/num_heads".into(), vec![], INT16, 2u16.to_le_bytes().to_vec()));
        ct2_file(&variables)
    }

    /// A tensor of a ggml file: shape (outermost first), whether 16-bit, and its bytes.
    type Tensor = (Vec<u32>, bool, Vec<u8>);

    /// Reads a ggml file back: header numbers, vocabulary, tensors by name.
    fn read_ggml(file: &[u8]) -> (Vec<i32>, Vec<Vec<u8>>, BTreeMap<String, Tensor>) {
        let int = |at: &mut usize| {
            let value = i32::from_le_bytes(file[*at..*at + 4].try_into().unwrap());
            *at += 4;
            value
        };
        let mut at = 0;
        let header: Vec<i32> = (0..12).map(|_| int(&mut at)).collect();
        let (bands, bins) = (int(&mut at), int(&mut at));
        at += (bands * bins * 4) as usize;
        let tokens = int(&mut at);
        let vocabulary = (0..tokens)
            .map(|_| {
                let length = int(&mut at) as usize;
                at += length;
                file[at - length..at].to_vec()
            })
            .collect();
        let mut tensors = BTreeMap::new();
        while at < file.len() {
            let (dims, name_length, half) = (int(&mut at), int(&mut at) as usize, int(&mut at) == 1);
            let mut shape: Vec<u32> = (0..dims).map(|_| int(&mut at) as u32).collect();
            shape.reverse();
            let name = String::from_utf8(file[at..at + name_length].to_vec()).unwrap();
            at += name_length;
            let bytes = shape.iter().product::<u32>() as usize * if half { 2 } else { 4 };
            tensors.insert(name, (shape, half, file[at..at + bytes].to_vec()));
            at += bytes;
        }
        (header, vocabulary, tensors)
    }

    fn halves(bytes: &[u8]) -> Vec<u16> {
        bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect()
    }

    #[test]
    fn a_ctranslate2_whisper_becomes_the_tensors_whisper_cpp_loads() {
        let vocabulary = "!\nĠthe\nĊ\n<|endoftext|>\n<|startoftranscript|>";
        let (header, tokens, tensors) = read_ggml(&convert(&tiny_whisper(), vocabulary).unwrap());
        // magic, vocabulary, audio context/state/heads/layers, text context/state/heads/layers,
        // mels, 16-bit weights
        assert_eq!(header, [0x6767_6d6c, 3, 6, 4, 2, 1, 5, 4, 2, 1, 80, 1]);
        assert_eq!(tokens, [b"!".to_vec(), b" the".to_vec(), b"\n".to_vec()]);
        // Whisper's names, each once: the encoder's convolutions, positions and last norm, its
        // block; the decoder's positions, embeddings and last norm, its block (with cross-attention).
        assert_eq!(tensors.len(), 7 + 15 + 4 + 24);
        assert!(!tensors.contains_key("encoder.blocks.0.attn.key.bias"));
        let (shape, half, bytes) = &tensors["encoder.blocks.0.attn.key.weight"];
        assert_eq!((shape.as_slice(), *half), ([4, 4].as_slice(), true));
        let fused_start = halves(&tensors["encoder.blocks.0.attn.query.weight"].2)[0];
        assert_eq!(halves(bytes)[0], fused_start + 16, "the key is the second third of the fused rows");
        let (shape, half, _) = &tensors["encoder.blocks.0.attn.value.bias"];
        assert_eq!((shape.as_slice(), *half), ([4].as_slice(), false), "vectors are 32-bit floats");
        let (shape, half, _) = &tensors["encoder.conv1.bias"];
        assert_eq!((shape.as_slice(), *half), ([4, 1].as_slice(), false));
        assert!(!tensors["encoder.positional_embedding"].1);
        assert!(tensors["decoder.token_embedding.weight"].1);
        let key = halves(&tensors["decoder.blocks.0.cross_attn.key.weight"].2)[0];
        assert_eq!(halves(&tensors["decoder.blocks.0.cross_attn.value.weight"].2)[0], key + 16);
        assert!(tensors.contains_key("decoder.blocks.0.cross_attn.value.bias") && tensors.contains_key("decoder.ln.bias"));
    }

    #[test]
    fn what_is_not_a_whisper_model_is_refused_with_a_reason() {
        let model = tiny_whisper();
        assert!(matches!(convert(&model[..model.len() / 2], "<|endoftext|>").unwrap_err(), ConvertError::Truncated(_)));
        assert!(matches!(convert(b"\x06\0\0\0\x05\0Spec\0", "").unwrap_err(), ConvertError::NotWhisper(_)));
        assert_eq!(convert(&model, "a\nb").unwrap_err(), ConvertError::Vocabulary(2));
    }

    /// Fuzz target: any bytes as a model give a model or an error, never a panic.
    #[test]
    fn fuzz_any_model_file() {
        bolero::check!().with_type::<Vec<u8>>().for_each(|bytes| {
            let _ = convert(bytes, "<|endoftext|>");
        });
    }

    #[test]
    fn half_floats_widen_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
