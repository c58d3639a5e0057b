//! `/healthz` (the process answers) and `/readyz` (Redis answers; the
//! models' states), the two routes that need no token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use jarvis_protocol::health::{ComponentState, Health, Readiness};

use super::state::AppState;
use crate::VERSION;

/// The routes [`super::guard`] lets through without a token.
pub const UNAUTHENTICATED_PATHS: [&str; 2] = ["/healthz", "/readyz"];

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        version: VERSION.to_owned(),
    })
}

/// Ready or not, for anyone on loopback (the launcher's start-up, an
/// orchestrator's probe); the details (error texts, which name files and
/// folders) only with the API token.
async fn readyz(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Readiness>) {
    let with_details = state.has_api_token(&headers);
    let redis = match state.memory.ping().await {
        Ok(()) => ComponentState {
            ok: true,
            detail: None,
        },
        Err(e) => ComponentState {
            ok: false,
            detail: Some(e.to_string()),
        },
    };
    let mut redis = redis;
    // A draining replica is alive but takes no new work.
    let ready = redis.ok && !state.is_draining();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            version: VERSION.to_owned(),
            models: {
                let mut models = state.models.state();
                models.engines = state.engines.status();
                if !with_details {
                    redis.detail = None;
                    for engine in &mut models.engines {
                        engine.detail = None;
                    }
                }
                models
            },
            redis,
        }),
    )
}
