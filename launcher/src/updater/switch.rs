//! Switching versions: record the pending commit, then move `current`;
//! at launch, switch to a version staged in the background; after a
//! commit, clear out old versions.

use jarvis_dist::manifest::AppVersion;
use jarvis_durable::checkpoint;

use super::state::{Pending, UpdateState};
use crate::install::Install;
use crate::paths::AppPaths;

/// Records the pending commit, switches `current` to `version`, then
/// raises the anti-rollback floor. A crash before the switch leaves the old
/// version running and the new one offered again; after it, `current`
/// itself is the floor.
pub fn activate(
    paths: &AppPaths,
    install: &Install,
    state: &mut UpdateState,
    version: AppVersion,
) -> anyhow::Result<()> {
    state.pending = Some(Pending {
        version,
        previous: install.current()?,
        attempts: 0,
        schema_before: None,
    });
    state.save(paths)?;
    checkpoint("update:pending-recorded");
    install.switch_to(version)?;
    checkpoint("update:switched");
    state.highest_accepted = Some(state.highest_accepted.map_or(version, |h| h.max(version)));
    state.save(paths)?;
    Ok(())
}

/// At launch: switch to a version staged in the background, if it is
/// still intact and newer than the current one.
pub fn apply_staged(paths: &AppPaths, install: &Install) -> anyhow::Result<()> {
    let mut state = UpdateState::load(paths)?;
    let Some(version) = state.staged.take() else {
        return Ok(());
    };
    state.save(paths)?;
    if install.current()?.is_some_and(|c| c >= version) || state.rejected.contains(&version) {
        return Ok(());
    }
    match install.verify(version) {
        Ok(_) => {
            activate(paths, install, &mut state, version)?;
            eprintln!("Updating to Jarvis {version} (downloaded in the background).");
        }
        Err(e) => tracing::warn!("the staged update {version} is damaged and is skipped: {e:#}"),
    }
    Ok(())
}

/// After a commit: version folders other than current and previous go.
pub fn remove_old_versions(install: &Install) -> anyhow::Result<()> {
    let keep = [install.current()?, install.previous()?];
    for version in install.installed() {
        if !keep.contains(&Some(version)) {
            let dir = install.version_dir(version);
            let trash = install.app_dir.join(format!(".trash-{version}"));
            std::fs::rename(&dir, &trash)?;
            std::fs::remove_dir_all(&trash)?;
            tracing::info!(%version, "removed an old app version");
        }
    }
    Ok(())
}
