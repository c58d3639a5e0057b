//! Windows under Wine (Debian's `wine64`): the real MSI and Setup.exe made
//! by `jarvis-dist`, carrying the real Windows launcher (cross-built with
//! MinGW-w64), installed, upgraded and uninstalled the way a managed
//! Windows machine does it, silently; and the real Windows core.
//!
//! What Wine runs here: the installers, the Windows launcher's `--version`,
//! `paths --json`, `update status` and `uninstall`; and, in
//! `scripts/check-windows-core` (the release core takes twenty minutes to
//! cross-build), the Windows core with the real models against Debian's
//! `redis-server`. What it does not: a Windows Redis-compatible server
//! (none can be had from the registries reachable here, see
//! ARCHITECTURE.md) and so the launcher starting the whole app; the
//! releases the installer tests carry have a stand-in core file that
//! nothing runs, since the suite does not wait for the real one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jarvis_tests::{TestHome, Version, publish, snapshot};

const TARGET: &str = "x86_64-pc-windows-gnu";

/// The launcher cross-built for Windows (`scripts/test` builds it).
fn windows_launcher() -> PathBuf {
    let path = jarvis_tests::bin_dir()
        .parent()
        .unwrap()
        .join(TARGET)
        .join("debug/jarvis.exe");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p jarvis-launcher --target {TARGET}` (scripts/test does)",
        path.display()
    );
    path
}

/// A signed Windows release `version` in `<work>/feed-<version>`.
fn windows_release(work: &Path, version: &str) -> PathBuf {
    let core = work.join("jarvis-core.exe");
    std::fs::write(
        &core,
        "stand-in: the Windows core is built on a Windows runner, never run under Wine here",
    )
    .unwrap();
    let feed = work.join(format!("feed-{version}"));
    publish(
        work,
        &feed,
        &Version {
            version,
            target: TARGET,
            core: &core,
            launcher: &windows_launcher(),
            previous: &[],
            redis: None,
        },
    );
    feed
}

fn installer(format: &str, feed: &Path, out: &Path) -> PathBuf {
    // Setup.exe with zlib, not solid LZMA: a minute less on a debug launcher.
    let fast: &[&dyn AsRef<std::ffi::OsStr>] = if format == "nsis" { &[&"--fast"] } else { &[] };
    let mut extra: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--target", &TARGET];
    extra.extend_from_slice(fast);
    jarvis_tests::installer(format, feed, out, &extra)
}

/// A Wine prefix of the test's own: a fresh Windows user profile.
struct Wine {
    prefix: PathBuf,
}

impl Wine {
    fn new(dir: &Path) -> Self {
        let wine = Self {
            prefix: dir.join("wine"),
        };
        wine.run(&[&"wineboot", &"--init"]);
        // Wine 8 lacks bcryptprimitives.dll (ProcessPrng), which Rust
        // programs import on Windows 10 and later: a stand-in built from
        // tests/fixtures/wine, in this prefix only.
        let fixture = jarvis_tests::fixtures().with_file_name("wine");
        let status = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-shared", "-O2", "-o"])
            .arg(
                wine.prefix
                    .join("drive_c/windows/system32/bcryptprimitives.dll"),
            )
            .arg(fixture.join("bcryptprimitives.c"))
            .arg(fixture.join("bcryptprimitives.def"))
            .arg("-ladvapi32")
            .status()
            .unwrap();
        assert!(status.success());
        wine
    }

    fn command(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
        let mut cmd = Command::new("/usr/lib/wine/wine64");
        cmd.args(args)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            // Jarvis' own variables would reach the Windows process.
            .env_remove(jarvis_protocol::env::HOME)
            .env_remove(jarvis_protocol::env::BUNDLE_DIR);
        cmd
    }

    fn run(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "wine {:?}: {}{}",
            args.iter()
                .map(|a| a.as_ref().to_owned())
                .collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The Windows user's profile folder, on this side.
    fn profile(&self) -> PathBuf {
        let users = self.prefix.join("drive_c/users");
        std::fs::read_dir(&users)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n != "Public"))
            .unwrap()
    }

    fn install_dir(&self) -> PathBuf {
        self.profile().join("AppData/Local/Programs/Jarvis")
    }

    fn data_dir(&self) -> PathBuf {
        self.profile().join("AppData/Roaming/SparkAI")
    }

    fn start_menu_shortcut(&self) -> PathBuf {
        self.profile()
            .join("AppData/Roaming/Microsoft/Windows/Start Menu/Programs/Jarvis.lnk")
    }

    /// Runs the installed launcher; stdout.
    fn jarvis(&self, args: &[&str]) -> String {
        let exe = self.install_dir().join("jarvis.exe");
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&exe];
        all.extend(args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        String::from_utf8_lossy(&self.run(&all).stdout).into_owned()
    }

    /// A person's data: settings, a model, memory files.
    fn write_user_data(&self) -> std::collections::BTreeMap<String, jarvis_download::Sha256Digest> {
        let data = self.data_dir();
        for (path, text) in [
            ("config.json", "{\"auto_update\": true}"),
            ("models/chat/1.0.0/model.gguf", "weights"),
            (
                "redis/appendonlydir/appendonly.aof.1.incr.aof",
                "*1\r\n$4\r\nPING\r\n",
            ),
        ] {
            let path = data.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        snapshot(&data)
    }
}

fn current_version(wine: &Wine) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&wine.jarvis(&["update", "status", "--json"])).unwrap();
    status["current"].clone()
}

#[test]
fn the_msi_installs_per_user_upgrades_and_uninstalls_silently_keeping_data() {
    let home = TestHome::new();
    let work = home.scratch();
    let v1 = installer("msi", &windows_release(&work, "1.0.0"), &work.join("out"));
    let v2 = installer("msi", &windows_release(&work, "2.0.0"), &work.join("out"));
    assert!(v1.ends_with("Jarvis-1.0.0-x86_64.msi"), "{v1:?}");

    // Structure: per-user (no ALLUSERS, no elevation), the files inside.
    let summary = Command::new("msiinfo")
        .arg("suminfo")
        .arg(&v1)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&summary.stdout);
    let source = summary
        .lines()
        .find_map(|l| l.strip_prefix("Source: "))
        .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap();
    assert_eq!(
        source & 0x8,
        0x8,
        "elevation must not be required: {summary}"
    );
    let properties = Command::new("msiinfo")
        .args(["export"])
        .arg(&v1)
        .arg("Property")
        .output()
        .unwrap();
    let properties = String::from_utf8_lossy(&properties.stdout);
    assert!(!properties.contains("ALLUSERS"), "{properties}");
    let files = Command::new("msiextract")
        .arg("-l")
        .arg(&v1)
        .output()
        .unwrap();
    let files = String::from_utf8_lossy(&files.stdout);
    for path in [
        "Programs/Jarvis/jarvis.exe",
        "Programs/Jarvis/resources/installer-version",
        "Programs/Jarvis/resources/app/1.0.0/release.json.sig",
        "Programs/Jarvis/resources/app/1.0.0/jarvis-core.exe",
    ] {
        assert!(
            files.lines().any(|l| l.replace('\\', "/").ends_with(path)),
            "{path} not in:\n{files}"
        );
    }

    let wine = Wine::new(&work);
    wine.run(&[&"msiexec", &"/i", &v1, &"/qn"]);
    assert!(wine.install_dir().join("jarvis.exe").is_file());
    assert!(wine.start_menu_shortcut().is_file());
    let version = wine.jarvis(&["--version"]);
    assert!(version.starts_with("jarvis "), "{version}");
    let paths: serde_json::Value =
        serde_json::from_str(&wine.jarvis(&["paths", "--json"])).unwrap();
    let bundle = paths["bundle_dir"].as_str().unwrap();
    assert!(
        bundle.ends_with(r"AppData\Local\Programs\Jarvis"),
        "{paths}"
    );
    assert!(
        paths["data_dir"]
            .as_str()
            .unwrap()
            .ends_with(r"AppData\Roaming\SparkAI"),
        "{paths}"
    );
    // The launcher adopts the MSI's version; the MSI never owns `current`.
    assert_eq!(current_version(&wine), "1.0.0");
    let data = wine.write_user_data();

    // A newer MSI replaces the old one (a major upgrade).
    wine.run(&[&"msiexec", &"/i", &v2, &"/qn"]);
    assert_eq!(current_version(&wine), "2.0.0");
    assert!(!wine.install_dir().join("resources/app/1.0.0").exists());
    assert_eq!(snapshot(&wine.data_dir()), data);

    // Uninstall: the app, the updater's pointers and the shortcut go; the
    // data folder stays byte for byte.
    wine.run(&[&"msiexec", &"/x", &v2, &"/qn"]);
    assert!(
        !wine.install_dir().exists(),
        "{:?}",
        std::fs::read_dir(wine.install_dir())
            .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
    assert!(!wine.start_menu_shortcut().exists());
    assert_eq!(snapshot(&wine.data_dir()), data);
}

#[test]
fn setup_exe_installs_upgrades_and_uninstalls_silently_and_removes_data_only_when_asked() {
    let home = TestHome::new();
    let work = home.scratch();
    let v1 = installer("nsis", &windows_release(&work, "1.0.0"), &work.join("out"));
    let v2 = installer("nsis", &windows_release(&work, "2.0.0"), &work.join("out"));
    assert!(v1.ends_with("Jarvis-Setup-1.0.0-x86_64.exe"), "{v1:?}");

    let wine = Wine::new(&work);
    wine.run(&[&v1, &"/S"]);
    assert!(wine.install_dir().join("Uninstall.exe").is_file());
    assert!(wine.start_menu_shortcut().is_file());
    assert_eq!(current_version(&wine), "1.0.0");
    let data = wine.write_user_data();
    let key = r"HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\Jarvis";
    let registered = wine.run(&[&"reg", &"query", &key]);
    let registered = String::from_utf8_lossy(&registered.stdout);
    assert!(registered.contains("QuietUninstallString"), "{registered}");

    // A newer Setup.exe over it; the updater's pointer follows.
    wine.run(&[&v2, &"/S"]);
    assert_eq!(current_version(&wine), "2.0.0");

    // Silent uninstall (run in place, `_?=`, so it finishes before we
    // look): the app goes, the data stays.
    let uninstall = |extra: &[&str]| {
        let exe = wine.install_dir().join("Uninstall.exe");
        let in_place = format!(
            "_?={}",
            wine.jarvis(&["paths", "--json"])
                .parse::<serde_json::Value>()
                .unwrap()["bundle_dir"]
                .as_str()
                .unwrap()
        );
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&exe, &"/S"];
        args.extend(extra.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        args.push(&in_place);
        wine.run(&args);
        // Run in place, the uninstaller cannot delete itself.
        let _ = std::fs::remove_file(&exe);
        let _ = std::fs::remove_dir(wine.install_dir());
    };
    uninstall(&[]);
    assert!(!wine.install_dir().join("resources").exists());
    assert!(!wine.install_dir().join("jarvis.exe").exists());
    assert!(!wine.start_menu_shortcut().exists());
    assert!(
        wine.command(&[&"reg", &"query", &key])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );
    assert_eq!(snapshot(&wine.data_dir()), data);

    // Reinstalled, and removed with /REMOVEDATA: now the data goes too.
    wine.run(&[&v2, &"/S"]);
    uninstall(&["/REMOVEDATA"]);
    assert!(!wine.data_dir().exists());
}

/// `path` as the Windows program under Wine sees it (drive Z: is `/`).
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// The real Windows core, cross-built by `scripts/build-windows-core`
/// (twenty minutes on two cores, so `scripts/check-windows-core` runs this
/// test, not `scripts/test`), under Wine with the real models and Debian's
/// `redis-server` on loopback standing in for the Windows server: it
/// reaches ready, chats over the WebSocket, keeps the conversation in
/// Redis, and transcribes speech.
#[test]
#[ignore = "needs the release Windows core: scripts/check-windows-core runs it"]
fn the_windows_core_chats_remembers_and_transcribes_under_wine() {
    use jarvis_tests::brain::{Socket, install_models, speak, transcription, wait_engine};

    let exe =
        PathBuf::from(std::env::var_os("JARVIS_WINDOWS_CORE").expect(
            "JARVIS_WINDOWS_CORE names jarvis-core.exe (scripts/check-windows-core sets it)",
        ));
    assert!(exe.is_file(), "{} is missing", exe.display());
    let home = TestHome::new();
    install_models(&home, true);
    let redis_dir = home.scratch().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let redis = jarvis_tests::TestRedis::start(&redis_dir, &[]);
    let wine = Wine::new(&home.scratch());

    let core = jarvis_tests::CoreProcess::start(
        wine.command(&[&exe]),
        windows_path(&home.data_dir()),
        windows_path(&home.path("models")),
        &format!("redis://127.0.0.1:{}/0", redis.port),
        "windows-token",
        &home.scratch().join("core-stderr.log"),
    );
    let api = jarvis_tests::Api::new(&core.url, "windows-token");
    let llm = wait_engine(&api, "llm", "ready");
    assert_eq!(llm["model"]["name"], "smollm2-135m-instruct", "{llm}");
    wait_engine(&api, "stt", "ready");

    let conversation = api.create_conversation();
    let mut socket = Socket::connect(&api);
    let (said, done) = socket.chat("w1", &conversation, "What is the capital of France?");
    assert_eq!(done["type"], "done", "{done}");
    assert!(!said.trim().is_empty(), "{done}");
    let stored = api.messages(&conversation).unwrap();
    assert_eq!(stored, ["What is the capital of France?", said.as_str()]);

    let wav = speak(&home.scratch(), "door.wav", "Please open the door.");
    let response = transcription(&api, &wav, "json");
    assert_eq!(response.status(), 200);
    let text = response.json::<serde_json::Value>().unwrap()["text"]
        .as_str()
        .unwrap()
        .to_lowercase();
    for word in ["please", "open", "door"] {
        assert!(text.contains(word), "'{word}' missing from {text:?}");
    }
}
