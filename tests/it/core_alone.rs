//! `jarvis-core` started on its own: it waits for Redis, never creates
//! folders, and reconnects when Redis comes (back).

use std::process::Command;
use std::time::Duration;

use jarvis_protocol::env;
use jarvis_tests::{Api, CoreProcess, TestRedis, core_bin, free_port, wait_for};

fn start_core(data: &std::path::Path, redis_url: &str, token: &str) -> CoreProcess {
    CoreProcess::start(
        Command::new(core_bin()),
        data,
        data,
        redis_url,
        token,
        &data.join("core-stderr.log"),
    )
}

#[test]
fn the_core_keeps_retrying_an_unreachable_redis_and_becomes_ready_when_it_appears() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let core = start_core(data.path(), &format!("redis://127.0.0.1:{port}/0"), "tok");
    let api = Api::new(&core.url, "tok");

    // Alive but not ready, for a while, and still running.
    let health = api
        .anonymous(reqwest::Method::GET, "/healthz")
        .send()
        .unwrap();
    assert_eq!(health.status(), 200);
    std::thread::sleep(Duration::from_millis(600));
    let readyz = api
        .anonymous(reqwest::Method::GET, "/readyz")
        .send()
        .unwrap();
    assert_eq!(readyz.status(), 503);
    let body: serde_json::Value = readyz.json().unwrap();
    assert_eq!(body["redis"]["ok"], false);
    let early = api
        .request(reqwest::Method::POST, "/v1/conversations")
        .send()
        .unwrap();
    assert_eq!(early.status(), 503);

    let redis_dir = tempfile::tempdir().unwrap();
    let redis = TestRedis::start_on(redis_dir.path(), port, &[]);
    wait_for(Duration::from_secs(30), "core ready", || {
        api.ready().then_some(())
    });
    let id = api.create_conversation();
    assert_eq!(api.add_message(&id, "user", "hello").status(), 201);

    let log = std::fs::read_to_string(&core.stderr_log).unwrap();
    let attempts = log.matches("Redis not reachable; retrying").count();
    assert!(attempts >= 2, "each retry is logged: {log}");

    // Redis restarts (without persistence here): the core reconnects.
    drop(redis);
    wait_for(Duration::from_secs(30), "core not ready", || {
        (!api.ready()).then_some(())
    });
    let _redis = TestRedis::start_on(redis_dir.path(), port, &[]);
    wait_for(Duration::from_secs(30), "core ready again", || {
        api.ready().then_some(())
    });
    let _ = api.create_conversation();
}

#[test]
fn the_core_never_creates_its_folders() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("no-such-data");
    let out = Command::new(core_bin())
        .env(env::DATA_DIR, &missing)
        .env(env::MODELS_DIR, &missing)
        .env(env::REDIS_URL, "redis://127.0.0.1:1/0")
        .env(env::API_TOKEN, "tok")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("JARVIS_DATA_DIR"), "{stderr}");
    assert!(stderr.contains("never creates folders"), "{stderr}");
    assert!(!missing.exists());

    let out = Command::new(core_bin())
        .env_remove(env::DATA_DIR)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not set"));
}

/// The launcher hands the core its socket; anything else under that name
/// is refused with a reason, before the core serves anything.
#[cfg(unix)]
#[test]
fn an_inherited_socket_that_is_not_a_loopback_listener_is_refused() {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;

    let data = tempfile::tempdir().unwrap();
    let not_a_socket = std::fs::File::open(core_bin()).unwrap();
    let everyone = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    for (fd, expected) in [
        (None, "descriptor 9 is not open"),
        (Some(not_a_socket.as_raw_fd()), "not a listening TCP socket"),
        (Some(everyone.as_raw_fd()), "not a loopback address"),
    ] {
        let mut cmd = Command::new(core_bin());
        cmd.env(env::DATA_DIR, data.path())
            .env(env::MODELS_DIR, data.path())
            .env(env::REDIS_URL, "redis://127.0.0.1:1/0")
            .env(env::API_TOKEN, "tok")
            .env(env::CORE_LISTEN_FD, "9");
        if let Some(fd) = fd {
            // SAFETY: dup2 is async-signal-safe; it runs in the child
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(fd, 9) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{expected}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(out.stdout.is_empty(), "it served nothing");
    }
}
