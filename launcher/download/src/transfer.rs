//! The transfer itself: the partial file, its checkpoints, and the HTTP and
//! `file://` sources that fill it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jarvis_durable::{
    FileError, Visibility, read_optional, remove_if_exists, sync_dir, write_atomic,
};
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use serde::{Deserialize, Serialize};
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256};

use crate::progress::RateMeter;
use crate::{DownloadError, DownloadState, Progress, ProgressSink, Sha256Digest};

/// One file to fetch and what it must be.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// For messages and progress (`smollm2 0.1.2: model.gguf`).
    pub label: String,
    /// Tried in order, round robin on failure.
    pub sources: Vec<String>,
    pub size: u64,
    pub sha256: Sha256Digest,
    pub chunks: Option<Chunks>,
}

/// Per-chunk hashes: chunk `i` covers `[i*size, min((i+1)*size, file size))`.
#[derive(Debug, Clone)]
pub struct Chunks {
    pub size: u64,
    pub sha256: Vec<Sha256Digest>,
}

/// Tuning; the defaults suit real networks, tests shorten the waits.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// No bytes for this long counts as a failed attempt.
    pub stall_timeout: Duration,
    /// Attempts over all sources before giving up.
    pub max_attempts: u32,
    /// First wait between attempts; doubles up to `max_retry_delay`.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// Checkpoint interval for files without chunk hashes.
    pub checkpoint_bytes: u64,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_secs(30),
            max_attempts: 8,
            retry_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(10),
            checkpoint_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What a fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FetchOutcome {
    /// Bytes received from sources during this call.
    pub bytes_fetched: u64,
    /// Offset a previous partial download was resumed from.
    pub resumed_from: u64,
    /// The file was already in place and verified; nothing was fetched.
    pub already_present: bool,
}

/// `<dest>.partial` and its sidecar `<dest>.partial.json`.
pub fn partial_paths(dest: &Path) -> (PathBuf, PathBuf) {
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let mut sidecar = partial.clone();
    sidecar.push(".json");
    (PathBuf::from(partial), PathBuf::from(sidecar))
}

/// Fetches files into place, verified.
#[derive(Debug, Clone)]
pub struct Downloader {
    http: reqwest::Client,
    options: DownloadOptions,
}

