//! whisper.cpp's ggml model file: writing it, and checking one completely
//! before whisper.cpp is allowed to read it.
//!
//! whisper.cpp trusts its input: a tensor header with more than four
//! dimensions overflows a stack array, an unknown type indexes past a table,
//! absurd hyper-parameters allocate without limit. [`inspect`] walks the
//! whole file first and accepts only what whisper.cpp would load cleanly:
//! sane hyper-parameters, a mel filterbank and vocabulary inside the file,
//! and exactly the tensors the hyper-parameters call for, with their
//! shapes, known types and sizes, ending exactly at the end of the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::ConvertError;

/// `ggml` in ASCII, as a little-endian `u32`.
pub const MAGIC: u32 = 0x6767_6d6c;

/// ggml element types whisper.cpp loads, with (bytes per block, block size).
fn type_layout(ttype: i32) -> Option<(usize, usize)> {
    Some(match ttype {
        0 => (4, 1),   // f32
        1 => (2, 1),   // f16
        2 => (18, 32), // q4_0
        3 => (20, 32), // q4_1
        6 => (22, 32), // q5_0
        7 => (24, 32), // q5_1
        8 => (34, 32), // q8_0
        _ => return None,
    })
}

/// The model's shape, as the file's 11 header integers give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Hparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    pub ftype: i32,
}

impl Hparams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_array(v: [i32; 11]) -> Self {
        Self {
            n_vocab: v[0],
            n_audio_ctx: v[1],
            n_audio_state: v[2],
            n_audio_head: v[3],
            n_audio_layer: v[4],
            n_text_ctx: v[5],
            n_text_state: v[6],
            n_text_head: v[7],
            n_text_layer: v[8],
            n_mels: v[9],
            ftype: v[10],
        }
    }

    /// Ranges wide enough for every released whisper model (large-v3 has
    /// 32 layers of 1280, 128 mels, 51866 tokens) and no wider.
    fn check(&self) -> Result<(), String> {
        let within = |name: &str, v: i32, max: i32| {
            if (1..=max).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v} is outside 1..={max}"))
            }
        };
        within("n_vocab", self.n_vocab, 60_000)?;
        within("n_audio_ctx", self.n_audio_ctx, 1500)?;
        within("n_audio_state", self.n_audio_state, 2048)?;
        within("n_audio_head", self.n_audio_head, 64)?;
        within("n_audio_layer", self.n_audio_layer, 64)?;
        within("n_text_ctx", self.n_text_ctx, 448)?;
        within("n_text_state", self.n_text_state, 2048)?;
        within("n_text_head", self.n_text_head, 64)?;
        within("n_text_layer", self.n_text_layer, 64)?;
        within("n_mels", self.n_mels, 128)?;
        if self.n_audio_state % self.n_audio_head != 0 || self.n_text_state % self.n_text_head != 0
        {
            return Err("the state size is not a multiple of the head count".into());
        }
        // ggml's file types (all f32, mostly f16, q4_0, q4_1, q8_0, q5_0,
        // q5_1); whisper.cpp keeps a quantisation version in the thousands.
        if !matches!(self.ftype % 1000, 0..=3 | 7..=9) {
            return Err(format!("unknown weight type {}", self.ftype));
        }
        Ok(())
    }

    /// Every tensor whisper.cpp creates for this shape, with its ggml
    /// dimensions (`ne`, fastest first), and whether it must be `f32`.
    pub fn expected_tensors(&self) -> BTreeMap<String, (Vec<i64>, bool)> {
        let mut t = BTreeMap::new();
        let (a, ac, m) = (
            i64::from(self.n_audio_state),
            i64::from(self.n_audio_ctx),
            i64::from(self.n_mels),
        );
        let (s, tc, v) = (
            i64::from(self.n_text_state),
            i64::from(self.n_text_ctx),
            i64::from(self.n_vocab),
        );
        let mut add = |name: String, ne: Vec<i64>, f32_only: bool| {
            t.insert(name, (ne, f32_only));
        };
        add("encoder.positional_embedding".into(), vec![a, ac], true);
        add("encoder.conv1.weight".into(), vec![3, m, a], false);
        add("encoder.conv1.bias".into(), vec![1, a], true);
        add("encoder.conv2.weight".into(), vec![3, a, a], false);
        add("encoder.conv2.bias".into(), vec![1, a], true);
        add("encoder.ln_post.weight".into(), vec![a], true);
        add("encoder.ln_post.bias".into(), vec![a], true);
        let block = |add: &mut dyn FnMut(String, Vec<i64>, bool), p: &str, n: i64, attn: &str| {
            add(format!("{p}.{attn}_ln.weight"), vec![n], true);
            add(format!("{p}.{attn}_ln.bias"), vec![n], true);
            add(format!("{p}.{attn}.query.weight"), vec![n, n], false);
            add(format!("{p}.{attn}.query.bias"), vec![n], true);
            add(format!("{p}.{attn}.key.weight"), vec![n, n], false);
            add(format!("{p}.{attn}.value.weight"), vec![n, n], false);
            add(format!("{p}.{attn}.value.bias"), vec![n], true);
            add(format!("{p}.{attn}.out.weight"), vec![n, n], false);
            add(format!("{p}.{attn}.out.bias"), vec![n], true);
        };
        let mlp = |add: &mut dyn FnMut(String, Vec<i64>, bool), p: &str, n: i64| {
            add(format!("{p}.mlp_ln.weight"), vec![n], true);
            add(format!("{p}.mlp_ln.bias"), vec![n], true);
            add(format!("{p}.mlp.0.weight"), vec![n, 4 * n], false);
            add(format!("{p}.mlp.0.bias"), vec![4 * n], true);
            add(format!("{p}.mlp.2.weight"), vec![4 * n, n], false);
            add(format!("{p}.mlp.2.bias"), vec![n], true);
        };
        for i in 0..self.n_audio_layer {
            let p = format!("encoder.blocks.{i}");
            block(&mut add, &p, a, "attn");
            mlp(&mut add, &p, a);
        }
        add("decoder.positional_embedding".into(), vec![s, tc], true);
        add("decoder.token_embedding.weight".into(), vec![s, v], false);
        add("decoder.ln.weight".into(), vec![s], true);
        add("decoder.ln.bias".into(), vec![s], true);
        for i in 0..self.n_text_layer {
            let p = format!("decoder.blocks.{i}");
            block(&mut add, &p, s, "attn");
            block(&mut add, &p, s, "cross_attn");
            mlp(&mut add, &p, s);
        }
        t
    }
}

