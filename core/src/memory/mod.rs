//! Memory in Redis: the only module that knows Redis keys.
//!
//! Desktop keys live under `jarvis:v2:`, the namespace of data schema 2 (migration
//! 2 in `jarvis-migrations` moved schema 1's `jarvis:v1:` keys here; a
//! layout change means a new namespace and a migration):
//! - `jarvis:v2:conversations`: sorted set of conversation ids by creation
//!   time (milliseconds).
//! - `jarvis:v2:conversations:by_update`: the same ids by last message time.
//! - `jarvis:v2:conversation:<id>`: hash with `created_at`, `updated_at`,
//!   `message_count` and `title` (the first user message, cut to 80
//!   characters).
//! - `jarvis:v2:conversation:<id>:messages`: list of JSON messages, oldest
//!   first, each with its time and (when a model counted it) its tokens.
//! - `jarvis:v2:conversation:<id>:settings`: hash of per-conversation
//!   settings (`system_prompt`, `temperature`, `max_tokens`).
//! - `jarvis:v2:tool:<tool>`: hash of one tool's state (for the executor).
//! - `jarvis:actions:queue` and `jarvis:action:<id>`: action requests for
//!   the launcher and what it says about them (`jarvis_actions::record`;
//!   outside the schema namespace: they are a channel, not memory).
//! - Pub/sub channel [`EVENTS_CHANNEL`]: model and engine events.
//!
//! In server mode each user's keys are the same names under
//! `jarvis:v2:{u:<user id>}:` ([`KeySpace::user`]): the braces are a Redis
//! Cluster hash tag, so one user's keys share a slot and every multi-key
//! transaction or script stays on one node. Server-wide keys are in
//! [`users`] (accounts, API key hashes) and the turn relay channel
//! [`TURNS_CHANNEL`].
//!
//! History is never deleted here: prompts are fitted to a model's context
//! window when they are built (`crate::prompt`), not by trimming memory.
//!
//! Redis runs with `appendfsync always`, so a command that returned is on
//! disk: the API answers only after the command returned.

use std::collections::HashMap;
use std::time::Duration;

use jarvis_actions::record::{QUEUE_KEY, RECORD_TTL_SECONDS, WITHDRAWN_KEY, record_key};
use jarvis_actions::{ActionRequest, ActionState};
use jarvis_protocol::events::{EVENTS_CHANNEL, Event};
use redis::AsyncCommands;
use redis::aio::ConnectionManagerConfig;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

pub mod connection;
pub mod users;

pub use connection::{Connection, Target, TargetError};

/// The key prefix of this data schema.
pub const KEY_PREFIX: &str = "jarvis:v2:";

/// Server mode: the channel that carries turn events and cancels between
/// replicas (see `crate::relay`).
pub const TURNS_CHANNEL: &str = "jarvis:server:turns";

/// Whose keys a [`Memory`] handle reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    prefix: std::sync::Arc<str>,
}

impl KeySpace {
    /// The one person of a desktop install: `jarvis:v2:`.
    pub fn desktop() -> Self {
        Self {
            prefix: KEY_PREFIX.into(),
        }
    }

    /// One user of a server: `jarvis:v2:{u:<id>}:`, one hash slot.
    pub fn user(id: &UserId) -> Self {
        Self {
            prefix: format!("{KEY_PREFIX}{{u:{}}}:", id.as_str()).into(),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn conversations(&self) -> String {
        self.key("conversations")
    }

    fn by_update(&self) -> String {
        self.key("conversations:by_update")
    }

    fn conversation(&self, id: &ConversationId) -> String {
        self.key(&format!("conversation:{}", id.as_str()))
    }

    fn messages(&self, id: &ConversationId) -> String {
        self.key(&format!("conversation:{}:messages", id.as_str()))
    }

    fn settings(&self, id: &ConversationId) -> String {
        self.key(&format!("conversation:{}:settings", id.as_str()))
    }

    fn tool(&self, tool: &ToolName) -> String {
        self.key(&format!("tool:{}", tool.0))
    }

    fn rate(&self, window: i64) -> String {
        self.key(&format!("rate:{window}"))
    }
}

/// How many characters of the first user message make a title.
pub const TITLE_CHARS: usize = 80;

/// How many of the most recent conversations a search reads.
pub const SEARCH_SCAN_LIMIT: usize = 5_000;

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("Redis is not reachable yet")]
    NotConnected,
    #[error(
        "the write reached the primary but only {got} of {wanted} replicas within the time allowed; it is not acknowledged"
    )]
    NotReplicated { wanted: u32, got: i64 },
    #[error("{0}")]
    Refused(String),
    #[error("Redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored data is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Tokens the content takes for the model that wrote or read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u32>,
}

