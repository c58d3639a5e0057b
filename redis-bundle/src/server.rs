use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::{RedisConfig, RedisError, process};

/// How often start-up polls for `PING`.
const READY_POLL: Duration = Duration::from_millis(2);

/// How many free ports start-up tries when another process takes the one
/// it picked before `redis-server` binds it.
const PORT_ATTEMPTS: usize = 5;

/// A running `redis-server` child. Dropping it kills the process (the
/// append-only file keeps every acknowledged write); call
/// [`RedisServer::stop`] for a graceful stop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    config: RedisConfig,
    binary: PathBuf,
    log_file: PathBuf,
}

impl RedisServer {
    /// Writes `redis.conf`, starts `binary` with it, its output appended to
    /// `log_file`, and waits until it answers `PING` (at most `timeout`).
    ///
    /// With `config.port == 0` it picks a free loopback port, and another
    /// one if a different process took it before `redis-server` could
    /// bind it; [`Self::config`] then holds the port in use.
    pub async fn start(
        binary: &Path,
        mut config: RedisConfig,
        log_file: &Path,
        timeout: Duration,
    ) -> Result<Self, RedisError> {
        if config.port != 0 {
            return Self::start_on_port(binary, config, log_file, timeout).await;
        }
        let mut attempt = 1;
        loop {
            config.port = free_port()?;
            match Self::start_on_port(binary, config.clone(), log_file, timeout).await {
                Err(RedisError::PortInUse { port }) if attempt < PORT_ATTEMPTS => {
                    tracing::info!(
                        port,
                        attempt,
                        "port taken before redis-server bound it; picking another"
                    );
                    attempt += 1;
                }
                started => return started,
            }
        }
    }

    async fn start_on_port(
        binary: &Path,
        config: RedisConfig,
        log_file: &Path,
        timeout: Duration,
    ) -> Result<Self, RedisError> {
        let conf_path = config.write()?;
        let log = open_log(log_file)?;
        // Where this start's output begins, to tell why it failed.
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .map_err(|source| file_error("open", log_file, source))?;
        let mut cmd = Command::new(binary);
        cmd.arg(&conf_path)
            .current_dir(&config.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        process::tie_to_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| RedisError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
        if let Err(e) = process::adopt_into_job(&child) {
            tracing::warn!("could not tie redis-server to the launcher's lifetime: {e}");
        }
        tracing::info!(pid = child.id(), port = config.port, binary = %binary.display(), "started redis-server");
        let mut server = Self {
            child,
            config,
            binary: binary.to_owned(),
            log_file: log_file.to_owned(),
        };
        server.wait_ready(timeout, log_start).await?;
        Ok(server)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.config.port
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The server's version from `INFO server`.
    pub async fn version(&self) -> Result<String, RedisError> {
        let mut conn = self.connect().await?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned())
    }

    /// Waits for the process to exit on its own (for supervision).
    pub async fn wait_exit(&mut self) -> Result<ExitStatus, RedisError> {
        self.child.wait().await.map_err(RedisError::Wait)
    }

    /// Graceful stop: `SAVE`, then `SHUTDOWN`; killed if it has not exited
    /// after `deadline`.
    pub async fn stop(mut self, deadline: Duration) -> Result<ExitStatus, RedisError> {
        let started = Instant::now();
        let graceful = tokio::time::timeout(deadline, async {
            let mut conn = self.connect().await?;
            redis::cmd("SAVE").query_async::<()>(&mut conn).await?;
            // The server closes the connection instead of answering.
            let _ = redis::cmd("SHUTDOWN").query_async::<()>(&mut conn).await;
            Ok::<_, RedisError>(())
        })
        .await;
        match graceful {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "graceful Redis stop failed; killing it"),
            Err(_) => tracing::warn!("Redis did not stop within {deadline:?}; killing it"),
        }
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left.max(Duration::from_millis(100)), self.child.wait()).await {
            Ok(status) => status.map_err(RedisError::Wait),
            Err(_) => {
                let _ = self.child.start_kill();
                self.child.wait().await.map_err(RedisError::Wait)
            }
        }
    }

    /// Kills the process now and reaps it.
    pub async fn kill(mut self) -> Result<ExitStatus, RedisError> {
        let _ = self.child.start_kill();
        self.child.wait().await.map_err(RedisError::Wait)
    }

    /// A connection as the launcher's Redis user (migrations, backups).
    pub async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, RedisError> {
        let client = redis::Client::open(self.config.launcher_url())?;
        Ok(client.get_multiplexed_async_connection().await?)
    }

    async fn wait_ready(&mut self, timeout: Duration, log_start: u64) -> Result<(), RedisError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(RedisError::Wait)? {
                if log_since(&self.log_file, log_start).contains("Address already in use") {
                    return Err(RedisError::PortInUse {
                        port: self.config.port,
                    });
                }
                return Err(RedisError::ExitedEarly {
                    status,
                    log_tail: tail(&self.log_file, 15),
                });
            }
            if self.ping().await {
                tracing::debug!(elapsed = ?start.elapsed(), "redis-server answers PING");
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(RedisError::NotReady(timeout));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    async fn ping(&self) -> bool {
        let Ok(mut conn) = self.connect().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return format!("(no log at {})", path.display());
    };
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What `path` holds after its first `start` bytes (lossy; empty when
/// unreadable): one start's part of a log that every start appends to.
pub fn log_since(path: &Path, start: u64) -> String {
    use std::io::{Read as _, Seek as _};

    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path)
        && file.seek(std::io::SeekFrom::Start(start)).is_ok()
    {
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, RedisError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(RedisError::NoFreePort)
}

fn open_log(path: &Path) -> Result<std::fs::File, RedisError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| file_error("open", path, source))
}

fn file_error(action: &'static str, path: &Path, source: std::io::Error) -> RedisError {
    RedisError::File(jarvis_durable::FileError {
        action,
        role: "Redis log",
        path: path.to_owned(),
        source,
    })
}
