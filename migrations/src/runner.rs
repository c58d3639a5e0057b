//! Running the pending migrations: backup, journal, steps, schema version.

use std::path::{Path, PathBuf};

use jarvis_durable::{Visibility, checkpoint, read_optional, write_atomic};
use serde::Serialize;

use crate::registry::pending;
use crate::step::{Migration, MigrationContext, Touch};
use crate::{
    Backup, Backups, CURRENT_SCHEMA_VERSION, Journal, MigrationError, OLDEST_SCHEMA_VERSION,
};

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub from: u32,
    pub to: u32,
    pub dry_run: bool,
    pub backup_id: Option<String>,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: u32,
    pub description: &'static str,
    pub touches: Vec<String>,
}

/// Migrates one data folder.
#[derive(Debug, Clone)]
pub struct Migrator {
    data_dir: PathBuf,
    /// Migrate no further than this schema (the app version's newest).
    target: u32,
}

impl Migrator {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            target: CURRENT_SCHEMA_VERSION,
        }
    }

    /// Stops at schema `target` (an app version that reads at most that).
    pub fn with_target(mut self, target: u32) -> Self {
        self.target = target.min(CURRENT_SCHEMA_VERSION);
        self
    }

    pub fn backups(&self) -> Backups {
        Backups::new(&self.data_dir)
    }

    /// The folder's data schema (`schema_version` in `config.json`); a
    /// folder without a config is new and gets the current schema.
    pub fn schema_version(&self) -> Result<u32, MigrationError> {
        let path = self.config_path();
        let Some(bytes) = read_optional("config file", &path)? else {
            return Ok(CURRENT_SCHEMA_VERSION);
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| MigrationError::BadConfig {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        value["schema_version"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| MigrationError::BadConfig {
                path,
                detail: "schema_version is missing or not a number".to_owned(),
            })
    }

    /// The steps a run would take now.
    pub fn plan(&self) -> Result<(u32, Vec<&'static Migration>), MigrationError> {
        let from = self.schema_version()?;
        if from < OLDEST_SCHEMA_VERSION {
            return Err(MigrationError::TooOld { found: from });
        }
        let steps = pending(from)
            .into_iter()
            .filter(|m| m.id <= self.target)
            .collect();
        Ok((from, steps))
    }

    /// The journal of a run that was cut short, if any.
    pub fn interrupted(&self) -> Result<Option<Journal>, MigrationError> {
        Journal::load(&self.data_dir)
    }

    /// After a cut-short run: restores its backup and removes the journal,
    /// so the steps can run again from a known state. Redis must be
    /// stopped. `None` when there was nothing to recover.
    pub fn recover(&self) -> Result<Option<Backup>, MigrationError> {
        // A restore cut short after its copies were made is finished first
        // (whether a person or a rollback started it).
        self.backups().finish_interrupted_restore()?;
        let Some(journal) = Journal::load(&self.data_dir)? else {
            return Ok(None);
        };
        tracing::warn!(backup = %journal.backup_id, "an interrupted migration is rolled back");
        let backup = self.backups().restore(&journal.backup_id)?;
        Journal::remove(&self.data_dir)?;
        Ok(Some(backup))
    }

    /// Runs every pending step (Redis up, core not running). `progress`
    /// gets one line per step.
    pub async fn run(
        &self,
        redis: &mut redis::aio::MultiplexedConnection,
        dry_run: bool,
        progress: &dyn Fn(&str),
    ) -> Result<RunReport, MigrationError> {
        let (from, steps) = self.plan()?;
        let to = steps.last().map_or(from, |m| m.id);
        let mut report = RunReport {
            from,
            to,
            dry_run,
            backup_id: None,
            steps: steps.iter().map(|m| step_report(m)).collect(),
        };
        if steps.is_empty() || dry_run {
            return Ok(report);
        }

        let mut paths: Vec<&str> = vec!["config.json", crate::SCHEMA_RECORD];
        for touch in steps.iter().flat_map(|m| m.touches) {
            match touch {
                Touch::File(p) | Touch::Folder(p) => paths.push(p),
                Touch::RedisKeys(_) => {}
            }
        }
        if steps.iter().any(|m| m.touches_redis()) {
            redis::cmd("SAVE")
                .query_async::<()>(redis)
                .await
                .map_err(|source| MigrationError::Redis { step: 0, source })?;
            paths.extend(["redis/dump.rdb", "redis/appendonlydir"]);
        }
        paths.dedup();
        progress(&format!(
            "Backing up data before migrating data schema {from} to {to}..."
        ));
        let backup = self.backups().create(
            &format!("{from}-to-{to}"),
            from,
            &format!("before migrating data schema {from} to {to}"),
            &paths,
        )?;
        checkpoint("migrate:backup-copied");
        report.backup_id = Some(backup.id.clone());

        let mut journal = Journal {
            backup_id: backup.id.clone(),
            from,
            to,
            started_at: jiff::Timestamp::now().to_string(),
            completed: Vec::new(),
            current: None,
        };
        journal.save(&self.data_dir)?;
        checkpoint("migrate:journal-written");

        for (n, migration) in steps.iter().enumerate() {
            progress(&format!(
                "Migrating data, step {} of {} (schema {}): {}",
                n + 1,
                steps.len(),
                migration.id,
                migration.description
            ));
            journal.current = Some(migration.id);
            journal.save(&self.data_dir)?;
            checkpoint(&format!("migrate:step-{}:started", migration.id));
            let mut ctx = MigrationContext {
                data_dir: &self.data_dir,
                redis,
                step: migration.id,
            };
            (migration.run)(&mut ctx).await?;
            self.set_schema_version(migration.id)?;
            checkpoint(&format!("migrate:step-{}:config-written", migration.id));
            journal.completed.push(migration.id);
            journal.current = None;
            journal.save(&self.data_dir)?;
        }
        checkpoint("migrate:finished");
        Journal::remove(&self.data_dir)?;
        let pruned = self.backups().prune(&backup.id)?;
        if !pruned.is_empty() {
            tracing::info!(?pruned, "removed old backups");
        }
        Ok(report)
    }

    /// Rewrites `schema_version` in `config.json`, keeping every other key.
    fn set_schema_version(&self, version: u32) -> Result<(), MigrationError> {
        let path = self.config_path();
        let bytes = read_optional("config file", &path)?.unwrap_or_else(|| b"{}".to_vec());
        let mut value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| MigrationError::BadConfig {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        value["schema_version"] = version.into();
        let mut text = serde_json::to_vec_pretty(&value).unwrap_or_default();
        text.push(b'\n');
        write_atomic("config file", &path, &text, Visibility::OwnerOnly)?;
        crate::record_schema(&self.data_dir, version)?;
        Ok(())
    }

    fn config_path(&self) -> PathBuf {
        self.data_dir.join("config.json")
    }
}

fn step_report(m: &Migration) -> StepReport {
    StepReport {
        id: m.id,
        description: m.description,
        touches: m
            .touches
            .iter()
            .map(|t| match t {
                Touch::File(p) => format!("file {p}"),
                Touch::Folder(p) => format!("folder {p}"),
                Touch::RedisKeys(p) => format!("redis keys {p}"),
            })
            .collect(),
    }
}
