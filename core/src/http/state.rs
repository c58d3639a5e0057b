//! What every handler shares: memory, the model engines, who may call
//! ([`Access`]), and who is calling ([`Caller`], set by the guard).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::config::ServerSettings;
use crate::engines::Engines;
use crate::memory::Memory;
use crate::memory::users::User;
use crate::models::ModelDirectory;
use crate::relay::Relay;

/// Who may call the API.
#[derive(Debug)]
pub enum Access {
    /// Desktop mode: whoever holds the per-launch token, on loopback at
    /// the core's own port.
    Desktop { token: String, port: u16 },
    /// Server mode: users with API keys, through any host the settings
    /// allow.
    Server(ServerSettings),
}

/// Shared state of all handlers.
#[derive(Debug)]
pub struct AppState {
    /// Server-wide memory (health, accounts, events). Handlers use their
    /// [`Caller`]'s memory, which is the caller's own key space.
    pub memory: Memory,
    pub models: ModelDirectory,
    pub engines: Arc<Engines>,
    pub access: Access,
    /// Server mode: turn events and cancels between replicas.
    pub relay: Option<Arc<Relay>>,
    /// Set when the replica is stopping: `/readyz` says 503 and no new
    /// turn starts.
    draining: AtomicBool,
}

impl AppState {
    pub fn new(
        memory: Memory,
        models: ModelDirectory,
        engines: Arc<Engines>,
        access: Access,
    ) -> Self {
        let relay = matches!(access, Access::Server(_)).then(|| Relay::start(memory.clone()));
        Self {
            memory,
            models,
            engines,
            access,
            relay,
            draining: AtomicBool::new(false),
        }
    }

    /// Desktop mode's state: `token` and the `port` we listen on.
    pub fn desktop(
        memory: Memory,
        models: ModelDirectory,
        engines: Arc<Engines>,
        token: String,
        port: u16,
    ) -> Self {
        Self::new(memory, models, engines, Access::Desktop { token, port })
    }

    /// Whether this is server mode.
    pub fn is_server(&self) -> bool {
        matches!(self.access, Access::Server(_))
    }

    /// Whether `headers` carry desktop mode's API token (compared in
    /// constant time); always false in server mode.
    pub fn has_api_token(&self, headers: &axum::http::HeaderMap) -> bool {
        use subtle::ConstantTimeEq as _;
        let Access::Desktop { token, .. } = &self.access else {
            return false;
        };
        let presented = bearer(headers).unwrap_or_default();
        // ct_eq on slices of different lengths is false without leaking
        // where they differ; the length of a random token is no secret.
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Starts draining: readiness fails, new turns are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
}

/// Who is calling: their memory (their own key space) and, in server
/// mode, their account. The guard puts one on every request it lets
/// through to an API route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub memory: Memory,
    pub user: Option<User>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}