/// Per-conversation settings; unset fields use the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Whether the model may ask for actions in this conversation (each
    /// still goes through the launcher's gate); off unless set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model_actions: bool,
}

/// A conversation with all its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    #[serde(flatten)]
    pub summary: Summary,
    pub messages: Vec<Message>,
}

/// What a conversation list shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub created_at: String,
    pub updated_at: String,
    pub message_count: u64,
    pub title: String,
}

/// A conversation in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedConversation {
    pub id: ConversationId,
    #[serde(flatten)]
    pub summary: Summary,
}

/// A conversation id: 32 lowercase hex digits. Parsing is the only way to
/// make one from outside, so an id can never smuggle other key text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(String);

impl ConversationId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        // A failing OS random source leaves no safe way to continue.
        #[expect(clippy::expect_used, reason = "OS randomness is a hard requirement")]
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(hex::encode(bytes))
    }

    /// Accepts exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An account's id: 32 lowercase hex digits, never reused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub(crate) fn generate() -> Self {
        Self(ConversationId::generate().as_str().to_owned())
    }

    /// Accepts exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        ConversationId::parse(s).map(|id| Self(id.as_str().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Appends a message only if its conversation exists, and keeps the
/// conversation's summary and recency index in step, atomically.
/// KEYS: meta hash, messages list, by-update index. ARGV: message JSON,
/// its time (RFC 3339), its time (ms), title candidate, conversation id.
const APPEND_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2], 'message_count', n)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
local title = redis.call('HGET', KEYS[1], 'title')
if ARGV[4] ~= '' and (not title or title == '') then
  redis.call('HSET', KEYS[1], 'title', ARGV[4])
end
return n
";

/// Replaces a conversation's settings if the conversation exists.
/// KEYS: meta hash, settings hash. ARGV: field, value, field, value...
const SETTINGS_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('DEL', KEYS[2])
if #ARGV > 0 then redis.call('HSET', KEYS[2], unpack(ARGV)) end
return 1
";

/// Removes the last message if it is the assistant's (a regenerated
/// answer). KEYS: meta hash, messages list. ARGV: none. Returns the new
/// message count, -1 when the conversation does not exist, -2 when the
/// last message is not an answer.
const REMOVE_ANSWER_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local last = redis.call('LINDEX', KEYS[2], -1)
if not last then return -2 end
local ok, message = pcall(cjson.decode, last)
if not ok or message.role ~= 'assistant' then return -2 end
redis.call('RPOP', KEYS[2])
local n = redis.call('LLEN', KEYS[2])
redis.call('HSET', KEYS[1], 'message_count', n)
return n
";

/// Sets a conversation's title if it exists. KEYS: meta hash. ARGV: title.
const RENAME_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'title', ARGV[1])
return 1
";

/// Counts a request in a window's counter, which expires with the window.
/// KEYS: the counter. ARGV: the window's length in milliseconds.
const RATE_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

/// Why the last answer could not be removed for a regeneration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveAnswer {
    /// Removed; the conversation now has this many messages.
    Removed(usize),
    NotFound,
    /// The last message is not an answer (nothing to regenerate).
    NoAnswer,
}

/// Handle to Redis memory. Cheap to clone; connects in the background.
/// Each handle reads and writes one [`KeySpace`]; [`Memory::scoped`] makes
/// a handle for another over the same connections.
#[derive(Debug, Clone)]
pub struct Memory {
    connection: watch::Receiver<Option<Connection>>,
    events: broadcast::Sender<Event>,
    turns: broadcast::Sender<String>,
    publisher: std::sync::Arc<Publisher>,
    keys: KeySpace,
    /// Replicas that must have a write before it is acknowledged.
    replica_acks: u32,
}

/// How long a write waits for its replicas.
const REPLICA_WAIT: Duration = Duration::from_secs(1);

impl Memory {
    /// Starts connecting to a single Redis at `redis_url` in the background
    /// (see [`Memory::connect_target_in_background`]).
    pub fn connect_in_background(redis_url: String) -> Result<Self, MemoryError> {
        let target = Target::parse(&redis_url, false, None)
            .map_err(|e| MemoryError::Refused(e.to_string()))?;
        Ok(Self::connect_target_in_background(target))
    }

