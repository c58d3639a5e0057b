//! Update deltas on a real pair of Jarvis builds (the core built twice with
//! one small code change, by `scripts/bench`): the full bundle against the
//! Jarvis delta (`jarvis_dist::delta`, the smaller of bsdiff+zstd and zstd
//! patch-from), the `bsdiff` CLI and `zstd --patch-from` CLI on the same
//! files, with apply times. Target: Jarvis delta ≤ the smaller of the two
//! tools and ≤ 5 % of the full bundle.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let old_path = PathBuf::from(std::env::var("JARVIS_BENCH_CORE_OLD").unwrap_or_else(|_| {
        eprintln!("set JARVIS_BENCH_CORE_OLD/NEW (scripts/bench does); comparing the release core with itself plus a note");
        jarvis_tests::bin_dir().join("jarvis-core").display().to_string()
    }));
    let old = std::fs::read(&old_path).unwrap();
    let new = match std::env::var("JARVIS_BENCH_CORE_NEW") {
        Ok(p) => std::fs::read(p).unwrap(),
        Err(_) => {
            let mut n = old.clone();
            n.extend_from_slice(b"note");
            n
        }
    };
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("old"), work.path().join("new"));
    std::fs::write(&a, &old).unwrap();
    std::fs::write(&b, &new).unwrap();
    let differing =
        old.iter().zip(&new).filter(|(x, y)| x != y).count() + old.len().abs_diff(new.len());
    println!(
        "update delta benchmark: core {} → {} bytes ({} bytes differ in place)",
        old.len(),
        new.len(),
        differing
    );

    let start = Instant::now();
    let all = jarvis_dist::delta::make_all(&old, &new, jarvis_dist::delta::DEFAULT_LEVEL).unwrap();
    let make_time = start.elapsed();
    let (kind, jarvis_patch) = all[0].clone();
    let start = Instant::now();
    let rebuilt = jarvis_dist::delta::apply(kind, &old, &jarvis_patch, new.len() as u64).unwrap();
    let jarvis_apply = start.elapsed();
    assert_eq!(rebuilt, new);

    let bs_patch = work.path().join("bs.patch");
    run(Command::new("bsdiff").arg(&a).arg(&b).arg(&bs_patch));
    let bs_out = work.path().join("bs.out");
    let bs_apply = run(Command::new("bspatch").arg(&a).arg(&bs_out).arg(&bs_patch));
    assert_eq!(std::fs::read(&bs_out).unwrap(), new);

    let z_patch = work.path().join("z.patch");
    run(Command::new("zstd")
        .args(["-q", "-19", "--long=31", "-f"])
        .arg("--patch-from")
        .arg(&a)
        .arg(&b)
        .arg("-o")
        .arg(&z_patch));
    let z_out = work.path().join("z.out");
    let z_apply = run(Command::new("zstd")
        .args(["-q", "-d", "--long=31", "-f"])
        .arg("--patch-from")
        .arg(&a)
        .arg(&z_patch)
        .arg("-o")
        .arg(&z_out));
    assert_eq!(std::fs::read(&z_out).unwrap(), new);

    let bs_size = std::fs::metadata(&bs_patch).unwrap().len();
    let z_size = std::fs::metadata(&z_patch).unwrap().len();
    let full = new.len() as u64;
    let ours = jarvis_patch.len() as u64;
    println!();
    println!("| artifact                              | bytes      | % of full | apply ms |");
    println!("|---------------------------------------|-----------:|----------:|---------:|");
    println!("| full bundle file (jarvis-core)        | {full:>10} |    100.00 |        — |");
    println!(
        "| Jarvis delta ({:<23}) | {ours:>10} | {:>9.3} | {:>8.1} |",
        format!("{kind:?}"),
        pct(ours, full),
        ms(jarvis_apply)
    );
    for (k, p) in all.iter().skip(1) {
        println!(
            "|   (other kind: {:<21}) | {:>10} | {:>9.3} |        — |",
            format!("{k:?}"),
            p.len(),
            pct(p.len() as u64, full)
        );
    }
    println!(
        "| bsdiff CLI (bzip2)                    | {bs_size:>10} | {:>9.3} | {:>8.1} |",
        pct(bs_size, full),
        ms(bs_apply)
    );
    println!(
        "| zstd -19 --long --patch-from CLI      | {z_size:>10} | {:>9.3} | {:>8.1} |",
        pct(z_size, full),
        ms(z_apply)
    );
    println!();
    println!(
        "making both Jarvis deltas took {:.1} s",
        make_time.as_secs_f64()
    );
    let best_tool = bs_size.min(z_size);
    println!(
        "Jarvis delta ≤ smaller tool ({best_tool}): {}; ≤ 5 % of full: {}",
        if ours <= best_tool { "met" } else { "NOT met" },
        if pct(ours, full) <= 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn run(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?}");
    start.elapsed()
}

fn pct(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
