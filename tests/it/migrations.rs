//! Data migrations on real data folders written by earlier schemas
//! (`tests/fixtures/appdata/v<N>/`), killed at every checkpoint, refused
//! when newer, repaired when corrupt, and backups restored exactly.

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::time::Duration;

use jarvis_migrations::{CHECKPOINTS, CURRENT_SCHEMA_VERSION, MIGRATIONS};
use jarvis_tests::{
    TestHome, Tmpfs, alive, copy_dir, fixture_versions, home_from_fixture, redis_keys, snapshot,
    wait_for,
};
use serde_json::Value;

/// The folder is at the current schema with exactly the expected memory.
fn assert_migrated(home: &TestHome, expected: &Value) {
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.path("config.json")).unwrap()).unwrap();
    assert_eq!(config["schema_version"], CURRENT_SCHEMA_VERSION);
    assert!(!home.path("migration-journal.json").exists());
    let api = home.api();
    let conversations = expected["conversations"].as_array().unwrap();
    let mut expected_keys = vec![
        "jarvis:v2:conversations".to_owned(),
        "jarvis:v2:conversations:by_update".to_owned(),
    ];
    for conversation in conversations {
        let id = conversation["id"].as_str().unwrap();
        let got: Value = api
            .request(reqwest::Method::GET, &format!("/v1/conversations/{id}"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            got["messages"], conversation["messages"],
            "conversation {id}"
        );
        assert_eq!(got["created_at"], conversation["created_at"]);
        let messages = conversation["messages"].as_array().unwrap();
        assert_eq!(got["message_count"], messages.len());
        assert_eq!(got["updated_at"], messages.last().unwrap()["created_at"]);
        let first_user = messages.iter().find(|m| m["role"] == "user").unwrap();
        assert_eq!(got["title"], first_user["content"]);
        expected_keys.push(format!("jarvis:v2:conversation:{id}"));
        expected_keys.push(format!("jarvis:v2:conversation:{id}:messages"));
    }
    expected_keys.sort();
    assert_eq!(
        redis_keys(home),
        expected_keys,
        "exactly the migrated keys, no jarvis:v1: left"
    );
    let list: Value = api
        .request(reqwest::Method::GET, "/v1/conversations")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        list["conversations"].as_array().unwrap().len(),
        conversations.len()
    );
}

#[test]
fn every_fixture_migrates_to_the_current_schema_with_its_memory() {
    for version in fixture_versions() {
        let (home, expected) = home_from_fixture(version);
        let mut launcher = home.up();
        assert_migrated(&home, &expected);
        if version < CURRENT_SCHEMA_VERSION {
            assert!(
                launcher.stderr().contains("Data migrated from schema"),
                "{}",
                launcher.stderr()
            );
            let backups: Value =
                serde_json::from_str(&home.run(&["backup", "list", "--json"]).stdout).unwrap();
            assert_eq!(backups[0]["schema_version"], version);
        }
        // New writes land in the current layout and survive a restart.
        let api = home.api();
        let id = expected["conversations"][0]["id"].as_str().unwrap();
        assert_eq!(
            api.add_message(id, "user", "after the migration").status(),
            201
        );
        launcher.terminate();
        let _again = home.up();
        let messages = home.api().messages(id).unwrap();
        assert_eq!(
            messages.last().map(String::as_str),
            Some("after the migration")
        );
    }
}

#[test]
fn kill9_at_every_migration_checkpoint_then_a_normal_launch_ends_migrated_and_intact() {
    let mut checkpoints: Vec<String> = Vec::new();
    for name in CHECKPOINTS.iter().filter(|c| c.starts_with("migrate:")) {
        if name.contains("{id}") {
            checkpoints.extend(
                MIGRATIONS
                    .iter()
                    .map(|m| name.replace("{id}", &m.id.to_string())),
            );
        } else {
            checkpoints.push((*name).to_owned());
        }
    }
    assert!(checkpoints.len() >= 8);
    for checkpoint in &checkpoints {
        let (home, expected) = home_from_fixture(1);
        crash_at(&home, checkpoint);
        let _launcher = home.up();
        assert_migrated(&home, &expected);
    }
}

#[test]
fn a_crash_while_rolling_back_is_rolled_back_again() {
    for restore_checkpoint in CHECKPOINTS.iter().filter(|c| c.starts_with("restore:")) {
        let (home, expected) = home_from_fixture(1);
        crash_at(&home, "migrate:step-2:verified");
        assert!(home.path("migration-journal.json").exists());
        crash_at(&home, restore_checkpoint);
        let launcher = home.up();
        assert!(
            launcher.stderr().contains("rolled back"),
            "{restore_checkpoint}: {}",
            launcher.stderr()
        );
        assert_migrated(&home, &expected);
        let leftovers: Vec<_> = std::fs::read_dir(home.data_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".restore-") || n.contains("journal"))
            .collect();
        assert!(leftovers.is_empty(), "{restore_checkpoint}: {leftovers:?}");
    }
}

