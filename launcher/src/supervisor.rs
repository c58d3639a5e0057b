//! The two children, Redis first: start them (running pending data
//! migrations in between), restart whichever exits with backoff, give up
//! after too many failures, announce model changes, and stop them in
//! order (the core, then Redis, saved).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jarvis_dist::manifest::SchemaRange;
use jarvis_migrations::Migrator;
use jarvis_protocol::instance::{ChildRecord, Instance, ProcessRecord};
use jarvis_redis_bundle::{RedisConfig, RedisServer, process, tail};

use crate::VERSION;
use crate::core_process::{CoreProcess, CoreSpec, base_url};
use crate::hint::hinted;
use crate::instance;
use crate::maintenance::{REDIS_READY_TIMEOUT, REDIS_STOP_DEADLINE, migrate_data};
use crate::model_events::ModelWatch;
use crate::paths::AppPaths;
use crate::shutdown::ShutdownSignal;

const CORE_READY_TIMEOUT: Duration = Duration::from_secs(30);
const CORE_STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Restarts allowed within [`RESTART_WINDOW`] before the launcher gives up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// How often the supervisor looks for model activations to announce.
const MODEL_WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Starts Redis, migrates the data up to what this app version reads,
/// checks the data schema, then starts the core and waits for it.
pub async fn start_children(
    paths: &AppPaths,
    http: &reqwest::Client,
    redis_binary: PathBuf,
    redis_config: RedisConfig,
    core_spec: CoreSpec,
    schema: SchemaRange,
) -> anyhow::Result<Supervisor> {
    let redis = RedisServer::start(
        &redis_binary,
        redis_config,
        &paths.logs_dir.join("redis.log"),
        REDIS_READY_TIMEOUT,
    )
    .await
    .context("Redis did not start")?;
    let redis_version = redis
        .version()
        .await
        .unwrap_or_else(|_| "unknown".to_owned());
    let redis = migrate_data(paths, redis, schema.max).await?;
    let data_schema = Migrator::new(&paths.data_dir).schema_version()?;
    if !(schema.min..=schema.max).contains(&data_schema) {
        let _ = redis.stop(REDIS_STOP_DEADLINE).await;
        return Err(hinted(
            format!(
                "this version of Jarvis works with data schemas {}–{}, the data is at schema {data_schema}",
                schema.min, schema.max
            ),
            "`jarvis backup list` and `jarvis backup restore ID` bring back data from before a newer version ran",
        ));
    }
    let redis_url = redis.config().core_url();
    let core =
        match CoreProcess::start(paths, core_spec, &redis_url, http, CORE_READY_TIMEOUT).await {
            Ok(core) => core,
            Err(e) => {
                // Stopped (not just dropped) so nothing writes while an update
                // rollback restores the data.
                let _ = redis.stop(REDIS_STOP_DEADLINE).await;
                return Err(e.context("the core did not start"));
            }
        };
    Ok(Supervisor {
        paths: paths.clone(),
        http: http.clone(),
        redis_binary,
        redis,
        redis_version,
        core,
        redis_restarts: RestartBudget::default(),
        core_restarts: RestartBudget::default(),
        models: ModelWatch::new(
            paths.models_dir.clone(),
            crate::models::load_catalog().await.ok(),
        ),
        ui_url: None,
        approvals_url: None,
        healthy_since: Instant::now(),
    })
}

/// Both children, running.
pub struct Supervisor {
    paths: AppPaths,
    http: reqwest::Client,
    redis_binary: PathBuf,
    redis: RedisServer,
    redis_version: String,
    core: CoreProcess,
    redis_restarts: RestartBudget,
    core_restarts: RestartBudget,
    models: ModelWatch,
    /// The UI's origin, published in `instance.json`.
    ui_url: Option<String>,
    /// The approval surface's origin, published in `instance.json`.
    approvals_url: Option<String>,
    /// When both children were last (re)started.
    healthy_since: Instant,
}

/// Why [`Supervisor::supervise`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Supervised {
    /// A stop was asked for.
    Stopped,
    /// Both children ran through the probation without a restart.
    Healthy,
}

/// Which child needs attention.
enum Wake {
    Shutdown,
    Healthy,
    CheckModels,
    RedisExited(std::io::Result<std::process::ExitStatus>),
    CoreExited(std::io::Result<std::process::ExitStatus>),
}

