//! The list of migrations. Adding one is one function and one entry here.

use crate::m002_conversation_index;
use crate::step::{Migration, Touch};

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
