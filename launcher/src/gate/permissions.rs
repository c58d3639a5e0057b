//! Standing permissions and allowed folders: `<data>/permissions.json`,
//! owned by the launcher (the core never sees it).
//!
//! Changed only under an exclusive lock on `permissions.lock` (read,
//! change, write atomically), so `jarvis permissions ...` in a terminal
//! and a decision in the running launcher never lose each other's change.
//! A file that cannot be read grants nothing: the gate fails closed.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use jarvis_actions::{DecidedBy, Tool};
use jarvis_durable::{Visibility, write_atomic};
use serde::{Deserialize, Serialize};

/// How far a standing permission reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every request for the tool (only tiers that cannot leak or destroy).
    Always,
    /// Requests for the tool from one conversation.
    Conversation,
}

/// One standing permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub tool: Tool,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// RFC 3339, UTC.
    pub granted_at: String,
    pub granted_by: DecidedBy,
}

/// Why a folder could not be allowed.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("cannot use {}: {source}", path.display())]
    NotFound {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error(transparent)]
    Store(anyhow::Error),
}

/// What the person allowed for good.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Folders whose files `read_file` and `open_path` may reach (as the
    /// person gave them; resolved when checked).
    #[serde(default)]
    pub folders: Vec<PathBuf>,
}

pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("permissions.json")
}

