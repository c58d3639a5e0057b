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
}

/// The state of one dependency of the core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentState {
    pub ok: bool,
    /// Why it is not ok, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
