//! Memory survives stops, restarts and `kill -9` of every process.

use std::process::{Command, Stdio};
use std::time::Duration;

use jarvis_tests::{Signal, TestHome, alive, processes_in, signal, wait_for};

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
