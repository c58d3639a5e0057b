//! The one error type of the HTTP API: every failure has a status, a
//! stable code and a message, and becomes the JSON body
//! `{"error": {"code": "...", "message": "..."}}` in exactly one place.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jarvis_protocol::api::{ErrorBody, ErrorDetail};

use crate::actions::ActionError;
use crate::chat::ChatError;
use crate::engines::Unavailable;
use crate::memory::{ConversationId, MemoryError};

/// Largest request body accepted (messages are text).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything that can go wrong in a request, with its HTTP status and a
/// stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "missing or wrong API token; send `Authorization: Bearer <token>` with the token from <data>/run/api-token"
    )]
    Unauthorized,
    #[error(
        "missing, unknown or revoked API key; send `Authorization: Bearer <key>` with the key `jarvis-core users add NAME` printed"
    )]
    UnknownKey,
    #[error("the Host header must be 127.0.0.1:{port} or localhost:{port}")]
    HostNotAllowed { port: u16 },
    #[error("the Host '{host}' is not one this server answers to (JARVIS_ALLOWED_HOSTS)")]
    ServerHostNotAllowed { host: String },
    #[error("too many requests; try again in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error(
        "actions are not run by a Jarvis server: it never acts on a computer; the desktop app, where you approve each action, runs them"
    )]
    ActionsNotOnServer,
    #[error("this server is shutting down; try again (another replica will answer)")]
    Draining,
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
        "memory could not copy this write to a replica in time, so it was not acknowledged; try again shortly"
    )]
    NotReplicated,
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
    BadAudio(jarvis_audio::AudioError),
    #[error("{0}")]
    Generation(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::UnknownKey => StatusCode::UNAUTHORIZED,
            Self::HostNotAllowed { .. }
            | Self::ServerHostNotAllowed { .. }
            | Self::OriginNotAllowed { .. }
            | Self::ActionsNotOnServer => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MemoryUnavailable
            | Self::NotReplicated
            | Self::ModelNotInstalled { .. }
            | Self::ModelLoading { .. }
            | Self::ModelFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::ModelNotFound { .. } => StatusCode::NOT_FOUND,
            Self::ContextLengthExceeded(_) => StatusCode::BAD_REQUEST,
            Self::BadAudio(
                jarvis_audio::AudioError::NotWav(_) | jarvis_audio::AudioError::Unsupported(_),
            ) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadAudio(_) => StatusCode::BAD_REQUEST,
            Self::Internal(_) | Self::Generation(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized | Self::UnknownKey => "unauthorized",
            Self::HostNotAllowed { .. } | Self::ServerHostNotAllowed { .. } => "host_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::ActionsNotOnServer => "actions_not_on_server",
            Self::Draining => "shutting_down",
            Self::OriginNotAllowed { .. } => "origin_not_allowed",
            Self::NotFound(_) => "not_found",
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge { .. } => "payload_too_large",
            Self::MemoryUnavailable | Self::NotReplicated => "memory_unavailable",
            Self::ModelNotInstalled { .. } => "model_not_installed",
            Self::ModelLoading { .. } => "model_loading",
            Self::ModelFailed { .. } => "model_failed",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::ContextLengthExceeded(_) => "context_length_exceeded",
            Self::BadAudio(jarvis_audio::AudioError::TooLong { .. }) => "audio_too_long",
            Self::BadAudio(jarvis_audio::AudioError::Empty) => "audio_empty",
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
        if matches!(
            self,
            Self::ModelLoading { .. }
                | Self::MemoryUnavailable
                | Self::NotReplicated
                | Self::Draining
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        }
        if let Self::RateLimited { retry_after_s } = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_s),
            );
        }
        if matches!(self, Self::Unauthorized | Self::UnknownKey) {
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
            MemoryError::NotReplicated { .. } => Self::NotReplicated,
            // A cluster mid-failover (CLUSTERDOWN, TRYAGAIN, a slot with no
            // node yet) or a timeout: nothing was acknowledged; retry.
            MemoryError::Redis(e)
                if e.is_cluster_error()
                    || e.is_timeout()
                    || e.is_io_error()
                    || e.is_connection_dropped() =>
            {
                tracing::warn!(error = %e, "memory unavailable");
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

impl From<Unavailable> for ApiError {
    fn from(unavailable: Unavailable) -> Self {
        match unavailable {
            Unavailable::NotInstalled(role) => Self::ModelNotInstalled {
                role: role.as_str(),
            },
            Unavailable::Loading(model) => Self::ModelLoading {
                name: model.name,
                version: model.version,
            },
            Unavailable::Failed(model, reason) => Self::ModelFailed {
                name: model.name,
                version: model.version,
                reason,
            },
        }
    }
}

impl From<ActionError> for ApiError {
    fn from(error: ActionError) -> Self {
        match error {
            ActionError::Invalid(e) => Self::BadRequest(e.to_string()),
            ActionError::Slash(e) => Self::BadRequest(e.to_string()),
            ActionError::ConversationNotFound(id) => conversation_not_found(&id),
            ActionError::Memory(e) => e.into(),
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        match error {
            ChatError::EmptyContent | ChatError::NothingToRegenerate => {
                Self::BadRequest(error.to_string())
            }
            ChatError::ConversationNotFound(id) => conversation_not_found(&id),
            ChatError::ModelUnavailable(unavailable) => unavailable.into(),
            ChatError::Memory(error) => error.into(),
            ChatError::ContextLengthExceeded(too_long) => Self::ContextLengthExceeded(too_long),
            ChatError::Generation(message) => Self::Generation(message),
        }
    }
}

/// A conversation id from a path, or the 404 an unknown one gets.
pub fn parse_id(raw: &str) -> Result<ConversationId, ApiError> {
    ConversationId::parse(raw).ok_or_else(|| ApiError::NotFound(format!("no conversation '{raw}'")))
}

pub fn conversation_not_found(id: &ConversationId) -> ApiError {
    ApiError::NotFound(format!("no conversation '{}'", id.as_str()))
}

/// Sampling settings a request may carry, checked the same way on every
/// route (REST, WebSocket, OpenAI-compatible): `temperature` in 0–2,
/// `top_p` in (0, 1].
pub fn check_sampling(temperature: Option<f64>, top_p: Option<f64>) -> Result<(), ApiError> {
    if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(ApiError::BadRequest(
            "temperature must be between 0 and 2".into(),
        ));
    }
    if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::BadRequest(
            "top_p must be greater than 0 and at most 1".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod sampling_tests {
    use crate::http::error::check_sampling;

    /// Issue 16, finding 12: `top_p` (and a WebSocket turn's
    /// `temperature`) reached the sampler unchecked.
    #[test]
    fn sampling_settings_out_of_range_are_refused() {
        assert!(check_sampling(None, None).is_ok());
        assert!(check_sampling(Some(0.0), Some(1.0)).is_ok());
        assert!(check_sampling(Some(2.0), Some(0.01)).is_ok());
        for (t, p) in [
            (Some(-0.1), None),
            (Some(2.5), None),
            (Some(f64::NAN), None),
            (None, Some(0.0)),
            (None, Some(1.5)),
            (None, Some(-1.0)),
            (None, Some(f64::NAN)),
        ] {
            assert!(check_sampling(t, p).is_err(), "{t:?} {p:?}");
        }
    }
}
