//! Bodies of the core's `GET /healthz` and `GET /readyz`.

use serde::{Deserialize, Serialize};

/// `GET /healthz`: the process is alive and serving HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// `GET /readyz`: `200` when `ready`, `503` otherwise, same body either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub version: String,
    pub redis: ComponentState,
    /// Models are not needed to be ready: the core starts without them and
    /// says here what is missing.
    pub models: ModelsState,
}

/// Which models the core can use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelsState {
    /// Models with an active version.
    pub active: Vec<ActiveModel>,
    /// Required models with no active version.
    pub missing: Vec<String>,
    /// The core's engines: which model each role runs and its state.
    #[serde(default)]
    pub engines: Vec<EngineStatus>,
}

/// One role's engine (`llm`, `stt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStatus {
    pub role: String,
    /// `missing`, `loading`, `ready` or `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ActiveModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveModel {
    pub name: String,
    pub version: String,
}

/// The state of one dependency of the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentState {
    pub ok: bool,
    /// Why it is not ok, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
