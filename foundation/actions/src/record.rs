//! An action request and its state, as the core and the launcher keep them
//! in Redis.
//!
//! Keys (under `jarvis:`, the namespace the core's Redis user reaches):
//! - [`QUEUE_KEY`]: list of request ids the core pushed and the launcher
//!   takes in order; [`WITHDRAWN_KEY`]: ids the core takes back.
//! - [`record_key`]`(id)`: hash with `request` (JSON [`ActionRequest`],
//!   written once by the core) and `state` (JSON [`ActionState`], written
//!   by the launcher so the core can tell its client what happened).
//!
//! Nothing the core writes is a decision: the launcher copies a request
//! when it takes it, decides from its own permissions and its own
//! approval surface, and never reads `state` back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The list the core pushes request ids to.
pub const QUEUE_KEY: &str = "jarvis:actions:queue";

/// Seconds a request waits for the person before it is denied, unless
/// `JARVIS_APPROVAL_TIMEOUT_S` says otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT_S: u64 = 120;

/// The list the core pushes ids of requests it withdraws to (a cancelled
/// chat turn, `DELETE /v1/actions/{id}`). A withdrawal can only deny: the
/// launcher drops the request if it still waits, and ignores it otherwise.
pub const WITHDRAWN_KEY: &str = "jarvis:actions:withdrawn";

/// How long a request's record is kept in Redis (the audit log in the data
/// folder keeps it for good).
pub const RECORD_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// The hash of one request.
pub fn record_key(id: &str) -> String {
    format!("jarvis:action:{id}")
}

/// Whether `id` looks like an id the core makes (32 lowercase hex digits).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A slash command the person typed (`/note ...`).
    Slash,
    /// A tool call the model made.
    Model,
    /// A client of `POST /v1/actions`.
    Api,
}

/// What the core asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub id: String,
    pub tool: String,
    pub arguments: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    pub source: Source,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Denied,
    Expired,
    Running,
    Done,
    Failed,
}

impl Status {
    /// Whether nothing more will happen to the request.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Denied | Self::Expired | Self::Done | Self::Failed
        )
    }
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The person, on the approval surface.
    Ui,
    /// The person, with `jarvis approvals approve|deny`.
    Terminal,
    /// A standing permission the person gave earlier.
    Permission,
    /// Nobody decided in time: denied.
    Timeout,
    /// The launcher refused it before asking (invalid, not allowed).
    Launcher,
    /// Whoever asked withdrew it before anyone decided.
    Requester,
}

/// What the launcher says about a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionState {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<DecidedBy>,
    /// What the tool returned (`done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it was denied, expired or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// SHA-256 of the tool and arguments the launcher checked
    /// ([`crate::arguments_hash`]).
    pub arguments_hash: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex_digits() {
        assert!(is_valid_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_valid_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_valid_id("../../etc"));
        assert!(!is_valid_id(""));
    }

    #[test]
    fn final_states() {
        assert!(!Status::Pending.is_final());
        assert!(!Status::Running.is_final());
        assert!(Status::Expired.is_final());
    }
}
