//! The one downloader Jarvis uses, for models and app updates alike.
//!
//! It follows rustup's design and adds resumable hashing:
//! - Bytes stream into `<file>.partial`. The same buffers go, uncopied, to
//!   hash workers on their own threads (the whole file, and the current
//!   chunk), so receiving, writing and hashing overlap. A sidecar
//!   `<file>.partial.json` (replaced atomically by a checkpointer thread,
//!   always after an `fdatasync` of the partial) records the expected file,
//!   the server's `ETag` and a *checkpoint*: an offset and the SHA-256 state
//!   after exactly that many bytes. A resume truncates the partial to the
//!   checkpoint, restores the hash state and continues; with per-chunk
//!   hashes it first keeps every whole chunk past the checkpoint that
//!   matches its hash, so a killed download refetches at most the chunk in
//!   flight (without them, one checkpoint interval, 8 MiB, plus what the
//!   disk had not yet acknowledged).
//! - A resume sends `Range` (and `If-Range` with the `ETag`) and accepts only
//!   `206` with a matching `Content-Range`; a server that ignores `Range`
//!   (`200`) restarts the file cleanly.
//! - With per-chunk hashes, each chunk is checked as it completes: a corrupt
//!   chunk is cut off and refetched alone, and a resume re-verifies only the
//!   last chunk before the checkpoint. The whole-file SHA-256 always decides.
//! - Network failures, `5xx`/`429` and stalls (no bytes for a while) keep
//!   the partial and retry with backoff, across all sources. A checksum
//!   mismatch or a server sending more than the expected size discards the
//!   bad data and says so. A full disk keeps the partial and says how much
//!   space is needed where.
//! - Only after the whole-file hash matched is the partial `fsync`ed and
//!   renamed into place (and its folder `fsync`ed).
//! - `file://` sources go through the same verification (mirrors, USB
//!   sticks, tests).

mod checkpointer;
mod digest;
mod hashing;
mod partial;
mod progress;
mod spec;
mod transfer;

pub use digest::{BadDigest, Sha256Digest};
pub use partial::partial_paths;
pub use progress::{DownloadState, NoProgress, Progress, ProgressSink, human_bytes};
pub use spec::{Chunks, DownloadOptions, FetchOutcome, FileSpec};
pub use transfer::Downloader;

use std::path::PathBuf;

/// Makes `ring` the TLS crypto provider of this process (for every
/// `reqwest` client, not only the downloader's). Call once at start-up;
/// calling again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a download failed. Messages say what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "network error while downloading '{url}': {message}; the partial download was kept, run the same command again to resume"
    )]
    Network { url: String, message: String },

    #[error("'{url}' answered HTTP {status}")]
    HttpStatus { url: String, status: u16 },

    #[error("'{url}' sent no data for {seconds}s; the partial download was kept for resumption")]
    Stalled { url: String, seconds: u64 },

    #[error(
        "'{url}' answered a resume with Content-Range '{content_range}', expected bytes {expected_start}-{expected_end}/{expected_total}"
    )]
    BadContentRange {
        url: String,
        content_range: String,
        expected_start: u64,
        expected_end: u64,
        expected_total: u64,
    },

    #[error(
        "'{url}' sent more than the {expected} bytes expected for '{label}'; the download was discarded"
    )]
    TooMuchData {
        url: String,
        label: String,
        expected: u64,
    },

    #[error("chunk {index} of '{label}' from '{url}' failed its checksum; it is fetched again")]
    ChunkMismatch {
        url: String,
        label: String,
        index: u64,
    },

    #[error(
        "checksum failed for '{label}', expected: '{expected}', calculated: '{calculated}'; the corrupt download was discarded"
    )]
    ChecksumMismatch {
        label: String,
        expected: Sha256Digest,
        calculated: Sha256Digest,
    },

    #[error("'{path}' is {actual} bytes, but '{label}' must be {expected} bytes")]
    WrongSize {
        label: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error(
        "not enough disk space in '{dir}': '{label}' needs {} more, only {} is free; the partial download was kept",
        human_bytes(*needed),
        human_bytes(*available)
    )]
    DiskFull {
        label: String,
        dir: PathBuf,
        needed: u64,
        available: u64,
    },

    #[error("unsupported source '{0}' (only http://, https:// and file:// work)")]
    UnsupportedSource(String),

    #[error("'{label}' has no source to download it from")]
    NoSource { label: String },

    #[error(
        "could not download '{label}' after {attempts} attempts; the last one failed with: {last}"
    )]
    GaveUp {
        label: String,
        attempts: u32,
        last: Box<DownloadError>,
    },

    #[error(
        "a download's hashing thread stopped unexpectedly; the partial download was kept, run the same command again to resume"
    )]
    HashingStopped,

    #[error(transparent)]
    File(#[from] jarvis_durable::FileError),
}

impl DownloadError {
    /// Worth another attempt (from the same or another source).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network { .. }
            | Self::Stalled { .. }
            | Self::BadContentRange { .. }
            | Self::ChunkMismatch { .. } => true,
            Self::HttpStatus { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// An I/O failure on a download's file.
pub(crate) fn file_error(
    action: &'static str,
    path: &std::path::Path,
    source: std::io::Error,
) -> DownloadError {
    DownloadError::File(jarvis_durable::FileError {
        action,
        role: "download",
        path: path.to_owned(),
        source,
    })
}
