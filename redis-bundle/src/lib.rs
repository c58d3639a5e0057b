//! The `redis-server` process that the Jarvis launcher owns.
//!
//! The launcher starts Redis first and stops it last; the core only ever
//! connects to it. This crate owns:
//! - [`locate`]: finding a `redis-server` (app bundle, then
//!   `JARVIS_REDIS_SERVER`, then `PATH`).
//! - [`RedisConfig`]: the generated `redis.conf`: loopback only, protected
//!   mode, the launcher as Redis' `default` user with a password (Redis 7.0
//!   replays the append-only file as `default`, so it must exist), and a
//!   core user that reaches only `jarvis:*` keys and channels and cannot
//!   run admin or dangerous commands; data in
//!   `<data>/redis/` with an fsync-on-every-write append-only file.
//! - [`RedisServer`]: a guard over the running child. It waits for `PING`,
//!   stops gracefully (`SAVE`, then `SHUTDOWN`) and forcefully after a
//!   deadline, and is killed when dropped.
//! - [`process`]: how children are tied to the launcher's life, shared with
//!   the launcher for the core.
//!
//! Invariant: every write Redis acknowledged is in the append-only file on
//! disk (`appendfsync always`), so a `kill -9` of Redis, of the launcher or
//! of both loses nothing that a client was told was saved.

mod config;
mod locate;
pub mod process;
mod server;

pub use config::{CORE_USER, LAUNCHER_USER, RedisConfig};
pub use locate::{BINARY_NAME, locate};
pub use server::{RedisServer, log_since, tail};

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong with the bundled Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error(
        "no redis-server found; looked in the app bundle ({bundle}), in ${env_var} (unset) and on PATH"
    )]
    NotFound {
        bundle: String,
        env_var: &'static str,
    },

    #[error("{env_var} names '{path}', which is not an executable file")]
    OverrideNotExecutable {
        env_var: &'static str,
        path: PathBuf,
    },

    #[error(transparent)]
    File(#[from] jarvis_durable::FileError),

    #[error("could not start redis-server '{binary}'")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("redis-server exited during start-up ({status}); its log ends with:\n{log_tail}")]
    ExitedEarly {
        status: ExitStatus,
        log_tail: String,
    },

    #[error("redis-server could not listen on 127.0.0.1:{port}: another process uses that port")]
    PortInUse { port: u16 },

    #[error("could not find a free port on 127.0.0.1")]
    NoFreePort(#[source] std::io::Error),

    #[error("redis-server did not answer PING within {0:?}")]
    NotReady(Duration),

    #[error("could not talk to redis-server")]
    Command(#[from] redis::RedisError),

    #[error("could not wait for redis-server")]
    Wait(#[source] std::io::Error),
}
