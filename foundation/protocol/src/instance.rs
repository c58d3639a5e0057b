//! `<data>/run/instance.json`: what a running launcher tells its clients.
//!
//! Written atomically once the core is ready, rewritten when a child is
//! restarted, removed on a clean stop. A file left by a launcher that was
//! killed is how the next launcher finds (and stops) orphaned children.

use serde::{Deserialize, Serialize};

/// The file name under `<data>/run/`.
pub const FILE_NAME: &str = "instance.json";

/// The API token file under `<data>/run/` (owner-only, one line).
pub const TOKEN_FILE_NAME: &str = "api-token";

/// A running Jarvis instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The launcher's version (`jarvis --version`).
    pub version: String,
    /// Where clients reach the core, `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The user-data folder this instance owns.
    pub data_dir: String,
    /// The UI's origin, `http://127.0.0.1:<port>` (sign in through
    /// `jarvis open`). Absent for launchers from before the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_url: Option<String>,
    /// The approval surface's origin, `http://127.0.0.1:<port>` (sign in
    /// through `jarvis approvals open`). Absent for launchers before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_url: Option<String>,
    pub launcher: ProcessRecord,
    pub redis: ChildRecord,
    pub core: ChildRecord,
}

/// The launcher process itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    /// Opaque process start time (Linux: clock ticks since boot), so a reused
    /// pid is never mistaken for ours. `None` where the OS gives none.
    pub start_time: Option<u64>,
}

/// A child the launcher supervises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRecord {
    pub pid: u32,
    pub start_time: Option<u64>,
    pub port: u16,
    /// The executable that was started.
    pub executable: String,
    /// The child's own version, as it reported it.
    pub version: String,
    /// How many times the launcher has restarted it in this session.
    pub restarts: u32,
}
