//! Bakes the release configuration into the launcher at build time:
//! - `JARVIS_RELEASE_KEYS`: the ed25519 public keys (hex, comma-separated,
//!   at most two: the primary and the one it rotates to) whose signatures
//!   the launcher accepts on app updates; or `JARVIS_RELEASE_KEYS_FILE`, a
//!   file with one key per line.
//! - `JARVIS_UPDATE_FEED`: the URL of the update feed.
//!
//! Without keys the launcher trusts none and refuses every update (it says
//! so); without a feed it has nowhere to look unless `JARVIS_UPDATE_URL`
//! names one. A malformed key fails the build. CONTRIBUTING.md says how
//! releases set them.

const MAX_KEYS: usize = 2;

fn main() {
    println!("cargo::rerun-if-env-changed=JARVIS_RELEASE_KEYS");
    println!("cargo::rerun-if-env-changed=JARVIS_RELEASE_KEYS_FILE");
    println!("cargo::rerun-if-env-changed=JARVIS_UPDATE_FEED");
    let mut text = std::env::var("JARVIS_RELEASE_KEYS").unwrap_or_default();
    if let Ok(path) = std::env::var("JARVIS_RELEASE_KEYS_FILE")
        && !path.is_empty()
    {
        println!("cargo::rerun-if-changed={path}");
        let file = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("JARVIS_RELEASE_KEYS_FILE '{path}': {e}"));
        text.push(',');
        text.push_str(&file.replace('\n', ","));
    }
    let mut keys: Vec<String> = Vec::new();
    for key in text.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let key = key.to_ascii_lowercase();
        assert!(
            key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()),
            "release key '{key}' is not 64 hex digits (an ed25519 public key from `jarvis-dist keygen`)"
        );
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    assert!(
        keys.len() <= MAX_KEYS,
        "at most {MAX_KEYS} release keys (the primary and the next), got {}",
        keys.len()
    );
    println!(
        "cargo::rustc-env=JARVIS_BUILD_RELEASE_KEYS={}",
        keys.join(",")
    );
    let feed = std::env::var("JARVIS_UPDATE_FEED").unwrap_or_default();
    assert!(
        feed.is_empty()
            || feed.starts_with("https://")
            || feed.starts_with("http://")
            || feed.starts_with("file://"),
        "JARVIS_UPDATE_FEED '{feed}' is not an http(s) or file URL"
    );
    println!("cargo::rustc-env=JARVIS_BUILD_UPDATE_FEED={feed}");
}
