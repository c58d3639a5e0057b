//! `jarvis update ...`: signed, delta-based updates of the app bundle with
//! an atomic switch and a health-checked commit.
//!
//! Check: fetch `release.json` and its signature (size-bounded), verify the
//! signature over the raw bytes *before* parsing, then require: our target
//! and channel, a version strictly newer than the highest ever accepted
//! (anti-rollback), not expired (freeze defence), a launcher new enough, a
//! version not rejected before, and our staged-rollout bucket.
//! Apply: build `resources/app/.staging-<v>/` from deltas against the
//! current version where offered, full files otherwise (all through the
//! shared verifying downloader), verify every file, rename it to
//! `resources/app/<v>/`, record the pending commit, then switch `current`.
//! The next `jarvis up` gives the new version up to three tries to reach
//! ready; if it never does, it switches back and rejects that version.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use ed25519_dalek::VerifyingKey;
use jarvis_dist::manifest::{
    AppVersion, MANIFEST_NAME, MAX_MANIFEST_BYTES, Release, SIGNATURE_NAME,
};
use jarvis_download::{DownloadOptions, Downloader, FileSpec, NoProgress, Sha256Digest};
use jarvis_durable::{Visibility, checkpoint, read_optional, write_atomic};
use jarvis_protocol::env;
use serde::{Deserialize, Serialize};

use crate::VERSION;
use crate::install::Install;
use crate::paths::AppPaths;

/// Tries a new version gets to reach ready before it is rolled back.
pub const MAX_ATTEMPTS: u32 = 3;
/// Where updates come from when `JARVIS_UPDATE_URL` is not set.
pub const DEFAULT_FEED: &str = "https://updates.jarvis.invalid/feed";
const STATE_FILE: &str = "update-state.json";

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

/// `<data>/update-state.json`: what the updater must remember across
/// versions (it lives with the user's data, not in the replaceable app).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateState {
    /// The highest version ever accepted (anti-rollback).
    pub highest_accepted: Option<AppVersion>,
    /// This install's staged-rollout bucket, 0–99, drawn once.
    pub bucket: Option<u8>,
    /// A switched-to version that has not yet reached ready.
    pub pending: Option<Pending>,
    /// A version downloaded in the background, switched to at next launch.
    #[serde(default)]
    pub staged: Option<AppVersion>,
    /// Versions that failed their health check; never offered again.
    #[serde(default)]
    pub rejected: Vec<AppVersion>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub version: AppVersion,
    pub previous: Option<AppVersion>,
    pub attempts: u32,
    /// The data schema before the first try; a rollback restores the data
    /// if a try migrated it.
    #[serde(default)]
    pub schema_before: Option<u32>,
}

impl UpdateState {
    pub fn load(paths: &AppPaths) -> anyhow::Result<Self> {
        let path = paths.data_dir.join(STATE_FILE);
        Ok(match read_optional("update state", &path)? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring an unreadable update state: {e}");
                Self::default()
            }),
            None => Self::default(),
        })
    }

    pub fn save(&self, paths: &AppPaths) -> anyhow::Result<()> {
        jarvis_durable::create_private_dir_all("data folder", &paths.data_dir)?;
        let text = serde_json::to_vec_pretty(self)?;
        write_atomic(
            "update state",
            &paths.data_dir.join(STATE_FILE),
            &text,
            Visibility::OwnerOnly,
        )?;
        Ok(())
    }

    fn bucket(&mut self) -> u8 {
        *self.bucket.get_or_insert_with(|| {
            let mut b = [0u8; 1];
            // Without randomness everyone lands in bucket 0: first in line,
            // which is the safe side of a staged rollout to err on.
            let _ = getrandom::fill(&mut b);
            b[0] % 100
        })
    }
}

/// The keys releases must be signed with (see `jarvis_dist::signing`).
pub fn trusted_keys() -> Vec<VerifyingKey> {
    jarvis_dist::signing::trusted_keys(std::env::var(env::UPDATE_TRUSTED_KEYS).ok().as_deref())
}

