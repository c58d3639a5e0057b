//! `jarvis-dist installer dmg`: `Jarvis.app` in a disk image (macOS).
//!
//! The app bundle works like the AppImage: it is signed and immutable, so
//! it carries the signed release and, on each launch, runs `jarvis install
//! --from` into `~/Library/Application Support/jarvis-app` (verified like
//! any update; a no-op once installed), then runs Jarvis from there, where
//! the updater manages versions. The data folder
//! (`~/Library/Application Support/SparkAI`) is never inside it.
//!
//! ```text
//! Jarvis.app/Contents/Info.plist
//! Jarvis.app/Contents/MacOS/Jarvis            the start script (CFBundleExecutable)
//! Jarvis.app/Contents/MacOS/jarvis            the launcher that installs
//! Jarvis.app/Contents/Resources/feed/...      the signed release
//! Jarvis.app/Contents/Resources/jarvis.svg
//! ```
//!
//! The disk image itself needs macOS's `hdiutil`: with `--app-only` (what
//! Linux can do) the folder that would become the image is written
//! instead (`Jarvis.app` and an `Applications` link); the release
//! workflow makes the image on a macOS runner.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::DistError;
use crate::feed::file_error;
use crate::installer::{ICON_SVG, SignedRelease, put, run_tool, work_dir};

/// The app's bundle identifier.
pub const BUNDLE_ID: &str = "org.jarvis-assistant.Jarvis";

const START_SCRIPT: &str = r#"#!/bin/sh
# Jarvis.app: install (or update to) the release this app carries, then
# run Jarvis from the install folder, where it updates itself.
set -eu
contents="$(cd "$(dirname "$0")/.." && pwd)"
install="${JARVIS_BUNDLE_DIR:-$HOME/Library/Application Support/jarvis-app}"
export JARVIS_BUNDLE_DIR="$install"
"$contents/MacOS/jarvis" install --from "$contents/Resources/feed" >&2 ||
    [ -x "$install/jarvis" ] || exit 1
exec "$install/jarvis" "$@"
"#;

/// Builds `<out>/Jarvis-<version>-<arch>.dmg`, or with `app_only` the
/// folder `<out>/Jarvis-<version>-<arch>-dmg/` holding `Jarvis.app`.
pub fn build(release: &SignedRelease, app_only: bool, out: &Path) -> Result<PathBuf, DistError> {
    if !release.target().contains("apple-darwin") {
        return Err(DistError::BadManifest(format!(
            "a DMG carries a macOS release, not one for {}",
            release.target()
        )));
    }
    let version = release.release.version;
    let arch = release.arch();
    let work = work_dir(out, ".dmg-")?;
    let root = work.path().join("root");
    let contents = root.join("Jarvis.app/Contents");
    put(
        &contents.join("Info.plist"),
        info_plist(&version.to_string()).as_bytes(),
        false,
    )?;
    put(
        &contents.join("MacOS/Jarvis"),
        START_SCRIPT.as_bytes(),
        true,
    )?;
    put(
        &contents.join("MacOS/jarvis"),
        &release.read_file(release.launcher()?)?,
        true,
    )?;
    release.write_feed(&contents.join("Resources/feed"))?;
    put(
        &contents.join("Resources/jarvis.svg"),
        ICON_SVG.as_bytes(),
        false,
    )?;
    #[cfg(unix)]
    std::os::unix::fs::symlink("/Applications", root.join("Applications"))
        .map_err(|e| file_error("link", &root.join("Applications"), e))?;

    if app_only {
        let path = out.join(format!("Jarvis-{version}-{arch}-dmg"));
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| file_error("replace", &path, e))?;
        }
        std::fs::rename(&root, &path).map_err(|e| file_error("move", &path, e))?;
        return Ok(path);
    }
    let path = out.join(format!("Jarvis-{version}-{arch}.dmg"));
    let partial = work.path().join("jarvis.dmg");
    run_tool(
        Command::new("hdiutil")
            .args([
                "create",
                "-volname",
                "Jarvis",
                "-format",
                "UDZO",
                "-srcfolder",
            ])
            .arg(&root)
            .arg(&partial),
        "hdiutil (macOS only; use --app-only elsewhere)",
        "none: macOS",
    )?;
    std::fs::rename(&partial, &path).map_err(|e| file_error("move", &path, e))?;
    Ok(path)
}

fn info_plist(version: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>CFBundleDevelopmentRegion</key>
	<string>en</string>
	<key>CFBundleDisplayName</key>
	<string>Jarvis</string>
	<key>CFBundleExecutable</key>
	<string>Jarvis</string>
	<key>CFBundleIdentifier</key>
	<string>{BUNDLE_ID}</string>
	<key>CFBundleInfoDictionaryVersion</key>
	<string>6.0</string>
	<key>CFBundleName</key>
	<string>Jarvis</string>
	<key>CFBundlePackageType</key>
	<string>APPL</string>
	<key>CFBundleShortVersionString</key>
	<string>{version}</string>
	<key>CFBundleVersion</key>
	<string>{version}</string>
	<key>LSApplicationCategoryType</key>
	<string>public.app-category.productivity</string>
	<key>LSMinimumSystemVersion</key>
	<string>11.0</string>
	<key>NSHighResolutionCapable</key>
	<true/>
</dict>
</plist>
"#
    )
}
