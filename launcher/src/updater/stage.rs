//! Staging: `resources/app/.staging-<v>/` built from deltas against the
//! current version where offered, full files otherwise (all through the
//! shared verifying downloader, which resumes what an interrupted run
//! left: a file already there and verified is kept, a partial one goes
//! on from its checkpoint), every file verified, then renamed to
//! `resources/app/<v>/`. The manifest and signature written into the
//! folder are the very bytes the check accepted, and the folder is
//! verified against them before it is renamed into place. Nothing switches
//! here.

use std::path::Path;

use anyhow::Context as _;
use jarvis_dist::manifest::{AppVersion, MANIFEST_NAME, SIGNATURE_NAME};
use jarvis_download::{DownloadOptions, Downloader, FileSpec, NoProgress, Sha256Digest};
use jarvis_durable::{Visibility, checkpoint, write_atomic};
use serde::Serialize;

use super::check::Offer;
use super::feed::Feed;
use crate::install::Install;

#[derive(Debug, Serialize)]
pub struct StageReport {
    pub version: AppVersion,
    pub from: Option<AppVersion>,
    /// Files identical to the installed version's, copied locally.
    pub unchanged_files: usize,
    /// Files an interrupted run had already finished, kept.
    pub resumed_files: usize,
    pub delta_files: usize,
    pub full_files: usize,
    pub bytes_downloaded: u64,
}

/// Builds `resources/app/<version>/` from the feed, verified, without
/// switching to it.
pub async fn stage(install: &Install, feed: &Feed, offer: &Offer) -> anyhow::Result<StageReport> {
    let release = &offer.release;
    let current = install.current()?;
    let target = install.version_dir(release.version);
    let mut report = StageReport {
        version: release.version,
        from: current,
        unchanged_files: 0,
        resumed_files: 0,
        delta_files: 0,
        full_files: 0,
        bytes_downloaded: 0,
    };
    if target.is_dir() && install.verify(release.version).is_ok() {
        return Ok(report);
    }
    // What this run does not own is an interrupted run's: staging folders
    // of other versions (this one supersedes them), patches, trash.
    let staging = install
        .app_dir
        .join(format!(".staging-{}", release.version));
    let patches = install
        .app_dir
        .join(format!(".patches-{}", release.version));
    let in_use: Vec<&Path> = [Some(staging.as_path()), feed.unpacked_dir()]
        .into_iter()
        .flatten()
        .collect();
    clean_leftovers(install, &in_use, |_| true);
    jarvis_durable::create_private_dir_all("update staging folder", &staging)?;
    jarvis_durable::create_private_dir_all("update patches folder", &patches)?;
    let downloader = Downloader::new(DownloadOptions::default())?;
    for file in &release.files {
        let dest = jarvis_dist::feed::under(&staging, &file.path);
        if let Some(parent) = dest.parent() {
            jarvis_durable::create_private_dir_all("update staging folder", parent)?;
        }
        // Finished by an interrupted run of this same stage.
        if std::fs::metadata(&dest).is_ok_and(|m| m.len() == file.size)
            && Sha256Digest::of_file(&dest).is_ok_and(|sha| sha == file.sha256)
        {
            set_executable(&dest, file.executable)?;
            report.resumed_files += 1;
            continue;
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
            let patch_path = patches.join(format!("{}.patch", delta.sha256));
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
    for (name, bytes) in [
        (MANIFEST_NAME, &offer.manifest),
        (SIGNATURE_NAME, &offer.signature),
    ] {
        write_atomic(
            "release manifest",
            &staging.join(name),
            bytes,
            Visibility::Normal,
        )?;
    }
    // Checked once, where it was built: a folder only ever appears under
    // its version's name already verified.
    install
        .verify_folder(&staging, release.version)
        .with_context(|| format!("the staged Jarvis {} does not verify", release.version))?;
    checkpoint("update:staged");
    if target.exists() {
        std::fs::remove_dir_all(&target).context("could not replace a damaged version folder")?;
    }
    std::fs::rename(&staging, &target).context("could not move the new version into place")?;
    jarvis_durable::sync_dir(&install.app_dir)?;
    checkpoint("update:installed");
    if let Err(e) = std::fs::remove_dir_all(&patches) {
        tracing::warn!("could not remove {}: {e}", patches.display());
    }
    Ok(report)
}

/// Removes what interrupted runs left in `resources/app/` that no run
/// owns: `.trash-*`, `.patches-*`, `.incoming-*`, and the `.staging-<v>`
/// folders `drop_staging(v)` says go. Everything that stages holds the
/// instance lock, so nothing else is working here; `in_use` is this run's
/// own. A leftover that cannot be removed is logged and left.
pub fn clean_leftovers(
    install: &Install,
    in_use: &[&Path],
    drop_staging: impl Fn(Option<AppVersion>) -> bool,
) {
    let Ok(entries) = std::fs::read_dir(&install.app_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if in_use.contains(&path.as_path()) {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let leftover = [".trash-", ".patches-", ".incoming-"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || name
                .strip_prefix(".staging-")
                .is_some_and(|v| drop_staging(v.parse().ok()));
        if !leftover {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a leftover of an interrupted update")
            }
            Err(e) => tracing::warn!("could not remove {}: {e}", path.display()),
        }
    }
}

/// Marks `path` executable (0755) or not (0644); Windows marks executables
/// by name.
pub fn set_executable(path: &Path, executable: bool) -> anyhow::Result<()> {
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
