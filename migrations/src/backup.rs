//! Backups of the data folder: `<data>/backups/<id>/` with the copied files
//! under `data/` and a manifest, `backup.json`, of every file's size and
//! SHA-256. A backup exists only once its folder was renamed into place.

use std::path::{Path, PathBuf};

use jarvis_download::Sha256Digest;
use jarvis_durable::{
    FileError, Visibility, copy_atomic, create_private_dir_all, read_optional, sync_dir,
    write_atomic,
};
use serde::{Deserialize, Serialize};

use crate::MigrationError;

/// How many backups are kept; older ones are removed after a new one.
pub const KEEP: usize = 5;
const MANIFEST: &str = "backup.json";
/// In the data folder while a restore's copies are being put in place.
pub const RESTORE_JOURNAL: &str = "restore-journal.json";

/// What a restore puts in place: enough to finish it after a crash.
#[derive(Debug, Serialize, Deserialize)]
struct RestoreJournal {
    id: String,
    roots: Vec<Root>,
}

/// A backup's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub id: String,
    /// The data schema of the folder backed up.
    pub schema_version: u32,
    /// Why it was made (`migration 1 to 2`, `manual`).
    pub reason: String,
    pub created_at: String,
    /// The paths (relative to the data folder) this backup restores, and
    /// whether each existed: a restore removes what did not exist then.
    pub roots: Vec<Root>,
    pub files: Vec<BackupFile>,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    pub path: String,
    pub existed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// Relative to the data folder, `/`-separated.
    pub path: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// The backups of one data folder.
#[derive(Debug, Clone)]
pub struct Backups {
    data_dir: PathBuf,
    root: PathBuf,
}