/// What [`inspect`] found in a valid file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GgmlInfo {
    pub hparams: Hparams,
    pub vocab_tokens: usize,
    pub tensors: usize,
    pub multilingual: bool,
}

/// Checks a whole ggml whisper file without loading its weights.
pub fn inspect(path: &Path) -> Result<GgmlInfo, ConvertError> {
    let io = |source| ConvertError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut r = Cursor {
        inner: BufReader::new(file),
        pos: 0,
        len,
    };
    let bad = |what: String| ConvertError::Corrupt(format!("{}: {what}", path.display()));
    let at = |pos: u64, what: &str| bad(format!("{what} (byte {pos})"));

    if r.i32().map_err(|_| at(0, "empty file"))? as u32 != MAGIC {
        return Err(bad("not a ggml whisper model (bad magic)".into()));
    }
    let mut header = [0i32; 11];
    for value in &mut header {
        *value = r.i32().map_err(|p| at(p, "the header ends early"))?;
    }
    let hparams = Hparams::from_array(header);
    hparams.check().map_err(bad)?;

    let n_mel = r
        .i32()
        .map_err(|p| at(p, "the filterbank header ends early"))?;
    let n_fft = r
        .i32()
        .map_err(|p| at(p, "the filterbank header ends early"))?;
    if n_mel != hparams.n_mels || !(1..=1024).contains(&n_fft) {
        return Err(bad(format!(
            "mel filterbank of {n_mel}×{n_fft} does not fit"
        )));
    }
    r.skip(n_mel as u64 * n_fft as u64 * 4)
        .map_err(|p| at(p, "the filterbank runs past the end"))?;

    let n_tokens = r.i32().map_err(|p| at(p, "the vocabulary ends early"))?;
    if !(0..=hparams.n_vocab).contains(&n_tokens) {
        return Err(bad(format!(
            "{n_tokens} vocabulary tokens for a model of {}",
            hparams.n_vocab
        )));
    }
    for _ in 0..n_tokens {
        let token_len = r.i32().map_err(|p| at(p, "the vocabulary ends early"))?;
        if !(0..=1024).contains(&token_len) {
            return Err(at(r.pos, "a vocabulary token has an absurd length"));
        }
        r.skip(token_len as u64)
            .map_err(|p| at(p, "the vocabulary runs past the end"))?;
    }

    let mut expected = hparams.expected_tensors();
    let total = expected.len();
    while r.pos < len {
        let start = r.pos;
        let n_dims = r.i32().map_err(|p| at(p, "a tensor header ends early"))?;
        let name_len = r.i32().map_err(|p| at(p, "a tensor header ends early"))?;
        let ttype = r.i32().map_err(|p| at(p, "a tensor header ends early"))?;
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(at(start, "a tensor header is malformed"));
        }
        let mut ne = Vec::new();
        for _ in 0..n_dims {
            ne.push(i64::from(
                r.i32().map_err(|p| at(p, "a tensor header ends early"))?,
            ));
        }
        let name = r
            .string(name_len as usize)
            .map_err(|p| at(p, "a tensor name is cut off or not UTF-8"))?;
        let Some((want_ne, f32_only)) = expected.remove(&name) else {
            return Err(at(
                start,
                &format!("unexpected or repeated tensor '{name}'"),
            ));
        };
        // Trailing dimensions of 1 are the same shape.
        let trim = |v: &[i64]| {
            let mut v = v.to_vec();
            while v.len() > 1 && v.last() == Some(&1) {
                v.pop();
            }
            v
        };
        if trim(&ne) != trim(&want_ne) {
            return Err(bad(format!(
                "tensor '{name}' has shape {ne:?}, the model needs {want_ne:?}"
            )));
        }
        let Some((block_bytes, block)) = type_layout(ttype) else {
            return Err(bad(format!("tensor '{name}' has unknown type {ttype}")));
        };
        if f32_only && ttype != 0 {
            return Err(bad(format!("tensor '{name}' must be f32, is type {ttype}")));
        }
        // whisper.cpp aborts the whole process on any other conv kernel.
        if name.starts_with("encoder.conv") && name.ends_with(".weight") && ttype != 1 {
            return Err(bad(format!("tensor '{name}' must be f16, is type {ttype}")));
        }
        let elements: i64 = ne.iter().product();
        if elements <= 0 || elements % block as i64 != 0 {
            return Err(bad(format!("tensor '{name}' does not fill whole blocks")));
        }
        let bytes = elements as u64 / block as u64 * block_bytes as u64;
        r.skip(bytes)
            .map_err(|_| bad(format!("tensor '{name}' runs past the end of the file")))?;
    }
    if !expected.is_empty() {
        let missing: Vec<_> = expected.keys().take(3).cloned().collect();
        return Err(bad(format!(
            "{} of {total} tensors are missing (first: {})",
            expected.len(),
            missing.join(", ")
        )));
    }
    Ok(GgmlInfo {
        hparams,
        vocab_tokens: n_tokens as usize,
        tensors: total,
        multilingual: hparams.n_vocab >= 51865,
    })
}

