//! What a migration is: the step type every `mNNN_*` module implements and
//! the registry lists. Below both, so a step never imports the list.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use crate::MigrationError;
/// What a migration changes, so the backup before it covers exactly that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// A file, relative to the data folder.
    File(&'static str),
    /// A folder, relative to the data folder.
    Folder(&'static str),
    /// Redis keys matching a pattern (the whole Redis data is backed up).
    RedisKeys(&'static str),
}

/// What a running step gets.
#[derive(Debug)]
pub struct MigrationContext<'a> {
    pub data_dir: &'a Path,
    /// The launcher's connection (Redis is up; the core is not running).
    pub redis: &'a mut redis::aio::MultiplexedConnection,
    /// This step's number.
    pub step: u32,
}

/// The future a step returns.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(), MigrationError>> + 'a>>;

/// One numbered change of the data folder: it takes schema `id - 1` to
/// `id`. Running it again on migrated data must change nothing.
#[derive(Debug)]
pub struct Migration {
    pub id: u32,
    pub description: &'static str,
    pub touches: &'static [Touch],
    pub run: for<'a, 'b> fn(&'a mut MigrationContext<'b>) -> StepFuture<'a>,
}

impl Migration {
    pub fn touches_redis(&self) -> bool {
        self.touches
            .iter()
            .any(|t| matches!(t, Touch::RedisKeys(_)))
    }
}
