//! The resumable partial file on disk: `<dest>.partial`, hashed as it is
//! written, with its sidecar `<dest>.partial.json` recording a checkpoint
//! (an offset and the SHA-256 state after exactly that many bytes), so a
//! resume truncates to the checkpoint and continues the hash. It knows
//! files and hashes, never the network.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use jarvis_durable::{Visibility, read_optional, remove_if_exists, sync_dir, write_atomic};
use serde::{Deserialize, Serialize};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256};

use crate::spec::{DownloadOptions, FileSpec};
use crate::{DownloadError, Sha256Digest, file_error};

/// `<dest>.partial` and its sidecar `<dest>.partial.json`.
pub fn partial_paths(dest: &Path) -> (PathBuf, PathBuf) {
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let mut sidecar = partial.clone();
    sidecar.push(".json");
    (PathBuf::from(partial), PathBuf::from(sidecar))
}

/// On-disk state beside the partial file.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    format: u32,
    sha256: Sha256Digest,
    size: u64,
    chunk_size: Option<u64>,
    /// Bytes at the start of the partial that the hash state covers.
    pub(crate) checkpoint: u64,
    /// Serialised SHA-256 state after `checkpoint` bytes (hex).
    hash_state: String,
    pub(crate) etag: Option<String>,
    pub(crate) source: Option<String>,
}

const SIDECAR_FORMAT: u32 = 1;

/// The partial file being filled, with its hash state.
pub(crate) struct Partial {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) sidecar: PathBuf,
    pub(crate) pos: u64,
    pub(crate) hasher: Sha256,
    pub(crate) chunk_hasher: Sha256,
    /// The last checkpoint: offset and serialised hash state there.
    pub(crate) checkpoint: (u64, Vec<u8>),
    pub(crate) interval: u64,
    pub(crate) chunked: bool,
    pub(crate) etag: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) fetched: u64,
    /// What the sidecar must match: digest, size, chunk size.
    pub(crate) expected: (Sha256Digest, u64, Option<u64>),
}

