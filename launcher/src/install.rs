//! The installed app: `<install>/jarvis` plus
//! `<install>/resources/app/<version>/` (immutable, each with its signed
//! `release.json`) and the `current` / `previous` pointers. A development
//! checkout has no `resources/app`; then the core is found beside the
//! launcher.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use jarvis_dist::installer::{INSTALLER_VERSION_FILE, MANAGED_BY_FILE};
use jarvis_dist::manifest::{AppVersion, MANIFEST_NAME, Release, SIGNATURE_NAME, SchemaRange};
use jarvis_download::Sha256Digest;
use jarvis_durable::{Visibility, read_optional, write_atomic};
use jarvis_migrations::CURRENT_SCHEMA_VERSION;

use crate::hint::{hinted, hinted_with};
use crate::release_config::trusted_keys;

/// Pointer naming the version that runs.
const CURRENT: &str = "current";
/// Pointer naming the version that ran before it.
const PREVIOUS: &str = "previous";

/// The app version to run and the folder holding its core.
#[derive(Debug)]
pub struct AppChoice {
    /// `None` in a development checkout (no installed versions).
    pub version: Option<AppVersion>,
    pub dir: PathBuf,
    /// The data schemas this version's core works with.
    pub schema: SchemaRange,
}

#[derive(Debug, Clone)]
pub struct Install {
    pub app_dir: PathBuf,
}

impl Install {
    pub fn new(bundle_dir: &Path) -> Self {
        Self {
            app_dir: bundle_dir.join("resources").join("app"),
        }
    }

    pub fn version_dir(&self, version: AppVersion) -> PathBuf {
        self.app_dir.join(version.to_string())
    }

    pub fn current(&self) -> anyhow::Result<Option<AppVersion>> {
        self.pointer(CURRENT)
    }

    pub fn previous(&self) -> anyhow::Result<Option<AppVersion>> {
        self.pointer(PREVIOUS)
    }

    /// Makes `version` current; the current one becomes previous.
    pub fn switch_to(&self, version: AppVersion) -> anyhow::Result<()> {
        if !self.version_dir(version).is_dir() {
            bail!("version {version} is not installed");
        }
        let current = self.current()?;
        if current == Some(version) {
            return Ok(());
        }
        if let Some(current) = current {
            self.write_pointer(PREVIOUS, current)?;
        }
        self.write_pointer(CURRENT, version)?;
        tracing::info!(%version, "switched the app version");
        Ok(())
    }

    /// The package manager that owns this install (`apt` for the .deb),
    /// named by `resources/managed-by`; such an install is updated by it,
    /// never by Jarvis.
    pub fn managed_by(&self) -> Option<String> {
        let file = self.resources_dir()?.join(MANAGED_BY_FILE);
        let text = std::fs::read_to_string(file).ok()?;
        let name = text.trim();
        (!name.is_empty()).then(|| name.to_owned())
    }

    /// The version a Windows installer (MSI, Setup.exe) put here last,
    /// named by `resources/installer-version`. The installers own that
    /// file and the version folder, never `current`: the updater's
    /// pointer stays the updater's, so an installer upgrade and the
    /// updater never undo each other.
    pub fn installer_version(&self) -> anyhow::Result<Option<AppVersion>> {
        let Some(resources) = self.resources_dir() else {
            return Ok(None);
        };
        let path = resources.join(INSTALLER_VERSION_FILE);
        let Some(bytes) = read_optional("installer version", &path)? else {
            return Ok(None);
        };
        Ok(String::from_utf8_lossy(&bytes).trim().parse().ok())
    }

    /// Switches to the installer's version when it is newer than
    /// `current` (or nothing is current yet): a newer MSI wins over an
    /// older updater version, a newer updater version over an older MSI.
    pub fn adopt_installer_version(&self) -> anyhow::Result<()> {
        let Some(version) = self.installer_version()? else {
            return Ok(());
        };
        if !self.version_dir(version).join(MANIFEST_NAME).is_file() {
            return Ok(());
        }
        if self.current()?.is_none_or(|current| current < version) {
            self.switch_to(version)?;
        }
        Ok(())
    }