    /// Starts connecting to `target` in the background, retrying with
    /// backoff (each attempt logged) until Redis answers. Returns at once.
    pub fn connect_target_in_background(target: Target) -> Self {
        let (sender, receiver) = watch::channel(None);
        let (events, _) = broadcast::channel(256);
        let (turns, _) = broadcast::channel(4096);
        let publisher = std::sync::Arc::new(Publisher::new(target.pubsub_clients().to_vec()));
        tokio::spawn(connect_loop(target.clone(), sender));
        tokio::spawn(subscribe_loop(
            target.pubsub_clients().to_vec(),
            events.downgrade(),
            turns.downgrade(),
        ));
        Self {
            connection: receiver,
            events,
            turns,
            publisher,
            keys: KeySpace::desktop(),
            replica_acks: 0,
        }
    }

    /// Acknowledges a write only once `replicas` replicas of its primary
    /// have it (`WAIT`), so a failover that promotes one cannot lose it;
    /// a write that misses them is an error (the caller may retry).
    pub fn with_replica_acks(mut self, replicas: u32) -> Self {
        self.replica_acks = replicas;
        self
    }

    /// After a write to `key`'s primary: waits for the replicas asked for.
    async fn replicated(&self, conn: &mut Connection, key: &str) -> Result<(), MemoryError> {
        if self.replica_acks == 0 {
            return Ok(());
        }
        let got = conn
            .wait_for_replicas(key, self.replica_acks, REPLICA_WAIT)
            .await?;
        if got < i64::from(self.replica_acks) {
            return Err(MemoryError::NotReplicated {
                wanted: self.replica_acks,
                got,
            });
        }
        Ok(())
    }

