//! The HTTP API: routes, the request guard and the one error type.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jarvis_protocol::api::{ErrorBody, ErrorDetail};
use jarvis_protocol::health::{ComponentState, Health, Readiness};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::VERSION;
use crate::memory::{
    Conversation, ConversationId, ListedConversation, Memory, MemoryError, Message, Role, Settings,
};

/// Largest request body accepted (messages are text).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Shared state of all handlers.
#[derive(Debug)]
pub struct AppState {
    pub memory: Memory,
    pub models: crate::models::ModelDirectory,
    pub engines: Arc<crate::engines::Engines>,
    /// The per-launch token clients must present.
    api_token: String,
    /// The port we listen on: `Host` and `Origin` must name it.
    port: u16,
}

impl AppState {
    pub fn new(
        memory: Memory,
        models: crate::models::ModelDirectory,
        engines: Arc<crate::engines::Engines>,
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
}

/// The core's router. Every route passes [`guard`].
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/v1/conversations",
            post(create_conversation).get(list_conversations),
        )
        .route("/v1/conversations/{id}", get(conversation))
        .route("/v1/conversations/{id}/messages", post(append_message))
        .route(
            "/v1/conversations/{id}/settings",
            get(conversation_settings).put(put_conversation_settings),
        )
        .route("/v1/ws", get(crate::ws::upgrade))
        .route(
            "/v1/chat/completions",
            post(crate::openai::chat_completions),
        )
        .route("/v1/models", get(crate::openai::models))
        .route(
            "/v1/audio/transcriptions",
            post(crate::openai::transcriptions)
                .layer(DefaultBodyLimit::max(crate::openai::MAX_AUDIO_BYTES)),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

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

/// Everything that can go wrong in a request, with its HTTP status and a
/// stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "missing or wrong API token; send `Authorization: Bearer <token>` with the token from <data>/run/api-token"
    )]
    Unauthorized,
    #[error("the Host header must be 127.0.0.1:{port} or localhost:{port}")]
    HostNotAllowed { port: u16 },
    #[error("requests from origin '{origin}' are not allowed")]
    OriginNotAllowed { origin: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("memory (Redis) is not reachable yet; try again shortly")]
    MemoryUnavailable,
    #[error(
        "no {role} model is installed\nhint: `jarvis models pull` downloads the catalog's models, `jarvis models import PATH` installs one from disk"
    )]
    ModelNotInstalled { role: &'static str },
    #[error("{name} {version} is still loading; try again in a few seconds")]
    ModelLoading { name: String, version: String },
    #[error(
        "{name} {version} could not be loaded: {reason}\nhint: `jarvis models verify {name}`, then pull or import it again"
    )]
    ModelFailed {
        name: String,
        version: String,
        reason: String,
    },
    #[error("the model '{requested}' is not installed; the active model is '{available}'")]
    ModelNotFound {
        requested: String,
        available: String,
    },
    #[error("{0}")]
    ContextLengthExceeded(crate::prompt::TooLong),
    #[error("{0}")]
    BadAudio(jarvis_stt::AudioError),
    #[error("{0}")]
    Generation(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::HostNotAllowed { .. } | Self::OriginNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MemoryUnavailable
            | Self::ModelNotInstalled { .. }
            | Self::ModelLoading { .. }
            | Self::ModelFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::ModelNotFound { .. } => StatusCode::NOT_FOUND,
            Self::ContextLengthExceeded(_) => StatusCode::BAD_REQUEST,
            Self::BadAudio(
                jarvis_stt::AudioError::NotWav(_) | jarvis_stt::AudioError::Unsupported(_),
            ) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadAudio(_) => StatusCode::BAD_REQUEST,
            Self::Internal(_) | Self::Generation(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::HostNotAllowed { .. } => "host_not_allowed",
            Self::OriginNotAllowed { .. } => "origin_not_allowed",
            Self::NotFound(_) => "not_found",
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge { .. } => "payload_too_large",
            Self::MemoryUnavailable => "memory_unavailable",
            Self::ModelNotInstalled { .. } => "model_not_installed",
            Self::ModelLoading { .. } => "model_loading",
            Self::ModelFailed { .. } => "model_failed",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::ContextLengthExceeded(_) => "context_length_exceeded",
            Self::BadAudio(jarvis_stt::AudioError::TooLong { .. }) => "audio_too_long",
            Self::BadAudio(jarvis_stt::AudioError::Empty) => "audio_empty",
            Self::BadAudio(_) => "unsupported_audio_format",
            Self::Internal(_) => "internal",
            Self::Generation(_) => "generation_failed",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, Self::ModelLoading { .. } | Self::MemoryUnavailable) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        }
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<MemoryError> for ApiError {
    fn from(error: MemoryError) -> Self {
        match error {
            MemoryError::NotConnected => Self::MemoryUnavailable,
            MemoryError::Redis(e) if e.is_io_error() || e.is_connection_dropped() => {
                Self::MemoryUnavailable
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge {
                limit: MAX_BODY_BYTES,
            }
        } else {
            Self::BadRequest(rejection.body_text())
        }
    }
}

#[derive(Debug, Serialize)]
struct CreatedConversation {
    id: ConversationId,
    created_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    role: Role,
    content: String,
}

#[derive(Debug, Serialize)]
struct StoredMessage {
    index: usize,
    #[serde(flatten)]
    message: Message,
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        version: VERSION.to_owned(),
    })
}