/// Runs `jarvis up` until it kills itself at `checkpoint`, and waits for its
/// children to follow.
fn crash_at(home: &TestHome, checkpoint: &str) {
    let mut launcher = home.spawn_up(&[("JARVIS_CRASH_AT", checkpoint)]);
    let status = launcher.wait_exit(Duration::from_secs(60));
    assert_eq!(
        status.signal(),
        Some(9),
        "{checkpoint}: {status:?}\n{}",
        launcher.stderr()
    );
    assert!(
        launcher.stderr().contains(checkpoint),
        "{}",
        launcher.stderr()
    );
    if let Some(instance) = home.instance() {
        wait_for(Duration::from_secs(20), "children to stop", || {
            (!alive(instance.redis.pid)).then_some(())
        });
    }
    let pid_file = home.path("run/redis.pid");
    wait_for(Duration::from_secs(20), "Redis to stop", || {
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        pid.is_none_or(|p| !alive(p)).then_some(())
    });
}

#[test]
fn a_newer_schema_is_refused_and_the_folder_stays_byte_identical() {
    let (home, _) = home_from_fixture(1);
    let config = home.path("config.json");
    std::fs::write(
        &config,
        br#"{"schema_version": 99, "core_port": 0, "a_future_setting": [1, 2]}"#,
    )
    .unwrap();
    let out = assert_refused_as_schema_99(&home);
    assert!(
        out.stderr
            .contains(&format!("up to schema {CURRENT_SCHEMA_VERSION}")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("backup restore"), "{}", out.stderr);
}

/// `jarvis up` refuses the folder as a newer Jarvis's (schema 99) and
/// leaves it byte-identical.
fn assert_refused_as_schema_99(home: &TestHome) -> jarvis_tests::Output {
    let before = snapshot(&home.data_dir());
    let out = home.run(&["up", "--no-browser"]);
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("written by a newer Jarvis (data schema 99)"),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&home.data_dir()), before);
    out
}