    /// `<install>/resources`, where the installers' marker files are.
    fn resources_dir(&self) -> Option<&Path> {
        self.app_dir.parent()
    }

    /// Refuses to change an install a package manager owns.
    pub fn require_self_managed(&self) -> anyhow::Result<()> {
        match self.managed_by() {
            None => Ok(()),
            Some(manager) => Err(hinted(
                format!("this Jarvis was installed with {manager}, which keeps it up to date"),
                format!(
                    "update it through your system's software updates ({manager}); nothing was changed"
                ),
            )),
        }
    }

    /// Installed version folders (complete ones: with a manifest).
    pub fn installed(&self) -> Vec<AppVersion> {
        let mut out: Vec<AppVersion> = std::fs::read_dir(&self.app_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|v| self.version_dir(*v).join(MANIFEST_NAME).is_file())
            .collect();
        out.sort();
        out
    }

    /// Checks an installed version against its signed manifest: signature,
    /// then every file's size and SHA-256.
    pub fn verify(&self, version: AppVersion) -> anyhow::Result<Release> {
        let dir = self.version_dir(version);
        let manifest = jarvis_durable::read("release manifest", &dir.join(MANIFEST_NAME))?;
        let signature =
            jarvis_durable::read_to_string("release signature", &dir.join(SIGNATURE_NAME))?;
        jarvis_dist::signing::verify(&manifest, &signature, &trusted_keys()?).with_context(
            || format!("the installed version {version} is not signed by a trusted key"),
        )?;
        let release = Release::parse_verified(&manifest)?;
        for file in &release.files {
            let path = jarvis_dist::feed::under(&dir, &file.path);
            let actual = Sha256Digest::of_file(&path)
                .with_context(|| format!("'{}' is missing", path.display()))?;
            if actual != file.sha256 {
                bail!(
                    "'{}' of version {version} does not match its signed checksum",
                    path.display()
                );
            }
        }
        Ok(release)
    }

    /// The current installed version, checked against its signed manifest;
    /// the previous one if the current is damaged (switching back to it);
    /// the launcher's own folder in a development checkout.
    pub fn choose(&self) -> anyhow::Result<AppChoice> {
        self.adopt_installer_version()?;
        let Some(current) = self.current()? else {
            return Ok(AppChoice {
                version: None,
                dir: self
                    .app_dir
                    .parent()
                    .and_then(Path::parent)
                    .map(Path::to_owned)
                    .unwrap_or_default(),
                schema: SchemaRange {
                    min: CURRENT_SCHEMA_VERSION,
                    max: CURRENT_SCHEMA_VERSION,
                },
            });
        };
        match self.verify(current) {
            Ok(release) => Ok(AppChoice {
                version: Some(current),
                dir: self.version_dir(current),
                schema: release.data_schema,
            }),
            Err(error) => {
                let previous = self.previous()?.filter(|p| self.verify(*p).is_ok());
                let Some(previous) = previous else {
                    return Err(hinted_with(
                        error,
                        "the installed app is damaged and no previous version is intact",
                        "reinstall Jarvis; your data is untouched",
                    ));
                };
                eprintln!(
                    "warning: Jarvis {current} is damaged ({error:#}); starting {previous} instead."
                );
                let release = self.verify(previous)?;
                self.switch_to(previous)?;
                Ok(AppChoice {
                    version: Some(previous),
                    dir: self.version_dir(previous),
                    schema: release.data_schema,
                })
            }
        }
    }

    fn pointer(&self, name: &str) -> anyhow::Result<Option<AppVersion>> {
        let path = self.app_dir.join(name);
        let Some(bytes) = read_optional("app version pointer", &path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(text.trim().parse().ok())
    }

    fn write_pointer(&self, name: &str, version: AppVersion) -> anyhow::Result<()> {
        write_atomic(
            "app version pointer",
            &self.app_dir.join(name),
            format!("{version}\n").as_bytes(),
            Visibility::Normal,
        )?;
        Ok(())
    }
}