    /// Waits until the first connection is made, at most `limit`.
    pub async fn wait_connected(&self, limit: Duration) -> Result<(), MemoryError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(limit, connection.wait_for(Option::is_some))
            .await
            .map_err(|_| MemoryError::NotConnected)?
            .map_err(|_| MemoryError::NotConnected)?;
        Ok(())
    }

    /// A handle on the same connections that reads and writes `keys`.
    pub fn scoped(&self, keys: KeySpace) -> Self {
        Self {
            keys,
            ..self.clone()
        }
    }

    /// The key space this handle reads and writes.
    pub fn key_space(&self) -> &KeySpace {
        &self.keys
    }

    /// Events from the pub/sub channel (ours included), as they arrive. A
    /// receiver that falls behind loses the oldest, never blocks others.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Publishes an event to every subscriber (the launcher, the UI).
    pub async fn publish(&self, event: &Event) -> Result<(), MemoryError> {
        let json = serde_json::to_string(event)?;
        self.publisher.publish(EVENTS_CHANNEL, json).await
    }

    /// Server mode: raw messages of the turn relay channel, ours included.
    pub fn turn_messages(&self) -> broadcast::Receiver<String> {
        self.turns.subscribe()
    }

    /// Server mode: sends `payload` to every replica's relay.
    pub async fn publish_turn_message(&self, payload: String) -> Result<(), MemoryError> {
        self.publisher.publish(TURNS_CHANNEL, payload).await
    }

    /// Counts one request in the current window of `window_ms`, returning
    /// the count so far and the milliseconds left in the window.
    pub async fn count_request(&self, window_ms: i64) -> Result<(i64, i64), MemoryError> {
        let mut conn = self.connection()?;
        let now = jiff::Timestamp::now().as_millisecond();
        let window = now.div_euclid(window_ms);
        let count: i64 = redis::Script::new(RATE_SCRIPT)
            .key(self.keys.rate(window))
            .arg(window_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok((count, (window + 1) * window_ms - now))
    }

    /// A conversation's settings; `Ok(None)` when it does not exist.
    pub async fn settings(&self, id: &ConversationId) -> Result<Option<Settings>, MemoryError> {
        let mut conn = self.connection()?;
        let (exists, fields): (bool, HashMap<String, String>) = redis::pipe()
            .exists(self.keys.conversation(id))
            .hgetall(self.keys.settings(id))
            .query_async(&mut conn)
            .await?;
        if !exists {
            return Ok(None);
        }
        Ok(Some(Settings {
            system_prompt: fields.get("system_prompt").cloned(),
            temperature: fields.get("temperature").and_then(|v| v.parse().ok()),
            max_tokens: fields.get("max_tokens").and_then(|v| v.parse().ok()),
            model_actions: fields.get("model_actions").is_some_and(|v| v == "1"),
        }))
    }

    /// Replaces a conversation's settings; `Ok(false)` when it does not
    /// exist.
    pub async fn set_settings(
        &self,
        id: &ConversationId,
        settings: &Settings,
    ) -> Result<bool, MemoryError> {
        let mut conn = self.connection()?;
        let settings_script = redis::Script::new(SETTINGS_SCRIPT);
        let mut script = settings_script.prepare_invoke();
        script
            .key(self.keys.conversation(id))
            .key(self.keys.settings(id));
        if let Some(prompt) = &settings.system_prompt {
            script.arg("system_prompt").arg(prompt);
        }
        if let Some(t) = settings.temperature {
            script.arg("temperature").arg(t.to_string());
        }
        if let Some(n) = settings.max_tokens {
            script.arg("max_tokens").arg(n);
        }
        if settings.model_actions {
            script.arg("model_actions").arg("1");
        }
        let done: i64 = script.invoke_async(&mut conn).await?;
        self.replicated(&mut conn, &self.keys.conversation(id))
            .await?;
        Ok(done == 1)
    }

    /// One tool's stored state (field → value); empty when it has none.
    pub async fn tool_state(
        &self,
        tool: &ToolName,
    ) -> Result<HashMap<String, String>, MemoryError> {
        let mut conn = self.connection()?;
        Ok(conn.hgetall(self.keys.tool(tool)).await?)
    }

    /// Sets one field of a tool's state.
    pub async fn set_tool_state(
        &self,
        tool: &ToolName,
        field: &str,
        value: &str,
    ) -> Result<(), MemoryError> {
        let mut conn = self.connection()?;
        conn.hset::<_, _, _, ()>(self.keys.tool(tool), field, value)
            .await?;
        self.replicated(&mut conn, &self.keys.tool(tool)).await?;
        Ok(())
    }

    /// Hands an action request to the launcher: its record, then its id on
    /// the queue, in one transaction.
    pub async fn submit_action(&self, request: &ActionRequest) -> Result<(), MemoryError> {
        let mut conn = self.connection()?;
        let key = record_key(&request.id);
        redis::pipe()
            .atomic()
            .hset(&key, "request", serde_json::to_string(request)?)
            .ignore()
            .expire(&key, RECORD_TTL_SECONDS as i64)
            .ignore()
            .rpush(QUEUE_KEY, &request.id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Takes back a request that may still wait (the launcher only ever
    /// denies because of this).
    pub async fn withdraw_action(&self, id: &str) -> Result<(), MemoryError> {
        let mut conn = self.connection()?;
        conn.rpush::<_, _, ()>(WITHDRAWN_KEY, id).await?;
        Ok(())
    }

    /// An action request and what the launcher last said about it; `None`
    /// when there is no such request.
    pub async fn action(
        &self,
        id: &str,
    ) -> Result<Option<(ActionRequest, Option<ActionState>)>, MemoryError> {
        let mut conn = self.connection()?;
        let fields: HashMap<String, String> = conn.hgetall(record_key(id)).await?;
        let Some(request) = fields.get("request") else {
            return Ok(None);
        };
        let request: ActionRequest = serde_json::from_str(request)?;
        let state = match fields.get("state") {
            Some(state) => Some(serde_json::from_str(state)?),
            None => None,
        };
        Ok(Some((request, state)))
    }

    /// True once a connection was made and Redis answers `PING` now.
    pub async fn ping(&self) -> Result<(), MemoryError> {
        let mut conn = self.connection()?;
        let reply = tokio::time::timeout(
            Duration::from_millis(800),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| MemoryError::NotConnected)?;
        reply?;
        Ok(())
    }

    pub async fn create_conversation(&self) -> Result<Conversation, MemoryError> {
        let mut conn = self.connection()?;
        let id = ConversationId::generate();
        let now = jiff::Timestamp::now();
        let created_at = now.to_string();
        redis::pipe()
            .atomic()
            .hset_multiple(
                self.keys.conversation(&id),
                &[
                    ("created_at", created_at.as_str()),
                    ("updated_at", created_at.as_str()),
                    ("message_count", "0"),
                    ("title", ""),
                ],
            )
            .ignore()
            .zadd(self.keys.conversations(), id.as_str(), now.as_millisecond())
            .ignore()
            .zadd(self.keys.by_update(), id.as_str(), now.as_millisecond())
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        self.replicated(&mut conn, &self.keys.conversation(&id))
            .await?;
        Ok(Conversation {
            id,
            summary: Summary {
                updated_at: created_at.clone(),
                created_at,
                message_count: 0,
                title: String::new(),
            },
            messages: Vec::new(),
        })
    }

    /// Appends a message; `Ok(None)` when the conversation does not exist.
    pub async fn append_message(
        &self,
        id: &ConversationId,
        role: Role,
        content: String,
        tokens: Option<u32>,
    ) -> Result<Option<(usize, Message)>, MemoryError> {
        let mut conn = self.connection()?;
        let now = jiff::Timestamp::now();
        let message = Message {
            role,
            created_at: now.to_string(),
            content,
            tokens,
        };
        let json = serde_json::to_string(&message)?;
        let title = if role == Role::User {
            message.content.chars().take(TITLE_CHARS).collect()
        } else {
            String::new()
        };
        let length: i64 = redis::Script::new(APPEND_SCRIPT)
            .key(self.keys.conversation(id))
            .key(self.keys.messages(id))
            .key(self.keys.by_update())
            .arg(json)
            .arg(&message.created_at)
            .arg(now.as_millisecond())
            .arg(title)
            .arg(id.as_str())
            .invoke_async(&mut conn)
            .await?;
        self.replicated(&mut conn, &self.keys.conversation(id))
            .await?;
        Ok(usize::try_from(length)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .map(|index| (index, message)))
    }

    /// The conversation and its messages; `Ok(None)` when it does not exist.
    pub async fn conversation(
        &self,
        id: &ConversationId,
    ) -> Result<Option<Conversation>, MemoryError> {
        let mut conn = self.connection()?;
        let (meta, raw): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .hgetall(self.keys.conversation(id))
            .lrange(self.keys.messages(id), 0, -1)
            .query_async(&mut conn)
            .await?;
        let Some(summary) = summary(meta) else {
            return Ok(None);
        };
        let messages = raw
            .iter()
            .map(|m| serde_json::from_str(m))
            .collect::<Result<_, _>>()?;
        Ok(Some(Conversation {
            id: id.clone(),
            summary,
            messages,
        }))
    }

    /// The most recently updated conversations, newest first.
    pub async fn recent_conversations(
        &self,
        limit: usize,
    ) -> Result<Vec<ListedConversation>, MemoryError> {
        let mut conn = self.connection()?;
        let stop = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let ids: Vec<String> = conn.zrevrange(self.keys.by_update(), 0, stop).await?;
        let ids: Vec<ConversationId> = ids
            .iter()
            .filter_map(|id| ConversationId::parse(id))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new()); // an empty pipeline is an error in Redis
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.conversation(id));
        }
        let metas: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        Ok(ids
            .into_iter()
            .zip(metas)
            .filter_map(|(id, meta)| {
                Some(ListedConversation {
                    id,
                    summary: summary(meta)?,
                })
            })
            .collect())
    }

    /// Renames a conversation; `false` when it does not exist.
    pub async fn rename(&self, id: &ConversationId, title: &str) -> Result<bool, MemoryError> {
        let mut conn = self.connection()?;
        let done: i64 = redis::Script::new(RENAME_SCRIPT)
            .key(self.keys.conversation(id))
            .arg(title)
            .invoke_async(&mut conn)
            .await?;
        self.replicated(&mut conn, &self.keys.conversation(id))
            .await?;
        Ok(done == 1)
    }

    /// Deletes a conversation, its messages and its settings, at once;
    /// `false` when it did not exist. Only a person's explicit request
    /// deletes (the UI offers an undo before it sends this).
    pub async fn delete_conversation(&self, id: &ConversationId) -> Result<bool, MemoryError> {
        let mut conn = self.connection()?;
        let (removed,): (i64,) = redis::pipe()
            .atomic()
            .del(&[
                self.keys.conversation(id),
                self.keys.messages(id),
                self.keys.settings(id),
            ])
            .zrem(self.keys.conversations(), id.as_str())
            .ignore()
            .zrem(self.keys.by_update(), id.as_str())
            .ignore()
            .query_async(&mut conn)
            .await?;
        self.replicated(&mut conn, &self.keys.conversation(id))
            .await?;
        Ok(removed > 0)
    }

    /// Removes the last message when it is an answer, so it can be
    /// generated again.
    pub async fn remove_last_answer(
        &self,
        id: &ConversationId,
    ) -> Result<RemoveAnswer, MemoryError> {
        let mut conn = self.connection()?;
        let n: i64 = redis::Script::new(REMOVE_ANSWER_SCRIPT)
            .key(self.keys.conversation(id))
            .key(self.keys.messages(id))
            .invoke_async(&mut conn)
            .await?;
        self.replicated(&mut conn, &self.keys.conversation(id))
            .await?;
        Ok(match n {
            -1 => RemoveAnswer::NotFound,
            n if n < 0 => RemoveAnswer::NoAnswer,
            n => RemoveAnswer::Removed(usize::try_from(n).unwrap_or(0)),
        })
    }

    /// Conversations whose title or messages contain `query` (ignoring
    /// case), newest first, at most `limit`. Scans at most
    /// [`SEARCH_SCAN_LIMIT`] of the most recent conversations.
    pub async fn search(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ListedConversation>, MemoryError> {
        let needle = query.to_lowercase();
        let recent = self.recent_conversations(SEARCH_SCAN_LIMIT).await?;
        let mut conn = self.connection()?;
        let mut found = Vec::new();
        for batch in recent.chunks(64) {
            let mut pipe = redis::pipe();
            for listed in batch {
                pipe.lrange(self.keys.messages(&listed.id), 0, -1);
            }
            let messages: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
            for (listed, raw) in batch.iter().zip(messages) {
                let hit = listed.summary.title.to_lowercase().contains(&needle)
                    || raw.iter().any(|m| {
                        serde_json::from_str::<Message>(m)
                            .is_ok_and(|m| m.content.to_lowercase().contains(&needle))
                    });
                if hit {
                    found.push(listed.clone());
                    if found.len() >= limit {
                        return Ok(found);
                    }
                }
            }
        }
        Ok(found)
    }

    /// How many conversations exist.
    pub async fn conversation_count(&self) -> Result<u64, MemoryError> {
        let mut conn = self.connection()?;
        Ok(conn.zcard(self.keys.conversations()).await?)
    }

    fn connection(&self) -> Result<Connection, MemoryError> {
        self.connection
            .borrow()
            .clone()
            .ok_or(MemoryError::NotConnected)
    }
}

fn summary(mut meta: HashMap<String, String>) -> Option<Summary> {
    let created_at = meta.remove("created_at")?;
    Some(Summary {
        updated_at: meta
            .remove("updated_at")
            .unwrap_or_else(|| created_at.clone()),
        created_at,
        message_count: meta
            .remove("message_count")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        title: meta.remove("title").unwrap_or_default(),
    })
}

/// A tool's name: 1 to 64 of `a-z`, `0-9`, `_` and `-`, so it can never
/// reach outside its own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolName(String);

impl ToolName {
    pub fn parse(s: &str) -> Option<Self> {
        (!s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')))
        .then(|| Self(s.to_owned()))
    }
}

/// Publishes through one node at a time (the first that answers, in the
/// target's order), so that one replica's messages stay in order.
struct Publisher {
    clients: Vec<redis::Client>,
    current: tokio::sync::Mutex<Option<(usize, redis::aio::MultiplexedConnection)>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("nodes", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    fn new(clients: Vec<redis::Client>) -> Self {
        Self {
            clients,
            current: tokio::sync::Mutex::new(None),
        }
    }

    async fn publish(&self, channel: &str, payload: String) -> Result<(), MemoryError> {
        let mut current = self.current.lock().await;
        let start = current
            .as_ref()
            .map_or_else(|| random_index(self.clients.len()), |(i, _)| *i);
        let mut last_error = None;
        // The node in use first, then each other node once.
        for step in 0..self.clients.len() {
            let index = (start + step) % self.clients.len();
            if current.as_ref().is_none_or(|(i, _)| *i != index) {
                let connect = self.clients[index].get_multiplexed_async_connection();
                match tokio::time::timeout(Duration::from_secs(1), connect).await {
                    Ok(Ok(connection)) => *current = Some((index, connection)),
                    Ok(Err(e)) => {
                        last_error = Some(MemoryError::Redis(e));
                        continue;
                    }
                    Err(_) => {
                        last_error = Some(MemoryError::NotConnected);
                        continue;
                    }
                }
            }
            let Some((_, connection)) = current.as_mut() else {
                continue;
            };
            match connection.publish::<_, _, ()>(channel, &payload).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::debug!(node = index, %e, "publishing failed; trying the next node");
                    *current = None;
                    last_error = Some(MemoryError::Redis(e));
                }
            }
        }
        Err(last_error.unwrap_or(MemoryError::NotConnected))
    }
}

/// A random index below `len` (at least 1).
fn random_index(len: usize) -> usize {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0;
    }
    usize::try_from(u64::from_le_bytes(bytes) % len.max(1) as u64).unwrap_or(0)
}

