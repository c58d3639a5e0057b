//! Hints: advice for the person ("run `jarvis models gc`"), kept apart from
//! errors (uv's `Hint`). Errors say what failed and keep their `#[source]`
//! chains; [`hints`] finds the advice that fits anywhere in a chain, and
//! `main` prints it once, after `error:` and every `caused by:`.
//!
//! Two sources: the launcher's own failures carry their hint in a
//! [`Hinted`] error, and the libraries' errors (which know nothing of the
//! command line) get theirs from [`library_hint`], the one place that
//! turns a library's structured error into a command to try.

use std::error::Error as StdError;
use std::fmt;

use jarvis_download::DownloadError;
use jarvis_migrations::MigrationError;
use jarvis_model_registry::RegistryError;
use jarvis_redis_bundle::RedisError;

/// An error of the launcher's own with advice for the person.
#[derive(Debug)]
pub struct Hinted {
    message: String,
    hint: String,
    source: Option<anyhow::Error>,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Hinted {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_ref()
            .map(|e| -> &(dyn StdError + 'static) { e.as_ref() })
    }
}

/// A failure of the launcher's own with a hint.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
        source: None,
    })
}

/// `error` explained by `message` (which becomes the top line) with a hint.
pub fn hinted_with(
    error: impl Into<anyhow::Error>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
        source: Some(error.into()),
    })
}

/// Every hint that applies to `error`'s chain, outermost first, each once.
pub fn hints(error: &anyhow::Error) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for cause in error.chain() {
        let hint = match cause.downcast_ref::<Hinted>() {
            Some(hinted) => Some(hinted.hint.clone()),
            None => library_hint(cause),
        };
        if let Some(hint) = hint
            && !out.contains(&hint)
        {
            out.push(hint);
        }
    }
    out
}

/// The command-line advice for a library error, where there is one.
pub fn library_hint(error: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(error) = error.downcast_ref::<DownloadError>() {
        return match error {
            DownloadError::DiskFull { .. } => Some(
                "free some space (`jarvis models gc` removes old model versions) and run the same command again; the partial download was kept"
                    .to_owned(),
            ),
            _ => None,
        };
    }
    if let Some(error) = error.downcast_ref::<RegistryError>() {
        return match error {
            RegistryError::UnknownModel { .. } => {
                Some("`jarvis models status` lists the catalog's models".to_owned())
            }
            RegistryError::NotInstalled { .. } => {
                Some("`jarvis models list` shows what is installed".to_owned())
            }
            RegistryError::NoCatalogMatch { .. } => {
                Some("name it with `--name NAME --version VERSION`".to_owned())
            }
            RegistryError::UnrecognisedModel { .. } => Some(
                "say what it is with `--role llm` (chat) or `--role stt` (speech to text)"
                    .to_owned(),
            ),
            RegistryError::Download(error) => library_hint(error),
            _ => None,
        };
    }
    if let Some(error) = error.downcast_ref::<MigrationError>() {
        return match error {
            MigrationError::NoBackup(_) => {
                Some("`jarvis backup list` shows the backups".to_owned())
            }
            MigrationError::TooOld { .. } => {
                Some("update through an intermediate Jarvis version".to_owned())
            }
            _ => None,
        };
    }
    if let Some(error) = error.downcast_ref::<RedisError>() {
        return match error {
            RedisError::NotFound { env_var, .. } => Some(format!(
                "install one (Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`), or set {env_var} to its path"
            )),
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_come_from_every_level_of_the_chain_once_each() {
        let inner = hinted("the core did not start", "run `jarvis doctor`");
        let outer = hinted_with(inner, "Jarvis could not start", "run `jarvis doctor`");
        let outer = outer.context("while starting");
        assert_eq!(hints(&outer), vec!["run `jarvis doctor`".to_owned()]);
        let chain: Vec<String> = outer.chain().map(ToString::to_string).collect();
        assert_eq!(
            chain,
            [
                "while starting",
                "Jarvis could not start",
                "the core did not start"
            ]
        );
    }

    #[test]
    fn a_missing_redis_server_gets_the_package_to_install() {
        let error = RedisError::NotFound {
            bundle: "/opt/jarvis".into(),
            env_var: "JARVIS_REDIS_SERVER",
        };
        let hint = library_hint(&error).unwrap_or_default();
        assert!(hint.contains("apt-get install redis-server"), "{hint}");
        assert!(hint.contains("JARVIS_REDIS_SERVER"), "{hint}");
    }

    #[test]
    fn library_errors_get_their_command_line_advice_here() {
        let error = anyhow::Error::new(MigrationError::NoBackup("x".into())).context("restore");
        assert_eq!(
            hints(&error),
            vec!["`jarvis backup list` shows the backups"]
        );
        assert!(!error.root_cause().to_string().contains("hint"));
    }
}
