//! The HTTP API. Layers run one way: [`state`] and [`error`] are leaves
//! every route module imports; each route module ([`health`],
//! [`conversations`], [`actions`], [`ws`], [`openai`]) exports its own `router()`, and
//! [`app`] merges them behind the [`guard`] in this one place. Domain
//! logic (chat turns, memory, engines) lives outside and never imports
//! this module.

pub mod actions;
pub mod conversations;
pub mod error;
pub mod guard;
pub mod health;
pub mod openai;
pub mod state;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware;

pub use error::{ApiError, MAX_BODY_BYTES};
pub use state::AppState;

/// The core's router. Every route passes [`guard::guard`].
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(health::router())
        .merge(conversations::router())
        .merge(if state.is_server() {
            actions::refusing_router()
        } else {
            actions::router()
        })
        .merge(ws::router())
        .merge(openai::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    use super::*;
    use crate::memory::Memory;

    const PORT: u16 = 4242;
    const TOKEN: &str = "0123456789abcdef";

    async fn router() -> Router {
        // Nothing listens on port 1: memory stays "not connected", which the
        // guard checks never reach.
        let memory = Memory::connect_in_background("redis://127.0.0.1:1/0".into()).unwrap();
        let models = crate::models::ModelDirectory::new(std::env::temp_dir(), vec!["m".into()]);
        let engines =
            crate::engines::Engines::new(std::env::temp_dir(), Vec::new(), memory.clone(), None);
        app(Arc::new(AppState::desktop(
            memory,
            models,
            engines,
            TOKEN.into(),
            PORT,
        )))
    }

    async fn send(request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = router().await.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn request(path: &str) -> axum::http::request::Builder {
        Request::builder()
            .uri(path)
            .header(header::HOST, format!("127.0.0.1:{PORT}"))
    }

    #[tokio::test]
    async fn health_needs_no_token_but_the_right_host() {
        let (status, body) = send(request("/healthz").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");

        let foreign = Request::builder()
            .uri("/healthz")
            .header(header::HOST, "evil.example:4242")
            .body(Body::empty())
            .unwrap();
        let (status, body) = send(foreign).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "host_not_allowed");
    }

    #[tokio::test]
    async fn readyz_is_503_while_redis_is_unreachable() {
        let (status, body) = send(request("/readyz").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["ready"], false);
        assert_eq!(body["redis"]["ok"], false);
        assert_eq!(body["models"]["missing"], serde_json::json!(["m"]));
    }

    #[tokio::test]
    async fn api_routes_refuse_missing_and_wrong_tokens() {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer 0123456789abcdeX"),
            Some(TOKEN),
        ] {
            let mut builder = request("/v1/conversations").method("POST");
            if let Some(auth) = auth {
                builder = builder.header(header::AUTHORIZATION, auth);
            }
            let (status, body) = send(builder.body(Body::empty()).unwrap()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }

    #[tokio::test]
    async fn foreign_origins_are_refused_even_with_the_token() {
        let req = request("/v1/conversations")
            .method("POST")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::ORIGIN, "https://evil.example")
            .body(Body::empty())
            .unwrap();
        let (status, body) = send(req).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "origin_not_allowed");
    }

    #[tokio::test]
    async fn a_valid_request_reaches_the_handler_which_reports_memory_unavailable() {
        let req = request("/v1/conversations")
            .method("POST")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::ORIGIN, format!("http://localhost:{PORT}"))
            .body(Body::empty())
            .unwrap();
        let (status, body) = send(req).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "memory_unavailable");
    }

    #[tokio::test]
    async fn unknown_routes_and_bad_ids_are_json_404s() {
        let req = request("/v1/nope")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (status, body) = send(req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");

        let req = request("/v1/conversations/..%2F..")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (status, _) = send(req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
