//! The versioned model store in `<data>/models/`.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use jarvis_download::Sha256Digest;
use jarvis_durable::{
    FileError, Visibility, create_private_dir_all, read_optional, sync_dir, write_atomic,
};
use jarvis_protocol::models::{
    ACTIVE_FILE, PREVIOUS_FILE, RECEIPT_FILE, STAGING_DIR, read_pointer,
};
use serde::{Deserialize, Serialize};

use crate::catalog::ModelRole;
use crate::names::{ModelName, ModelVersion, RelativePath};
use crate::{ModelEntry, RegistryError};

/// Written into every installed version folder: what is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub format: u32,
    pub name: ModelName,
    pub version: ModelVersion,
    pub role: ModelRole,
    pub files: Vec<ReceiptFile>,
    /// RFC 3339.
    pub installed_at: String,
    /// Where it came from (a URL, an import path).
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptFile {
    pub path: RelativePath,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// An installed version as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledVersion {
    pub version: ModelVersion,
    pub role: ModelRole,
    pub active: bool,
    pub previous: bool,
    pub size: u64,
    pub files: Vec<ReceiptFile>,
    pub installed_at: String,
    pub path: PathBuf,
}

/// A model with all its installed versions.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledModel {
    pub name: ModelName,
    pub active: Option<ModelVersion>,
    pub previous: Option<ModelVersion>,
    pub versions: Vec<InstalledVersion>,
}

/// One file's verification result.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub name: ModelName,
    pub version: ModelVersion,
    pub path: RelativePath,
    #[serde(flatten)]
    pub outcome: CheckOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum CheckOutcome {
    Ok,
    Missing,
    WrongSize {
        expected: u64,
        actual: u64,
    },
    WrongChecksum {
        expected: Sha256Digest,
        calculated: Sha256Digest,
    },
}

/// What `gc` removed (or would remove).
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub name: ModelName,
    pub version: ModelVersion,
    pub size: u64,
}

/// Held while a version is being staged, so two installs never share a
/// staging folder.
#[derive(Debug)]
pub struct StagingLock {
    _file: File,
}

/// The store under one models folder.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
}

const RECEIPT_FORMAT: u32 = 1;

