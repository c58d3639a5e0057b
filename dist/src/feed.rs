//! Assembling version folders and release feeds.
//!
//! A feed is any static folder or HTTP server:
//! ```text
//! <root>/<channel>/<target>/release.json        the signed manifest
//! <root>/<channel>/<target>/release.json.sig
//! <root>/<channel>/<target>/files/<version>/<path>
//! <root>/<channel>/<target>/deltas/<from>-to-<version>/<path>.patch
//! <root>/<channel>/<target>/archives/<version>.tar
//! ```

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use jarvis_download::Sha256Digest;
use jarvis_durable::{FileError, Visibility, create_private_dir_all, write_atomic};
use serde::{Deserialize, Serialize};

use crate::manifest::{
    AppVersion, Artifact, Delta, MANIFEST_NAME, RELEASE_FORMAT, Release, ReleaseFile,
    SIGNATURE_NAME, SchemaRange,
};
use crate::{DistError, delta, signing};

/// `version.json` inside every version folder.
pub const VERSION_FILE: &str = "version.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: AppVersion,
    pub channel: String,
    pub target: String,
    pub data_schema: SchemaRange,
}

/// Writes a version folder: `files` (path inside, source, executable) copied, plus
/// `version.json`. Files stay uncompressed so deltas between versions stay
/// small.
pub fn bundle(
    out: &Path,
    info: &VersionInfo,
    files: &[(String, PathBuf, bool)],
) -> Result<(), DistError> {
    create_private_dir_all("bundle folder", out)?;
    for (path, source, executable) in files {
        if !crate::manifest::is_safe_relative(path) {
            return Err(DistError::BadManifest(format!("unsafe path '{path}'")));
        }
        let target = under(out, path);
        if let Some(parent) = target.parent() {
            create_private_dir_all("bundle folder", parent)?;
        }
        std::fs::copy(source, &target).map_err(|e| file_error("copy", &target, e))?;
        set_executable(&target, *executable)?;
    }
    let text = serde_json::to_vec_pretty(info).unwrap_or_default();
    write_atomic(
        "version file",
        &out.join(VERSION_FILE),
        &text,
        Visibility::Normal,
    )?;
    Ok(())
}

pub fn read_version(folder: &Path) -> Result<VersionInfo, DistError> {
    let bytes = jarvis_durable::read("version file", &folder.join(VERSION_FILE))?;
    serde_json::from_slice(&bytes).map_err(|e| DistError::BadManifest(format!("version.json: {e}")))
}

/// Options of a release.
#[derive(Debug)]
pub struct ReleaseOptions<'a> {
    pub bundle: &'a Path,
    /// Earlier version folders to make deltas from.
    pub previous: &'a [PathBuf],
    pub feed_root: &'a Path,
    pub key: &'a SigningKey,
    pub expires_at: jiff::Timestamp,
    pub min_launcher_version: AppVersion,
    pub rollout_percent: u8,
    /// zstd level of the patches ([`crate::delta::DEFAULT_LEVEL`]).
    pub level: i32,
}

