//! `jarvis doctor`'s checks, shared by the terminal command and the UI's
//! status screen: each prerequisite, and on failure what is wrong and how
//! to fix it.

use std::path::PathBuf;

use anyhow::Context as _;
use jarvis_protocol::env;
use serde::Serialize;

use crate::config::AppConfig;
use crate::hint::{hinted, hints};
use crate::maintenance::installed_app;
use crate::paths::AppPaths;

/// One check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found, or what is wrong.
    pub detail: String,
    /// How to fix a failed check.
    pub hints: Vec<String>,
}

impl Check {
    /// A verdict from a check's result; a failure's hints come from the
    /// error chain, as `report` finds them for a failed command.
    fn from_result(name: &'static str, result: anyhow::Result<String>) -> Self {
        match result {
            Ok(detail) => Self {
                name,
                ok: true,
                detail,
                hints: Vec::new(),
            },
            Err(error) => Self {
                name,
                ok: false,
                detail: format!("{error:#}"),
                hints: hints(&error),
            },
        }
    }
}

/// Runs every check.
pub async fn run(paths: &AppPaths) -> Vec<Check> {
    vec![
        Check::from_result("redis-server", check_redis(paths).await),
        Check::from_result(
            "jarvis-core",
            installed_app(paths)
                .and_then(|app| paths.require_core_binary(&app))
                .map(|p| format!("found at {}", p.display())),
        ),
        Check::from_result("data folder", check_data_dir(paths)),
        Check::from_result("config file", check_config(paths)),
        Check::from_result(
            "loopback network",
            std::net::TcpListener::bind(("127.0.0.1", 0))
                .map(|_| "can listen on 127.0.0.1".to_owned())
                .map_err(|e| {
                    hinted(
                        format!("cannot listen on 127.0.0.1: {e}"),
                        "check firewall or sandbox settings",
                    )
                }),
        ),
    ]
}

async fn check_redis(paths: &AppPaths) -> anyhow::Result<String> {
    let binary = paths.locate_redis(&installed_app(paths)?)?;
    let output = tokio::process::Command::new(&binary)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("'{}' does not run", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or("unknown version");
    Ok(format!("{} ({version})", binary.display()))
}

fn check_data_dir(paths: &AppPaths) -> anyhow::Result<String> {
    let dir = &paths.data_dir;
    let existing = dir.ancestors().find(|p| p.exists()).map(PathBuf::from);
    let Some(existing) = existing else {
        anyhow::bail!("no existing parent folder of {}", dir.display());
    };
    let probe = tempfile_in(&existing).map_err(|e| {
        hinted(
            format!("{} is not writable: {e}", existing.display()),
            format!(
                "fix its permissions or set {} to a writable folder",
                env::HOME
            ),
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

fn check_config(paths: &AppPaths) -> anyhow::Result<String> {
    if !paths.config_file.exists() {
        return Ok("none yet (written on first launch)".to_owned());
    }
    let text = std::fs::read(&paths.config_file)
        .with_context(|| format!("could not read {}", paths.config_file.display()))?;
    let config: AppConfig = serde_json::from_slice(&text).map_err(|e| {
        hinted(
            format!("{} is not valid: {e}", paths.config_file.display()),
            "fix it, or move it aside and Jarvis writes a fresh one",
        )
    })?;
    if config.schema_version > jarvis_migrations::CURRENT_SCHEMA_VERSION {
        return Err(hinted(
            format!(
                "data schema {} is newer than this Jarvis understands ({})",
                config.schema_version,
                jarvis_migrations::CURRENT_SCHEMA_VERSION
            ),
            "update Jarvis",
        ));
    }
    Ok(format!("schema {}", config.schema_version))
}
