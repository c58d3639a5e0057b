//! `jarvis up`: lay out the data folder, start Redis, start the core,
//! publish the instance, supervise both, and stop them in order.
//!
//! Order is the invariant: Redis first up and last down, so the core never
//! runs without its memory and Redis is always saved (`SAVE`, `SHUTDOWN`)
//! after the core stopped writing.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use jarvis_protocol::env;
use jarvis_protocol::instance::{ChildRecord, Instance, ProcessRecord};
use jarvis_redis_bundle::{RedisConfig, RedisServer, process, tail};

use std::path::Path;

use jarvis_dist::manifest::{AppVersion, SchemaRange};
use jarvis_durable::checkpoint;
use jarvis_migrations::{CURRENT_SCHEMA_VERSION, Migrator};

use crate::install::Install;
use crate::update::{MAX_ATTEMPTS, UpdateState};

use crate::config::AppConfig;
use crate::core_process::{CoreListener, CoreProcess, CoreSpec, base_url};
use crate::instance::{self, LockAttempt};
use crate::paths::AppPaths;
use crate::{VERSION, logs, secrets};

const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(15);
const CORE_READY_TIMEOUT: Duration = Duration::from_secs(30);
const CORE_STOP_DEADLINE: Duration = Duration::from_secs(10);
const REDIS_STOP_DEADLINE: Duration = Duration::from_secs(20);

/// Restarts allowed within [`RESTART_WINDOW`] before the launcher gives up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Do not open the UI in a browser (accepted now; the UI comes later).
    pub no_browser: bool,
    /// Pull missing required models before starting.
    pub pull: bool,
}

