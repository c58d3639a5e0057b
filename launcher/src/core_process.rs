//! The `jarvis-core` child: started with its environment, waited on until
//! `/readyz` says ready, stopped gracefully.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use jarvis_protocol::env;
use jarvis_protocol::health::Health;
use jarvis_redis_bundle::{process, tail};
use tokio::process::{Child, Command};

use crate::hint::hinted_with;
use crate::paths::AppPaths;

const READY_POLL: Duration = Duration::from_millis(3);

/// The address the core answers on, for the launcher's whole run.
///
/// On Unix the launcher binds the socket itself and every core it starts
/// inherits it (`JARVIS_CORE_LISTEN_FD`): the port is the same after a
/// crash, no other process can take it between a probe and the core's bind
/// or between a crash and the restart, and connections that arrive while a
/// core restarts wait in the socket's queue instead of being refused.
/// Elsewhere the core binds the port itself.
///
/// A core from before this hand-over ignores the socket and binds the
/// address itself, which the held socket makes fail; the launcher then
/// lets go of the socket and starts that core the old way (see
/// [`CoreProcess::start`]), so a rollback to an older version still runs.
#[derive(Debug, Clone)]
pub struct CoreListener {
    port: u16,
    /// `None` once released for a core that binds the port itself.
    #[cfg(unix)]
    socket: std::sync::Arc<std::sync::Mutex<Option<std::net::TcpListener>>>,
}

