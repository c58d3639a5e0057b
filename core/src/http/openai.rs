//! OpenAI-compatible endpoints, so existing clients (the `openai` Python
//! package among them) work with a base URL and the API token:
//! - `POST /v1/chat/completions`, streaming (SSE) or not; stateless, like
//!   OpenAI's (conversations with memory use `/v1/ws`).
//! - `GET /v1/models`: the active models.
//! - `POST /v1/audio/transcriptions`: multipart WAV upload.
//!
//! `model` is a model's registry name. Errors use the core's JSON error
//! body, whose `error.message` and `error.code` OpenAI clients read.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Multipart, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use jarvis_llm::{Event, FinishReason, Request, Role};
use serde::{Deserialize, Serialize};
use serde_json::json;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::error::ApiError;
use super::state::AppState;
use crate::prompt::{self, Sized};

/// `/v1/chat/completions`, `/v1/models`, `/v1/audio/transcriptions`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route(
            "/v1/audio/transcriptions",
            post(transcriptions).layer(DefaultBodyLimit::max(MAX_AUDIO_BYTES)),
        )
}

/// Largest audio upload, as OpenAI's own limit.
pub const MAX_AUDIO_BYTES: usize = 25 * 1024 * 1024;

/// Accepted as the name of whatever speech model is active: clients
/// written for OpenAI send it by default.
const OPENAI_STT_ALIAS: &str = "whisper-1";

#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<Stop>,
    n: Option<u32>,
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

impl InMessage {
    fn into_message(self) -> Result<jarvis_llm::Message, ApiError> {
        let role = match self.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "messages with role '{other}' are not supported (system, developer, user, assistant)"
                )));
            }
        };
        let content = match self.content {
            None => String::new(),
            Some(Content::Text(text)) => text,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return Err(ApiError::BadRequest(format!(
                                "content parts of type '{kind}' are not supported; send text"
                            )));
                        }
                    }
                }
                text
            }
        };
        Ok(jarvis_llm::Message { role, content })
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let (model, engine) = state.engines.llm().map_err(ApiError::from)?;
    if request.model != model.name {
        return Err(ApiError::ModelNotFound {
            requested: request.model,
            available: model.name,
        });
    }
    if request.n.is_some_and(|n| n != 1) {
        return Err(ApiError::BadRequest("only n = 1 is supported".into()));
    }
    super::error::check_sampling(request.temperature, request.top_p)?;
    if request.messages.is_empty() {
        return Err(ApiError::BadRequest("messages must not be empty".into()));
    }
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .unwrap_or(crate::chat::DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        return Err(ApiError::BadRequest("max_tokens must be at least 1".into()));
    }
    let messages = request
        .messages
        .into_iter()
        .map(InMessage::into_message)
        .collect::<Result<Vec<_>, _>>()?;
    // Stateless: the whole conversation must fit, nothing is left out.
    let mut sized = Vec::with_capacity(messages.len());
    for m in &messages {
        let tokens = engine
            .count_tokens(&m.content)
            .await
            .unwrap_or_else(|_| prompt::estimate_tokens(&m.content));
        sized.push(Sized {
            role: m.role,
            content: &m.content,
            tokens,
        });
    }
    let (fitted, left_out) =
        prompt::fit(None, &sized, engine.context_length(), max_tokens as usize)
            .map_err(ApiError::ContextLengthExceeded)?;
    if left_out > 0 {
        let needed = sized
            .iter()
            .map(|s| s.tokens + prompt::TEMPLATE_TOKENS_PER_MESSAGE)
            .sum();
        return Err(ApiError::ContextLengthExceeded(prompt::TooLong {
            needed,
            available: engine.context_length().saturating_sub(max_tokens as usize),
            context: engine.context_length(),
            answer: max_tokens as usize,
        }));
    }
    let stop = match request.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    let events = engine.generate(Request {
        messages: fitted,
        max_tokens: max_tokens as usize,
        temperature: request.temperature,
        top_p: request.top_p,
        stop,
        json_schema: None,
    });
    let id = format!(
        "chatcmpl-{}",
        crate::memory::ConversationId::generate().as_str()
    );
    let created = jiff::Timestamp::now().as_second();
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        Ok(stream_response(events, id, created, model.name, include_usage).into_response())
    } else {
        collect_response(events, id, created, model.name).await
    }
}

async fn collect_response(
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    id: String,
    created: i64,
    model: String,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Delta(delta) => text.push_str(&delta),
            Event::Done {
                finish_reason,
                usage,
            } => {
                return Ok(Json(json!({
                    "id": id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish_reason_str(finish_reason),
                    }],
                    "usage": usage_json(&usage),
                }))
                .into_response());
            }
            Event::Failed(message) => return Err(ApiError::Generation(message)),
        }
    }
    Err(ApiError::Generation(
        "the model stopped without an answer".into(),
    ))
}

