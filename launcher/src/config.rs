//! `<data>/config.json`: the user's settings and the data schema version.

use anyhow::{Context as _, bail};
use jarvis_durable::{Visibility, read_optional, write_atomic};
use jarvis_migrations::CURRENT_SCHEMA_VERSION;
use serde::{Deserialize, Serialize};

use crate::paths::AppPaths;

/// The settings file. Keys this version does not know are kept as they are,
/// so an older launcher never drops what a newer one wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppConfig {
    /// The data schema version the folder is in.
    pub schema_version: u32,
    /// Loopback port for the core; 0 picks a free one at every launch.
    #[serde(default)]
    pub core_port: u16,
    /// Download missing required models at start-up, as `jarvis up --pull`.
    #[serde(default)]
    pub auto_download: bool,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            schema_version: CURRENT_SCHEMA_VERSION,
            core_port: 0,
            auto_download: false,
            other: serde_json::Map::new(),
        }
    }
}

impl AppConfig {
    /// Writes and returns the default settings (first launch).
    pub fn create_default(paths: &AppPaths) -> anyhow::Result<Self> {
        let config = Self::default();
        config.save(paths)?;
        tracing::info!(path = %paths.config_file.display(), "wrote default config");
        Ok(config)
    }

    /// Reads `config.json` if there is one, writing nothing. A file from a
    /// newer data schema is an error that leaves the folder untouched.
    pub fn load_existing(paths: &AppPaths) -> anyhow::Result<Option<Self>> {
        let path = &paths.config_file;
        let Some(bytes) = read_optional("config file", path)? else {
            return Ok(None);
        };
        let config: Self = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the config file '{}' is not valid\nhint: fix it, or move it aside and Jarvis writes a fresh one",
                path.display()
            )
        })?;
        if config.schema_version > CURRENT_SCHEMA_VERSION {
            bail!(
                "the data folder '{}' was written by a newer Jarvis (data schema {}), \
                 this Jarvis understands up to schema {}; nothing was changed\n\
                 hint: update Jarvis, or restore a backup made before the newer version ran",
                paths.data_dir.display(),
                config.schema_version,
                CURRENT_SCHEMA_VERSION
            );
        }
        Ok(Some(config))
    }

    pub fn save(&self, paths: &AppPaths) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("could not encode config")?;
        text.push('\n');
        write_atomic(
            "config file",
            &paths.config_file,
            text.as_bytes(),
            Visibility::OwnerOnly,
        )?;
        Ok(())
    }
}