impl CoreListener {
    /// Binds `127.0.0.1:port`; port 0 picks a free one.
    pub fn bind(port: u16) -> anyhow::Result<Self> {
        let socket = match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(socket) => socket,
            Err(e) if port == 0 => {
                return Err(
                    anyhow::Error::new(e).context("could not find a free port on 127.0.0.1")
                );
            }
            Err(e) => {
                return Err(hinted_with(
                    e,
                    format!("could not listen on 127.0.0.1:{port}"),
                    "another program uses that port; set `core_port` to 0 in the launcher settings to pick a free one",
                ));
            }
        };
        let port = socket
            .local_addr()
            .context("listener has no address")?
            .port();
        #[cfg(unix)]
        return Ok(Self {
            port,
            socket: std::sync::Arc::new(std::sync::Mutex::new(Some(socket))),
        });
        #[cfg(not(unix))]
        {
            // The core binds it; the launcher only remembers the number.
            drop(socket);
            Ok(Self { port })
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the socket is still held to be handed over.
    fn is_held(&self) -> bool {
        #[cfg(unix)]
        return self.socket.lock().is_ok_and(|socket| socket.is_some());
        #[cfg(not(unix))]
        false
    }

    /// Closes the held socket, so that a core that binds the port itself
    /// can. Every clone of this listener stops handing it over.
    fn release(&self) {
        #[cfg(unix)]
        if let Ok(mut socket) = self.socket.lock() {
            socket.take();
        }
    }

    /// Hands the socket to the core `cmd` starts.
    fn pass_to(&self, cmd: &mut Command) {
        cmd.env(env::CORE_ADDR, format!("127.0.0.1:{}", self.port));
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;

            let Some(fd) = self
                .socket
                .lock()
                .ok()
                .and_then(|socket| socket.as_ref().map(AsRawFd::as_raw_fd))
            else {
                return;
            };
            cmd.env(env::CORE_LISTEN_FD, fd.to_string());
            // SAFETY: the closure runs in the child between fork and exec
            // and calls only fcntl, which is async-signal-safe. Clearing
            // close-on-exec in the child alone keeps the socket out of
            // every other process the launcher starts.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    }
}

/// What the core is started with; kept so it can be restarted identically
/// (same address and token, so clients keep working).
#[derive(Debug, Clone)]
pub struct CoreSpec {
    pub binary: PathBuf,
    pub listener: CoreListener,
    pub token: String,
    pub log_file: PathBuf,
    /// Names of the catalog's required models, for `/readyz`.
    pub required_models: Vec<String>,
}

/// A running core. Dropping it kills the process.
#[derive(Debug)]
pub struct CoreProcess {
    child: Child,
    spec: CoreSpec,
    pub version: String,
}

impl CoreProcess {
    /// Starts the core, connecting to Redis at `redis_url`, and waits (at
    /// most `timeout`) until it is ready.
    ///
    /// A core that cannot listen because it binds the held address itself
    /// (one from before the socket hand-over) is started again with the
    /// socket released.
    pub async fn start(
        paths: &AppPaths,
        spec: CoreSpec,
        redis_url: &str,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let log_start = std::fs::metadata(&spec.log_file).map_or(0, |m| m.len());
        let handed_over = spec.listener.is_held();
        match Self::start_once(paths, spec.clone(), redis_url, http, timeout).await {
            Err(e)
                if handed_over
                    && jarvis_redis_bundle::log_since(&spec.log_file, log_start)
                        .contains("Address already in use") =>
            {
                tracing::warn!(
                    core = %spec.binary.display(),
                    "this core binds its address itself (an older version); starting it with the socket released"
                );
                spec.listener.release();
                Self::start_once(paths, spec, redis_url, http, timeout)
                    .await
                    .map_err(|again| again.context(e.to_string()))
            }
            started => started,
        }
    }

    async fn start_once(
        paths: &AppPaths,
        spec: CoreSpec,
        redis_url: &str,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let log = open_append(&spec.log_file)?;
        let log_err = log
            .try_clone()
            .context("could not open the core log twice")?;
        let mut cmd = Command::new(&spec.binary);
        cmd.current_dir(&paths.data_dir)
            .env(env::DATA_DIR, &paths.data_dir)
            .env(env::MODELS_DIR, &paths.models_dir)
            .env(env::REDIS_URL, redis_url)
            .env(env::API_TOKEN, &spec.token)
            .env(env::REQUIRED_MODELS, spec.required_models.join(","))
            .env(env::HF_HUB_OFFLINE, "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        spec.listener.pass_to(&mut cmd);
        process::tie_to_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start the core '{}'", spec.binary.display()))?;
        if let Err(e) = process::adopt_into_job(&child) {
            tracing::warn!("could not tie the core to the launcher's lifetime: {e}");
        }
        tracing::info!(
            pid = child.id(),
            port = spec.listener.port(),
            "started jarvis-core"
        );
        let mut core = Self {
            child,
            spec,
            version: String::new(),
        };
        core.version = core.wait_ready(http, timeout).await?;
        Ok(core)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn spec(&self) -> &CoreSpec {
        &self.spec
    }

    pub fn base_url(&self) -> String {
        base_url(self.spec.listener.port())
    }

    pub async fn wait_exit(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// `SIGTERM` (the core finishes requests in flight), then kill after
    /// `deadline`.
    pub async fn stop(mut self, deadline: Duration) -> std::io::Result<ExitStatus> {
        if let Some(pid) = self.child.id() {
            process::terminate(pid);
        }
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                tracing::warn!("the core did not stop within {deadline:?}; killing it");
                let _ = self.child.start_kill();
                self.child.wait().await
            }
        }
    }

    async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let start = Instant::now();
        let url = format!("{}/readyz", self.base_url());
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("could not check on the core")?
            {
                bail!(
                    "jarvis-core exited during start-up ({status}); its log ends with:\n{}",
                    tail(&self.spec.log_file, 15)
                );
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                tracing::debug!(elapsed = ?start.elapsed(), "core ready");
                return Ok(self.health_version(http).await);
            }
            if start.elapsed() > timeout {
                bail!(
                    "jarvis-core did not become ready within {timeout:?}; its log ends with:\n{}",
                    tail(&self.spec.log_file, 15)
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    async fn health_version(&self, http: &reqwest::Client) -> String {
        let url = format!("{}/healthz", self.base_url());
        match http.get(&url).send().await {
            Ok(r) => r
                .json::<Health>()
                .await
                .map(|h| h.version)
                .unwrap_or_else(|_| "unknown".to_owned()),
            Err(_) => "unknown".to_owned(),
        }
    }
}

pub fn base_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

pub fn open_append(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("could not open the log file '{}'", path.display()))
}
