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
