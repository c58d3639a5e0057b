//! Signed delta updates of the app bundle, end to end: real release bundles
//! built from the real binaries by the real `jarvis-dist`, served over HTTP,
//! installed by the real `jarvis`, with memory, models and settings checked
//! after every step.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jarvis_download::Sha256Digest;
use jarvis_protocol::env;
use jarvis_tests::fault_server::FaultServer;
use jarvis_tests::{
    Output, Signal, TestHome, binary, copy_dir, core_bin, pseudo_random_bytes, running_version,
    signal, snapshot, wait_for,
};
use serde_json::Value;

/// A release workshop: keys, bundles and a feed served over HTTP, and an
/// install folder that a home runs from.
struct Workshop {
    dir: tempfile::TempDir,
    public_key: String,
    server: FaultServer,
}

impl Workshop {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dist(&["keygen", dir.path().join("keys").to_str().unwrap()]);
        Self {
            public_key: out.stdout.trim().to_owned(),
            dir,
            server: FaultServer::start(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn key(&self) -> PathBuf {
        self.path("keys/release.key")
    }

    /// A version folder from the real core. `variant` changes the UI asset
    /// and appends bytes to the core binary (a real binary difference the
    /// delta must carry; ELF ignores trailing data). `broken` truncates the
    /// core so it cannot start.
    fn bundle(&self, version: &str, broken: bool) -> PathBuf {
        self.bundle_with(version, broken, &[])
    }

    fn bundle_with(&self, version: &str, broken: bool, extra: &[&str]) -> PathBuf {
        let mut core = std::fs::read(core_bin()).unwrap();
        if broken {
            core.truncate(4096);
        } else {
            core.extend_from_slice(format!("jarvis build {version}").as_bytes());
        }
        self.bundle_of(version, &core, extra)
    }

    /// A version folder whose core is `core` (bytes of an executable).
    fn bundle_of(&self, version: &str, core: &[u8], extra: &[&str]) -> PathBuf {
        let work = self.path(&format!("src-{version}"));
        std::fs::create_dir_all(&work).unwrap();
        let core_path = work.join("jarvis-core");
        std::fs::write(&core_path, core).unwrap();
        // The built UI is a folder (`--ui`); each version brings its own.
        let ui = work.join("ui");
        std::fs::create_dir_all(&ui).unwrap();
        std::fs::write(ui.join("index.html"), format!("<h1>Jarvis {version}</h1>")).unwrap();
        // A file every version ships unchanged.
        let notice = work.join("NOTICE.txt");
        std::fs::write(&notice, "Jarvis tools: the same in every release.\n").unwrap();
        let notice_arg = format!("tools/NOTICE.txt={}", notice.display());
        let out_dir = self.path(&format!("bundles/{version}"));
        let mut args = vec![
            "bundle",
            "--version",
            version,
            "--core",
            core_path.to_str().unwrap(),
            "--ui",
            ui.to_str().unwrap(),
            "--file",
            &notice_arg,
            "--out",
            out_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = dist(&args);
        assert!(out.status.success(), "{out:?}");
        out_dir
    }

    /// Publishes `bundle` into `feed` (deltas from `previous`), signed with
    /// `key`, and serves the feed.
    fn release(
        &self,
        feed: &str,
        bundle: &Path,
        previous: &[&Path],
        extra: &[&str],
        key: &Path,
    ) -> Value {
        let feed_dir = self.path(feed);
        // Patches at zstd level 3: the core carries the model runtimes,
        // and level 19 on it takes minutes.
        let mut args = vec![
            "release".to_owned(),
            "--level".to_owned(),
            "3".to_owned(),
            "--bundle".to_owned(),
            bundle.display().to_string(),
            "--feed".to_owned(),
            feed_dir.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
        ];
        for p in previous {
            args.push("--previous".to_owned());
            args.push(p.display().to_string());
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let out = dist(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{out:?}");
        self.server.add_dir(&format!("/{feed}"), &feed_dir);
        serde_json::from_str(&out.stdout).unwrap()
    }

    /// A home whose launcher runs from this workshop's install folder and
    /// updates from `feed`.
    fn home(&self, feed: &str) -> TestHome {
        let home = TestHome::new();
        home.set_env("JARVIS_BUNDLE_DIR", self.path("install").to_str().unwrap());
        home.set_env("JARVIS_UPDATE_TRUSTED_KEYS", &self.public_key);
        home.set_env("JARVIS_UPDATE_URL", &self.server.url(&format!("/{feed}")));
        home
    }

    fn feed_file(&self, feed: &str, rel: &str) -> PathBuf {
        self.path(feed)
            .join("stable")
            .join(jarvis_dist::TARGET)
            .join(rel)
    }
}

fn dist(args: &[&str]) -> Output {
    let out = Command::new(binary("jarvis-dist"))
        .args(args)
        .output()
        .unwrap();
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// A home that updates from `feed-current`, with the version folder `v1`
/// (1.0.0) published as `feed1` and installed offline from it into
/// `install`; background updates off (they are tested on their own;
/// elsewhere they would race the test's own steps).
fn home_with_v1_in(shop: &Workshop, v1: &Path, install: &Path) -> TestHome {
    shop.release("feed1", v1, &[], &[], &shop.key());
    let home = shop.home("feed-current");
    home.set_env("JARVIS_BUNDLE_DIR", install.to_str().unwrap());
    let report = json(&home.run(&[
        "update",
        "apply",
        "--from",
        shop.path("feed1").to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(report["version"], "1.0.0");
    home.set_auto_update(false);
    home
}

/// The bytes of all the files under `dir`.
fn folder_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                folder_size(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// Installs v1 offline from its feed folder and stores some memory and a
/// model; returns (home, conversation id).
fn installed_v1(shop: &Workshop) -> (TestHome, String) {
    let v1 = shop.bundle("1.0.0", false);
    let home = home_with_v1_in(shop, &v1, &shop.path("install"));
    let model = home.scratch().join("m.bin");
    std::fs::write(&model, pseudo_random_bytes(5000, 51)).unwrap();
    assert!(
        home.run(&[
            "models",
            "import",
            model.to_str().unwrap(),
            "--name",
            "m",
            "--version",
            "1",
            "--role",
            "llm"
        ])
        .status
        .success()
    );
    let mut launcher = home.up();
    assert!(
        home.instance()
            .unwrap()
            .core
            .executable
            .contains("resources/app/1.0.0")
    );
    let id = home.api().create_conversation();
    assert_eq!(
        home.api().add_message(&id, "user", "remember me").status(),
        201
    );
    launcher.terminate();
    (home, id)
}

/// A version from before the launcher handed the core its socket: its
/// core binds the address itself, which the socket the launcher holds
/// makes fail. The launcher lets go of the socket and starts that core the
/// old way, so rolling back to such a version still runs, and restarts it
/// the same way after a crash.
#[test]
fn a_core_that_binds_its_own_address_still_starts_and_restarts() {
    let shop = Workshop::new();
    let older_core = format!(
        "#!/bin/sh\n# A core from before the socket hand-over.\nunset {}\nexec '{}' \"$@\"\n",
        env::CORE_LISTEN_FD,
        core_bin().display()
    );
    let v1 = shop.bundle_of("1.0.0", older_core.as_bytes(), &[]);
    shop.release("feed1", &v1, &[], &[], &shop.key());
    let home = shop.home("feed-current");
    let feed = shop.path("feed1");
    json(&home.run(&[
        "update",
        "apply",
        "--from",
        feed.to_str().unwrap(),
        "--json",
    ]));
    home.set_auto_update(false);

    let _launcher = home.up();
    let api = home.api();
    let id = api.create_conversation();
    assert_eq!(api.add_message(&id, "user", "old core").status(), 201);
    let old = home.instance().unwrap();
    assert!(
        old.core.executable.contains("resources/app/1.0.0"),
        "{old:?}"
    );
    assert!(signal(old.core.pid, Signal::Kill));
    let new = wait_for(Duration::from_secs(30), "a restarted core", || {
        home.instance()
            .filter(|i| i.core.pid != old.core.pid && i.core.restarts == 1)
    });
    assert_eq!(new.base_url, old.base_url);
    wait_for(Duration::from_secs(30), "the API to answer", || {
        api.ready().then_some(())
    });
    assert_eq!(api.messages(&id).unwrap(), vec!["old core"]);

    // The UI comes from the installed version's `ui/` folder.
    let ui = home.instance().unwrap().ui_url.unwrap();
    let page = reqwest::blocking::Client::new()
        .get(format!("{ui}/"))
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().unwrap(), "<h1>Jarvis 1.0.0</h1>");
}

/// Publishes a 2.0.0 whose core cannot start and applies it over 1.0.0.
fn apply_broken_v2(shop: &Workshop, home: &TestHome) {
    apply_v2(shop, home, true);
}

/// Publishes a 2.0.0 (`broken`: its core cannot start) and applies it
/// over 1.0.0.
fn apply_v2(shop: &Workshop, home: &TestHome, broken: bool) {
    let v2 = shop.bundle("2.0.0", broken);
    shop.release(
        "feed-current",
        &v2,
        &[&shop.path("bundles/1.0.0")],
        &[],
        &shop.key(),
    );
    json(&home.run(&["update", "apply", "--json"]));
}

/// Memory, models and settings are exactly as before.
fn assert_data_intact(home: &TestHome, id: &str, models_before: &BTreeMap<String, Sha256Digest>) {
    assert_eq!(home.api().messages(id).unwrap(), vec!["remember me"]);
    assert_eq!(&snapshot(&home.path("models")), models_before);
    assert!(home.run(&["models", "verify"]).status.success());
}

#[test]
fn v1_to_v2_by_delta_and_v2_to_v3_in_full_keep_all_data() {
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let models = snapshot(&home.path("models"));
    let config = std::fs::read(home.path("config.json")).unwrap();

    let v1 = shop.path("bundles/1.0.0");
    let v2 = shop.bundle("2.0.0", false);
    let release = shop.release("feed-current", &v2, &[&v1], &[], &shop.key());
    let has_delta = |path: &str| {
        release["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == path && f["deltas"].as_array().is_some_and(|d| !d.is_empty()))
    };
    assert!(has_delta("jarvis-core"), "{release}");

    let check = json(&home.run(&["update", "check", "--json"]));
    assert_eq!(check["available"], "2.0.0");
    let applied = json(&home.run(&["update", "apply", "--json"]));
    assert_eq!(applied["from"], "1.0.0");
    // Only files too small for a patch to pay (version.json) come whole.
    assert!(applied["delta_files"].as_u64().unwrap() >= 2, "{applied}");
    assert!(applied["full_files"].as_u64().unwrap() <= 1, "{applied}");
    assert_eq!(
        applied["unchanged_files"], 1,
        "an unchanged file is copied, not fetched"
    );
    let bundle_size = folder_size(&v2);
    let downloaded = applied["bytes_downloaded"].as_u64().unwrap();
    assert!(
        downloaded * 20 < bundle_size,
        "delta {downloaded} B of a {bundle_size} B bundle"
    );

    let launcher = home.up();
    launcher.wait_stderr("update is committed", Duration::from_secs(30));
    assert_eq!(running_version(&home), "2.0.0");
    assert_data_intact(&home, &id, &models);
    drop(launcher);

    let v3 = shop.bundle("3.0.0", false);
    shop.release("feed-current", &v3, &[], &[], &shop.key());
    let applied = json(&home.run(&["update", "apply", "--json"]));
    assert_eq!(applied["delta_files"], 0);
    assert!(applied["full_files"].as_u64().unwrap() >= 3);
    assert_eq!(applied["unchanged_files"], 1);
    let launcher = home.up();
    launcher.wait_stderr("update is committed", Duration::from_secs(30));
    assert_eq!(running_version(&home), "3.0.0");
    assert_data_intact(&home, &id, &models);
    // Settings are the user's: an update never rewrites them.
    assert_eq!(std::fs::read(home.path("config.json")).unwrap(), config);
    let status = json(&home.run(&["update", "status", "--json"]));
    assert_eq!(status["current"], "3.0.0");
    assert_eq!(status["previous"], "2.0.0");
    assert_eq!(status["pending"], Value::Null);
    // Once 3.0.0 is good, only it and its rollback target are kept.
    assert_eq!(status["installed"], serde_json::json!(["2.0.0", "3.0.0"]));
}

#[test]
fn updates_download_silently_in_the_background_and_apply_at_the_next_launch() {
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let models = snapshot(&home.path("models"));
    let v2 = shop.bundle("2.0.0", false);

    // Outside the staged rollout: not offered.
    shop.release(
        "feed-current",
        &v2,
        &[&shop.path("bundles/1.0.0")],
        &["--rollout-percent", "0"],
        &shop.key(),
    );
    assert_eq!(
        json(&home.run(&["update", "check", "--json"]))["available"],
        Value::Null
    );

    shop.release(
        "feed-current",
        &v2,
        &[&shop.path("bundles/1.0.0")],
        &[],
        &shop.key(),
    );
    home.set_auto_update(true);
    let mut launcher = home.up();
    assert_eq!(running_version(&home), "1.0.0");
    jarvis_tests::wait_for(Duration::from_secs(60), "the update to be staged", || {
        let state: Value =
            serde_json::from_slice(&std::fs::read(home.path("update-state.json")).ok()?).ok()?;
        (state["staged"] == "2.0.0").then_some(())
    });
    // What the UI's banner reads: "an update is ready, restart to apply".
    let updates = home.ui_session().get_json("/launcher/updates");
    assert_eq!(updates["current"], "1.0.0", "{updates}");
    assert_eq!(updates["staged"], "2.0.0", "{updates}");
    launcher.terminate();

    let launcher = home.up();
    assert!(
        launcher.stderr().contains("downloaded in the background"),
        "{}",
        launcher.stderr()
    );
    launcher.wait_stderr("update is committed", Duration::from_secs(30));
    assert_eq!(running_version(&home), "2.0.0");
    assert_data_intact(&home, &id, &models);
    // ... and after the switch, "updated to 2.0.0" until dismissed.
    let ui = home.ui_session();
    let updates = ui.get_json("/launcher/updates");
    assert_eq!(updates["current"], "2.0.0", "{updates}");
    assert_eq!(updates["staged"], Value::Null, "{updates}");
    assert_eq!(updates["notice"]["kind"], "updated", "{updates}");
    assert_eq!(updates["notice"]["version"], "2.0.0", "{updates}");
    let dismissed = ui
        .request(reqwest::Method::POST, "/launcher/updates/dismiss")
        .send()
        .unwrap();
    assert_eq!(dismissed.status(), 200);
    assert_eq!(ui.get_json("/launcher/updates")["notice"], Value::Null);
    drop(launcher);
}

#[test]
fn a_v2_whose_core_does_not_start_is_rolled_back_to_v1_with_all_data() {
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let models = snapshot(&home.path("models"));
    apply_broken_v2(&shop, &home);

    let launcher = home.up();
    let stderr = launcher.stderr();
    assert!(stderr.contains("Switched back to Jarvis 1.0.0"), "{stderr}");
    assert_eq!(running_version(&home), "1.0.0");
    assert_data_intact(&home, &id, &models);
    // The UI's banner: "2.0.0 failed to start and was rolled back", why.
    let updates = home.ui_session().get_json("/launcher/updates");
    assert_eq!(updates["current"], "1.0.0", "{updates}");
    assert_eq!(updates["notice"]["kind"], "rolled_back", "{updates}");
    assert_eq!(updates["notice"]["version"], "2.0.0", "{updates}");
    assert_eq!(updates["notice"]["previous"], "1.0.0", "{updates}");
    assert!(
        !updates["notice"]["reason"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{updates}"
    );
    let status = json(&home.run(&["update", "status", "--json"]));
    assert_eq!(status["current"], "1.0.0");
    assert_eq!(status["rejected"], serde_json::json!(["2.0.0"]));
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("rolled back"),
        "{status}"
    );
    let check = json(&home.run(&["update", "check", "--json"]));
    assert_eq!(
        check["available"],
        Value::Null,
        "a rejected version is not offered again"
    );
}

/// A core that starts and reaches ready, then dies two seconds later,
/// every time: the real core behind a shell script.
fn crash_looping_core() -> String {
    format!(
        "#!/bin/sh\n\
         case \"$1\" in -*) exec '{core}' \"$@\" ;; esac\n\
         '{core}' \"$@\" &\n\
         core=$!\n\
         trap 'kill -9 $core; exit 1' TERM INT\n\
         sleep 2 & wait $!\n\
         kill -9 $core\n\
         exit 1\n",
        core = core_bin().display()
    )
}

/// Finding 1 of issue 16: a version that reaches ready and then
/// crash-loops used to be committed at its first ready (the previous
/// version deleted) and then given up on. Now it is on probation: the
/// crash loop rolls it back to the kept previous version, with the data,
/// and the same launcher process starts again on that version.
#[test]
fn a_v2_that_crash_loops_after_ready_is_rolled_back_during_its_probation() {
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let models = snapshot(&home.path("models"));
    let v2 = shop.bundle_of("2.0.0", crash_looping_core().as_bytes(), &[]);
    shop.release(
        "feed-current",
        &v2,
        &[&shop.path("bundles/1.0.0")],
        &[],
        &shop.key(),
    );
    json(&home.run(&["update", "apply", "--json"]));

    let mut launcher = home.spawn_up(&[(env::UPDATE_PROBATION_S, "120")]);
    launcher.wait_ready();
    assert_eq!(running_version(&home), "2.0.0");
    let said = launcher.stderr();
    assert!(said.contains("final after 120 s"), "{said}");
    // On probation: the version to go back to is still there.
    assert!(shop.path("install/resources/app/1.0.0").is_dir());

    let said = launcher.wait_stderr("Switched back to Jarvis 1.0.0", Duration::from_secs(120));
    assert!(said.contains("kept crashing"), "{said}");
    let instance = wait_for(
        Duration::from_secs(60),
        "Jarvis 1.0.0 running again",
        || {
            home.instance()
                .filter(|i| i.core.executable.contains("resources/app/1.0.0"))
        },
    );
    assert_eq!(
        instance.launcher.pid,
        launcher.pid(),
        "the same launcher process starts again"
    );
    wait_for(Duration::from_secs(30), "the API to answer", || {
        home.api().ready().then_some(())
    });
    assert_data_intact(&home, &id, &models);
    let status = json(&home.run(&["update", "status", "--json"]));
    assert_eq!(status["current"], "1.0.0", "{status}");
    assert_eq!(status["rejected"], serde_json::json!(["2.0.0"]), "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("during its probation"),
        "{status}"
    );
    assert!(launcher.try_exit().is_none(), "{}", launcher.stderr());
}

/// Quitting during probation is no failure: however often a person quits
/// early, a good version is never rolled back for it, and it is committed
/// once it has run through a whole probation.
#[test]
fn quitting_during_probation_never_rolls_a_good_version_back() {
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let models = snapshot(&home.path("models"));
    apply_v2(&shop, &home, false);
    for _ in 0..4 {
        let mut launcher = home.spawn_up(&[(env::UPDATE_PROBATION_S, "600")]);
        launcher.wait_ready();
        assert_eq!(running_version(&home), "2.0.0", "{}", launcher.stderr());
        assert_eq!(launcher.terminate().code(), Some(0));
        let status = json(&home.run(&["update", "status", "--json"]));
        assert_eq!(status["pending"]["version"], "2.0.0", "{status}");
        assert!(shop.path("install/resources/app/1.0.0").is_dir());
    }
    let launcher = home.up();
    launcher.wait_stderr("update is committed", Duration::from_secs(30));
    assert_data_intact(&home, &id, &models);
    let status = json(&home.run(&["update", "status", "--json"]));
    assert_eq!(status["pending"], Value::Null, "{status}");
    assert_eq!(status["rejected"], serde_json::json!([]), "{status}");
}

/// Finding 2 of issue 16: a verified version folder is verified only for
/// the files its signed `release.json` lists, and the launcher used to run
/// any `jarvis-core-x86-64-v3` or `redis-server` it found there. Now a
/// program the signed manifest does not list never runs.
#[test]
fn programs_a_version_folder_holds_but_its_signed_release_does_not_list_never_run() {
    use std::os::unix::fs::PermissionsExt as _;
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let dir = shop.path("install/resources/app/1.0.0");
    let ran = home.scratch().join("impostor-ran");
    let impostor = format!("#!/bin/sh\necho \"$0\" >> '{}'\nexit 1\n", ran.display());
    for name in ["jarvis-core-x86-64-v3", "redis-server"] {
        let path = dir.join(name);
        std::fs::write(&path, &impostor).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let launcher = home.up();
    let instance = home.instance().unwrap();
    assert_eq!(
        Path::new(&instance.core.executable),
        dir.join("jarvis-core"),
        "{}",
        launcher.stderr()
    );
    assert!(
        !instance.redis.executable.starts_with(dir.to_str().unwrap()),
        "{instance:?}"
    );
    assert_eq!(home.api().messages(&id).unwrap(), vec!["remember me"]);
    drop(launcher);
    let doctor = home.run(&["doctor"]);
    assert!(
        !doctor
            .stdout
            .contains(dir.join("redis-server").to_str().unwrap()),
        "{}",
        doctor.stdout
    );
    assert!(!ran.exists(), "an unlisted program ran");
}

/// Finding 3 of issue 16: staging downloaded `release.json` and its
/// signature a second time and installed whatever that said, and a folder
/// was not checked to hold its own version. Now the manifest is fetched
/// once, exactly those bytes are installed, and a folder whose signed
/// manifest names another version is damaged.
#[test]
fn the_manifest_checked_is_the_manifest_installed_and_names_its_folder() {
    let shop = Workshop::new();
    let (home, _id) = installed_v1(&shop);
    let v2 = shop.bundle("2.0.0", false);
    shop.release(
        "feed-current",
        &v2,
        &[&shop.path("bundles/1.0.0")],
        &[],
        &shop.key(),
    );
    let manifest_path = format!("/feed-current/stable/{}/release.json", jarvis_dist::TARGET);
    let fetches = || {
        shop.server
            .requests()
            .iter()
            .filter(|r| r.path == manifest_path)
            .count()
    };
    let before = fetches();
    json(&home.run(&["update", "apply", "--json"]));
    assert_eq!(fetches() - before, 1, "release.json fetched more than once");
    assert_eq!(
        std::fs::read(shop.path("install/resources/app/2.0.0/release.json")).unwrap(),
        std::fs::read(shop.feed_file("feed-current", "release.json")).unwrap()
    );

    // A verified 1.0.0 copied under the name 3.0.0 and made current: its
    // signature is good, its files match, but it is not 3.0.0.
    let app = shop.path("install/resources/app");
    copy_dir(&app.join("1.0.0"), &app.join("3.0.0"));
    std::fs::write(app.join("current"), "3.0.0\n").unwrap();
    std::fs::write(app.join("previous"), "2.0.0\n").unwrap();
    let launcher = home.up();
    assert_eq!(running_version(&home), "2.0.0");
    assert!(
        launcher
            .stderr()
            .contains("the folder of version 3.0.0 holds the signed release of 1.0.0"),
        "{}",
        launcher.stderr()
    );
}

/// Finding 8 of issue 16: an app-update download started over on every
/// run (`.staging-<v>` was deleted first), and what killed runs left
/// (`.patches-*`, `.incoming-*`, `.trash-*`) stayed for ever. Now a
/// killed `update apply` resumes from its checkpoint, and leftovers no run
/// owns are removed, while a newer version's staging is kept to resume.
#[test]
fn a_killed_update_download_resumes_and_leftovers_are_cleaned() {
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let models = snapshot(&home.path("models"));
    // Full files only (no deltas): the 100+ MB core is fetched whole.
    let v2 = shop.bundle("2.0.0", false);
    shop.release("feed-current", &v2, &[], &[], &shop.key());
    let total = folder_size(&v2);

    let (mut child, partial) = apply_with_the_core_partly_downloaded(&shop, &home);
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert_eq!(
        std::fs::read_to_string(shop.path("install/resources/app/current"))
            .unwrap()
            .trim(),
        "1.0.0"
    );

    shop.server.set_rate_limit(0);
    let before = shop.server.bytes_sent();
    let applied = json(&home.run(&["update", "apply", "--json"]));
    let refetched = shop.server.bytes_sent() - before;
    assert_eq!(applied["version"], "2.0.0", "{applied}");
    assert!(
        refetched + kept <= total + 9 * 1024 * 1024,
        "fetched {refetched} B again of {total} B after keeping {kept} B"
    );

    // Leftovers of killed runs, and a newer version's staging to resume.
    let app = shop.path("install/resources/app");
    for leftover in [
        ".trash-0.9.0",
        ".patches-2.0.0",
        ".incoming-abc123",
        ".staging-1.5.0",
    ] {
        std::fs::create_dir_all(app.join(leftover).join("inside")).unwrap();
    }
    std::fs::create_dir_all(app.join(".staging-3.0.0")).unwrap();
    let launcher = home.up();
    assert_eq!(running_version(&home), "2.0.0");
    assert_data_intact(&home, &id, &models);
    let mut left: Vec<String> = std::fs::read_dir(&app)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    left.sort();
    assert_eq!(left, [".staging-3.0.0"], "{}", launcher.stderr());
}

/// Issue 16's faults: the feed changes while an update downloads. The
/// publisher re-releases 2.0.0 with other bytes, overwriting the files
/// the running download reads from (the worst case: the stream mixes old
/// and new bytes). The first apply must end in a verified 2.0.0 or in a
/// clear error with 1.0.0 still current; the next apply installs the
/// release the feed now offers, never a mix, and the data is untouched.
#[test]
fn a_feed_that_changes_mid_download_never_installs_a_mix() {
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let models = snapshot(&home.path("models"));
    let v2 = shop.bundle("2.0.0", false);
    shop.release("feed-current", &v2, &[], &[], &shop.key());
    let original = std::fs::read(v2.join("jarvis-core")).unwrap();
    let served_core = jarvis_tests::files_under(&shop.path("feed-current"))
        .into_iter()
        .find(|p| p.ends_with("files/2.0.0/jarvis-core"))
        .expect("the release serves the core");

    let (child, _) = apply_with_the_core_partly_downloaded(&shop, &home);
    // The re-release: a core with other bytes, written over the served
    // file in place (the open download reads on into the new bytes), and
    // a new signed manifest for it.
    let mut republished = std::fs::read(core_bin()).unwrap();
    republished.extend_from_slice(b"jarvis build 2.0.0, republished");
    std::fs::write(&served_core, &republished).unwrap();
    let v2b = shop.bundle_of("2.0.0", &republished, &[]);
    shop.release("feed-current", &v2b, &[], &[], &shop.key());
    shop.server.set_rate_limit(0);

    let first = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&first.stderr);
    let current = std::fs::read_to_string(shop.path("install/resources/app/current")).unwrap();
    eprintln!(
        "the apply the feed changed under: {:?}, {said}",
        first.status
    );
    if first.status.success() {
        assert_eq!(current.trim(), "2.0.0", "{said}");
    } else {
        assert_eq!(current.trim(), "1.0.0", "a failed apply switched: {said}");
        assert!(
            said.contains("checksum") || said.contains("does not match"),
            "the failure says what happened: {said}"
        );
        let applied = json(&home.run(&["update", "apply", "--json"]));
        assert_eq!(applied["version"], "2.0.0", "{applied}");
    }
    // Whatever was installed is exactly one signed release's bytes.
    let installed = std::fs::read(shop.path("install/resources/app/2.0.0/jarvis-core")).unwrap();
    assert!(
        installed == original || installed == republished,
        "the installed core is a mix of two releases"
    );
    let _launcher = home.up();
    assert_eq!(running_version(&home), "2.0.0");
    assert_data_intact(&home, &id, &models);
}

/// Issue 16's faults: the clock moves past the manifests' expiry while
/// Jarvis runs (libfaketime, re-reading its offset from a file). Expiry
/// guards updates, never launches: the running Jarvis keeps serving, an
/// update whose manifest has expired is refused with the reason and
/// changes nothing, and the installed version, whose own manifest has
/// expired too, starts again with the data intact.
#[test]
fn a_clock_past_the_manifests_expiry_stops_updates_never_launches() {
    let faketime = Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1");
    assert!(faketime.is_file(), "scripts/setup installs faketime");
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let models = snapshot(&home.path("models"));
    let v2 = shop.bundle("2.0.0", false);
    shop.release(
        "feed-current",
        &v2,
        &[],
        &["--expires-in-days", "2"],
        &shop.key(),
    );
    let clock = home.scratch().join("faketime");
    std::fs::write(&clock, "+0d\n").unwrap();
    home.set_env("LD_PRELOAD", faketime.to_str().unwrap());
    home.set_env("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap());
    home.set_env("FAKETIME_NO_CACHE", "1");
    // Timeouts and intervals keep real time.
    home.set_env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    // The redis-server Linux bundles ship: Debian's own links jemalloc,
    // whose start-up clock calls libfaketime cannot serve.
    home.set_env(
        env::REDIS_SERVER,
        jarvis_tests::bundled_redis_server().to_str().unwrap(),
    );

    let launcher = home.up();
    // Past v2's expiry (2 days) and v1's (90 days), with Jarvis running.
    std::fs::write(&clock, "+120d\n").unwrap();
    let date = Command::new("date")
        .arg("+%s")
        .env("LD_PRELOAD", faketime)
        .env("FAKETIME_TIMESTAMP_FILE", &clock)
        .env("FAKETIME_NO_CACHE", "1")
        .output()
        .unwrap();
    let faked: i64 = String::from_utf8_lossy(&date.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(
        faked > jiff::Timestamp::now().as_second() + 100 * 86_400,
        "the clock did not move"
    );
    assert_eq!(home.api().messages(&id).unwrap(), vec!["remember me"]);
    assert_refused(&shop, &home, &["update", "check"], "expired");
    drop(launcher);
    assert_refused(&shop, &home, &["update", "apply", "--json"], "expired");

    let _launcher = home.up();
    assert_eq!(running_version(&home), "1.0.0");
    assert_data_intact(&home, &id, &models);
}

/// Starts `jarvis update apply` of 2.0.0 with the server throttled to
/// 40 MB/s and returns once 20 MB of the core are in its partial file
/// (the child, its output piped, and the partial's path).
fn apply_with_the_core_partly_downloaded(
    shop: &Workshop,
    home: &TestHome,
) -> (std::process::Child, PathBuf) {
    shop.server.set_rate_limit(40 * 1024 * 1024);
    let partial = shop.path("install/resources/app/.staging-2.0.0/jarvis-core.partial");
    let child = home
        .jarvis(&["update", "apply", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(60),
        "part of the core downloaded",
        || (std::fs::metadata(&partial).ok()?.len() > 20 * 1024 * 1024).then_some(()),
    );
    (child, partial)
}

/// Finding 9 of issue 16: the staged-rollout bucket was drawn again at
/// every check (it was never saved when nothing was installed), so every
/// install got into a 10 % rollout within a few checks. Now it is drawn
/// once and kept.
#[test]
fn the_rollout_bucket_is_drawn_once_and_kept() {
    let shop = Workshop::new();
    let (home, _id) = installed_v1(&shop);
    let v2 = shop.bundle("2.0.0", false);
    shop.release(
        "feed-current",
        &v2,
        &[&shop.path("bundles/1.0.0")],
        &["--rollout-percent", "50"],
        &shop.key(),
    );
    let bucket = || {
        let state: Value =
            serde_json::from_slice(&std::fs::read(home.path("update-state.json")).unwrap())
                .unwrap();
        state["bucket"].clone()
    };
    let first = json(&home.run(&["update", "check", "--json"]));
    let drawn = bucket();
    assert!(drawn.as_u64().is_some_and(|b| b < 100), "{drawn}");
    for _ in 0..5 {
        let again = json(&home.run(&["update", "check", "--json"]));
        assert_eq!(again["available"], first["available"]);
        assert_eq!(bucket(), drawn);
    }
    assert_eq!(
        first["available"].is_null(),
        drawn.as_u64().unwrap() >= 50,
        "{first} with bucket {drawn}"
    );
}

/// Issue 16, finding 12: an unreadable `update-state.json` used to reset
/// the anti-rollback floor to nothing, so after a manual rollback a
/// replayed older release was accepted. Now the file is kept aside and the
/// floor rebuilt from the installed versions.
#[test]
fn an_unreadable_update_state_never_lowers_the_anti_rollback_floor() {
    let shop = Workshop::new();
    let (home, _id) = installed_v1(&shop);
    apply_v2(&shop, &home, false);
    let launcher = home.up();
    launcher.wait_stderr("update is committed", Duration::from_secs(30));
    drop(launcher);
    json(&home.run(&["update", "rollback", "--json"]));
    std::fs::write(home.path("update-state.json"), b"{\"highest_acc").unwrap();

    // A validly signed 1.5.0: newer than what runs, older than 2.0.0.
    let replay = shop.bundle("1.5.0", false);
    shop.release("feed-current", &replay, &[], &[], &shop.key());
    let out = home.run(&["update", "check", "--json"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("already accepted"), "{}", out.stderr);
    assert!(out.stderr.contains("was unreadable"), "{}", out.stderr);
    let kept: Vec<_> = std::fs::read_dir(home.data_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("update-state.json.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        std::fs::read(kept[0].path()).unwrap(),
        b"{\"highest_acc",
        "the unreadable file is kept as it was"
    );
}

/// Issue 16, faults beside kills: the install folder's disk fills up
/// while an update is staged. The update fails with a clear error,
/// nothing switches, Jarvis starts on the old version with its data; once
/// there is room, the same update resumes and finishes.
#[test]
fn a_full_disk_while_staging_an_update_changes_nothing_and_the_update_resumes_later() {
    let Some(disk) = jarvis_tests::Tmpfs::mount(1) else {
        eprintln!("note: mounting a tmpfs needs root; this run could not check full disks");
        return;
    };
    let shop = Workshop::new();
    let v1 = shop.bundle("1.0.0", false);
    let v1_size = folder_size(&v1);
    let mib = |bytes: u64| u32::try_from(bytes / (1024 * 1024)).unwrap();
    // Room for 1.0.0 and a third of another core.
    disk.resize(mib(v1_size) + mib(v1_size) / 3 + 4);
    let install = disk.path.join("install");
    let home = home_with_v1_in(&shop, &v1, &install);
    let launcher = home.up();
    let id = home.api().create_conversation();
    assert_eq!(home.api().add_message(&id, "user", "kept").status(), 201);
    drop(launcher);

    // 2.0.0 in full (no deltas): the core does not fit.
    let v2 = shop.bundle("2.0.0", false);
    shop.release("feed-current", &v2, &[], &[], &shop.key());
    let before = shop.server.bytes_sent();
    let out = home.run(&["update", "apply", "--json"]);
    let failed_bytes = shop.server.bytes_sent() - before;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("not enough disk space"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(install.join("resources/app/current"))
            .unwrap()
            .trim(),
        "1.0.0"
    );
    let launcher = home.up();
    assert_eq!(running_version(&home), "1.0.0");
    assert_eq!(home.api().messages(&id).unwrap(), vec!["kept"]);
    drop(launcher);

    // Room again: the same update finishes, fetching nothing twice (what
    // a failed try kept is resumed; the space check may refuse before
    // fetching anything at all).
    disk.resize(mib(v1_size) * 3 + 16);
    let before = shop.server.bytes_sent();
    let applied = json(&home.run(&["update", "apply", "--json"]));
    assert_eq!(applied["version"], "2.0.0", "{applied}");
    let v2_size = folder_size(&v2);
    let finish_bytes = shop.server.bytes_sent() - before;
    assert!(
        failed_bytes + finish_bytes < v2_size + 9 * 1024 * 1024,
        "{failed_bytes} B in the failed try and {finish_bytes} B to finish, for {v2_size} B"
    );
    let _launcher = home.up();
    assert_eq!(running_version(&home), "2.0.0");
    assert_eq!(home.api().messages(&id).unwrap(), vec!["kept"]);
}

/// Issue 16, faults beside kills: a read-only install folder (a managed
/// desktop, a disk gone read-only). Jarvis still starts from it; an update
/// is refused with a clear error and changes nothing; once the folder is
/// writable again the update goes through.
#[test]
fn a_read_only_install_folder_still_starts_and_an_update_changes_nothing() {
    let Some(disk) = jarvis_tests::Tmpfs::mount(512) else {
        eprintln!("note: mounting a tmpfs needs root; this run could not check a read-only disk");
        return;
    };
    let shop = Workshop::new();
    let v1 = shop.bundle("1.0.0", false);
    let install = disk.path.join("install");
    let home = home_with_v1_in(&shop, &v1, &install);
    let v2 = shop.bundle("2.0.0", false);
    shop.release("feed-current", &v2, &[&v1], &[], &shop.key());
    let before = snapshot(&install);

    disk.set_read_only(true);
    let launcher = home.up();
    assert_eq!(running_version(&home), "1.0.0");
    let id = home.api().create_conversation();
    assert_eq!(home.api().add_message(&id, "user", "kept").status(), 201);
    drop(launcher);
    let out = home.run(&["update", "apply", "--json"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&install), before);

    disk.set_read_only(false);
    json(&home.run(&["update", "apply", "--json"]));
    let _launcher = home.up();
    assert_eq!(running_version(&home), "2.0.0");
    assert_eq!(home.api().messages(&id).unwrap(), vec!["kept"]);
}

/// Finding 5 of issue 16: `jarvis doctor` and `jarvis migrate run` used
/// the launcher's folder and schema, not the installed app's: they now
/// find the Redis the installed version ships and migrate the data only
/// as far as that version reads.
#[test]
fn maintenance_commands_use_the_installed_versions_redis_and_data_schema() {
    let shop = Workshop::new();
    let (home, _) = jarvis_tests::home_from_fixture(1);
    home.set_env("JARVIS_BUNDLE_DIR", shop.path("install").to_str().unwrap());
    home.set_env("JARVIS_UPDATE_TRUSTED_KEYS", &shop.public_key);
    home.set_auto_update(false);
    let redis = jarvis_tests::bundled_redis_server();
    let v1 = shop.bundle_with(
        "1.0.0",
        false,
        &[
            "--schema-min",
            "1",
            "--schema-max",
            "1",
            "--redis",
            redis.to_str().unwrap(),
        ],
    );
    shop.release("feed1", &v1, &[], &[], &shop.key());
    let feed = shop.path("feed1");
    json(&home.run(&[
        "update",
        "apply",
        "--from",
        feed.to_str().unwrap(),
        "--json",
    ]));
    let shipped = shop.path("install/resources/app/1.0.0/redis-server");

    let doctor = home.run(&["doctor"]);
    assert!(
        doctor.stdout.contains(shipped.to_str().unwrap()),
        "{}",
        doctor.stdout
    );
    let status = json(&home.run(&["migrate", "status", "--json"]));
    assert_eq!(status["current_schema_version"], 1, "{status}");
    assert_eq!(status["pending"], serde_json::json!([]), "{status}");
    let run = json(&home.run(&["migrate", "run", "--json"]));
    assert_eq!(run["to"], 1, "{run}");
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.path("config.json")).unwrap()).unwrap();
    assert_eq!(config["schema_version"], 1);
}

/// Finding 6 of issue 16: a second `jarvis up` changed state before it
/// found the first one holding the lock: it switched `current` to a staged
/// update under the running Jarvis and "repaired" its config. Now it only
/// reports the running Jarvis.
#[test]
fn a_second_launch_changes_nothing_under_a_running_jarvis() {
    let shop = Workshop::new();
    let (home, _id) = installed_v1(&shop);
    let v2 = shop.bundle("2.0.0", false);
    shop.release(
        "feed-current",
        &v2,
        &[&shop.path("bundles/1.0.0")],
        &[],
        &shop.key(),
    );
    home.set_auto_update(true);
    let _running = home.up();
    wait_for(Duration::from_secs(60), "the update to be staged", || {
        let state: Value =
            serde_json::from_slice(&std::fs::read(home.path("update-state.json")).ok()?).ok()?;
        (state["staged"] == "2.0.0").then_some(())
    });
    let current = shop.path("install/resources/app/current");
    let state_before = std::fs::read(home.path("update-state.json")).unwrap();
    std::fs::write(home.path("config.json"), b"{ not json").unwrap();

    let second = home.run(&["up", "--no-browser"]);
    assert!(second.status.success(), "{second:?}");
    assert!(second.stdout.contains("already running"), "{second:?}");
    assert_eq!(std::fs::read_to_string(&current).unwrap().trim(), "1.0.0");
    assert_eq!(
        std::fs::read(home.path("update-state.json")).unwrap(),
        state_before
    );
    assert_eq!(
        std::fs::read(home.path("config.json")).unwrap(),
        b"{ not json"
    );
    let aside: Vec<_> = std::fs::read_dir(home.data_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
        .collect();
    assert!(aside.is_empty(), "{aside:?}");
    assert_eq!(running_version(&home), "1.0.0");
}

#[test]
fn kill9_at_every_update_checkpoint_always_leaves_a_working_version_with_intact_data() {
    let shop = Workshop::new();
    let v2 = shop.bundle("2.0.0", false);
    let (template, _) = installed_v1(&shop);
    drop(template);
    shop.release(
        "feed-current",
        &v2,
        &[&shop.path("bundles/1.0.0")],
        &[],
        &shop.key(),
    );
    let pristine_install = snapshot(&shop.path("install"));
    for checkpoint in [
        "update:staged",
        "update:installed",
        "update:pending-recorded",
        "update:switched",
        "update:committed",
    ] {
        // A fresh install of v1 for each checkpoint.
        let _ = std::fs::remove_dir_all(shop.path("install"));
        let (home, id) = installed_v1(&shop);
        let models = snapshot(&home.path("models"));
        assert_eq!(
            snapshot(&shop.path("install")).len(),
            pristine_install.len()
        );
        if checkpoint == "update:committed" {
            json(&home.run(&["update", "apply", "--json"]));
            let mut crashed = home.spawn_up(&[("JARVIS_CRASH_AT", checkpoint)]);
            let status = crashed.wait_exit(Duration::from_secs(60));
            assert_eq!(
                status.signal(),
                Some(9),
                "{checkpoint}: {}",
                crashed.stderr()
            );
            std::thread::sleep(Duration::from_millis(300));
        } else {
            let out = home
                .jarvis(&["update", "apply"])
                .env("JARVIS_CRASH_AT", checkpoint)
                .output()
                .unwrap();
            assert_eq!(out.status.signal(), Some(9), "{checkpoint}: {out:?}");
        }
        let _launcher = home.up();
        let version = running_version(&home);
        assert!(
            version == "1.0.0" || version == "2.0.0",
            "{checkpoint}: {version}"
        );
        assert_data_intact(&home, &id, &models);
        drop(_launcher);
        // Whatever was interrupted can be finished.
        let out = home.run(&["update", "apply"]);
        assert!(out.status.success(), "{checkpoint}: {out:?}");
        let _launcher = home.up();
        assert_eq!(running_version(&home), "2.0.0", "{checkpoint}");
    }
}

/// Runs `update apply` and asserts it was refused with `reason` and that
/// neither the install nor the update state changed.
fn assert_refused(shop: &Workshop, home: &TestHome, args: &[&str], reason: &str) {
    let install_before = snapshot(&shop.path("install"));
    let state_before = std::fs::read(home.path("update-state.json")).ok();
    let out = home.run(args);
    assert!(!out.status.success(), "accepted: {out:?}");
    assert!(
        out.stderr.contains(reason),
        "expected {reason:?} in\n{}",
        out.stderr
    );
    assert_eq!(
        snapshot(&shop.path("install")),
        install_before,
        "{reason}: the install changed"
    );
    assert_eq!(
        std::fs::read(home.path("update-state.json")).ok(),
        state_before
    );
}

#[test]
fn bad_releases_are_refused_and_change_nothing() {
    let shop = Workshop::new();
    let (home, _) = installed_v1(&shop);
    let v1 = shop.path("bundles/1.0.0");
    let v2 = shop.bundle("2.0.0", false);
    let apply = ["update", "apply"];

    // A tampered file (and delta) after signing.
    shop.release("feed-current", &v2, &[&v1], &[], &shop.key());
    for rel in [
        "files/2.0.0/jarvis-core",
        "deltas/1.0.0-to-2.0.0/jarvis-core.patch",
    ] {
        let path = shop.feed_file("feed-current", rel);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    }
    assert_refused(&shop, &home, &apply, "checksum failed");

    // Signed by a key the launcher does not trust.
    let other = shop.path("other-keys");
    dist(&["keygen", other.to_str().unwrap()]);
    shop.release("feed-current", &v2, &[], &[], &other.join("release.key"));
    assert_refused(&shop, &home, &apply, "not valid for any trusted key");

    // Expired: the feed is frozen.
    shop.release("feed-current", &v2, &[], &["--expired"], &shop.key());
    assert_refused(&shop, &home, &apply, "expired");

    // For another target, mis-published under ours.
    let foreign = shop.path("foreign-bundle");
    let core_src = shop.path("src-2.0.0/jarvis-core");
    dist(&[
        "bundle",
        "--version",
        "2.0.0",
        "--target",
        "riscv64gc-unknown-none",
        "--core",
        core_src.to_str().unwrap(),
        "--out",
        foreign.to_str().unwrap(),
    ]);
    shop.release("feed-foreign", &foreign, &[], &[], &shop.key());
    let ours = shop.feed_file("feed-current", "");
    let _ = std::fs::remove_dir_all(&ours);
    copy_dir(
        &shop.path("feed-foreign/stable/riscv64gc-unknown-none"),
        &ours,
    );
    shop.server
        .add_dir("/feed-current", &shop.path("feed-current"));
    assert_refused(&shop, &home, &apply, "is for target riscv64gc-unknown-none");

    // Oversized: a correctly signed manifest promising a 3 GiB file.
    shop.release("feed-current", &v2, &[], &[], &shop.key());
    let manifest_path = shop.feed_file("feed-current", "release.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["files"][0]["size"] = (3u64 << 30).into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let key =
        jarvis_dist::signing::signing_key(&std::fs::read_to_string(shop.key()).unwrap()).unwrap();
    std::fs::write(&manifest_path, &bytes).unwrap();
    std::fs::write(
        shop.feed_file("feed-current", "release.json.sig"),
        jarvis_dist::signing::sign(&key, &bytes),
    )
    .unwrap();
    shop.server
        .add_dir("/feed-current", &shop.path("feed-current"));
    assert_refused(&shop, &home, &apply, "larger than the");

    // A replayed older manifest after 2.0.0 was accepted.
    shop.release("feed-current", &v2, &[], &[], &shop.key());
    assert!(home.run(&apply).status.success());
    assert!(home.run(&["update", "rollback"]).status.success());
    shop.release(
        "feed-replay",
        &shop.bundle("1.5.0", false),
        &[],
        &[],
        &shop.key(),
    );
    let replay = shop.path("feed-replay");
    assert_refused(
        &shop,
        &home,
        &["update", "apply", "--from", replay.to_str().unwrap()],
        "refusing a replayed or downgraded release",
    );
}

#[test]
fn hostile_offline_archives_are_refused_and_change_nothing() {
    let shop = Workshop::new();
    let (home, _) = installed_v1(&shop);
    let cases = [
        ("dot-dot", "../../escape.txt", tar::EntryType::Regular),
        ("absolute", "/tmp/escape.txt", tar::EntryType::Regular),
        ("symlink", "stable/link", tar::EntryType::Symlink),
    ];
    for (what, name, kind) in cases {
        let archive = home.scratch().join(format!("{what}.tar"));
        let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        append_raw(&mut builder, name, kind);
        builder.finish().unwrap();
        assert_refused(
            &shop,
            &home,
            &["update", "apply", "--from", archive.to_str().unwrap()],
            "was refused",
        );
        assert!(!Path::new("/tmp/escape.txt").exists());
        assert!(!shop.path("install/resources/escape.txt").exists());
    }
}

/// Appends an entry with a raw name (the tar crate refuses to write unsafe
/// names through its safe API, which is exactly what a hostile archive
/// does not respect).
fn append_raw(builder: &mut tar::Builder<std::fs::File>, name: &str, kind: tar::EntryType) {
    let mut header = tar::Header::new_gnu();
    let bytes = name.as_bytes();
    header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    header.set_entry_type(kind);
    header.set_size(if kind == tar::EntryType::Regular {
        5
    } else {
        0
    });
    if kind == tar::EntryType::Symlink {
        header.set_link_name("/etc/passwd").unwrap();
    }
    header.set_mode(0o644);
    header.set_cksum();
    let data: &[u8] = if kind == tar::EntryType::Regular {
        b"owned"
    } else {
        b""
    };
    builder.append(&header, data).unwrap();
}

/// An install whose launcher runs from the install folder itself, with
/// 1.0.0 installed, which ships its own launcher (the real one with a
/// marker appended). Returns (home, installed launcher, its digest, the
/// shipped launcher's bytes).
fn installed_with_a_shipped_launcher(
    shop: &Workshop,
) -> (TestHome, PathBuf, Sha256Digest, Vec<u8>) {
    let install = shop.path("install");
    std::fs::create_dir_all(&install).unwrap();
    let launcher = install.join("jarvis");
    std::fs::copy(binary("jarvis"), &launcher).unwrap();
    let original = Sha256Digest::of_file(&launcher).unwrap();
    let mut shipped = std::fs::read(binary("jarvis")).unwrap();
    shipped.extend_from_slice(b"launcher of 1.0.0");
    let shipped_path = shop.path("launcher-1.0.0");
    std::fs::write(&shipped_path, &shipped).unwrap();
    let v1 = shop.bundle_with(
        "1.0.0",
        false,
        &["--launcher", shipped_path.to_str().unwrap()],
    );
    shop.release("feed1", &v1, &[], &[], &shop.key());
    let home = TestHome::new();
    home.set_env("JARVIS_UPDATE_TRUSTED_KEYS", &shop.public_key);
    let feed = shop.path("feed1");
    let out = home
        .command(
            &launcher,
            &["update", "apply", "--from", feed.to_str().unwrap()],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (home, launcher, original, shipped)
}

#[test]
fn the_launcher_replaces_itself_once_the_new_version_has_started() {
    let shop = Workshop::new();
    let install = shop.path("install");
    let (home, launcher, original, shipped) = installed_with_a_shipped_launcher(&shop);
    home.set_auto_update(false);
    assert_eq!(
        Sha256Digest::of_file(&launcher).unwrap(),
        original,
        "not before the new version proved itself"
    );

    let mut running = home.spawn_program(&launcher, &["up", "--no-browser"]);
    running.wait_ready();
    assert_eq!(
        Sha256Digest::of_file(&launcher).unwrap(),
        original,
        "not before the new version ran through its probation"
    );
    running.wait_stderr("launcher was updated too", Duration::from_secs(30));
    running.terminate();
    assert_eq!(
        Sha256Digest::of_file(&launcher).unwrap(),
        Sha256Digest::of(&shipped)
    );
    assert_eq!(
        Sha256Digest::of_file(&install.join("jarvis.previous")).unwrap(),
        original
    );
    let status = home
        .command(&launcher, &["update", "status", "--json"])
        .output()
        .unwrap();
    assert!(status.status.success(), "the new launcher runs: {status:?}");

    // Uninstalling takes the kept previous launcher too: nothing of the
    // app is left behind in the install folder.
    let out = home.command(&launcher, &["uninstall"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !install.exists(),
        "{:?}",
        std::fs::read_dir(&install).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
}

/// Finding 4 of issue 16: the launcher replaced itself once, right after
/// the commit; when that failed, it never tried again (and releases that
/// need the newer launcher were refused for good). Now every start with
/// no version on trial finishes the replacement.
#[test]
fn a_launcher_replacement_that_failed_is_finished_at_a_later_start() {
    let shop = Workshop::new();
    let install = shop.path("install");
    let (home, launcher, original, shipped) = installed_with_a_shipped_launcher(&shop);
    home.set_auto_update(false);

    // Something in the way of the kept copy: the replacement fails.
    let blocker = install.join("jarvis.previous");
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    let mut running = home.spawn_program(&launcher, &["up", "--no-browser"]);
    running.wait_ready();
    running.wait_stderr("update is committed", Duration::from_secs(30));
    let said = running.wait_stderr("could not update the launcher", Duration::from_secs(30));
    assert!(said.contains("tried again at the next start"), "{said}");
    running.terminate();
    assert_eq!(Sha256Digest::of_file(&launcher).unwrap(), original);

    // Cleared: the next start finishes it, and the start after runs it.
    std::fs::remove_dir_all(&blocker).unwrap();
    let mut running = home.spawn_program(&launcher, &["up", "--no-browser"]);
    running.wait_ready();
    assert!(
        running
            .stderr()
            .contains("launcher of Jarvis 1.0.0 is installed now"),
        "{}",
        running.stderr()
    );
    running.terminate();
    assert_eq!(
        Sha256Digest::of_file(&launcher).unwrap(),
        Sha256Digest::of(&shipped)
    );
    assert_eq!(
        Sha256Digest::of_file(&blocker).unwrap(),
        original,
        "the replaced launcher is kept"
    );
    use std::os::unix::fs::PermissionsExt as _;
    for program in [&launcher, &blocker] {
        let mode = std::fs::metadata(program).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{program:?} is not executable");
    }
    let mut again = home.spawn_program(&launcher, &["up", "--no-browser"]);
    again.wait_ready();
    assert!(
        !again.stderr().contains("could not update the launcher"),
        "{}",
        again.stderr()
    );
    again.terminate();
}

#[test]
fn a_version_needing_a_newer_data_schema_migrates_on_its_trial_and_a_failed_trial_restores_the_data()
 {
    let shop = Workshop::new();
    let (home, expected) = jarvis_tests::home_from_fixture(1);
    home.set_env("JARVIS_BUNDLE_DIR", shop.path("install").to_str().unwrap());
    home.set_env("JARVIS_UPDATE_TRUSTED_KEYS", &shop.public_key);
    home.set_env("JARVIS_UPDATE_URL", &shop.server.url("/feed-current"));
    home.set_auto_update(false);
    let schema = |min: &'static str, max: &'static str| ["--schema-min", min, "--schema-max", max];

    // 1.0.0 reads data schema 1 only: the launcher leaves the data there.
    let v1 = shop.bundle_with("1.0.0", false, &schema("1", "1"));
    shop.release("feed1", &v1, &[], &[], &shop.key());
    json(&home.run(&[
        "update",
        "apply",
        "--from",
        shop.path("feed1").to_str().unwrap(),
        "--json",
    ]));
    let launcher = home.up();
    assert!(
        jarvis_tests::redis_keys(&home)
            .iter()
            .all(|k| k.starts_with("jarvis:v1:"))
    );
    drop(launcher);
    let schema_of = |home: &TestHome| {
        let config: Value =
            serde_json::from_slice(&std::fs::read(home.path("config.json")).unwrap()).unwrap();
        config["schema_version"].as_u64().unwrap()
    };
    assert_eq!(schema_of(&home), 1);

    // A broken 2.0.0 that needs schema 2: its trial migrates, fails, and the
    // rollback puts the schema-1 data back.
    let v2 = shop.bundle_with("2.0.0", true, &schema("2", "2"));
    shop.release("feed-current", &v2, &[&v1], &[], &shop.key());
    json(&home.run(&["update", "apply", "--json"]));
    let launcher = home.up();
    let stderr = launcher.stderr();
    assert!(
        stderr.contains("Data migrated from schema 1 to 2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("The data was restored from backup"),
        "{stderr}"
    );
    assert_eq!(running_version(&home), "1.0.0");
    let keys = jarvis_tests::redis_keys(&home);
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("jarvis:v1:")),
        "{keys:?}"
    );
    drop(launcher);
    assert_eq!(schema_of(&home), 1);

    // A good 3.0.0 that needs schema 2: migrated on its trial, committed,
    // and the memory written under schema 1 reads back.
    let v3 = shop.bundle_with("3.0.0", false, &schema("2", "2"));
    shop.release("feed-current", &v3, &[&v1], &[], &shop.key());
    json(&home.run(&["update", "apply", "--json"]));
    let launcher = home.up();
    launcher.wait_stderr("update is committed", Duration::from_secs(30));
    assert_eq!(running_version(&home), "3.0.0");
    assert_eq!(schema_of(&home), 2);
    let conversation = &expected["conversations"][0];
    let id = conversation["id"].as_str().unwrap();
    let got: Vec<String> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(home.api().messages(id).unwrap(), got);
}

#[test]
fn kill9_during_an_automatic_rollback_still_ends_on_the_previous_version() {
    let shop = Workshop::new();
    let (home, id) = installed_v1(&shop);
    let models = snapshot(&home.path("models"));
    apply_broken_v2(&shop, &home);
    let mut crashed = home.spawn_up(&[("JARVIS_CRASH_AT", "update:rolled-back")]);
    let status = crashed.wait_exit(Duration::from_secs(90));
    assert_eq!(status.signal(), Some(9), "{}", crashed.stderr());
    std::thread::sleep(Duration::from_millis(300));
    let _launcher = home.up();
    assert_eq!(running_version(&home), "1.0.0");
    assert_data_intact(&home, &id, &models);
    let status = json(&home.run(&["update", "status", "--json"]));
    assert_eq!(status["rejected"], serde_json::json!(["2.0.0"]));
}

/// A reminder lives in memory (Redis, under the launcher's keys): an app
/// update replaces the launcher's and core's programs, and the reminder
/// still fires from the new version.
#[test]
fn a_reminder_set_before_an_update_fires_after_it() {
    let shop = Workshop::new();
    let (home, _) = installed_v1(&shop);
    let (notifier, notified) = home.recorder("notify");
    home.set_env("JARVIS_NOTIFY_COMMAND", notifier.to_str().unwrap());

    let mut launcher = home.up();
    let due = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(25);
    let reply: Value = home
        .api()
        .request(reqwest::Method::POST, "/v1/actions")
        .json(&serde_json::json!({"tool": "set_reminder", "arguments": {"text": "Renew the passport", "due_at": due.to_string()}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = reply["id"].as_str().unwrap().to_owned();
    jarvis_tests::wait_for(Duration::from_secs(30), "the request to wait", || {
        let out = home.run(&["approvals", "list", "--json"]);
        out.stdout.contains(&id).then_some(())
    });
    let approved = home.run(&["approvals", "approve", &id]);
    assert!(approved.status.success(), "{}", approved.stderr);
    launcher.terminate();
    assert!(
        !std::fs::read_to_string(&notified)
            .unwrap_or_default()
            .contains("Renew the passport"),
        "not due before the update"
    );

    apply_v2(&shop, &home, false);
    let _launcher = home.up();
    assert_eq!(running_version(&home), "2.0.0");
    jarvis_tests::wait_for(Duration::from_secs(60), "the reminder to fire", || {
        std::fs::read_to_string(&notified)
            .ok()
            .filter(|n| n.contains("Jarvis reminder Renew the passport"))
    });
}
