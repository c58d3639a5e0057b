//! `jarvis up`: the start-up order, step by step as ARCHITECTURE.md numbers
//! it. Each step is a call into the layer that owns it: the install layout
//! and the updater (which app version runs), the data folder (lock,
//! config, migrations), the model registry, and the supervisor (Redis,
//! then the core).
//!
//! Order is the invariant: Redis first up and last down, so the core never
//! runs without its memory and Redis is always saved (`SAVE`, `SHUTDOWN`)
//! after the core stopped writing.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jarvis_migrations::Migrator;
use jarvis_protocol::instance::Instance;

use crate::config::AppConfig;
use crate::core_process::{CoreListener, CoreSpec};
use crate::gate::{self, Gate};
use crate::install::Install;
use crate::instance::{self, LockAttempt};
use crate::maintenance::redis_config;
use crate::paths::AppPaths;
use crate::shutdown::ShutdownSignal;
use crate::supervisor::{Supervised, start_children};
use crate::ui::{self, Ui, UiConfig};
use crate::updater::trial::{self, Attempt, Trial};
use crate::{logs, models, secrets, updater};

/// How `jarvis up` ended.
#[derive(Debug)]
pub enum Finish {
    Exit(ExitCode),
    /// An update was rolled back while running: start again, on the
    /// previous version, once everything of this run is closed
    /// ([`relaunch`]).
    Relaunch,
}

#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Do not open the UI in a browser (print its sign-in URL only).
    pub no_browser: bool,
    /// Pull missing required models before starting.
    pub pull: bool,
}

pub async fn up(paths: AppPaths, mut options: UpOptions) -> anyhow::Result<Finish> {
    // Started again after a rollback: the UI is open in the browser already.
    options.no_browser |= std::env::var_os(jarvis_protocol::env::RELAUNCHED).is_some();
    // 1. Which app version would run, and its programs, found by reading
    //    only, before anything is created: a missing prerequisite leaves
    //    no half-made folder. A folder from a newer Jarvis is refused
    //    before anything in it is touched.
    let install = Install::new(&paths.bundle_dir);
    let preview = install.select()?;
    paths.locate_redis(&preview.app)?;
    paths.require_core_binary(&preview.app)?;
    AppConfig::refuse_newer(&paths)?;

    // 2. The data tree, the single-instance lock; only under the lock is
    //    anything changed: a corrupt config repaired, a staged update
    //    switched to, `current` moved (so a second launch never switches
    //    the version under a running Jarvis).
    paths.create_tree()?;
    logs::init_with_file(&paths.logs_dir);
    let _lock = match instance::try_lock(&paths)? {
        LockAttempt::Acquired(lock) => lock,
        LockAttempt::HeldBy(running) => {
            report_already_running(&paths, running.as_deref(), options.no_browser).await;
            return Ok(Finish::Exit(ExitCode::SUCCESS));
        }
    };
    let mut shutdown = ShutdownSignal::install()?;
    let config = match AppConfig::load_existing(&paths)? {
        Some(config) => config,
        None => AppConfig::create_default(&paths)?,
    };
    if install.current()?.is_some() {
        updater::apply_staged(&paths, &install)?;
    }
    let mut app = install.choose_again(preview)?;
    let mut redis_binary = paths.locate_redis(&app)?;
    let core_binary = paths.require_core_binary(&app)?;
    // What killed runs left in the app folder; a staging folder of a
    // newer version is kept, the next background update resumes it.
    let current = install.current()?;
    updater::stage::clean_leftovers(&install, &[], |staging| {
        staging.is_none_or(|v| current.is_none_or(|c| v <= c))
    });

    // 3. What a killed launcher left: orphans, a cut-short migration (Redis
    //    is down here: the one moment it can be rolled back to its
    //    backup). Then the required models.
    instance::stop_orphans(&paths).await?;
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
            return Ok(Finish::Exit(ExitCode::from(130)));
        }
    };
    logs::rotate_if_large(&paths.logs_dir, "core");
    logs::rotate_if_large(&paths.logs_dir, "redis");

    // 4. Redis, data migrations, the core; a version an update switched to
    //    is on trial and rolled back when it never reaches ready.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()
        .context("could not create the HTTP client")?;
    let redis_config = redis_config(&paths);
    let mut core_spec = CoreSpec {
        binary: core_binary,
        listener: CoreListener::bind(config.core_port)?,
        token: secrets::random_hex(32),
        log_file: paths.logs_dir.join("core.log"),
        required_models,
    };
    instance::write_token(&paths, &core_spec.token)?;
    let start = Instant::now();
    let mut trial = Trial::begin(&paths, &install, app.version)?;
    if trial.is_none()
        && let Some(version) = app.version
    {
        updater::self_update::finish_launcher_replacement(&paths, &install, version);
    }
    let mut supervisor = loop {
        if let Some(on_trial) = trial.as_mut()
            && on_trial.next_attempt()? == Attempt::RolledBack
        {
            app = install.choose()?;
            core_spec.binary = paths.require_core_binary(&app)?;
            redis_binary = paths.locate_redis(&app)?;
            trial = None;
            continue;
        }
        let started = tokio::select! {
            started = start_children(&paths, &http, redis_binary.clone(), redis_config.clone(), core_spec.clone(), app.schema) => started,
            () = shutdown.recv() => {
                instance::remove_runtime_files(&paths)?;
                eprintln!("Start-up cancelled.");
                return Ok(Finish::Exit(ExitCode::from(130)));
            }
        };
        match (started, trial.as_mut()) {
            (Ok(supervisor), on_trial) => {
                if let Some(on_trial) = on_trial {
                    on_trial.reached_ready(trial::probation());
                }
                break supervisor;
            }
            (Err(e), Some(on_trial)) => on_trial.failed(&e)?,
            (Err(e), None) => {
                let _ = instance::remove_runtime_files(&paths);
                return Err(e);
            }
        }
    };

    // 5. The UI on its own loopback port; publish the instance; ready;
    //    open the UI; look for the next version quietly.
    //    The gatekeeper takes the core's action requests from Redis; its
    //    approval surface gets a loopback origin of its own.
    let gate = Gate::start(&paths.data_dir, &supervisor.redis_launcher_url())
        .await
        .context("could not start the gatekeeper")?;
    let ui = Ui::start(UiConfig {
        paths: paths.clone(),
        app_dir: app.dir.clone(),
        app_version: app.version,
        core_url: supervisor.base_url(),
        core_token: core_spec.token.clone(),
        gate: Arc::clone(&gate),
    })
    .await?;
    let approvals = gate::surface::start(gate, &paths, ui.assets_dir().to_owned()).await?;
    supervisor.set_ui_url(ui.origin().to_owned());
    supervisor.set_approvals_url(approvals.origin);
    supervisor.publish()?;
    tracing::info!(elapsed = ?start.elapsed(), url = %supervisor.base_url(), ui = %ui.origin(), "ready");
    println!("ready: {}", supervisor.base_url());
    let signin = ui.signin_url();
    println!("ui: {signin}");
    if !options.no_browser {
        ui::open::open_in_browser(&signin);
    }
    // Not while a version is on probation: the next update is staged
    // over a committed one only.
    let stage_in_background = || {
        if config.auto_update && app.version.is_some() {
            tokio::spawn(updater::stage_in_background(paths.clone()));
        }
    };
    if trial.is_none() {
        stage_in_background();
    }

    // 6. Supervise until asked to stop or a child keeps failing; a version
    //    on trial is committed once it ran through its probation, and
    //    rolled back when it crash-loops before. 7. Stop the core, then
    //    Redis, then remove the runtime files.
    let outcome = loop {
        let probation = trial.as_ref().map(|_| trial::probation());
        match supervisor.supervise(&mut shutdown, probation).await {
            Ok(Supervised::Healthy) => {
                if let Some(on_trial) = trial.take() {
                    // Jarvis runs on either way; an uncommitted version is
                    // on trial again at the next start.
                    match on_trial.commit() {
                        Ok(()) => stage_in_background(),
                        Err(e) => eprintln!("warning: could not commit the update: {e:#}"),
                    }
                }
            }
            Ok(Supervised::Stopped) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    supervisor.stop().await;
    instance::remove_runtime_files(&paths)?;
    match (outcome, trial) {
        (Ok(()), Some(on_trial)) => on_trial.stopped_during_probation()?,
        (Ok(()), None) => {}
        (Err(e), Some(on_trial)) => {
            crate::report(&e);
            on_trial.crash_looped(&e)?;
            eprintln!("Starting Jarvis again on the previous version.");
            return Ok(Finish::Relaunch);
        }
        (Err(e), None) => return Err(e),
    }
    eprintln!("Jarvis stopped.");
    Ok(Finish::Exit(ExitCode::SUCCESS))
}

/// Starts this launcher again with the same arguments, after everything
/// of the run that rolled an update back was closed: on Unix in place
/// (the same process, so whoever waits for Jarvis keeps waiting), on
/// Windows as a child whose exit code becomes ours.
pub fn relaunch() -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: could not find this program to start it again: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env(jarvis_protocol::env::RELAUNCHED, "1");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let e = cmd.exec();
        eprintln!("error: could not start {} again: {e}", exe.display());
        ExitCode::FAILURE
    }
    #[cfg(not(unix))]
    match cmd.status() {
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: could not start {} again: {e}", exe.display());
            ExitCode::FAILURE
        }
    }
}

