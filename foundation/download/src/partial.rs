//! The resumable partial file on disk: `<dest>.partial`, hashed as it is
//! written (by the workers in `hashing`), with its sidecar
//! `<dest>.partial.json` recording a checkpoint (an offset and the SHA-256
//! state after exactly that many bytes, written by the `checkpointer`), so
//! a resume truncates to the checkpoint and continues the hash. It knows
//! files and hashes, never the network.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, TryRecvError};

use bytes::Bytes;
use jarvis_durable::{read_optional, remove_if_exists, sync_dir};
use serde::{Deserialize, Serialize};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256};

use crate::checkpointer::Checkpointer;
use crate::hashing::HashWorker;
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

/// The partial file being filled. Bytes are written here and handed to
/// hash workers (the whole file, and the current chunk); at each checkpoint
/// boundary the workers' answers are collected without waiting, a chunk
/// that fails its hash sends the partial back to the last good checkpoint,
/// and a good one is recorded by the checkpointer thread.
pub(crate) struct Partial {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) sidecar: PathBuf,
    pub(crate) pos: u64,
    whole: HashWorker,
    /// Only with per-chunk hashes.
    chunk: Option<HashWorker>,
    /// Boundaries written whose verdicts have not all come back.
    pending: VecDeque<Boundary>,
    checkpointer: Checkpointer,
    /// The last verified checkpoint: offset and the whole-file hash there.
    checkpoint: (u64, Sha256),
    interval: u64,
    pub(crate) etag: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) fetched: u64,
    /// What the sidecar must match: digest, size, chunk size.
    expected: (Sha256Digest, u64, Option<u64>),
}

/// A checkpoint boundary written, with the workers' answers as they come.
struct Boundary {
    pos: u64,
    /// Chunk index and its digest (with per-chunk hashes).
    chunk: Option<(u64, Answer<[u8; 32]>)>,
    whole: Answer<Sha256>,
}

/// A worker's answer: still to come, or here.
enum Answer<T> {
    Waiting(Receiver<T>),
    Here(T),
}

