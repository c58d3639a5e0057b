//! First launch, second launch, status, stop, paths, doctor, missing Redis.

use std::time::Duration;

use jarvis_tests::{TestHome, alive, processes_in};

#[test]
fn first_launch_creates_the_tree_and_reaches_ready() {
    let home = TestHome::new();
    let mut launcher = home.up();
    let url = launcher.url.clone().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    for dir in ["models", "redis", "memory", "logs", "run"] {
        assert!(home.path(dir).is_dir(), "{dir} missing");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["schema_version"],
        jarvis_migrations::CURRENT_SCHEMA_VERSION
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(home.path(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(""), 0o700);
        assert_eq!(mode("run"), 0o700);
        assert_eq!(mode("run/api-token"), 0o600);
        assert_eq!(mode("run/instance.json"), 0o600);
        assert_eq!(mode("redis/redis.conf"), 0o600);
    }

    let instance = home.instance().unwrap();
    assert_eq!(instance.base_url, url);
    assert_eq!(instance.launcher.pid, launcher.pid());
    assert!(alive(instance.redis.pid) && alive(instance.core.pid));
    assert_eq!(instance.redis.version.split('.').next(), Some("7"));
    assert_eq!(instance.core.version, env!("CARGO_PKG_VERSION"));
    assert!(home.api().ready());

    // Logs are kept apart per process.
    let logs: Vec<String> = std::fs::read_dir(home.path("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(logs.iter().any(|l| l.starts_with("launcher")), "{logs:?}");
    assert!(logs.contains(&"core.log".to_owned()), "{logs:?}");
    assert!(logs.contains(&"redis.log".to_owned()), "{logs:?}");

    // Two lines on stdout: `ready:` (read above), then the UI's one-time
    // sign-in URL.
    let lines = jarvis_tests::wait_for(Duration::from_secs(10), "the ui line", || {
        let lines = launcher.stdout_lines();
        (!lines.is_empty()).then_some(lines)
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("ui: http://127.0.0.1:") && lines[0].contains("/signin?code="),
        "{lines:?}"
    );

    // A second launch is refused politely and says where the first one is.
    let second = home.run(&["up", "--no-browser"]);
    assert!(second.status.success(), "{second:?}");
    assert!(
        second.stdout.contains("already running"),
        "{}",
        second.stdout
    );
    assert!(second.stdout.contains(&url), "{}", second.stdout);
    assert_eq!(processes_in(&home.path("redis"), "redis-server").len(), 1);

    // Stop: children gone, runtime files removed, data kept.
    let status = launcher.terminate();
    assert!(status.success(), "{status:?}\n{}", launcher.stderr());
    assert!(!alive(instance.redis.pid) && !alive(instance.core.pid));
    assert!(!home.path("run/instance.json").exists());
    assert!(!home.path("run/api-token").exists());
    assert!(home.path("redis/dump.rdb").is_file());
}

#[test]
fn status_reports_running_and_stopped_as_text_and_json() {
    let home = TestHome::new();
    let stopped = home.run(&["status", "--json"]);
    assert!(stopped.status.success());
    let json: serde_json::Value = serde_json::from_str(&stopped.stdout).unwrap();
    assert_eq!(json["running"], false);
    assert!(
        !home.data_dir().exists(),
        "status must not create the data folder"
    );

    let _launcher = home.up();
    let running = home.run(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&running.stdout).unwrap();
    assert_eq!(json["running"], true);
    let instance = home.instance().unwrap();
    assert_eq!(json["instance"]["core"]["pid"], instance.core.pid);
    assert_eq!(json["instance"]["redis"]["port"], instance.redis.port);

    let text = home.run(&["status"]);
    assert!(text.stdout.contains("is running at"), "{}", text.stdout);
    assert!(text.stdout.contains(&instance.base_url), "{}", text.stdout);
}

/// `jarvis stop` asks through the launcher's UI origin with the API
/// token, the same on every OS (finding 11 of issue 16: it used to send
/// `SIGTERM` only, which cannot stop anything on Windows).
#[test]
fn jarvis_stop_stops_the_running_instance_gracefully() {
    let home = TestHome::new();
    let mut launcher = home.up();
    let instance = home.instance().unwrap();
    let out = home.run(&["stop"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("stopped"), "{}", out.stdout);
    let status = launcher.wait_exit(Duration::from_secs(30));
    assert!(status.success());
    assert!(
        launcher
            .stderr()
            .contains("Stop requested by `jarvis stop`"),
        "{}",
        launcher.stderr()
    );
    assert!(!alive(instance.redis.pid) && !alive(instance.core.pid));
    // Redis was saved and shut down, not killed.
    let log = std::fs::read_to_string(home.path("logs/redis.log")).unwrap();
    assert!(log.contains("DB saved on disk"), "{log}");
    assert!(log.contains("ready to exit"), "{log}");

    let again = home.run(&["stop"]);
    assert!(again.status.success());
    assert!(again.stdout.contains("not running"), "{}", again.stdout);
}

#[test]
fn paths_honour_jarvis_home_and_create_nothing() {
    let home = TestHome::new();
    let out = home.run(&["paths", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let data = home.data_dir();
    assert_eq!(json["data_dir"], data.display().to_string());
    assert_eq!(
        json["models_dir"],
        data.join("models").display().to_string()
    );
    assert_eq!(
        json["config_file"],
        data.join("config.json").display().to_string()
    );
    assert!(!data.exists());
}

#[test]
fn missing_redis_server_is_a_clear_error_and_creates_nothing() {
    let home = TestHome::new();
    let empty_path = tempfile::tempdir().unwrap();
    let out = home
        .jarvis(&["up", "--no-browser"])
        .env("PATH", empty_path.path())
        .env_remove("JARVIS_REDIS_SERVER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no redis-server found"), "{stderr}");
    assert!(stderr.contains("JARVIS_REDIS_SERVER"), "{stderr}");
    assert!(stderr.contains("apt-get install redis-server"), "{stderr}");
    assert!(!home.data_dir().exists(), "nothing may be half-created");

    let out = home
        .jarvis(&["up", "--no-browser"])
        .env("JARVIS_REDIS_SERVER", "/nonexistent/redis-server")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/redis-server"), "{stderr}");
    assert!(!home.data_dir().exists());
}

#[test]
fn doctor_passes_here_and_explains_a_missing_redis() {
    let home = TestHome::new();
    let ok = home.run(&["doctor"]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(ok.stdout.contains("All checks passed"), "{}", ok.stdout);

    let empty_path = tempfile::tempdir().unwrap();
    let out = home
        .jarvis(&["doctor"])
        .env("PATH", empty_path.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("FAIL  redis-server"), "{stdout}");
    assert!(stdout.contains("hint:"), "{stdout}");
}

#[test]
fn a_newer_data_schema_is_refused_and_left_untouched() {
    let home = TestHome::new();
    std::fs::create_dir_all(home.data_dir()).unwrap();
    let config = br#"{"schema_version": 999, "future_setting": true}"#;
    std::fs::write(home.path("config.json"), config).unwrap();
    let out = home.run(&["up", "--no-browser"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("newer Jarvis"), "{}", out.stderr);
    assert!(out.stderr.contains("data schema 999"), "{}", out.stderr);
    assert_eq!(std::fs::read(home.path("config.json")).unwrap(), config);
    let entries: Vec<_> = std::fs::read_dir(home.data_dir()).unwrap().collect();
    assert_eq!(
        entries.len(),
        1,
        "the folder must be left exactly as it was"
    );
}

#[test]
fn the_command_line_is_stable() {
    let home = TestHome::new();
    for args in [
        &["--help"][..],
        &["models", "--help"],
        &["update", "--help"],
        &["migrate", "--help"],
        &["backup", "--help"],
    ] {
        let out = home.run(args);
        assert!(out.status.success(), "{out:?}");
        insta::assert_snapshot!(
            format!("help_{}", args.join("_").replace("--", "")),
            out.stdout
        );
    }
}
