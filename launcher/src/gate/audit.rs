//! The audit log: every request, decision and result, one JSON object per
//! line in `<data>/audit/actions.jsonl`, appended and synced before the
//! gate goes on. Never rewritten; a line torn by a crash is skipped when
//! read.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde_json::Value;

/// The log of one data folder.
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    file: Mutex<File>,
}

pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("audit").join("actions.jsonl")
}

impl Audit {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = file(data_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&path)
            .with_context(|| format!("could not open the audit log {}", path.display()))?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// Appends `entry` with the time it happened and syncs it.
    pub fn record(&self, mut entry: Value) -> anyhow::Result<()> {
        entry["at"] = Value::String(jiff::Timestamp::now().to_string());
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("could not append to the audit log {}", self.path.display()))
    }
}

/// Every entry, oldest first (a torn last line is left out).
pub fn read(data_dir: &Path) -> anyhow::Result<Vec<Value>> {
    let path = file(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn entries_append_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::open(dir.path()).unwrap();
        audit
            .record(serde_json::json!({"id": "a", "event": "requested"}))
            .unwrap();
        audit
            .record(serde_json::json!({"id": "a", "event": "decided"}))
            .unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(file(dir.path()))
            .unwrap();
        f.write_all(b"{\"id\": \"b\", \"ev").unwrap();
        let entries = read(dir.path()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1]["event"], "decided");
        assert!(entries[0]["at"].is_string());
    }
}
