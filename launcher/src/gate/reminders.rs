//! Reminders: kept in Redis (so they survive restarts and updates with the
//! rest of memory) under `launcher:` keys, which the core's Redis user
//! cannot reach: only the launcher's executor adds them.
//! - `launcher:reminders`: sorted set of JSON reminders by due time (ms).
//! - `launcher:reminders:fired`: the latest fired ones, newest first, for
//!   the UI (at most [`FIRED_KEPT`]).

use jiff::Timestamp;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

const DUE_KEY: &str = "launcher:reminders";
const FIRED_KEY: &str = "launcher:reminders:fired";
/// How many fired reminders are kept for the UI.
pub const FIRED_KEPT: isize = 50;

/// One reminder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    /// The id of the request that set it.
    pub id: String,
    pub text: String,
    /// RFC 3339.
    pub due_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

/// A reminder that fired.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fired {
    #[serde(flatten)]
    pub reminder: Reminder,
    pub fired_at: String,
}

/// The reminders of one Redis.
#[derive(Clone)]
pub struct Reminders {
    redis: ConnectionManager,
}

impl std::fmt::Debug for Reminders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reminders").finish_non_exhaustive()
    }
}

impl Reminders {
    pub fn new(redis: ConnectionManager) -> Self {
        Self { redis }
    }

    pub async fn add(&self, reminder: &Reminder, due: Timestamp) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        let json = serde_json::to_string(reminder).unwrap_or_default();
        conn.zadd::<_, _, _, ()>(DUE_KEY, json, due.as_millisecond())
            .await
    }

    /// Takes the reminders that are due (each exactly once, even with two
    /// launchers racing: only the one whose `ZREM` removed it fires it).
    pub async fn take_due(&self, now: Timestamp) -> redis::RedisResult<Vec<Fired>> {
        let mut conn = self.redis.clone();
        let due: Vec<String> = conn
            .zrangebyscore(DUE_KEY, "-inf", now.as_millisecond())
            .await?;
        let mut fired = Vec::new();
        for json in due {
            let removed: i64 = conn.zrem(DUE_KEY, &json).await?;
            if removed == 0 {
                continue;
            }
            let Ok(reminder) = serde_json::from_str::<Reminder>(&json) else {
                tracing::warn!("dropping an unreadable reminder: {json}");
                continue;
            };
            let record = Fired {
                reminder,
                fired_at: now.to_string(),
            };
            redis::pipe()
                .lpush(
                    FIRED_KEY,
                    serde_json::to_string(&record).unwrap_or_default(),
                )
                .ignore()
                .ltrim(FIRED_KEY, 0, FIRED_KEPT - 1)
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
            fired.push(record);
        }
        Ok(fired)
    }

    /// Reminders still to come, soonest first.
    pub async fn upcoming(&self) -> redis::RedisResult<Vec<Reminder>> {
        let mut conn = self.redis.clone();
        let all: Vec<String> = conn.zrange(DUE_KEY, 0, -1).await?;
        Ok(all
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect())
    }

    /// The latest fired reminders, newest first.
    pub async fn fired(&self) -> redis::RedisResult<Vec<Fired>> {
        let mut conn = self.redis.clone();
        let all: Vec<String> = conn.lrange(FIRED_KEY, 0, FIRED_KEPT - 1).await?;
        Ok(all
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect())
    }
}
