//! Versioned, crash-safe changes of the Jarvis user-data folder.
//!
//! An update may replace the brain, never the memory. When a new Jarvis
//! needs the data folder in a new shape, it migrates it here, step by step:
//!
//! 1. The data schema version is the integer `schema_version` at the top of
//!    `<data>/config.json`. [`MIGRATIONS`] is a plain list of numbered
//!    steps, each with a description and what it touches; migration `N`
//!    takes the folder from schema `N - 1` to `N`.
//! 2. Before the first step of a run, everything the pending steps touch is
//!    copied into `<data>/backups/<from>-to-<to>-<timestamp>/` (Redis is
//!    `SAVE`d and its files copied), with a manifest of SHA-256s. The backup
//!    only counts once its folder was renamed into place.
//! 3. Then `<data>/migration-journal.json` names the backup, and each step
//!    is journaled before and after it runs; `schema_version` is raised
//!    after each step.
//! 4. A launch that finds a journal knows a run was cut short: it restores
//!    the backup (with Redis stopped) and runs the steps again.
//!
//! Redis steps run with Redis up and the core not started. Key layouts are
//! namespaced by version (`jarvis:v1:` → `jarvis:v2:`): a step copies,
//! verifies, and only then deletes the old keys, and running it again on
//! already migrated data changes nothing.
//!
//! Every crash-sensitive point calls [`jarvis_durable::checkpoint`], so
//! tests kill the real binary at each of them ([`CHECKPOINTS`]).

mod backup;
mod journal;
mod m002_conversation_index;
mod registry;
mod runner;
mod schema_record;
mod step;

pub use backup::{Backup, BackupFile, Backups};
pub use journal::Journal;
pub use registry::MIGRATIONS;
pub use runner::{Migrator, RunReport, StepReport};
pub use schema_record::{SCHEMA_RECORD, record_schema, recorded_schema};
pub use step::{Migration, MigrationContext, Touch};

use std::path::PathBuf;

/// The data schema version this build writes and understands.
pub const CURRENT_SCHEMA_VERSION: u32 = 2;

/// The oldest data schema this build can migrate from.
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

/// Every named checkpoint of a migration run, in order (`{id}` is each
/// step's number).
pub const CHECKPOINTS: &[&str] = &[
    "migrate:backup-copied",
    "migrate:journal-written",
    "migrate:step-{id}:started",
    "migrate:step-{id}:copied",
    "migrate:step-{id}:verified",
    "migrate:step-{id}:old-deleted",
    "migrate:step-{id}:config-written",
    "migrate:finished",
    "restore:prepared",
    "restore:files-copied",
];

/// Everything that can go wrong while migrating or restoring.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    File(#[from] jarvis_durable::FileError),

    #[error("Redis command failed during migration {step}: {source}")]
    Redis {
        step: u32,
        #[source]
        source: redis::RedisError,
    },

    #[error("migration {step} could not verify its copy: {detail}; the old data was kept")]
    Verification { step: u32, detail: String },

    #[error("the config file '{path}' is not valid: {detail}")]
    BadConfig { path: PathBuf, detail: String },

    #[error("no backup '{0}'")]
    NoBackup(String),

    #[error("the backup '{id}' is damaged: {detail}; nothing was restored")]
    DamagedBackup { id: String, detail: String },

    #[error(
        "the journal of an interrupted restore, '{path}', is unreadable ({detail}); run `jarvis backup restore` again, then remove it"
    )]
    BadRestoreJournal { path: PathBuf, detail: String },

    #[error(
        "the data folder was written by data schema {found}, older than this Jarvis can migrate (from {OLDEST_SCHEMA_VERSION})"
    )]
    TooOld { found: u32 },
}
