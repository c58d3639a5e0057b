//! `<data>/migration-journal.json`: present exactly while a migration run is
//! under way, so a launch that finds it knows the run was cut short.

use std::path::{Path, PathBuf};

use jarvis_durable::{Visibility, read_optional, remove_if_exists, write_atomic};
use serde::{Deserialize, Serialize};

use crate::MigrationError;

/// The journal's file name in the data folder.
pub const FILE_NAME: &str = "migration-journal.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The backup that restores the folder as it was before the run.
    pub backup_id: String,
    pub from: u32,
    pub to: u32,
    pub started_at: String,
    /// Steps finished so far.
    pub completed: Vec<u32>,
    /// The step running now.
    pub current: Option<u32>,
}

impl Journal {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    pub fn load(data_dir: &Path) -> Result<Option<Self>, MigrationError> {
        let path = Self::path(data_dir);
        let Some(bytes) = read_optional("migration journal", &path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| MigrationError::BadConfig {
                path,
                detail: e.to_string(),
            })
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), MigrationError> {
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        write_atomic(
            "migration journal",
            &Self::path(data_dir),
            &text,
            Visibility::OwnerOnly,
        )?;
        Ok(())
    }

    pub fn remove(data_dir: &Path) -> Result<(), MigrationError> {
        remove_if_exists("migration journal", &Self::path(data_dir))?;
        jarvis_durable::sync_dir(data_dir).map_err(|source| jarvis_durable::FileError {
            action: "flush",
            role: "data folder",
            path: data_dir.to_owned(),
            source,
        })?;
        Ok(())
    }
}
