//! `GET /v1/ws`: the WebSocket clients chat over.
//!
//! Client messages (JSON, tagged by `type`):
//! - `chat`: `turn_id` (the client's name for the turn), `conversation_id`,
//!   `content`, optional `max_tokens`, `temperature` and `tool_choice`
//!   (`none`, `auto` or a tool's name; unset: `auto` when the
//!   conversation's `model_actions` setting is on, else `none`).
//! - `regenerate`: `turn_id`, `conversation_id`, optional `max_tokens`,
//!   `temperature` and `tool_choice`: answers the last user message again,
//!   replacing the last answer if there is one.
//! - `cancel`: `turn_id`.
//!
//! A `chat` whose content is a slash command (`/note ...`, `/remind 5m
//! ...`, `/open ...`, `/read ...`, `/sysinfo`) asks the launcher for an
//! action instead: `started`, `action` (`status: pending`, the tool, its
//! tier and arguments), then, once the launcher says how it ended,
//! `action` again, the outcome as one `token`, and `done` (`finish_reason:
//! action`).
//!
//! When the model may ask for actions, it is first asked for a call
//! (constrained to the tools' schemas, see `model_actions`); a call sends
//! the same `action` events (`source: model`), its outcome streams as the
//! first `token`, and the model's answer follows it.
//!
//! Server messages: `hello` (engine states), `started`, `token` (`text`),
//! `done` (`message_index`, `finish_reason`, `usage`), `cancelled`,
//! `error` (`error.code`, `error.message`, and `turn_id` when it concerns
//! one), and `event` (model and engine events from Redis pub/sub).
//!
//! Turns run concurrently, each in its own task, several conversations at
//! once. Each socket has its own outgoing queue: a slow client only slows
//! its own turns (the model keeps generating for everyone else, since
//! tokens are buffered per turn). Both messages of a turn are in memory
//! before `done`: the user's when `started` is sent, the answer's before
//! `done`. A cancelled turn (and, in desktop mode, a disconnected one)
//! stops generating at once and keeps what was already said.
//!
//! Server mode: every message of a turn also reaches the user's other
//! sockets, on any replica; a `cancel` reaches the turn wherever it runs;
//! a turn outlives its socket and stores its answer; slash commands and
//! tool calls are refused (`actions_not_on_server`); a draining replica
//! refuses new turns (`shutting_down`). See `crate::relay`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use jarvis_actions::{ActionRequest, ActionState, Source, Status, slash};

use super::error::{ApiError, conversation_not_found};
use super::state::{Access, AppState, Caller};
use crate::actions::{self, ActionError};
use crate::chat::{self, TurnInput, TurnRequest};
use crate::memory::{ConversationId, Memory, Role};
use crate::model_actions::{self, ModelCall, ToolChoice};
use crate::relay::SocketHandle;

/// Turns one socket may run at once.
pub const MAX_TURNS_PER_SOCKET: usize = 8;
/// Largest client message.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Chat {
        turn_id: String,
        conversation_id: String,
        content: String,
        max_tokens: Option<u32>,
        temperature: Option<f64>,
        tool_choice: Option<String>,
    },
    Regenerate {
        turn_id: String,
        conversation_id: String,
        max_tokens: Option<u32>,
        temperature: Option<f64>,
        tool_choice: Option<String>,
    },
    Cancel {
        turn_id: String,
    },
}

/// `GET /v1/ws`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/ws", get(upgrade))
}

async fn upgrade(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(state, caller, socket))
}

/// Where a turn's messages go: its own socket and, in server mode, the
/// user's other sockets on every replica (see `crate::relay`).
#[derive(Debug, Clone)]
struct Outbox {
    local: mpsc::Sender<serde_json::Value>,
    shared: Option<Arc<SocketHandle>>,
}

/// The turn's own socket is gone and nobody else listens.
#[derive(Debug)]
struct Gone;

impl Outbox {
    async fn send(&self, message: serde_json::Value) -> Result<(), Gone> {
        match &self.shared {
            // In server mode a turn outlives its socket: the answer is
            // stored, and the user's other sockets see it happen.
            Some(shared) => {
                shared.broadcast(&message);
                let _ = self.local.send(message).await;
                Ok(())
            }
            None => self.local.send(message).await.map_err(|_| Gone),
        }
    }
}