async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
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
    let ready = redis.ok;
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
            redis,
            models: {
                let mut models = state.models.state();
                models.engines = state.engines.status();
                models
            },
        }),
    )
}

async fn create_conversation(
    State(state): State<Arc<AppState>>,
) -> Result<(StatusCode, Json<CreatedConversation>), ApiError> {
    let conversation = state.memory.create_conversation().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedConversation {
            id: conversation.id,
            created_at: conversation.summary.created_at,
        }),
    ))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct ConversationList {
    conversations: Vec<ListedConversation>,
}

/// `GET /v1/conversations?limit=N`: most recently updated first.
async fn list_conversations(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let conversations = state.memory.recent_conversations(limit).await?;
    Ok(Json(ConversationList { conversations }))
}

async fn conversation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    let id = parse_id(&id)?;
    state
        .memory
        .conversation(&id)
        .await?
        .map(Json)
        .ok_or_else(|| conversation_not_found(&id))
}

async fn append_message(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<NewMessage>, JsonRejection>,
) -> Result<(StatusCode, Json<StoredMessage>), ApiError> {
    let id = parse_id(&id)?;
    let Json(new) = body?;
    if new.content.trim().is_empty() {
        return Err(ApiError::BadRequest("content must not be empty".to_owned()));
    }
    let (index, message) = state
        .memory
        .append_message(&id, new.role, new.content, None)
        .await?
        .ok_or_else(|| conversation_not_found(&id))?;
    Ok((StatusCode::CREATED, Json(StoredMessage { index, message })))
}

async fn conversation_settings(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Settings>, ApiError> {
    let id = parse_id(&id)?;
    state
        .memory
        .settings(&id)
        .await?
        .map(Json)
        .ok_or_else(|| conversation_not_found(&id))
}

/// `PUT /v1/conversations/{id}/settings`: replaces them all.
async fn put_conversation_settings(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Json<Settings>, JsonRejection>,
) -> Result<Json<Settings>, ApiError> {
    let id = parse_id(&id)?;
    let Json(settings) = body?;
    if settings
        .temperature
        .is_some_and(|t| !(0.0..=2.0).contains(&t))
    {
        return Err(ApiError::BadRequest(
            "temperature must be between 0 and 2".into(),
        ));
    }
    if settings.max_tokens == Some(0) {
        return Err(ApiError::BadRequest("max_tokens must be at least 1".into()));
    }
    if !state.memory.set_settings(&id, &settings).await? {
        return Err(conversation_not_found(&id));
    }
    Ok(Json(settings))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

fn parse_id(raw: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("no conversation '{raw}'")))
}

pub(crate) fn conversation_not_found(id: &ConversationId) -> ApiError {
    ApiError::NotFound(format!("no conversation '{}'", id.as_str()))
}

fn check(state: &AppState, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let port = state.port;
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
    if matches!(path, "/healthz" | "/readyz") {
        return Ok(());
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = state.api_token.as_bytes();
    // ct_eq on slices of different lengths is false without leaking where
    // they differ; the length of a random token is no secret.
    if presented.is_empty() || !bool::from(presented.as_bytes().ct_eq(expected)) {
        return Err(ApiError::Unauthorized);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    const PORT: u16 = 4242;
    const TOKEN: &str = "0123456789abcdef";

    async fn router() -> Router {
        // Nothing listens on port 1: memory stays "not connected", which the
        // guard checks never reach.
        let memory = Memory::connect_in_background("redis://127.0.0.1:1/0".into()).unwrap();
        let models = crate::models::ModelDirectory::new(std::env::temp_dir(), vec!["m".into()]);
        let engines =
            crate::engines::Engines::new(std::env::temp_dir(), Vec::new(), memory.clone(), None);
        app(Arc::new(AppState::new(
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