pub async fn run(paths: &AppPaths, command: UpdateCommand) -> anyhow::Result<ExitCode> {
    let install = Install::new(&paths.bundle_dir);
    let channel = "stable";
    match command {
        UpdateCommand::Check { json } => {
            let feed = Feed::online(channel)?;
            let mut state = UpdateState::load(paths)?;
            let offer = check(paths, &install, &mut state, &feed, channel).await?;
            match (&offer, json) {
                (Some(r), true) => println!(
                    "{}",
                    serde_json::json!({"available": r.version, "current": install.current()?})
                ),
                (None, true) => println!(
                    "{}",
                    serde_json::json!({"available": null, "current": install.current()?})
                ),
                (Some(r), false) => println!(
                    "Jarvis {} is available (installed: {}).",
                    r.version,
                    show(install.current()?)
                ),
                (None, false) => println!("Jarvis {} is up to date.", show(install.current()?)),
            }
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Apply { from, json } => {
            let _lock = crate::data::lock_stopped(paths)?;
            let feed = match &from {
                Some(path) => Feed::offline(path, channel, &install)?,
                None => Feed::online(channel)?,
            };
            let mut state = UpdateState::load(paths)?;
            let Some(release) = check(paths, &install, &mut state, &feed, channel).await? else {
                if json {
                    println!("{}", serde_json::json!({"applied": null}));
                } else {
                    println!("Jarvis {} is up to date.", show(install.current()?));
                }
                return Ok(ExitCode::SUCCESS);
            };
            let report = stage(&install, &feed, &release).await?;
            activate(paths, &install, &mut state, release.version)?;
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
            let _lock = crate::data::lock_stopped(paths)?;
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
                "current": install.current()?,
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
                println!("current:  {}", show(install.current()?));
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

/// Where a release is read from: a URL prefix ending in `/`.
pub struct Feed {
    base: String,
    /// Keeps an unpacked offline archive alive.
    _unpacked: Option<tempfile::TempDir>,
}

impl Feed {
    fn online(channel: &str) -> anyhow::Result<Self> {
        let root = std::env::var(env::UPDATE_URL).unwrap_or_else(|_| DEFAULT_FEED.to_owned());
        Self::at(&root, channel, None)
    }

    fn offline(path: &Path, channel: &str, install: &Install) -> anyhow::Result<Self> {
        if path.is_dir() {
            let root = std::path::absolute(path)?;
            let root =
                url::Url::from_directory_path(&root).map_err(|()| anyhow::anyhow!("bad folder"))?;
            return Self::at(root.as_str(), channel, None);
        }
        jarvis_durable::create_private_dir_all("app folder", &install.app_dir)?;
        let unpacked = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(&install.app_dir)?;
        unpack_safely(path, unpacked.path())?;
        let root = url::Url::from_directory_path(unpacked.path())
            .map_err(|()| anyhow::anyhow!("bad folder"))?;
        Self::at(root.as_str(), channel, Some(unpacked))
    }

    fn at(root: &str, channel: &str, unpacked: Option<tempfile::TempDir>) -> anyhow::Result<Self> {
        let root = if root.contains("://") {
            root.to_owned()
        } else {
            url::Url::from_directory_path(std::path::absolute(root)?)
                .map_err(|()| anyhow::anyhow!("'{root}' is not a usable feed folder"))?
                .to_string()
        };
        let base = format!(
            "{}/{channel}/{}/",
            root.trim_end_matches('/'),
            jarvis_dist::TARGET
        );
        Ok(Self {
            base,
            _unpacked: unpacked,
        })
    }

    fn url(&self, relative: &str) -> String {
        format!("{}{relative}", self.base)
    }
}

/// Fetches a small file (manifest, signature), refusing more than `max`.
async fn fetch_small(url: &str, max: u64) -> anyhow::Result<Vec<u8>> {
    let bytes = if let Some(rest) = url.strip_prefix("file://") {
        let path = url::Url::parse(url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| PathBuf::from(rest));
        let file = std::fs::File::open(&path)
            .with_context(|| format!("could not read '{}'", path.display()))?;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, max + 1), &mut out)?;
        out
    } else {
        let mut response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("could not fetch '{url}'"))?;
        let mut out = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            out.extend_from_slice(&chunk);
            if out.len() as u64 > max {
                break;
            }
        }
        out
    };
    if bytes.len() as u64 > max {
        bail!("'{url}' is larger than the {max} bytes allowed; refusing it (endless-data defence)");
    }
    Ok(bytes)
}

