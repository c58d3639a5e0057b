//! The check every request passes before its handler: DNS-rebinding and
//! cross-site defences, then the bearer token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::health::UNAUTHENTICATED_PATHS;
use super::state::AppState;

/// Every request: `Host` must be our own loopback address (DNS-rebinding
/// defence), an `Origin`, when present, must be our own origin (no
/// cross-site calls, WebSocket upgrades included), and all but the health
/// routes need the bearer token (compared in constant time).
pub async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Err(error) = check(&state, request.uri().path(), request.headers()) {
        return error.into_response();
    }
    next.run(request).await
}

fn check(state: &AppState, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let port = state.port();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if host != format!("127.0.0.1:{port}") && host != format!("localhost:{port}") {
        return Err(ApiError::HostNotAllowed { port });
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("<not text>");
        if origin != format!("http://127.0.0.1:{port}")
            && origin != format!("http://localhost:{port}")
        {
            return Err(ApiError::OriginNotAllowed {
                origin: origin.to_owned(),
            });
        }
    }
    if UNAUTHENTICATED_PATHS.contains(&path) || state.has_api_token(headers) {
        return Ok(());
    }
    Err(ApiError::Unauthorized)
}