pub async fn up(paths: AppPaths, options: UpOptions) -> anyhow::Result<ExitCode> {
    // Find everything we need before creating anything, so a missing
    // prerequisite leaves no half-made data folder behind.
    let install = Install::new(&paths.bundle_dir);
    if install.current()?.is_some() && paths.data_dir.exists() {
        crate::update::apply_staged(&paths, &install)?;
    }
    let mut app = choose_app(&install)?;
    let mut redis_binary = locate_redis(&app.dir)?;
    let core_binary = paths.require_core_binary_in(&app.dir)?;
    let _ = options.no_browser;
    // Refuse a folder from a newer Jarvis before touching anything in it.
    let existing_config = AppConfig::load_existing(&paths)?;

    paths.create_tree()?;
    logs::init_with_file(&paths.logs_dir);
    let _lock = match instance::try_lock(&paths)? {
        LockAttempt::Acquired(lock) => lock,
        LockAttempt::HeldBy(running) => {
            report_already_running(&paths, running.as_deref());
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut shutdown = ShutdownSignal::install()?;
    let config = match existing_config {
        Some(config) => config,
        None => AppConfig::create_default(&paths)?,
    };
    instance::stop_orphans(&paths).await?;
    // Redis is down here: the one moment a cut-short migration can be
    // rolled back to its backup.
    if let Some(backup) = Migrator::new(&paths.data_dir).recover()? {
        eprintln!(
            "An interrupted data migration was rolled back (backup {} restored); it runs again now.",
            backup.id
        );
    }
    let required_models = tokio::select! {
        r = prepare_models(&paths, options.pull || config.auto_download) => r?,
        () = shutdown.recv() => {
            eprintln!("Start-up cancelled; partial downloads were kept and resume next time.");
            return Ok(ExitCode::from(130));
        }
    };
    logs::rotate_if_large(&paths.logs_dir, "core");
    logs::rotate_if_large(&paths.logs_dir, "redis");

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()
        .context("could not create the HTTP client")?;
    let redis_config = RedisConfig {
        dir: paths.redis_dir.clone(),
        // Picked when Redis starts, so no other process can take it first.
        port: 0,
        pid_file: paths.redis_pid_file(),
        launcher_password: secrets::random_hex(24),
        core_password: secrets::random_hex(24),
    };
    let core_spec = CoreSpec {
        binary: core_binary,
        listener: CoreListener::bind(config.core_port)?,
        token: secrets::random_hex(32),
        log_file: paths.logs_dir.join("core.log"),
        required_models,
    };
    instance::write_token(&paths, &core_spec.token)?;

    let start = Instant::now();
    let mut update_state = UpdateState::load(&paths)?;
    let mut trial = match &update_state.pending {
        Some(p) if Some(p.version) == app.version => true,
        Some(_) => {
            // An apply that never switched: the old version runs, untried.
            update_state.pending = None;
            update_state.save(&paths)?;
            false
        }
        None => false,
    };
    let mut core_spec = core_spec;
    let mut supervisor = loop {
        if trial && let Some(pending) = update_state.pending.as_mut() {
            if pending.attempts >= MAX_ATTEMPTS {
                roll_back(&paths, &install, &mut update_state)?;
                app = choose_app(&install)?;
                core_spec.binary = paths.require_core_binary_in(&app.dir)?;
                redis_binary = locate_redis(&app.dir)?;
                trial = false;
                continue;
            }
            if pending.attempts == 0 {
                pending.schema_before = Some(Migrator::new(&paths.data_dir).schema_version()?);
            }
            pending.attempts += 1;
            update_state.save(&paths)?;
        }
        let started = tokio::select! {
            started = start_children(&paths, &http, redis_binary.clone(), redis_config.clone(), core_spec.clone(), app.schema) => started,
            () = shutdown.recv() => {
                instance::remove_runtime_files(&paths)?;
                eprintln!("Start-up cancelled.");
                return Ok(ExitCode::from(130));
            }
        };
        match started {
            Ok(supervisor) => {
                if trial && let Some(pending) = update_state.pending.take() {
                    update_state.last_error = None;
                    update_state.save(&paths)?;
                    checkpoint("update:committed");
                    eprintln!(
                        "Jarvis {} started; the update is committed.",
                        pending.version
                    );
                    if let Err(e) = crate::update::remove_old_versions(&install) {
                        tracing::warn!("could not remove old app versions: {e:#}");
                    }
                    match crate::update::replace_launcher(&paths, &install, pending.version) {
                        Ok(true) => eprintln!(
                            "The launcher was updated too; it takes over at the next start."
                        ),
                        Ok(false) => {}
                        Err(e) => tracing::warn!("could not update the launcher: {e:#}"),
                    }
                }
                break supervisor;
            }
            Err(e) if trial => {
                let attempts = update_state.pending.as_ref().map_or(0, |p| p.attempts);
                eprintln!(
                    "The new version did not start (try {attempts} of {MAX_ATTEMPTS}): {e:#}"
                );
                update_state.last_error = Some(format!("{e:#}"));
                update_state.save(&paths)?;
            }
            Err(e) => {
                let _ = instance::remove_runtime_files(&paths);
                return Err(e);
            }
        }
    };
    supervisor.publish()?;
    tracing::info!(elapsed = ?start.elapsed(), url = %supervisor.core.base_url(), "ready");
    println!("ready: {}", supervisor.core.base_url());
    if config.auto_update && app.version.is_some() {
        tokio::spawn(crate::update::stage_in_background(paths.clone()));
    }

    let outcome = supervisor.supervise(&mut shutdown).await;
    supervisor.stop().await;
    instance::remove_runtime_files(&paths)?;
    match outcome {
        Ok(()) => {
            eprintln!("Jarvis stopped.");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
    }
}

/// Reports (or, with `pull`, downloads) required models that are missing,
/// and returns the names of all required models for the core.
async fn prepare_models(paths: &AppPaths, pull: bool) -> anyhow::Result<Vec<String>> {
    let catalog = match crate::models::load_catalog().await {
        Ok(c) => c,
        Err(e) => {
            // Jarvis still starts without its catalog; models can be
            // imported by hand.
            eprintln!("warning: {e:#}");
            return Ok(Vec::new());
        }
    };
    let store = jarvis_model_registry::ModelStore::new(paths.models_dir.clone());
    let missing = crate::models::missing_required(&catalog, &store)?;
    if !missing.is_empty() {
        if pull {
            crate::models::pull(&store, &missing, crate::models::Report::Stderr).await?;
        } else {
            for entry in &missing {
                eprintln!(
                    "note: the required model {} is not installed; Jarvis starts without it.
                     hint: `jarvis models pull {}`, `jarvis models import PATH`, or start with `jarvis up --pull`",
                    entry.name, entry.name
                );
            }
        }
    }
    Ok(catalog
        .required()
        .iter()
        .map(|m| m.name.to_string())
        .collect())
}

/// The app version to run and the folder holding its core.
struct AppChoice {
    /// `None` in a development checkout (no installed versions).
    version: Option<AppVersion>,
    dir: PathBuf,
    /// The data schemas this version's core works with.
    schema: SchemaRange,
}

/// The current installed version, checked against its signed manifest; the
/// previous one if the current is damaged; the launcher's own folder in a
/// development checkout.
fn choose_app(install: &Install) -> anyhow::Result<AppChoice> {
    let Some(current) = install.current()? else {
        return Ok(AppChoice {
            version: None,
            dir: install
                .app_dir
                .parent()
                .and_then(Path::parent)
                .map(Path::to_owned)
                .unwrap_or_default(),
            schema: SchemaRange {
                min: CURRENT_SCHEMA_VERSION,
                max: CURRENT_SCHEMA_VERSION,
            },
        });
    };
    match install.verify(current) {
        Ok(release) => Ok(AppChoice {
            version: Some(current),
            dir: install.version_dir(current),
            schema: release.data_schema,
        }),
        Err(error) => {
            let previous = install.previous()?.filter(|p| install.verify(*p).is_ok());
            let Some(previous) = previous else {
                return Err(error.context("the installed app is damaged and no previous version is intact\nhint: reinstall Jarvis; your data is untouched"));
            };
            eprintln!(
                "warning: Jarvis {current} is damaged ({error:#}); starting {previous} instead."
            );
            let release = install.verify(previous)?;
            install.switch_to(previous)?;
            Ok(AppChoice {
                version: Some(previous),
                dir: install.version_dir(previous),
                schema: release.data_schema,
            })
        }
    }
}

fn locate_redis(app_dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(jarvis_redis_bundle::locate(
        app_dir,
        env::REDIS_SERVER,
        std::env::var_os(env::REDIS_SERVER).map(PathBuf::from),
        std::env::var_os("PATH"),
    )?)
}

/// After [`MAX_ATTEMPTS`] failed starts of a new version: the data back to
/// how it was before the trial migrated it, back to the previous version,
/// and never offer the failed one again.
fn roll_back(paths: &AppPaths, install: &Install, state: &mut UpdateState) -> anyhow::Result<()> {
    let Some(pending) = state.pending.take() else {
        bail!("no update to roll back");
    };
    let Some(previous) = pending.previous else {
        bail!(
            "Jarvis {} does not start and there is no previous version to go back to\nhint: reinstall Jarvis; your data is untouched",
            pending.version
        );
    };
    install.verify(previous)?;
    let migrator = Migrator::new(&paths.data_dir);
    let mut restored = None;
    if let Some(before) = pending.schema_before
        && migrator.schema_version()? > before
    {
        // The trial migrated the data: the newest backup taken from the
        // schema it had before is exactly the data before the trial.
        let backup = migrator
            .backups()
            .list()?
            .into_iter()
            .rev()
            .find(|b| b.schema_version == before && b.reason.starts_with("before migrating"))
            .context("the data was migrated for the failed version, but its backup is gone; nothing was restored")?;
        migrator.backups().restore(&backup.id)?;
        restored = Some(backup.id);
    }
    install.switch_to(previous)?;
    state.rejected.push(pending.version);
    let reason = state.last_error.clone().unwrap_or_default();
    state.last_error = Some(format!(
        "Jarvis {} failed to start {} times and was rolled back to {previous}{}: {reason}",
        pending.version,
        MAX_ATTEMPTS,
        restored
            .as_ref()
            .map(|id| format!(" with the data from backup {id}"))
            .unwrap_or_default()
    ));
    state.save(paths)?;
    checkpoint("update:rolled-back");
    eprintln!(
        "Switched back to Jarvis {previous}: {} did not start after {MAX_ATTEMPTS} tries and will not be installed again.",
        pending.version
    );
    if let Some(id) = restored {
        eprintln!(
            "The data was restored from backup {id}, taken before {} migrated it.",
            pending.version
        );
    }
    Ok(())
}

fn report_already_running(paths: &AppPaths, running: Option<&Instance>) {
    match running {
        Some(i) => println!(
            "Jarvis is already running at {} (launcher pid {}, data {}); use `jarvis stop` to stop it.",
            i.base_url,
            i.launcher.pid,
            paths.data_dir.display()
        ),
        None => println!(
            "Jarvis is already starting for data folder {}; use `jarvis status` to follow it.",
            paths.data_dir.display()
        ),
    }
}

async fn start_children(
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
    let redis = migrate(paths, redis, schema.max).await?;
    let data_schema = Migrator::new(&paths.data_dir).schema_version()?;
    if !(schema.min..=schema.max).contains(&data_schema) {
        let _ = redis.stop(REDIS_STOP_DEADLINE).await;
        bail!(
            "this version of Jarvis works with data schemas {}–{}, the data is at schema {data_schema}\n\
             hint: `jarvis backup list` and `jarvis backup restore ID` bring back data from before a newer version ran",
            schema.min,
            schema.max
        );
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
        active_models: ActiveModels::read(&paths.models_dir),
        // Without a catalog there are no totals to report progress against.
        catalog: crate::models::load_catalog().await.ok(),
        progress: std::collections::BTreeMap::new(),
    })
}

/// Runs pending data migrations with Redis up and the core not started.
/// On failure Redis is stopped and the folder restored from the backup.
pub(crate) async fn migrate(
    paths: &AppPaths,
    redis: RedisServer,
    target: u32,
) -> anyhow::Result<RedisServer> {
    let migrator = Migrator::new(&paths.data_dir).with_target(target);
    let (_, pending) = migrator.plan()?;
    if pending.is_empty() {
        return Ok(redis);
    }
    let result = async {
        let mut conn = redis.connect().await?;
        Ok::<_, anyhow::Error>(
            migrator
                .run(&mut conn, false, &|line| eprintln!("{line}"))
                .await?,
        )
    }
    .await;
    match result {
        Ok(report) => {
            eprintln!(
                "Data migrated from schema {} to {} (backup {}).",
                report.from,
                report.to,
                report.backup_id.as_deref().unwrap_or("none")
            );
            Ok(redis)
        }
        Err(error) => {
            let _ = redis.stop(REDIS_STOP_DEADLINE).await;
            let restored = migrator.recover();
            let outcome = match restored {
                Ok(Some(b)) => format!("the data folder was restored from backup {}", b.id),
                Ok(None) => "no step had started, nothing was changed".to_owned(),
                Err(e) => {
                    format!("restoring the backup failed too ({e}); the next start tries again")
                }
            };
            Err(error.context(format!("the data migration failed; {outcome}")))
        }
    }
}

struct Supervisor {
    paths: AppPaths,
    http: reqwest::Client,
    redis_binary: PathBuf,
    redis: RedisServer,
    redis_version: String,
    core: CoreProcess,
    redis_restarts: RestartBudget,
    core_restarts: RestartBudget,
    /// The `active` pointers last seen, to announce changes.
    active_models: ActiveModels,
    catalog: Option<jarvis_model_registry::Catalog>,
    /// Bytes of each download in staging last announced.
    progress: std::collections::BTreeMap<(String, String), u64>,
}

/// How often the supervisor looks for model activations to announce.
const MODEL_WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Which child needs attention.
enum Event {
    Shutdown,
    CheckModels,
    RedisExited(std::io::Result<std::process::ExitStatus>),
    CoreExited(std::io::Result<std::process::ExitStatus>),
}

/// Publishes one event on the events channel; false when Redis refused.
async fn publish(
    conn: &mut redis::aio::MultiplexedConnection,
    event: &jarvis_protocol::events::Event,
) -> bool {
    let Ok(json) = serde_json::to_string(event) else {
        return false;
    };
    let published: Result<i64, _> = redis::cmd("PUBLISH")
        .arg(jarvis_protocol::events::EVENTS_CHANNEL)
        .arg(json)
        .query_async(conn)
        .await;
    published.is_ok()
}

/// Each model's active version, as the registry's pointers say.
#[derive(Debug, Default, PartialEq, Eq)]
struct ActiveModels(std::collections::BTreeMap<String, String>);

impl ActiveModels {
    fn read(models_dir: &std::path::Path) -> Self {
        let mut active = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(models_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if let Ok(Some(version)) = jarvis_protocol::models::active_version(models_dir, &name) {
                active.insert(name, version);
            }
        }
        Self(active)
    }
}

impl Supervisor {
    /// Publishes `model_activated` for every pointer that changed since the
    /// last look, whoever changed it (`jarvis models activate` runs in its
    /// own process), so the core swaps engines at once.
    async fn announce_model_changes(&mut self) {
        self.announce_download_progress().await;
        let now = ActiveModels::read(&self.paths.models_dir);
        if now == self.active_models {
            return;
        }
        let changed: Vec<(String, String)> = now
            .0
            .iter()
            .filter(|(name, version)| self.active_models.0.get(*name) != Some(*version))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        let Ok(mut conn) = self.redis.connect().await else {
            return; // try again next tick
        };
        for (name, version) in changed {
            let event = jarvis_protocol::events::Event::ModelActivated {
                name: name.clone(),
                version: version.clone(),
            };
            if !publish(&mut conn, &event).await {
                return; // try again next tick
            }
            tracing::info!(%name, %version, "announced model activation");
        }
        self.active_models = now;
    }

    /// Publishes `model_progress` for downloads in the staging folder
    /// (`jarvis models pull` runs in its own process, without Redis): bytes
    /// on disk against the catalog's total, whenever they changed.
    async fn announce_download_progress(&mut self) {
        let Some(catalog) = &self.catalog else {
            return;
        };
        let staging = self
            .paths
            .models_dir
            .join(jarvis_protocol::models::STAGING_DIR);
        let mut seen = std::collections::BTreeMap::new();
        for entry in &catalog.models {
            let dir = staging
                .join(entry.name.as_str())
                .join(entry.version.as_str());
            if !dir.is_dir() {
                continue;
            }
            let done: u64 = entry
                .files
                .iter()
                .map(|file| {
                    let dest = file.path.under(&dir);
                    let (partial, _) = jarvis_download::partial_paths(&dest);
                    std::fs::metadata(&dest)
                        .or_else(|_| std::fs::metadata(&partial))
                        .map_or(0, |m| m.len())
                })
                .sum();
            seen.insert(
                (entry.name.to_string(), entry.version.to_string()),
                (done, entry.total_size()),
            );
        }
        let changed: Vec<_> = seen
            .iter()
            .filter(|(key, (done, _))| self.progress.get(*key) != Some(done))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        self.progress = seen.into_iter().map(|(k, (done, _))| (k, done)).collect();
        if changed.is_empty() {
            return;
        }
        let Ok(mut conn) = self.redis.connect().await else {
            return;
        };
        for ((name, version), (done, total)) in changed {
            let event = jarvis_protocol::events::Event::ModelProgress {
                name,
                version,
                done,
                total,
            };
            publish(&mut conn, &event).await;
        }
    }

    /// Runs until a stop is asked for (`Ok`) or a child keeps failing (`Err`).
    async fn supervise(&mut self, shutdown: &mut ShutdownSignal) -> anyhow::Result<()> {
        let mut model_watch = tokio::time::interval(MODEL_WATCH_INTERVAL);
        loop {
            let event = tokio::select! {
                () = shutdown.recv() => Event::Shutdown,
                _ = model_watch.tick() => Event::CheckModels,
                status = self.redis.wait_exit() => Event::RedisExited(status.map_err(std::io::Error::other)),
                status = self.core.wait_exit() => Event::CoreExited(status),
            };
            match event {
                Event::Shutdown => return Ok(()),
                Event::CheckModels => {
                    self.announce_model_changes().await;
                    continue;
                }
                Event::RedisExited(status) => {
                    tracing::warn!(?status, "redis-server exited unexpectedly; restarting it");
                    eprintln!(
                        "redis-server exited unexpectedly ({}); restarting it.",
                        describe(&status)
                    );
                    if !self.restart_redis(shutdown).await? {
                        return Ok(());
                    }
                }
                Event::CoreExited(status) => {
                    tracing::warn!(?status, "jarvis-core exited unexpectedly; restarting it");
                    eprintln!(
                        "jarvis-core exited unexpectedly ({}); restarting it.",
                        describe(&status)
                    );
                    if !self.restart_core(shutdown).await? {
                        return Ok(());
                    }
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
                bail!(give_up("redis-server", &log));
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
                bail!(give_up("jarvis-core", &spec.log_file));
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
    async fn stop(self) {
        let Self { core, redis, .. } = self;
        if let Err(e) = core.stop(CORE_STOP_DEADLINE).await {
            tracing::warn!("stopping the core: {e}");
        }
        if let Err(e) = redis.stop(REDIS_STOP_DEADLINE).await {
            tracing::warn!("stopping Redis: {e:#}");
        }
    }

    /// Writes `run/instance.json` with the current children.
    fn publish(&self) -> anyhow::Result<()> {
        let me = std::process::id();
        let record = Instance {
            version: VERSION.to_owned(),
            base_url: base_url(self.core.spec().listener.port()),
            data_dir: self.paths.data_dir.display().to_string(),
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

fn give_up(name: &str, log: &std::path::Path) -> String {
    format!(
        "{name} failed {MAX_RESTARTS} times within {}s, so Jarvis stopped; its log ({}) ends with:\n{}\n\
         hint: run `jarvis doctor` to check the prerequisites, then `jarvis up` again",
        RESTART_WINDOW.as_secs(),
        log.display(),
        tail(log, 20)
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

/// Ctrl-C, and on Unix `SIGTERM` (what `jarvis stop` sends).
pub struct ShutdownSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("could not handle SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("could not handle SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => {}
                _ = self.interrupt.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("stop requested");
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
