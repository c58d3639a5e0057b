//! Data operations shared by `jarvis up` and the maintenance commands
//! (`jarvis migrate run`, `backup`, `update apply`): running migrations
//! with Redis up and the core down, starting the folder's Redis alone,
//! and holding the instance lock while Jarvis is stopped.

use std::time::Duration;

use jarvis_migrations::Migrator;
use jarvis_redis_bundle::{RedisConfig, RedisServer};

use crate::hint::hinted;
use crate::install::{AppChoice, Install};
use crate::instance::{self, InstanceLock, LockAttempt};
use crate::paths::AppPaths;
use crate::secrets;

/// How long Redis gets to save and shut down before it is killed.
pub const REDIS_STOP_DEADLINE: Duration = Duration::from_secs(20);
/// How long a freshly started Redis gets to answer `PING`.
pub const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs pending data migrations with Redis up and the core not started.
/// On failure Redis is stopped and the folder restored from the backup.
pub async fn migrate_data(
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

/// Takes the instance lock, refusing while Jarvis runs.
pub fn lock_stopped(paths: &AppPaths) -> anyhow::Result<InstanceLock> {
    paths.create_tree()?;
    match instance::try_lock(paths)? {
        LockAttempt::Acquired(lock) => Ok(lock),
        LockAttempt::HeldBy(_) => Err(hinted(
            "Jarvis is running",
            "stop it first with `jarvis stop`",
        )),
    }
}

/// The app version `jarvis up` would run (read only: no pointer moves),
/// whose Redis and data schema the maintenance commands work with; the
/// development layout in a checkout.
pub fn installed_app(paths: &AppPaths) -> anyhow::Result<AppChoice> {
    Ok(Install::new(&paths.bundle_dir).select()?.app)
}

/// Starts the folder's Redis for a maintenance command: the one `app`
/// runs with.
pub async fn start_redis(paths: &AppPaths, app: &AppChoice) -> anyhow::Result<RedisServer> {
    let binary = paths.locate_redis(app)?;
    Ok(RedisServer::start(
        &binary,
        redis_config(paths),
        &paths.logs_dir.join("redis.log"),
        REDIS_READY_TIMEOUT,
    )
    .await?)
}

/// A configuration with fresh passwords and a port Redis picks itself.
pub fn redis_config(paths: &AppPaths) -> RedisConfig {
    RedisConfig {
        dir: paths.redis_dir.clone(),
        // Picked when Redis starts, so no other process can take it first.
        port: 0,
        pid_file: paths.redis_pid_file(),
        launcher_password: secrets::random_hex(24),
        core_password: secrets::random_hex(24),
    }
}
