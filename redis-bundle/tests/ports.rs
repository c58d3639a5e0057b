//! Port choice with a real `redis-server`: a free port when asked for any,
//! and a clear error (not a hang, not someone else's server) when the port
//! it was given belongs to another process.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use jarvis_redis_bundle::{RedisConfig, RedisError, RedisServer};

const TIMEOUT: Duration = Duration::from_secs(20);

fn redis_server() -> PathBuf {
    jarvis_redis_bundle::locate(
        Some(Path::new("/nonexistent")),
        "JARVIS_REDIS_SERVER",
        std::env::var_os("JARVIS_REDIS_SERVER").map(PathBuf::from),
        std::env::var_os("PATH"),
    )
    .expect("redis-server is not installed; run scripts/setup")
}

fn config(dir: &Path, port: u16) -> RedisConfig {
    RedisConfig {
        dir: dir.to_owned(),
        port,
        pid_file: dir.join("redis.pid"),
        launcher_password: "launcher-secret".to_owned(),
        core_password: "core-secret".to_owned(),
    }
}

#[tokio::test]
async fn port_zero_starts_on_a_free_port_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("redis.log");
    let server = RedisServer::start(&redis_server(), config(dir.path(), 0), &log, TIMEOUT)
        .await
        .unwrap();
    assert_ne!(server.port(), 0);
    assert!(
        server
            .config()
            .core_url()
            .contains(&format!(":{}/", server.port()))
    );
    assert!(!server.version().await.unwrap().is_empty());
    server.stop(TIMEOUT).await.unwrap();
}

#[tokio::test]
async fn a_port_another_process_holds_is_reported_as_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("redis.log");
    let squatter = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = squatter.local_addr().unwrap().port();
    let err = RedisServer::start(&redis_server(), config(dir.path(), port), &log, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RedisError::PortInUse { port: p } if p == port),
        "{err}"
    );
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn an_earlier_start_s_port_conflict_in_the_log_is_not_this_start_s() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("redis.log");
    std::fs::write(&log, "# Warning: bind: Address already in use\n").unwrap();
    // Exits at once and says nothing.
    let err = RedisServer::start(
        Path::new("/bin/false"),
        config(dir.path(), 0),
        &log,
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RedisError::ExitedEarly { .. }), "{err}");
}
