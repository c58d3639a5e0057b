//! What every installer format shares: the signed release it carries, read
//! from a feed exactly as published, and the installed layout the launcher
//! and its updater manage:
//!
//! ```text
//! <install>/jarvis[.exe]                    the launcher
//! <install>/resources/app/<version>/...     the release's files
//! <install>/resources/app/<version>/release.json(.sig)
//! <install>/resources/app/current           "<version>\n"
//! ```
//!
//! Installers never carry user data and never name the user-data folder.

use std::path::{Path, PathBuf};

use crate::DistError;
use crate::feed::{file_error, set_executable, under};
use crate::manifest::{MANIFEST_NAME, Release, ReleaseFile, SIGNATURE_NAME};

/// The file, beside `resources/`, that names the package manager owning an
/// install (`apt`): the launcher then leaves updates to it.
pub const MANAGED_BY_FILE: &str = "managed-by";

/// The file, beside `resources/`, that names the version a Windows
/// installer put in place; the launcher switches to it when it is newer
/// than `current` (which the installers never own: see `write_install`).
pub const INSTALLER_VERSION_FILE: &str = "installer-version";

/// A release as published in a feed: manifest bytes, signature, files.
#[derive(Debug)]
pub struct SignedRelease {
    pub release: Release,
    pub manifest: Vec<u8>,
    pub signature: Vec<u8>,
    pub channel: String,
    dir: PathBuf,
}

impl SignedRelease {
    /// The release of `channel` for `target` in the feed at `feed_root`.
    pub fn load(feed_root: &Path, channel: &str, target: &str) -> Result<Self, DistError> {
        let dir = feed_root.join(channel).join(target);
        let manifest = read(&dir.join(MANIFEST_NAME))?;
        let signature = read(&dir.join(SIGNATURE_NAME))?;
        let release: Release =
            serde_json::from_slice(&manifest).map_err(|e| DistError::BadManifest(e.to_string()))?;
        if release.target != target {
            return Err(DistError::BadManifest(format!(
                "the release in {} is for {}, not {target}",
                dir.display(),
                release.target
            )));
        }
        let this = Self {
            release,
            manifest,
            signature,
            channel: channel.to_owned(),
            dir,
        };
        this.launcher()?;
        Ok(this)
    }

    pub fn target(&self) -> &str {
        &self.release.target
    }

    pub fn is_windows(&self) -> bool {
        crate::exe_suffix(self.target()) == ".exe"
    }

    /// The launcher's file name on the release's OS.
    pub fn launcher_name(&self) -> String {
        format!("jarvis{}", crate::exe_suffix(self.target()))
    }

    /// The launcher the release ships (installers install it first).
    pub fn launcher(&self) -> Result<&ReleaseFile, DistError> {
        let name = self.launcher_name();
        self.release
            .files
            .iter()
            .find(|f| f.path == name)
            .ok_or_else(|| {
                DistError::BadManifest(format!(
                    "release {} has no launcher {name} (make the bundle with --launcher)",
                    self.release.version
                ))
            })
    }

    pub fn read_file(&self, file: &ReleaseFile) -> Result<Vec<u8>, DistError> {
        read(&under(&self.dir, &file.url))
    }

    /// The architecture as installers name it (`x86_64`).
    pub fn arch(&self) -> &str {
        self.target().split('-').next().unwrap_or("unknown")
    }

    /// Writes the release as a one-release feed (`<root>/<channel>/<target>/`)
    /// for `jarvis install --from`.
    pub fn write_feed(&self, root: &Path) -> Result<(), DistError> {
        let dir = root.join(&self.channel).join(self.target());
        put(&dir.join(MANIFEST_NAME), &self.manifest, false)?;
        put(&dir.join(SIGNATURE_NAME), &self.signature, false)?;
        for file in &self.release.files {
            put(
                &under(&dir, &file.url),
                &self.read_file(file)?,
                file.executable,
            )?;
        }
        Ok(())
    }

    /// Writes the installed layout into `install` (see the module docs),
    /// as the launcher's own `jarvis install` would leave it. With
    /// `Pointer::InstallerVersion` it writes `resources/installer-version`
    /// instead of `current`, for installers whose files the updater must
    /// never have to change (MSI, Setup.exe).
    pub fn write_install(&self, install: &Path, pointer: Pointer) -> Result<(), DistError> {
        let launcher = self.launcher()?;
        put(
            &install.join(self.launcher_name()),
            &self.read_file(launcher)?,
            true,
        )?;
        let app = install.join("resources").join("app");
        let version_dir = app.join(self.release.version.to_string());
        for file in &self.release.files {
            put(
                &under(&version_dir, &file.path),
                &self.read_file(file)?,
                file.executable,
            )?;
        }
        put(&version_dir.join(MANIFEST_NAME), &self.manifest, false)?;
        put(&version_dir.join(SIGNATURE_NAME), &self.signature, false)?;
        let pointer = match pointer {
            Pointer::Current => app.join("current"),
            Pointer::InstallerVersion => install.join("resources").join(INSTALLER_VERSION_FILE),
        };
        put(
            &pointer,
            format!("{}\n", self.release.version).as_bytes(),
            false,
        )?;
        Ok(())
    }
}

/// How hard an installer compresses: `Best` for releases, `Fast` for
/// tests (the .deb's xz -9 and Setup.exe's solid LZMA take a minute on a
/// debug build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Best,
    Fast,
}

/// Which pointer an installed layout gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    /// `resources/app/current`: the package manager owns the whole install.
    Current,
    /// `resources/installer-version`: the launcher adopts it at start.
    InstallerVersion,
}

/// A work folder beside the output (same file system, removed on drop).
pub fn work_dir(out: &Path, prefix: &str) -> Result<tempfile::TempDir, DistError> {
    std::fs::create_dir_all(out).map_err(|e| file_error("create", out, e))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(out)
        .map_err(|e| file_error("create a work folder in", out, e))
}

pub fn read(path: &Path) -> Result<Vec<u8>, DistError> {
    std::fs::read(path).map_err(|e| file_error("read", path, e))
}

/// Writes a file of an installer's payload. Its folders keep the usual
/// permissions (not the feed's owner-only ones): installers lay files out
/// for every user of the machine, as root-owned or per-user files.
pub fn put(path: &Path, bytes: &[u8], executable: bool) -> Result<(), DistError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| file_error("create", parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| file_error("write", path, e))?;
    set_executable(path, executable)
}

/// Runs an installer tool; a missing tool names the package that has it.
pub fn run_tool(
    command: &mut std::process::Command,
    tool: &str,
    package: &str,
) -> Result<(), DistError> {
    let output = command.output().map_err(|e| {
        DistError::Io(std::io::Error::new(
            e.kind(),
            format!("could not run {tool} (Debian: {package}): {e}"),
        ))
    })?;
    if !output.status.success() {
        return Err(DistError::Io(std::io::Error::other(format!(
            "{tool} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))));
    }
    Ok(())
}

/// The desktop entry of the Linux installers.
pub const DESKTOP_ENTRY: &str = "[Desktop Entry]
Type=Application
Name=Jarvis
Comment=Your local AI assistant
Exec=jarvis
Icon=jarvis
Categories=Utility;
Terminal=false
";

/// Jarvis' icon (the UI's own).
pub const ICON_SVG: &str = include_str!("../../launcher/ui/src/icon.svg");
