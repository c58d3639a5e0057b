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

/// After a commit, and at every start until it is done: when the
/// committed version ships a launcher and this process runs from the
/// install folder, the launcher replaces itself. On Unix the new one is
/// copied beside it, fsynced and renamed over it (the running process
/// keeps its own file); on Windows the running binary is moved out of the
/// way first (`self_replace`). The old launcher is kept as
/// `jarvis.previous`. Returns whether it was replaced.
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
    #[cfg(unix)]
    jarvis_durable::copy_atomic("launcher", &shipped, &installed)
        .context("could not replace the launcher")?;
    #[cfg(not(unix))]
    self_replace::self_replace(&shipped).context("could not replace the launcher")?;
    checkpoint("update:launcher-replaced");
    Ok(true)
}

/// At start, with no version on trial: finishes a launcher replacement a
/// commit could not make (a full disk, a file in the way), so releases
/// that need the newer launcher are not refused forever.
pub fn finish_launcher_replacement(paths: &AppPaths, install: &Install, version: AppVersion) {
    match replace_launcher(paths, install, version) {
        Ok(true) => eprintln!(
            "The launcher of Jarvis {version} is installed now; it takes over at the next start."
        ),
        Ok(false) => {}
        Err(e) => report_failed_replacement(&e),
    }
}

/// A failed replacement is retried at the next start; Jarvis runs on.
pub fn report_failed_replacement(error: &anyhow::Error) {
    tracing::warn!("could not update the launcher: {error:#}");
    eprintln!(
        "warning: could not update the launcher ({error:#}); it is tried again at the next start."
    );
}