impl<T> Answer<T> {
    /// True once the answer is here (waiting for it when `block`).
    fn poll(&mut self, block: bool) -> Result<bool, DownloadError> {
        if let Self::Waiting(receiver) = self {
            let answer = if block {
                receiver.recv().map_err(|_| DownloadError::HashingStopped)?
            } else {
                match receiver.try_recv() {
                    Ok(answer) => answer,
                    Err(TryRecvError::Empty) => return Ok(false),
                    Err(TryRecvError::Disconnected) => return Err(DownloadError::HashingStopped),
                }
            };
            *self = Self::Here(answer);
        }
        Ok(true)
    }
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
        // The checkpointer's own handle, opened by name (a write handle:
        // Windows flushes only through one).
        let handle = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| file_error("open", &path, e))?;
        let mut partial = Self {
            file,
            checkpointer: Checkpointer::spawn(handle, path.clone(), sidecar.clone())?,
            path,
            sidecar,
            pos: 0,
            whole: HashWorker::spawn("download-hash", Sha256::new())?,
            chunk: if chunked {
                Some(HashWorker::spawn("download-chunk-hash", Sha256::new())?)
            } else {
                None
            },
            pending: VecDeque::new(),
            checkpoint: (0, Sha256::new()),
            interval,
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
        let Ok(mut hasher) = Sha256::deserialize(serialized) else {
            return Ok(false);
        };
        let mut at = state.checkpoint;
        if let Some(chunks) = spec.chunks.as_ref().filter(|c| c.size > 0) {
            // Re-verify the last chunk before the checkpoint: it is the one
            // a crash could have left half-written.
            if at > 0 {
                let index = (at - 1) / chunks.size;
                let start = index * chunks.size;
                if self.verified_chunk_on_disk(spec, start, at)?.is_none() {
                    tracing::warn!(
                        index,
                        "the last chunk of the partial download is corrupt; starting over"
                    );
                    return Ok(false);
                }
            }
            // Checkpoints are recorded behind the network; whole chunks
            // past the last one that match their hashes need no refetch.
            let recovered = at;
            while at % chunks.size == 0 && at < spec.size {
                let end = (at + chunks.size).min(spec.size);
                if end > len {
                    break;
                }
                let Some(piece) = self.verified_chunk_on_disk(spec, at, end)? else {
                    break;
                };
                hasher.update(&piece);
                at = end;
            }
            if at > recovered {
                tracing::info!(
                    from = recovered,
                    to = at,
                    "verified chunks past the last checkpoint"
                );
            }
        }
        self.truncate_to(at)?;
        self.whole.set(hasher.clone())?;
        self.checkpoint = (at, hasher);
        self.etag = state.etag;
        self.source = state.source;
        if at > state.checkpoint {
            self.save_checkpoint()?;
        }
        Ok(true)
    }

    /// Bytes `start..end` on disk, when they are the chunk starting at
    /// `start` (its hash matches).
    fn verified_chunk_on_disk(
        &mut self,
        spec: &FileSpec,
        start: u64,
        end: u64,
    ) -> Result<Option<Vec<u8>>, DownloadError> {
        let Some(chunks) = spec.chunks.as_ref().filter(|c| c.size > 0) else {
            return Ok(None);
        };
        let mut piece = vec![0u8; (end - start) as usize];
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.read_exact(&mut piece))
            .map_err(|e| file_error("read", &self.path, e))?;
        let expected = chunks.sha256.get((start / chunks.size) as usize);
        Ok((expected == Some(&Sha256Digest::of(&piece))).then_some(piece))
    }

    /// Throws away everything and starts at byte 0.
    pub(crate) fn reset(&mut self) -> Result<(), DownloadError> {
        self.checkpointer.discard_and_settle()?;
        self.truncate_to(0)?;
        self.restart_workers_at(Sha256::new())?;
        self.checkpoint = (0, Sha256::new());
        self.etag = None;
        self.save_checkpoint()?;
        self.checkpointer.settle()
    }

    /// Forgets every pending boundary; the workers continue from `whole`.
    fn restart_workers_at(&mut self, whole: Sha256) -> Result<(), DownloadError> {
        self.pending.clear();
        self.whole.set(whole)?;
        if let Some(chunk) = &self.chunk {
            chunk.set(Sha256::new())?;
        }
        Ok(())
    }

    pub(crate) fn truncate_to(&mut self, pos: u64) -> Result<(), DownloadError> {
        self.file
            .set_len(pos)
            .and_then(|()| self.file.seek(SeekFrom::Start(pos)).map(|_| ()))
            .map_err(|e| file_error("truncate", &self.path, e))?;
        self.pos = pos;
        Ok(())
    }

    /// Appends `data` and hands it to the hash workers, marking each
    /// checkpoint boundary; verdicts that have come back are acted on.
    pub(crate) fn write(
        &mut self,
        data: &Bytes,
        spec: &FileSpec,
        url: &str,
    ) -> Result<(), DownloadError> {
        let mut offset = 0;
        while offset < data.len() {
            let remaining = data.len() - offset;
            if self.pos + remaining as u64 > spec.size {
                return Err(DownloadError::TooMuchData {
                    url: url.to_owned(),
                    label: spec.label.clone(),
                    expected: spec.size,
                });
            }
            let boundary = ((self.pos / self.interval) + 1)
                .saturating_mul(self.interval)
                .min(spec.size);
            let take = usize::try_from(boundary - self.pos).map_or(remaining, |n| n.min(remaining));
            let piece = data.slice(offset..offset + take);
            self.file.write_all(&piece).map_err(|e| {
                if e.raw_os_error() == Some(28) {
                    self.disk_full(spec)
                } else {
                    file_error("write", &self.path, e)
                }
            })?;
            if let Some(chunk) = &self.chunk {
                chunk.update(piece.clone())?;
            }
            self.whole.update(piece)?;
            self.pos += take as u64;
            self.fetched += take as u64;
            offset += take;
            if self.pos == boundary {
                self.mark_boundary(spec, url)?;
            }
        }
        self.collect_verdicts(spec, url, false)
    }

    fn mark_boundary(&mut self, spec: &FileSpec, url: &str) -> Result<(), DownloadError> {
        // The workers get a whole interval to answer for the previous
        // boundary; waiting for it here bounds what a bad chunk costs (it
        // and the one after it) and how far checkpoints trail.
        if !self.pending.is_empty() {
            self.collect_verdicts(spec, url, true)?;
        }
        let chunk = match (&self.chunk, &spec.chunks) {
            (Some(worker), Some(chunks)) => Some((
                (self.pos - 1) / chunks.size,
                Answer::Waiting(worker.digest_and_reset()?),
            )),
            _ => None,
        };
        self.pending.push_back(Boundary {
            pos: self.pos,
            chunk,
            whole: Answer::Waiting(self.whole.snapshot()?),
        });
        Ok(())
    }

    /// Acts on the boundaries whose answers are in, oldest first; with
    /// `block`, waits for all of them (the end of an attempt, or the
    /// previous boundary's answers when the next is marked).
    pub(crate) fn collect_verdicts(
        &mut self,
        spec: &FileSpec,
        url: &str,
        block: bool,
    ) -> Result<(), DownloadError> {
        loop {
            let Some(front) = self.pending.front_mut() else {
                return Ok(());
            };
            let chunk_here = match &mut front.chunk {
                Some((_, answer)) => answer.poll(block)?,
                None => true,
            };
            if !chunk_here || !front.whole.poll(block)? {
                return Ok(());
            }
            let Some(Boundary { pos, chunk, whole }) = self.pending.pop_front() else {
                break;
            };
            if let (Some((index, Answer::Here(digest))), Some(chunks)) = (chunk, &spec.chunks)
                && chunks.sha256.get(index as usize) != Some(&Sha256Digest::from_bytes(digest))
            {
                self.back_to_checkpoint()?;
                return Err(DownloadError::ChunkMismatch {
                    url: url.to_owned(),
                    label: spec.label.clone(),
                    index,
                });
            }
            if let Answer::Here(state) = whole {
                self.checkpoint = (pos, state);
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

    /// Cuts the partial back to the last verified checkpoint.
    pub(crate) fn back_to_checkpoint(&mut self) -> Result<(), DownloadError> {
        // Only verified checkpoints are ever recorded, so the sidecar never
        // claims more than what stays.
        self.checkpointer.settle()?;
        let (pos, state) = self.checkpoint.clone();
        self.truncate_to(pos)?;
        self.restart_workers_at(state)
    }

    /// Queues the checkpoint for the sidecar; the checkpointer writes it
    /// after the bytes it vouches for are on the disk: a power cut must
    /// never leave a sidecar claiming bytes the partial does not hold.
    fn save_checkpoint(&mut self) -> Result<(), DownloadError> {
        let (sha256, size, chunk_size) = self.expected;
        let state = Sidecar {
            format: SIDECAR_FORMAT,
            sha256,
            size,
            chunk_size,
            checkpoint: self.checkpoint.0,
            hash_state: hex::encode(self.checkpoint.1.serialize()),
            etag: self.etag.clone(),
            source: self.source.clone(),
        };
        // Serialising plain data cannot fail.
        self.checkpointer
            .submit(serde_json::to_vec(&state).unwrap_or_default())
    }

    /// Checks the whole-file hash; on success the file goes into place.
    pub(crate) fn finish(mut self, spec: &FileSpec, dest: &Path) -> Result<(), DownloadError> {
        let source = self.source.clone().unwrap_or_default();
        self.collect_verdicts(spec, &source, true)?;
        let state = self
            .whole
            .snapshot()?
            .recv()
            .map_err(|_| DownloadError::HashingStopped)?;
        let calculated = Sha256Digest::from_bytes(state.finalize().into());
        let settled = self.checkpointer.settle();
        self.checkpointer.stop();
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
        settled?;
        self.file
            .sync_all()
            .map_err(|e| file_error("flush to disk", &self.path, e))?;
        std::fs::rename(&self.path, dest).map_err(|e| file_error("move into place", dest, e))?;
        remove_if_exists("download state", &self.sidecar)?;
        if let Some(dir) = dest.parent() {
            sync_dir(dir).map_err(|e| file_error("flush the folder of", dest, e))?;
        }
        Ok(())
    }
}