struct Cursor {
    inner: BufReader<File>,
    pos: u64,
    len: u64,
}

impl Cursor {
    /// Errors carry the position where reading failed.
    fn i32(&mut self) -> Result<i32, u64> {
        let mut b = [0u8; 4];
        self.inner.read_exact(&mut b).map_err(|_| self.pos)?;
        self.pos += 4;
        Ok(i32::from_le_bytes(b))
    }

    fn string(&mut self, len: usize) -> Result<String, u64> {
        let mut b = vec![0u8; len];
        self.inner.read_exact(&mut b).map_err(|_| self.pos)?;
        self.pos += len as u64;
        String::from_utf8(b).map_err(|_| self.pos)
    }

    fn skip(&mut self, n: u64) -> Result<(), u64> {
        if self.pos.saturating_add(n) > self.len {
            return Err(self.pos);
        }
        let delta = i64::try_from(n).map_err(|_| self.pos)?;
        self.inner.seek_relative(delta).map_err(|_| self.pos)?;
        self.pos += n;
        Ok(())
    }
}

/// Writes a ggml whisper file front to back.
pub struct Writer {
    out: BufWriter<File>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// How a tensor's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    F32,
    F16,
    /// Blocks of 32 along the fastest dimension: an f16 scale and 32
    /// `i8` (ggml's reference rounding).
    Q8_0,
}

