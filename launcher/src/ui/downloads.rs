//! Catalog downloads started from the UI: one job per model, with live
//! progress, pause (the partial file and its checkpoint stay), resume and
//! cancel (the partial is removed).
//!
//! Which downloads were running is kept in `<data>/ui-downloads.json`, so
//! a download that a quit, a crash or a power cut interrupted resumes at
//! the next start, from the bytes already on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jarvis_download::{DownloadState, Progress, ProgressSink};
use jarvis_durable::{Visibility, read_optional, write_atomic};
use jarvis_model_registry::install::Installer;
use jarvis_model_registry::{ModelEntry, ModelStore};
use serde::Serialize;

use crate::models::downloader;

/// No new bytes for this long while running is shown as a stall.
pub const STALL_AFTER: Duration = Duration::from_secs(5);

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Running,
    Paused,
    Failed,
    Done,
}

/// What the UI shows for one download.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub name: String,
    pub version: String,
    pub status: JobStatus,
    /// The downloader's phase (`downloading`, `retrying`, `verifying`...).
    pub phase: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub bytes_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    /// Running, but no byte arrived for [`STALL_AFTER`].
    pub stalled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug)]
struct Job {
    entry: ModelEntry,
    status: JobStatus,
    phase: String,
    /// Bytes already on disk when the job started (shown until the first
    /// report).
    staged_at_start: u64,
    /// Bytes on disk per file label, from the downloader's reports.
    files: BTreeMap<String, u64>,
    bytes_per_second: f64,
    eta_seconds: Option<f64>,
    last_change: Instant,
    error: Option<String>,
    /// Stops the running download (dropping its future keeps the partial
    /// file and its checkpoint).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// All UI downloads of this launcher.
#[derive(Debug)]
pub struct Downloads {
    store: ModelStore,
    intent_file: PathBuf,
    jobs: Mutex<BTreeMap<String, Job>>,
}

impl Downloads {
    pub fn new(store: ModelStore, data_dir: &std::path::Path) -> Arc<Self> {
        Arc::new(Self {
            store,
            intent_file: data_dir.join("ui-downloads.json"),
            jobs: Mutex::new(BTreeMap::new()),
        })
    }

    /// Restarts the downloads that were running when the last launcher
    /// stopped (their names are in the intent file), if the catalog still
    /// lists them and they are not installed yet.
    pub fn resume_interrupted(self: &Arc<Self>, catalog: &jarvis_model_registry::Catalog) {
        let names: BTreeSet<String> = read_optional("download list", &self.intent_file)
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        for name in names {
            let entry = jarvis_model_registry::ModelName::parse(&name)
                .ok()
                .and_then(|name| catalog.latest(&name));
            if let Some(entry) = entry
                && !self.store.is_installed(&entry.name, &entry.version)
            {
                tracing::info!("resuming the download of {name}");
                self.start(entry.clone());
            }
        }
        self.save_intent();
    }

    /// Starts (or resumes) the download of `entry`; a running one is left
    /// alone.
    pub fn start(self: &Arc<Self>, entry: ModelEntry) {
        let name = entry.name.to_string();
        {
            let mut jobs = self.lock();
            if jobs
                .get(&name)
                .is_some_and(|j| j.status == JobStatus::Running)
            {
                return;
            }
            jobs.insert(
                name.clone(),
                Job {
                    staged_at_start: self.store.staged_bytes(&entry),
                    files: BTreeMap::new(),
                    entry: entry.clone(),
                    status: JobStatus::Running,
                    phase: "starting".into(),
                    bytes_per_second: 0.0,
                    eta_seconds: None,
                    last_change: Instant::now(),
                    error: None,
                    stop: None,
                },
            );
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        if let Some(job) = self.lock().get_mut(&name) {
            job.stop = Some(stop_tx);
        }
        // Hashing and re-quantising are CPU work: on a thread of their own,
        // so the launcher (supervisor, UI) stays responsive meanwhile.
        let this = Arc::clone(self);
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let outcome = runtime.block_on(async {
                tokio::select! {
                    outcome = this.pull(&entry) => Some(outcome),
                    _ = stop_rx => None,
                }
            });
            if let Some(outcome) = outcome {
                this.finish(&name, outcome);
            }
        });
        self.save_intent();
    }

    async fn pull(self: &Arc<Self>, entry: &ModelEntry) -> anyhow::Result<()> {
        let downloader = downloader()?;
        let installer = Installer {
            store: &self.store,
            downloader: &downloader,
        };
        let sink = JobProgress {
            downloads: Arc::clone(self),
            name: entry.name.to_string(),
        };
        installer.pull(entry, &sink).await?;
        self.store.activate(&entry.name, &entry.version)?;
        Ok(())
    }

