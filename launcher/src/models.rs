//! `jarvis models ...`: the model store from the command line, with
//! progress bars for people and `--json` for scripts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use jarvis_download::{
    DownloadOptions, DownloadState, Downloader, Progress, ProgressSink, human_bytes,
};
use jarvis_model_registry::install::{ExplicitModel, InstallReport, Installer};
use jarvis_model_registry::store::CheckOutcome;
use jarvis_model_registry::{Catalog, ModelEntry, ModelName, ModelRole, ModelStore, ModelVersion};
use jarvis_protocol::env;
use serde::Serialize;

use crate::paths::AppPaths;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every installed model version with its files, sizes and SHA-256s.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The catalog's models and whether each is installed and active.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Download (resuming) and install a catalog model, then activate it.
    /// Without NAME: every required model that is missing.
    Pull {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Install from a file, a folder or a model pack (.zip) without network.
    Import {
        path: PathBuf,
        /// Name the model instead of matching the catalog.
        #[arg(long, requires_all = ["version", "role"])]
        name: Option<String>,
        #[arg(long)]
        version: Option<String>,
        #[arg(long, value_parser = ["llm", "stt"])]
        role: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Re-hash installed files; exits non-zero when any does not match.
    Verify {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Make an installed version the active one.
    Activate {
        name: String,
        version: String,
        #[arg(long)]
        json: bool,
    },
    /// Go back to the previously active version.
    Rollback {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete versions that are neither active nor previous.
    Gc {
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(paths: &AppPaths, command: ModelsCommand) -> anyhow::Result<ExitCode> {
    let store = ModelStore::new(paths.models_dir.clone());
    match command {
        ModelsCommand::List { json } => list(&store, json),
        ModelsCommand::Status { json } => status(&store, json).await,
        ModelsCommand::Pull { name, json } => {
            paths.create_tree()?;
            let catalog = load_catalog().await?;
            let entries = match name {
                Some(name) => {
                    let name = ModelName::parse(&name)?;
                    vec![catalog.latest(&name).cloned().ok_or(
                        jarvis_model_registry::RegistryError::UnknownModel {
                            name: name.to_string(),
                        },
                    )?]
                }
                None => missing_required(&catalog, &store)?,
            };
            if entries.is_empty() && !json {
                println!("All required models are installed.");
            }
            let reports = pull(
                &store,
                &entries,
                if json { Report::Json } else { Report::Stdout },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Import {
            path,
            name,
            version,
            role,
            json,
        } => {
            paths.create_tree()?;
            let catalog = load_catalog().await?;
            let explicit = match (name, version, role) {
                (Some(name), Some(version), Some(role)) => Some(ExplicitModel {
                    name: ModelName::parse(&name)?,
                    version: ModelVersion::parse(&version)?,
                    role: if role == "llm" {
                        ModelRole::Llm
                    } else {
                        ModelRole::Stt
                    },
                }),
                _ => None,
            };
            let downloader = downloader()?;
            let installer = Installer {
                store: &store,
                downloader: &downloader,
            };
            let sink = sink(json);
            let reports = installer
                .import(&catalog, &path, explicit, sink.as_ref())
                .await?;
            let mut activated = Vec::new();
            for report in &reports {
                if store.active(&report.name)?.is_none() {
                    store.activate(&report.name, &report.version)?;
                    activated.push(report.name.clone());
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                for r in &reports {
                    let verb = if r.already_installed {
                        "Already installed"
                    } else {
                        "Imported"
                    };
                    let active = if activated.contains(&r.name) {
                        " and activated it"
                    } else {
                        ""
                    };
                    println!("{verb} {} {}{active}.", r.name, r.version);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Verify { name, json } => {
            let only = name.as_deref().map(ModelName::parse).transpose()?;
            let checks = store.verify(only.as_ref())?;
            let bad = checks
                .iter()
                .filter(|c| c.outcome != CheckOutcome::Ok)
                .count();
            if json {
                println!("{}", serde_json::to_string_pretty(&checks)?);
            } else {
                for c in &checks {
                    let verdict = match &c.outcome {
                        CheckOutcome::Ok => "ok".to_owned(),
                        CheckOutcome::Missing => "MISSING".to_owned(),
                        CheckOutcome::WrongSize { expected, actual } => {
                            format!("WRONG SIZE ({actual} bytes, expected {expected})")
                        }
                        CheckOutcome::WrongChecksum {
                            expected,
                            calculated,
                        } => {
                            format!("CORRUPT (sha256 {calculated}, expected {expected})")
                        }
                    };
                    println!("{verdict:<8} {} {} {}", c.name, c.version, c.path);
                }
                if bad > 0 {
                    println!(
                        "{bad} file(s) failed verification.\nhint: `jarvis models pull NAME` fetches a good copy of the catalog's version"
                    );
                } else {
                    println!("{} file(s) verified.", checks.len());
                }
            }
            Ok(if bad > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        ModelsCommand::Activate {
            name,
            version,
            json,
        } => {
            let name = ModelName::parse(&name)?;
            let version = ModelVersion::parse(&version)?;
            store.activate(&name, &version)?;
            say(
                json,
                &serde_json::json!({"name": name, "active": version}),
                || format!("{name} {version} is now active."),
            )
        }
        ModelsCommand::Rollback { name, json } => {
            let name = ModelName::parse(&name)?;
            let version = store.rollback(&name)?;
            say(
                json,
                &serde_json::json!({"name": name, "active": version}),
                || format!("Rolled {name} back to {version}."),
            )
        }
        ModelsCommand::Gc { dry_run, json } => {
            let removed = store.gc(dry_run)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&removed)?);
            } else if removed.is_empty() {
                println!("Nothing to remove: only active and previous versions are installed.");
            } else {
                let verb = if dry_run { "Would remove" } else { "Removed" };
                for r in &removed {
                    println!("{verb} {} {} ({})", r.name, r.version, human_bytes(r.size));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

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
    let bytes = if location.starts_with("http://") || location.starts_with("https://") {
        let response = reqwest::Client::new()
            .get(&location)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("could not fetch the model catalog from {location}"))?;
        let bytes = response
            .bytes()
            .await
            .context("could not read the model catalog")?;
        if bytes.len() > 16 * 1024 * 1024 {
            bail!("the model catalog at {location} is larger than 16 MiB");
        }
        bytes.to_vec()
    } else {
        let path = location.strip_prefix("file://").unwrap_or(&location);
        jarvis_durable::read("model catalog", std::path::Path::new(path))?
    };
    Catalog::parse(&bytes).with_context(|| format!("the model catalog from {location} was refused"))
}

#[derive(Debug, Serialize)]
struct CatalogStatus {
    name: ModelName,
    version: ModelVersion,
    role: ModelRole,
    required: bool,
    size: u64,
    installed: bool,
    active_version: Option<ModelVersion>,
    /// Bytes of an interrupted download waiting to be resumed.
    partial_bytes: u64,
}

async fn status(store: &ModelStore, json: bool) -> anyhow::Result<ExitCode> {
    let catalog = load_catalog().await?;
    let mut rows = Vec::new();
    for entry in &catalog.models {
        let staging = store.staging_dir(&entry.name, &entry.version);
        let partial_bytes = entry
            .files
            .iter()
            .map(|f| {
                let dest = f.path.under(&staging);
                let (partial, _) = jarvis_download::partial_paths(&dest);
                std::fs::metadata(&dest)
                    .or_else(|_| std::fs::metadata(&partial))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum();
        rows.push(CatalogStatus {
            name: entry.name.clone(),
            version: entry.version.clone(),
            role: entry.role,
            required: entry.required,
            size: entry.total_size(),
            installed: store.is_installed(&entry.name, &entry.version),
            active_version: store.active(&entry.name)?,
            partial_bytes,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
        let state = if r.active_version.as_ref() == Some(&r.version) {
            "active".to_owned()
        } else if r.installed {
            "installed".to_owned()
        } else if r.partial_bytes > 0 {
            format!(
                "partial ({} of {})",
                human_bytes(r.partial_bytes),
                human_bytes(r.size)
            )
        } else if r.required {
            "MISSING (required)".to_owned()
        } else {
            "not installed".to_owned()
        };
        println!(
            "{:<28} {:<10} {:<4} {:>10}  {state}",
            r.name.as_str(),
            r.version.as_str(),
            r.role.to_string(),
            human_bytes(r.size)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(store: &ModelStore, json: bool) -> anyhow::Result<ExitCode> {
    let models = store.installed()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(ExitCode::SUCCESS);
    }
    if models.is_empty() {
        println!(
            "No models installed.\nhint: `jarvis models pull` downloads the required ones, `jarvis models import PATH` installs from a file"
        );
    }
    for model in &models {
        println!("{}", model.name);
        for v in &model.versions {
            let mark = if v.active {
                " (active)"
            } else if v.previous {
                " (previous)"
            } else {
                ""
            };
            println!("  {} [{}] {}{mark}", v.version, v.role, human_bytes(v.size));
            for f in &v.files {
                println!("    {}  {:>10}  {}", f.sha256, human_bytes(f.size), f.path);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn say(
    json: bool,
    value: &serde_json::Value,
    text: impl FnOnce() -> String,
) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(ExitCode::SUCCESS)
}

fn downloader() -> anyhow::Result<Downloader> {
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

fn sink(json: bool) -> Box<dyn ProgressSink> {
    if json {
        Box::new(JsonProgress)
    } else {
        Box::new(BarProgress::default())
    }
}

/// Progress as JSON lines on stderr (`--json`), for scripts and the UI.
struct JsonProgress;

impl ProgressSink for JsonProgress {
    fn report(&self, progress: &Progress) {
        if let Ok(line) = serde_json::to_string(progress) {
            eprintln!("{line}");
        }
    }
}

/// One progress bar per file on stderr (hidden when it is not a terminal).
#[derive(Default)]
struct BarProgress {
    bar: Mutex<Option<(String, ProgressBar)>>,
}

impl ProgressSink for BarProgress {
    fn report(&self, progress: &Progress) {
        let Ok(mut slot) = self.bar.lock() else {
            return;
        };
        if slot
            .as_ref()
            .is_none_or(|(label, _)| label != &progress.label)
        {
            let bar = ProgressBar::new(progress.bytes_total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(progress.label.clone());
            *slot = Some((progress.label.clone(), bar));
        }
        let Some((_, bar)) = slot.as_ref() else {
            return;
        };
        bar.set_position(progress.bytes_done);
        match &progress.state {
            DownloadState::Retrying { attempt, reason } => {
                bar.println(format!("retrying (attempt {attempt}): {reason}"));
            }
            DownloadState::Done => bar.finish(),
            DownloadState::Failed { .. } => bar.abandon(),
            _ => {}
        }
    }
}
