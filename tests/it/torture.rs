//! The lifecycle under random `kill -9`: every phase that writes the app or
//! the data folder is killed at a random instant (not only at the named
//! checkpoints), then `jarvis up` must reach ready on a verified app
//! version with memory, models and settings as they were, except for
//! changes that were acknowledged; and the interrupted work must be able
//! to finish.
//!
//! `JARVIS_TORTURE_KILLS` kills per phase (the suite runs a few;
//! `scripts/torture` runs the full count), `JARVIS_TORTURE_SEED` repeats a
//! run. The table it prints goes into BENCHMARKS.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jarvis_download::Sha256Digest;
use jarvis_tests::catalog::{document, file, model};
use jarvis_tests::fault_server::FaultServer;
use jarvis_tests::{
    TestHome, Version, copy_dir, core_bin, jarvis_bin, pseudo_random_bytes, publish,
    running_version, snapshot,
};

const MIB: usize = 1024 * 1024;

/// A small, repeatable random source (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    /// A random instant in `[0, window)`.
    fn instant(&mut self, window: Duration) -> Duration {
        let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.below(millis.max(1)))
    }
}

/// Per phase: kills made, failures, and bytes served to finish the
/// interrupted work afterwards (against one clean run's bytes).
#[derive(Default)]
struct Tally {
    kills: u32,
    failures: Vec<String>,
    finish_bytes: u64,
    clean_bytes: u64,
}

/// The world the update phases run in: releases 1.0.0 and 2.0.0 (with
/// deltas, in full, and a broken one), served over HTTP; a data folder and
/// an install of 1.0.0 to copy for each kill.
struct World {
    work: tempfile::TempDir,
    server: FaultServer,
    template: TestHome,
    conversation: String,
    models: BTreeMap<String, Sha256Digest>,
    config: Vec<u8>,
}

impl World {
    fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let server = FaultServer::start();
        let bytes_of = |name: &str, extra: &[u8]| {
            let mut core = std::fs::read(core_bin()).unwrap();
            core.extend_from_slice(extra);
            let path = work.path().join(name);
            std::fs::write(&path, core).unwrap();
            path
        };
        let core1 = bytes_of("core-1", b"build 1.0.0");
        let core2 = bytes_of("core-2", b"build 2.0.0");
        let broken = work.path().join("core-broken");
        std::fs::write(&broken, &std::fs::read(core_bin()).unwrap()[..4096]).unwrap();
        let release = |name: &str, version: &str, core: &Path, previous: &[&Path]| {
            let feed = work.path().join(name);
            let bundle = publish(
                &work.path().join(format!("work-{name}")),
                &feed,
                &Version {
                    version,
                    target: jarvis_dist::TARGET,
                    core,
                    launcher: &jarvis_bin(),
                    previous,
                    redis: None,
                },
            );
            (feed, bundle)
        };
        let (feed1, v1) = release("feed1", "1.0.0", &core1, &[]);
        let (delta, _) = release("feed-delta", "2.0.0", &core2, &[&v1]);
        let (full, _) = release("feed-full", "2.0.0", &core2, &[]);
        let (broken, _) = release("feed-broken", "2.0.0", &broken, &[&v1]);
        for (name, dir) in [("/delta", &delta), ("/full", &full), ("/broken", &broken)] {
            server.add_dir(name, dir);
        }

        let template = TestHome::new();
        template.set_env(
            "JARVIS_BUNDLE_DIR",
            work.path().join("install").to_str().unwrap(),
        );
        let out = template
            .jarvis(&["update", "apply", "--from", feed1.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        template.set_auto_update(false);
        let model = template.scratch().join("m.bin");
        std::fs::write(&model, pseudo_random_bytes(3 * MIB, 61)).unwrap();
        let out = template
            .jarvis(&[
                "models",
                "import",
                model.to_str().unwrap(),
                "--name",
                "m",
                "--version",
                "1",
                "--role",
                "llm",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut launcher = template.up();
        let conversation = template.api().create_conversation();
        assert_eq!(
            template
                .api()
                .add_message(&conversation, "user", "remember me")
                .status(),
            201
        );
        launcher.terminate();
        Self {
            models: snapshot(&template.path("models")),
            config: std::fs::read(template.path("config.json")).unwrap(),
            work,
            server,
            template,
            conversation,
        }
    }

    /// A fresh copy of the template: its data folder and its install.
    fn copy(&self) -> (TestHome, PathBuf) {
        let home = TestHome::new();
        copy_dir(&self.template.data_dir(), &home.data_dir());
        let install = home.scratch().join("install");
        copy_dir(&self.work.path().join("install"), &install);
        home.set_env("JARVIS_BUNDLE_DIR", install.to_str().unwrap());
        (home, install)
    }

    /// After a kill: Jarvis starts on a verified version with the data as
    /// it was. Returns the version that runs.
    fn check(&self, home: &TestHome) -> Result<String, String> {
        let mut launcher = home.spawn_up(&[]);
        let ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            launcher.wait_ready();
        }));
        if ready.is_err() {
            return Err(format!("no ready after the kill: {}", launcher.stderr()));
        }
        let version = running_version(home);
        let messages = home.api().messages(&self.conversation);
        launcher.terminate();
        if messages.as_deref() != Some(&["remember me".to_owned()][..]) {
            return Err(format!("memory changed: {messages:?}"));
        }
        if snapshot(&home.path("models")) != self.models {
            return Err("the models changed".to_owned());
        }
        if std::fs::read(home.path("config.json")).ok().as_deref() != Some(&self.config[..]) {
            return Err("the settings changed".to_owned());
        }
        Ok(version)
    }
}

