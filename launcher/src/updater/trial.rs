//! A version switched to by an update is on trial: `jarvis up` gives it
//! [`MAX_ATTEMPTS`] tries to reach ready. Reaching ready starts its
//! probation ([`probation`]): only once it has run that long without its
//! core or Redis restarting is the update committed (older version folders
//! go; a launcher it ships replaces this one). If it never reaches ready,
//! or crash-loops during probation, the data goes back to how it was
//! before the trial migrated it, `current` goes back to the previous
//! version (kept until the commit), and the failed version is never
//! offered again. A person quitting during probation is no failure: the
//! next start is on trial again, with its tries counted afresh.

use std::time::Duration;

use anyhow::{Context as _, bail};
use jarvis_dist::manifest::AppVersion;
use jarvis_durable::checkpoint;
use jarvis_migrations::Migrator;

use super::self_update::{replace_launcher, report_failed_replacement};
use super::state::{MAX_ATTEMPTS, Notice, UpdateState};
use super::switch::remove_old_versions;
use crate::hint::hinted;
use crate::install::Install;
use crate::paths::AppPaths;

/// The trial of the version that is about to run.
#[derive(Debug)]
pub struct Trial {
    paths: AppPaths,
    install: Install,
    state: UpdateState,
}

/// What the next start should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Start the version on trial (the try is recorded).
    Try,
    /// It had its tries and was rolled back: choose the app version again.
    RolledBack,
}

impl Trial {
    /// The trial of `running`, if it is the version an update switched to.
    /// A recorded switch that never happened (the old version runs) is
    /// forgotten.
    pub fn begin(
        paths: &AppPaths,
        install: &Install,
        running: Option<AppVersion>,
    ) -> anyhow::Result<Option<Self>> {
        let mut state = UpdateState::load(paths)?;
        match &state.pending {
            Some(p) if Some(p.version) == running => Ok(Some(Self {
                paths: paths.clone(),
                install: install.clone(),
                state,
            })),
            Some(_) => {
                state.pending = None;
                state.save(paths)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Records one more try, or rolls back when the tries are used up.
    pub fn next_attempt(&mut self) -> anyhow::Result<Attempt> {
        let Some(pending) = self.state.pending.as_mut() else {
            bail!("no update is on trial");
        };
        if pending.attempts >= MAX_ATTEMPTS {
            self.roll_back()?;
            return Ok(Attempt::RolledBack);
        }
        // Recorded once per trial: a later try (after a quit during
        // probation) finds the data already migrated for this version.
        if pending.schema_before.is_none() {
            pending.schema_before = Some(Migrator::new(&self.paths.data_dir).schema_version()?);
        }
        pending.attempts += 1;
        self.state.save(&self.paths)?;
        Ok(Attempt::Try)
    }

    /// A try failed with `error`; the next start tries again.
    pub fn failed(&mut self, error: &anyhow::Error) -> anyhow::Result<()> {
        let attempts = self.state.pending.as_ref().map_or(0, |p| p.attempts);
        eprintln!("The new version did not start (try {attempts} of {MAX_ATTEMPTS}): {error:#}");
        self.state.last_error = Some(format!("{error:#}"));
        self.state.save(&self.paths)
    }

    /// The version reached ready: its probation starts.
    pub fn reached_ready(&self, probation: Duration) {
        if let Some(pending) = &self.state.pending {
            eprintln!(
                "Jarvis {} started and is on probation: the update becomes final after {} s without a crash.",
                pending.version,
                probation.as_secs()
            );
        }
    }

    /// Jarvis was asked to stop during probation: not a failure. The next
    /// start is on trial again with its tries counted afresh (the data
    /// schema from before the trial is kept for a rollback).
    pub fn stopped_during_probation(mut self) -> anyhow::Result<()> {
        if let Some(pending) = self.state.pending.as_mut() {
            pending.attempts = 0;
            self.state.save(&self.paths)?;
        }
        Ok(())
    }

    /// The core or Redis kept crashing during probation (`error`, after
    /// the children were stopped): roll back now, without further tries.
    pub fn crash_looped(mut self, error: &anyhow::Error) -> anyhow::Result<()> {
        let version = self.state.pending.as_ref().map(|p| p.version);
        if let Some(version) = version {
            eprintln!("Jarvis {version} kept crashing after it started; rolling the update back.");
        }
        self.state.last_error = Some(format!("{error:#}"));
        self.state.save(&self.paths)?;
        checkpoint("update:crash-looped");
        self.roll_back()
    }

    /// The version ran through its probation: commit it, clear out old
    /// versions and let a launcher it ships replace this one.
    pub fn commit(mut self) -> anyhow::Result<()> {
        let Some(pending) = self.state.pending.take() else {
            return Ok(());
        };
        self.state.last_error = None;
        self.state.notice = Some(Notice::Updated {
            version: pending.version,
            previous: pending.previous,
        });
        self.state.save(&self.paths)?;
        checkpoint("update:committed");
        eprintln!(
            "Jarvis {} ran through its probation; the update is committed.",
            pending.version
        );
        if let Err(e) = remove_old_versions(&self.install) {
            tracing::warn!("could not remove old app versions: {e:#}");
        }
        match replace_launcher(&self.paths, &self.install, pending.version) {
            Ok(true) => eprintln!("The launcher was updated too; it takes over at the next start."),
            Ok(false) => {}
            Err(e) => report_failed_replacement(&e),
        }
        Ok(())
    }

    /// After [`MAX_ATTEMPTS`] failed starts or a crash loop in probation:
    /// the data back to how it was
    /// before the trial migrated it, back to the previous version, and never
    /// offer the failed one again.
    fn roll_back(&mut self) -> anyhow::Result<()> {
        let (paths, install, state) = (&self.paths, &self.install, &mut self.state);
        let Some(pending) = state.pending.take() else {
            bail!("no update to roll back");
        };
        let Some(previous) = pending.previous else {
            return Err(hinted(
                format!(
                    "Jarvis {} does not start and there is no previous version to go back to",
                    pending.version
                ),
                "reinstall Jarvis; your data is untouched",
            ));
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
            "Jarvis {} failed {} and was rolled back to {previous}{}: {reason}",
            pending.version,
            if pending.attempts >= MAX_ATTEMPTS {
                format!("to start {MAX_ATTEMPTS} times")
            } else {
                "during its probation".to_owned()
            },
            restored
                .as_ref()
                .map(|id| format!(" with the data from backup {id}"))
                .unwrap_or_default()
        ));
        state.notice = Some(Notice::RolledBack {
            version: pending.version,
            previous,
            reason,
        });
        state.save(paths)?;
        checkpoint("update:rolled-back");
        eprintln!(
            "Switched back to Jarvis {previous}: {} did not keep running and will not be installed again.",
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
}

/// How long a version switched to by an update must run without a crash
/// before the update is committed: `JARVIS_UPDATE_PROBATION_S`, else 60 s.
pub fn probation() -> Duration {
    const DEFAULT: Duration = Duration::from_secs(60);
    match std::env::var(jarvis_protocol::env::UPDATE_PROBATION_S) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Duration::from_secs)
            .unwrap_or_else(|_| {
                tracing::warn!(value = %s, "ignoring an unreadable update probation; using 60 s");
                DEFAULT
            }),
        Err(_) => DEFAULT,
    }
}
