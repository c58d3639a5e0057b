//! One chat turn in a stored conversation: the user's message goes into
//! memory, the prompt is built from memory, the answer streams, and the
//! answer goes into memory before the turn is reported done.
//!
//! Domain logic: it takes the memory and the engines it needs and knows
//! nothing of HTTP (the WebSocket route maps [`ChatError`] to its answer).

use std::sync::Arc;

use jarvis_llm::{ChatModel, Request};
use tokio::sync::mpsc;

use crate::engines::{Engines, ModelRef, Unavailable};
use crate::memory::{ConversationId, Memory, MemoryError, RemoveAnswer, Role, Settings};
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

/// A turn whose user message is stored and that may now be answered:
/// the conversation as memory has it, the engine and the settings.
#[derive(Debug)]
pub struct Prepared {
    pub conversation: ConversationId,
    pub user_index: usize,
    pub model: ModelRef,
    pub settings: Settings,
    engine: Arc<ChatModel>,
    /// Every message with its size in tokens, oldest first.
    history: Vec<(jarvis_llm::Message, usize)>,
    max_tokens: u32,
    temperature: Option<f64>,
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
    #[error("generation failed: {0}")]
    Generation(String),
}

/// Stores the user's message and starts the answer.
pub async fn start(
    memory: &Memory,
    engines: &Engines,
    request: TurnRequest,
) -> Result<Turn, ChatError> {
    prepare(memory, engines, request).await?.answer(&[])
}

/// Stores the user's message (or, to answer again, removes the last
/// answer) and reads the conversation back; generates nothing yet.
pub async fn prepare(
    memory: &Memory,
    engines: &Engines,
    request: TurnRequest,
) -> Result<Prepared, ChatError> {
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
    let max_tokens = request
        .max_tokens
        .or(settings.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let user_index = match &request.input {
        TurnInput::Message(content) => {
            let tokens = engine.count_tokens(content).await.ok();
            // A message that cannot fit even alone (with the system prompt
            // and room for the answer) is refused before it is stored:
            // kept, it would fail every later turn of the conversation.
            let system = settings.system_prompt.as_deref().map(|content| Sized {
                role: jarvis_llm::Role::System,
                content,
                tokens: prompt::estimate_tokens(content),
            });
            let alone = Sized {
                role: jarvis_llm::Role::User,
                content,
                tokens: tokens.unwrap_or_else(|| prompt::estimate_tokens(content)),
            };
            prompt::fit(
                system,
                &[alone],
                engine.context_length(),
                max_tokens as usize,
            )
            .map_err(ChatError::ContextLengthExceeded)?;
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
    let history = conversation
        .messages
        .into_iter()
        .map(|m| {
            let tokens = m
                .tokens
                .map_or_else(|| prompt::estimate_tokens(&m.content), |t| t as usize);
            let role = match m.role {
                Role::System => jarvis_llm::Role::System,
                Role::User => jarvis_llm::Role::User,
                Role::Assistant => jarvis_llm::Role::Assistant,
            };
            let message = jarvis_llm::Message {
                role,
                content: m.content,
            };
            (message, tokens)
        })
        .collect();
    Ok(Prepared {
        conversation: request.conversation,
        user_index,
        model,
        max_tokens,
        temperature: request.temperature.or(settings.temperature),
        settings,
        engine,
        history,
    })
}

impl Prepared {
    /// The most tokens the model's context holds.
    pub fn context_length(&self) -> usize {
        self.engine.context_length()
    }

    /// The system prompt (the conversation's, then `extra_system`), the
    /// most recent messages that fit, then `extra`, leaving `answer`
    /// tokens; and how many older messages were left out.
    fn fit(
        &self,
        extra_system: Option<&str>,
        extra: &[jarvis_llm::Message],
        answer: usize,
    ) -> Result<(Vec<jarvis_llm::Message>, usize), ChatError> {
        let system = match (self.settings.system_prompt.as_deref(), extra_system) {
            (Some(own), Some(extra)) => Some(format!("{own}\n\n{extra}")),
            (own, extra) => own.or(extra).map(str::to_owned),
        };
        let history: Vec<Sized<'_>> = self
            .history
            .iter()
            .map(|(m, tokens)| (m, *tokens))
            .chain(
                extra
                    .iter()
                    .map(|m| (m, prompt::estimate_tokens(&m.content))),
            )
            .map(|(m, tokens)| Sized {
                role: m.role,
                content: &m.content,
                tokens,
            })
            .collect();
        let system = system.as_deref().map(|content| Sized {
            role: jarvis_llm::Role::System,
            content,
            tokens: prompt::estimate_tokens(content),
        });
        prompt::fit(system, &history, self.engine.context_length(), answer)
            .map_err(ChatError::ContextLengthExceeded)
    }

    /// How many older messages the answer's prompt leaves out to fit the
    /// context; an error when even the newest message does not fit.
    pub fn left_out(&self) -> Result<usize, ChatError> {
        self.fit(None, &[], self.max_tokens as usize)
            .map(|(_, left_out)| left_out)
    }

    /// Starts the answer, with `extra` messages after the conversation's
    /// (an action's outcome fed back to the model).
    pub fn answer(self, extra: &[jarvis_llm::Message]) -> Result<Turn, ChatError> {
        let (messages, left_out) = self.fit(None, extra, self.max_tokens as usize)?;
        let events = self.engine.generate(Request {
            messages,
            max_tokens: self.max_tokens as usize,
            temperature: self.temperature,
            top_p: None,
            stop: Vec::new(),
            json_schema: None,
        });
        Ok(Turn {
            conversation: self.conversation,
            user_index: self.user_index,
            model: self.model,
            left_out,
            events,
        })
    }

    /// Generates JSON matching `schema` (greedy, at most `max_tokens`),
    /// with `instructions` added to the system prompt; returns the text
    /// whole, or `None` when it was cut off at `max_tokens`. A failure (a
    /// schema the grammar engine refuses) is an error, not a silent plain
    /// answer.
    pub async fn generate_json(
        &self,
        instructions: &str,
        schema: serde_json::Value,
        max_tokens: usize,
    ) -> Result<Option<String>, ChatError> {
        let (messages, _) = self.fit(Some(instructions), &[], max_tokens)?;
        let mut events = self.engine.generate(Request {
            messages,
            max_tokens,
            temperature: None,
            top_p: None,
            stop: Vec::new(),
            json_schema: Some(schema),
        });
        let mut text = String::new();
        while let Some(event) = events.recv().await {
            match event {
                jarvis_llm::Event::Delta(delta) => {
                    text.push_str(&delta);
                    // Done once the JSON is: the grammar then allows only
                    // the end of text, which mistralrs does not always
                    // count as the end (it may be another token than the
                    // model's own end-of-turn), so do not wait for it.
                    // Dropping `events` stops the generation.
                    if text.ends_with('}')
                        && serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok()
                    {
                        return Ok(Some(text));
                    }
                }
                jarvis_llm::Event::Done {
                    finish_reason: jarvis_llm::FinishReason::Stop,
                    ..
                } => return Ok(Some(text)),
                jarvis_llm::Event::Done { .. } => {
                    tracing::warn!(text = %text, "a constrained answer was cut off");
                    return Ok(None);
                }
                jarvis_llm::Event::Failed(message) => return Err(ChatError::Generation(message)),
            }
        }
        Err(ChatError::Generation(
            "the model stopped without a word".into(),
        ))
    }
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