impl Storage {
    /// The header's `ftype` for a model whose matrices use this storage.
    pub fn ftype(self) -> i32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 7,
        }
    }
}

impl Writer {
    pub fn new(file: File) -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 20, file),
        }
    }

    pub fn header(&mut self, hparams: Hparams) -> std::io::Result<()> {
        self.out.write_all(&MAGIC.to_le_bytes())?;
        for value in hparams.to_array() {
            self.out.write_all(&value.to_le_bytes())?;
        }
        Ok(())
    }

    pub fn mel_filters(&mut self, n_mel: usize, n_fft: usize, data: &[f32]) -> std::io::Result<()> {
        self.out.write_all(&(n_mel as i32).to_le_bytes())?;
        self.out.write_all(&(n_fft as i32).to_le_bytes())?;
        for v in data {
            self.out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    }

    pub fn vocab(&mut self, tokens: &[Vec<u8>]) -> std::io::Result<()> {
        self.out.write_all(&(tokens.len() as i32).to_le_bytes())?;
        for token in tokens {
            self.out.write_all(&(token.len() as u32).to_le_bytes())?;
            self.out.write_all(token)?;
        }
        Ok(())
    }

    /// `ne` is ggml's order: the fastest-varying dimension first.
    pub fn tensor(
        &mut self,
        name: &str,
        ne: &[usize],
        values: &[f32],
        storage: Storage,
    ) -> std::io::Result<()> {
        debug_assert_eq!(ne.iter().product::<usize>(), values.len());
        let ttype: i32 = match storage {
            Storage::F32 => 0,
            Storage::F16 => 1,
            Storage::Q8_0 => 8,
        };
        self.out.write_all(&(ne.len() as i32).to_le_bytes())?;
        self.out.write_all(&(name.len() as i32).to_le_bytes())?;
        self.out.write_all(&ttype.to_le_bytes())?;
        for d in ne {
            self.out.write_all(&(*d as i32).to_le_bytes())?;
        }
        self.out.write_all(name.as_bytes())?;
        match storage {
            Storage::F32 => {
                for v in values {
                    self.out.write_all(&v.to_le_bytes())?;
                }
            }
            Storage::F16 => {
                for v in values {
                    self.out.write_all(&half::f16::from_f32(*v).to_le_bytes())?;
                }
            }
            Storage::Q8_0 => {
                let mut block_bytes = Vec::with_capacity(34);
                for block in values.chunks(32) {
                    block_bytes.clear();
                    jarvis_gguf::push_q8_0_block(block, &mut block_bytes);
                    self.out.write_all(&block_bytes)?;
                }
            }
        }
        Ok(())
    }

    /// Flushes and fsyncs; the caller renames the file into place.
    pub fn finish(self) -> std::io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

/// The shape of a complete, tiny, valid model: one layer each, 4 states
/// (for tests and fuzz seeds).
pub fn tiny_hparams() -> Hparams {
    Hparams {
        n_vocab: 8,
        n_audio_ctx: 4,
        n_audio_state: 4,
        n_audio_head: 2,
        n_audio_layer: 1,
        n_text_ctx: 4,
        n_text_state: 4,
        n_text_head: 2,
        n_text_layer: 1,
        n_mels: 2,
        ftype: 1,
    }
}

/// Writes a complete model of shape `hparams` with every weight 0.5 (for
/// tests and fuzz seeds; keep the shape tiny).
pub fn write_tiny(path: &Path, hparams: Hparams) -> std::io::Result<()> {
    let mut w = Writer::new(File::create(path)?);
    w.header(hparams)?;
    w.mel_filters(2, 3, &[0.0; 6])?;
    w.vocab(&[b"a".to_vec(), b" b".to_vec()])?;
    for (name, (ne, f32_only)) in hparams.expected_tensors() {
        let ne: Vec<usize> = ne.iter().map(|d| *d as usize).collect();
        let values = vec![0.5; ne.iter().product()];
        let storage = if f32_only { Storage::F32 } else { Storage::F16 };
        w.tensor(&name, &ne, &values, storage)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;

    fn write_tiny(path: &Path, hparams: Hparams) {
        super::write_tiny(path, hparams).unwrap();
    }

    #[test]
    fn a_complete_file_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        write_tiny(&path, tiny_hparams());
        let info = inspect(&path).unwrap();
        assert_eq!(info.hparams, tiny_hparams());
        assert_eq!(info.vocab_tokens, 2);
        assert_eq!(info.tensors, tiny_hparams().expected_tensors().len());
    }

    #[test]
    fn every_truncation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        write_tiny(&path, tiny_hparams());
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.bin");
        for len in (0..bytes.len()).step_by(7) {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            let err = inspect(&cut).expect_err("a truncated file must be refused");
            assert!(matches!(err, ConvertError::Corrupt(_)), "{len}: {err}");
        }
    }

    #[test]
    fn hostile_headers_are_refused_before_whisper_cpp_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        write_tiny(&path, tiny_hparams());
        let good = std::fs::read(&path).unwrap();
        // The first tensor header starts after magic, hparams, filterbank
        // (2×3 f32) and vocabulary (count, then "a" and " b").
        let first_tensor = 4 + 44 + 8 + 24 + 4 + (4 + 1) + (4 + 2);
        let cases: Vec<(&str, usize, i32)> = vec![
            ("bad magic", 0, 0x1234),
            ("absurd vocabulary size", 4, 1 << 30),
            ("absurd layer count", 4 + 4 * 4, 10_000),
            ("unknown weight type", 4 + 40, 77),
            ("five dimensions", first_tensor, 5),
            ("huge name length", first_tensor + 4, 1 << 20),
            ("unknown tensor type", first_tensor + 8, 99),
        ];
        for (what, offset, value) in cases {
            let mut bytes = good.clone();
            bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
            std::fs::write(&path, &bytes).unwrap();
            let err = inspect(&path).expect_err(what);
            assert!(matches!(err, ConvertError::Corrupt(_)), "{what}: {err}");
        }
        // A tensor name changed to one the model does not have.
        let mut bytes = good.clone();
        let pos = bytes.windows(9).position(|w| w == b"decoder.l").unwrap();
        bytes[pos..pos + 9].copy_from_slice(b"decoder.X");
        std::fs::write(&path, &bytes).unwrap();
        let err = inspect(&path).unwrap_err().to_string();
        assert!(err.contains("unexpected or repeated tensor"), "{err}");
        // f32 conv kernels pass whisper.cpp's loader but abort the process
        // in its convolution: refused here.
        let f32_conv = dir.path().join("f32-conv.bin");
        let mut w = Writer::new(File::create(&f32_conv).unwrap());
        w.header(tiny_hparams()).unwrap();
        w.mel_filters(2, 3, &[0.0; 6]).unwrap();
        w.vocab(&[b"a".to_vec(), b" b".to_vec()]).unwrap();
        for (name, (ne, f32_only)) in tiny_hparams().expected_tensors() {
            let ne: Vec<usize> = ne.iter().map(|d| *d as usize).collect();
            let values = vec![0.5; ne.iter().product()];
            let storage = if f32_only || name.starts_with("encoder.conv") {
                Storage::F32
            } else {
                Storage::F16
            };
            w.tensor(&name, &ne, &values, storage).unwrap();
        }
        w.finish().unwrap();
        let err = inspect(&f32_conv).unwrap_err().to_string();
        assert!(err.contains("must be f16"), "{err}");

        // Trailing garbage after the last tensor.
        let mut bytes = good;
        bytes.extend_from_slice(&[0u8; 16]);
        std::fs::write(&path, &bytes).unwrap();
        assert!(inspect(&path).is_err());
    }
}
