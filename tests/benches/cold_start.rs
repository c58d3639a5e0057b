//! Cold start: `jarvis up` until it prints `ready:`, against the time
//! `redis-server` alone takes to answer `PING`, measured in the same run on
//! the same machine. Target: Jarvis adds at most 150 ms over Redis alone.
//!
//! Run with `scripts/bench` (release binaries). Prints a table; figures go
//! into BENCHMARKS.md by hand.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jarvis_tests::{Signal, TestHome, free_port, redis_server_bin, signal};

const RUNS: usize = 15;
const TARGET_MS: f64 = 150.0;

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let runs = std::env::var("JARVIS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS);
    println!(
        "cold start, {runs} runs each, binaries from {}",
        jarvis_tests::bin_dir().display()
    );

    let redis: Vec<Duration> = (0..runs).map(|_| redis_alone()).collect();
    let fresh: Vec<Duration> = (0..runs)
        .map(|_| {
            let home = TestHome::new();
            jarvis_up(&home)
        })
        .collect();
    let existing_home = TestHome::new();
    jarvis_up(&existing_home); // first launch creates the folder
    let existing: Vec<Duration> = (0..runs).map(|_| jarvis_up(&existing_home)).collect();

    let redis_median = median(&redis);
    println!();
    println!(
        "| measurement                           | median ms | min ms | max ms | over Redis alone (median) |"
    );
    println!(
        "|---------------------------------------|----------:|-------:|-------:|--------------------------:|"
    );
    row("redis-server alone → PONG", &redis, None);
    row(
        "jarvis up → ready (fresh data dir)",
        &fresh,
        Some(redis_median),
    );
    row(
        "jarvis up → ready (existing data dir)",
        &existing,
        Some(redis_median),
    );
    let worst = median(&fresh).max(median(&existing)) - redis_median;
    println!();
    println!(
        "Jarvis adds {worst:.1} ms at the median (target ≤ {TARGET_MS} ms): {}",
        if worst <= TARGET_MS { "met" } else { "NOT met" }
    );
}

fn row(name: &str, samples: &[Duration], baseline: Option<f64>) {
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ms.iter().copied().fold(0.0, f64::max);
    let over = baseline.map_or_else(
        || "—".to_owned(),
        |b| format!("+{:.1}", median(samples) - b),
    );
    println!(
        "| {name:<37} | {:>9.1} | {min:>6.1} | {max:>6.1} | {over:>25} |",
        median(samples)
    );
}

fn median(samples: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let mid = ms.len() / 2;
    if ms.len().is_multiple_of(2) {
        (ms[mid - 1] + ms[mid]) / 2.0
    } else {
        ms[mid]
    }
}

/// `redis-server` with the same persistence settings the launcher uses,
/// polled for `PONG` as often as the launcher polls.
fn redis_alone() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let start = Instant::now();
    let mut child = Command::new(redis_server_bin())
        .current_dir(dir.path())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream.write_all(b"PING\r\n").unwrap();
            let mut buf = [0u8; 7];
            if stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

fn jarvis_up(home: &TestHome) -> Duration {
    let start = Instant::now();
    let mut child = home
        .jarvis(&["up", "--no-browser"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let elapsed = start.elapsed();
    assert!(line.starts_with("ready: "), "unexpected output {line:?}");
    signal(child.id(), Signal::Term);
    assert!(child.wait().unwrap().success());
    elapsed
}
