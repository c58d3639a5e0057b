//! One chat turn in a stored conversation: the user's message goes into
//! memory, the prompt is built from memory, the answer streams, and the
//! answer goes into memory before the turn is reported done.
//!
//! Domain logic: it takes the memory and the engines it needs and knows
//! nothing of HTTP (the WebSocket route maps [`ChatError`] to its answer).

use jarvis_llm::Request;
use tokio::sync::mpsc;

use crate::engines::{Engines, ModelRef, Unavailable};
use crate::memory::{ConversationId, Memory, MemoryError, RemoveAnswer, Role};
use crate::prompt::{self, Sized, TooLong};

/// Answer budget when neither the request nor the conversation sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 512;

/// What a client asks for in one turn.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub conversation: ConversationId,
    pub input: TurnInput,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
}

/// What starts the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnInput {
    /// A new user message.
    Message(String),
    /// Answer the last user message again: the last answer, if the
    /// conversation ends with one, is replaced by the new one.
    Regenerate,
}

/// A turn whose user message is stored and whose answer is streaming.
#[derive(Debug)]
pub struct Turn {
    pub conversation: ConversationId,
    pub user_index: usize,
    pub model: ModelRef,
    /// Older messages left out of the prompt to fit the context.
    pub left_out: usize,
    pub events: mpsc::UnboundedReceiver<jarvis_llm::Event>,
}

/// Why a turn could not start or its answer could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("content must not be empty")]
    EmptyContent,
    #[error("there is no message to answer again")]
    NothingToRegenerate,
    #[error("no conversation '{}'", .0.as_str())]
    ConversationNotFound(ConversationId),
    /// No chat model can answer now (none installed, loading, or failed).
    #[error("no chat model can answer now")]
    ModelUnavailable(Unavailable),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    ContextLengthExceeded(TooLong),
}

/// Stores the user's message and starts the answer.
pub async fn start(
    memory: &Memory,
    engines: &Engines,
    request: TurnRequest,
) -> Result<Turn, ChatError> {
    if let TurnInput::Message(content) = &request.input
        && content.trim().is_empty()
    {
        return Err(ChatError::EmptyContent);
    }
    let not_found = || ChatError::ConversationNotFound(request.conversation.clone());
    // Refuse before writing anything when no model can answer.
    let (model, engine) = engines.llm().map_err(ChatError::ModelUnavailable)?;
    let settings = memory
        .settings(&request.conversation)
        .await?
        .ok_or_else(not_found)?;
    let user_index = match &request.input {
        TurnInput::Message(content) => {
            let tokens = engine.count_tokens(content).await.ok();
            let (index, _) = memory
                .append_message(
                    &request.conversation,
                    Role::User,
                    content.clone(),
                    tokens.and_then(|t| u32::try_from(t).ok()),
                )
                .await?
                .ok_or_else(not_found)?;
            index
        }
        TurnInput::Regenerate => {
            if memory.remove_last_answer(&request.conversation).await? == RemoveAnswer::NotFound {
                return Err(not_found());
            }
            let conversation = memory
                .conversation(&request.conversation)
                .await?
                .ok_or_else(not_found)?;
            match conversation.messages.last() {
                Some(last) if last.role == Role::User => conversation.messages.len() - 1,
                _ => return Err(ChatError::NothingToRegenerate),
            }
        }
    };
    let conversation = memory
        .conversation(&request.conversation)
        .await?
        .ok_or_else(not_found)?;

    let max_tokens = request
        .max_tokens
        .or(settings.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let system = settings.system_prompt.as_deref().map(|content| Sized {
        role: jarvis_llm::Role::System,
        content,
        tokens: prompt::estimate_tokens(content),
    });
    let history: Vec<Sized<'_>> = conversation
        .messages
        .iter()
        .map(|m| Sized {
            role: match m.role {
                Role::System => jarvis_llm::Role::System,
                Role::User => jarvis_llm::Role::User,
                Role::Assistant => jarvis_llm::Role::Assistant,
            },
            content: &m.content,
            tokens: m
                .tokens
                .map_or_else(|| prompt::estimate_tokens(&m.content), |t| t as usize),
        })
        .collect();
    let (messages, left_out) = prompt::fit(
        system,
        &history,
        engine.context_length(),
        max_tokens as usize,
    )
    .map_err(ChatError::ContextLengthExceeded)?;
    let events = engine.generate(Request {
        messages,
        max_tokens: max_tokens as usize,
        temperature: request.temperature.or(settings.temperature),
        top_p: None,
        stop: Vec::new(),
    });
    Ok(Turn {
        conversation: request.conversation,
        user_index,
        model,
        left_out,
        events,
    })
}

/// Stores the (complete or cancelled) answer; returns its index.
pub async fn store_answer(
    memory: &Memory,
    conversation: &ConversationId,
    text: String,
    tokens: Option<usize>,
) -> Result<usize, ChatError> {
    let (index, _) = memory
        .append_message(
            conversation,
            Role::Assistant,
            text,
            tokens.and_then(|t| u32::try_from(t).ok()),
        )
        .await?
        .ok_or_else(|| ChatError::ConversationNotFound(conversation.clone()))?;
    Ok(index)
}
