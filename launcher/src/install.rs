//! The installed app: `<install>/jarvis` plus
//! `<install>/resources/app/<version>/` (immutable, each with its signed
//! `release.json`) and the `current` / `previous` pointers. A development
//! checkout has no `resources/app`; then the core is found beside the
//! launcher.

use std::collections::BTreeSet;
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
#[derive(Debug, Clone)]
pub struct AppChoice {
    /// `None` in a development checkout (no installed versions).
    pub version: Option<AppVersion>,
    pub dir: PathBuf,
    /// The data schemas this version's core works with.
    pub schema: SchemaRange,
    /// The files its signed manifest lists, each checked; `None` in a
    /// development checkout, where nothing is signed.
    listed: Option<BTreeSet<String>>,
}

impl AppChoice {
    /// Whether the program `name` in [`Self::dir`] may be run: only what
    /// the signed manifest lists (and verification checked) in an
    /// installed version, anything in a development checkout.
    pub fn may_run(&self, name: &str) -> bool {
        self.listed.as_ref().is_none_or(|l| l.contains(name))
    }

    /// The development layout: the launcher's own folder, unsigned.
    pub fn development(dir: PathBuf) -> Self {
        Self {
            version: None,
            dir,
            schema: SchemaRange {
                min: CURRENT_SCHEMA_VERSION,
                max: CURRENT_SCHEMA_VERSION,
            },
            listed: None,
        }
    }

    fn installed(install: &Install, version: AppVersion, release: &Release) -> Self {
        Self {
            version: Some(version),
            dir: install.version_dir(version),
            schema: release.data_schema,
            listed: Some(release.files.iter().map(|f| f.path.clone()).collect()),
        }
    }
}

/// What [`Install::select`] found: the version to run and the pointer
/// switches that running it takes (an installer's newer version adopted,
/// a damaged current one left for the previous).
#[derive(Debug)]
pub struct Selection {
    pub app: AppChoice,
    switches: Vec<AppVersion>,
    /// Why the current version is not the one chosen, for the person.
    damaged: Option<String>,
    /// The pointers it was made from; while they are the same, so is the
    /// selection (version folders never change in place).
    pointers: Pointers,
}

/// `current`, `previous` and the installer's version, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pointers {
    current: Option<AppVersion>,
    previous: Option<AppVersion>,
    installer: Option<AppVersion>,
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

    /// The installer's version when it is newer than `current` (or
    /// nothing is current yet) and complete: a newer MSI wins over an older
    /// updater version, a newer updater version over an older MSI.
    fn installer_version_to_adopt(&self) -> anyhow::Result<Option<AppVersion>> {
        let Some(version) = self.installer_version()? else {
            return Ok(None);
        };
        if !self.version_dir(version).join(MANIFEST_NAME).is_file() {
            return Ok(None);
        }
        Ok(self
            .current()?
            .is_none_or(|current| current < version)
            .then_some(version))
    }

    /// The version that runs next: `current`, or an installer's newer one
    /// that the next start adopts. Reads only.
    pub fn next_current(&self) -> anyhow::Result<Option<AppVersion>> {
        Ok(self.installer_version_to_adopt()?.or(self.current()?))
    }

    /// Switches to the installer's version when [`Self::select`] would.
    pub fn adopt_installer_version(&self) -> anyhow::Result<()> {
        if let Some(version) = self.installer_version_to_adopt()? {
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
    /// that it is this version for this target, then every file's size and
    /// SHA-256.
    pub fn verify(&self, version: AppVersion) -> anyhow::Result<Release> {
        self.verify_folder(&self.version_dir(version), version)
    }

    /// [`Self::verify`] for the folder `dir`, which must hold `version`.
    pub fn verify_folder(&self, dir: &Path, version: AppVersion) -> anyhow::Result<Release> {
        let manifest = jarvis_durable::read("release manifest", &dir.join(MANIFEST_NAME))?;
        let signature =
            jarvis_durable::read_to_string("release signature", &dir.join(SIGNATURE_NAME))?;
        jarvis_dist::signing::verify(&manifest, &signature, &trusted_keys()?).with_context(
            || format!("the installed version {version} is not signed by a trusted key"),
        )?;
        let release = Release::parse_verified(&manifest)?;
        if release.version != version {
            bail!(
                "the folder of version {version} holds the signed release of {}",
                release.version
            );
        }
        if release.target != jarvis_dist::TARGET {
            bail!(
                "version {version} was built for {}, this is {}",
                release.target,
                jarvis_dist::TARGET
            );
        }
        for file in &release.files {
            let path = jarvis_dist::feed::under(dir, &file.path);
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
    /// the previous one if the current is damaged; the launcher's own
    /// folder in a development checkout. Reads only: the pointer switches
    /// it takes are made by [`Self::choose`].
    pub fn select(&self) -> anyhow::Result<Selection> {
        let pointers = self.pointers()?;
        let mut switches = Vec::new();
        let Pointers {
            mut current,
            mut previous,
            ..
        } = pointers;
        if let Some(adopted) = self.installer_version_to_adopt()? {
            switches.push(adopted);
            previous = current.or(previous);
            current = Some(adopted);
        }
        let Some(current) = current else {
            let dir = self
                .app_dir
                .parent()
                .and_then(Path::parent)
                .map(Path::to_owned)
                .unwrap_or_default();
            return Ok(Selection {
                app: AppChoice::development(dir),
                switches,
                damaged: None,
                pointers,
            });
        };
        match self.verify(current) {
            Ok(release) => Ok(Selection {
                app: AppChoice::installed(self, current, &release),
                switches,
                damaged: None,
                pointers,
            }),
            Err(error) => {
                let intact = previous
                    .filter(|p| *p != current)
                    .and_then(|p| Some((p, self.verify(p).ok()?)));
                let Some((previous, release)) = intact else {
                    return Err(hinted_with(
                        error,
                        "the installed app is damaged and no previous version is intact",
                        "reinstall Jarvis; your data is untouched",
                    ));
                };
                switches.push(previous);
                Ok(Selection {
                    app: AppChoice::installed(self, previous, &release),
                    switches,
                    damaged: Some(format!(
                        "Jarvis {current} is damaged ({error:#}); starting {previous} instead."
                    )),
                    pointers,
                })
            }
        }
    }

    /// [`Self::select`], then the pointer switches it takes. Only under
    /// the instance lock (`jarvis up`), so no running Jarvis sees
    /// `current` move under it.
    pub fn choose(&self) -> anyhow::Result<AppChoice> {
        let selection = self.select()?;
        self.take(selection)
    }

    /// [`Self::choose`], reusing `earlier` (a [`Self::select`] made before
    /// the lock was taken) when the pointers have not moved since, so the
    /// version is not verified twice on every start.
    pub fn choose_again(&self, earlier: Selection) -> anyhow::Result<AppChoice> {
        if self.pointers()? == earlier.pointers {
            self.take(earlier)
        } else {
            self.choose()
        }
    }

    fn take(&self, selection: Selection) -> anyhow::Result<AppChoice> {
        let Selection {
            app,
            switches,
            damaged,
            pointers: _,
        } = selection;
        if let Some(damaged) = damaged {
            eprintln!("warning: {damaged}");
        }
        for version in switches {
            self.switch_to(version)?;
        }
        Ok(app)
    }

    fn pointers(&self) -> anyhow::Result<Pointers> {
        Ok(Pointers {
            current: self.current()?,
            previous: self.previous()?,
            installer: self.installer_version()?,
        })
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
