//! Events on Redis pub/sub: what the launcher and the core tell each other
//! (and, through the core's WebSocket, the UI) while they run.
//!
//! One channel, JSON messages tagged by `type`. The launcher publishes
//! [`Event::ModelActivated`] whenever an `active` pointer changes; the core
//! publishes the state of its engines ([`Event::ModelStatus`]).

use serde::{Deserialize, Serialize};

/// The pub/sub channel every event goes to. It sits under the `jarvis:`
/// namespace the core's Redis user is limited to.
pub const EVENTS_CHANNEL: &str = "jarvis:events";

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A model's active version changed (activate, rollback, first pull).
    ModelActivated { name: String, version: String },
    /// The core's engine for a model changed state.
    ModelStatus {
        /// `llm` or `stt`.
        role: String,
        name: String,
        version: String,
        state: EngineState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Bytes of a model download so far.
    ModelProgress {
        name: String,
        version: String,
        done: u64,
        total: u64,
    },
}

/// Where an engine stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineState {
    Loading,
    Ready,
    Failed,
}