impl Downloader {
    pub fn new(options: DownloadOptions) -> Result<Self, DownloadError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("jarvis/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| DownloadError::Network {
                url: String::new(),
                message: format!("could not create the HTTP client: {e}"),
            })?;
        Ok(Self { http, options })
    }

    /// Fetches `spec` to `dest`, resuming a partial download when one is
    /// there, verifying everything. `dest` appears only when complete and
    /// verified.
    pub async fn fetch(
        &self,
        spec: &FileSpec,
        dest: &Path,
        progress: &dyn ProgressSink,
    ) -> Result<FetchOutcome, DownloadError> {
        let mut reporter = Reporter::new(spec, progress);
        reporter.report(DownloadState::Checking, 0);
        if let Some(outcome) = already_present(spec, dest)? {
            reporter.report(DownloadState::Done, spec.size);
            return Ok(outcome);
        }
        if spec.sources.is_empty() {
            return Err(DownloadError::NoSource {
                label: spec.label.clone(),
            });
        }
        let mut partial = Partial::open(spec, dest, &self.options)?;
        let resumed_from = partial.pos;
        if resumed_from > 0 {
            tracing::info!(label = %spec.label, offset = resumed_from, "resuming a partial download");
        }
        check_space(spec, dest, spec.size - partial.pos)?;

        let mut attempt = 0u32;
        let mut source_index = 0usize;
        while partial.pos < spec.size {
            let source = &spec.sources[source_index % spec.sources.len()];
            attempt += 1;
            reporter.report(DownloadState::Downloading, partial.pos);
            let result = if source.starts_with("file:") {
                copy_file(&mut partial, spec, source, &mut reporter)
            } else if source.starts_with("http://") || source.starts_with("https://") {
                self.fetch_http(&mut partial, spec, source, &mut reporter)
                    .await
            } else {
                Err(DownloadError::UnsupportedSource(source.clone()))
            };
            let Err(error) = result else { continue };
            tracing::warn!(label = %spec.label, %source, attempt, %error, "download attempt failed");
            if matches!(error, DownloadError::TooMuchData { .. }) {
                partial.reset()?;
            }
            let last_source = source_index + 1 >= spec.sources.len();
            if !error.is_retryable() && last_source {
                let reason = error.to_string();
                reporter.report(DownloadState::Failed { reason }, partial.pos);
                return Err(error);
            }
            source_index += 1;
            if attempt >= self.options.max_attempts {
                reporter.report(
                    DownloadState::Failed {
                        reason: error.to_string(),
                    },
                    partial.pos,
                );
                return Err(DownloadError::GaveUp {
                    label: spec.label.clone(),
                    attempts: attempt,
                    last: Box::new(error),
                });
            }
            if error.is_retryable() {
                let delay = backoff(&self.options, attempt);
                reporter.report(
                    DownloadState::Retrying {
                        attempt,
                        reason: error.to_string(),
                    },
                    partial.pos,
                );
                tokio::time::sleep(delay).await;
            }
        }
        reporter.report(DownloadState::Verifying, partial.pos);
        let fetched = partial.fetched;
        partial.finish(spec, dest)?;
        reporter.report(DownloadState::Done, spec.size);
        Ok(FetchOutcome {
            bytes_fetched: fetched,
            resumed_from,
            already_present: false,
        })
    }

    async fn fetch_http(
        &self,
        partial: &mut Partial,
        spec: &FileSpec,
        url: &str,
        reporter: &mut Reporter<'_>,
    ) -> Result<(), DownloadError> {
        let stall = self.options.stall_timeout;
        let stalled = || DownloadError::Stalled {
            url: url.to_owned(),
            seconds: stall.as_secs().max(1),
        };
        let network = |e: &dyn std::error::Error| DownloadError::Network {
            url: url.to_owned(),
            message: error_chain(e),
        };
        let mut request = self.http.get(url);
        if partial.pos > 0 {
            request = request.header(RANGE, format!("bytes={}-", partial.pos));
            if let Some(etag) = &partial.etag {
                request = request.header(IF_RANGE, etag);
            }
        }
        let mut response = tokio::time::timeout(stall, request.send())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| network(&e))?;
        match response.status().as_u16() {
            206 => {
                let content_range = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let expected = format!("bytes {}-{}/{}", partial.pos, spec.size - 1, spec.size);
                if content_range != expected {
                    let error = DownloadError::BadContentRange {
                        url: url.to_owned(),
                        content_range,
                        expected_start: partial.pos,
                        expected_end: spec.size - 1,
                        expected_total: spec.size,
                    };
                    // We cannot trust what we resumed against: start over.
                    partial.reset()?;
                    return Err(error);
                }
            }
            200 => {
                if partial.pos > 0 {
                    tracing::info!(%url, "the server ignored the range request; restarting the file");
                    partial.reset()?;
                }
            }
            status => {
                return Err(DownloadError::HttpStatus {
                    url: url.to_owned(),
                    status,
                });
            }
        }
        if let Some(etag) = response.headers().get(ETAG).and_then(|v| v.to_str().ok()) {
            partial.etag = Some(etag.to_owned());
        }
        partial.source = Some(url.to_owned());
        loop {
            let chunk = tokio::time::timeout(stall, response.chunk())
                .await
                .map_err(|_| stalled())?
                .map_err(|e| network(&e))?;
            let Some(bytes) = chunk else { break };
            partial.write(&bytes, spec, url)?;
            reporter.advance(bytes.len() as u64, partial.pos);
        }
        if partial.pos < spec.size {
            return Err(DownloadError::Network {
                url: url.to_owned(),
                message: format!(
                    "the connection closed after {} of {} bytes",
                    partial.pos, spec.size
                ),
            });
        }
        Ok(())
    }
}

/// Another attempt after a wait of `retry_delay * 2^(attempt-1)`, capped.
fn backoff(options: &DownloadOptions, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    options
        .retry_delay
        .saturating_mul(factor)
        .min(options.max_retry_delay)
}

fn already_present(spec: &FileSpec, dest: &Path) -> Result<Option<FetchOutcome>, DownloadError> {
    let Ok(meta) = std::fs::metadata(dest) else {
        return Ok(None);
    };
    if meta.len() == spec.size
        && Sha256Digest::of_file(dest).map_err(|e| file_error("read", dest, e))? == spec.sha256
    {
        return Ok(Some(FetchOutcome {
            bytes_fetched: 0,
            resumed_from: 0,
            already_present: true,
        }));
    }
    tracing::warn!(path = %dest.display(), "replacing a file that does not match its checksum");
    remove_if_exists("downloaded file", dest)?;
    Ok(None)
}

fn check_space(spec: &FileSpec, dest: &Path, needed: u64) -> Result<(), DownloadError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let available =
        fs4::available_space(dir).map_err(|e| file_error("check free space for", dir, e))?;
    if available < needed {
        return Err(DownloadError::DiskFull {
            label: spec.label.clone(),
            dir: dir.to_owned(),
            needed,
            available,
        });
    }
    Ok(())
}

fn copy_file(
    partial: &mut Partial,
    spec: &FileSpec,
    source: &str,
    reporter: &mut Reporter<'_>,
) -> Result<(), DownloadError> {
    let path = url::Url::parse(source)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| DownloadError::UnsupportedSource(source.to_owned()))?;
    let mut file = File::open(&path).map_err(|e| file_error("open", &path, e))?;
    let actual = file
        .metadata()
        .map_err(|e| file_error("read", &path, e))?
        .len();
    if actual != spec.size {
        return Err(DownloadError::WrongSize {
            label: spec.label.clone(),
            path,
            expected: spec.size,
            actual,
        });
    }
    file.seek(SeekFrom::Start(partial.pos))
        .map_err(|e| file_error("read", &path, e))?;
    partial.source = Some(source.to_owned());
    let mut buf = vec![0u8; 1 << 20];
    while partial.pos < spec.size {
        let n = file
            .read(&mut buf)
            .map_err(|e| file_error("read", &path, e))?;
        if n == 0 {
            break;
        }
        partial.write(&buf[..n], spec, source)?;
        reporter.advance(n as u64, partial.pos);
    }
    Ok(())
}