impl ModelStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn version_dir(&self, name: &ModelName, version: &ModelVersion) -> PathBuf {
        self.root.join(name.as_str()).join(version.as_str())
    }

    /// `<models>/.staging/<name>/<version>`: where downloads and imports
    /// build a version before it is installed.
    pub fn staging_dir(&self, name: &ModelName, version: &ModelVersion) -> PathBuf {
        self.root
            .join(STAGING_DIR)
            .join(name.as_str())
            .join(version.as_str())
    }

    /// Bytes of `entry` already on disk in its staging folder: finished
    /// files and partial downloads, for progress reports (0 when nothing
    /// is staged).
    pub fn staged_bytes(&self, entry: &ModelEntry) -> u64 {
        let staging = self.staging_dir(&entry.name, &entry.version);
        entry
            .files
            .iter()
            .map(|file| {
                let dest = file.path.under(&staging);
                let (partial, _) = jarvis_download::partial_paths(&dest);
                std::fs::metadata(&dest)
                    .or_else(|_| std::fs::metadata(&partial))
                    .map_or(0, |m| m.len())
            })
            .sum()
    }

    /// Creates the staging folder and locks it for this process.
    pub fn lock_staging(
        &self,
        name: &ModelName,
        version: &ModelVersion,
    ) -> Result<(PathBuf, StagingLock), RegistryError> {
        let dir = self.staging_dir(name, version);
        create_private_dir_all("model staging folder", &dir)?;
        let lock_path = self
            .root
            .join(STAGING_DIR)
            .join(name.as_str())
            .join(format!("{version}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| file_error("open", "staging lock", &lock_path, e))?;
        match file.try_lock() {
            Ok(()) => Ok((dir, StagingLock { _file: file })),
            Err(TryLockError::WouldBlock) => Err(RegistryError::Busy {
                name: name.to_string(),
                version: version.to_string(),
            }),
            Err(TryLockError::Error(e)) => {
                Err(file_error("lock", "staging lock", &lock_path, e).into())
            }
        }
    }

    pub fn is_installed(&self, name: &ModelName, version: &ModelVersion) -> bool {
        self.version_dir(name, version).join(RECEIPT_FILE).is_file()
    }

    /// Installs a staged version: every file must be present with its size
    /// (the caller verified hashes while writing them). The receipt goes in
    /// first, then the whole folder is renamed into place.
    pub fn install_staged(
        &self,
        staging: &Path,
        entry: &ModelEntry,
        origin: &str,
    ) -> Result<PathBuf, RegistryError> {
        let mut files = Vec::new();
        for file in &entry.files {
            let path = file.path.under(staging);
            let actual = std::fs::metadata(&path)
                .map_err(|e| file_error("read", "staged model file", &path, e))?
                .len();
            if actual != file.size {
                return Err(RegistryError::WrongSize {
                    path,
                    expected: file.size,
                    actual,
                });
            }
            files.push(ReceiptFile {
                path: file.path.clone(),
                size: file.size,
                sha256: file.sha256,
            });
        }
        self.install_staged_files(staging, entry, files, origin)
    }

    /// Installs a staged version holding exactly `files` (already
    /// verified or just produced by a conversion).
    pub fn install_staged_files(
        &self,
        staging: &Path,
        entry: &ModelEntry,
        files: Vec<ReceiptFile>,
        origin: &str,
    ) -> Result<PathBuf, RegistryError> {
        let target = self.version_dir(&entry.name, &entry.version);
        if self.is_installed(&entry.name, &entry.version) {
            return Err(RegistryError::AlreadyInstalled {
                name: entry.name.to_string(),
                version: entry.version.to_string(),
            });
        }
        let receipt = Receipt {
            format: RECEIPT_FORMAT,
            name: entry.name.clone(),
            version: entry.version.clone(),
            role: entry.role,
            files,
            installed_at: jiff::Timestamp::now().to_string(),
            origin: origin.to_owned(),
        };
        let text = serde_json::to_vec_pretty(&receipt).unwrap_or_default();
        write_atomic(
            "model receipt",
            &staging.join(RECEIPT_FILE),
            &text,
            Visibility::Normal,
        )?;
        sync_tree(staging)?;
        let model_dir = self.root.join(entry.name.as_str());
        create_private_dir_all("model folder", &model_dir)?;
        if target.exists() {
            // A folder without our receipt: left by something else. Keep it
            // aside rather than deleting what we did not create.
            let aside =
                model_dir.join(format!(".{}.unknown-{}", entry.version, std::process::id()));
            std::fs::rename(&target, &aside)
                .map_err(|e| file_error("move aside", "unknown folder", &target, e))?;
            tracing::warn!(path = %target.display(), aside = %aside.display(), "moved aside a folder without a receipt");
        }
        std::fs::rename(staging, &target)
            .map_err(|e| file_error("install", "model version", &target, e))?;
        sync_dir(&model_dir).map_err(|e| file_error("flush", "model folder", &model_dir, e))?;
        tracing::info!(name = %entry.name, version = %entry.version, "installed model");
        Ok(target)
    }

    pub fn active(&self, name: &ModelName) -> Result<Option<ModelVersion>, RegistryError> {
        self.pointer(name, ACTIVE_FILE)
    }

    pub fn previous(&self, name: &ModelName) -> Result<Option<ModelVersion>, RegistryError> {
        self.pointer(name, PREVIOUS_FILE)
    }

    /// Makes `version` active; the version active before becomes `previous`.
    pub fn activate(&self, name: &ModelName, version: &ModelVersion) -> Result<(), RegistryError> {
        self.require_installed(name, version)?;
        let current = self.active(name)?;
        if current.as_ref() == Some(version) {
            return Ok(());
        }
        // `previous` first: a crash between the two writes leaves the old
        // active version in place and a harmless previous pointer.
        if let Some(current) = &current {
            self.write_pointer(name, PREVIOUS_FILE, current)?;
        }
        self.write_pointer(name, ACTIVE_FILE, version)?;
        tracing::info!(%name, %version, "activated model version");
        Ok(())
    }

    /// Swaps `active` and `previous`; returns the now active version.
    pub fn rollback(&self, name: &ModelName) -> Result<ModelVersion, RegistryError> {
        let Some(previous) = self.previous(name)? else {
            return Err(RegistryError::NoPrevious {
                name: name.to_string(),
            });
        };
        self.require_installed(name, &previous)?;
        self.activate(name, &previous)?;
        Ok(previous)
    }

    /// Every installed model, sorted by name, versions by install time.
    pub fn installed(&self) -> Result<Vec<InstalledModel>, RegistryError> {
        let mut models = Vec::new();
        for name in self.subdirs(&self.root)? {
            let Ok(name) = ModelName::parse(&name) else {
                continue;
            };
            let active = self.active(&name)?;
            let previous = self.previous(&name)?;
            let mut versions = Vec::new();
            for version in self.subdirs(&self.root.join(name.as_str()))? {
                let Ok(version) = ModelVersion::parse(&version) else {
                    continue;
                };
                let dir = self.version_dir(&name, &version);
                let Some(receipt) = read_receipt(&dir)? else {
                    continue;
                };
                versions.push(InstalledVersion {
                    active: active.as_ref() == Some(&version),
                    previous: previous.as_ref() == Some(&version),
                    size: receipt.files.iter().map(|f| f.size).sum(),
                    role: receipt.role,
                    files: receipt.files,
                    installed_at: receipt.installed_at,
                    path: dir,
                    version,
                });
            }
            if versions.is_empty() && active.is_none() {
                continue;
            }
            versions.sort_by(|a, b| a.installed_at.cmp(&b.installed_at));
            models.push(InstalledModel {
                name,
                active,
                previous,
                versions,
            });
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }

    /// Re-hashes every file of every installed version (of `only`, if
    /// given) against its receipt.
    pub fn verify(&self, only: Option<&ModelName>) -> Result<Vec<FileCheck>, RegistryError> {
        let mut checks = Vec::new();
        for model in self.installed()? {
            if only.is_some_and(|n| n != &model.name) {
                continue;
            }
            for version in &model.versions {
                for file in &version.files {
                    let path = file.path.under(&version.path);
                    let outcome = match std::fs::metadata(&path) {
                        Err(_) => CheckOutcome::Missing,
                        Ok(meta) if meta.len() != file.size => CheckOutcome::WrongSize {
                            expected: file.size,
                            actual: meta.len(),
                        },
                        Ok(_) => {
                            let calculated = Sha256Digest::of_file(&path)
                                .map_err(|e| file_error("read", "model file", &path, e))?;
                            if calculated == file.sha256 {
                                CheckOutcome::Ok
                            } else {
                                CheckOutcome::WrongChecksum {
                                    expected: file.sha256,
                                    calculated,
                                }
                            }
                        }
                    };
                    checks.push(FileCheck {
                        name: model.name.clone(),
                        version: version.version.clone(),
                        path: file.path.clone(),
                        outcome,
                    });
                }
            }
        }
        Ok(checks)
    }

    /// Removes installed versions that are neither active nor previous.
    /// Only folders with our receipt are touched; `.staging` never is.
    pub fn gc(&self, dry_run: bool) -> Result<Vec<Removed>, RegistryError> {
        let mut removed = Vec::new();
        for model in self.installed()? {
            for version in model.versions.iter().filter(|v| !v.active && !v.previous) {
                if !dry_run {
                    // Rename first so a crash never leaves a half-deleted
                    // folder that still looks installed.
                    let trash = self.root.join(model.name.as_str()).join(format!(
                        ".trash-{}-{}",
                        version.version,
                        std::process::id()
                    ));
                    std::fs::rename(&version.path, &trash)
                        .map_err(|e| file_error("remove", "model version", &version.path, e))?;
                    std::fs::remove_dir_all(&trash)
                        .map_err(|e| file_error("remove", "model version", &trash, e))?;
                }
                removed.push(Removed {
                    name: model.name.clone(),
                    version: version.version.clone(),
                    size: version.size,
                });
            }
        }
        Ok(removed)
    }

    fn require_installed(
        &self,
        name: &ModelName,
        version: &ModelVersion,
    ) -> Result<(), RegistryError> {
        if self.is_installed(name, version) {
            Ok(())
        } else {
            Err(RegistryError::NotInstalled {
                name: name.to_string(),
                version: version.to_string(),
            })
        }
    }

    fn pointer(
        &self,
        name: &ModelName,
        pointer: &str,
    ) -> Result<Option<ModelVersion>, RegistryError> {
        let path = self.root.join(name.as_str()).join(pointer);
        let raw = read_pointer(&self.root, name.as_str(), pointer)
            .map_err(|e| file_error("read", "model pointer", &path, e))?;
        Ok(raw.and_then(|v| ModelVersion::parse(&v).ok()))
    }

    fn write_pointer(
        &self,
        name: &ModelName,
        pointer: &str,
        version: &ModelVersion,
    ) -> Result<(), RegistryError> {
        let path = self.root.join(name.as_str()).join(pointer);
        write_atomic(
            "model pointer",
            &path,
            format!("{version}\n").as_bytes(),
            Visibility::Normal,
        )?;
        Ok(())
    }

    fn subdirs(&self, dir: &Path) -> Result<Vec<String>, RegistryError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(file_error("list", "models folder", dir, e).into()),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }
}

fn read_receipt(dir: &Path) -> Result<Option<Receipt>, RegistryError> {
    let path = dir.join(RECEIPT_FILE);
    let Some(bytes) = read_optional("model receipt", &path)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

/// `fsync`s every file and folder under `dir`, so a renamed version is
/// complete on disk.
fn sync_tree(dir: &Path) -> Result<(), RegistryError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| file_error("list", "staging folder", dir, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| file_error("flush", "staged model file", &path, e))?;
        }
    }
    sync_dir(dir).map_err(|e| file_error("flush", "staging folder", dir, e))?;
    Ok(())
}

pub(crate) fn file_error(
    action: &'static str,
    role: &'static str,
    path: &Path,
    source: std::io::Error,
) -> FileError {
    FileError {
        action,
        role,
        path: path.to_owned(),
        source,
    }
}
