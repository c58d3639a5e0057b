//! `jarvis models ...`: the model store from the command line, with
//! progress bars for people and `--json` for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use jarvis_download::human_bytes;
use jarvis_model_registry::install::ExplicitModel;
use jarvis_model_registry::store::CheckOutcome;
use jarvis_model_registry::{ModelName, ModelRole, ModelStore, ModelVersion};
use serde::Serialize;

use crate::models::{Report, import, load_catalog, missing_required, pull};
use crate::paths::AppPaths;
use crate::progress::sink;

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
        #[arg(long, requires = "version")]
        name: Option<String>,
        /// The version to install it as (with --name).
        #[arg(long, requires = "name")]
        version: Option<String>,
        /// What it is; recognised from its contents when left out (a GGUF
        /// is a chat model, a whisper ggml file or CTranslate2 whisper
        /// folder speech-to-text).
        #[arg(long, requires = "name", value_parser = ["llm", "stt"])]
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
            let explicit = match (name, version) {
                (Some(name), Some(version)) => Some(ExplicitModel {
                    name: ModelName::parse(&name)?,
                    version: ModelVersion::parse(&version)?,
                    role: role.map(|role| match role.as_str() {
                        "llm" => ModelRole::Llm,
                        _ => ModelRole::Stt,
                    }),
                }),
                _ => None,
            };
            let sink = sink(json);
            let (reports, activated) =
                import(&store, &catalog, &path, explicit, sink.as_ref()).await?;
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
        let partial_bytes = store.staged_bytes(entry);
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