#[test]
fn a_corrupt_config_is_kept_aside_and_the_app_starts_with_its_memory() {
    let (home, expected) = home_from_fixture(1);
    let garbage = b"{\"schema_version\": 1, \"core_port\": \"not a port\"";
    std::fs::write(home.path("config.json"), garbage).unwrap();
    let launcher = home.up();
    assert!(
        launcher.stderr().contains("was not valid"),
        "{}",
        launcher.stderr()
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(home.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("config.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        garbage,
        "nothing is silently dropped"
    );
    assert_migrated(&home, &expected);
}

/// Finding 12 of issue 16: a corrupt config beside memory was taken for
/// schema 1, so migrated memory was "migrated" again, and a folder a newer
/// Jarvis wrote was not recognised as newer. `data-schema` records the
/// schema a second time.
#[test]
fn a_corrupt_config_keeps_the_schema_its_memory_is_in() {
    let (home, expected) = home_from_fixture(1);
    let mut launcher = home.up();
    assert_migrated(&home, &expected);
    launcher.terminate();
    assert_eq!(
        std::fs::read_to_string(home.path("data-schema"))
            .unwrap()
            .trim(),
        CURRENT_SCHEMA_VERSION.to_string()
    );

    std::fs::write(home.path("config.json"), b"{\"schema_version\": ").unwrap();
    let mut launcher = home.up();
    let said = launcher.stderr();
    assert!(said.contains("was not valid"), "{said}");
    assert!(!said.contains("Data migrated"), "migrated again: {said}");
    assert_migrated(&home, &expected);
    let backups: Value =
        serde_json::from_str(&home.run(&["backup", "list", "--json"]).stdout).unwrap();
    assert_eq!(
        backups.as_array().unwrap().len(),
        1,
        "no second migration backup"
    );
    launcher.terminate();

    // A newer Jarvis's folder with a damaged config is refused untouched.
    std::fs::write(home.path("data-schema"), b"99\n").unwrap();
    std::fs::write(home.path("config.json"), b"not json").unwrap();
    assert_refused_as_schema_99(&home);
}

#[test]
fn restoring_a_backup_brings_back_the_exact_files_and_memory() {
    let home = TestHome::new();
    let mut launcher = home.up();
    let kept = home.api().create_conversation();
    assert_eq!(home.api().add_message(&kept, "user", "kept").status(), 201);
    launcher.terminate();

    let created: Value =
        serde_json::from_str(&home.run(&["backup", "create", "--json"]).stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let config_before = std::fs::read(home.path("config.json")).unwrap();
    let redis_before = snapshot(&home.path("redis/appendonlydir"));

    let mut launcher = home.up();
    let api = home.api();
    let lost = api.create_conversation();
    assert_eq!(
        api.add_message(&kept, "user", "after the backup").status(),
        201
    );
    let refused = home.run(&["backup", "restore", &id]);
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("stop it first"),
        "{}",
        refused.stderr
    );
    launcher.terminate();

    let out = home.run(&["backup", "restore", &id]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(home.path("config.json")).unwrap(),
        config_before
    );
    assert_eq!(snapshot(&home.path("redis/appendonlydir")), redis_before);
    let missing = home.run(&["backup", "restore", "no-such-backup"]);
    assert!(!missing.status.success());
    assert!(missing.stderr.contains("no backup"), "{}", missing.stderr);

    let _launcher = home.up();
    let api = home.api();
    assert_eq!(api.messages(&kept).unwrap(), vec!["kept"]);
    assert!(
        api.messages(&lost).is_none(),
        "what came after the backup is gone"
    );
}

#[test]
fn migrate_status_dry_run_and_run_from_the_command_line() {
    let (home, expected) = home_from_fixture(1);
    let status: Value =
        serde_json::from_str(&home.run(&["migrate", "status", "--json"]).stdout).unwrap();
    assert_eq!(status["schema_version"], 1);
    assert_eq!(status["pending"][0]["id"], 2);

    let before = snapshot(&home.data_dir());
    let dry = home.run(&["migrate", "run", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    assert!(dry.stdout.contains("would run 2"), "{}", dry.stdout);
    assert_eq!(
        snapshot(&home.data_dir()),
        before,
        "a dry run changes nothing"
    );

    let run = home.run(&["migrate", "run"]);
    assert!(run.status.success(), "{run:?}");
    assert!(run.stderr.contains("step 1 of 1"), "{}", run.stderr);
    let status: Value =
        serde_json::from_str(&home.run(&["migrate", "status", "--json"]).stdout).unwrap();
    assert_eq!(status["schema_version"], CURRENT_SCHEMA_VERSION);
    assert_eq!(status["pending"], serde_json::json!([]));

    let _launcher = home.up();
    assert_migrated(&home, &expected);
}

#[test]
fn only_the_newest_backups_are_kept() {
    let home = TestHome::new();
    let mut launcher = home.up();
    launcher.terminate();
    for _ in 0..7 {
        assert!(home.run(&["backup", "create"]).status.success());
    }
    let list: Value =
        serde_json::from_str(&home.run(&["backup", "list", "--json"]).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
}

/// Issue 16's faults: a full disk while the data migrates (its backup
/// first), while a backup is made and while one is restored, with the disk
/// filled to several levels so that the space runs out at different
/// points. Each command either completes or fails saying the disk is full,
/// and once space is freed the same command completes with the memory
/// exactly the fixture's: nothing is lost at any level.
#[test]
fn a_full_disk_during_migration_backup_and_restore_loses_nothing() {
    for slack_kib in [0u64, 24, 96, 384] {
        let (home, expected) = home_from_fixture(1);
        // The data folder on a small disk of its own.
        let fixture = home.scratch().join("fixture");
        copy_dir(&home.data_dir(), &fixture);
        let Some(disk) = Tmpfs::mount_at(&home.data_dir(), 8) else {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        };
        copy_dir(&fixture, &home.data_dir());
        let ballast = home.path("ballast.bin");
        let full = |what: &str, out: &jarvis_tests::Output| {
            if !out.status.success() {
                assert!(
                    out.stderr.contains("space") || out.stderr.contains("full"),
                    "{what} at {slack_kib} KiB free failed without saying the disk is full: {}",
                    out.stderr
                );
            }
        };

        disk.fill(&ballast, slack_kib * 1024);
        let migrated = home.run(&["migrate", "run"]);
        full("the migration", &migrated);
        std::fs::remove_file(&ballast).unwrap();
        if !migrated.status.success() {
            assert!(home.run(&["migrate", "run"]).status.success());
        }
        let mut launcher = home.up();
        assert_migrated(&home, &expected);
        launcher.terminate();

        disk.fill(&ballast, slack_kib * 1024);
        let backed_up = home.run(&["backup", "create", "--json"]);
        full("a backup", &backed_up);
        std::fs::remove_file(&ballast).unwrap();
        let list: Value =
            serde_json::from_str(&home.run(&["backup", "list", "--json"]).stdout).unwrap();
        let complete = list.as_array().unwrap().len();
        assert_eq!(
            complete,
            1 + usize::from(backed_up.status.success()),
            "the migration's backup, and this one only if it completed"
        );
        let id = list[0]["id"].as_str().unwrap().to_owned();

        let config = std::fs::read(home.path("config.json")).unwrap();
        let redis = snapshot(&home.path("redis"));
        disk.fill(&ballast, slack_kib * 1024);
        let restored = home.run(&["backup", "restore", &id]);
        full("a restore", &restored);
        if !restored.status.success() {
            assert_eq!(
                (
                    std::fs::read(home.path("config.json")).unwrap(),
                    snapshot(&home.path("redis"))
                ),
                (config, redis),
                "a failed restore changed the data"
            );
        }
        std::fs::remove_file(&ballast).unwrap();
        assert!(
            home.run(&["backup", "restore", &id]).status.success(),
            "a restore with space after one without"
        );
        // The migration's backup holds the schema-1 folder: restored, it
        // migrates again to exactly the fixture's memory.
        let _launcher = home.up();
        assert_migrated(&home, &expected);
    }
}
