//! Model operations shared by `jarvis up --pull` and `jarvis models`:
//! loading the catalog, finding missing required models, pulling and
//! activating them through the shared downloader.

use std::time::Duration;

use anyhow::{Context as _, bail};
use jarvis_download::ProgressSink;
use jarvis_download::{DownloadOptions, Downloader, human_bytes};
use jarvis_model_registry::install::{ExplicitModel, InstallReport, Installer};
use jarvis_model_registry::{Catalog, ModelEntry, ModelName, ModelStore};
use jarvis_protocol::env;

use crate::progress::sink;

/// How `pull` reports to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Result lines on stdout (`jarvis models pull`).
    Stdout,
    /// Result lines on stderr: stdout belongs to `jarvis up`'s `ready:`.
    Stderr,
    /// Only the JSON the caller prints.
    Json,
}

/// Pulls `entries` and activates each; used by `models pull` and `up --pull`.
pub async fn pull(
    store: &ModelStore,
    entries: &[ModelEntry],
    report_to: Report,
) -> anyhow::Result<Vec<InstallReport>> {
    let json = report_to == Report::Json;
    let downloader = downloader()?;
    let installer = Installer {
        store,
        downloader: &downloader,
    };
    let sink = sink(json);
    let mut reports = Vec::new();
    for entry in entries {
        let report = installer
            .pull(entry, sink.as_ref())
            .await
            .with_context(|| format!("could not pull {} {}", entry.name, entry.version))?;
        store.activate(&entry.name, &entry.version)?;
        if !json {
            let line = if report.already_installed {
                format!("{} {} is installed and active.", entry.name, entry.version)
            } else {
                format!(
                    "Installed {} {} ({} fetched{}) and activated it.",
                    entry.name,
                    entry.version,
                    human_bytes(report.bytes_fetched),
                    if report.bytes_resumed > 0 {
                        format!(", resumed after {}", human_bytes(report.bytes_resumed))
                    } else {
                        String::new()
                    }
                )
            };
            if report_to == Report::Stderr {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Imports a file, folder or pack (see [`Installer::import`]) and
/// activates each imported model that had no active version; returns the
/// reports and the names it activated. Used by `jarvis models import` and
/// the UI.
pub async fn import(
    store: &ModelStore,
    catalog: &Catalog,
    path: &std::path::Path,
    explicit: Option<ExplicitModel>,
    progress: &dyn ProgressSink,
) -> anyhow::Result<(Vec<InstallReport>, Vec<ModelName>)> {
    let downloader = downloader()?;
    let installer = Installer {
        store,
        downloader: &downloader,
    };
    let reports = installer.import(catalog, path, explicit, progress).await?;
    let mut activated = Vec::new();
    for report in &reports {
        if store.active(&report.name)?.is_none() {
            store.activate(&report.name, &report.version)?;
            activated.push(report.name.clone());
        }
    }
    Ok((reports, activated))
}

/// Required catalog models with no active version.
pub fn missing_required(catalog: &Catalog, store: &ModelStore) -> anyhow::Result<Vec<ModelEntry>> {
    let mut missing = Vec::new();
    for entry in catalog.required() {
        if store.active(&entry.name)?.is_none() {
            missing.push(entry.clone());
        }
    }
    Ok(missing)
}

/// `JARVIS_CATALOG` (path, `file://` or `http(s)://`), else the built-in one.
pub async fn load_catalog() -> anyhow::Result<Catalog> {
    let Some(location) = std::env::var(env::CATALOG).ok().filter(|v| !v.is_empty()) else {
        return Ok(Catalog::builtin()?);
    };
    // Read up to the bound and no further, wherever it comes from: a
    // server (or a file) sending without end is refused, not buffered.
    const MAX_CATALOG_BYTES: u64 = 16 * 1024 * 1024;
    let bytes = if location.starts_with("http://")
        || location.starts_with("https://")
        || location.starts_with("file://")
    {
        crate::updater::feed::fetch_small(&location, MAX_CATALOG_BYTES)
            .await
            .with_context(|| format!("could not fetch the model catalog from {location}"))?
    } else {
        let file = std::fs::File::open(&location)
            .with_context(|| format!("could not read the model catalog at {location}"))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_CATALOG_BYTES + 1),
            &mut bytes,
        )
        .with_context(|| format!("could not read the model catalog at {location}"))?;
        if bytes.len() as u64 > MAX_CATALOG_BYTES {
            bail!("the model catalog at {location} is larger than 16 MiB");
        }
        bytes
    };
    Catalog::parse(&bytes).with_context(|| format!("the model catalog from {location} was refused"))
}

/// The shared downloader with the stall timeout `JARVIS_DOWNLOAD_STALL_TIMEOUT` sets.
pub fn downloader() -> anyhow::Result<Downloader> {
    let mut options = DownloadOptions::default();
    if let Some(secs) = std::env::var(env::DOWNLOAD_STALL_TIMEOUT)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        && secs > 0.0
    {
        options.stall_timeout = Duration::from_secs_f64(secs);
    }
    Ok(Downloader::new(options)?)
}
