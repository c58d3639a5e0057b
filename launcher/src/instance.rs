//! One launcher per data folder: the lock, `run/instance.json`, and the
//! clean-up of children a killed launcher left behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jarvis_durable::{Visibility, read_optional, remove_if_exists, write_atomic};
use jarvis_protocol::instance::{ChildRecord, Instance};
use jarvis_redis_bundle::process;

use crate::hint::hinted;
use crate::paths::{AppPaths, CORE_BINARY_NAME, CORE_V3_BINARY_NAME};

/// Held for the launcher's whole life; released by the OS when the process
/// dies however it dies, so a stale lock cannot exist.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// The outcome of trying to become the data folder's launcher.
#[derive(Debug)]
pub enum LockAttempt {
    Acquired(InstanceLock),
    /// Another launcher holds it; what it published, if it got that far.
    HeldBy(Option<Box<Instance>>),
}

pub fn try_lock(paths: &AppPaths) -> anyhow::Result<LockAttempt> {
    let path = paths.lock_file();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("could not open the instance lock '{}'", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(LockAttempt::Acquired(InstanceLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(LockAttempt::HeldBy(
            read(paths).ok().flatten().map(Box::new),
        )),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("could not lock the instance lock '{}'", path.display()))
        }
    }
}

/// True when a launcher holds the data folder's lock right now.
pub fn is_running(paths: &AppPaths) -> anyhow::Result<bool> {
    if !paths.lock_file().exists() {
        return Ok(false);
    }
    Ok(matches!(try_lock(paths)?, LockAttempt::HeldBy(_)))
}

pub fn read(paths: &AppPaths) -> anyhow::Result<Option<Instance>> {
    let path = paths.instance_file();
    let Some(bytes) = read_optional("instance file", &path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("the instance file '{}' is not valid", path.display()))
}

/// The running instance's record, or the error that says Jarvis is not
/// running and how to start it (for commands that talk to it).
pub fn require_running(paths: &AppPaths) -> anyhow::Result<Instance> {
    read(paths)?.ok_or_else(|| {
        hinted(
            "Jarvis is not running",
            "start it with `jarvis` (or `jarvis up`)",
        )
    })
}

pub fn write(paths: &AppPaths, instance: &Instance) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(instance).context("could not encode instance")?;
    write_atomic(
        "instance file",
        &paths.instance_file(),
        text.as_bytes(),
        Visibility::OwnerOnly,
    )?;
    Ok(())
}

pub fn write_token(paths: &AppPaths, token: &str) -> anyhow::Result<()> {
    write_atomic(
        "API token",
        &paths.token_file(),
        format!("{token}\n").as_bytes(),
        Visibility::OwnerOnly,
    )?;
    Ok(())
}

/// Removes what only a running instance should have left.
pub fn remove_runtime_files(paths: &AppPaths) -> anyhow::Result<()> {
    remove_if_exists("instance file", &paths.instance_file())?;
    remove_if_exists("API token", &paths.token_file())?;
    remove_if_exists("Redis pid file", &paths.redis_pid_file())?;
    Ok(())
}

/// Called with the lock held: stops children a killed launcher left behind,
/// so two Redis processes never share one data folder. A process counts as
/// ours only if its name matches and it runs in our folder (and, for pids
/// from `instance.json`, started when we recorded).
pub async fn stop_orphans(paths: &AppPaths) -> anyhow::Result<Vec<u32>> {
    let mut stopped = Vec::new();
    let recorded = read(paths).unwrap_or_else(|e| {
        tracing::warn!("ignoring an unreadable instance file: {e:#}");
        None
    });
    let mut candidates: Vec<(u32, Option<u64>, &[&str], &Path)> = Vec::new();
    if let Some(instance) = &recorded {
        let ChildRecord {
            pid, start_time, ..
        } = &instance.core;
        candidates.push((*pid, *start_time, CORE_NAMES, &paths.data_dir));
        let ChildRecord {
            pid, start_time, ..
        } = &instance.redis;
        candidates.push((*pid, *start_time, REDIS_NAMES, &paths.redis_dir));
    }
    let redis_pid = read_optional("Redis pid file", &paths.redis_pid_file())?
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u32>().ok());
    if let Some(pid) = redis_pid {
        candidates.push((pid, None, REDIS_NAMES, &paths.redis_dir));
    }
    for (pid, start_time, names, cwd) in candidates {
        if stopped.contains(&pid) || !is_ours(pid, start_time, names, cwd) {
            continue;
        }
        let name = names[0];
        tracing::warn!(
            pid,
            name,
            "stopping a process a previous launcher left running"
        );
        eprintln!("Stopping {name} (pid {pid}) left running by a previous Jarvis launch.");
        stop_pid(pid, Duration::from_secs(10)).await;
        stopped.push(pid);
    }
    remove_runtime_files(paths)?;
    Ok(stopped)
}

/// The names a core process may have (either build).
const CORE_NAMES: &[&str] = &[CORE_BINARY_NAME, CORE_V3_BINARY_NAME];
const REDIS_NAMES: &[&str] = &[jarvis_redis_bundle::BINARY_NAME];

fn is_ours(pid: u32, start_time: Option<u64>, names: &[&str], cwd: &Path) -> bool {
    let Some(identity) = process::identity(pid) else {
        return false;
    };
    if start_time.is_some() && identity.start_time.is_some() && start_time != identity.start_time {
        return false;
    }
    let cwd_matches = identity.cwd.as_deref() == Some(cwd);
    identity.runs_one_of(names) && cwd_matches
}

/// `SIGTERM`, wait up to `deadline`, then `SIGKILL`.
pub async fn stop_pid(pid: u32, deadline: Duration) {
    if !process::terminate(pid) {
        return;
    }
    let start = Instant::now();
    while process::identity(pid).is_some() {
        if start.elapsed() > deadline {
            process::kill(pid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