/// What a turn needs to run: the shared state (engines, mode), the
/// caller's own memory, and where its messages go.
struct TurnContext {
    state: Arc<AppState>,
    memory: Memory,
    out: Outbox,
}

async fn serve(state: Arc<AppState>, caller: Caller, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (local, mut outgoing) = mpsc::channel::<serde_json::Value>(256);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if sink
                .send(Message::Text(message.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let shared = match (&state.relay, &caller.user) {
        (Some(relay), Some(user)) => Some(Arc::new(relay.join(&user.id, local.clone()))),
        _ => None,
    };
    let out = Outbox {
        local: local.clone(),
        shared: shared.clone(),
    };
    let _ = local
        .send(
            json!({"type": "hello", "version": crate::VERSION, "engines": state.engines.status()}),
        )
        .await;

    // Model and engine events from Redis.
    let mut events = state.memory.events();
    let events_out = local.clone();
    let forwarder = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if events_out
                        .send(json!({"type": "event", "event": event}))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });

    // Desktop mode: each turn's cancel. Server mode: `None`, the relay
    // holds the cancel, so a turn can be stopped from any replica.
    let mut turns: HashMap<String, Option<oneshot::Sender<()>>> = HashMap::new();
    let (finished_tx, mut finished) = mpsc::unbounded_channel::<String>();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            Some(turn_id) = finished.recv() => {
                turns.remove(&turn_id);
                continue;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => continue, // pings are answered by axum; binary is ignored
        };
        let parsed: ClientMessage = match serde_json::from_str(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                let _ = local
                    .send(error_json(None, &ApiError::BadRequest(e.to_string())))
                    .await;
                continue;
            }
        };
        let (turn_id, conversation_id, input, max_tokens, temperature, tool_choice) = match parsed {
            ClientMessage::Chat {
                turn_id,
                conversation_id,
                content,
                max_tokens,
                temperature,
                tool_choice,
            } => (
                turn_id,
                conversation_id,
                TurnInput::Message(content),
                max_tokens,
                temperature,
                tool_choice,
            ),
            ClientMessage::Regenerate {
                turn_id,
                conversation_id,
                max_tokens,
                temperature,
                tool_choice,
            } => (
                turn_id,
                conversation_id,
                TurnInput::Regenerate,
                max_tokens,
                temperature,
                tool_choice,
            ),
            ClientMessage::Cancel { turn_id } => {
                match (turns.remove(&turn_id), &shared) {
                    (Some(Some(cancel)), _) => {
                        let _ = cancel.send(());
                    }
                    // Here or on another replica: the relay finds it.
                    (_, Some(shared)) => shared.relay().cancel(shared.user(), &turn_id),
                    _ => {}
                }
                continue;
            }
        };
        let refuse = |e: ApiError| error_json(Some(&turn_id), &e);
        if state.is_draining() {
            let _ = local.send(refuse(ApiError::Draining)).await;
            continue;
        }
        // A turn costs like a request: one socket is no way around the
        // rate limit.
        if let Access::Server(settings) = &state.access
            && let Err(e) = super::guard::within_rate_limit(settings, &caller.memory).await
        {
            let _ = local.send(refuse(e)).await;
            continue;
        }
        if turns.contains_key(&turn_id) {
            let e = ApiError::BadRequest(format!("turn '{turn_id}' is already running"));
            let _ = local.send(refuse(e)).await;
            continue;
        }
        if turns.len() >= MAX_TURNS_PER_SOCKET {
            let e = ApiError::BadRequest(format!(
                "at most {MAX_TURNS_PER_SOCKET} turns may run at once on one connection"
            ));
            let _ = local.send(refuse(e)).await;
            continue;
        }
        let Some(conversation) = ConversationId::parse(&conversation_id) else {
            let e = ApiError::NotFound(format!("no conversation '{conversation_id}'"));
            let _ = local.send(refuse(e)).await;
            continue;
        };
        if let Err(e) = super::error::check_sampling(temperature, None) {
            let _ = local.send(refuse(e)).await;
            continue;
        }
        let tool_choice = match tool_choice.as_deref().map(|c| (c, ToolChoice::parse(c))) {
            None => None,
            Some((_, Some(choice))) => Some(choice),
            Some((text, None)) => {
                let e = ApiError::BadRequest(format!(
                    "tool_choice must be 'none', 'auto' or a tool's name, not '{text}'"
                ));
                let _ = local.send(refuse(e)).await;
                continue;
            }
        };
        let slash_command = match &input {
            TurnInput::Message(content) => slash::parse(content, jiff::Timestamp::now())
                .map(|command| (content.clone(), command)),
            TurnInput::Regenerate => None,
        };
        // A server never acts on a computer: the desktop app does.
        if state.is_server()
            && (slash_command.is_some() || tool_choice.is_some_and(|c| c != ToolChoice::None))
        {
            let _ = local.send(refuse(ApiError::ActionsNotOnServer)).await;
            continue;
        }
        let (cancel_rx, relay_guard) = match &shared {
            Some(shared) => match shared.relay().start_turn(shared.user(), &turn_id) {
                Some((guard, cancel_rx)) => {
                    turns.insert(turn_id.clone(), None);
                    (cancel_rx, Some(guard))
                }
                None => {
                    let e = ApiError::BadRequest(format!("turn '{turn_id}' is already running"));
                    let _ = local.send(refuse(e)).await;
                    continue;
                }
            },
            None => {
                let (cancel_tx, cancel_rx) = oneshot::channel();
                turns.insert(turn_id.clone(), Some(cancel_tx));
                (cancel_rx, None)
            }
        };
        let context = TurnContext {
            state: Arc::clone(&state),
            memory: caller.memory.clone(),
            out: out.clone(),
        };
        let finished = finished_tx.clone();
        // A slash command asks the launcher for an action instead of the
        // model for an answer.
        if let Some((content, command)) = slash_command {
            tokio::spawn(async move {
                let turn = run_action_turn(
                    &context,
                    &turn_id,
                    &conversation,
                    content,
                    command,
                    cancel_rx,
                );
                if let Err(e) = turn.await {
                    let _ = context.out.send(error_json(Some(&turn_id), &e)).await;
                }
                drop(relay_guard);
                let _ = finished.send(turn_id);
            });
            continue;
        }
        let request = TurnRequest {
            conversation,
            input,
            max_tokens,
            temperature,
        };
        tokio::spawn(async move {
            let turn = run_turn(&context, &turn_id, request, tool_choice, cancel_rx);
            if let Err(e) = turn.await {
                let _ = context.out.send(error_json(Some(&turn_id), &e)).await;
            }
            drop(relay_guard);
            let _ = finished.send(turn_id);
        });
    }
    // Desktop: the client is gone, so stop every turn (each keeps its
    // partial answer). Server: turns run on and store their answers.
    for (_, cancel) in turns.drain() {
        if let Some(cancel) = cancel {
            let _ = cancel.send(());
        }
    }
    forwarder.abort();
    drop((out, local, shared));
    let _ = writer.await;
}