impl Backups {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            root: data_dir.join("backups"),
        }
    }

    /// Copies `paths` (files or folders, relative to the data folder) into
    /// a new backup. Redis must not be writing (stopped, or just `SAVE`d
    /// with nothing else connected).
    pub fn create(
        &self,
        id_prefix: &str,
        schema_version: u32,
        reason: &str,
        paths: &[&str],
    ) -> Result<Backup, MigrationError> {
        self.finish_interrupted_restore()?;
        create_private_dir_all("backups folder", &self.root)?;
        self.remove_incomplete();
        let now = jiff::Timestamp::now();
        let stamp = now.strftime("%Y%m%dT%H%M%S%.3fZ").to_string();
        let mut id = format!("{id_prefix}-{stamp}");
        let mut n = 2;
        while self.root.join(&id).exists() {
            id = format!("{id_prefix}-{stamp}-{n}");
            n += 1;
        }
        let staging = self.root.join(format!(".tmp-{id}"));
        create_private_dir_all("backup folder", &staging.join("data"))?;
        let mut roots = Vec::new();
        let mut files = Vec::new();
        for path in paths {
            let source = self.data_dir.join(path);
            let existed = source.exists();
            roots.push(Root {
                path: (*path).to_owned(),
                existed,
            });
            if existed {
                copy_tree(
                    &source,
                    &staging.join("data").join(path),
                    path,
                    Some(&mut files),
                )?;
            }
        }
        let backup = Backup {
            id: id.clone(),
            schema_version,
            reason: reason.to_owned(),
            created_at: now.to_string(),
            roots,
            size: files.iter().map(|f| f.size).sum(),
            files,
        };
        let manifest = serde_json::to_vec_pretty(&backup).unwrap_or_default();
        write_atomic(
            "backup manifest",
            &staging.join(MANIFEST),
            &manifest,
            Visibility::OwnerOnly,
        )?;
        let target = self.root.join(&id);
        std::fs::rename(&staging, &target)
            .map_err(|e| file_error("finish", "backup", &target, e))?;
        sync_dir(&self.root).map_err(|e| file_error("flush", "backups folder", &self.root, e))?;
        tracing::info!(%id, files = backup.files.len(), "backup created");
        Ok(backup)
    }

    /// Complete backups, oldest first.
    pub fn list(&self) -> Result<Vec<Backup>, MigrationError> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut backups = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Some(bytes) = read_optional("backup manifest", &entry.path().join(MANIFEST))?
                && let Ok(backup) = serde_json::from_slice::<Backup>(&bytes)
            {
                backups.push(backup);
            }
        }
        backups.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(backups)
    }

    pub fn get(&self, id: &str) -> Result<Backup, MigrationError> {
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            return Err(MigrationError::NoBackup(id.to_owned()));
        }
        let bytes = read_optional("backup manifest", &self.root.join(id).join(MANIFEST))?
            .ok_or_else(|| MigrationError::NoBackup(id.to_owned()))?;
        serde_json::from_slice(&bytes).map_err(|e| MigrationError::DamagedBackup {
            id: id.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Puts the backed-up paths back exactly as they were (Redis must be
    /// stopped). Every file is checked against the manifest first.
    pub fn restore(&self, id: &str) -> Result<Backup, MigrationError> {
        self.finish_interrupted_restore()?;
        let backup = self.get(id)?;
        let base = self.root.join(id).join("data");
        for file in &backup.files {
            let path = base.join(&file.path);
            let damaged = |detail: String| MigrationError::DamagedBackup {
                id: id.to_owned(),
                detail,
            };
            let sha =
                Sha256Digest::of_file(&path).map_err(|e| damaged(format!("{}: {e}", file.path)))?;
            if sha != file.sha256 {
                return Err(damaged(format!(
                    "{} does not match its checksum",
                    file.path
                )));
            }
        }
        // Every copy is made beside its target first, so running out of
        // space (or being killed) here leaves the data as it was.
        let prepared = self.prepare_restore(&backup, &base);
        if let Err(error) = prepared {
            for root in &backup.roots {
                let _ = remove_any(&sibling(&self.data_dir.join(&root.path), "restore-new"));
            }
            return Err(error);
        }
        // From the journal on, the restore is finished even after a crash:
        // every copy is complete, and what is left is renames.
        let journal = RestoreJournal {
            id: id.to_owned(),
            roots: backup.roots.clone(),
        };
        write_atomic(
            "restore journal",
            &self.data_dir.join(RESTORE_JOURNAL),
            &serde_json::to_vec(&journal).unwrap_or_default(),
            Visibility::Normal,
        )?;
        jarvis_durable::checkpoint("restore:prepared");
        self.finish_restore(&journal)?;
        jarvis_durable::checkpoint("restore:files-copied");
        tracing::info!(%id, "backup restored");
        Ok(backup)
    }

    /// Copies each root of `backup` to `<root>.restore-new`, durably.
    fn prepare_restore(&self, backup: &Backup, base: &Path) -> Result<(), MigrationError> {
        for root in backup.roots.iter().filter(|r| r.existed) {
            let target = self.data_dir.join(&root.path);
            let fresh = sibling(&target, "restore-new");
            remove_any(&fresh)?;
            if let Some(parent) = fresh.parent() {
                create_private_dir_all("data folder", parent)?;
            }
            // The backup's files were checked against its manifest above.
            copy_tree(&base.join(&root.path), &fresh, &root.path, None)?;
            if let Some(parent) = fresh.parent() {
                sync_dir(parent).map_err(|e| file_error("flush", "data folder", parent, e))?;
            }
        }
        Ok(())
    }

    /// Puts the prepared copies in place (renames only; it runs again to
    /// the same end after a crash), then removes the journal.
    fn finish_restore(&self, journal: &RestoreJournal) -> Result<(), MigrationError> {
        for root in &journal.roots {
            let target = self.data_dir.join(&root.path);
            let fresh = sibling(&target, "restore-new");
            let aside = sibling(&target, "restore-old");
            let prepared = std::fs::symlink_metadata(&fresh).is_ok();
            if (prepared || !root.existed) && std::fs::symlink_metadata(&target).is_ok() {
                remove_any(&aside)?;
                std::fs::rename(&target, &aside)
                    .map_err(|e| file_error("move aside", "data", &target, e))?;
            }
            if prepared {
                std::fs::rename(&fresh, &target)
                    .map_err(|e| file_error("restore", "data", &target, e))?;
            }
            if let Some(parent) = target.parent() {
                sync_dir(parent).map_err(|e| file_error("flush", "data folder", parent, e))?;
            }
        }
        for root in &journal.roots {
            remove_any(&sibling(&self.data_dir.join(&root.path), "restore-old"))?;
        }
        remove_any(&self.data_dir.join(RESTORE_JOURNAL))?;
        sync_dir(&self.data_dir)
            .map_err(|e| file_error("flush", "data folder", &self.data_dir, e))?;
        Ok(())
    }

    /// Finishes a restore that was interrupted after its copies were all
    /// made (its journal is there); returns the backup's id. Run before
    /// anything reads the data folder.
    pub fn finish_interrupted_restore(&self) -> Result<Option<String>, MigrationError> {
        let path = self.data_dir.join(RESTORE_JOURNAL);
        let Some(bytes) = read_optional("restore journal", &path)? else {
            return Ok(None);
        };
        let journal: RestoreJournal =
            serde_json::from_slice(&bytes).map_err(|e| MigrationError::BadRestoreJournal {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        tracing::warn!(id = %journal.id, "finishing a backup restore that was interrupted");
        self.finish_restore(&journal)?;
        Ok(Some(journal.id))
    }

    /// Removes all but the newest [`KEEP`] backups, never `keep_id`.
    pub fn prune(&self, keep_id: &str) -> Result<Vec<String>, MigrationError> {
        let backups = self.list()?;
        let excess = backups.len().saturating_sub(KEEP);
        let mut removed = Vec::new();
        for backup in backups.into_iter().take(excess) {
            if backup.id == keep_id {
                continue;
            }
            let dir = self.root.join(&backup.id);
            let trash = self.root.join(format!(".trash-{}", backup.id));
            std::fs::rename(&dir, &trash)
                .map_err(|e| file_error("remove", "old backup", &dir, e))?;
            std::fs::remove_dir_all(&trash)
                .map_err(|e| file_error("remove", "old backup", &trash, e))?;
            removed.push(backup.id);
        }
        Ok(removed)
    }

    /// Removes backups that were never finished (`.tmp-*`, `.trash-*`).
    pub fn remove_incomplete(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || name.starts_with(".trash-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Copies `source` (a file or a folder) to `target`, each file atomically
/// and durably; with `files`, records each copy's size and SHA-256 there
/// (a backup's manifest).
fn copy_tree(
    source: &Path,
    target: &Path,
    relative: &str,
    mut files: Option<&mut Vec<BackupFile>>,
) -> Result<(), MigrationError> {
    let meta =
        std::fs::symlink_metadata(source).map_err(|e| file_error("read", "data", source, e))?;
    if meta.is_dir() {
        create_private_dir_all("backup folder", target)?;
        let mut entries: Vec<_> = std::fs::read_dir(source)
            .map_err(|e| file_error("list", "data folder", source, e))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            copy_tree(
                &entry.path(),
                &target.join(&name),
                &format!("{relative}/{name}"),
                files.as_deref_mut(),
            )?;
        }
        sync_dir(target).map_err(|e| file_error("flush", "backup folder", target, e))?;
    } else if meta.is_file() {
        if let Some(parent) = target.parent() {
            create_private_dir_all("backup folder", parent)?;
        }
        let size = copy_atomic("backup copy", source, target)?;
        if let Some(files) = files {
            let sha256 = Sha256Digest::of_file(target)
                .map_err(|e| file_error("read", "backup copy", target, e))?;
            files.push(BackupFile {
                path: relative.to_owned(),
                size,
                sha256,
            });
        }
    }
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

fn remove_any(path: &Path) -> Result<(), MigrationError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(path).map_err(|e| file_error("remove", "data", path, e))?
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| file_error("remove", "data", path, e))?,
        Err(_) => {}
    }
    Ok(())
}

fn file_error(
    action: &'static str,
    role: &'static str,
    path: &Path,
    source: std::io::Error,
) -> MigrationError {
    MigrationError::File(FileError {
        action,
        role,
        path: path.to_owned(),
        source,
    })
}
