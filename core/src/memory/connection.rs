//! Where memory lives: one Redis (`redis://`, `rediss://`) or a Redis
//! Cluster (several node URLs), behind one connection type.
//!
//! A cluster connection follows `MOVED`/`ASK` redirections and refreshes
//! its slot map after a failover by itself; every key of one user carries
//! the same hash tag (see [`super::KeySpace`]), so the transactions and
//! scripts memory runs stay on one slot. Pub/sub goes through one node at
//! a time ([`Target::pubsub_clients`]): classic pub/sub reaches every node
//! of a cluster, and one connection keeps one publisher's messages in
//! order.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, TlsCertificates, Value};

/// Why the Redis settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("the Redis URL is empty")]
    Empty,
    #[error("'{url}' is not a Redis URL: {source}")]
    BadUrl {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("the Redis cluster settings are not usable: {0}")]
    Cluster(#[source] redis::RedisError),
}

/// A Redis deployment: parsed from `JARVIS_REDIS_URL`.
#[derive(Clone)]
pub struct Target {
    kind: Kind,
    /// One client per node, for pub/sub (a single Redis has one).
    pubsub: Vec<redis::Client>,
}

#[derive(Clone)]
#[expect(clippy::large_enum_variant, reason = "one per process, made once")]
enum Kind {
    Single(redis::Client),
    Cluster(ClusterClient),
}

impl std::fmt::Debug for Target {
    // URLs may hold a password: only the shape is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Single(_) => "single",
            Kind::Cluster(_) => "cluster",
        };
        f.debug_struct("Target")
            .field("kind", &kind)
            .field("nodes", &self.pubsub.len())
            .finish()
    }
}

impl Target {
    /// `urls`: one URL, or several separated by commas (the seed nodes of a
    /// cluster). `cluster` treats a single URL as a cluster seed too.
    /// `ca_pem`: the certificate authority that signs the server's TLS
    /// certificate, for `rediss://` (unset: the system's roots).
    pub fn parse(urls: &str, cluster: bool, ca_pem: Option<Vec<u8>>) -> Result<Self, TargetError> {
        let urls: Vec<&str> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(TargetError::Empty);
        }
        let certificates = || TlsCertificates {
            client_tls: None,
            root_cert: ca_pem.clone(),
        };
        let client = |url: &str| {
            let client = if url.starts_with("rediss://") && ca_pem.is_some() {
                redis::Client::build_with_tls(url, certificates())
            } else {
                redis::Client::open(url)
            };
            client.map_err(|source| TargetError::BadUrl {
                url: redact(url),
                source,
            })
        };
        let pubsub = urls
            .iter()
            .map(|u| client(u))
            .collect::<Result<Vec<_>, _>>()?;
        let kind = if urls.len() == 1 && !cluster {
            Kind::Single(pubsub[0].clone())
        } else {
            let mut builder = redis::cluster::ClusterClientBuilder::new(urls.clone())
                // A few quick tries across a redirection or a reconnect;
                // a node that is down gets a prompt retryable 503, not a
                // request that hangs for the whole failover.
                .retries(3)
                .min_retry_wait(20)
                .max_retry_wait(400)
                .connection_timeout(Duration::from_secs(1))
                .response_timeout(Duration::from_secs(5));
            if ca_pem.is_some() && urls.iter().all(|u| u.starts_with("rediss://")) {
                builder = builder.certs(certificates());
            }
            Kind::Cluster(builder.build().map_err(TargetError::Cluster)?)
        };
        Ok(Self { kind, pubsub })
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }

    /// The clients pub/sub may use, one node each, in the order to try.
    pub fn pubsub_clients(&self) -> &[redis::Client] {
        &self.pubsub
    }

    /// Connects once (the cluster: to every primary). The connection
    /// reconnects by itself afterwards.
    pub async fn connect(
        &self,
        config: &redis::aio::ConnectionManagerConfig,
    ) -> redis::RedisResult<Connection> {
        match &self.kind {
            Kind::Single(client) => {
                // Probe with a plain connection first: the manager retries
                // on its own, which would hide the attempts the caller logs.
                tokio::time::timeout(
                    Duration::from_secs(1),
                    client.get_multiplexed_async_connection(),
                )
                .await
                .map_err(|_| timed_out())??;
                let manager =
                    ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
                Ok(Connection::Single(manager))
            }
            Kind::Cluster(client) => {
                let connection =
                    tokio::time::timeout(Duration::from_secs(5), client.get_async_connection())
                        .await
                        .map_err(|_| timed_out())??;
                Ok(Connection::Cluster(connection))
            }
        }
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A connection to memory, cheap to clone: either kind runs the same
/// commands, pipelines and scripts.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// `WAIT replicas timeout` on the primary that holds `key`: waits until
    /// that many replicas have every write this connection made there;
    /// returns how many do.
    pub async fn wait_for_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> redis::RedisResult<i64> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas)
            .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        match self {
            Self::Single(connection) => cmd.query_async(connection).await,
            Self::Cluster(connection) => {
                use redis::cluster_routing::{
                    Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr,
                };
                let route = Route::with_slot(Slot::for_key(key), SlotAddr::Master);
                let value = connection
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(redis::from_redis_value(value)?)
            }
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Connection::Single",
            Self::Cluster(_) => "Connection::Cluster",
        })
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn one_url_is_a_single_redis_and_a_list_is_a_cluster() {
        let single = Target::parse("redis://127.0.0.1:6379/0", false, None).unwrap();
        assert!(!single.is_cluster());
        assert_eq!(single.pubsub_clients().len(), 1);
        let cluster = Target::parse(
            "redis://127.0.0.1:7000, redis://127.0.0.1:7001",
            false,
            None,
        )
        .unwrap();
        assert!(cluster.is_cluster());
        assert_eq!(cluster.pubsub_clients().len(), 2);
        assert!(
            Target::parse("redis://127.0.0.1:7000", true, None)
                .unwrap()
                .is_cluster()
        );
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        let err = Target::parse("http://jarvis:s3cret@example:1", false, None).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(matches!(
            Target::parse(" , ", false, None),
            Err(TargetError::Empty)
        ));
        let err = Target::parse(
            "redis://a:one@127.0.0.1:7000,redis://a:two@127.0.0.1:7001",
            false,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, TargetError::Cluster(_)), "{err}");
    }
}
