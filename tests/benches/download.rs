//! Downloads: `jarvis models pull` of a 1 GiB file against `curl` writing
//! the same file, both from the same local server in the same run; the
//! registry's SHA-256 against `sha256sum`; and how many bytes a pull fetches
//! again after a `kill -9` at a random point.
//! Targets: pull ≥ 0.95 × the slower of curl and sha256sum (issue 3) and
//! ≥ 0.9 × curl (issue 16); refetch ≤ one chunk (8 MiB). The CPU time of
//! curl and of pull (user + system, from the children's rusage) shows
//! where the wall time comes from on a machine with few cores.
//!
//! Run with `scripts/bench` (release binaries). `JARVIS_BENCH_MIB` changes
//! the file size (default 1024).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jarvis_download::Sha256Digest;
use jarvis_tests::catalog::{document, file, model};
use jarvis_tests::fault_server::FaultServer;
use jarvis_tests::{TestHome, wait_for};

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = 8 * 1024 * 1024;
const RUNS: usize = 3;

fn main() {
    let mib: u64 = std::env::var("JARVIS_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mib * MIB;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("model.bin");
    let (bytes_sha, chunk_hashes) = write_random_file(&source, size);
    println!(
        "download benchmark: {mib} MiB file, {RUNS} runs each (medians), chunk {} MiB",
        CHUNK as u64 / MIB
    );

    let server = FaultServer::start();
    server.add_file("/model.bin", source.clone());
    let url = server.url("/model.bin");

    let mut curl_cpu = Vec::new();
    let curl: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let out = work.path().join("curl.bin");
            let (start, cpu) = (Instant::now(), children_cpu());
            let status = Command::new("curl")
                .args(["-s", "-f", "-o"])
                .arg(&out)
                .arg(&url)
                .status()
                .unwrap();
            let elapsed = start.elapsed();
            curl_cpu.push(children_cpu() - cpu);
            assert!(status.success());
            std::fs::remove_file(out).unwrap();
            elapsed
        })
        .collect();

    let catalog = document(vec![model(
        "bench",
        "v1",
        "llm",
        false,
        vec![{
            let mut f = file("model.bin", b"", None, std::slice::from_ref(&url));
            f["size"] = size.into();
            f["sha256"] = bytes_sha.to_string().into();
            f["chunk_size"] = (CHUNK as u64).into();
            f["chunk_sha256"] = chunk_hashes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .into();
            f
        }],
    )]);
    let mut pull_cpu = Vec::new();
    let pull: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let home = TestHome::new();
            home.use_catalog(&catalog);
            let (start, cpu) = (Instant::now(), children_cpu());
            let out = home.run(&["models", "pull", "bench", "--json"]);
            let elapsed = start.elapsed();
            pull_cpu.push(children_cpu() - cpu);
            assert!(out.status.success(), "{out:?}");
            elapsed
        })
        .collect();

    let sha256sum: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let out = Command::new("sha256sum").arg(&source).output().unwrap();
            assert!(out.status.success());
            start.elapsed()
        })
        .collect();
    let registry_hash: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(Sha256Digest::of_file(&source).unwrap(), bytes_sha);
            start.elapsed()
        })
        .collect();

    let refetched = refetch_after_kill(&server, &catalog, size);

    let rate = |d: &[Duration]| size as f64 / MIB as f64 / median(d);
    println!();
    println!("| measurement                              | median s | MiB/s  |");
    println!("|------------------------------------------|---------:|-------:|");
    for (name, d) in [
        ("curl -o file (no verification)", &curl),
        ("jarvis models pull (verified, installed)", &pull),
        ("sha256sum", &sha256sum),
        ("registry SHA-256 (jarvis-download)", &registry_hash),
    ] {
        println!("| {name:<40} | {:>8.2} | {:>6.0} |", median(d), rate(d));
    }
    println!();
    println!(
        "CPU time (user + system), medians: curl {:.2} s, pull {:.2} s on {} cores",
        median(&curl_cpu),
        median(&pull_cpu),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let slower_peer = rate(&curl).min(rate(&sha256sum));
    println!();
    println!(
        "pull: {:.2} × the slower of curl and sha256sum (target ≥ 0.95): {}",
        rate(&pull) / slower_peer,
        if rate(&pull) >= 0.95 * slower_peer {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "pull: {:.2} × curl (target ≥ 0.9): {}",
        rate(&pull) / rate(&curl),
        if rate(&pull) >= 0.9 * rate(&curl) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "registry SHA-256: {:.2} × sha256sum",
        rate(&registry_hash) / rate(&sha256sum)
    );
    let worst = refetched.iter().copied().max().unwrap_or(0);
    println!(
        "bytes fetched again after kill -9 at random points: {} (max {:.2} MiB; target ≤ 8 MiB): {}",
        refetched
            .iter()
            .map(|b| format!("{:.2} MiB", *b as f64 / MIB as f64))
            .collect::<Vec<_>>()
            .join(", "),
        worst as f64 / MIB as f64,
        if worst <= CHUNK as u64 {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// Kills `jarvis models pull` at random points (throttled server), resumes,
/// and returns how many bytes each resume fetched again.
fn refetch_after_kill(server: &FaultServer, catalog: &serde_json::Value, size: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    );
    for round in 0..3u64 {
        let home = TestHome::new();
        home.use_catalog(catalog);
        server.set_rate_limit(400 * MIB);
        let partial = home.path("models/.staging/bench/v1/model.bin.partial");
        let mut child = home
            .jarvis(&["models", "pull", "bench"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let fraction = ((seed >> (round * 7)) % 80 + 10) as f64 / 100.0;
        let target = (size as f64 * fraction) as u64;
        wait_for(Duration::from_secs(120), "the partial to grow", || {
            std::fs::metadata(&partial)
                .ok()
                .filter(|m| m.len() >= target)
        });
        child.kill().unwrap();
        child.wait().unwrap();
        let written = std::fs::metadata(&partial).unwrap().len();
        server.set_rate_limit(0);
        let result = home.run(&["models", "pull", "bench", "--json"]);
        assert!(result.status.success(), "{result:?}");
        let report: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
        let resumed = report[0]["bytes_resumed"].as_u64().unwrap();
        out.push(written - resumed);
    }
    out
}

fn write_random_file(path: &Path, size: u64) -> (Sha256Digest, Vec<Sha256Digest>) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut chunks = Vec::new();
    let mut written = 0u64;
    let mut seed = 7u64;
    while written < size {
        let len = (size - written).min(CHUNK as u64) as usize;
        let block = jarvis_tests::pseudo_random_bytes(len, seed);
        seed += 1;
        chunks.push(Sha256Digest::of(&block));
        file.write_all(&block).unwrap();
        written += len as u64;
    }
    file.flush().unwrap();
    drop(file);
    (Sha256Digest::of_file(path).unwrap(), chunks)
}

fn median(samples: &[Duration]) -> f64 {
    let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// CPU time (user + system) of this process's waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