/// The newest acceptable release, or `None` when up to date.
pub async fn check(
    paths: &AppPaths,
    install: &Install,
    state: &mut UpdateState,
    feed: &Feed,
    channel: &str,
) -> anyhow::Result<Option<Release>> {
    let manifest_url = feed.url(MANIFEST_NAME);
    let manifest = fetch_small(&manifest_url, MAX_MANIFEST_BYTES).await?;
    let signature = fetch_small(&feed.url(SIGNATURE_NAME), 1024).await?;
    let signature = String::from_utf8_lossy(&signature);
    jarvis_dist::signing::verify(&manifest, &signature, &trusted_keys())
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
    if expires <= jiff::Timestamp::now() {
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
    if state.bucket() >= release.rollout_percent {
        tracing::info!(version = %release.version, "not in this release's staged rollout yet");
        return Ok(None);
    }
    Ok(Some(release))
}

#[derive(Debug, Serialize)]
pub struct StageReport {
    pub version: AppVersion,
    pub from: Option<AppVersion>,
    /// Files identical to the installed version's, copied locally.
    pub unchanged_files: usize,
    pub delta_files: usize,
    pub full_files: usize,
    pub bytes_downloaded: u64,
}

/// Builds `resources/app/<version>/` from the feed, verified, without
/// switching to it.
pub async fn stage(
    install: &Install,
    feed: &Feed,
    release: &Release,
) -> anyhow::Result<StageReport> {
    let current = install.current()?;
    let target = install.version_dir(release.version);
    let mut report = StageReport {
        version: release.version,
        from: current,
        unchanged_files: 0,
        delta_files: 0,
        full_files: 0,
        bytes_downloaded: 0,
    };
    if target.is_dir() && install.verify(release.version).is_ok() {
        return Ok(report);
    }
    let staging = install
        .app_dir
        .join(format!(".staging-{}", release.version));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).context("could not clear an old staging folder")?;
    }
    jarvis_durable::create_private_dir_all("update staging folder", &staging)?;
    let downloader = Downloader::new(DownloadOptions::default())?;
    let patches = tempfile::Builder::new()
        .prefix(".patches-")
        .tempdir_in(&install.app_dir)?;
    for file in &release.files {
        let dest = jarvis_dist::feed::under(&staging, &file.path);
        if let Some(parent) = dest.parent() {
            jarvis_durable::create_private_dir_all("update staging folder", parent)?;
        }
        let mut done = false;
        // Unchanged since the installed version: copied, not downloaded.
        if let Some(current) = current {
            let old_path = jarvis_dist::feed::under(&install.version_dir(current), &file.path);
            if std::fs::metadata(&old_path).is_ok_and(|m| m.len() == file.size)
                && Sha256Digest::of_file(&old_path).is_ok_and(|sha| sha == file.sha256)
            {
                jarvis_durable::copy_atomic("unchanged file", &old_path, &dest)?;
                report.unchanged_files += 1;
                done = true;
            }
        }
        let delta = current
            .filter(|_| !done)
            .and_then(|c| file.deltas.iter().find(|d| d.from == c).map(|d| (c, d)));
        if let Some((from, delta)) = delta {
            let old_path = jarvis_dist::feed::under(&install.version_dir(from), &file.path);
            let patch_path = patches
                .path()
                .join(format!("{}.patch", report.delta_files + report.full_files));
            let spec = FileSpec {
                label: format!("{} (delta from {from})", file.path),
                sources: vec![feed.url(&delta.url)],
                size: delta.size,
                sha256: delta.sha256,
                chunks: None,
            };
            let fetched = downloader.fetch(&spec, &patch_path, &NoProgress).await;
            if let (Ok(outcome), Ok(old)) = (fetched, std::fs::read(&old_path)) {
                let patch = std::fs::read(&patch_path)?;
                match jarvis_dist::delta::apply(delta.kind, &old, &patch, file.size) {
                    Ok(new) if Sha256Digest::of(&new) == file.sha256 => {
                        write_atomic("updated file", &dest, &new, Visibility::Normal)?;
                        report.delta_files += 1;
                        report.bytes_downloaded += outcome.bytes_fetched;
                        done = true;
                    }
                    Ok(_) => {
                        tracing::warn!(path = %file.path, "a delta produced the wrong file; fetching it whole")
                    }
                    Err(e) => {
                        tracing::warn!(path = %file.path, "a delta failed ({e}); fetching it whole")
                    }
                }
            }
        }
        if !done {
            let spec = FileSpec {
                label: file.path.clone(),
                sources: vec![feed.url(&file.url)],
                size: file.size,
                sha256: file.sha256,
                chunks: None,
            };
            let outcome = downloader
                .fetch(&spec, &dest, &NoProgress)
                .await
                .with_context(|| {
                    format!(
                        "could not download {} of Jarvis {}; nothing was changed",
                        file.path, release.version
                    )
                })?;
            report.full_files += 1;
            report.bytes_downloaded += outcome.bytes_fetched;
        }
        set_executable(&dest, file.executable)?;
    }
    for name in [MANIFEST_NAME, SIGNATURE_NAME] {
        let bytes = fetch_small(&feed.url(name), MAX_MANIFEST_BYTES).await?;
        write_atomic(
            "release manifest",
            &staging.join(name),
            &bytes,
            Visibility::Normal,
        )?;
    }
    checkpoint("update:staged");
    if target.exists() {
        std::fs::remove_dir_all(&target).context("could not replace a damaged version folder")?;
    }
    std::fs::rename(&staging, &target).context("could not move the new version into place")?;
    jarvis_durable::sync_dir(&install.app_dir)?;
    install.verify(release.version)?;
    checkpoint("update:installed");
    Ok(report)
}

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

