//! `jarvis-dist installer tar`: `Jarvis-<version>-<target>.tar.gz`, an
//! archive with a POSIX shell installer (Linux, macOS), per-user, no root:
//!
//! ```text
//! jarvis-<version>/install.sh       installs, links ~/.local/bin/jarvis
//! jarvis-<version>/jarvis           the launcher that does the installing
//! jarvis-<version>/feed/...         the signed release, as published
//! ```
//!
//! `install.sh` runs `jarvis install --from feed` (verified like any
//! update) into `${JARVIS_BUNDLE_DIR:-${XDG_DATA_HOME:-~/.local/share}/jarvis-app}`,
//! the same install folder the AppImage uses, and from then on Jarvis
//! updates itself there. `install.sh --uninstall` runs `jarvis uninstall`.

use std::path::{Path, PathBuf};

use crate::DistError;
use crate::feed::{file_error, list_files};
use crate::installer::{DESKTOP_ENTRY, ICON_SVG, SignedRelease, put, work_dir};

const INSTALL_SH: &str = r#"#!/bin/sh
# Installs Jarvis for this user (no root): the signed release beside this
# script goes into the install folder, verified like any update.
#   ./install.sh               install (or update to this release)
#   ./install.sh --uninstall   remove the app; your data stays
#   ./install.sh --uninstall --remove-data   remove your data too
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
install="${JARVIS_BUNDLE_DIR:-$data_home/jarvis-app}"
bin="${JARVIS_BIN_DIR:-$HOME/.local/bin}"
if [ "${1:-}" = "--uninstall" ]; then
    shift
    JARVIS_BUNDLE_DIR="$install" "$install/jarvis" uninstall "$@"
    rm -f "$bin/jarvis" "$data_home/applications/jarvis.desktop" \
        "$data_home/icons/hicolor/scalable/apps/jarvis.svg"
    exit 0
fi
JARVIS_BUNDLE_DIR="$install" "$here/jarvis" install --from "$here/feed"
mkdir -p "$bin" "$data_home/applications" "$data_home/icons/hicolor/scalable/apps"
ln -sf "$install/jarvis" "$bin/jarvis"
sed "s|^Exec=jarvis|Exec=$install/jarvis|" "$here/jarvis.desktop" >"$data_home/applications/jarvis.desktop"
cp "$here/jarvis.svg" "$data_home/icons/hicolor/scalable/apps/jarvis.svg"
echo "Start Jarvis from your applications menu, or run: $bin/jarvis"
case ":$PATH:" in *":$bin:"*) ;; *) echo "($bin is not on your PATH.)" ;; esac
"#;

/// Builds `<out>/Jarvis-<version>-<target>.tar.gz` carrying `release`.
pub fn build(release: &SignedRelease, out: &Path) -> Result<PathBuf, DistError> {
    if release.is_windows() {
        return Err(DistError::BadManifest(
            "the tar installer is for Linux and macOS; Windows has the MSI and Setup.exe".into(),
        ));
    }
    let version = release.release.version;
    let work = work_dir(out, ".tar-")?;
    let top = format!("jarvis-{version}");
    let root = work.path().join(&top);
    release.write_feed(&root.join("feed"))?;
    put(
        &root.join("jarvis"),
        &release.read_file(release.launcher()?)?,
        true,
    )?;
    put(&root.join("install.sh"), INSTALL_SH.as_bytes(), true)?;
    put(
        &root.join("jarvis.desktop"),
        DESKTOP_ENTRY.as_bytes(),
        false,
    )?;
    put(&root.join("jarvis.svg"), ICON_SVG.as_bytes(), false)?;

    let path = out.join(format!("Jarvis-{version}-{}.tar.gz", release.target()));
    let partial = work.path().join("archive.tar.gz");
    let file = std::fs::File::create(&partial).map_err(|e| file_error("create", &partial, e))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for rel in list_files(&root)? {
        tar.append_path_with_name(root.join(&rel), format!("{top}/{rel}"))
            .map_err(|e| file_error("archive", &root.join(&rel), e))?;
    }
    let gz = tar
        .into_inner()
        .map_err(|e| file_error("write", &partial, e))?;
    let file = gz.finish().map_err(|e| file_error("write", &partial, e))?;
    file.sync_all()
        .map_err(|e| file_error("write", &partial, e))?;
    std::fs::rename(&partial, &path).map_err(|e| file_error("move", &path, e))?;
    Ok(path)
}
