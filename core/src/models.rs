//! What the core knows about installed models: it reads the registry's
//! `active` pointers under `JARVIS_MODELS_DIR` and never writes there.

use std::path::PathBuf;

use jarvis_protocol::health::{ActiveModel, ModelsState};
use jarvis_protocol::models::active_version;

/// The models folder as the core sees it (read-only).
#[derive(Debug, Clone)]
pub struct ModelDirectory {
    root: PathBuf,
    required: Vec<String>,
}

impl ModelDirectory {
    pub fn new(root: PathBuf, required: Vec<String>) -> Self {
        Self { root, required }
    }

    /// Active models and the required ones that are missing, read now.
    pub fn state(&self) -> ModelsState {
        let mut active = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if let Ok(Some(version)) = active_version(&self.root, &name) {
                    active.push(ActiveModel { name, version });
                }
            }
        }
        active.sort_by(|a, b| a.name.cmp(&b.name));
        let missing = self
            .required
            .iter()
            .filter(|r| !active.iter().any(|a| &a.name == *r))
            .cloned()
            .collect();
        ModelsState {
            active,
            missing,
            engines: Vec::new(),
        }
    }
}