/// A turn the model answers. When the model may ask for actions (the
/// conversation's `model_actions` setting, or the turn's `tool_choice`),
/// it is first asked for a call, constrained to the tools' schemas; a
/// call goes through the launcher's gate like a slash command's, and its
/// outcome is shown, stored and fed back before the model answers. An
/// error is the caller's to report.
async fn run_turn(
    context: &TurnContext,
    turn_id: &str,
    request: TurnRequest,
    tool_choice: Option<ToolChoice>,
    mut cancel: oneshot::Receiver<()>,
) -> Result<(), ApiError> {
    let out = &context.out;
    let memory = &context.memory;
    let prepared = chat::prepare(memory, &context.state.engines, request).await?;
    // A server never asks for actions (see `serve`).
    let choice = tool_choice.unwrap_or(
        if prepared.settings.model_actions && !context.state.is_server() {
            ToolChoice::Auto
        } else {
            ToolChoice::None
        },
    );
    let conversation = prepared.conversation.clone();
    // Refused before anything streams when even the question does not fit.
    let left_out = prepared.left_out()?;
    let _ = out
        .send(json!({
            "type": "started",
            "turn_id": turn_id,
            "conversation_id": conversation.as_str(),
            "user_index": prepared.user_index,
            "model": {"name": prepared.model.name, "version": prepared.model.version},
            "left_out": left_out,
        }))
        .await;
    // What the person sees before the model's answer (an action's
    // outcome), and what the model is told of it.
    let mut shown = String::new();
    let mut extra = Vec::new();
    if let Some(schema) = model_actions::call_schema(choice) {
        let instructions = model_actions::instructions(choice, jiff::Timestamp::now());
        let call = tokio::select! {
            call = prepared.generate_json(&instructions, schema, model_actions::CALL_MAX_TOKENS) => call?,
            _ = &mut cancel => {
                send_cancelled(out, turn_id, None).await;
                return Ok(());
            }
        };
        match call
            .as_deref()
            .map(|text| model_actions::parse_call(text, choice))
        {
            Some(Ok(ModelCall::Call { tool, arguments })) => {
                let Some((text, messages)) = model_action(
                    context,
                    turn_id,
                    &conversation,
                    tool,
                    arguments,
                    &mut cancel,
                )
                .await?
                else {
                    return Ok(()); // cancelled
                };
                shown = format!("{text}\n\n");
                extra = messages;
                let _ = out
                    .send(json!({"type": "token", "turn_id": turn_id, "text": shown}))
                    .await;
            }
            Some(Ok(ModelCall::Nothing)) => {}
            Some(Err(e)) => tracing::warn!(call = ?call, "the model's call was not usable: {e}"),
            None => {} // cut off: logged with its text where it happened
        }
    }
    let mut turn = prepared.answer(&extra)?;
    let mut answer = shown.clone();
    loop {
        let event = tokio::select! {
            event = turn.events.recv() => event,
            _ = &mut cancel => None,
        };
        match event {
            Some(jarvis_llm::Event::Delta(text)) => {
                answer.push_str(&text);
                if out
                    .send(json!({"type": "token", "turn_id": turn_id, "text": text}))
                    .await
                    .is_err()
                {
                    break; // the socket is gone
                }
            }
            Some(jarvis_llm::Event::Done {
                finish_reason,
                usage,
            }) => {
                let tokens = shown.is_empty().then_some(usage.completion_tokens);
                let index = chat::store_answer(memory, &conversation, answer, tokens).await?;
                let _ = out
                    .send(json!({
                        "type": "done",
                        "turn_id": turn_id,
                        "message_index": index,
                        "finish_reason": finish_reason,
                        "usage": usage,
                    }))
                    .await;
                return Ok(());
            }
            Some(jarvis_llm::Event::Failed(message)) => {
                // Keep an action's outcome: it happened.
                if !shown.is_empty() {
                    chat::store_answer(memory, &conversation, shown, None).await?;
                }
                return Err(ApiError::Generation(message));
            }
            None => break,
        }
    }
    // Cancelled: stop generating (dropping the receiver) and keep what the
    // user already saw.
    drop(turn.events);
    let index = if answer.is_empty() {
        None
    } else {
        chat::store_answer(memory, &conversation, answer, None)
            .await
            .ok()
    };
    send_cancelled(out, turn_id, index).await;
    Ok(())
}

