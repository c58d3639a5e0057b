//! `jarvis up` with `auto_update`: check and stage quietly in the
//! background; the switch happens at the next launch.

use super::check::check;
use super::feed::Feed;
use super::stage::stage;
use super::state::UpdateState;
use crate::install::Install;
use crate::paths::AppPaths;

/// Checks the online feed and stages what it offers; logs the outcome.
pub async fn stage_in_background(paths: AppPaths) {
    let install = Install::new(&paths.bundle_dir);
    if let Some(manager) = install.managed_by() {
        tracing::info!(%manager, "updates come from the package manager");
        return;
    }
    let result = async {
        let feed = Feed::online("stable")?;
        let mut state = UpdateState::load(&paths)?;
        let Some(offer) = check(&paths, &install, &mut state, &feed, "stable").await? else {
            return Ok(None);
        };
        stage(&install, &feed, &offer).await?;
        let mut state = UpdateState::load(&paths)?;
        state.staged = Some(offer.release.version);
        state.save(&paths)?;
        Ok::<_, anyhow::Error>(Some(offer.release.version))
    }
    .await;
    match result {
        Ok(Some(v)) => {
            tracing::info!(version = %v, "update staged; it is applied at the next launch")
        }
        Ok(None) => tracing::info!("no update available"),
        Err(e) => tracing::warn!("background update check failed: {e:#}"),
    }
}
