//! The acceptance policy: which release, if any, this install may take.
//!
//! The signature is checked over the raw bytes *before* parsing; then our
//! target and channel, a version strictly newer than the highest ever
//! accepted (anti-rollback), not expired (freeze defence), data schemas
//! this launcher can migrate to, a launcher new enough, a version not
//! rejected before, and our staged-rollout bucket. An install that a
//! package manager owns (the .deb's) takes nothing.

use anyhow::{Context as _, bail};
use jarvis_dist::manifest::{
    AppVersion, MANIFEST_NAME, MAX_MANIFEST_BYTES, Release, SIGNATURE_NAME,
};

use super::feed::{Feed, fetch_small};
use super::state::UpdateState;
use crate::VERSION;
use crate::install::Install;
use crate::paths::AppPaths;
use crate::release_config::trusted_keys;

/// A release this install may take, with the exact bytes of the manifest
/// and signature it was accepted from: staging installs these bytes, never
/// a second download that may say something else.
#[derive(Debug, Clone)]
pub struct Offer {
    pub release: Release,
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The newest acceptable release, or `None` when up to date.
pub async fn check(
    paths: &AppPaths,
    install: &Install,
    state: &mut UpdateState,
    feed: &Feed,
    channel: &str,
) -> anyhow::Result<Option<Offer>> {
    install.require_self_managed()?;
    let manifest_url = feed.url(MANIFEST_NAME);
    let manifest = fetch_small(&manifest_url, MAX_MANIFEST_BYTES).await?;
    let signature_bytes = fetch_small(&feed.url(SIGNATURE_NAME), 1024).await?;
    let signature = String::from_utf8_lossy(&signature_bytes);
    jarvis_dist::signing::verify(&manifest, &signature, &trusted_keys()?)
        .with_context(|| format!("refused the release manifest at {manifest_url}"))?;
    let release = Release::parse_verified(&manifest)?;
    if release.target != jarvis_dist::TARGET {
        bail!(
            "the release is for target {}, this is {}; nothing was changed",
            release.target,
            jarvis_dist::TARGET
        );
    }
    if release.channel != channel {
        bail!(
            "the release is for channel {}, this install follows {channel}; nothing was changed",
            release.channel
        );
    }
    let expires: jiff::Timestamp = release
        .expires_at
        .parse()
        .context("the release has an unreadable expiry")?;
    let expired = expires <= jiff::Timestamp::now();
    if expired && feed.first_install {
        tracing::info!(version = %release.version, expired = %release.expires_at,
            "installing the release the installer carries although its manifest expired");
    } else if expired {
        bail!(
            "the release manifest expired at {} (a frozen or stale feed); no update was installed, Jarvis keeps running the current version",
            release.expires_at
        );
    }
    // This launcher must be able to migrate the data up to what the new
    // core needs, and never downwards.
    let launcher_schema = jarvis_migrations::CURRENT_SCHEMA_VERSION;
    if release.data_schema.min > launcher_schema {
        bail!(
            "Jarvis {} needs data schema {} or newer, this launcher migrates up to schema {launcher_schema}; update the launcher first; nothing was changed",
            release.version,
            release.data_schema.min
        );
    }
    let data_schema = jarvis_migrations::Migrator::new(&paths.data_dir).schema_version()?;
    if data_schema > release.data_schema.max {
        bail!(
            "Jarvis {} reads data schemas up to {}, the data is already at schema {data_schema}; nothing was changed",
            release.version,
            release.data_schema.max
        );
    }
    let launcher: AppVersion = VERSION.parse()?;
    if release.min_launcher_version > launcher {
        bail!(
            "Jarvis {} needs launcher {} or newer (this is {launcher})",
            release.version,
            release.min_launcher_version
        );
    }
    let floor = [state.highest_accepted, install.current()?]
        .into_iter()
        .flatten()
        .max();
    if let Some(floor) = floor
        && release.version <= floor
    {
        if release.version == floor {
            return Ok(None);
        }
        bail!(
            "the feed offers {} but {floor} was already accepted; refusing a replayed or downgraded release",
            release.version
        );
    }
    if state.rejected.contains(&release.version) {
        tracing::info!(version = %release.version, "skipping a version that failed its health check");
        return Ok(None);
    }
    // Drawn once per installation and kept, so a staged rollout reaches
    // a steady share of installs instead of everyone at their tenth try.
    let drawn = state.bucket.is_none();
    let bucket = state.bucket();
    if drawn {
        state.save(paths)?;
    }
    if bucket >= release.rollout_percent {
        tracing::info!(version = %release.version, "not in this release's staged rollout yet");
        return Ok(None);
    }
    Ok(Some(Offer {
        release,
        manifest,
        signature: signature_bytes,
    }))
}
