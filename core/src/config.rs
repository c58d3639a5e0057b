//! The core's configuration, read once from the environment.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

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
    #[error("{var} is '{value}', which is not an address like 0.0.0.0:8080")]
    BadServerAddress { var: &'static str, value: String },
    #[error("{var} is '{value}'; use 'desktop' or 'server'")]
    BadDeployment { var: &'static str, value: String },
    #[error("{var} holds '{value}', which is not an IP address or a CIDR range like 10.0.0.0/8")]
    BadProxy { var: &'static str, value: String },
    #[error("{var} is '{value}', which is not a whole number")]
    BadNumber { var: &'static str, value: String },
    #[error("{var} holds '{value}', which is not an origin like https://app.example")]
    BadOrigin { var: &'static str, value: String },
    #[error("{0} is empty; a per-launch API token is required")]
    EmptyToken(&'static str),
    #[error("{var} is '{value}', which is not the number of an inherited file descriptor")]
    BadDescriptor { var: &'static str, value: String },
}

/// How the core is deployed.
#[derive(Debug, Clone, PartialEq)]
pub enum Deployment {
    /// Started by the launcher on a person's computer: one per-launch
    /// token, loopback only, the launcher's Redis.
    Desktop,
    /// One of N stateless replicas behind a load balancer, serving many
    /// users with API keys.
    Server(ServerSettings),
}

/// What server mode adds.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// `Host` values accepted (lowercase); `None`: any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins browsers may call from (CORS).
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpRange>,
    /// Requests per user per minute over all replicas; 0: no limit.
    pub rate_limit_per_minute: u32,
    /// How long a stopping replica lets running turns finish.
    pub drain: Duration,
}

/// An address range: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    bits: u8,
}

impl IpRange {
    /// `10.0.0.1`, `10.0.0.0/8`, `::1` or `fd00::/8`.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr.parse::<IpAddr>().ok()?, Some(bits.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Self { addr, bits })
    }

    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let prefix = |a: u128, b: u128, width: u32| {
            let bits = u32::from(self.bits);
            bits == 0 || (a ^ b) >> (width - bits) == 0
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix(u128::from(u32::from(net)), u128::from(u32::from(ip)), 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix(u128::from(net), u128::from(ip), 128),
            _ => false,
        }
    }
}

/// Where memory is (one Redis or a cluster) and when a write counts: what
/// the server and `jarvis-core users` both read.
#[derive(Clone)]
pub struct RedisConfig {
    /// One URL, or a cluster's seed URLs separated by commas.
    pub url: String,
    /// The CA of a `rediss://` server's certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// Treat a single Redis URL as a cluster seed.
    pub cluster: bool,
    /// Replicas that must have a write before it is acknowledged.
    pub wait_replicas: u32,
}

impl std::fmt::Debug for RedisConfig {
    // The URL may hold a password: it stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("ca_file", &self.ca_file)
            .field("cluster", &self.cluster)
            .field("wait_replicas", &self.wait_replicas)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Reads `JARVIS_REDIS_URL` and its companions through `var`.
    pub fn from_env(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let raw_wait = number(var, env::REDIS_WAIT_REPLICAS, 0)?;
        let wait_replicas = u32::try_from(raw_wait).map_err(|_| ConfigError::BadNumber {
            var: env::REDIS_WAIT_REPLICAS,
            value: raw_wait.to_string(),
        })?;
        Ok(Self {
            url: var(env::REDIS_URL).ok_or(ConfigError::Missing(env::REDIS_URL))?,
            ca_file: var(env::REDIS_CA_FILE)
                .filter(|p| !p.trim().is_empty())
                .map(PathBuf::from),
            cluster: var(env::REDIS_CLUSTER).is_some_and(|v| v.trim() == "1"),
            wait_replicas,
        })
    }
}

/// Everything the core needs to start.
#[derive(Clone)]
pub struct CoreConfig {
    pub data_dir: PathBuf,
    pub models_dir: PathBuf,
    pub redis: RedisConfig,
    pub deployment: Deployment,
    /// Desktop mode's per-launch token (empty in server mode).
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
            .field("deployment", &self.deployment)
            .field("redis", &self.redis)
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
        let redis = RedisConfig::from_env(&var)?;
        let deployment = match var(env::DEPLOYMENT).as_deref().map(str::trim) {
            None | Some("" | "desktop") => Deployment::Desktop,
            Some("server") => Deployment::Server(server_settings(&var)?),
            Some(other) => {
                return Err(ConfigError::BadDeployment {
                    var: env::DEPLOYMENT,
                    value: other.to_owned(),
                });
            }
        };
        let api_token = match deployment {
            Deployment::Desktop => {
                let token = required(env::API_TOKEN)?;
                if token.trim().is_empty() {
                    return Err(ConfigError::EmptyToken(env::API_TOKEN));
                }
                token
            }
            // Users' keys replace the one token.
            Deployment::Server(_) => String::new(),
        };
        let listen = match deployment {
            Deployment::Desktop => {
                let raw = var(env::CORE_ADDR).unwrap_or_else(|| "127.0.0.1:0".to_owned());
                raw.parse()
                    .ok()
                    .filter(|a: &SocketAddr| a.ip().is_loopback())
                    .ok_or(ConfigError::BadAddress {
                        var: env::CORE_ADDR,
                        value: raw,
                    })?
            }
            Deployment::Server(_) => {
                let raw = var(env::CORE_ADDR).unwrap_or_else(|| "0.0.0.0:8080".to_owned());
                raw.parse().map_err(|_| ConfigError::BadServerAddress {
                    var: env::CORE_ADDR,
                    value: raw,
                })?
            }
        };
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
            redis,
            deployment,
            api_token,
            listen,
            listen_fd,
            required_models,
            threads,
        })
    }
}

