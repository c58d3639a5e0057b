//! The small commands: `status`, `stop`, `paths`, `doctor`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jarvis_protocol::env;
use jarvis_protocol::instance::Instance;
use serde::Serialize;

use crate::config::AppConfig;
use crate::hint::{hinted, hints};
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
    if !jarvis_redis_bundle::process::terminate(pid) {
        anyhow::bail!("could not signal the launcher (pid {pid})");
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

/// One check's verdict.
struct Check {
    name: &'static str,
    result: Result<String, String>,
}

pub async fn doctor(paths: &AppPaths) -> anyhow::Result<ExitCode> {
    let checks = vec![
        Check {
            name: "redis-server",
            result: check_redis(paths).await,
        },
        Check {
            name: "jarvis-core",
            result: paths
                .require_core_binary()
                .map(|p| format!("found at {}", p.display()))
                .map_err(|e| with_hints(&e)),
        },
        Check {
            name: "data folder",
            result: check_data_dir(paths),
        },
        Check {
            name: "config file",
            result: check_config(paths),
        },
        Check {
            name: "loopback network",
            result: std::net::TcpListener::bind(("127.0.0.1", 0))
                .map(|_| "can listen on 127.0.0.1".to_owned())
                .map_err(|e| {
                    format!(
                        "cannot listen on 127.0.0.1: {e}\nhint: check firewall or sandbox settings"
                    )
                }),
        },
    ];
    let mut failed = 0;
    for check in &checks {
        match &check.result {
            Ok(detail) => println!("ok    {:<17} {detail}", check.name),
            Err(problem) => {
                failed += 1;
                println!("FAIL  {:<17} {problem}", check.name);
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

/// A failed check's text: the error's chain, then its hints (as `report`
/// prints them for a failed command).
fn with_hints(error: &anyhow::Error) -> String {
    let mut text = format!("{error:#}");
    for hint in hints(error) {
        text.push_str(&format!("\nhint: {hint}"));
    }
    text
}

async fn check_redis(paths: &AppPaths) -> Result<String, String> {
    let binary = paths
        .locate_redis(&paths.bundle_dir)
        .map_err(|e| with_hints(&e.into()))?;
    let output = tokio::process::Command::new(&binary)
        .arg("--version")
        .output()
        .await
        .map_err(|e| format!("'{}' does not run: {e}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or("unknown version");
    Ok(format!("{} ({version})", binary.display()))
}

fn check_data_dir(paths: &AppPaths) -> Result<String, String> {
    let dir = &paths.data_dir;
    let existing = dir.ancestors().find(|p| p.exists()).map(PathBuf::from);
    let Some(existing) = existing else {
        return Err(format!("no existing parent folder of {}", dir.display()));
    };
    let probe = tempfile_in(&existing).map_err(|e| {
        format!(
            "{} is not writable: {e}\nhint: fix its permissions or set {} to a writable folder",
            existing.display(),
            env::HOME
        )
    })?;
    drop(probe);
    Ok(format!("{} is writable", dir.display()))
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    let path = dir.join(format!(".jarvis-doctor-{}", std::process::id()));
    std::fs::write(&path, b"probe")?;
    std::fs::remove_file(&path)?;
    Ok(path)
}

fn check_config(paths: &AppPaths) -> Result<String, String> {
    if !paths.config_file.exists() {
        return Ok("none yet (written on first launch)".to_owned());
    }
    let text = std::fs::read(&paths.config_file)
        .with_context(|| format!("could not read {}", paths.config_file.display()))
        .map_err(|e| format!("{e:#}"))?;
    let config: AppConfig = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "{} is not valid: {e}\nhint: fix it, or move it aside and Jarvis writes a fresh one",
            paths.config_file.display()
        )
    })?;
    if config.schema_version > jarvis_migrations::CURRENT_SCHEMA_VERSION {
        return Err(format!(
            "data schema {} is newer than this Jarvis understands ({})\nhint: update Jarvis",
            config.schema_version,
            jarvis_migrations::CURRENT_SCHEMA_VERSION
        ));
    }
    Ok(format!("schema {}", config.schema_version))
}