impl Partial {
    pub(crate) fn open(
        spec: &FileSpec,
        dest: &Path,
        options: &DownloadOptions,
    ) -> Result<Self, DownloadError> {
        let (path, sidecar) = partial_paths(dest);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| file_error("open", &path, e))?;
        let (interval, chunked) = match &spec.chunks {
            Some(c) if c.size > 0 => (c.size, true),
            _ => (options.checkpoint_bytes.max(1), false),
        };
        let mut partial = Self {
            file,
            path,
            sidecar,
            pos: 0,
            hasher: Sha256::new(),
            chunk_hasher: Sha256::new(),
            checkpoint: (0, Sha256::new().serialize().to_vec()),
            interval,
            chunked,
            etag: None,
            source: None,
            fetched: 0,
            expected: (spec.sha256, spec.size, spec.chunks.as_ref().map(|c| c.size)),
        };
        if !partial.resume(spec)? {
            partial.reset()?;
        }
        Ok(partial)
    }

    /// Restores the checkpoint from the sidecar; false when there is none
    /// usable (then the partial starts over).
    pub(crate) fn resume(&mut self, spec: &FileSpec) -> Result<bool, DownloadError> {
        let Some(bytes) = read_optional("download state", &self.sidecar)? else {
            return Ok(false);
        };
        let Ok(state) = serde_json::from_slice::<Sidecar>(&bytes) else {
            tracing::warn!(path = %self.sidecar.display(), "ignoring an unreadable download state");
            return Ok(false);
        };
        let chunk_size = spec.chunks.as_ref().map(|c| c.size);
        let len = self
            .file
            .metadata()
            .map_err(|e| file_error("read", &self.path, e))?
            .len();
        if state.format != SIDECAR_FORMAT
            || state.sha256 != spec.sha256
            || state.size != spec.size
            || state.chunk_size != chunk_size
            || state.checkpoint > len
            || state.checkpoint > spec.size
        {
            return Ok(false);
        }
        let Ok(raw) = hex::decode(&state.hash_state) else {
            return Ok(false);
        };
        let Ok(serialized) = raw.as_slice().try_into() else {
            return Ok(false);
        };
        let Ok(hasher) = Sha256::deserialize(serialized) else {
            return Ok(false);
        };
        // Re-verify the last chunk before the checkpoint: it is the one a
        // crash could have left half-written.
        if let Some(chunks) = &spec.chunks
            && state.checkpoint > 0
        {
            let index = (state.checkpoint - 1) / chunks.size;
            let start = index * chunks.size;
            let mut piece = vec![0u8; (state.checkpoint - start) as usize];
            self.file
                .seek(SeekFrom::Start(start))
                .and_then(|_| self.file.read_exact(&mut piece))
                .map_err(|e| file_error("read", &self.path, e))?;
            if chunks.sha256.get(index as usize) != Some(&Sha256Digest::of(&piece)) {
                tracing::warn!(
                    index,
                    "the last chunk of the partial download is corrupt; starting over"
                );
                return Ok(false);
            }
        }
        self.truncate_to(state.checkpoint)?;
        self.hasher = hasher;
        self.chunk_hasher = Sha256::new();
        self.checkpoint = (state.checkpoint, raw);
        self.etag = state.etag;
        self.source = state.source;
        Ok(true)
    }

    /// Throws away everything and starts at byte 0.
    pub(crate) fn reset(&mut self) -> Result<(), DownloadError> {
        self.truncate_to(0)?;
        self.hasher = Sha256::new();
        self.chunk_hasher = Sha256::new();
        self.etag = None;
        self.save_checkpoint()
    }

    pub(crate) fn truncate_to(&mut self, pos: u64) -> Result<(), DownloadError> {
        self.file
            .set_len(pos)
            .and_then(|()| self.file.seek(SeekFrom::Start(pos)).map(|_| ()))
            .map_err(|e| file_error("truncate", &self.path, e))?;
        self.pos = pos;
        Ok(())
    }

    /// Appends `data`, hashing it, checking chunks and checkpointing at each
    /// boundary.
    pub(crate) fn write(
        &mut self,
        mut data: &[u8],
        spec: &FileSpec,
        url: &str,
    ) -> Result<(), DownloadError> {
        while !data.is_empty() {
            if self.pos + data.len() as u64 > spec.size {
                return Err(DownloadError::TooMuchData {
                    url: url.to_owned(),
                    label: spec.label.clone(),
                    expected: spec.size,
                });
            }
            let boundary = ((self.pos / self.interval) + 1)
                .saturating_mul(self.interval)
                .min(spec.size);
            let take =
                usize::try_from(boundary - self.pos).map_or(data.len(), |n| n.min(data.len()));
            let (piece, rest) = data.split_at(take);
            self.file.write_all(piece).map_err(|e| {
                if e.raw_os_error() == Some(28) {
                    self.disk_full(spec)
                } else {
                    file_error("write", &self.path, e)
                }
            })?;
            self.hasher.update(piece);
            if self.chunked {
                self.chunk_hasher.update(piece);
            }
            self.pos += take as u64;
            self.fetched += take as u64;
            data = rest;
            if self.pos == boundary {
                if let Some(chunks) = &spec.chunks {
                    let index = (self.pos - 1) / chunks.size;
                    let calculated =
                        Sha256Digest::from_bytes(self.chunk_hasher.finalize_reset().into());
                    if chunks.sha256.get(index as usize) != Some(&calculated) {
                        self.back_to_checkpoint()?;
                        return Err(DownloadError::ChunkMismatch {
                            url: url.to_owned(),
                            label: spec.label.clone(),
                            index,
                        });
                    }
                }
                self.checkpoint = (self.pos, self.hasher.serialize().to_vec());
                self.save_checkpoint()?;
            }
        }
        Ok(())
    }

    pub(crate) fn disk_full(&self, spec: &FileSpec) -> DownloadError {
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        DownloadError::DiskFull {
            label: spec.label.clone(),
            available: fs4::available_space(&dir).unwrap_or(0),
            dir,
            needed: spec.size - self.pos,
        }
    }

    pub(crate) fn back_to_checkpoint(&mut self) -> Result<(), DownloadError> {
        let (pos, state) = self.checkpoint.clone();
        self.truncate_to(pos)?;
        self.chunk_hasher = Sha256::new();
        if let Ok(serialized) = state.as_slice().try_into()
            && let Ok(hasher) = Sha256::deserialize(serialized)
        {
            self.hasher = hasher;
            return Ok(());
        }
        // The state was produced by this very process; failing to read it
        // back means starting over, which is always safe.
        self.reset()
    }

    /// Records the checkpoint in the sidecar, after the bytes it vouches
    /// for are on the disk: a power cut must never leave a sidecar
    /// claiming bytes the partial does not hold.
    pub(crate) fn save_checkpoint(&mut self) -> Result<(), DownloadError> {
        if self.pos == 0 {
            self.checkpoint = (0, Sha256::new().serialize().to_vec());
        } else {
            self.file
                .sync_data()
                .map_err(|e| file_error("flush to disk", &self.path, e))?;
        }
        let (sha256, size, chunk_size) = self.expected;
        let state = Sidecar {
            format: SIDECAR_FORMAT,
            sha256,
            size,
            chunk_size,
            checkpoint: self.checkpoint.0,
            hash_state: hex::encode(&self.checkpoint.1),
            etag: self.etag.clone(),
            source: self.source.clone(),
        };
        // Serialising plain data cannot fail.
        let text = serde_json::to_vec(&state).unwrap_or_default();
        write_atomic("download state", &self.sidecar, &text, Visibility::Normal)?;
        Ok(())
    }

    /// Checks the whole-file hash; on success the file goes into place.
    pub(crate) fn finish(self, spec: &FileSpec, dest: &Path) -> Result<(), DownloadError> {
        let calculated = Sha256Digest::from_bytes(self.hasher.clone().finalize().into());
        if self.pos != spec.size || calculated != spec.sha256 {
            drop(self.file);
            remove_if_exists("partial download", &self.path)?;
            remove_if_exists("download state", &self.sidecar)?;
            return Err(DownloadError::ChecksumMismatch {
                label: spec.label.clone(),
                expected: spec.sha256,
                calculated,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| file_error("flush to disk", &self.path, e))?;
        drop(self.file);
        std::fs::rename(&self.path, dest).map_err(|e| file_error("move into place", dest, e))?;
        remove_if_exists("download state", &self.sidecar)?;
        if let Some(dir) = dest.parent() {
            sync_dir(dir).map_err(|e| file_error("flush the folder of", dest, e))?;
        }
        Ok(())
    }
}