/// The comma-separated, non-empty items of a variable.
fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A whole number from `name`, or `default` when it is unset or empty.
fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match var(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| ConfigError::BadNumber {
            var: name,
            value: raw,
        }),
    }
}

fn server_settings(var: &impl Fn(&str) -> Option<String>) -> Result<ServerSettings, ConfigError> {
    let hosts = list(var(env::ALLOWED_HOSTS));
    let allowed_origins = list(var(env::ALLOWED_ORIGINS))
        .into_iter()
        .map(|origin| {
            let plain = origin.trim_end_matches('/').to_ascii_lowercase();
            let ok = (plain.starts_with("https://") || plain.starts_with("http://"))
                && !plain.contains(['*', ' ']);
            if ok {
                Ok(plain)
            } else {
                Err(ConfigError::BadOrigin {
                    var: env::ALLOWED_ORIGINS,
                    value: origin,
                })
            }
        })
        .collect::<Result<_, _>>()?;
    let trusted_proxies = list(var(env::TRUSTED_PROXIES))
        .into_iter()
        .map(|p| {
            IpRange::parse(&p).ok_or(ConfigError::BadProxy {
                var: env::TRUSTED_PROXIES,
                value: p,
            })
        })
        .collect::<Result<_, _>>()?;
    let rate = number(var, env::RATE_LIMIT_PER_MINUTE, 600)?;
    Ok(ServerSettings {
        allowed_hosts: (!hosts.is_empty())
            .then(|| hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
        allowed_origins,
        trusted_proxies,
        rate_limit_per_minute: u32::try_from(rate).unwrap_or(u32::MAX),
        drain: Duration::from_secs(number(var, env::DRAIN_S, 30)?),
    })
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
    fn server_mode_takes_any_address_and_needs_no_launch_token() {
        let dir = std::env::temp_dir();
        let mut v = vars(dir.to_str().unwrap());
        v.remove(env::API_TOKEN);
        v.insert(env::DEPLOYMENT, "server".to_owned());
        let c = CoreConfig::from_env(|k| v.get(k).cloned()).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        let Deployment::Server(server) = &c.deployment else {
            panic!("not server mode: {:?}", c.deployment);
        };
        assert_eq!(server.allowed_hosts, None);
        assert_eq!(server.rate_limit_per_minute, 600);
        v.insert(env::CORE_ADDR, "[::]:9000".to_owned());
        v.insert(
            env::ALLOWED_HOSTS,
            "Jarvis.Example, jarvis.example:8443".to_owned(),
        );
        v.insert(env::ALLOWED_ORIGINS, "https://app.example/".to_owned());
        v.insert(env::TRUSTED_PROXIES, "10.0.0.0/8,::1".to_owned());
        v.insert(env::RATE_LIMIT_PER_MINUTE, "0".to_owned());
        let c = CoreConfig::from_env(|k| v.get(k).cloned()).unwrap();
        assert_eq!(c.listen, "[::]:9000".parse().unwrap());
        let Deployment::Server(server) = &c.deployment else {
            panic!("not server mode");
        };
        assert_eq!(
            server.allowed_hosts.as_deref(),
            Some(
                &[
                    "jarvis.example".to_owned(),
                    "jarvis.example:8443".to_owned()
                ][..]
            )
        );
        assert_eq!(server.allowed_origins, ["https://app.example"]);
        assert_eq!(server.trusted_proxies.len(), 2);
        assert_eq!(server.rate_limit_per_minute, 0);
        for (name, bad) in [
            (env::DEPLOYMENT, "cloud"),
            (env::TRUSTED_PROXIES, "10.0.0.0/33"),
            (env::ALLOWED_ORIGINS, "*"),
            (env::RATE_LIMIT_PER_MINUTE, "lots"),
            (env::CORE_ADDR, "everywhere"),
        ] {
            let mut v = v.clone();
            v.insert(name, bad.to_owned());
            assert!(
                CoreConfig::from_env(|k| v.get(k).cloned()).is_err(),
                "{name}={bad}"
            );
        }
    }

    #[test]
    fn ip_ranges_match_by_prefix() {
        let lan = IpRange::parse("10.1.0.0/16").unwrap();
        assert!(lan.contains("10.1.200.3".parse().unwrap()));
        assert!(!lan.contains("10.2.0.1".parse().unwrap()));
        assert!(lan.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = IpRange::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            IpRange::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            IpRange::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(IpRange::parse("host.example").is_none());
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