/// The model's call: handed to the launcher, waited for (a cancel
/// withdraws it), and described. Returns what the person is shown and
/// what the model is told; `None` when the turn was cancelled.
async fn model_action(
    context: &TurnContext,
    turn_id: &str,
    conversation: &ConversationId,
    tool: jarvis_actions::Tool,
    arguments: serde_json::Value,
    cancel: &mut oneshot::Receiver<()>,
) -> Result<Option<(String, Vec<jarvis_llm::Message>)>, ApiError> {
    let submitted = actions::submit(
        &context.memory,
        tool.name(),
        arguments.clone(),
        Some(conversation),
        Source::Model,
    )
    .await;
    let request = match submitted {
        Ok(request) => request,
        // Well-formed but not acceptable (a relative path, a time long
        // past): nothing was asked; the model hears why.
        Err(ActionError::Invalid(e)) => {
            let text = format!("Jarvis refused the model's request for {tool}: {e}");
            let told = jarvis_llm::Message {
                role: jarvis_llm::Role::User,
                content: format!("[Jarvis: {text}]\n[Now answer my previous message.]"),
            };
            return Ok(Some((text, vec![told])));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(final_state) = decision(context, turn_id, &request, tool, cancel).await? else {
        return Ok(None);
    };
    let shown = actions::describe(&request, final_state.as_ref());
    let told = vec![
        model_actions::call_message(&request),
        model_actions::outcome_message(&request, final_state.as_ref()),
    ];
    Ok(Some((shown, told)))
}

/// Tells the client a request waits for the person (`action`, `pending`),
/// waits for the launcher's final word, and tells the client that too.
/// `None` when the turn was cancelled first: the request is withdrawn and
/// the client told.
async fn decision(
    context: &TurnContext,
    turn_id: &str,
    request: &ActionRequest,
    tool: jarvis_actions::Tool,
    cancel: &mut oneshot::Receiver<()>,
) -> Result<Option<Option<ActionState>>, ApiError> {
    let (out, memory) = (&context.out, &context.memory);
    let details = json!({
        "tier": tool.tier(),
        "description": tool.description(),
        "arguments": request.arguments,
    });
    let _ = out
        .send(action_event(turn_id, request, Status::Pending, details))
        .await;
    let final_state = tokio::select! {
        outcome = actions::wait_final(memory, &request.id, actions::approval_wait()) => outcome?,
        _ = cancel => {
            // Stopping the turn takes the request back: the launcher drops
            // it if nobody decided yet.
            if let Err(e) = memory.withdraw_action(&request.id).await {
                tracing::warn!(id = %request.id, "could not withdraw an action: {e}");
            }
            send_cancelled(out, turn_id, None).await;
            return Ok(None);
        }
    };
    let status = final_state.as_ref().map_or(Status::Expired, |s| s.status);
    let reason = json!({"reason": final_state.as_ref().and_then(|s| s.reason.clone())});
    let _ = out
        .send(action_event(turn_id, request, status, reason))
        .await;
    Ok(Some(final_state))
}

/// An `action` message: the request's id, tool, source and `status`, and
/// the fields of `details`.
fn action_event(
    turn_id: &str,
    request: &ActionRequest,
    status: Status,
    details: serde_json::Value,
) -> serde_json::Value {
    let mut action = json!({
        "id": request.id,
        "tool": request.tool,
        "source": request.source,
        "status": status,
    });
    if let (Some(action), serde_json::Value::Object(details)) = (action.as_object_mut(), details) {
        action.extend(details);
    }
    json!({"type": "action", "turn_id": turn_id, "action": action})
}

async fn send_cancelled(out: &Outbox, turn_id: &str, index: Option<usize>) {
    let _ = out
        .send(json!({"type": "cancelled", "turn_id": turn_id, "message_index": index}))
        .await;
}

/// A slash command: the user's message is stored, the request goes to the
/// launcher (`action` with `status: pending` tells the client to show
/// "waiting for your approval"), and the outcome becomes the answer, so
/// the result is part of the conversation (and of later prompts). An
/// error is the caller's to report.
async fn run_action_turn(
    context: &TurnContext,
    turn_id: &str,
    conversation: &ConversationId,
    content: String,
    command: Result<(jarvis_actions::Tool, serde_json::Value), slash::SlashError>,
    mut cancel: oneshot::Receiver<()>,
) -> Result<(), ApiError> {
    let (out, memory) = (&context.out, &context.memory);
    let (tool, arguments) = command.map_err(ActionError::from)?;
    // Checked before anything is stored: a refused command leaves no trace.
    jarvis_actions::validate(tool, &arguments, jiff::Timestamp::now())
        .map_err(ActionError::from)?;
    let (user_index, _) = memory
        .append_message(conversation, Role::User, content, None)
        .await?
        .ok_or_else(|| conversation_not_found(conversation))?;
    let request = actions::submit(
        memory,
        tool.name(),
        arguments,
        Some(conversation),
        Source::Slash,
    )
    .await?;
    let _ = out
        .send(json!({
            "type": "started",
            "turn_id": turn_id,
            "conversation_id": conversation.as_str(),
            "user_index": user_index,
            "model": null,
            "left_out": 0,
        }))
        .await;
    let Some(final_state) = decision(context, turn_id, &request, tool, &mut cancel).await? else {
        return Ok(());
    };
    let answer = actions::describe(&request, final_state.as_ref());
    let _ = out
        .send(json!({"type": "token", "turn_id": turn_id, "text": answer}))
        .await;
    let index = chat::store_answer(memory, conversation, answer, None).await?;
    let _ = out
        .send(json!({
            "type": "done",
            "turn_id": turn_id,
            "message_index": index,
            "finish_reason": "action",
        }))
        .await;
    Ok(())
}

fn error_json(turn_id: Option<&str>, error: &ApiError) -> serde_json::Value {
    let mut value = json!({
        "type": "error",
        "error": {"code": error.code(), "message": error.to_string()},
    });
    if let Some(turn_id) = turn_id {
        value["turn_id"] = json!(turn_id);
    }
    value
}
