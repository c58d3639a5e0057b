//! Migration 2: memory moves from `jarvis:v1:` to `jarvis:v2:`, and each
//! conversation gains `updated_at`, `message_count` and `title` plus an
//! index by last update (`jarvis:v2:conversations:by_update`), so the app
//! can list conversations by recency.
//!
//! Copy (`COPY` keeps every type), derive the new fields, verify every old
//! key against its copy, then delete the old keys. On data that has no
//! `jarvis:v1:` keys it only re-derives the fields, so it is safe to run
//! again.

use std::collections::HashMap;

use jarvis_durable::checkpoint;
use redis::aio::MultiplexedConnection;

use crate::MigrationError;
use crate::step::{MigrationContext, StepFuture};

const OLD: &str = "jarvis:v1:";
const NEW: &str = "jarvis:v2:";
const TITLE_CHARS: usize = 80;

pub fn run<'a>(ctx: &'a mut MigrationContext<'_>) -> StepFuture<'a> {
    Box::pin(migrate(ctx))
}

async fn migrate(ctx: &mut MigrationContext<'_>) -> Result<(), MigrationError> {
    let step = ctx.step;
    let conn = &mut *ctx.redis;
    let redis_err = |source| MigrationError::Redis { step, source };
    let old_keys = scan(conn, &format!("{OLD}*")).await.map_err(redis_err)?;
    for key in &old_keys {
        let copied: i64 = redis::cmd("COPY")
            .arg(key)
            .arg(renamed(key))
            .arg("REPLACE")
            .query_async(conn)
            .await
            .map_err(redis_err)?;
        if copied != 1 {
            return Err(MigrationError::Verification {
                step,
                detail: format!("COPY of {key} did nothing"),
            });
        }
    }
    derive_index(conn).await.map_err(redis_err)?;
    checkpoint(&format!("migrate:step-{step}:copied"));

    for key in &old_keys {
        verify_copy(conn, key, &renamed(key))
            .await
            .map_err(redis_err)?
            .map_or(Ok(()), |detail| {
                Err(MigrationError::Verification { step, detail })
            })?;
    }
    checkpoint(&format!("migrate:step-{step}:verified"));

    for batch in old_keys.chunks(500) {
        redis::cmd("UNLINK")
            .arg(batch)
            .query_async::<i64>(conn)
            .await
            .map_err(redis_err)?;
    }
    tracing::info!(keys = old_keys.len(), "moved memory to jarvis:v2:");
    checkpoint(&format!("migrate:step-{step}:old-deleted"));
    Ok(())
}

/// Adds `updated_at`, `message_count`, `title` and the by-update index to
/// every `jarvis:v2:` conversation, from its messages.
async fn derive_index(conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{NEW}conversations"))
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    for id in ids {
        let meta_key = format!("{NEW}conversation:{id}");
        let messages: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{meta_key}:messages"))
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await?;
        let meta: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&meta_key)
            .query_async(conn)
            .await?;
        let Some(created_at) = meta.get("created_at") else {
            continue;
        };
        let parsed: Vec<serde_json::Value> = messages
            .iter()
            .filter_map(|m| serde_json::from_str(m).ok())
            .collect();
        let updated_at = parsed
            .last()
            .and_then(|m| m["created_at"].as_str())
            .unwrap_or(created_at)
            .to_owned();
        let title: String = parsed
            .iter()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .map(|c| c.chars().take(TITLE_CHARS).collect())
            .unwrap_or_default();
        let score = updated_at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .unwrap_or(0);
        redis::pipe()
            .atomic()
            .hset(&meta_key, "updated_at", &updated_at)
            .ignore()
            .hset(&meta_key, "message_count", messages.len())
            .ignore()
            .hset(&meta_key, "title", &title)
            .ignore()
            .zadd(format!("{NEW}conversations:by_update"), &id, score)
            .ignore()
            .query_async::<()>(conn)
            .await?;
    }
    Ok(())
}

/// `None` when `new` holds everything `old` held; otherwise what differs.
async fn verify_copy(
    conn: &mut MultiplexedConnection,
    old: &str,
    new: &str,
) -> redis::RedisResult<Option<String>> {
    let kind: String = redis::cmd("TYPE").arg(old).query_async(conn).await?;
    let new_kind: String = redis::cmd("TYPE").arg(new).query_async(conn).await?;
    if kind != new_kind {
        return Ok(Some(format!("{new} is a {new_kind}, {old} a {kind}")));
    }
    let same = match kind.as_str() {
        "string" => {
            let a: Option<Vec<u8>> = redis::cmd("GET").arg(old).query_async(conn).await?;
            let b: Option<Vec<u8>> = redis::cmd("GET").arg(new).query_async(conn).await?;
            a == b
        }
        "list" => {
            let a: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(old)
                .arg(0)
                .arg(-1)
                .query_async(conn)
                .await?;
            let b: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(new)
                .arg(0)
                .arg(-1)
                .query_async(conn)
                .await?;
            a == b
        }
        "hash" => {
            // The new hash may have more fields; every old one must match.
            let a: HashMap<String, Vec<u8>> =
                redis::cmd("HGETALL").arg(old).query_async(conn).await?;
            let b: HashMap<String, Vec<u8>> =
                redis::cmd("HGETALL").arg(new).query_async(conn).await?;
            a.iter().all(|(k, v)| b.get(k) == Some(v))
        }
        "zset" => {
            let a: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(old)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(conn)
                .await?;
            let b: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(new)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(conn)
                .await?;
            a == b
        }
        "set" => {
            let mut a: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(old).query_async(conn).await?;
            let mut b: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(new).query_async(conn).await?;
            a.sort();
            b.sort();
            a == b
        }
        // Other types (streams, ...) are not used by Jarvis; COPY copied
        // them and their existence with the right type is what we check.
        _ => true,
    };
    Ok((!same).then(|| format!("{new} does not hold what {old} holds")))
}

async fn scan(conn: &mut MultiplexedConnection, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

fn renamed(key: &str) -> String {
    format!("{NEW}{}", key.strip_prefix(OLD).unwrap_or(key))
}