    fn finish(&self, name: &str, outcome: anyhow::Result<()>) {
        {
            let mut jobs = self.lock();
            if let Some(job) = jobs.get_mut(name) {
                job.stop = None;
                match outcome {
                    Ok(()) => {
                        job.status = JobStatus::Done;
                        job.phase = "done".into();
                        job.files = BTreeMap::from([(String::new(), job.entry.total_size())]);
                    }
                    Err(e) => {
                        tracing::warn!("download of {name} failed: {e:#}");
                        job.status = JobStatus::Failed;
                        job.phase = "failed".into();
                        job.error = Some(format!("{e:#}"));
                    }
                }
            }
        }
        self.save_intent();
    }

    /// Stops a running download; what is on disk stays for [`start`].
    pub fn pause(&self, name: &str) -> bool {
        let found = {
            let mut jobs = self.lock();
            match jobs.get_mut(name) {
                Some(job) if job.status == JobStatus::Running => {
                    if let Some(stop) = job.stop.take() {
                        let _ = stop.send(());
                    }
                    job.status = JobStatus::Paused;
                    job.phase = "paused".into();
                    job.bytes_per_second = 0.0;
                    job.eta_seconds = None;
                    true
                }
                _ => false,
            }
        };
        self.save_intent();
        found
    }

    /// Stops a download and removes its partial files.
    pub async fn cancel(&self, name: &str) -> anyhow::Result<bool> {
        let entry = {
            let mut jobs = self.lock();
            let Some(mut job) = jobs.remove(name) else {
                return Ok(false);
            };
            if let Some(stop) = job.stop.take() {
                let _ = stop.send(());
            }
            job.entry
        };
        self.save_intent();
        // The stopped download drops its staging lock once it reaches its
        // next await (hashing a large file can take a while); wait for it
        // rather than deleting files it may still hold open.
        for _ in 0..600 {
            match self.store.lock_staging(&entry.name, &entry.version) {
                Ok((dir, _lock)) => {
                    remove_dir_if_exists(&dir)?;
                    return Ok(true);
                }
                Err(jarvis_model_registry::RegistryError::Busy { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("the download of {name} is still busy; its files were kept")
    }

    /// The jobs, for the UI.
    pub fn views(&self) -> Vec<JobView> {
        let jobs = self.lock();
        jobs.iter()
            .map(|(name, job)| {
                let done = if job.files.is_empty() {
                    job.staged_at_start
                } else {
                    job.files.values().sum()
                };
                JobView {
                    name: name.clone(),
                    version: job.entry.version.to_string(),
                    status: job.status,
                    phase: job.phase.clone(),
                    bytes_done: done,
                    bytes_total: job.entry.total_size(),
                    bytes_per_second: job.bytes_per_second,
                    eta_seconds: job.eta_seconds,
                    stalled: job.status == JobStatus::Running
                        && job.last_change.elapsed() >= STALL_AFTER,
                    error: job.error.clone(),
                }
            })
            .collect()
    }

    fn report(&self, name: &str, progress: &Progress) {
        let mut jobs = self.lock();
        let Some(job) = jobs.get_mut(name) else {
            return;
        };
        if job.status != JobStatus::Running {
            return;
        }
        let slot = job.files.entry(progress.label.clone()).or_insert(0);
        if *slot != progress.bytes_done {
            job.last_change = Instant::now();
        }
        *slot = progress.bytes_done;
        job.bytes_per_second = progress.bytes_per_second;
        job.eta_seconds = progress.eta_seconds;
        job.phase = match &progress.state {
            DownloadState::Checking => "checking".into(),
            DownloadState::Downloading => "downloading".into(),
            DownloadState::Retrying { attempt, reason } => {
                format!("retrying (attempt {attempt}): {reason}")
            }
            DownloadState::Verifying => "verifying".into(),
            DownloadState::Done => "downloading".into(),
            DownloadState::Failed { reason } => format!("failed: {reason}"),
        };
    }

    /// Writes which downloads are running, for [`resume_interrupted`].
    fn save_intent(&self) {
        let running: BTreeSet<String> = self
            .lock()
            .iter()
            .filter(|(_, job)| job.status == JobStatus::Running)
            .map(|(name, _)| name.clone())
            .collect();
        let result = serde_json::to_vec(&running)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| {
                write_atomic(
                    "download list",
                    &self.intent_file,
                    &bytes,
                    Visibility::OwnerOnly,
                )
                .map_err(anyhow::Error::from)
            });
        if let Err(e) = result {
            tracing::warn!("could not record the running downloads: {e:#}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn remove_dir_if_exists(dir: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "could not remove the partial download in {}: {e}",
            dir.display()
        )),
    }
}

/// Progress of one job's files, into its [`Job`].
struct JobProgress {
    downloads: Arc<Downloads>,
    name: String,
}

impl ProgressSink for JobProgress {
    fn report(&self, progress: &Progress) {
        self.downloads.report(&self.name, progress);
    }
}
