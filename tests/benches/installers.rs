//! Installer sizes and install times on real release builds.
//!
//! Sizes: every Linux installer next to the full bundle it carries and the
//! delta of a one-line change (the core built twice with one small code
//! change, by `scripts/bench`: JARVIS_BENCH_CORE_OLD/NEW), all at release
//! compression. Times: from nothing to a ready Jarvis through the
//! AppImage (extract-and-run mode) and through the .deb (`dpkg -i` into a
//! root of its own, then `jarvis up`), against the floor: the launcher
//! started straight from an unpacked version folder.
//! Windows installers need a Windows core, which is not built here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jarvis_tests::{TestHome, dist, installer};

fn main() {
    let bin = jarvis_tests::bin_dir();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let old_core = std::env::var("JARVIS_BENCH_CORE_OLD")
        .map_or_else(|_| bin.join("jarvis-core"), PathBuf::from);
    let new_core = std::env::var("JARVIS_BENCH_CORE_NEW").map_or_else(
        |_| {
            eprintln!("JARVIS_BENCH_CORE_OLD/NEW unset (scripts/bench sets them): v2 is v1's core plus a note");
            let mut bytes = std::fs::read(&old_core).unwrap();
            bytes.extend_from_slice(b"note");
            let path = work.join("jarvis-core-note");
            std::fs::write(&path, bytes).unwrap();
            path
        },
        PathBuf::from,
    );
    let ui = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../launcher/ui/dist");
    assert!(
        ui.join("index.html").is_file(),
        "build the UI first (scripts/build-ui)"
    );
    let key = jarvis_tests::release_test_key_dir().join("release.key");

    // v1 and v2 (one change), released as a real release would be.
    let feed = work.join("feed");
    let bundle = |version: &str, core: &Path| {
        let out = work.join(format!("bundle-{version}"));
        dist(&[
            &"bundle",
            &"--version",
            &version,
            &"--core",
            &core,
            &"--launcher",
            &bin.join("jarvis"),
            &"--ui",
            &ui,
            &"--out",
            &out,
        ]);
        out
    };
    let v1 = bundle("1.0.0", &old_core);
    dist(&[
        &"release",
        &"--bundle",
        &v1,
        &"--feed",
        &feed,
        &"--key",
        &key,
    ]);
    let out = work.join("out");
    let started = Instant::now();
    let appimage = installer(
        "appimage",
        &feed,
        &out,
        &[&"--runtime", &jarvis_tests::appimage_runtime()],
    );
    let appimage_build = started.elapsed();
    let started = Instant::now();
    let deb = installer("deb", &feed, &out, &[]);
    let deb_build = started.elapsed();
    let started = Instant::now();
    let tarball = installer("tar", &feed, &out, &[]);
    let tar_build = started.elapsed();

    let full: u64 = jarvis_dist::feed::list_files(&v1)
        .unwrap()
        .iter()
        .map(|f| size(&v1.join(f)))
        .sum();
    let v2 = bundle("2.0.0", &new_core);
    let feed2 = work.join("feed2");
    let release: serde_json::Value = serde_json::from_str(&dist(&[
        &"release",
        &"--bundle",
        &v2,
        &"--previous",
        &v1,
        &"--feed",
        &feed2,
        &"--key",
        &key,
    ]))
    .unwrap();
    // What a v1 install downloads: the delta of each changed file, the
    // full file where no delta is offered, nothing for unchanged files.
    let v1_release: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            feed.join("stable")
                .join(jarvis_dist::TARGET)
                .join("release.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let delta: u64 = release["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            let unchanged = v1_release["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|old| old["path"] == file["path"] && old["sha256"] == file["sha256"]);
            if unchanged {
                return 0;
            }
            file["deltas"]
                .as_array()
                .and_then(|d| d.first())
                .map_or_else(
                    || file["size"].as_u64().unwrap(),
                    |d| d["size"].as_u64().unwrap(),
                )
        })
        .sum();

    println!(
        "installer benchmark: release {} ({})",
        jarvis_dist::TARGET,
        bin.display()
    );
    println!();
    println!("| artifact                          | bytes       | vs full bundle | build s |");
    println!("|-----------------------------------|------------:|---------------:|--------:|");
    let row = |name: &str, bytes: u64, build: Option<Duration>| {
        println!(
            "| {name:<33} | {bytes:>11} | {:>13.1}% | {:>7} |",
            bytes as f64 * 100.0 / full as f64,
            build.map_or_else(|| "—".to_owned(), |d| format!("{:.1}", d.as_secs_f64()))
        );
    };
    row("full bundle (v1 version folder)", full, None);
    row("update v1 → v2 (one-line change)", delta, None);
    row(
        "AppImage (squashfs, gzip)",
        size(&appimage),
        Some(appimage_build),
    );
    row(".deb (xz -9)", size(&deb), Some(deb_build));
    row(
        "tar.gz + install.sh (gzip -9)",
        size(&tarball),
        Some(tar_build),
    );
    println!(
        "| MSI, Setup.exe                    | not built here: the Windows core is built on a Windows runner |"
    );
    println!();

    // Install times to a ready Jarvis, each into a fresh home.
    let floor = time_to_ready(|home| {
        // The floor: a version folder already unpacked, started directly.
        home.set_env("JARVIS_BUNDLE_DIR", v1.to_str().unwrap());
        bin.join("jarvis")
    });
    let through_appimage = time_to_ready(|home| {
        home.set_env("APPIMAGE_EXTRACT_AND_RUN", "1");
        home.set_env(
            "XDG_DATA_HOME",
            home.scratch().join("xdg").to_str().unwrap(),
        );
        appimage.clone()
    });
    let dpkg = jarvis_tests::DpkgRoot::new(&work.join("dpkg-root"));
    let through_deb = time_to_ready(|_| {
        dpkg.run(&[&"-i", &deb]);
        dpkg.root.join("usr/bin/jarvis")
    });
    println!("| install, first launch to ready          | seconds | vs floor |");
    println!("|-----------------------------------------|--------:|---------:|");
    for (name, took) in [
        ("floor: unpacked folder, jarvis up", floor),
        ("AppImage (extract-and-run) → ready", through_appimage),
        (".deb: dpkg -i, then jarvis up → ready", through_deb),
    ] {
        println!(
            "| {name:<39} | {:>7.2} | {:>7.2}× |",
            took.as_secs_f64(),
            took.as_secs_f64() / floor.as_secs_f64()
        );
    }
}

/// Time from `prepare` (which may install, and names the program to
/// start) to `ready:` from `<program> up`, in a fresh home; Jarvis is
/// stopped afterwards.
fn time_to_ready(prepare: impl FnOnce(&TestHome) -> PathBuf) -> Duration {
    let home = TestHome::new();
    let began = Instant::now();
    let program = prepare(&home);
    let mut launcher = home.spawn_program(&program, &["up", "--no-browser"]);
    launcher.wait_ready();
    let took = began.elapsed();
    assert!(home.jarvis(&["stop"]).status().unwrap().success());
    let _ = launcher.wait_exit(Duration::from_secs(30));
    took
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}