/// On-disk state beside the partial file.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    format: u32,
    sha256: Sha256Digest,
    size: u64,
    chunk_size: Option<u64>,
    /// Bytes at the start of the partial that the hash state covers.
    checkpoint: u64,
    /// Serialised SHA-256 state after `checkpoint` bytes (hex).
    hash_state: String,
    etag: Option<String>,
    source: Option<String>,
}

const SIDECAR_FORMAT: u32 = 1;

/// The partial file being filled, with its hash state.
struct Partial {
    file: File,
    path: PathBuf,
    sidecar: PathBuf,
    pos: u64,
    hasher: Sha256,
    chunk_hasher: Sha256,
    /// The last checkpoint: offset and serialised hash state there.
    checkpoint: (u64, Vec<u8>),
    interval: u64,
    chunked: bool,
    etag: Option<String>,
    source: Option<String>,
    fetched: u64,
    /// What the sidecar must match: digest, size, chunk size.
    expected: (Sha256Digest, u64, Option<u64>),
}

impl Partial {
    fn open(
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
    fn resume(&mut self, spec: &FileSpec) -> Result<bool, DownloadError> {
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
        let Some(raw) = decode_hex(&state.hash_state) else {
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
    fn reset(&mut self) -> Result<(), DownloadError> {
        self.truncate_to(0)?;
        self.hasher = Sha256::new();
        self.chunk_hasher = Sha256::new();
        self.etag = None;
        self.save_checkpoint()
    }

    fn truncate_to(&mut self, pos: u64) -> Result<(), DownloadError> {
        self.file
            .set_len(pos)
            .and_then(|()| self.file.seek(SeekFrom::Start(pos)).map(|_| ()))
            .map_err(|e| file_error("truncate", &self.path, e))?;
        self.pos = pos;
        Ok(())
    }

    /// Appends `data`, hashing it, checking chunks and checkpointing at each
    /// boundary.
    fn write(&mut self, mut data: &[u8], spec: &FileSpec, url: &str) -> Result<(), DownloadError> {
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

    fn disk_full(&self, spec: &FileSpec) -> DownloadError {
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_owned();
        DownloadError::DiskFull {
            label: spec.label.clone(),
            available: fs4::available_space(&dir).unwrap_or(0),
            dir,
            needed: spec.size - self.pos,
        }
    }

    fn back_to_checkpoint(&mut self) -> Result<(), DownloadError> {
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

    fn save_checkpoint(&mut self) -> Result<(), DownloadError> {
        if self.pos == 0 {
            self.checkpoint = (0, Sha256::new().serialize().to_vec());
        }
        let (sha256, size, chunk_size) = self.expected;
        let state = Sidecar {
            format: SIDECAR_FORMAT,
            sha256,
            size,
            chunk_size,
            checkpoint: self.checkpoint.0,
            hash_state: encode_hex(&self.checkpoint.1),
            etag: self.etag.clone(),
            source: self.source.clone(),
        };
        // Serialising plain data cannot fail.
        let text = serde_json::to_vec(&state).unwrap_or_default();
        write_atomic("download state", &self.sidecar, &text, Visibility::Normal)?;
        Ok(())
    }

    /// Checks the whole-file hash; on success the file goes into place.
    fn finish(self, spec: &FileSpec, dest: &Path) -> Result<(), DownloadError> {
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

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn file_error(action: &'static str, path: &Path, source: std::io::Error) -> DownloadError {
    DownloadError::File(FileError {
        action,
        role: "download",
        path: path.to_owned(),
        source,
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Turns byte counts into throttled [`Progress`] reports.
struct Reporter<'a> {
    label: String,
    total: u64,
    sink: &'a dyn ProgressSink,
    meter: RateMeter,
}

impl<'a> Reporter<'a> {
    fn new(spec: &FileSpec, sink: &'a dyn ProgressSink) -> Self {
        Self {
            label: spec.label.clone(),
            total: spec.size,
            sink,
            meter: RateMeter::new(),
        }
    }

    fn advance(&mut self, bytes: u64, done: u64) {
        if self.meter.add(bytes) {
            self.report(DownloadState::Downloading, done);
        }
    }

    fn report(&mut self, state: DownloadState, done: u64) {
        self.sink.report(&Progress {
            label: self.label.clone(),
            state,
            bytes_done: done,
            bytes_total: self.total,
            bytes_per_second: self.meter.rate,
            eta_seconds: self.meter.eta(self.total.saturating_sub(done)),
        });
    }
}
