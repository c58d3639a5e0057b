//! Server mode under load: requests per second and p50/p99 latency of the
//! memory API (append a message, read the conversation) through haproxy
//! for 1, 2 and 3 `jarvis-core` replicas over a 3-primary Redis Cluster,
//! against `redis-benchmark` (SET/GET) on the same cluster in the same
//! run. Everything shares this machine's cores (on the 2-core machines
//! the replicas, the cluster, haproxy and the load generator compete), so
//! the scaling column says what this machine can show, not what separate
//! machines would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::process::Command;
use std::time::{Duration, Instant};

use jarvis_protocol::env;
use jarvis_tests::server::{Balancer, RedisCluster, RedisSettings, Replica, add_user};
use jarvis_tests::{Api, bin_dir, wait_for};
use serde_json::json;

const CLIENT_THREADS: usize = 16;
const USERS: usize = 4;
const RUN: Duration = Duration::from_secs(6);
const WARM_UP: Duration = Duration::from_secs(1);
/// Messages per conversation before a thread starts a new one (keeps the
/// reads the same size through the run).
const MESSAGES_PER_CONVERSATION: usize = 20;

struct Row {
    what: String,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// How busy the whole machine's CPUs were meanwhile.
    cpu_busy: Option<f64>,
}

/// (busy, total) jiffies of all CPUs, from `/proc/stat`.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait are the 4th and 5th.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Drives the memory API through `url` with `keys` for [`RUN`].
fn load(url: &str, keys: &[String]) -> (usize, Vec<Duration>) {
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let url = url.to_owned();
            let key = keys[t % keys.len()].clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let start = Instant::now();
                let mut latencies = Vec::new();
                let mut conversation = String::new();
                let mut sent = 0usize;
                let mut timed = |request: reqwest::blocking::RequestBuilder| {
                    let began = Instant::now();
                    let response = request.bearer_auth(&key).send().unwrap();
                    assert!(response.status().is_success(), "{:?}", response.status());
                    let body: serde_json::Value = response.json().unwrap();
                    if began.duration_since(start) > WARM_UP {
                        latencies.push(began.elapsed());
                    }
                    body
                };
                while start.elapsed() < WARM_UP + RUN {
                    if sent.is_multiple_of(MESSAGES_PER_CONVERSATION) {
                        let created = timed(client.post(format!("{url}/v1/conversations")));
                        conversation = created["id"].as_str().unwrap().to_owned();
                    }
                    timed(
                        client
                            .post(format!("{url}/v1/conversations/{conversation}/messages"))
                            .json(&json!({"role": "user", "content": format!("message {sent}")})),
                    );
                    timed(client.get(format!("{url}/v1/conversations/{conversation}")));
                    sent += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for thread in threads {
        all.extend(thread.join().unwrap());
    }
    all.sort();
    (all.len(), all)
}

fn redis_benchmark(port: u16) -> Vec<Row> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cluster"])
        .args([
            "-c",
            &CLIENT_THREADS.to_string(),
            "-n",
            "200000",
            "-t",
            "set,get",
        ])
        .args(["-d", "64", "--csv"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("\"test\""))
        .filter_map(|line| {
            let cells: Vec<String> = line
                .split(',')
                .map(|c| c.trim_matches('"').to_owned())
                .collect();
            // test, rps, avg, min, p50, p95, p99, max
            Some(Row {
                what: format!(
                    "redis-benchmark {} (cluster, {CLIENT_THREADS} clients)",
                    cells.first()?
                ),
                rps: cells.get(1)?.parse().ok()?,
                p50_ms: cells.get(4)?.parse().ok()?,
                p99_ms: cells.get(6)?.parse().ok()?,
                cpu_busy: None,
            })
        })
        .collect()
}

fn main() {
    println!(
        "server benchmark: memory API (create, append + read) through haproxy, {CLIENT_THREADS} client threads, {} s per row, {} cores, binaries from {}",
        RUN.as_secs(),
        std::thread::available_parallelism().map_or(0, usize::from),
        bin_dir().display()
    );
    let cluster = RedisCluster::start(3);
    let redis = RedisSettings {
        url: cluster.url(),
        ca_file: None,
    };
    let data = tempfile::tempdir().unwrap();
    let replicas: Vec<Replica> = (0..3)
        .map(|i| {
            Replica::start(
                &format!("core{i}"),
                &redis,
                data.path(),
                data.path(),
                &[(env::RATE_LIMIT_PER_MINUTE, "0"), ("JARVIS_LOG", "warn")],
            )
        })
        .collect();
    for replica in &replicas {
        replica.wait_ready();
    }
    let keys: Vec<String> = (0..USERS)
        .map(|i| add_user(&redis, &format!("bench{i}")))
        .collect();

    let mut rows = redis_benchmark(cluster.ports()[0]);
    let mut one_replica = None;
    for n in 1..=3 {
        let backends: Vec<(&str, u16)> = replicas[..n]
            .iter()
            .map(|r| (r.name.as_str(), r.port()))
            .collect();
        let balancer = Balancer::start(&backends);
        let probe = Api::new(&balancer.url(), "");
        wait_for(Duration::from_secs(30), "the balancer", || {
            probe.ready().then_some(())
        });
        let before = cpu_jiffies();
        let (count, latencies) = load(&balancer.url(), &keys);
        let after = cpu_jiffies();
        let cpu_busy = (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64;
        let rps = count as f64 / RUN.as_secs_f64();
        one_replica.get_or_insert(rps);
        rows.push(Row {
            what: format!("memory API, {n} replica{}", if n == 1 { "" } else { "s" }),
            rps,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            cpu_busy: Some(cpu_busy),
        });
    }
    println!();
    println!("| what | requests/s | p50 ms | p99 ms | scaling vs 1 replica | machine CPU busy |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        let busy = row
            .cpu_busy
            .map_or_else(|| "—".to_owned(), |b| format!("{:.0} %", b * 100.0));
        let scaling = match (row.what.starts_with("memory API"), one_replica) {
            (true, Some(one)) => format!("{:.2}×", row.rps / one),
            _ => "—".to_owned(),
        };
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {scaling} | {busy} |",
            row.what, row.rps, row.p50_ms, row.p99_ms
        );
    }
}
