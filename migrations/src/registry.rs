//! The list of migrations. Adding one is one function and one entry here.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use crate::{MigrationError, m002_conversation_index};

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

/// Every migration, in order. Schema 1 is the first released layout.
pub static MIGRATIONS: &[Migration] = &[Migration {
    id: 2,
    description: "conversation index: move memory to jarvis:v2: and give each conversation updated_at, message_count and title, listed by recency",
    touches: &[
        Touch::RedisKeys("jarvis:v1:*"),
        Touch::RedisKeys("jarvis:v2:*"),
    ],
    run: m002_conversation_index::run,
}];

/// The migrations that take schema `from` to the current one.
pub fn pending(from: u32) -> Vec<&'static Migration> {
    MIGRATIONS.iter().filter(|m| m.id > from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_after_another_up_to_the_current_schema() {
        let mut expected = crate::OLDEST_SCHEMA_VERSION + 1;
        for migration in MIGRATIONS {
            assert_eq!(migration.id, expected, "{}", migration.description);
            assert!(!migration.touches.is_empty());
            expected += 1;
        }
        assert_eq!(expected - 1, crate::CURRENT_SCHEMA_VERSION);
        assert_eq!(pending(crate::CURRENT_SCHEMA_VERSION).len(), 0);
        assert_eq!(pending(1).len(), MIGRATIONS.len());
    }
}
