//! Server mode's accounts: who may call the API, each with one API key.
//!
//! Keys (all under the hash tag `{users}`, so one slot of a cluster):
//! - `jarvis:server:{users}:by_name`: hash of name → the account as JSON
//!   (id, name, created_at, the key's SHA-256, revoked_at).
//! - `jarvis:server:{users}:by_key`: hash of the SHA-256 of an active key →
//!   `{"id", "name"}`; a request's key is looked up here, so a revoked key
//!   stops working on every replica at the next request.
//!
//! Only a key's SHA-256 is stored. A key is 256 random bits, so a fast
//! hash is as strong as a slow one and costs nothing per request.

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::{Memory, MemoryError, UserId};

const BY_NAME: &str = "jarvis:server:{users}:by_name";
const BY_KEY: &str = "jarvis:server:{users}:by_key";

/// What every API key starts with (easy to spot in a leaked file).
pub const KEY_PREFIX: &str = "jk_";

/// Adds an account or gives a revoked one a new key (keeping its id, so
/// its memory is its own again). KEYS: by_name, by_key. ARGV: name, a
/// fresh id, now, the new key's SHA-256. Returns the id, or '' when the
/// name is taken by an active account.
const ADD_SCRIPT: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
local id, created = ARGV[2], ARGV[3]
if old then
  local r = cjson.decode(old)
  if not r.revoked_at or r.revoked_at == cjson.null then return '' end
  id, created = r.id, r.created_at
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({id = id, name = ARGV[1], created_at = created, key_sha256 = ARGV[4]}))
redis.call('HSET', KEYS[2], ARGV[4], cjson.encode({id = id, name = ARGV[1]}))
return id
";

/// Revokes an account's key. KEYS: by_name, by_key. ARGV: name, now.
/// Returns 0 when there is no such account, 2 when it was revoked
/// already, 1 when it is revoked now.
const REVOKE_SCRIPT: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local r = cjson.decode(old)
if r.revoked_at and r.revoked_at ~= cjson.null then return 2 end
if r.key_sha256 then redis.call('HDEL', KEYS[2], r.key_sha256) end
r.key_sha256 = nil
r.revoked_at = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(r))
return 1
";

/// The account a request was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
}

/// An account as `users list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: UserId,
    pub name: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// Why an account change was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "'{0}' is not a usable name: use 1 to 64 of a-z, 0-9, '.', '_', '-' and '@', starting with a letter or digit"
    )]
    BadName(String),
    #[error("there is already an active user named '{0}'; revoke it first to issue a new key")]
    Exists(String),
    #[error("there is no user named '{0}'")]
    NoSuchUser(String),
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

impl From<redis::RedisError> for UserError {
    fn from(e: redis::RedisError) -> Self {
        Self::Memory(e.into())
    }
}

/// What `users revoke` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Now,
    Already,
}

fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadName(name.to_owned()))
    }
}

/// The SHA-256 of a key, in hex: what is stored and looked up.
fn key_hash(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

impl Memory {
    /// Adds a user (or gives a revoked one a new key) and returns the new
    /// API key, which is shown once and never stored.
    pub async fn add_user(&self, name: &str) -> Result<(User, String), UserError> {
        check_name(name)?;
        let mut secret = [0u8; 32];
        #[expect(clippy::expect_used, reason = "OS randomness is a hard requirement")]
        getrandom::fill(&mut secret).expect("the OS random number generator failed");
        let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
        let mut conn = self.connection()?;
        let id: String = redis::Script::new(ADD_SCRIPT)
            .key(BY_NAME)
            .key(BY_KEY)
            .arg(name)
            .arg(UserId::generate().as_str())
            .arg(jiff::Timestamp::now().to_string())
            .arg(key_hash(&key))
            .invoke_async(&mut conn)
            .await?;
        self.replicated(&mut conn, BY_NAME).await?;
        let id = UserId::parse(&id).ok_or_else(|| UserError::Exists(name.to_owned()))?;
        Ok((
            User {
                id,
                name: name.to_owned(),
            },
            key,
        ))
    }

    /// Every account, active or revoked, by name.
    pub async fn users(&self) -> Result<Vec<Account>, UserError> {
        let mut conn = self.connection()?;
        let all: std::collections::HashMap<String, String> =
            redis::AsyncCommands::hgetall(&mut conn, BY_NAME).await?;
        let mut accounts = all
            .values()
            .map(|json| serde_json::from_str::<Account>(json))
            .collect::<Result<Vec<_>, _>>()
            .map_err(MemoryError::from)?;
        accounts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(accounts)
    }

    /// Revokes a user's key at once; their memory stays.
    pub async fn revoke_user(&self, name: &str) -> Result<Revoked, UserError> {
        let mut conn = self.connection()?;
        let done: i64 = redis::Script::new(REVOKE_SCRIPT)
            .key(BY_NAME)
            .key(BY_KEY)
            .arg(name)
            .arg(jiff::Timestamp::now().to_string())
            .invoke_async(&mut conn)
            .await?;
        self.replicated(&mut conn, BY_NAME).await?;
        match done {
            0 => Err(UserError::NoSuchUser(name.to_owned())),
            2 => Ok(Revoked::Already),
            _ => Ok(Revoked::Now),
        }
    }

    /// The active user whose key this is, if any.
    pub async fn user_by_key(&self, key: &str) -> Result<Option<User>, MemoryError> {
        if !key.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let mut conn = self.connection()?;
        let found: Option<String> =
            redis::AsyncCommands::hget(&mut conn, BY_KEY, key_hash(key)).await?;
        Ok(match found {
            Some(json) => Some(serde_json::from_str(&json)?),
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_plain_text() {
        for good in ["alice", "bob.smith", "a@example.org", "x1", "0"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Alice", "-x", "a b", "a:b", "a{b}", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_hash_of_a_key_is_kept_and_it_is_stable() {
        let hash = key_hash("jk_abc");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, key_hash("jk_abc"));
        assert_ne!(hash, key_hash("jk_abd"));
        assert!(!hash.contains("abc"));
    }
}