impl Permissions {
    /// Reads the file; a missing file is no permission at all.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = file(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not valid", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
        }
    }

    /// Reads, changes and writes the file under the lock; returns the result.
    pub fn update<T>(
        data_dir: &Path,
        change: impl FnOnce(&mut Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let lock_path = data_dir.join("permissions.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("could not open {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("could not lock {}", lock_path.display()))?;
        let mut permissions = Self::load(data_dir)?;
        let value = change(&mut permissions)?;
        let json = serde_json::to_vec_pretty(&permissions)?;
        write_atomic(
            "permissions file",
            &file(data_dir),
            &json,
            Visibility::OwnerOnly,
        )?;
        Ok(value)
    }

    /// Adds `path` (resolved; it must be a folder) to the allowed folders;
    /// returns it resolved, and whether it was new.
    pub fn allow_folder(data_dir: &Path, path: &Path) -> Result<(PathBuf, bool), FolderError> {
        let resolved = path
            .canonicalize()
            .map_err(|source| FolderError::NotFound {
                path: path.to_owned(),
                source,
            })?;
        if !resolved.is_dir() {
            return Err(FolderError::NotAFolder(resolved));
        }
        let added = Self::update(data_dir, |p| {
            if p.folders.contains(&resolved) {
                return Ok(false);
            }
            p.folders.push(resolved.clone());
            Ok(true)
        })
        .map_err(FolderError::Store)?;
        Ok((resolved, added))
    }

    /// Removes `path` (resolved where it still exists) from the allowed
    /// folders; returns it and how many entries went.
    pub fn forget_folder(data_dir: &Path, path: &Path) -> anyhow::Result<(PathBuf, usize)> {
        let resolved = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        let removed = Self::update(data_dir, |p| {
            let before = p.folders.len();
            p.folders.retain(|f| f != &resolved);
            Ok(before - p.folders.len())
        })?;
        Ok((resolved, removed))
    }

    /// The standing permission that covers `tool` in `conversation`, if any.
    /// An `always` grant for a tier that may not be always allowed (a
    /// hand-edited file) covers nothing.
    pub fn covering(&self, tool: Tool, conversation: Option<&str>) -> Option<&Grant> {
        self.grants.iter().find(|g| {
            g.tool == tool
                && match g.scope {
                    Scope::Always => tool.tier().may_always_allow(),
                    Scope::Conversation => {
                        conversation.is_some() && g.conversation_id.as_deref() == conversation
                    }
                }
        })
    }

    /// Adds a grant (replacing the same one).
    pub fn grant(&mut self, grant: Grant) {
        self.grants.retain(|g| {
            !(g.tool == grant.tool
                && g.scope == grant.scope
                && g.conversation_id == grant.conversation_id)
        });
        self.grants.push(grant);
    }

    /// Removes the grants for `tool` (all of them, or one conversation's);
    /// returns how many went.
    pub fn revoke(&mut self, tool: Tool, conversation: Option<&str>) -> usize {
        let before = self.grants.len();
        self.grants.retain(|g| {
            !(g.tool == tool
                && (conversation.is_none() || g.conversation_id.as_deref() == conversation))
        });
        before - self.grants.len()
    }

    /// The allowed folder that holds `path` once both are resolved (symlinks
    /// followed, `..` gone); `Err` says why not, in words.
    pub fn resolve_allowed(&self, path: &Path) -> Result<PathBuf, String> {
        if self.folders.is_empty() {
            return Err("no folder is allowed yet (`jarvis permissions allow-folder PATH`)".into());
        }
        let resolved = path
            .canonicalize()
            .map_err(|e| format!("cannot reach {}: {e}", path.display()))?;
        for folder in &self.folders {
            if let Ok(root) = folder.canonicalize()
                && resolved.starts_with(&root)
            {
                return Ok(resolved);
            }
        }
        Err(format!(
            "{} is outside the folders you allowed{}",
            path.display(),
            if resolved == path {
                String::new()
            } else {
                format!(" (it leads to {})", resolved.display())
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn grant(tool: Tool, scope: Scope, conversation: Option<&str>) -> Grant {
        Grant {
            tool,
            scope,
            conversation_id: conversation.map(str::to_owned),
            granted_at: String::new(),
            granted_by: DecidedBy::Ui,
        }
    }

    #[test]
    fn grants_cover_their_scope_only() {
        let mut p = Permissions::default();
        p.grant(grant(Tool::WriteNote, Scope::Always, None));
        p.grant(grant(Tool::ReadFile, Scope::Conversation, Some("c1")));
        // A hand-written "always" for a tier that may not have one.
        p.grant(grant(Tool::OpenUrl, Scope::Always, None));
        assert!(p.covering(Tool::WriteNote, None).is_some());
        assert!(p.covering(Tool::ReadFile, Some("c1")).is_some());
        assert!(p.covering(Tool::ReadFile, Some("c2")).is_none());
        assert!(p.covering(Tool::ReadFile, None).is_none());
        assert!(p.covering(Tool::OpenUrl, None).is_none());
        assert_eq!(p.revoke(Tool::ReadFile, None), 1);
        assert!(p.covering(Tool::ReadFile, Some("c1")).is_none());
    }

    #[test]
    fn allowed_folders_resolve_symlinks_and_parents() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(allowed.join("a.txt"), "a").unwrap();
        std::fs::write(outside.join("secret.txt"), "s").unwrap();
        let p = Permissions {
            grants: Vec::new(),
            folders: vec![allowed.clone()],
        };
        assert!(p.resolve_allowed(&allowed.join("a.txt")).is_ok());
        assert!(p.resolve_allowed(&outside.join("secret.txt")).is_err());
        assert!(
            p.resolve_allowed(&allowed.join("../outside/secret.txt"))
                .is_err()
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.join("secret.txt"), allowed.join("link.txt"))
                .unwrap();
            let e = p.resolve_allowed(&allowed.join("link.txt")).unwrap_err();
            assert!(e.contains("leads to"), "{e}");
        }
        assert!(
            Permissions::default()
                .resolve_allowed(&allowed)
                .unwrap_err()
                .contains("no folder")
        );
    }

    #[test]
    fn updates_persist_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        Permissions::update(dir.path(), |p| {
            p.grant(grant(Tool::SystemInfo, Scope::Always, None));
            Ok(())
        })
        .unwrap();
        let loaded = Permissions::load(dir.path()).unwrap();
        assert_eq!(loaded.grants.len(), 1);
        std::fs::write(file(dir.path()), "{broken").unwrap();
        assert!(
            Permissions::load(dir.path()).is_err(),
            "a broken file grants nothing"
        );
    }
}