/// Writes a release of `bundle` into the feed and returns its manifest.
pub fn release(options: &ReleaseOptions<'_>) -> Result<Release, DistError> {
    let info = read_version(options.bundle)?;
    let dir = options.feed_root.join(&info.channel).join(&info.target);
    let previous: Vec<(VersionInfo, &PathBuf)> = options
        .previous
        .iter()
        .map(|p| read_version(p).map(|v| (v, p)))
        .collect::<Result<_, _>>()?;
    let mut files = Vec::new();
    for path in list_files(options.bundle)? {
        let source = under(options.bundle, &path);
        let bytes = std::fs::read(&source).map_err(|e| file_error("read", &source, e))?;
        let url = format!("files/{}/{path}", info.version);
        write_file(&dir, &url, &bytes)?;
        let mut deltas = Vec::new();
        for (old_info, old_dir) in &previous {
            let old_path = under(old_dir, &path);
            let Ok(old) = std::fs::read(&old_path) else {
                continue;
            };
            let (kind, patch) = delta::make(&old, &bytes, options.level)?;
            if patch.len() >= bytes.len() {
                continue;
            }
            let url = format!(
                "deltas/{}-to-{}/{path}.patch",
                old_info.version, info.version
            );
            write_file(&dir, &url, &patch)?;
            deltas.push(Delta {
                from: old_info.version,
                kind,
                url,
                size: patch.len() as u64,
                sha256: Sha256Digest::of(&patch),
            });
        }
        files.push(ReleaseFile {
            sha256: Sha256Digest::of(&bytes),
            size: bytes.len() as u64,
            executable: is_executable(&source),
            path,
            url,
            deltas,
        });
    }
    let archive_url = format!("archives/{}.tar", info.version);
    let archive = make_archive(options.bundle, &dir.join(&archive_url))?;
    let release = Release {
        format: RELEASE_FORMAT,
        version: info.version,
        channel: info.channel.clone(),
        target: info.target.clone(),
        released_at: jiff::Timestamp::now().to_string(),
        expires_at: options.expires_at.to_string(),
        min_launcher_version: options.min_launcher_version,
        data_schema: info.data_schema,
        rollout_percent: options.rollout_percent,
        files,
        archive: Some(Artifact {
            url: archive_url,
            size: archive.0,
            sha256: archive.1,
        }),
    };
    let manifest = serde_json::to_vec_pretty(&release).unwrap_or_default();
    write_atomic(
        "release manifest",
        &dir.join(MANIFEST_NAME),
        &manifest,
        Visibility::Normal,
    )?;
    let signature = signing::sign(options.key, &manifest);
    write_atomic(
        "release signature",
        &dir.join(SIGNATURE_NAME),
        signature.as_bytes(),
        Visibility::Normal,
    )?;
    Ok(release)
}

/// Every regular file under `root`, relative and `/`-separated, sorted;
/// `version.json` first-class like any other file.
pub fn list_files(root: &Path) -> Result<Vec<String>, DistError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| file_error("list", &dir, e))?
            .flatten()
        {
            let kind = entry
                .file_type()
                .map_err(|e| file_error("read", &entry.path(), e))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(root)
                    .unwrap_or(&entry.path())
                    .to_owned();
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let rel = rel.join("/");
                if rel != MANIFEST_NAME && rel != SIGNATURE_NAME {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn make_archive(bundle: &Path, out: &Path) -> Result<(u64, Sha256Digest), DistError> {
    if let Some(parent) = out.parent() {
        create_private_dir_all("feed folder", parent)?;
    }
    let file = std::fs::File::create(out).map_err(|e| file_error("create", out, e))?;
    let mut tar = tar::Builder::new(file);
    tar.follow_symlinks(false);
    for path in list_files(bundle)? {
        tar.append_path_with_name(under(bundle, &path), &path)?;
    }
    tar.into_inner()?.sync_all()?;
    let size = std::fs::metadata(out)
        .map_err(|e| file_error("read", out, e))?
        .len();
    let sha = Sha256Digest::of_file(out).map_err(|e| file_error("read", out, e))?;
    Ok((size, sha))
}

fn write_file(dir: &Path, url: &str, bytes: &[u8]) -> Result<(), DistError> {
    let path = under(dir, url);
    if let Some(parent) = path.parent() {
        create_private_dir_all("feed folder", parent)?;
    }
    write_atomic("release file", &path, bytes, Visibility::Normal)?;
    Ok(())
}

/// `root` joined with a `/`-separated relative path.
pub fn under(root: &Path, relative: &str) -> PathBuf {
    relative.split('/').fold(root.to_owned(), |p, c| p.join(c))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.extension().is_some_and(|e| e == "exe")
    }
}

/// Marks `path` executable (0755) or not (0644). Windows marks executables
/// by name, not by a permission bit.
pub(crate) fn set_executable(path: &Path, executable: bool) -> Result<(), DistError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| file_error("set permissions on", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, executable);
    Ok(())
}

pub(crate) fn file_error(action: &'static str, path: &Path, source: std::io::Error) -> DistError {
    DistError::File(FileError {
        action,
        role: "release file",
        path: path.to_owned(),
        source,
    })
}
