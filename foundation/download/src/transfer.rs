//! The transfer loop: sources tried in turn (HTTP with `Range`/`If-Range`
//! resumes, or `file://`), retries with backoff on network failures, stall
//! detection, disk-space checks, and progress; the bytes go into a
//! [`Partial`](crate::partial::Partial).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use jarvis_durable::remove_if_exists;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};

use crate::partial::Partial;
use crate::progress::RateMeter;
use crate::spec::{DownloadOptions, FetchOutcome, FileSpec};
use crate::{DownloadError, DownloadState, Progress, ProgressSink, Sha256Digest, file_error};

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
            // Keep what was verified before the failure as a checkpoint.
            if let Err(e) = partial.collect_verdicts(spec, source, true) {
                tracing::warn!(label = %spec.label, error = %e, "a chunk before the failure was bad too");
            }
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
        partial.collect_verdicts(spec, url, true)?;
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

/// Bytes per read from a `file://` source.
const READ_SIZE: usize = 256 * 1024;

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
    while partial.pos < spec.size {
        // A fresh buffer each time: the hash workers hold on to the last.
        let mut buf = vec![0u8; READ_SIZE];
        let n = file
            .read(&mut buf)
            .map_err(|e| file_error("read", &path, e))?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        partial.write(&Bytes::from(buf), spec, source)?;
        reporter.advance(n as u64, partial.pos);
    }
    partial.collect_verdicts(spec, source, true)
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
