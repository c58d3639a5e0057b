//! Server mode's moving parts, all real processes on loopback: a Redis
//! Cluster (Debian's `redis-server` in cluster mode, joined by
//! `redis-cli --cluster create`), a TLS Redis with an ACL user and
//! certificates made by `openssl`, `jarvis-core` replicas in server mode,
//! and `haproxy` in front of them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jarvis_protocol::env;

use crate::{CoreProcess, core_bin, redis_server_bin, wait_for};

/// A loopback port that is free, and whose cluster bus port (+10000) is
/// free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = crate::free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// `redis-cli` with `args`; its standard output.
pub fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(args).output().unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Redis Cluster of primaries only, persistent (AOF, fsync always),
/// killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<(u16, PathBuf, Option<Child>)>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        Self::start_with_replicas(masters, 0)
    }

    /// `masters` primaries, each with `replicas` replicas.
    pub fn start_with_replicas(masters: usize, replicas: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 0..masters * (1 + replicas) {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let port = free_cluster_port();
            let child = Self::spawn(port, &node_dir);
            nodes.push((port, node_dir, Some(child)));
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|(port, ..)| format!("127.0.0.1:{port}"))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        let replicas = replicas.to_string();
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        redis_cli(&args);
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_ok();
        // Every replica has finished its first sync.
        wait_for(Duration::from_secs(60), "every replica in sync", || {
            cluster
                .ports()
                .iter()
                .map(|port| redis_cli(&["-p", &port.to_string(), "info", "replication"]))
                .filter(|info| info.contains("role:slave"))
                .all(|info| info.contains("master_link_status:up"))
                .then_some(())
        });
        cluster
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("redis.log"))
            .unwrap();
        let child = Command::new(redis_server_bin())
            .current_dir(dir)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", "1500"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(20), "a cluster node to answer", || {
            crate::answers_ping(port).then_some(())
        });
        child
    }

    /// Waits until every running node says the cluster is ok.
    pub fn wait_ok(&self) {
        wait_for(
            Duration::from_secs(60),
            "cluster_state:ok on every node",
            || {
                self.nodes
                    .iter()
                    .filter(|(.., child)| child.is_some())
                    .all(|(port, ..)| {
                        Command::new("redis-cli")
                            .args(["-p", &port.to_string(), "cluster", "info"])
                            .output()
                            .is_ok_and(|o| {
                                String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok")
                            })
                    })
                    .then_some(())
            },
        );
    }

    /// The seed URLs, comma-separated, as `JARVIS_REDIS_URL` takes them.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|(port, ..)| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|(port, ..)| *port).collect()
    }

    /// `kill -9` of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].2.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its port and files, and waits until the
    /// cluster is whole.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let (port, dir, _) = &self.nodes[i];
        let child = Self::spawn(*port, dir);
        self.nodes[i].2 = Some(child);
        self.wait_ok();
    }

    /// The running primary that holds keys matching `pattern`.
    pub fn node_holding(&self, pattern: &str) -> usize {
        self.primaries()
            .into_iter()
            .find(|&i| {
                let port = self.nodes[i].0.to_string();
                !redis_cli(&["-p", &port, "--raw", "keys", pattern])
                    .trim()
                    .is_empty()
            })
            .unwrap_or_else(|| panic!("no primary holds {pattern}"))
    }

    /// Node `i`'s cluster id.
    pub fn node_id(&self, i: usize) -> String {
        redis_cli(&["-p", &self.nodes[i].0.to_string(), "cluster", "myid"])
            .trim()
            .to_owned()
    }

    /// The indexes of the running primaries.
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].2.is_some()
                    && redis_cli(&["-p", &self.nodes[i].0.to_string(), "role"])
                        .starts_with("master")
            })
            .collect()
    }

    /// Moves the slot of `key` from primary `from` to primary `to` the way
    /// `redis-cli --cluster reshard` does, a few keys at a time (clients
    /// meanwhile get `ASK` and `TRYAGAIN`, then `MOVED`).
    pub fn move_slot_of(&self, key: &str, from: usize, to: usize) {
        let port = |i: usize| self.nodes[i].0.to_string();
        let slot = redis_cli(&["-p", &port(from), "cluster", "keyslot", key])
            .trim()
            .to_owned();
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        redis_cli(&[
            "-p",
            &port(to),
            "cluster",
            "setslot",
            &slot,
            "importing",
            &from_id,
        ]);
        redis_cli(&[
            "-p",
            &port(from),
            "cluster",
            "setslot",
            &slot,
            "migrating",
            &to_id,
        ]);
        loop {
            let keys = redis_cli(&[
                "-p",
                &port(from),
                "--raw",
                "cluster",
                "getkeysinslot",
                &slot,
                "1",
            ]);
            let Some(key) = keys.lines().find(|k| !k.is_empty()) else {
                break;
            };
            redis_cli(&[
                "-p",
                &port(from),
                "migrate",
                "127.0.0.1",
                &port(to),
                "",
                "0",
                "5000",
                "keys",
                key,
            ]);
            // Slowly, so that clients meet the slot half moved.
            std::thread::sleep(Duration::from_millis(100));
        }
        for i in self.primaries() {
            redis_cli(&["-p", &port(i), "cluster", "setslot", &slot, "node", &to_id]);
        }
        self.wait_ok();
    }

    /// Every key in the cluster (each node's `KEYS *`).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .ports()
            .iter()
            .flat_map(|port| {
                redis_cli(&["-p", &port.to_string(), "--raw", "keys", "*"])
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// A Redis that speaks only TLS, with the default user off and one ACL
/// user, and the CA that signed its certificate. Killed on drop.
#[derive(Debug)]
pub struct TlsRedis {
    child: Child,
    pub port: u16,
    pub ca_file: PathBuf,
    pub password: String,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(d)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=Jarvis test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "redis.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        let password = "correct-horse-battery".to_owned();
        let port = crate::free_port();
        std::fs::write(
            d.join("redis.conf"),
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1\n\
                 tls-cert-file redis.crt\ntls-key-file redis.key\ntls-ca-cert-file ca.crt\n\
                 tls-auth-clients no\nsave \"\"\nappendonly no\n\
                 user default off\nuser jarvis on >{password} ~* &* +@all\n"
            ),
        )
        .unwrap();
        let child = Command::new(redis_server_bin())
            .current_dir(d)
            .arg("redis.conf")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let redis = Self {
            child,
            port,
            ca_file: d.join("ca.crt"),
            password,
            _dir: dir,
        };
        wait_for(Duration::from_secs(20), "the TLS Redis to answer", || {
            redis
                .cli(&["ping"])
                .is_some_and(|o| o.trim() == "PONG")
                .then_some(())
        });
        redis
    }

    /// `rediss://jarvis:<password>@127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!(
            "rediss://jarvis:{}@127.0.0.1:{}/0",
            self.password, self.port
        )
    }

    /// `redis-cli` over TLS as the ACL user; `None` when it failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&self.ca_file)
            .args([
                "-p",
                &self.port.to_string(),
                "--user",
                "jarvis",
                "--pass",
                &self.password,
            ])
            .args(["--no-auth-warning"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where server-mode cores find Redis.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    pub ca_file: Option<PathBuf>,
}

impl RedisSettings {
    fn apply(&self, command: &mut Command) {
        command.env(env::REDIS_URL, &self.url);
        if let Some(ca) = &self.ca_file {
            command.env(env::REDIS_CA_FILE, ca);
        }
    }
}

/// `jarvis-core users ARGS` against `redis`; its output.
pub fn users(redis: &RedisSettings, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(core_bin());
    command.arg("users").args(args).env_remove(env::DEPLOYMENT);
    redis.apply(&mut command);
    command.output().unwrap()
}

/// Adds a user and returns their API key.
pub fn add_user(redis: &RedisSettings, name: &str) -> String {
    let out = users(redis, &["add", name]);
    assert!(out.status.success(), "users add {name}: {out:?}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(key.starts_with("jk_"), "{key}");
    key
}

/// A `jarvis-core` in server mode on a loopback port, killed on drop.
#[derive(Debug)]
pub struct Replica {
    pub core: Option<CoreProcess>,
    pub name: String,
}

impl Replica {
    /// Starts replica `name` over `redis`, with the models in
    /// `models_dir` and `extra` environment variables.
    pub fn start(
        name: &str,
        redis: &RedisSettings,
        data_dir: &Path,
        models_dir: &Path,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(core_bin());
        command.env(env::DEPLOYMENT, "server");
        if let Some(ca) = &redis.ca_file {
            command.env(env::REDIS_CA_FILE, ca);
        }
        for (k, v) in extra {
            command.env(k, v);
        }
        let log = data_dir.join(format!("{name}.log"));
        let core = CoreProcess::start(command, data_dir, models_dir, &redis.url, "unused", &log);
        Self {
            core: Some(core),
            name: name.to_owned(),
        }
    }

    pub fn url(&self) -> &str {
        &self.core.as_ref().unwrap().url
    }

    /// Waits until `/readyz` says ready (Redis reached).
    pub fn wait_ready(&self) {
        let api = crate::Api::new(self.url(), "");
        wait_for(Duration::from_secs(60), "a replica to be ready", || {
            api.ready().then_some(())
        });
    }

    pub fn port(&self) -> u16 {
        self.url().rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.core.as_ref().unwrap().pid()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.core.as_ref().unwrap().stderr_log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.core = None;
    }
}

/// `haproxy` on a loopback port, round robin over `backends` (health
/// checked on `/readyz`), naming the backend that answered in
/// `X-Served-By`. Killed on drop.
#[derive(Debug)]
pub struct Balancer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Balancer {
    pub fn start(backends: &[(&str, u16)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::free_port();
        let servers: String = backends
            .iter()
            .map(|(name, p)| {
                format!("  server {name} 127.0.0.1:{p} check inter 300 fall 2 rise 1\n")
            })
            .collect();
        let config = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 300s\n  timeout server 300s\n  timeout tunnel 1h\n  option forwardfor\n  retries 2\n  option redispatch\n\
             frontend jarvis\n  bind 127.0.0.1:{port}\n  default_backend cores\n\
             backend cores\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n\
             \x20 http-response set-header X-Served-By %[srv_name]\n{servers}"
        );
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("haproxy.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let balancer = Self {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "haproxy did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        balancer
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
