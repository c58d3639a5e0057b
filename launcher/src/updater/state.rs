//! `<data>/update-state.json`: what the updater remembers across versions
//! (anti-rollback floor, rollout bucket, the version on trial, the one
//! staged in the background, rejected versions, the last error).

use jarvis_dist::manifest::AppVersion;
use jarvis_durable::{Visibility, read_optional, write_atomic};
use serde::{Deserialize, Serialize};

use anyhow::Context as _;

use crate::install::Install;
use crate::paths::AppPaths;

/// Tries a new version gets to reach ready before it is rolled back.
pub const MAX_ATTEMPTS: u32 = 3;
const STATE_FILE: &str = "update-state.json";

/// `<data>/update-state.json`: what the updater must remember across
/// versions (it lives with the user's data, not in the replaceable app).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateState {
    /// The highest version ever accepted (anti-rollback).
    pub highest_accepted: Option<AppVersion>,
    /// This install's staged-rollout bucket, 0–99, drawn once.
    pub bucket: Option<u8>,
    /// A switched-to version that has not yet reached ready.
    pub pending: Option<Pending>,
    /// A version downloaded in the background, switched to at next launch.
    #[serde(default)]
    pub staged: Option<AppVersion>,
    /// Versions that failed their health check; never offered again.
    #[serde(default)]
    pub rejected: Vec<AppVersion>,
    pub last_error: Option<String>,
    /// What the person should hear about the last switch (shown by the UI
    /// until dismissed).
    #[serde(default)]
    pub notice: Option<Notice>,
}

/// The outcome of the last update, for the UI's banner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Notice {
    /// `version` started and was committed.
    Updated {
        version: AppVersion,
        previous: Option<AppVersion>,
    },
    /// `version` failed to start and Jarvis went back to `previous`.
    RolledBack {
        version: AppVersion,
        previous: AppVersion,
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub version: AppVersion,
    pub previous: Option<AppVersion>,
    pub attempts: u32,
    /// The data schema before the first try; a rollback restores the data
    /// if a try migrated it.
    #[serde(default)]
    pub schema_before: Option<u32>,
}

impl UpdateState {
    /// The saved state. An unreadable file is kept aside
    /// (`update-state.json.corrupt-<time>`) and rebuilt from what can be
    /// read of it and from the installed versions, so the anti-rollback
    /// floor never goes below any version this install ever held.
    pub fn load(paths: &AppPaths) -> anyhow::Result<Self> {
        let path = paths.data_dir.join(STATE_FILE);
        let Some(bytes) = read_optional("update state", &path)? else {
            return Ok(Self::default());
        };
        match serde_json::from_slice(&bytes) {
            Ok(state) => Ok(state),
            Err(e) => Self::rebuild(paths, &path, &bytes, &e.to_string()),
        }
    }

    fn rebuild(
        paths: &AppPaths,
        path: &std::path::Path,
        bytes: &[u8],
        problem: &str,
    ) -> anyhow::Result<Self> {
        let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
        let aside = path.with_file_name(format!("{STATE_FILE}.corrupt-{stamp}"));
        std::fs::rename(path, &aside).with_context(|| {
            format!(
                "could not keep the unreadable update state as '{}'",
                aside.display()
            )
        })?;
        // Whatever fields still read (a file cut short reads as nothing).
        let salvaged: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        let field = |name: &str| salvaged.get(name).cloned().unwrap_or_default();
        let highest: Option<AppVersion> = serde_json::from_value(field("highest_accepted"))
            .ok()
            .flatten();
        let installed = Install::new(&paths.bundle_dir)
            .installed()
            .into_iter()
            .max();
        let mut state = Self {
            highest_accepted: highest.max(installed),
            rejected: serde_json::from_value(field("rejected")).unwrap_or_default(),
            bucket: serde_json::from_value(field("bucket")).ok().flatten(),
            ..Self::default()
        };
        state.last_error = Some(format!(
            "the update state was unreadable ({problem}); it was kept as '{}' and rebuilt",
            aside.display()
        ));
        state.save(paths)?;
        tracing::warn!(aside = %aside.display(), "rebuilt an unreadable update state");
        eprintln!(
            "warning: the update state was unreadable ({problem}); it was kept as '{}' and rebuilt (no version older than {} will be installed)",
            aside.display(),
            state
                .highest_accepted
                .map_or_else(|| "any installed one".to_owned(), |v| v.to_string())
        );
        Ok(state)
    }

    pub fn save(&self, paths: &AppPaths) -> anyhow::Result<()> {
        jarvis_durable::create_private_dir_all("data folder", &paths.data_dir)?;
        let text = serde_json::to_vec_pretty(self)?;
        write_atomic(
            "update state",
            &paths.data_dir.join(STATE_FILE),
            &text,
            Visibility::OwnerOnly,
        )?;
        Ok(())
    }

    pub(super) fn bucket(&mut self) -> u8 {
        *self.bucket.get_or_insert_with(|| {
            let mut b = [0u8; 1];
            // Without randomness everyone lands in bucket 0: first in line,
            // which is the safe side of a staged rollout to err on.
            let _ = getrandom::fill(&mut b);
            b[0] % 100
        })
    }
}
