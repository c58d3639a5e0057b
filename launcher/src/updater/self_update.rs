//! The launcher replacing itself with the one a committed version ships.

use anyhow::Context as _;
use jarvis_dist::manifest::AppVersion;
use jarvis_download::Sha256Digest;
use jarvis_durable::checkpoint;

use crate::install::Install;
use crate::paths::{AppPaths, LAUNCHER_BINARY_NAME};

/// Where the launcher keeps the one it replaced (`jarvis.previous`).
pub fn previous_launcher(paths: &AppPaths) -> std::path::PathBuf {
    paths
        .bundle_dir
        .join(format!("{LAUNCHER_BINARY_NAME}.previous"))
}

/// After a commit: when the committed version ships a launcher and this
/// process runs from the install folder, the launcher replaces itself (the
/// running binary moved out of the way where the OS needs it, as on
/// Windows). The old launcher is kept as `jarvis.previous`. Returns whether
/// it was replaced.
pub fn replace_launcher(
    paths: &AppPaths,
    install: &Install,
    version: AppVersion,
) -> anyhow::Result<bool> {
    let name = LAUNCHER_BINARY_NAME;
    let shipped = install.version_dir(version).join(name);
    if !shipped.is_file() {
        return Ok(false);
    }
    let running = std::env::current_exe()?.canonicalize()?;
    let installed = paths.bundle_dir.join(name);
    if installed.canonicalize().ok().as_deref() != Some(running.as_path()) {
        // A development build or a test harness: never replace those.
        return Ok(false);
    }
    if Sha256Digest::of_file(&shipped)? == Sha256Digest::of_file(&running)? {
        return Ok(false);
    }
    jarvis_durable::copy_atomic("previous launcher", &running, &previous_launcher(paths))?;
    self_replace::self_replace(&shipped).context("could not replace the launcher")?;
    checkpoint("update:launcher-replaced");
    Ok(true)
}