/// Runs `cmd`, kills it (`SIGKILL`) at `at` unless it ended first.
fn kill_at(mut cmd: Command, at: Duration) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < at {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// How long `cmd` takes when nothing kills it.
fn clean_duration(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    start.elapsed()
}

fn update_phase(world: &World, rng: &mut Rng, kills: u32, feed: &str, tally: &mut Tally) {
    let url = world.server.url(feed);
    let (probe, _) = world.copy();
    probe.set_env("JARVIS_UPDATE_URL", &url);
    let before = world.server.bytes_sent();
    let window = clean_duration(&mut probe.jarvis(&["update", "apply"])) * 5 / 4;
    tally.clean_bytes = world.server.bytes_sent() - before;
    for _ in 0..kills {
        let (home, _) = world.copy();
        home.set_env("JARVIS_UPDATE_URL", &url);
        kill_at(home.jarvis(&["update", "apply"]), rng.instant(window));
        tally.kills += 1;
        match world.check(&home) {
            Ok(v) if v == "1.0.0" || v == "2.0.0" => {}
            Ok(v) => tally.failures.push(format!("{feed}: runs {v}")),
            Err(e) => tally.failures.push(format!("{feed}: {e}")),
        }
        // Whatever was interrupted can be finished.
        let before = world.server.bytes_sent();
        let out = home.jarvis(&["update", "apply"]).output().unwrap();
        tally.finish_bytes += world.server.bytes_sent() - before;
        if !out.status.success() {
            tally
                .failures
                .push(format!("{feed}: finishing failed: {out:?}"));
        }
        match world.check(&home) {
            Ok(v) if v == "2.0.0" => {}
            other => tally
                .failures
                .push(format!("{feed}: after finishing: {other:?}")),
        }
    }
}

fn rollback_phase(world: &World, rng: &mut Rng, kills: u32, tally: &mut Tally) {
    let url = world.server.url("/broken");
    let prepare = || {
        let (home, _) = world.copy();
        home.set_env("JARVIS_UPDATE_URL", &url);
        let out = home.jarvis(&["update", "apply"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        home
    };
    let probe = prepare();
    let window = {
        let mut launcher = probe.spawn_up(&[]);
        let start = Instant::now();
        launcher.wait_ready();
        let took = start.elapsed();
        launcher.terminate();
        took * 5 / 4
    };
    for _ in 0..kills {
        let home = prepare();
        let mut cmd = home.jarvis(&["up", "--no-browser"]);
        cmd.stdin(Stdio::null());
        kill_at(cmd, rng.instant(window));
        // The children die with the launcher; give them a moment.
        std::thread::sleep(Duration::from_millis(100));
        tally.kills += 1;
        match world.check(&home) {
            Ok(v) if v == "1.0.0" => {}
            other => tally.failures.push(format!("rollback: {other:?}")),
        }
    }
}

fn memory_phase(world: &World, rng: &mut Rng, kills: u32, tally: &mut Tally) {
    for round in 0..kills {
        let (home, _) = world.copy();
        let mut launcher = home.up();
        let api = home.api();
        let conversation = api.create_conversation();
        let deadline =
            Instant::now() + Duration::from_millis(200) + rng.instant(Duration::from_secs(2));
        let mut acknowledged = Vec::new();
        let writer = std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                let mut i = 0;
                while Instant::now() < deadline {
                    let text = format!("note {round}-{i}");
                    match api.try_add_message(&conversation, "user", &text) {
                        Some(201) => acknowledged.push(text),
                        Some(_) | None => break,
                    }
                    i += 1;
                }
            });
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            launcher.kill9();
            handle.join()
        });
        writer.unwrap();
        std::thread::sleep(Duration::from_millis(100));
        tally.kills += 1;
        let mut again = home.spawn_up(&[]);
        let ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| again.wait_ready()));
        if ready.is_err() {
            tally
                .failures
                .push(format!("memory: no ready: {}", again.stderr()));
            continue;
        }
        let stored = home.api().messages(&conversation).unwrap_or_default();
        // Every acknowledged write is there, in order; at most the one in
        // flight at the kill may be there too.
        if stored.len() < acknowledged.len() || stored[..acknowledged.len()] != acknowledged[..] {
            tally.failures.push(format!(
                "memory: {} acknowledged, {} stored",
                acknowledged.len(),
                stored.len()
            ));
        }
        again.terminate();
    }
}

