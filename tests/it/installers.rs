//! Installers from the outside: made by the real `jarvis-dist` from a real
//! signed release of the real binaries, then launched as a person would.

use std::path::{Path, PathBuf};
use std::process::Command;

use jarvis_tests::{
    DpkgRoot, TestHome, Version, binary, core_bin, installer, jarvis_bin, publish, publish_with,
    running_version, snapshot,
};

/// A release 1.0.0 of the real launcher and core, signed with the test key
/// (which every test-built launcher trusts), published into `<work>/feed`.
fn published_release(work: &Path) -> PathBuf {
    published_release_with_redis(work, None)
}

/// [`published_release`] shipping `redis` as the bundle's redis-server.
fn published_release_with_redis(work: &Path, redis: Option<&Path>) -> PathBuf {
    let feed = work.join("feed");
    publish(
        work,
        &feed,
        &Version {
            version: "1.0.0",
            target: jarvis_dist::TARGET,
            core: &core_bin(),
            launcher: &jarvis_bin(),
            previous: &[],
            redis,
        },
    );
    feed
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn the_appimage_installs_on_first_launch_runs_from_the_install_folder_and_is_never_rewritten() {
    let home = TestHome::new();
    let work = home.scratch().join("release");
    // The Linux release ships its own redis-server (scripts/release):
    // the AppImage must start on a desktop that has none.
    let redis = jarvis_tests::bundled_redis_server();
    let feed = published_release_with_redis(&work, Some(&redis));
    let runtime = jarvis_tests::appimage_runtime();
    let appimage = installer(
        "appimage",
        &feed,
        &work.join("out"),
        &[&"--runtime", &runtime],
    );
    assert!(
        appimage.ends_with("Jarvis-1.0.0-x86_64.AppImage"),
        "{appimage:?}"
    );

    // The payload, read from behind the runtime.
    let offset = std::fs::metadata(&runtime).unwrap().len().to_string();
    let listing = Command::new("unsquashfs")
        .args(["-o", &offset, "-l"])
        .arg(&appimage)
        .output()
        .unwrap();
    assert!(listing.status.success(), "{listing:?}");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let target = std::env::consts::ARCH;
    for path in [
        "squashfs-root/AppRun".to_owned(),
        "squashfs-root/jarvis.desktop".to_owned(),
        "squashfs-root/.DirIcon".to_owned(),
        "squashfs-root/usr/bin/jarvis".to_owned(),
        format!(
            "squashfs-root/usr/share/jarvis/feed/stable/{target}-unknown-linux-gnu/release.json.sig"
        ),
        format!(
            "squashfs-root/usr/share/jarvis/feed/stable/{target}-unknown-linux-gnu/files/1.0.0/jarvis-core"
        ),
        format!(
            "squashfs-root/usr/share/jarvis/feed/stable/{target}-unknown-linux-gnu/files/1.0.0/redis-server"
        ),
    ] {
        assert!(
            listing.lines().any(|l| l == path),
            "{path} not in:\n{listing}"
        );
    }

    // First launch (no FUSE in a test sandbox: the runtime's own
    // extract-and-run mode): installs into $XDG_DATA_HOME/jarvis-app and
    // starts from there.
    let xdg = home.scratch().join("xdg");
    home.set_env("XDG_DATA_HOME", xdg.to_str().unwrap());
    home.set_env("APPIMAGE_EXTRACT_AND_RUN", "1");
    let before = sha256(&appimage);
    let mut launcher = home.spawn_program(&appimage, &["up", "--no-browser"]);
    launcher.wait_ready();
    let install = xdg.join("jarvis-app");
    assert!(install.join("jarvis").is_file());
    assert!(install.join("resources/app/1.0.0/jarvis-core").is_file());
    let instance = home.instance().unwrap();
    let core_exe = std::fs::read_link(format!("/proc/{}/exe", instance.core.pid)).unwrap();
    assert!(
        core_exe.starts_with(&install),
        "{core_exe:?} is not the installed core"
    );
    let redis_exe = std::fs::read_link(format!("/proc/{}/exe", instance.redis.pid)).unwrap();
    assert_eq!(
        redis_exe,
        install.join("resources/app/1.0.0/redis-server"),
        "Redis is not the bundle's own"
    );
    let api = home.api();
    assert!(api.ready());
    let conversation = api.create_conversation();
    assert_eq!(api.add_message(&conversation, "user", "kept").status(), 201);
    // In extract-and-run mode the runtime waits for Jarvis as its parent
    // and passes no signal on: stop Jarvis itself, as the UI's Quit does.
    let stopped = home
        .command(&install.join("jarvis"), &["stop"])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(
        launcher
            .wait_exit(std::time::Duration::from_secs(30))
            .success()
    );

    // A later launch finds the install and runs it; the AppImage file was
    // never touched, and memory is where it was.
    let out = home
        .command(&appimage, &["paths", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("already installed"), "{said}");
    let paths: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(paths["bundle_dir"], install.to_str().unwrap());
    assert_eq!(sha256(&appimage), before);
    let mut running = home.up();
    assert_eq!(home.api().messages(&conversation).unwrap(), ["kept"]);
    assert_eq!(running.terminate().code(), Some(0));

    // Uninstall (what the AppImage's own launcher offers): the install
    // folder goes, the data folder stays byte for byte, and the AppImage
    // installs again and finds the memory.
    let data_before = snapshot(&home.data_dir());
    let out = home
        .command(&install.join("jarvis"), &["uninstall"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("are kept in"), "{said}");
    assert!(!install.exists());
    assert_eq!(snapshot(&home.data_dir()), data_before);
    let mut again = home.spawn_program(&appimage, &["up", "--no-browser"]);
    again.wait_ready();
    assert_eq!(home.api().messages(&conversation).unwrap(), ["kept"]);
    let stopped = home
        .command(&install.join("jarvis"), &["stop"])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(
        again
            .wait_exit(std::time::Duration::from_secs(30))
            .success()
    );
}

#[test]
fn an_install_folder_inside_the_data_folder_is_refused() {
    let home = TestHome::new();
    let work = home.scratch().join("release");
    let feed = published_release(&work);
    let inside = home.data_dir().join("app");
    let out = home
        .jarvis(&["install", "--from", feed.to_str().unwrap()])
        .env("JARVIS_BUNDLE_DIR", &inside)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("must not contain each other"), "{said}");
    assert!(!inside.exists());
}

#[test]
fn the_deb_installs_runs_leaves_updates_to_apt_and_uninstalls_without_touching_data() {
    let home = TestHome::new();
    let work = home.scratch().join("release");
    let feed = published_release(&work);
    let deb = installer("deb", &feed, &work.join("out"), &[&"--fast"]);
    assert!(deb.ends_with("jarvis_1.0.0_amd64.deb"), "{deb:?}");

    // Structure: the control fields and the files, as dpkg-deb reads them.
    let dpkg_deb = |flag: &str| {
        let out = Command::new("dpkg-deb")
            .arg(flag)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(out.status.success(), "dpkg-deb {flag}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let info = dpkg_deb("-I");
    for field in [
        "Package: jarvis",
        "Version: 1.0.0",
        "Architecture: amd64",
        "redis-server",
    ] {
        assert!(info.contains(field), "{field} not in:\n{info}");
    }
    let contents = dpkg_deb("-c");
    for path in [
        "./usr/lib/jarvis/jarvis",
        "./usr/lib/jarvis/resources/managed-by",
        "./usr/lib/jarvis/resources/app/current",
        "./usr/lib/jarvis/resources/app/1.0.0/jarvis-core",
        "./usr/lib/jarvis/resources/app/1.0.0/release.json.sig",
        "./usr/bin/jarvis -> ../lib/jarvis/jarvis",
        "./usr/share/applications/jarvis.desktop",
        "./usr/share/icons/hicolor/scalable/apps/jarvis.svg",
        "./usr/share/doc/jarvis/copyright",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} not in:\n{contents}"
        );
    }
    assert!(
        contents.lines().all(|l| l.contains("root/root")),
        "{contents}"
    );

    // Installed into a root of its own, then started from /usr/bin/jarvis
    // as the desktop entry does.
    let dpkg = DpkgRoot::new(&home.scratch().join("root"));
    let root = dpkg.root.clone();
    dpkg.run(&[&"-i", &deb]);
    let jarvis = root.join("usr/bin/jarvis");
    let mut launcher = home.spawn_program(&jarvis, &["up", "--no-browser"]);
    launcher.wait_ready();
    let instance = home.instance().unwrap();
    let core_exe = std::fs::read_link(format!("/proc/{}/exe", instance.core.pid)).unwrap();
    assert!(
        core_exe.starts_with(root.join("usr/lib/jarvis/resources/app/1.0.0")),
        "{core_exe:?} is not the packaged core"
    );
    let api = home.api();
    let conversation = api.create_conversation();
    assert_eq!(api.add_message(&conversation, "user", "kept").status(), 201);

    // Updates are apt's: the launcher refuses to change the install.
    let check = home
        .command(&jarvis, &["update", "check"])
        .output()
        .unwrap();
    assert!(!check.status.success());
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(said.contains("installed with apt"), "{said}");
    let status = home
        .command(&jarvis, &["update", "status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["managed_by"], "apt");
    assert_eq!(status["current"], "1.0.0");
    // ... and the UI's status page says so.
    let page = home.ui_session().get_json("/launcher/status");
    assert!(
        page["updates"].as_str().unwrap().contains("through apt"),
        "{page}"
    );
    assert_eq!(launcher.terminate().code(), Some(0));

    // Removal and purge take the app and leave the data folder as it was.
    let data_before = snapshot(&home.data_dir());
    assert!(!data_before.is_empty());
    dpkg.run(&[&"-r", &"jarvis"]);
    assert!(!root.join("usr/lib/jarvis").exists());
    assert!(!jarvis.exists());
    dpkg.run(&[&"-P", &"jarvis"]);
    assert_eq!(snapshot(&home.data_dir()), data_before);

    // Reinstalled, Jarvis finds its memory.
    dpkg.run(&[&"-i", &deb]);
    let _running = {
        let mut l = home.spawn_program(&jarvis, &["up", "--no-browser"]);
        l.wait_ready();
        l
    };
    assert_eq!(home.api().messages(&conversation).unwrap(), ["kept"]);
}

/// `lintian` finds no errors in the package (warnings about a debug test
/// build, like unstripped binaries, are not errors).
#[test]
fn the_deb_is_lintian_clean_of_errors() {
    let home = TestHome::new();
    let work = home.scratch().join("release");
    let feed = published_release(&work);
    let deb = installer("deb", &feed, &work.join("out"), &[&"--fast"]);
    let out = Command::new("lintian")
        .args(["--no-cfg", "--fail-on", "error", "--suppress-tags"])
        .arg("unstripped-binary-or-object")
        .arg(&deb)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lintian: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.lines().any(|l| l.starts_with("E:")), "{said}");
}

#[test]
fn the_tar_installer_installs_per_user_and_uninstalls_keeping_data() {
    let home = TestHome::new();
    let work = home.scratch().join("release");
    let feed = published_release(&work);
    let archive = installer("tar", &feed, &work.join("out"), &[]);
    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    assert!(
        archive.ends_with(format!("Jarvis-1.0.0-{target}.tar.gz")),
        "{archive:?}"
    );
    let unpacked = home.scratch().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let installer = unpacked.join("jarvis-1.0.0/install.sh");

    // A fresh home: no root, everything under it.
    let user_home = home.scratch().join("home");
    std::fs::create_dir_all(&user_home).unwrap();
    home.set_env("HOME", user_home.to_str().unwrap());
    home.set_env(
        "XDG_DATA_HOME",
        user_home.join(".local/share").to_str().unwrap(),
    );
    let out = home.command(&installer, &[]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let install = user_home.join(".local/share/jarvis-app");
    let linked = user_home.join(".local/bin/jarvis");
    assert_eq!(std::fs::read_link(&linked).unwrap(), install.join("jarvis"));
    let desktop =
        std::fs::read_to_string(user_home.join(".local/share/applications/jarvis.desktop"))
            .unwrap();
    assert!(
        desktop.contains(&format!("Exec={}", install.join("jarvis").display())),
        "{desktop}"
    );

    let mut launcher = home.spawn_program(&linked, &["up", "--no-browser"]);
    launcher.wait_ready();
    let api = home.api();
    let conversation = api.create_conversation();
    assert_eq!(api.add_message(&conversation, "user", "kept").status(), 201);
    assert_eq!(launcher.terminate().code(), Some(0));

    let data_before = snapshot(&home.data_dir());
    let out = home.command(&installer, &["--uninstall"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!install.exists());
    assert!(linked.symlink_metadata().is_err());
    assert_eq!(snapshot(&home.data_dir()), data_before);
}

/// macOS binaries cannot be built here, nor a disk image made (hdiutil):
/// the app bundle is assembled from a macOS release (here of the Linux
/// binaries, relabelled: only the layout is under test) and its
/// Info.plist read back with Python's plistlib.
#[test]
fn the_dmg_folder_holds_a_well_formed_app_bundle() {
    let home = TestHome::new();
    let work = home.scratch();
    let target = "aarch64-apple-darwin";
    let feed = work.join("feed");
    publish(
        &work,
        &feed,
        &Version {
            version: "1.2.3",
            target,
            core: &core_bin(),
            launcher: &jarvis_bin(),
            previous: &[],
            redis: None,
        },
    );
    let folder = installer(
        "dmg",
        &feed,
        &work.join("out"),
        &[&"--target", &target, &"--app-only"],
    );
    assert!(folder.ends_with("Jarvis-1.2.3-aarch64-dmg"), "{folder:?}");
    assert_eq!(
        std::fs::read_link(folder.join("Applications")).unwrap(),
        Path::new("/Applications")
    );
    let contents = folder.join("Jarvis.app/Contents");
    for file in [
        "MacOS/Jarvis",
        "MacOS/jarvis",
        "Resources/jarvis.svg",
        "Resources/feed/stable/aarch64-apple-darwin/release.json",
        "Resources/feed/stable/aarch64-apple-darwin/release.json.sig",
        "Resources/feed/stable/aarch64-apple-darwin/files/1.2.3/jarvis-core",
    ] {
        assert!(contents.join(file).is_file(), "{file} missing");
    }
    let plist = Command::new("python3")
        .arg("-c")
        .arg(
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
        )
        .arg(contents.join("Info.plist"))
        .output()
        .unwrap();
    assert!(plist.status.success(), "{plist:?}");
    let plist: serde_json::Value = serde_json::from_slice(&plist.stdout).unwrap();
    assert_eq!(plist["CFBundleExecutable"], "Jarvis");
    assert_eq!(plist["CFBundlePackageType"], "APPL");
    assert_eq!(plist["CFBundleShortVersionString"], "1.2.3");
    assert_eq!(plist["CFBundleIdentifier"], "org.jarvis-assistant.Jarvis");
    // The executable named by the plist is the start script, executable.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(contents.join("MacOS/Jarvis"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111);
    // A target the feed has no release for is refused.
    let out = Command::new(binary("jarvis-dist"))
        .args(["installer", "dmg", "--app-only", "--feed"])
        .arg(&feed)
        .arg("--out")
        .arg(work.join("out2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Publishes `version` of the real launcher and a core variant (`broken`:
/// truncated, so it cannot start) into `feed`, with deltas from `previous`.
fn publish_version(
    work: &Path,
    feed: &Path,
    version: &str,
    broken: bool,
    previous: &Path,
) -> PathBuf {
    let mut core = std::fs::read(core_bin()).unwrap();
    if broken {
        core.truncate(4096);
    } else {
        // A real binary difference for the delta (ELF ignores the tail).
        core.extend_from_slice(format!("jarvis build {version}").as_bytes());
    }
    let core_path = work.join(format!("jarvis-core-{version}"));
    std::fs::write(&core_path, core).unwrap();
    publish(
        work,
        feed,
        &Version {
            version,
            target: jarvis_dist::TARGET,
            core: &core_path,
            launcher: &jarvis_bin(),
            previous: &[previous],
            redis: None,
        },
    )
}

/// The journey after an AppImage install: v2 is staged silently in the
/// background and runs from the next launch; a broken v3 is rolled back;
/// memory and settings come through byte for byte.
#[test]
fn an_appimage_install_updates_in_the_background_and_rolls_back_a_broken_version() {
    let home = TestHome::new();
    let work = home.scratch().join("release");
    let carried = published_release(&work);
    let appimage = installer(
        "appimage",
        &carried,
        &work.join("out"),
        &[&"--runtime", &jarvis_tests::appimage_runtime()],
    );
    let xdg = home.scratch().join("xdg");
    let install = xdg.join("jarvis-app");
    home.set_env("XDG_DATA_HOME", xdg.to_str().unwrap());
    home.set_env("APPIMAGE_EXTRACT_AND_RUN", "1");
    let server = jarvis_tests::fault_server::FaultServer::start();
    home.set_env("JARVIS_UPDATE_URL", &server.url("/feed"));
    // Every launch goes through the AppImage, as from the desktop; every
    // stop through the installed launcher (the runtime forwards no signal).
    let launch = || {
        let mut launcher = home.spawn_program(&appimage, &["up", "--no-browser"]);
        launcher.wait_ready();
        launcher
    };
    let stop = |mut launcher: jarvis_tests::Launcher| {
        let out = home
            .command(&install.join("jarvis"), &["stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            launcher
                .wait_exit(std::time::Duration::from_secs(30))
                .success()
        );
    };

    let first = launch();
    assert_eq!(running_version(&home), "1.0.0");
    let api = home.api();
    let conversation = api.create_conversation();
    assert_eq!(api.add_message(&conversation, "user", "kept").status(), 201);
    // A model, imported offline through the installed launcher.
    let imported = home
        .command(
            &install.join("jarvis"),
            &[
                "models",
                "import",
                jarvis_tests::smollm2_gguf().to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
    assert!(imported.status.success(), "{imported:?}");
    let models = snapshot(&home.data_dir().join("models"));
    assert!(
        models.keys().any(|p| p.ends_with(".gguf")),
        "no model in {models:?}"
    );
    stop(first);
    // Settings: background updates on (the default a person gets).
    let config_path = home.path("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["auto_update"] = true.into();
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let settings = std::fs::read(&config_path).unwrap();

    // v2 on the feed: staged while 1.0.0 runs, in use from the next launch.
    let feed = work.join("feed-online");
    publish_version(
        &work,
        &feed,
        "2.0.0",
        false,
        &work.join(format!("bundle-1.0.0-{}", jarvis_dist::TARGET)),
    );
    server.add_dir("/feed", &feed);
    let running = launch();
    jarvis_tests::wait_for(
        std::time::Duration::from_secs(90),
        "v2 to be staged",
        || {
            let state: serde_json::Value =
                serde_json::from_slice(&std::fs::read(home.path("update-state.json")).ok()?)
                    .ok()?;
            (state["staged"] == "2.0.0").then_some(())
        },
    );
    stop(running);
    let running = launch();
    assert_eq!(running_version(&home), "2.0.0");
    assert_eq!(home.api().messages(&conversation).unwrap(), ["kept"]);
    assert_eq!(std::fs::read(&config_path).unwrap(), settings);
    assert_eq!(snapshot(&home.data_dir().join("models")), models);

    // A broken v3, applied (the background path is the one v2 took):
    // tried at the next launch, rolled back to v2.
    stop(running);
    publish_version(
        &work,
        &feed,
        "3.0.0",
        true,
        &work.join(format!("bundle-2.0.0-{}", jarvis_dist::TARGET)),
    );
    server.add_dir("/feed", &feed);
    let applied = home
        .command(&install.join("jarvis"), &["update", "apply", "--json"])
        .output()
        .unwrap();
    assert!(applied.status.success(), "{applied:?}");
    let running = launch();
    assert!(
        running.stderr().contains("Switched back to Jarvis 2.0.0"),
        "{}",
        running.stderr()
    );
    assert_eq!(running_version(&home), "2.0.0");
    assert_eq!(home.api().messages(&conversation).unwrap(), ["kept"]);
    assert_eq!(std::fs::read(&config_path).unwrap(), settings);
    assert_eq!(snapshot(&home.data_dir().join("models")), models);
    stop(running);
}

/// An installer downloaded after its release's manifest expired still
/// installs into an empty install folder (nothing to defend yet); an
/// existing install is not moved to an expired release.
#[test]
fn an_expired_carried_release_installs_fresh_but_never_updates_an_install() {
    let home = TestHome::new();
    let work = home.scratch().join("release");
    let feed = work.join("feed");
    let expired_release = |version: &str, feed: &Path| {
        publish_with(
            &work,
            feed,
            &Version {
                version,
                target: jarvis_dist::TARGET,
                core: &core_bin(),
                launcher: &jarvis_bin(),
                previous: &[],
                redis: None,
            },
            &[&"--expired"],
        );
    };
    expired_release("1.0.0", &feed);
    let install = home.scratch().join("app");
    let run = |feed: &Path| {
        home.jarvis(&["install", "--from", feed.to_str().unwrap(), "--json"])
            .env("JARVIS_BUNDLE_DIR", &install)
            .output()
            .unwrap()
    };
    let out = run(&feed);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["current"], "1.0.0");

    // A newer but expired release does not move an existing install.
    let newer = work.join("feed2");
    expired_release("2.0.0", &newer);
    let out = run(&newer);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("expired"), "{said}");
    assert_eq!(
        std::fs::read_to_string(install.join("resources/app/current"))
            .unwrap()
            .trim(),
        "1.0.0"
    );
}