/// `jarvis up` with `auto_update`: check and stage quietly in the
/// background; the switch happens at the next launch.
pub async fn stage_in_background(paths: AppPaths) {
    let install = Install::new(&paths.bundle_dir);
    let result = async {
        let feed = Feed::online("stable")?;
        let mut state = UpdateState::load(&paths)?;
        let Some(release) = check(&paths, &install, &mut state, &feed, "stable").await? else {
            return Ok(None);
        };
        stage(&install, &feed, &release).await?;
        let mut state = UpdateState::load(&paths)?;
        state.staged = Some(release.version);
        state.save(&paths)?;
        Ok::<_, anyhow::Error>(Some(release.version))
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
    let name = if cfg!(windows) {
        "jarvis.exe"
    } else {
        "jarvis"
    };
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
    jarvis_durable::copy_atomic(
        "previous launcher",
        &running,
        &paths.bundle_dir.join(format!("{name}.previous")),
    )?;
    self_replace::self_replace(&shipped).context("could not replace the launcher")?;
    checkpoint("update:launcher-replaced");
    Ok(true)
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

fn set_executable(path: &Path, executable: bool) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, executable);
    Ok(())
}

/// Unpacks an offline update archive, refusing anything but plain files and
/// folders at safe relative paths (no `..`, absolute paths or links).
fn unpack_safely(archive: &Path, into: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("could not open '{}'", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let mut total = 0u64;
    for entry in tar.entries().context("not a readable tar archive")? {
        let mut entry = entry.context("the archive is damaged")?;
        let path = entry
            .path()
            .context("an entry has an unreadable name")?
            .into_owned();
        let text = path.to_string_lossy().replace('\\', "/");
        let text = text.trim_end_matches('/');
        if !jarvis_dist::manifest::is_safe_relative(text) {
            bail!(
                "the update archive was refused: entry '{}' is not a safe path; nothing was changed",
                path.display()
            );
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(jarvis_dist::feed::under(into, text))?;
            continue;
        }
        if !kind.is_file() {
            bail!(
                "the update archive was refused: entry '{}' is a link or special file; nothing was changed",
                path.display()
            );
        }
        total += entry.size();
        if total > 8 * jarvis_dist::manifest::MAX_FILE_BYTES {
            bail!("the update archive was refused: it unpacks to more than a release may hold");
        }
        let dest = jarvis_dist::feed::under(into, text);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&dest)?;
        let size = entry.header().size()?;
        std::io::copy(&mut std::io::Read::take(&mut entry, size), &mut out)?;
    }
    Ok(())
}
