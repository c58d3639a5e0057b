//! `jarvis migrate ...` and `jarvis backup ...`: the data folder's schema,
//! its migrations and its backups.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use jarvis_migrations::{Backup, Migrator};
use serde::Serialize;

use crate::maintenance::{
    REDIS_STOP_DEADLINE, installed_app, lock_stopped, migrate_data, start_redis,
};
use crate::paths::AppPaths;

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// The data schema, the pending migrations and any interrupted run.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Run the pending migrations now (Jarvis must be stopped).
    Run {
        /// Only say what would run.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Every backup, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Back up the settings and memory now (Jarvis must be stopped).
    Create {
        #[arg(long)]
        json: bool,
    },
    /// Put a backup's files back exactly (Jarvis must be stopped).
    Restore {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
struct MigrateStatus {
    schema_version: u32,
    current_schema_version: u32,
    pending: Vec<jarvis_migrations::StepReport>,
    interrupted: Option<jarvis_migrations::Journal>,
}

pub async fn migrate(paths: &AppPaths, command: MigrateCommand) -> anyhow::Result<ExitCode> {
    // The data goes as far as the installed app reads, never further
    // (the launcher may be newer than the app it runs).
    let app = installed_app(paths)?;
    let target = app.schema.max;
    let migrator = Migrator::new(&paths.data_dir).with_target(target);
    match command {
        MigrateCommand::Status { json } => {
            let (from, _) = migrator.plan()?;
            let dry = dry_report(&migrator)?;
            let status = MigrateStatus {
                schema_version: from,
                current_schema_version: target,
                pending: dry,
                interrupted: migrator.interrupted()?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "data schema {} (this Jarvis: {target})",
                    status.schema_version
                );
                if status.pending.is_empty() {
                    println!("no migrations pending");
                }
                for step in &status.pending {
                    println!(
                        "pending: {} {} (touches {})",
                        step.id,
                        step.description,
                        step.touches.join(", ")
                    );
                }
                if let Some(j) = &status.interrupted {
                    println!(
                        "interrupted: a run from {} to {} was cut short; the next start restores backup {} and runs it again",
                        j.from, j.to, j.backup_id
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Run { dry_run, json } => {
            if dry_run {
                let steps = dry_report(&migrator)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&steps)?);
                } else if steps.is_empty() {
                    println!("Nothing to migrate.");
                } else {
                    for s in &steps {
                        println!(
                            "would run {}: {} (touches {})",
                            s.id,
                            s.description,
                            s.touches.join(", ")
                        );
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let _lock = lock_stopped(paths)?;
            if let Some(backup) = migrator.recover()? {
                eprintln!(
                    "Rolled back an interrupted migration (backup {} restored).",
                    backup.id
                );
            }
            let (from, pending) = migrator.plan()?;
            if pending.is_empty() {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"from": from, "to": from, "steps": []})
                    );
                } else {
                    println!("Nothing to migrate: data schema {from} is current.");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let redis = start_redis(paths, &app).await?;
            let redis = migrate_data(paths, redis, target).await?;
            redis.stop(REDIS_STOP_DEADLINE).await?;
            let to = migrator.schema_version()?;
            if json {
                println!("{}", serde_json::json!({"from": from, "to": to}));
            } else {
                println!("Migrated data schema {from} to {to}.");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn backup(paths: &AppPaths, command: BackupCommand) -> anyhow::Result<ExitCode> {
    let migrator = Migrator::new(&paths.data_dir);
    let backups = migrator.backups();
    match command {
        BackupCommand::List { json } => {
            let list = backups.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!(
                    "No backups yet (one is made before every data migration; `jarvis backup create` makes one now)."
                );
            } else {
                for b in &list {
                    print_backup(b);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Create { json } => {
            if !paths.config_file.exists() {
                bail!(
                    "there is no Jarvis data at '{}' to back up",
                    paths.data_dir.display()
                );
            }
            let _lock = lock_stopped(paths)?;
            let schema = migrator.schema_version()?;
            let backup = backups.create(
                &format!("manual-schema{schema}"),
                schema,
                "manual",
                &[
                    "config.json",
                    jarvis_migrations::SCHEMA_RECORD,
                    "redis/dump.rdb",
                    "redis/appendonlydir",
                ],
            )?;
            backups.prune(&backup.id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&backup)?);
            } else {
                println!("Created backup {}", backup.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Restore { id, json } => {
            let _lock = lock_stopped(paths)?;
            let backup = backups.restore(&id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&backup)?);
            } else {
                println!(
                    "Restored backup {} (data schema {}); the next `jarvis up` starts from it.",
                    backup.id, backup.schema_version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_backup(b: &Backup) {
    println!(
        "{}  schema {}  {}  {} files, {}  ({})",
        b.id,
        b.schema_version,
        b.created_at,
        b.files.len(),
        jarvis_download::human_bytes(b.size),
        b.reason
    );
}

fn dry_report(migrator: &Migrator) -> anyhow::Result<Vec<jarvis_migrations::StepReport>> {
    let (_, pending) = migrator.plan()?;
    Ok(pending
        .iter()
        .map(|m| jarvis_migrations::StepReport {
            id: m.id,
            description: m.description,
            touches: m.touches.iter().map(|t| format!("{t:?}")).collect(),
        })
        .collect())
}
