//! The small commands: `status`, `stop`, `paths`, `doctor`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use jarvis_protocol::instance::Instance;
use serde::Serialize;

use crate::hint::hinted;
use crate::instance;
use crate::paths::AppPaths;

#[derive(Debug, Serialize)]
struct Status {
    running: bool,
    data_dir: PathBuf,
    /// Set while running.
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<Instance>,
}

pub async fn status(paths: &AppPaths, json: bool) -> anyhow::Result<ExitCode> {
    let running = paths.data_dir.exists() && instance::is_running(paths)?;
    let record = if running {
        instance::read(paths)?
    } else {
        None
    };
    let status = Status {
        running,
        data_dir: paths.data_dir.clone(),
        instance: record,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &status.instance {
        Some(i) => {
            println!("Jarvis {} is running at {}", i.version, i.base_url);
            println!("  data:     {}", i.data_dir);
            println!("  launcher: pid {}", i.launcher.pid);
            println!(
                "  redis:    pid {}, port {}, version {}, restarts {}",
                i.redis.pid, i.redis.port, i.redis.version, i.redis.restarts
            );
            println!(
                "  core:     pid {}, port {}, version {}, restarts {}",
                i.core.pid, i.core.port, i.core.version, i.core.restarts
            );
        }
        None if running => println!("Jarvis is starting (data: {})", paths.data_dir.display()),
        None => println!("Jarvis is not running (data: {})", paths.data_dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn stop(paths: &AppPaths) -> anyhow::Result<ExitCode> {
    if !paths.data_dir.exists() || !instance::is_running(paths)? {
        println!("Jarvis is not running.");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(record) = instance::read(paths)? else {
        anyhow::bail!("Jarvis is still starting; try `jarvis stop` again in a moment");
    };
    let pid = record.launcher.pid;
    // Asked through its UI origin on every OS; a signal where that fails
    // (a launcher from before it, a UI that does not answer) and the OS
    // has them.
    if let Err(e) = crate::ui::open::request_stop(paths).await {
        tracing::info!("asking the launcher to stop over HTTP failed: {e:#}");
        if !cfg!(unix) {
            return Err(e.context(format!("could not ask the launcher (pid {pid}) to stop")));
        }
        if !jarvis_redis_bundle::process::terminate(pid) {
            anyhow::bail!("could not signal the launcher (pid {pid})");
        }
    }
    eprintln!("Stopping Jarvis (launcher pid {pid})...");
    let deadline = Duration::from_secs(60);
    let start = Instant::now();
    while instance::is_running(paths)? {
        if start.elapsed() > deadline {
            return Err(hinted(
                format!("Jarvis did not stop within {}s", deadline.as_secs()),
                format!("see {} for what it is doing", paths.logs_dir.display()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("Jarvis stopped.");
    Ok(ExitCode::SUCCESS)
}

/// `jarvis open`: a fresh sign-in URL for the running Jarvis' UI, printed
/// and opened.
pub async fn open(paths: &AppPaths, no_browser: bool) -> anyhow::Result<ExitCode> {
    if !paths.data_dir.exists() || !instance::is_running(paths)? {
        return Err(hinted(
            "Jarvis is not running",
            "start it with `jarvis` (it opens the UI itself)",
        ));
    }
    let url = crate::ui::open::request_signin_url(paths).await?;
    println!("ui: {url}");
    if !no_browser {
        crate::ui::open::open_in_browser(&url);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn paths(paths: &AppPaths, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(paths)?);
    } else {
        println!("data:    {}", paths.data_dir.display());
        println!("models:  {}", paths.models_dir.display());
        println!("redis:   {}", paths.redis_dir.display());
        println!("memory:  {}", paths.memory_dir.display());
        println!("logs:    {}", paths.logs_dir.display());
        println!("run:     {}", paths.run_dir.display());
        println!("config:  {}", paths.config_file.display());
        println!("bundle:  {}", paths.bundle_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn doctor(paths: &AppPaths) -> anyhow::Result<ExitCode> {
    let checks = crate::doctor::run(paths).await;
    let mut failed = 0;
    for check in &checks {
        if check.ok {
            println!("ok    {:<17} {}", check.name, check.detail);
        } else {
            failed += 1;
            println!("FAIL  {:<17} {}", check.name, check.detail);
            for hint in &check.hints {
                println!("hint: {hint}");
            }
        }
    }
    if failed == 0 {
        println!("All checks passed.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} check(s) failed.");
        Ok(ExitCode::FAILURE)
    }
}