fn stream_response(
    events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let chunk = move |delta: serde_json::Value, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut queue: VecDeque<String> = VecDeque::new();
    queue.push_back(chunk(json!({"role": "assistant", "content": ""}), None).to_string());
    let state = (events, queue, chunk, false);
    let stream = futures_util::stream::unfold(
        state,
        move |(mut events, mut queue, chunk, mut ended)| async move {
            loop {
                if let Some(data) = queue.pop_front() {
                    return Some((
                        Ok(SseEvent::default().data(data)),
                        (events, queue, chunk, ended),
                    ));
                }
                if ended {
                    return None;
                }
                match events.recv().await {
                    Some(Event::Delta(text)) => {
                        queue.push_back(chunk(json!({"content": text}), None).to_string());
                    }
                    Some(Event::Done {
                        finish_reason,
                        usage,
                    }) => {
                        queue.push_back(
                            chunk(json!({}), Some(finish_reason_str(finish_reason))).to_string(),
                        );
                        if include_usage {
                            let mut last = chunk(json!({}), None);
                            last["choices"] = json!([]);
                            last["usage"] = usage_json(&usage);
                            queue.push_back(last.to_string());
                        }
                        queue.push_back("[DONE]".into());
                        ended = true;
                    }
                    Some(Event::Failed(message)) => {
                        tracing::error!(%message, "generation failed mid-stream");
                        queue.push_back(
                            json!({"error": {"code": "generation_failed", "message": message}})
                                .to_string(),
                        );
                        ended = true;
                    }
                    None => return None,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn finish_reason_str(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn usage_json(usage: &jarvis_llm::Usage) -> serde_json::Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "time_to_first_token": usage.time_to_first_token,
        "decode_tokens_per_sec": usage.decode_tokens_per_sec,
    })
}

/// `GET /v1/models`.
#[derive(Debug, Serialize)]
pub struct ModelList {
    object: &'static str,
    data: Vec<ModelInfo>,
}

/// One model in [`ModelList`].
#[derive(Debug, Serialize)]
pub struct ModelInfo {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: &'static str,
    /// Jarvis' additions: the installed version, its role and engine state.
    version: String,
    role: String,
    state: String,
}

/// `GET /v1/models`: the active model of each role.
pub async fn models(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    let data: Vec<ModelInfo> = state
        .engines
        .status()
        .into_iter()
        .filter_map(|engine| {
            let model = engine.model?;
            Some(ModelInfo {
                id: model.name,
                object: "model",
                created: 0,
                owned_by: "jarvis",
                version: model.version,
                role: engine.role,
                state: engine.state,
            })
        })
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
}

/// `POST /v1/audio/transcriptions`.
pub async fn transcriptions(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    // A declared size over the limit is refused before a byte is read.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_AUDIO_BYTES as u64) {
        return Err(ApiError::TooLarge {
            limit: MAX_AUDIO_BYTES,
        });
    }
    let mut multipart = multipart.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // No speech model: say so whatever the request names, after reading
    // the (size-limited) upload, so the client, still sending, gets the
    // answer rather than a closed connection.
    let (model, engine) = match state.engines.stt() {
        Ok(ready) => ready,
        Err(unavailable) => {
            jarvis_audio::discard(&mut multipart).await;
            return Err(unavailable.into());
        }
    };
    let jarvis_audio::TranscriptionForm {
        file,
        model: requested,
        response_format: format,
        language,
    } = jarvis_audio::read_form(&mut multipart)
        .await
        .map_err(multipart_error)?;
    let file = file.ok_or_else(|| ApiError::BadRequest("the 'file' field is missing".into()))?;
    if let Some(requested) = requested
        && requested != model.name
        && requested != OPENAI_STT_ALIAS
    {
        return Err(ApiError::ModelNotFound {
            requested,
            available: model.name,
        });
    }
    let format = format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "text" | "verbose_json") {
        return Err(ApiError::BadRequest(format!(
            "response_format '{format}' is not supported (json, text, verbose_json)"
        )));
    }
    let audio = tokio::task::spawn_blocking(move || jarvis_audio::decode_wav(&file))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::BadAudio)?;
    let options = jarvis_stt::TranscribeOptions {
        language: language.filter(|l| !l.is_empty()),
        threads: state.engines.threads(),
        timestamps: format == "verbose_json",
        ..Default::default()
    };
    let samples = audio.samples;
    let transcript = tokio::task::spawn_blocking(move || engine.transcribe(&samples, &options))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Generation(e.to_string()))?;
    tracing::info!(
        secs = transcript.duration_secs,
        took = ?transcript.elapsed,
        "transcribed"
    );
    Ok(match format.as_str() {
        "text" => transcript.text.into_response(),
        "verbose_json" => Json(json!({
            "task": "transcribe",
            "language": transcript.language,
            "duration": transcript.duration_secs,
            "text": transcript.text,
            "segments": transcript.segments.iter().enumerate().map(|(i, s)| json!({
                "id": i, "start": s.start_secs, "end": s.end_secs, "text": s.text,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        _ => Json(json!({"text": transcript.text})).into_response(),
    })
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge {
            limit: MAX_AUDIO_BYTES,
        }
    } else {
        ApiError::BadRequest(error.body_text())
    }
}