fn migration_phase(rng: &mut Rng, kills: u32, tally: &mut Tally) {
    let (probe, expected) = jarvis_tests::home_from_fixture(1);
    let window = {
        let start = Instant::now();
        let mut launcher = probe.up();
        let took = start.elapsed();
        launcher.terminate();
        took * 5 / 4
    };
    let conversation = &expected["conversations"][0];
    let id = conversation["id"].as_str().unwrap().to_owned();
    let want: Vec<String> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    for _ in 0..kills {
        let (home, _) = jarvis_tests::home_from_fixture(1);
        let mut cmd = home.jarvis(&["up", "--no-browser"]);
        cmd.stdin(Stdio::null());
        kill_at(cmd, rng.instant(window));
        std::thread::sleep(Duration::from_millis(100));
        tally.kills += 1;
        let mut launcher = home.spawn_up(&[]);
        let ready =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| launcher.wait_ready()));
        if ready.is_err() {
            tally
                .failures
                .push(format!("migration: no ready: {}", launcher.stderr()));
            continue;
        }
        let got = home.api().messages(&id);
        if got.as_ref() != Some(&want) {
            tally.failures.push(format!("migration: {got:?}"));
        }
        launcher.terminate();
    }
}

fn pull_phase(rng: &mut Rng, kills: u32, tally: &mut Tally) {
    let bytes = pseudo_random_bytes(24 * MIB, 62);
    let server = FaultServer::start();
    server.add_bytes("/big/v1/weights.bin", bytes.clone());
    server.set_rate_limit(48 * MIB as u64);
    let catalog = document(vec![model(
        "big",
        "v1",
        "llm",
        true,
        vec![file(
            "weights.bin",
            &bytes,
            Some(4 * MIB),
            &[server.url("/big/v1/weights.bin")],
        )],
    )]);
    tally.clean_bytes = bytes.len() as u64;
    for _ in 0..kills {
        let home = TestHome::new();
        home.use_catalog(&catalog);
        kill_at(
            home.jarvis(&["models", "pull", "big"]),
            rng.instant(Duration::from_millis(700)),
        );
        tally.kills += 1;
        let verify = home.jarvis(&["models", "verify"]).output().unwrap();
        if !verify.status.success() {
            tally
                .failures
                .push(format!("pull: verify after the kill: {verify:?}"));
        }
        let before = server.bytes_sent();
        let out = home.jarvis(&["models", "pull", "big"]).output().unwrap();
        tally.finish_bytes += server.bytes_sent() - before;
        if !out.status.success() {
            tally
                .failures
                .push(format!("pull: finishing failed: {out:?}"));
        }
    }
}

fn backup_phase(world: &World, rng: &mut Rng, kills: u32, tally: &mut Tally) {
    for _ in 0..kills {
        let (home, _) = world.copy();
        let out = home
            .jarvis(&["backup", "create", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        let args: [&str; 3] = if rng.below(2) == 0 {
            ["backup", "create", "--json"]
        } else {
            ["backup", "restore", &id]
        };
        kill_at(home.jarvis(&args), rng.instant(Duration::from_millis(400)));
        tally.kills += 1;
        if let Err(e) = world.check(&home) {
            tally.failures.push(format!("backup ({}): {e}", args[1]));
        }
    }
}

/// The whole lifecycle, killed at random; see the module's comment.
#[test]
fn random_kills_across_the_lifecycle_never_lose_acknowledged_data() {
    let kills: u32 = std::env::var("JARVIS_TORTURE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let seed: u64 = std::env::var("JARVIS_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("torture: {kills} kills per phase, JARVIS_TORTURE_SEED={seed}");
    let mut rng = Rng(seed);
    let world = World::new();
    let mut tallies: Vec<(&str, Tally)> = Vec::new();
    let started = Instant::now();
    for phase in [
        "update by delta",
        "update in full",
        "trial and rollback",
        "data migration",
        "model pull",
        "backup and restore",
        "memory writes",
    ] {
        let mut tally = Tally::default();
        match phase {
            "update by delta" => update_phase(&world, &mut rng, kills, "/delta", &mut tally),
            "update in full" => update_phase(&world, &mut rng, kills, "/full", &mut tally),
            "trial and rollback" => rollback_phase(&world, &mut rng, kills, &mut tally),
            "data migration" => migration_phase(&mut rng, kills, &mut tally),
            "model pull" => pull_phase(&mut rng, kills, &mut tally),
            "backup and restore" => backup_phase(&world, &mut rng, kills, &mut tally),
            _ => memory_phase(&world, &mut rng, kills, &mut tally),
        }
        tallies.push((phase, tally));
    }
    println!("| phase | kills | failures | bytes to finish after the kills | one clean run |");
    println!("|---|---:|---:|---:|---:|");
    for (phase, t) in &tallies {
        println!(
            "| {phase} | {} | {} | {} | {} |",
            t.kills,
            t.failures.len(),
            t.finish_bytes,
            t.clean_bytes
        );
    }
    println!(
        "{} kills in {:.0} s (seed {seed})",
        tallies.iter().map(|(_, t)| t.kills).sum::<u32>(),
        started.elapsed().as_secs_f64()
    );
    let failures: Vec<&String> = tallies.iter().flat_map(|(_, t)| &t.failures).collect();
    assert!(failures.is_empty(), "seed {seed}: {failures:#?}");
}
