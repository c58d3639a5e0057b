//! The core's configuration, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use jarvis_protocol::env;

/// Why the environment does not describe a usable core.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set; the core is started by the `jarvis` launcher, which sets it")]
    Missing(&'static str),
    #[error(
        "{var} names '{path}', which is not an existing folder (the core never creates folders)"
    )]
    NotAFolder { var: &'static str, path: PathBuf },
    #[error("{var} is '{value}', which is not a loopback address like 127.0.0.1:0")]
    BadAddress { var: &'static str, value: String },
    #[error("{0} is empty; a per-launch API token is required")]
    EmptyToken(&'static str),
    #[error("{var} is '{value}', which is not the number of an inherited file descriptor")]
    BadDescriptor { var: &'static str, value: String },
}

/// Everything the core needs to start.
#[derive(Clone)]
pub struct CoreConfig {
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub redis_url: String,
    pub api_token: String,
    pub listen: SocketAddr,
    /// An inherited listening socket to serve on instead of binding
    /// `listen` (see [`env::CORE_LISTEN_FD`]).
    pub listen_fd: Option<i32>,
    /// Models Jarvis requires (reported as missing by `/readyz`).
    pub required_models: Vec<String>,
    /// CPU threads for the models (`None`: every core).
    pub threads: Option<usize>,
}

impl std::fmt::Debug for CoreConfig {
    // Secrets (the token, the Redis password inside the URL) stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreConfig")
            .field("data_dir", &self.data_dir)
            .field("models_dir", &self.models_dir)
            .field("listen", &self.listen)
            .field("listen_fd", &self.listen_fd)
            .finish_non_exhaustive()
    }
}

impl CoreConfig {
    /// Reads the configuration through `var` (usually `std::env::var`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| var(name).ok_or(ConfigError::Missing(name));
        let folder = |name: &'static str| -> Result<PathBuf, ConfigError> {
            let path = PathBuf::from(required(name)?);
            if path.is_dir() {
                Ok(path)
            } else {
                Err(ConfigError::NotAFolder { var: name, path })
            }
        };
        let data_dir = folder(env::DATA_DIR)?;
        let models_dir = folder(env::MODELS_DIR)?;
        let redis_url = required(env::REDIS_URL)?;
        let api_token = required(env::API_TOKEN)?;
        if api_token.trim().is_empty() {
            return Err(ConfigError::EmptyToken(env::API_TOKEN));
        }
        let listen_raw = var(env::CORE_ADDR).unwrap_or_else(|| "127.0.0.1:0".to_owned());
        let listen: SocketAddr = listen_raw
            .parse()
            .ok()
            .filter(|a: &SocketAddr| a.ip().is_loopback())
            .ok_or(ConfigError::BadAddress {
                var: env::CORE_ADDR,
                value: listen_raw,
            })?;
        let listen_fd = var(env::CORE_LISTEN_FD)
            .map(|raw| {
                raw.trim()
                    .parse::<i32>()
                    .ok()
                    // 0-2 are stdin, stdout and stderr.
                    .filter(|fd| *fd > 2)
                    .ok_or(ConfigError::BadDescriptor {
                        var: env::CORE_LISTEN_FD,
                        value: raw,
                    })
            })
            .transpose()?;
        let required_models = var(env::REQUIRED_MODELS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        // Anything but a positive number means "every core".
        let threads = var(env::THREADS)
            .and_then(|t| t.trim().parse::<usize>().ok())
            .filter(|t| *t > 0);
        Ok(Self {
            data_dir,
            models_dir,
            redis_url,
            api_token,
            listen,
            listen_fd,
            required_models,
            threads,
        })
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use std::collections::HashMap;

    use super::*;

    fn vars(dir: &str) -> HashMap<&'static str, String> {
        HashMap::from([
            (env::DATA_DIR, dir.to_owned()),
            (env::MODELS_DIR, dir.to_owned()),
            (env::REDIS_URL, "redis://127.0.0.1:1/0".to_owned()),
            (env::API_TOKEN, "t".to_owned()),
        ])
    }

    #[test]
    fn reads_all_variables_and_defaults_to_an_ephemeral_loopback_port() {
        let dir = std::env::temp_dir();
        let v = vars(dir.to_str().unwrap());
        let c = CoreConfig::from_env(|k| v.get(k).cloned()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.api_token, "t");
    }

    #[test]
    fn refuses_a_missing_folder_instead_of_creating_it() {
        let mut v = vars("/nonexistent/jarvis-data");
        v.insert(env::MODELS_DIR, std::env::temp_dir().display().to_string());
        let err = CoreConfig::from_env(|k| v.get(k).cloned()).unwrap_err();
        assert!(matches!(err, ConfigError::NotAFolder { .. }), "{err}");
        assert!(!std::path::Path::new("/nonexistent/jarvis-data").exists());
    }

    #[test]
    fn refuses_a_non_loopback_address() {
        let dir = std::env::temp_dir();
        let mut v = vars(dir.to_str().unwrap());
        v.insert(env::CORE_ADDR, "0.0.0.0:8080".to_owned());
        let err = CoreConfig::from_env(|k| v.get(k).cloned()).unwrap_err();
        assert!(matches!(err, ConfigError::BadAddress { .. }), "{err}");
    }

    #[test]
    fn reads_an_inherited_socket_and_refuses_the_standard_streams() {
        let dir = std::env::temp_dir();
        let mut v = vars(dir.to_str().unwrap());
        assert_eq!(
            CoreConfig::from_env(|k| v.get(k).cloned())
                .unwrap()
                .listen_fd,
            None
        );
        v.insert(env::CORE_LISTEN_FD, "7".to_owned());
        let c = CoreConfig::from_env(|k| v.get(k).cloned()).unwrap();
        assert_eq!(c.listen_fd, Some(7));
        for bad in ["1", "-3", "socket"] {
            v.insert(env::CORE_LISTEN_FD, bad.to_owned());
            let err = CoreConfig::from_env(|k| v.get(k).cloned()).unwrap_err();
            assert!(
                matches!(err, ConfigError::BadDescriptor { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let dir = std::env::temp_dir();
        let mut v = vars(dir.to_str().unwrap());
        v.insert(env::API_TOKEN, "supersecret".to_owned());
        let c = CoreConfig::from_env(|k| v.get(k).cloned()).unwrap();
        assert!(!format!("{c:?}").contains("supersecret"));
    }
}