/// Listens to the events and turn channels for as long as anyone may
/// subscribe, through one node at a time, moving to the next node (with
/// backoff) whenever the connection drops.
async fn subscribe_loop(
    clients: Vec<redis::Client>,
    events: broadcast::WeakSender<Event>,
    turns: broadcast::WeakSender<String>,
) {
    use futures_util::StreamExt as _;
    let mut delay = Duration::from_millis(50);
    // Replicas spread over the nodes (and, in a cluster, their messages
    // cross between nodes, which classic pub/sub does).
    let mut node = random_index(clients.len());
    // Ends once every `Memory` handle is gone.
    while events.strong_count() > 0 {
        let client = &clients[node % clients.len()];
        node += 1;
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&[EVENTS_CHANNEL, TURNS_CHANNEL]).await {
                Ok(()) => {
                    tracing::debug!("subscribed to events");
                    delay = Duration::from_millis(50);
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<String>() else {
                            continue;
                        };
                        if message.get_channel_name() == TURNS_CHANNEL {
                            if let Some(turns) = turns.upgrade() {
                                let _ = turns.send(payload);
                            }
                            continue;
                        }
                        let Some(events) = events.upgrade() else {
                            return;
                        };
                        match serde_json::from_str::<Event>(&payload) {
                            Ok(event) => {
                                let _ = events.send(event);
                            }
                            Err(error) => tracing::debug!(%error, "ignored an unknown event"),
                        }
                    }
                    tracing::debug!("event subscription ended; resubscribing");
                }
                Err(error) => tracing::debug!(%error, "could not subscribe to events"),
            },
            Err(error) => tracing::debug!(%error, "events connection failed"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

async fn connect_loop(target: Target, sender: watch::Sender<Option<Connection>>) {
    // Once connected, the connection reconnects by itself when Redis
    // restarts (a cluster's also follows redirections and failovers).
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(6)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_secs(1));
    let mut delay = Duration::from_millis(5);
    let mut attempt = 1u32;
    loop {
        match target.connect(&config).await {
            Ok(connection) => {
                tracing::info!(attempt, cluster = target.is_cluster(), "connected to Redis");
                let _ = sender.send(Some(connection.clone()));
                keepalive(connection, &sender).await;
                return;
            }
            Err(error) => {
                tracing::warn!(attempt, %error, retry_in = ?delay, "Redis not reachable; retrying");
            }
        }
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
        attempt += 1;
    }
}

