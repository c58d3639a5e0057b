//! The on-disk layout of installed models, shared by the launcher (which
//! writes it, through `jarvis-model-registry`) and the core (which reads
//! it):
//!
//! ```text
//! <data>/models/<name>/<version>/<files>      immutable once installed
//! <data>/models/<name>/<version>/.jarvis-model.json   the install receipt
//! <data>/models/<name>/active                 the active version's name
//! <data>/models/<name>/previous               the version before it
//! <data>/models/.staging/...                  downloads and imports in flight
//! ```

use std::io;
use std::path::Path;

/// Pointer file naming the active version.
pub const ACTIVE_FILE: &str = "active";
/// Pointer file naming the version that was active before.
pub const PREVIOUS_FILE: &str = "previous";
/// Receipt written into a version folder when it is installed.
pub const RECEIPT_FILE: &str = ".jarvis-model.json";
/// Folder for downloads and imports in flight.
pub const STAGING_DIR: &str = ".staging";

/// The version a pointer file names, `None` when there is no pointer.
pub fn read_pointer(models_dir: &Path, name: &str, pointer: &str) -> io::Result<Option<String>> {
    match std::fs::read_to_string(models_dir.join(name).join(pointer)) {
        Ok(text) => {
            let version = text.trim();
            Ok((!version.is_empty()).then(|| version.to_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The active version of `name`, `None` when none is active.
pub fn active_version(models_dir: &Path, name: &str) -> io::Result<Option<String>> {
    read_pointer(models_dir, name, ACTIVE_FILE)
}
