//! `<data>/config.json`: the user's settings and the data schema version.

use anyhow::Context as _;

use jarvis_durable::{Visibility, read_optional, write_atomic};
use jarvis_migrations::CURRENT_SCHEMA_VERSION;
use serde::{Deserialize, Serialize};

use crate::hint::hinted;
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
    /// Check for app updates in the background and stage them for the
    /// next launch (installed apps only).
    #[serde(default = "default_true")]
    pub auto_update: bool,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

fn default_true() -> bool {
    true
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            schema_version: CURRENT_SCHEMA_VERSION,
            core_port: 0,
            auto_download: false,
            auto_update: true,
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

    /// Reads `config.json` if there is one. A file from a newer data schema
    /// is an error that leaves the folder untouched; an unreadable one is
    /// kept aside and replaced by defaults (the only write here: call it
    /// under the instance lock).
    pub fn load_existing(paths: &AppPaths) -> anyhow::Result<Option<Self>> {
        let Some(bytes) = Self::read_and_refuse_newer(paths)? else {
            return Ok(None);
        };
        let config = match serde_json::from_slice::<Self>(&bytes) {
            Ok(config) => config,
            Err(error) => Self::replace_corrupt(paths, &error.to_string())?,
        };
        // Folders from before the record, and restored ones, get it here.
        if jarvis_migrations::recorded_schema(&paths.data_dir) != Some(config.schema_version) {
            jarvis_migrations::record_schema(&paths.data_dir, config.schema_version)?;
        }
        Ok(Some(config))
    }

    /// Refuses a data folder a newer Jarvis wrote, reading only: what
    /// `jarvis up` checks before it creates or changes anything.
    pub fn refuse_newer(paths: &AppPaths) -> anyhow::Result<()> {
        Self::read_and_refuse_newer(paths).map(drop)
    }

    fn read_and_refuse_newer(paths: &AppPaths) -> anyhow::Result<Option<Vec<u8>>> {
        let path = &paths.config_file;
        let Some(bytes) = read_optional("config file", path)? else {
            return Ok(None);
        };
        // The version check comes first and needs only the one field, so a
        // newer Jarvis's config is refused, never "repaired".
        // An unreadable config falls back to the second record of the
        // schema (`data-schema`).
        let raw: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let version = match &raw {
            Some(value) => value
                .get("schema_version")
                .and_then(serde_json::Value::as_u64),
            None => jarvis_migrations::recorded_schema(&paths.data_dir).map(u64::from),
        };
        if let Some(version) = version
            && version > u64::from(CURRENT_SCHEMA_VERSION)
        {
            return Err(hinted(
                format!(
                    "the data folder '{}' was written by a newer Jarvis (data schema {version}), \
                     this Jarvis understands up to schema {CURRENT_SCHEMA_VERSION}; nothing was changed",
                    paths.data_dir.display(),
                ),
                "update Jarvis, or restore a backup made before the newer version ran \
                 (`jarvis backup list`, `jarvis backup restore ID`)",
            ));
        }
        Ok(Some(bytes))
    }

    /// Keeps a config file that cannot be read as `config.json.corrupt-<time>`
    /// and writes defaults. Where the folder already holds memory, the
    /// defaults claim the schema recorded in `data-schema`, or, in a folder
    /// from before that record, the oldest data schema (the migrations are
    /// safe to run on migrated data).
    fn replace_corrupt(paths: &AppPaths, problem: &str) -> anyhow::Result<Self> {
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
        let aside = paths
            .config_file
            .with_file_name(format!("config.json.corrupt-{stamp}"));
        std::fs::rename(&paths.config_file, &aside).with_context(|| {
            format!(
                "could not move the unreadable config file to '{}'",
                aside.display()
            )
        })?;
        let mut config = Self::default();
        let has_memory = ["dump.rdb", "appendonlydir"]
            .iter()
            .any(|name| paths.redis_dir.join(name).exists());
        if has_memory {
            config.schema_version = jarvis_migrations::recorded_schema(&paths.data_dir)
                .unwrap_or(jarvis_migrations::OLDEST_SCHEMA_VERSION);
        }
        config.save(paths)?;
        eprintln!(
            "warning: the config file was not valid ({problem}); it was kept as '{}' and default settings were written",
            aside.display()
        );
        tracing::warn!(aside = %aside.display(), "replaced a corrupt config file");
        Ok(config)
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
        jarvis_migrations::record_schema(&paths.data_dir, self.schema_version)?;
        Ok(())
    }
}
