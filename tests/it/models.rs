//! `jarvis models ...` end to end: the real binary, a real HTTP server,
//! real model files, killed processes, full disks and hostile packs.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jarvis_tests::catalog::{document, file, model};
use jarvis_tests::fault_server::{Fault, FaultServer};
use jarvis_tests::{
    Output, TestHome, get_json, pseudo_random_bytes, smollm2_gguf, wait_for, whisper_ct2_dir,
};
use serde_json::Value;

const MIB: usize = 1024 * 1024;

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn active(home: &TestHome, name: &str) -> Option<String> {
    std::fs::read_to_string(home.path(&format!("models/{name}/active")))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A home whose catalog lists `name` `version` served by `server`.
fn served_model(
    server: &FaultServer,
    name: &str,
    version: &str,
    bytes: &[u8],
    chunk: Option<usize>,
) -> Value {
    let path = format!("/{name}/{version}/weights.bin");
    server.add_bytes(&path, bytes.to_vec());
    model(
        name,
        version,
        "llm",
        true,
        vec![file("weights.bin", bytes, chunk, &[server.url(&path)])],
    )
}

#[test]
fn pull_installs_verifies_lists_and_activates() {
    let home = TestHome::new();
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(3 * MIB + 17, 21);
    let entry = served_model(&server, "tiny", "v1", &bytes, Some(MIB));
    home.use_catalog(&document(vec![entry]));

    let status = json(&home.run(&["models", "status", "--json"]));
    assert_eq!(status[0]["installed"], false);
    assert_eq!(status[0]["required"], true);

    let pulled = json(&home.run(&["models", "pull", "--json"]));
    assert_eq!(pulled[0]["name"], "tiny");
    assert_eq!(pulled[0]["bytes_fetched"], bytes.len());
    assert_eq!(active(&home, "tiny").as_deref(), Some("v1"));
    assert_eq!(
        std::fs::read(home.path("models/tiny/v1/weights.bin")).unwrap(),
        bytes
    );

    let list = json(&home.run(&["models", "list", "--json"]));
    let version = &list[0]["versions"][0];
    assert_eq!(version["version"], "v1");
    assert_eq!(version["active"], true);
    assert_eq!(version["files"][0]["size"], bytes.len());
    assert_eq!(
        version["files"][0]["sha256"],
        jarvis_download::Sha256Digest::of(&bytes).to_string()
    );

    let verify = home.run(&["models", "verify"]);
    assert!(verify.status.success(), "{verify:?}");

    // A second pull fetches nothing.
    let before = server.bytes_sent();
    let again = json(&home.run(&["models", "pull", "tiny", "--json"]));
    assert_eq!(again[0]["already_installed"], true);
    assert_eq!(server.bytes_sent(), before);

    // Damage on disk is found by verify, which then exits non-zero.
    let weights = home.path("models/tiny/v1/weights.bin");
    let mut damaged = std::fs::read(&weights).unwrap();
    damaged[100] ^= 1;
    std::fs::write(&weights, damaged).unwrap();
    let verify = home.run(&["models", "verify", "--json"]);
    assert!(!verify.status.success());
    let checks: Value = serde_json::from_str(&verify.stdout).unwrap();
    assert_eq!(checks[0]["status"], "wrong_checksum");
}

#[test]
fn pull_reports_progress_as_json_lines_for_the_ui() {
    let home = TestHome::new();
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(2 * MIB, 22);
    home.use_catalog(&document(vec![served_model(
        &server, "tiny", "v1", &bytes, None,
    )]));
    let out = home.run(&["models", "pull", "tiny", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let events: Vec<Value> = out
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let states: Vec<&str> = events.iter().filter_map(|e| e["state"].as_str()).collect();
    assert!(states.contains(&"downloading"), "{states:?}");
    assert!(states.contains(&"verifying"), "{states:?}");
    assert_eq!(states.last(), Some(&"done"));
    let last = events.last().unwrap();
    assert_eq!(last["bytes_done"], bytes.len());
    assert_eq!(last["bytes_total"], bytes.len());
}

#[test]
fn a_failed_update_leaves_the_active_version_untouched() {
    let home = TestHome::new();
    let server = FaultServer::start();
    let v1 = pseudo_random_bytes(MIB, 23);
    let v2 = pseudo_random_bytes(MIB, 24);
    let e1 = served_model(&server, "tiny", "v1", &v1, None);
    home.use_catalog(&document(vec![e1.clone()]));
    assert!(home.run(&["models", "pull", "tiny"]).status.success());

    // v2's server corrupts the download.
    let e2 = served_model(&server, "tiny", "v2", &v2, None);
    home.use_catalog(&document(vec![e1, e2]));
    server.push_faults([Fault::FlipByte(5000)]);
    let out = home.run(&["models", "pull", "tiny"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("checksum failed"), "{}", out.stderr);
    assert_eq!(active(&home, "tiny").as_deref(), Some("v1"));
    assert!(!home.path("models/tiny/v2").exists());
    assert!(home.run(&["models", "verify"]).status.success());

    // When the server recovers, the update goes through and v1 stays as
    // the rollback target.
    let out = home.run(&["models", "pull", "tiny"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(active(&home, "tiny").as_deref(), Some("v2"));
    let out = home.run(&["models", "rollback", "tiny"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(active(&home, "tiny").as_deref(), Some("v1"));
}

/// Finding 7 of issue 16: a checkpoint was recorded before the bytes it
/// vouches for reached the disk, so a power cut could leave a sidecar
/// claiming data the partial does not hold. Watched with `strace` on the
/// real `jarvis models pull`: every sidecar that records a checkpoint past
/// zero is renamed into place only after the partial itself was synced.
#[test]
fn a_download_checkpoint_is_recorded_only_after_its_bytes_are_on_disk() {
    let chunk = 4 * MIB;
    let bytes = pseudo_random_bytes(13 * MIB, 29);
    let server = FaultServer::start();
    let home = TestHome::new();
    home.use_catalog(&document(vec![served_model(
        &server,
        "synced",
        "v1",
        &bytes,
        Some(chunk),
    )]));
    let trace = home.scratch().join("strace.log");
    let jarvis = home.jarvis(&["models", "pull", "synced"]);
    let mut traced = Command::new("strace");
    traced
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&trace)
        .arg(jarvis.get_program())
        .args(jarvis.get_args());
    for (key, value) in jarvis.get_envs() {
        match value {
            Some(v) => traced.env(key, v),
            None => traced.env_remove(key),
        };
    }
    let out = traced.output().unwrap();
    assert!(out.status.success(), "{out:?}");

    // Walk the trace: the partial's descriptors, its syncs, and each
    // sidecar rename (the first records offset 0 and needs no sync).
    let log = std::fs::read_to_string(&trace).unwrap();
    let mut partial_fds = std::collections::HashSet::new();
    let mut synced_since_rename = false;
    let mut sidecar_renames = 0;
    for line in log.lines() {
        let call = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest.trim_start());
        if call.starts_with("openat(") && call.contains("weights.bin.partial\"") {
            if let Some(fd) = call
                .rsplit("= ")
                .next()
                .and_then(|fd| fd.trim().parse::<i32>().ok())
            {
                partial_fds.insert(fd);
            }
        } else if call.starts_with("fsync(") || call.starts_with("fdatasync(") {
            let fd = call
                .split(['(', ')'])
                .nth(1)
                .and_then(|fd| fd.parse::<i32>().ok());
            if fd.is_some_and(|fd| partial_fds.contains(&fd)) {
                synced_since_rename = true;
            }
        } else if call.starts_with("rename") && call.contains("weights.bin.partial.json\"") {
            if sidecar_renames > 0 {
                assert!(
                    synced_since_rename,
                    "checkpoint {sidecar_renames} recorded before its bytes were synced:\n{log}"
                );
            }
            sidecar_renames += 1;
            synced_since_rename = false;
        }
    }
    assert!(
        sidecar_renames >= 3,
        "expected a checkpoint per 4 MiB chunk; the trace:\n{log}"
    );
    assert_eq!(
        active(&home, "synced").as_deref(),
        Some("v1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 16, finding 12: a catalog over HTTP was read whole before its
/// size was checked; a server sending without end filled the memory. Now
/// reading stops at the bound.
#[test]
fn a_catalog_server_sending_without_end_is_refused_at_the_bound() {
    let server = FaultServer::start();
    server.add_bytes("/catalog.json", b"{".to_vec());
    server.push_faults([Fault::ExtraData(1 << 30)]);
    let home = TestHome::new();
    home.set_env("JARVIS_CATALOG", &server.url("/catalog.json"));
    let out = home.run(&["models", "status", "--json"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("larger than"), "{}", out.stderr);
    assert!(
        server.bytes_sent() < 64 * MIB as u64,
        "{} bytes were sent before the refusal",
        server.bytes_sent()
    );
}

#[test]
fn kill9_of_pull_at_random_points_resumes_and_refetches_at_most_one_chunk() {
    let chunk = 4 * MIB;
    let bytes = pseudo_random_bytes(40 * MIB, 25);
    let server = FaultServer::start();
    let home = TestHome::new();
    home.use_catalog(&document(vec![served_model(
        &server,
        "big",
        "v1",
        &bytes,
        Some(chunk),
    )]));
    let partial = home.path("models/.staging/big/v1/weights.bin.partial");
    let seed = u64::from(Instant::now().elapsed().subsec_nanos()) ^ u64::from(std::process::id());
    let mut written_at_kill = 0u64;
    for round in 0..3u64 {
        // About 1.5 s per full download; kill somewhere inside it.
        server.set_rate_limit(28 * MIB as u64);
        let mut child = home
            .jarvis(&["models", "pull", "big", "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let target = written_at_kill + ((seed >> (round * 8)) % 8 + 1) * MIB as u64 + 12_345;
        wait_for(Duration::from_secs(30), "the partial to grow", || {
            std::fs::metadata(&partial)
                .ok()
                .filter(|m| m.len() >= target)
        });
        child.kill().unwrap();
        child.wait().unwrap();
        written_at_kill = std::fs::metadata(&partial).unwrap().len();
        assert!(
            written_at_kill < bytes.len() as u64,
            "killed before the end"
        );
    }
    server.set_rate_limit(0);
    let out = home.run(&["models", "pull", "big", "--json"]);
    let report = json(&out);
    let resumed = report[0]["bytes_resumed"].as_u64().unwrap();
    let fetched = report[0]["bytes_fetched"].as_u64().unwrap();
    let refetched = written_at_kill - resumed;
    assert!(
        refetched <= chunk as u64,
        "refetched {refetched} bytes after a kill, more than one chunk"
    );
    assert_eq!(resumed + fetched, bytes.len() as u64);
    assert_eq!(
        std::fs::read(home.path("models/big/v1/weights.bin")).unwrap(),
        bytes
    );
    assert_eq!(active(&home, "big").as_deref(), Some("v1"));
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_active_model_is_untouched() {
    let Some(mount) = jarvis_tests::Tmpfs::mount(12) else {
        eprintln!("note: mounting a tmpfs needs root; this run could not check full disks");
        return;
    };
    let home = TestHome::new();
    let server = FaultServer::start();
    // The data folder lives on a 12 MiB disk.
    home.set_env("JARVIS_HOME", mount.path.join("SparkAI").to_str().unwrap());
    let data = mount.path.join("SparkAI");
    let small = pseudo_random_bytes(2 * MIB, 26);
    let e1 = served_model(&server, "tiny", "v1", &small, None);
    home.use_catalog(&document(vec![e1.clone()]));
    assert!(home.run(&["models", "pull", "tiny"]).status.success());

    // Too big for what is left: refused before a byte is fetched.
    let huge = pseudo_random_bytes(16 * MIB, 27);
    let e2 = served_model(&server, "tiny", "v2", &huge, None);
    home.use_catalog(&document(vec![e1.clone(), e2]));
    let before = server.bytes_sent();
    let out = home.run(&["models", "pull", "tiny"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("not enough disk space"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("16.0 MiB"), "{}", out.stderr);
    assert_eq!(server.bytes_sent(), before);
    assert_eq!(
        std::fs::read_to_string(data.join("models/tiny/active"))
            .unwrap()
            .trim(),
        "v1"
    );

    // The disk fills up during the download: a clear error, the partial is
    // kept for later, the active version still verifies.
    let mid = pseudo_random_bytes(6 * MIB, 28);
    let e3 = served_model(&server, "tiny", "v3", &mid, None);
    home.use_catalog(&document(vec![e1, e3]));
    server.push_faults([Fault::StallAfter(MIB as u64, Duration::from_millis(1500))]);
    let partial = data.join("models/.staging/tiny/v3/weights.bin.partial");
    let filler = data.join("filler");
    let child = home
        .jarvis(&["models", "pull", "tiny"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "the download to start", || {
        std::fs::metadata(&partial)
            .ok()
            .filter(|m| m.len() >= MIB as u64)
    });
    let mut fill = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    while fill.write_all(&block).is_ok() {}
    drop(fill);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not enough disk space"), "{stderr}");
    assert!(stderr.contains("partial download was kept"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(data.join("models/tiny/active"))
            .unwrap()
            .trim(),
        "v1"
    );
    assert!(!data.join("models/tiny/v3").exists());
    assert!(home.run(&["models", "verify"]).status.success());

    // Space freed: the same command resumes and finishes.
    std::fs::remove_file(&filler).unwrap();
    let out = home.run(&["models", "pull", "tiny"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(data.join("models/tiny/active"))
            .unwrap()
            .trim(),
        "v3"
    );
}

#[test]
fn the_real_gguf_is_pulled_over_http_and_verified() {
    let home = TestHome::new();
    let server = FaultServer::start();
    server.add_file("/smollm2.gguf", smollm2_gguf());
    let builtin = jarvis_model_registry::Catalog::builtin().unwrap();
    let mut catalog = serde_json::to_value(&builtin).unwrap();
    catalog["models"][0]["files"][0]["sources"] = serde_json::json!([server.url("/smollm2.gguf")]);
    home.use_catalog(&catalog);
    // A dropped connection and a server error on the way.
    server.push_faults([Fault::DropAfter(10 * MIB as u64), Fault::Status(503)]);
    let out = home.run(&["models", "pull"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        active(&home, "smollm2-135m-instruct").as_deref(),
        Some("q4_1-1")
    );
    assert!(
        home.run(&["models", "verify", "smollm2-135m-instruct"])
            .status
            .success()
    );
}

#[test]
fn the_real_models_import_offline_by_checksum_and_by_folder() {
    let home = TestHome::new();
    let out = home.run(&["models", "import", smollm2_gguf().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .contains("Imported smollm2-135m-instruct q4_1-1 and activated it"),
        "{}",
        out.stdout
    );

    let out = home.run(&[
        "models",
        "import",
        whisper_ct2_dir().to_str().unwrap(),
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(report[0]["name"], "whisper-tiny-en");
    assert_eq!(active(&home, "whisper-tiny-en").as_deref(), Some("q8_0-1"));
    // Converted on import: whisper.cpp's file is installed, not the sources.
    let version = home.path("models/whisper-tiny-en/q8_0-1");
    let ggml = std::fs::read(version.join("ggml-model.bin")).unwrap();
    assert_eq!(&ggml[..4], &0x6767_6d6c_u32.to_le_bytes());
    assert!(!version.join("model.bin").exists());
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(version.join(".jarvis-model.json")).unwrap())
            .unwrap();
    assert_eq!(receipt["files"][0]["path"], "ggml-model.bin");
    assert!(
        receipt["origin"].as_str().unwrap().contains("converted"),
        "{receipt}"
    );
    assert!(home.run(&["models", "verify"]).status.success());

    // A CTranslate2 whisper folder the catalog does not know is recognised
    // by its contents and converted too, as a speech model.
    let custom = home.scratch().join("faster-whisper-custom");
    jarvis_tests::copy_dir(&whisper_ct2_dir(), &custom);
    std::fs::write(custom.join("README.md"), "a model card").unwrap();
    let out = home.run(&[
        "models",
        "import",
        custom.to_str().unwrap(),
        "--name",
        "whisper-custom",
        "--version",
        "1",
        "--role",
        "llm",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let version = home.path("models/whisper-custom/1");
    assert!(version.join("ggml-model.bin").is_file());
    assert!(!version.join("model.bin").exists() && !version.join("README.md").exists());
    let receipt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(version.join(".jarvis-model.json")).unwrap())
            .unwrap();
    assert_eq!(receipt["role"], "stt");

    // A CTranslate2 folder whose weights are cut short is refused, and
    // nothing is installed.
    let broken = home.scratch().join("faster-whisper-broken");
    jarvis_tests::copy_dir(&whisper_ct2_dir(), &broken);
    let model_bin = std::fs::read(broken.join("model.bin")).unwrap();
    std::fs::write(broken.join("model.bin"), &model_bin[..model_bin.len() / 2]).unwrap();
    let out = home.run(&[
        "models",
        "import",
        broken.to_str().unwrap(),
        "--name",
        "whisper-broken",
        "--version",
        "1",
        "--role",
        "stt",
    ]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("converting whisper-broken 1 failed"),
        "{}",
        out.stderr
    );
    assert!(!home.path("models/whisper-broken/1").exists());

    // A file the catalog does not know needs a name.
    let unknown = home.scratch().join("mystery.gguf");
    std::fs::write(&unknown, pseudo_random_bytes(1000, 29)).unwrap();
    let out = home.run(&["models", "import", unknown.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("--name"), "{}", out.stderr);
    // Named as a chat model, it must read as a GGUF: this one does not.
    let named = |file: &std::path::Path, role: &str| {
        home.run(&[
            "models",
            "import",
            file.to_str().unwrap(),
            "--name",
            "mystery",
            "--version",
            "1",
            "--role",
            role,
        ])
    };
    let out = named(&unknown, "llm");
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("not a usable chat model"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("bad magic"), "{}", out.stderr);
    assert_eq!(active(&home, "mystery"), None);
    // Any other file installs by name (the core checks it when it loads).
    let other = home.scratch().join("mystery.bin");
    std::fs::rename(&unknown, &other).unwrap();
    let out = named(&other, "stt");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(active(&home, "mystery").as_deref(), Some("1"));
}

#[test]
fn activate_rollback_and_gc_keep_their_invariants() {
    let home = TestHome::new();
    for (version, seed) in [("v1", 31), ("v2", 32), ("v3", 33)] {
        let f = home.scratch().join(format!("m-{version}.bin"));
        std::fs::write(&f, pseudo_random_bytes(4096, seed)).unwrap();
        let out = home.run(&[
            "models",
            "import",
            f.to_str().unwrap(),
            "--name",
            "m",
            "--version",
            version,
            "--role",
            "llm",
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(active(&home, "m").as_deref(), Some("v1"));
    assert!(
        home.run(&["models", "activate", "m", "v2"])
            .status
            .success()
    );
    assert!(
        home.run(&["models", "activate", "m", "v3"])
            .status
            .success()
    );
    let out = home.run(&["models", "activate", "m", "v9"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("not installed"), "{}", out.stderr);
    assert_eq!(active(&home, "m").as_deref(), Some("v3"));

    // Things gc must never touch: a folder we did not create, a partial
    // download that may resume.
    let foreign = home.path("models/m/v0-handmade");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), b"mine").unwrap();
    let staging = home.path("models/.staging/m/v4");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("w.bin.partial"), b"half").unwrap();

    let dry = json(&home.run(&["models", "gc", "--dry-run", "--json"]));
    assert_eq!(dry.as_array().unwrap().len(), 1);
    assert!(home.path("models/m/v1").exists());
    let removed = json(&home.run(&["models", "gc", "--json"]));
    assert_eq!(removed[0]["version"], "v1");
    assert!(!home.path("models/m/v1").exists());
    assert!(home.path("models/m/v2").exists() && home.path("models/m/v3").exists());
    assert!(foreign.join("keep.txt").exists());
    assert!(staging.join("w.bin.partial").exists());

    assert!(home.run(&["models", "rollback", "m"]).status.success());
    assert_eq!(active(&home, "m").as_deref(), Some("v2"));
    assert!(home.run(&["models", "rollback", "m"]).status.success());
    assert_eq!(active(&home, "m").as_deref(), Some("v3"));
    let out = home.run(&["models", "rollback", "nothing-here"]);
    assert!(!out.status.success());
}

#[test]
fn jarvis_up_reports_missing_models_and_pull_installs_them_first() {
    let home = TestHome::new();
    let server = FaultServer::start();
    let bytes = pseudo_random_bytes(MIB, 34);
    home.use_catalog(&document(vec![served_model(
        &server, "brain", "v1", &bytes, None,
    )]));

    let mut launcher = home.up();
    assert!(
        launcher
            .stderr()
            .contains("required model brain is not installed"),
        "{}",
        launcher.stderr()
    );
    let readyz = get_json(&format!("{}/readyz", launcher.url.as_ref().unwrap()));
    assert_eq!(readyz["ready"], true, "the core starts without models");
    assert_eq!(readyz["models"]["missing"], serde_json::json!(["brain"]));
    launcher.terminate();

    let mut launcher = home.spawn_up_args(&["up", "--no-browser", "--pull"]);
    let url = launcher.wait_ready();
    let readyz = get_json(&format!("{url}/readyz"));
    assert_eq!(readyz["models"]["missing"], serde_json::json!([]));
    assert_eq!(readyz["models"]["active"][0]["name"], "brain");
}

/// `jarvis models import` without `--role`: a GGUF is a chat model, a
/// CTranslate2 whisper folder and a whisper.cpp ggml file are speech to
/// text, recognised from their contents; anything else is refused with a
/// hint and nothing is installed.
#[test]
fn import_recognises_a_model_role_from_its_contents() {
    let home = TestHome::new();
    let receipt_role = |name: &str| -> String {
        let receipt: Value = serde_json::from_slice(
            &std::fs::read(home.path(&format!("models/{name}/1/.jarvis-model.json"))).unwrap(),
        )
        .unwrap();
        receipt["role"].as_str().unwrap().to_owned()
    };
    let import = |path: &std::path::Path, name: &str| {
        home.run(&[
            "models",
            "import",
            path.to_str().unwrap(),
            "--name",
            name,
            "--version",
            "1",
        ])
    };

    // The real chat model, under a name the catalog does not know.
    let gguf = home.scratch().join("my-chat.gguf");
    std::fs::copy(smollm2_gguf(), &gguf).unwrap();
    let out = import(&gguf, "my-chat");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(receipt_role("my-chat"), "llm");
    assert_eq!(active(&home, "my-chat").as_deref(), Some("1"));

    // The real faster-whisper folder, then the ggml file it became.
    let folder = home.scratch().join("my-whisper");
    jarvis_tests::copy_dir(&whisper_ct2_dir(), &folder);
    let out = import(&folder, "my-whisper");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(receipt_role("my-whisper"), "stt");
    let ggml = home.scratch().join("whisper.bin");
    std::fs::copy(home.path("models/my-whisper/1/ggml-model.bin"), &ggml).unwrap();
    let out = import(&ggml, "my-ggml");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(receipt_role("my-ggml"), "stt");

    // Neither kind: refused, with the way out, and nothing installed.
    let other = home.scratch().join("notes.bin");
    std::fs::write(&other, pseudo_random_bytes(4096, 7)).unwrap();
    let out = import(&other, "mystery");
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("is not a model Jarvis recognises"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: say what it is with `--role llm`"),
        "{}",
        out.stderr
    );
    assert!(!home.path("models/mystery").exists());

    // --role without a name is a usage error (the catalog decides then).
    let out = home.run(&["models", "import", other.to_str().unwrap(), "--role", "stt"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("--name"), "{}", out.stderr);
}
