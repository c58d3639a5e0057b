//! `jarvis update ...`: check, apply, roll back, status.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use jarvis_dist::manifest::AppVersion;

use crate::install::Install;
use crate::maintenance::lock_stopped;
use crate::paths::{AppPaths, LAUNCHER_BINARY_NAME};
use crate::updater::stage::{StageReport, set_executable};
use crate::updater::{Feed, UpdateState, activate, check, stage};

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Is a newer, correctly signed version available?
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Download, verify and switch to the newest version.
    Apply {
        /// An offline feed: a folder, or a .tar of one.
        #[arg(long)]
        from: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Switch back to the previous version.
    Rollback {
        #[arg(long)]
        json: bool,
    },
    /// Installed versions, the pending commit, what was rejected.
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(paths: &AppPaths, command: UpdateCommand) -> anyhow::Result<ExitCode> {
    let install = Install::new(&paths.bundle_dir);
    let channel = "stable";
    // `status` only reads; the others act on the version an installer
    // put here last if it is newer.
    if !matches!(command, UpdateCommand::Status { .. }) {
        install.adopt_installer_version()?;
        install.require_self_managed()?;
    }
    match command {
        UpdateCommand::Check { json } => {
            let feed = Feed::online(channel)?;
            let mut state = UpdateState::load(paths)?;
            let offer = check(paths, &install, &mut state, &feed, channel).await?;
            match (&offer, json) {
                (Some(offer), true) => println!(
                    "{}",
                    serde_json::json!({"available": offer.release.version, "current": install.current()?})
                ),
                (None, true) => println!(
                    "{}",
                    serde_json::json!({"available": null, "current": install.current()?})
                ),
                (Some(offer), false) => println!(
                    "Jarvis {} is available (installed: {}).",
                    offer.release.version,
                    show(install.current()?)
                ),
                (None, false) => println!("Jarvis {} is up to date.", show(install.current()?)),
            }
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Apply { from, json } => {
            let _lock = lock_stopped(paths)?;
            let feed = match &from {
                Some(path) => Feed::offline(path, channel, &install)?,
                None => Feed::online(channel)?,
            };
            let Some(report) = apply(paths, &install, &feed, channel).await? else {
                if json {
                    println!("{}", serde_json::json!({"applied": null}));
                } else {
                    println!("Jarvis {} is up to date.", show(install.current()?));
                }
                return Ok(ExitCode::SUCCESS);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "Switched to Jarvis {} ({} files by delta, {} full, {} downloaded); it is committed once it starts.",
                    report.version,
                    report.delta_files,
                    report.full_files,
                    jarvis_download::human_bytes(report.bytes_downloaded)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Rollback { json } => {
            let _lock = lock_stopped(paths)?;
            let Some(previous) = install.previous()? else {
                bail!("there is no previous version to roll back to");
            };
            install.verify(previous)?;
            install.switch_to(previous)?;
            let mut state = UpdateState::load(paths)?;
            state.pending = None;
            state.save(paths)?;
            if json {
                println!("{}", serde_json::json!({"current": previous}));
            } else {
                println!("Switched back to Jarvis {previous}.");
            }
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Status { json } => {
            let state = UpdateState::load(paths)?;
            let status = serde_json::json!({
                "managed_by": install.managed_by(),
                "current": install.next_current()?,
                "previous": install.previous()?,
                "installed": install.installed(),
                "pending": state.pending,
                "highest_accepted": state.highest_accepted,
                "rejected": state.rejected,
                "last_error": state.last_error,
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                if let Some(manager) = install.managed_by() {
                    println!("updates:  through {manager}");
                }
                println!("current:  {}", show(install.next_current()?));
                println!("previous: {}", show(install.previous()?));
                if let Some(p) = &state.pending {
                    println!(
                        "pending:  {} (not yet started successfully; {} tries so far)",
                        p.version, p.attempts
                    );
                }
                for v in &state.rejected {
                    println!("rejected: {v}");
                }
                if let Some(e) = &state.last_error {
                    println!("last error: {e}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show(v: Option<AppVersion>) -> String {
    v.map_or_else(|| "none (development build)".to_owned(), |v| v.to_string())
}

/// Stages and switches to the newest acceptable release in `feed`; `None`
/// when the install is up to date (or ahead of it).
async fn apply(
    paths: &AppPaths,
    install: &Install,
    feed: &Feed,
    channel: &str,
) -> anyhow::Result<Option<StageReport>> {
    let mut state = UpdateState::load(paths)?;
    let Some(offer) = check(paths, install, &mut state, feed, channel).await? else {
        return Ok(None);
    };
    let report = stage(install, feed, &offer).await?;
    activate(paths, install, &mut state, offer.release.version)?;
    Ok(Some(report))
}

/// `jarvis install --from FEED`: what an installer (the AppImage's first
/// launch) runs to put Jarvis into the install folder (`JARVIS_BUNDLE_DIR`,
/// else this launcher's own folder): this launcher as `<install>/jarvis`
/// if none is there yet, then the feed's version, verified like any
/// update, unless the install already has it or a newer one (the updater
/// moved on). User data is never touched beyond the update state.
pub async fn install(
    paths: &AppPaths,
    from: &std::path::Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let install_dir = &paths.bundle_dir;
    if install_dir.starts_with(&paths.data_dir) || paths.data_dir.starts_with(install_dir) {
        bail!(
            "refusing to install into {}: the install folder and the data folder ({}) must not contain each other",
            install_dir.display(),
            paths.data_dir.display()
        );
    }
    let install = Install::new(install_dir);
    install.require_self_managed()?;
    let _lock = lock_stopped(paths)?;
    jarvis_durable::create_private_dir_all("install folder", install_dir)?;
    let launcher = install_dir.join(LAUNCHER_BINARY_NAME);
    let copied_launcher = if launcher.exists() {
        false
    } else {
        let me = std::env::current_exe()?;
        jarvis_durable::copy_atomic("launcher", &me, &launcher)?;
        set_executable(&launcher, true)?;
        true
    };
    let first_install = install.current()?.is_none();
    if first_install {
        // An empty install folder (a first install, or one after an
        // uninstall): the update history in the data folder belongs to the
        // app that was removed. The release the person just ran is
        // installed even if it is older than what that app had accepted
        // or rejected; updates then go on from it.
        let mut state = UpdateState::load(paths)?;
        state.highest_accepted = None;
        state.rejected.clear();
        state.pending = None;
        state.staged = None;
        state.save(paths)?;
    }
    let channel = "stable";
    let mut feed = Feed::offline(from, channel, &install)?;
    if first_install {
        feed = feed.for_first_install();
    }
    let applied = apply(paths, &install, &feed, channel)
        .await?
        .map(|report| report.version);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "install_dir": install_dir,
                "launcher": launcher,
                "copied_launcher": copied_launcher,
                "applied": applied,
                "current": install.current()?,
            })
        );
    } else if let Some(v) = applied {
        println!("Installed Jarvis {v} in {}.", install_dir.display());
    } else {
        println!(
            "Jarvis {} is already installed in {}.",
            show(install.current()?),
            install_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
