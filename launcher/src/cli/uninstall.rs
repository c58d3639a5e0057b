//! `jarvis uninstall`: what the uninstallers run (the MSI's and
//! Setup.exe's, and a person removing an AppImage install). It removes the
//! app from the install folder and keeps the user-data folder, unless
//! `--remove-data` asks for that too, and then says what went.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::hint::hinted;
use crate::install::Install;
use crate::maintenance::lock_stopped;
use crate::paths::{AppPaths, LAUNCHER_BINARY_NAME};
use crate::updater::self_update::previous_launcher;

pub fn uninstall(
    paths: &AppPaths,
    remove_data: bool,
    keep_launcher: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let install = Install::new(&paths.bundle_dir);
    if let Some(manager) = install.managed_by() {
        return Err(hinted(
            format!("this Jarvis was installed with {manager}"),
            format!("remove it with {manager} (e.g. `sudo apt remove jarvis`); your data stays"),
        ));
    }
    let resources = paths.bundle_dir.join("resources");
    if !install.app_dir.is_dir() {
        return Err(hinted(
            format!(
                "there is no installed Jarvis in {}",
                paths.bundle_dir.display()
            ),
            "run the uninstall of the Jarvis you installed (its own jarvis, or the system's app settings)",
        ));
    }
    // Never while Jarvis runs from this install or uses this data (a data
    // folder without a run folder has never had a Jarvis running: nothing
    // is created in it just to lock it).
    let lock = if paths.run_dir.exists() {
        Some(lock_stopped(paths)?)
    } else {
        None
    };

    std::fs::remove_dir_all(&resources)
        .with_context(|| format!("could not remove {}", resources.display()))?;
    let launcher = paths.bundle_dir.join(LAUNCHER_BINARY_NAME);
    if !keep_launcher && launcher.exists() {
        std::fs::remove_file(&launcher)
            .with_context(|| format!("could not remove {}", launcher.display()))?;
    }
    // The launcher a self-update replaced is the updater's, not an
    // installer's: it goes either way.
    let previous = previous_launcher(paths);
    if previous.exists() {
        std::fs::remove_file(&previous)
            .with_context(|| format!("could not remove {}", previous.display()))?;
    }
    // The folder goes too once empty (an installer removes its own files).
    let _ = std::fs::remove_dir(&paths.bundle_dir);

    let data_size = dir_size(&paths.data_dir);
    drop(lock);
    if remove_data && paths.data_dir.exists() {
        std::fs::remove_dir_all(&paths.data_dir).with_context(|| {
            format!(
                "the app is removed, but the data folder {} could not be",
                paths.data_dir.display()
            )
        })?;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "removed_app": paths.bundle_dir,
                "data_dir": paths.data_dir,
                "removed_data": remove_data,
                "data_bytes": data_size,
            })
        );
    } else {
        println!("Removed Jarvis from {}.", paths.bundle_dir.display());
        if remove_data {
            println!(
                "Removed your data too: {} ({}: models, memory, settings, logs).",
                paths.data_dir.display(),
                jarvis_download::human_bytes(data_size)
            );
        } else if paths.data_dir.exists() {
            println!(
                "Your models, memory and settings are kept in {} ({}); a new install finds them.",
                paths.data_dir.display(),
                jarvis_download::human_bytes(data_size)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes of every file under `dir` (0 when it does not exist).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => total += entry.metadata().map_or(0, |m| m.len()),
                Err(_) => {}
            }
        }
    }
    total
}
