//! The release pipeline's gate on what may be shipped: the launcher says
//! what it was built to trust (`jarvis build-info`), and `jarvis-dist
//! check-launcher` refuses a launcher nobody could sign updates for.

use std::path::PathBuf;
use std::process::{Command, Output};

use jarvis_tests::{TestHome, binary, jarvis_bin};
use serde_json::Value;

fn test_key_dir() -> PathBuf {
    jarvis_tests::release_test_key_dir()
}

fn check_launcher(args: &[&str]) -> Output {
    Command::new(binary("jarvis-dist"))
        .arg("check-launcher")
        .arg("--launcher")
        .arg(jarvis_bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_test_built_launcher_trusts_only_the_test_key_and_cannot_be_shipped() {
    let home = TestHome::new();
    let out = home.run(&["build-info", "--json"]);
    assert!(out.status.success(), "{}", out.stderr);
    let info: Value = serde_json::from_str(&out.stdout).unwrap();
    let test_key = std::fs::read_to_string(test_key_dir().join("release.pub")).unwrap();
    assert_eq!(
        info["release_keys"],
        serde_json::json!([test_key.trim()]),
        "{info}"
    );
    assert_eq!(info["debug_build"], true);

    let secret = test_key_dir().join("release.key");
    let secret = secret.to_str().unwrap();
    // As a real release: the public test key and a debug build are refused.
    let out = check_launcher(&["--key", secret]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("must not be shipped"), "{said}");
    assert!(said.contains("public test key"), "{said}");
    assert!(said.contains("debug build"), "{said}");

    // The test suite's own policy accepts it with the key's private half...
    let out = check_launcher(&["--for-tests", "--key", secret]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ...but not with a key the launcher does not trust, nor with none.
    let other = home.scratch().join("other");
    let made = Command::new(binary("jarvis-dist"))
        .arg("keygen")
        .arg(&other)
        .output()
        .unwrap();
    assert!(made.status.success());
    let other_key = other.join("release.key");
    let out = check_launcher(&["--for-tests", "--key", other_key.to_str().unwrap()]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no --key given is its private half"),
        "{said}"
    );
    assert!(said.contains("not one the launcher trusts"), "{said}");
}

/// `scripts/release`, the short run: the test suite's own binaries (which
/// trust the test key) instead of release builds, a Windows core stand-in
/// (a real PE that exits at once; the real one is built on a Windows
/// runner), and a self-signed code-signing certificate.
#[test]
fn the_release_script_makes_every_installer_signed_with_checksums() {
    let home = TestHome::new();
    let work = home.scratch();
    let repo = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("..");

    // A code-signing certificate of our own, and its password file.
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=Jarvis test signing"])
        .arg("-keyout")
        .arg(work.join("sign.key"))
        .arg("-out")
        .arg(work.join("sign.pem")));
    std::fs::write(work.join("sign.pass"), "test-pass").unwrap();
    run(Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:test-pass"])
        .arg("-inkey")
        .arg(work.join("sign.key"))
        .arg("-in")
        .arg(work.join("sign.pem"))
        .arg("-out")
        .arg(work.join("sign.pfx")));
    std::fs::write(work.join("core.c"), "int main(void) { return 0; }\n").unwrap();
    run(Command::new("x86_64-w64-mingw32-gcc")
        .arg("-o")
        .arg(work.join("jarvis-core.exe"))
        .arg(work.join("core.c")));

    let windows_bin = jarvis_tests::bin_dir()
        .parent()
        .unwrap()
        .join("x86_64-pc-windows-gnu/debug");
    let release = |version: &str| {
        Command::new(repo.join("scripts/release"))
            .current_dir(&repo)
            .args(["--version", version, "--for-tests"])
            .arg("--key")
            .arg(test_key_dir())
            .arg("--feed")
            .arg(work.join("feed"))
            .arg("--out")
            .arg(work.join(format!("out-{version}")))
            .arg("--windows-core")
            .arg(work.join("jarvis-core.exe"))
            .arg("--sign-cert")
            .arg(work.join("sign.pfx"))
            .arg("--sign-pass-file")
            .arg(work.join("sign.pass"))
            .arg("--prebuilt")
            .arg(jarvis_tests::bin_dir())
            .arg("--prebuilt-windows")
            .arg(&windows_bin)
            .output()
            .unwrap()
    };
    let out = release("1.0.0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = work.join("out-1.0.0");
    let arch = std::env::consts::ARCH;
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected = vec![
        format!("Jarvis-1.0.0-{arch}-unknown-linux-gnu.tar.gz"),
        format!("Jarvis-1.0.0-{arch}.AppImage"),
        "Jarvis-1.0.0-x86_64.msi".to_owned(),
        "Jarvis-Setup-1.0.0-x86_64.exe".to_owned(),
        "SHA256SUMS".to_owned(),
        "jarvis_1.0.0_amd64.deb".to_owned(),
    ];
    expected.sort();
    assert_eq!(names, expected);
    run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&dir));

    // The Linux release ships its own redis-server, so the .deb needs
    // none from apt.
    let shipped = work.join(format!(
        "feed/stable/{arch}-unknown-linux-gnu/files/1.0.0/redis-server"
    ));
    assert_eq!(
        std::fs::read(&shipped).unwrap(),
        std::fs::read(jarvis_tests::bundled_redis_server()).unwrap()
    );
    let depends = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(dir.join("jarvis_1.0.0_amd64.deb"))
        .arg("Depends"));
    let depends = String::from_utf8_lossy(&depends.stdout);
    assert!(!depends.contains("redis"), "{depends}");

    // Authenticode: the installers, and the launcher inside the release.
    for signed in [
        dir.join("Jarvis-1.0.0-x86_64.msi"),
        dir.join("Jarvis-Setup-1.0.0-x86_64.exe"),
        work.join("feed/stable/x86_64-pc-windows-gnu/files/1.0.0/jarvis.exe"),
    ] {
        let out = run(Command::new("osslsigncode")
            .arg("verify")
            .arg("-CAfile")
            .arg(work.join("sign.pem"))
            .arg("-in")
            .arg(&signed));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("Signature verification: ok"),
            "{signed:?}: {said}"
        );
    }

    // The same version twice is refused; nothing is overwritten.
    let again = release("1.0.0");
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already released"), "{said}");
}
