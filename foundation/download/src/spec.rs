//! What to fetch (a file's sources, size, SHA-256 and optional chunk
//! hashes), how (options), and what a fetch did.

use std::time::Duration;

use serde::Serialize;

use crate::Sha256Digest;

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
