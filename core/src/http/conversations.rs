//! `/v1/conversations`: create, list (newest first) or search, read,
//! rename, delete, append a message, and each conversation's settings.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, conversation_not_found, parse_id};
use super::state::{AppState, Caller};
use crate::memory::{
    Conversation, ConversationId, ListedConversation, Message, Role, Settings, TITLE_CHARS,
};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v1/conversations",
            post(create_conversation).get(list_conversations),
        )
        .route(
            "/v1/conversations/{id}",
            get(conversation)
                .patch(rename_conversation)
                .delete(delete_conversation),
        )
        .route("/v1/conversations/{id}/messages", post(append_message))
        .route(
            "/v1/conversations/{id}/settings",
            get(conversation_settings).put(put_conversation_settings),
        )
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

async fn create_conversation(
    caller: Caller,
) -> Result<(StatusCode, Json<CreatedConversation>), ApiError> {
    let conversation = caller.memory.create_conversation().await?;
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
    /// Only conversations whose title or messages contain this text.
    q: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    title: String,
}

#[derive(Debug, Serialize)]
struct ConversationList {
    conversations: Vec<ListedConversation>,
}

/// `GET /v1/conversations?limit=N[&q=TEXT]`: most recently updated first;
/// with `q`, only those whose title or messages contain `TEXT` (any case).
async fn list_conversations(
    caller: Caller,
    axum::extract::Query(query): axum::extract::Query<ListQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let conversations = match query.q.as_deref().map(str::trim) {
        Some(q) if !q.is_empty() => caller.memory.search(q, limit).await?,
        _ => caller.memory.recent_conversations(limit).await?,
    };
    Ok(Json(ConversationList { conversations }))
}

/// `PATCH /v1/conversations/{id}` with `{"title": "..."}`.
async fn rename_conversation(
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Rename>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let Json(rename) = body?;
    let title: String = rename.title.trim().chars().take(TITLE_CHARS).collect();
    if title.is_empty() {
        return Err(ApiError::BadRequest("title must not be empty".into()));
    }
    if !caller.memory.rename(&id, &title).await? {
        return Err(conversation_not_found(&id));
    }
    Ok(Json(serde_json::json!({"id": id, "title": title})))
}

/// `DELETE /v1/conversations/{id}`: the conversation, its messages and
/// settings; `204`.
async fn delete_conversation(
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    if !caller.memory.delete_conversation(&id).await? {
        return Err(conversation_not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn conversation(
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Conversation>, ApiError> {
    let id = parse_id(&id)?;
    caller
        .memory
        .conversation(&id)
        .await?
        .map(Json)
        .ok_or_else(|| conversation_not_found(&id))
}

async fn append_message(
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<NewMessage>, JsonRejection>,
) -> Result<(StatusCode, Json<StoredMessage>), ApiError> {
    let id = parse_id(&id)?;
    let Json(new) = body?;
    if new.content.trim().is_empty() {
        return Err(ApiError::BadRequest("content must not be empty".to_owned()));
    }
    let (index, message) = caller
        .memory
        .append_message(&id, new.role, new.content, None)
        .await?
        .ok_or_else(|| conversation_not_found(&id))?;
    Ok((StatusCode::CREATED, Json(StoredMessage { index, message })))
}

async fn conversation_settings(
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Settings>, ApiError> {
    let id = parse_id(&id)?;
    caller
        .memory
        .settings(&id)
        .await?
        .map(Json)
        .ok_or_else(|| conversation_not_found(&id))
}

/// `PUT /v1/conversations/{id}/settings`: replaces them all.
async fn put_conversation_settings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Settings>, JsonRejection>,
) -> Result<Json<Settings>, ApiError> {
    let id = parse_id(&id)?;
    let Json(settings) = body?;
    if settings.model_actions && state.is_server() {
        return Err(ApiError::ActionsNotOnServer);
    }
    super::error::check_sampling(settings.temperature, None)?;
    if settings.max_tokens == Some(0) {
        return Err(ApiError::BadRequest("max_tokens must be at least 1".into()));
    }
    if !caller.memory.set_settings(&id, &settings).await? {
        return Err(conversation_not_found(&id));
    }
    Ok(Json(settings))
}
