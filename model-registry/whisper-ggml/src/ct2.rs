//! Reading CTranslate2's `model.bin`: a table of named, typed tensors.
//!
//! Layout (little-endian), binary version 6:
//! `u32 version`, `str spec`, `u32 spec_revision`, `u32 n_variables`, then
//! per variable `str name`, `u8 rank`, `u32 dims[rank]`, `u8 dtype`,
//! `u32 n_bytes`, bytes; then `u32 n_aliases` and `str alias`, `str target`
//! pairs. A `str` is a `u16` length (counting a trailing NUL) and bytes.
//! Tensor data is not read here: only where it lies, so a 3 GB model does
//! not need 3 GB of memory to convert.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::ConvertError;

/// The binary versions this reader understands.
const SUPPORTED_VERSIONS: std::ops::RangeInclusive<u32> = 5..=6;

/// Element types CTranslate2 stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// Where one tensor lies in the file.
#[derive(Debug, Clone)]
pub struct Variable {
    pub dims: Vec<usize>,
    pub dtype: DType,
    pub offset: u64,
    pub n_bytes: usize,
}

impl Variable {
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// The table of a `model.bin`.
#[derive(Debug)]
pub struct Ct2Model {
    path: PathBuf,
    pub spec: String,
    pub variables: BTreeMap<String, Variable>,
}

impl Ct2Model {
    /// Reads the header and the table of variables (not the data).
    pub fn open(path: &Path) -> Result<Self, ConvertError> {
        let io = |source| ConvertError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut r = Reader {
            inner: BufReader::new(file),
            pos: 0,
            len,
            path,
        };
        let version = r.u32()?;
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(ConvertError::Unsupported(format!(
                "CTranslate2 binary version {version} (this build reads {}–{})",
                SUPPORTED_VERSIONS.start(),
                SUPPORTED_VERSIONS.end()
            )));
        }
        let spec = r.string()?;
        let _revision = r.u32()?;
        let count = r.u32()?;
        let mut variables = BTreeMap::new();
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()?;
            if rank > 4 {
                return Err(r.corrupt(format!("variable '{name}' has rank {rank}")));
            }
            let mut dims = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                dims.push(r.u32()? as usize);
            }
            let code = r.u8()?;
            let dtype = DType::from_code(code)
                .ok_or_else(|| r.corrupt(format!("variable '{name}' has unknown type {code}")))?;
            let n_bytes = r.u32()? as usize;
            let expected = dims
                .iter()
                .try_fold(dtype.size(), |acc, d| acc.checked_mul(*d))
                .ok_or_else(|| r.corrupt(format!("variable '{name}' is absurdly large")))?;
            if expected != n_bytes {
                return Err(r.corrupt(format!(
                    "variable '{name}' holds {n_bytes} bytes, its shape needs {expected}"
                )));
            }
            let offset = r.pos;
            r.skip(n_bytes as u64)?;
            variables.insert(
                name,
                Variable {
                    dims,
                    dtype,
                    offset,
                    n_bytes,
                },
            );
        }
        if version >= 6 {
            let aliases = r.u32()?;
            for _ in 0..aliases {
                let alias = r.string()?;
                let target = r.string()?;
                let variable = variables.get(&target).cloned().ok_or_else(|| {
                    r.corrupt(format!(
                        "alias '{alias}' names a missing variable '{target}'"
                    ))
                })?;
                variables.insert(alias, variable);
            }
        }
        Ok(Self {
            path: path.to_owned(),
            spec,
            variables,
        })
    }

    pub fn get(&self, name: &str) -> Result<&Variable, ConvertError> {
        self.variables
            .get(name)
            .ok_or_else(|| ConvertError::Corrupt(format!("model.bin has no variable '{name}'")))
    }

    /// Reads a tensor's values as `f32`, whatever it is stored as.
    pub fn read_f32(&self, file: &mut File, name: &str) -> Result<Vec<f32>, ConvertError> {
        let variable = self.get(name)?;
        let mut bytes = vec![0u8; variable.n_bytes];
        file.seek(SeekFrom::Start(variable.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|source| ConvertError::Io {
                path: self.path.clone(),
                source,
            })?;
        let values = match variable.dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::I8 | DType::I16 | DType::I32 => {
                return Err(ConvertError::Unsupported(format!(
                    "'{name}' is quantised ({:?}); convert the model with float16 or float32 weights",
                    variable.dtype
                )));
            }
        };
        Ok(values)
    }

    /// Reads a scalar integer setting (such as `encoder/num_heads`).
    pub fn read_int(&self, file: &mut File, name: &str) -> Result<i64, ConvertError> {
        let variable = self.get(name)?;
        let mut bytes = [0u8; 4];
        let size = variable.dtype.size();
        if variable.elements() != 1 || size > 4 {
            return Err(ConvertError::Corrupt(format!("'{name}' is not a scalar")));
        }
        file.seek(SeekFrom::Start(variable.offset))
            .and_then(|_| file.read_exact(&mut bytes[..size]))
            .map_err(|source| ConvertError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(match variable.dtype {
            DType::I8 => i64::from(bytes[0] as i8),
            DType::I16 => i64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
            DType::I32 => i64::from(i32::from_le_bytes(bytes)),
            other => {
                return Err(ConvertError::Corrupt(format!(
                    "'{name}' should be an integer, is {other:?}"
                )));
            }
        })
    }
}

struct Reader<'a> {
    inner: BufReader<File>,
    pos: u64,
    len: u64,
    path: &'a Path,
}

impl Reader<'_> {
    fn corrupt(&self, what: String) -> ConvertError {
        ConvertError::Corrupt(format!(
            "{} at byte {}: {what}",
            self.path.display(),
            self.pos
        ))
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], ConvertError> {
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| self.corrupt("the file ends early".into()))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u8(&mut self) -> Result<u8, ConvertError> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn string(&mut self) -> Result<String, ConvertError> {
        let len = usize::from(u16::from_le_bytes(self.bytes()?));
        let mut buf = vec![0u8; len];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| self.corrupt("the file ends early".into()))?;
        self.pos += len as u64;
        if buf.last() == Some(&0) {
            buf.pop();
        }
        String::from_utf8(buf).map_err(|_| self.corrupt("a name is not UTF-8".into()))
    }

    fn skip(&mut self, n: u64) -> Result<(), ConvertError> {
        if self.pos + n > self.len {
            return Err(self.corrupt("a tensor runs past the end of the file".into()));
        }
        let delta = i64::try_from(n).map_err(|_| self.corrupt("absurd tensor size".into()))?;
        self.inner
            .seek_relative(delta)
            .map_err(|_| self.corrupt("cannot seek".into()))?;
        self.pos += n;
        Ok(())
    }
}