impl Supervisor {
    /// Runs until a stop is asked for, or (with `probation`) until both
    /// children have run that long since their last restart, or until a
    /// child keeps failing (`Err`).
    pub async fn supervise(
        &mut self,
        shutdown: &mut ShutdownSignal,
        probation: Option<Duration>,
    ) -> anyhow::Result<Supervised> {
        let mut model_watch = tokio::time::interval(MODEL_WATCH_INTERVAL);
        loop {
            let probation_over = async {
                match probation {
                    Some(p) => tokio::time::sleep_until((self.healthy_since + p).into()).await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                () = shutdown.recv() => Wake::Shutdown,
                () = probation_over => Wake::Healthy,
                _ = model_watch.tick() => Wake::CheckModels,
                status = self.redis.wait_exit() => Wake::RedisExited(status.map_err(std::io::Error::other)),
                status = self.core.wait_exit() => Wake::CoreExited(status),
            };
            match event {
                Wake::Shutdown => return Ok(Supervised::Stopped),
                Wake::Healthy => return Ok(Supervised::Healthy),
                Wake::CheckModels => {
                    self.models.announce_changes(&self.redis).await;
                    continue;
                }
                Wake::RedisExited(status) => {
                    tracing::warn!(?status, "redis-server exited unexpectedly; restarting it");
                    eprintln!(
                        "redis-server exited unexpectedly ({}); restarting it.",
                        describe(&status)
                    );
                    if !self.restart_redis(shutdown).await? {
                        return Ok(Supervised::Stopped);
                    }
                    self.healthy_since = Instant::now();
                }
                Wake::CoreExited(status) => {
                    tracing::warn!(?status, "jarvis-core exited unexpectedly; restarting it");
                    eprintln!(
                        "jarvis-core exited unexpectedly ({}); restarting it.",
                        describe(&status)
                    );
                    if !self.restart_core(shutdown).await? {
                        return Ok(Supervised::Stopped);
                    }
                    self.healthy_since = Instant::now();
                }
            }
            self.publish()?;
        }
    }

    /// `Ok(false)` when a shutdown arrived while waiting to restart.
    async fn restart_redis(&mut self, shutdown: &mut ShutdownSignal) -> anyhow::Result<bool> {
        loop {
            let log = self.paths.logs_dir.join("redis.log");
            let Some(delay) = self.redis_restarts.record() else {
                return Err(give_up("redis-server", &log, &self.paths.data_dir));
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.recv() => return Ok(false),
            }
            let started = tokio::select! {
                r = RedisServer::start(&self.redis_binary, self.redis.config().clone(), &log, REDIS_READY_TIMEOUT) => r,
                () = shutdown.recv() => return Ok(false),
            };
            match started {
                Ok(redis) => {
                    // The old guard's process is gone; replacing it reaps nothing.
                    self.redis = redis;
                    tracing::info!("redis-server restarted");
                    return Ok(true);
                }
                Err(e) => tracing::warn!("restarting redis-server failed: {e:#}"),
            }
        }
    }

    async fn restart_core(&mut self, shutdown: &mut ShutdownSignal) -> anyhow::Result<bool> {
        loop {
            let spec = self.core.spec().clone();
            let Some(delay) = self.core_restarts.record() else {
                return Err(give_up("jarvis-core", &spec.log_file, &self.paths.data_dir));
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.recv() => return Ok(false),
            }
            let redis_url = self.redis.config().core_url();
            let started = tokio::select! {
                r = CoreProcess::start(&self.paths, spec, &redis_url, &self.http, CORE_READY_TIMEOUT) => r,
                () = shutdown.recv() => return Ok(false),
            };
            match started {
                Ok(core) => {
                    self.core = core;
                    tracing::info!("jarvis-core restarted");
                    return Ok(true);
                }
                Err(e) => tracing::warn!("restarting jarvis-core failed: {e:#}"),
            }
        }
    }

    /// Stops the core, then Redis (saved first).
    pub async fn stop(self) {
        let Self { core, redis, .. } = self;
        if let Err(e) = core.stop(CORE_STOP_DEADLINE).await {
            tracing::warn!("stopping the core: {e}");
        }
        if let Err(e) = redis.stop(REDIS_STOP_DEADLINE).await {
            tracing::warn!("stopping Redis: {e:#}");
        }
    }

    /// The core's address, the same across restarts.
    pub fn base_url(&self) -> String {
        self.core.base_url()
    }

    /// How the launcher itself reaches Redis (its own Redis user); the
    /// same address across Redis restarts.
    pub fn redis_launcher_url(&self) -> String {
        self.redis.config().launcher_url()
    }

    /// Where the UI listens; published with the instance.
    pub fn set_ui_url(&mut self, url: String) {
        self.ui_url = Some(url);
    }

    /// Where the approval surface listens; published with the instance.
    pub fn set_approvals_url(&mut self, url: String) {
        self.approvals_url = Some(url);
    }

    /// Writes `run/instance.json` with the current children.
    pub fn publish(&self) -> anyhow::Result<()> {
        let me = std::process::id();
        let record = Instance {
            version: VERSION.to_owned(),
            base_url: base_url(self.core.spec().listener.port()),
            data_dir: self.paths.data_dir.display().to_string(),
            ui_url: self.ui_url.clone(),
            approvals_url: self.approvals_url.clone(),
            launcher: ProcessRecord {
                pid: me,
                start_time: process::identity(me).and_then(|i| i.start_time),
            },
            redis: child_record(
                self.redis.pid(),
                self.redis.port(),
                self.redis.binary(),
                &self.redis_version,
                self.redis_restarts.total,
            ),
            core: child_record(
                self.core.pid(),
                self.core.spec().listener.port(),
                &self.core.spec().binary,
                &self.core.version,
                self.core_restarts.total,
            ),
        };
        instance::write(&self.paths, &record)
    }
}

fn child_record(
    pid: Option<u32>,
    port: u16,
    binary: &std::path::Path,
    version: &str,
    restarts: u32,
) -> ChildRecord {
    let pid = pid.unwrap_or_default();
    ChildRecord {
        pid,
        start_time: process::identity(pid).and_then(|i| i.start_time),
        port,
        executable: binary.display().to_string(),
        version: version.to_owned(),
        restarts,
    }
}

/// Free space below which a child's failures are put down to a full disk.
const DISK_FULL_BELOW: u64 = 1024 * 1024;

fn give_up(name: &str, log: &std::path::Path, data_dir: &std::path::Path) -> anyhow::Error {
    // Redis cannot write its append-only file (it exits rather than
    // acknowledge a write it cannot keep) or even its configuration: say
    // what the person can do about it.
    if let Ok(free) = fs4::available_space(data_dir)
        && free < DISK_FULL_BELOW
    {
        return hinted(
            format!(
                "the disk that holds your data ({}) is full ({} free), so {name} could not keep running and Jarvis stopped; everything it had saved is kept",
                data_dir.display(),
                jarvis_download::human_bytes(free)
            ),
            "free some space on that disk, then start Jarvis again",
        );
    }
    hinted(
        format!(
            "{name} failed {MAX_RESTARTS} times within {}s, so Jarvis stopped; its log ({}) ends with:\n{}",
            RESTART_WINDOW.as_secs(),
            log.display(),
            tail(log, 20)
        ),
        "run `jarvis doctor` to check the prerequisites, then `jarvis up` again",
    )
}

fn describe(status: &std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Failures within a sliding window, and the backoff before the next try.
#[derive(Debug, Default)]
struct RestartBudget {
    recent: VecDeque<Instant>,
    total: u32,
}

impl RestartBudget {
    /// Records a failure; the delay before the next start, or `None` when
    /// there were too many failures in the window.
    fn record(&mut self) -> Option<Duration> {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= MAX_RESTARTS {
            return None;
        }
        self.recent.push_back(now);
        self.total += 1;
        let exponent = u32::try_from(self.recent.len() - 1)
            .unwrap_or(u32::MAX)
            .min(5);
        Some(Duration::from_millis(100 * 2u64.pow(exponent)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_budget_backs_off_then_gives_up() {
        let mut budget = RestartBudget::default();
        let delays: Vec<_> = (0..MAX_RESTARTS).map(|_| budget.record()).collect();
        assert_eq!(delays[0], Some(Duration::from_millis(100)));
        assert_eq!(delays[1], Some(Duration::from_millis(200)));
        assert!(delays.iter().all(Option::is_some));
        assert_eq!(budget.record(), None);
        assert_eq!(budget.total, MAX_RESTARTS as u32);
    }
}