/// Pings Redis a few times a second so that a restarted Redis is
/// reconnected to before a user request needs it (the connection
/// reconnects on the first failed command, which would otherwise be the
/// user's).
async fn keepalive(mut connection: Connection, sender: &watch::Sender<Option<Connection>>) {
    let mut healthy = true;
    while !sender.is_closed() {
        tokio::time::sleep(KEEPALIVE_INTERVAL).await;
        let ok = redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .is_ok();
        if ok != healthy {
            if ok {
                tracing::info!("Redis reachable again");
            } else {
                tracing::warn!("lost the connection to Redis; reconnecting");
            }
            healthy = ok;
        }
    }
}

const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn conversation_ids_are_32_hex_and_parse_back() {
        let id = ConversationId::generate();
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(ConversationId::parse(id.as_str()).unwrap(), id);
        assert_ne!(ConversationId::generate(), id);
    }

    #[test]
    fn hostile_ids_are_refused() {
        for bad in [
            "",
            "abc",
            "../../etc/passwd",
            "jarvis:v1:conversations",
            "ABCDEF0123456789ABCDEF0123456789",
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert!(ConversationId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn roles_serialise_lowercase() {
        assert_eq!(
            serde_json::to_string(&Role::Assistant).unwrap(),
            "\"assistant\""
        );
        assert!(serde_json::from_str::<Role>("\"root\"").is_err());
    }
}