/// Reports (or, with `pull`, downloads) required models that are missing,
/// and returns the names of all required models for the core.
async fn prepare_models(paths: &AppPaths, pull: bool) -> anyhow::Result<Vec<String>> {
    let catalog = match models::load_catalog().await {
        Ok(c) => c,
        Err(e) => {
            // Jarvis still starts without its catalog; models can be
            // imported by hand.
            eprintln!("warning: {e:#}");
            return Ok(Vec::new());
        }
    };
    let store = jarvis_model_registry::ModelStore::new(paths.models_dir.clone());
    let missing = models::missing_required(&catalog, &store)?;
    if !missing.is_empty() {
        if pull {
            models::pull(&store, &missing, models::Report::Stderr).await?;
        } else {
            for entry in &missing {
                eprintln!(
                    "note: the required model {} is not installed; Jarvis starts without it.",
                    entry.name
                );
                eprintln!(
                    "hint: `jarvis models pull {}`, `jarvis models import PATH`, or start with `jarvis up --pull`",
                    entry.name
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

/// A second launch: open the running Jarvis' UI (a desktop icon clicked
/// twice), or say where it is.
async fn report_already_running(paths: &AppPaths, running: Option<&Instance>, no_browser: bool) {
    match running {
        Some(i) => {
            println!(
                "Jarvis is already running at {} (launcher pid {}, data {}); use `jarvis stop` to stop it.",
                i.base_url,
                i.launcher.pid,
                paths.data_dir.display()
            );
            match ui::open::request_signin_url(paths).await {
                Ok(url) => {
                    println!("ui: {url}");
                    if !no_browser {
                        ui::open::open_in_browser(&url);
                    }
                }
                Err(e) => eprintln!("note: could not open its UI: {e:#}"),
            }
        }
        None => println!(
            "Jarvis is already starting for data folder {}; use `jarvis status` to follow it.",
            paths.data_dir.display()
        ),
    }
}
