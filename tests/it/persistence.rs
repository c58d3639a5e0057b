//! Memory survives stops, restarts and `kill -9` of every process.

use std::process::{Command, Stdio};
use std::time::Duration;

use jarvis_tests::{Signal, TestHome, Tmpfs, alive, processes_in, signal, wait_for};

const SETTLE: Duration = Duration::from_secs(30);

fn store(home: &TestHome, text: &str) -> String {
    let api = home.api();
    let id = api.create_conversation();
    let response = api.add_message(&id, "user", text);
    assert_eq!(response.status(), 201);
    id
}

#[test]
fn a_message_survives_jarvis_stop_and_up() {
    let home = TestHome::new();
    let mut launcher = home.up();
    let id = store(&home, "remember the milk");
    assert!(home.run(&["stop"]).status.success());
    launcher.wait_exit(SETTLE);

    let _launcher = home.up();
    assert_eq!(home.api().messages(&id).unwrap(), vec!["remember the milk"]);
}

#[test]
fn a_message_survives_kill9_of_redis_which_the_launcher_restarts() {
    let home = TestHome::new();
    let _launcher = home.up();
    let id = store(&home, "before the crash");
    let old = home.instance().unwrap();
    assert!(signal(old.redis.pid, Signal::Kill));

    let restarted = wait_for(SETTLE, "a restarted Redis", || {
        home.instance()
            .filter(|i| i.redis.pid != old.redis.pid && i.redis.restarts == 1)
    });
    assert_eq!(restarted.redis.port, old.redis.port, "Redis keeps its port");
    let api = home.api();
    let messages = wait_for(SETTLE, "memory after the Redis restart", || {
        api.messages(&id)
    });
    assert_eq!(messages, vec!["before the crash"]);
    assert_eq!(api.add_message(&id, "assistant", "after").status(), 201);
    assert_eq!(
        api.messages(&id).unwrap(),
        vec!["before the crash", "after"]
    );
    assert_eq!(processes_in(&home.path("redis"), "redis-server").len(), 1);
}

#[test]
fn kill9_of_the_launcher_takes_its_children_and_loses_nothing() {
    let home = TestHome::new();
    let mut launcher = home.up();
    let id = store(&home, "written before the launcher died");
    let old = home.instance().unwrap();
    launcher.kill9();
    wait_for(SETTLE, "children to follow their parent", || {
        (!alive(old.redis.pid) && !alive(old.core.pid)).then_some(())
    });

    let _launcher = home.up();
    assert_eq!(
        home.api().messages(&id).unwrap(),
        vec!["written before the launcher died"]
    );
    assert_eq!(processes_in(&home.path("redis"), "redis-server").len(), 1);
}

#[test]
fn an_orphaned_redis_on_the_data_folder_is_stopped_before_a_new_one_starts() {
    let home = TestHome::new();
    let mut launcher = home.up();
    let id = store(&home, "kept by the orphan");
    let old = home.instance().unwrap();
    launcher.kill9();
    wait_for(SETTLE, "children to follow their parent", || {
        (!alive(old.redis.pid) && !alive(old.core.pid)).then_some(())
    });

    // An orphan as another OS (or a launcher killed mid-spawn) would leave
    // it: the same server on the same folder, with nobody supervising it.
    let redis_dir = home.path("redis");
    let mut orphan = Command::new(jarvis_tests::redis_server_bin())
        .arg(redis_dir.join("redis.conf"))
        .current_dir(&redis_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(SETTLE, "the orphan's pid file", || {
        std::fs::read_to_string(home.path("run/redis.pid"))
            .ok()
            .filter(|p| p.trim() == orphan.id().to_string())
    });

    let _launcher = home.up();
    let status = wait_for(SETTLE, "the orphan to be stopped", || {
        orphan.try_wait().unwrap()
    });
    assert!(
        status.success(),
        "the orphan is stopped gracefully: {status:?}"
    );
    assert_eq!(processes_in(&redis_dir, "redis-server").len(), 1);
    assert_eq!(
        home.api().messages(&id).unwrap(),
        vec!["kept by the orphan"]
    );
}

/// Issue 16's faults: the disk fills while messages are written. A write
/// the disk cannot take is never acknowledged, every acknowledged message
/// stays, Jarvis stops saying the disk is full, and once space is freed
/// it starts again with nothing lost.
#[test]
fn a_full_disk_under_chat_load_acknowledges_nothing_it_cannot_keep() {
    let home = TestHome::new();
    std::fs::create_dir_all(home.data_dir()).unwrap();
    let Some(disk) = Tmpfs::mount_at(&home.data_dir(), 64) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let mut launcher = home.up();
    let id = home.api().create_conversation();
    let mut acknowledged = Vec::new();
    let write = |api: &jarvis_tests::Api, text: String, acknowledged: &mut Vec<String>| {
        let status = api.try_add_message(&id, "user", &text);
        if status == Some(201) {
            acknowledged.push(text);
        }
        status
    };
    let api = home.api();
    for i in 0..10 {
        assert_eq!(
            write(&api, format!("before {i}"), &mut acknowledged),
            Some(201)
        );
    }

    let ballast = home.path("ballast.bin");
    disk.fill(&ballast, 0);
    let mut refused = 0;
    for i in 0..20 {
        match write(&api, format!("while full {i}"), &mut acknowledged) {
            Some(201) => {}
            Some(status) => {
                assert!(status >= 500, "a full disk answered {status}");
                refused += 1;
            }
            None => refused += 1,
        }
    }
    assert!(refused > 0, "a full disk acknowledged every write");
    // Redis exits rather than acknowledge what it cannot keep, cannot
    // start again, and the launcher stops saying why.
    launcher.wait_exit(SETTLE);
    assert!(
        launcher.stderr().contains("is full"),
        "{}",
        launcher.stderr()
    );

    std::fs::remove_file(&ballast).unwrap();
    let mut launcher = home.up();
    let api = home.api();
    assert_eq!(
        write(
            &api,
            "after the disk was freed".to_owned(),
            &mut acknowledged
        ),
        Some(201)
    );
    let in_order = |messages: &[String]| {
        let mut rest = messages.iter();
        acknowledged.iter().all(|a| rest.any(|m| m == a))
    };
    let messages = api.messages(&id).unwrap();
    assert!(
        in_order(&messages),
        "acknowledged {acknowledged:?}, kept {messages:?}"
    );

    launcher.terminate();
    let _launcher = home.up();
    let messages = home.api().messages(&id).unwrap();
    assert!(in_order(&messages), "after a restart: {messages:?}");
}
