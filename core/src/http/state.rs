//! What every handler shares: memory, the model engines and the two facts
//! the request guard checks against (the token and our own port).

use std::sync::Arc;

use crate::engines::Engines;
use crate::memory::Memory;
use crate::models::ModelDirectory;

/// Shared state of all handlers.
#[derive(Debug)]
pub struct AppState {
    pub memory: Memory,
    pub models: ModelDirectory,
    pub engines: Arc<Engines>,
    /// The per-launch token clients must present.
    api_token: String,
    /// The port we listen on: `Host` and `Origin` must name it.
    port: u16,
}

impl AppState {
    pub fn new(
        memory: Memory,
        models: ModelDirectory,
        engines: Arc<Engines>,
        api_token: String,
        port: u16,
    ) -> Self {
        Self {
            memory,
            models,
            engines,
            api_token,
            port,
        }
    }

    /// The token every API request must present.
    pub fn api_token(&self) -> &str {
        &self.api_token
    }

    /// Whether `headers` carry the API token (compared in constant time).
    pub fn has_api_token(&self, headers: &axum::http::HeaderMap) -> bool {
        use subtle::ConstantTimeEq as _;
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        // ct_eq on slices of different lengths is false without leaking
        // where they differ; the length of a random token is no secret.
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(self.api_token.as_bytes()))
    }

    /// The port the core listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}
