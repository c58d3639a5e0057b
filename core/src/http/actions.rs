//! `/v1/actions`: requests for the launcher's gatekeeper.
//!
//! - `GET /v1/actions/tools`: every tool with its description, risk tier
//!   and JSON schema, and the chat's slash commands.
//! - `POST /v1/actions` (`{tool, arguments, conversation_id?}`): checks the
//!   arguments and hands the request over; `202 {id, status: "pending"}`.
//! - `GET /v1/actions/{id}`: the request and where it stands (`pending`,
//!   `denied`, `expired`, `running`, `done`, `failed`, with `result` or
//!   `reason`).
//! - `DELETE /v1/actions/{id}`: takes a request back (`202`); the launcher
//!   denies it if nobody decided yet, and ignores it otherwise.
//!
//! There is deliberately no route that decides: only the launcher's
//! approval surface and its terminal can.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use jarvis_actions::record::is_valid_id;
use jarvis_actions::slash::COMMANDS;
use jarvis_actions::{Source, Status, Tool};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, parse_id};
use super::state::{AppState, Caller};
use crate::actions;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/actions", post(request_action))
        .route("/v1/actions/tools", get(tools))
        .route("/v1/actions/{id}", get(action).delete(withdraw))
}

/// Server mode's `/v1/actions`: every route says why a server never acts.
pub fn refusing_router() -> Router<Arc<AppState>> {
    async fn refuse() -> ApiError {
        ApiError::ActionsNotOnServer
    }
    Router::new()
        .route("/v1/actions", any(refuse))
        .route("/v1/actions/{*rest}", any(refuse))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAction {
    tool: String,
    #[serde(default = "empty_object")]
    arguments: Value,
    conversation_id: Option<String>,
}

fn empty_object() -> Value {
    json!({})
}

async fn tools() -> Json<Value> {
    let tools: Vec<Value> = Tool::ALL
        .into_iter()
        .map(|tool| {
            json!({
                "name": tool.name(),
                "description": tool.description(),
                "tier": tool.tier(),
                "tier_description": tool.tier().describe(),
                "may_always_allow": tool.tier().may_always_allow(),
                "schema": tool.schema(),
            })
        })
        .collect();
    let commands: Vec<Value> = COMMANDS
        .iter()
        .map(|(usage, what)| json!({"usage": usage, "description": what}))
        .collect();
    Json(json!({"tools": tools, "slash_commands": commands}))
}

async fn request_action(
    caller: Caller,
    body: Result<Json<NewAction>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(body) = body?;
    let conversation = body.conversation_id.as_deref().map(parse_id).transpose()?;
    let request = actions::submit(
        &caller.memory,
        &body.tool,
        body.arguments,
        conversation.as_ref(),
        Source::Api,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": request.id,
            "status": Status::Pending,
            "tool": request.tool,
            "arguments": request.arguments,
        })),
    ))
}

async fn withdraw(caller: Caller, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    if !is_valid_id(&id) || caller.memory.action(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no action '{id}'")));
    }
    caller.memory.withdraw_action(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "withdrawn": true})),
    ))
}

async fn action(caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no action '{id}'"));
    if !is_valid_id(&id) {
        return Err(not_found());
    }
    let (request, action_state) = caller.memory.action(&id).await?.ok_or_else(not_found)?;
    let mut body = serde_json::to_value(&request).map_err(|e| ApiError::Internal(e.to_string()))?;
    match action_state {
        Some(s) => {
            body["status"] = json!(s.status);
            body["decided_by"] = json!(s.decided_by);
            body["result"] = json!(s.result);
            body["reason"] = json!(s.reason);
            body["updated_at"] = json!(s.updated_at);
        }
        None => body["status"] = json!(Status::Pending),
    }
    Ok(Json(body))
}
