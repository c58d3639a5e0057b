//! `<data>/data-schema`: the data schema recorded a second time, beside
//! `config.json`. A config file that is damaged is replaced with defaults;
//! this record says which schema the memory beside it is in, so the
//! repaired folder is neither migrated from a schema it is not in nor
//! taken for older than a newer Jarvis left it.

use std::path::Path;

use jarvis_durable::{FileError, Visibility, read_optional, write_atomic};

/// The record's file name in the data folder (backed up with the config).
pub const SCHEMA_RECORD: &str = "data-schema";

/// Records `version` (atomically).
pub fn record_schema(data_dir: &Path, version: u32) -> Result<(), FileError> {
    write_atomic(
        "data schema record",
        &data_dir.join(SCHEMA_RECORD),
        format!("{version}\n").as_bytes(),
        Visibility::Normal,
    )
}

/// The recorded schema; `None` when there is no record (folders from
/// before it existed) or it cannot be read.
pub fn recorded_schema(data_dir: &Path) -> Option<u32> {
    let bytes = read_optional("data schema record", &data_dir.join(SCHEMA_RECORD)).ok()??;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_record_reads_back_and_a_damaged_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded_schema(dir.path()), None);
        record_schema(dir.path(), 7).unwrap();
        assert_eq!(recorded_schema(dir.path()), Some(7));
        std::fs::write(dir.path().join(SCHEMA_RECORD), b"\xff not a number").unwrap();
        assert_eq!(recorded_schema(dir.path()), None);
    }
}
