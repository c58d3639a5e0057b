//! Progress of long work, as events a CLI bar or the UI can render.

use std::time::Duration;

use serde::Serialize;

/// What a download is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DownloadState {
    /// Checking what is already on disk (resuming re-verifies).
    Checking,
    Downloading,
    /// Waiting before another attempt.
    Retrying {
        attempt: u32,
        reason: String,
    },
    /// Computing or comparing the final checksum.
    Verifying,
    Done,
    Failed {
        reason: String,
    },
}

/// One progress report.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// What is being fetched, for people (`smollm2 0.1.2: model.gguf`).
    pub label: String,
    #[serde(flatten)]
    pub state: DownloadState,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Recent rate, bytes per second.
    pub bytes_per_second: f64,
    /// Estimated time left, when the rate is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
}

/// Where progress goes. Called from the download task; keep it cheap.
pub trait ProgressSink: Send + Sync {
    fn report(&self, progress: &Progress);
}

/// Discards progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _: &Progress) {}
}

/// Rate and ETA over a sliding window, throttled to a few reports a second.
#[derive(Debug)]
pub(crate) struct RateMeter {
    window_start: std::time::Instant,
    window_bytes: u64,
    last_report: Option<std::time::Instant>,
    pub(crate) rate: f64,
}

impl RateMeter {
    pub(crate) fn new() -> Self {
        Self {
            window_start: std::time::Instant::now(),
            window_bytes: 0,
            last_report: None,
            rate: 0.0,
        }
    }

    /// Counts bytes; true when it is time to report.
    pub(crate) fn add(&mut self, bytes: u64) -> bool {
        self.window_bytes += bytes;
        let elapsed = self.window_start.elapsed();
        if elapsed >= Duration::from_millis(500) {
            self.rate = self.window_bytes as f64 / elapsed.as_secs_f64();
            self.window_start = std::time::Instant::now();
            self.window_bytes = 0;
        }
        let due = self
            .last_report
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if due {
            self.last_report = Some(std::time::Instant::now());
        }
        due
    }

    pub(crate) fn eta(&self, remaining: u64) -> Option<f64> {
        (self.rate > 0.0).then(|| remaining as f64 / self.rate)
    }
}

/// `1.5 GiB`-style sizes for messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
