//! Versioned, crash-safe changes of the Jarvis user-data folder.
//!
//! Today this crate owns one fact: the data schema version this build of
//! Jarvis writes ([`CURRENT_SCHEMA_VERSION`]), stored as the integer
//! `schema_version` at the top level of `<data>/config.json`.
//!
//! It will own (issue "AppData migrations that never erase memory"): the
//! numbered migration functions and their registry, the backup taken before
//! the first step, the step journal that makes a crash at any point
//! recoverable, and the refusal to touch a folder written by a newer schema.

/// The data schema version this build writes and understands.
pub const CURRENT_SCHEMA_VERSION: u32 = 1;
