//! What this build of the launcher was built to trust and where it looks
//! for updates, baked in by `build.rs` from `JARVIS_RELEASE_KEYS` and
//! `JARVIS_UPDATE_FEED` (CONTRIBUTING.md, "Releases").

use ed25519_dalek::VerifyingKey;
use jarvis_protocol::env;

/// The release keys this launcher was built with (hex), primary first.
pub fn built_in_keys() -> Vec<&'static str> {
    env!("JARVIS_BUILD_RELEASE_KEYS")
        .split(',')
        .filter(|k| !k.is_empty())
        .collect()
}

/// The update feed this launcher was built with, if any.
pub fn built_in_feed() -> Option<&'static str> {
    Some(env!("JARVIS_BUILD_UPDATE_FEED")).filter(|f| !f.is_empty())
}

/// The keys releases must be signed with: the built-in ones; debug builds
/// (tests) also trust `JARVIS_UPDATE_TRUSTED_KEYS` (comma-separated hex),
/// which release builds ignore. None at all is an error: such a build can
/// verify no release, so it accepts none.
pub fn trusted_keys() -> anyhow::Result<Vec<VerifyingKey>> {
    let mut keys: Vec<VerifyingKey> = built_in_keys()
        .into_iter()
        .filter_map(|k| jarvis_dist::signing::verifying_key(k).ok())
        .collect();
    if cfg!(debug_assertions)
        && let Ok(extra) = std::env::var(env::UPDATE_TRUSTED_KEYS)
    {
        keys.extend(
            extra
                .split(',')
                .filter_map(|k| jarvis_dist::signing::verifying_key(k).ok()),
        );
    }
    if keys.is_empty() {
        anyhow::bail!(
            "this build of Jarvis trusts no release key, so it cannot verify any app version \
             (it was built without JARVIS_RELEASE_KEYS; see `jarvis build-info`)"
        );
    }
    Ok(keys)
}

/// `jarvis build-info --json`: what the release script checks before it
/// makes installers of this launcher.
pub fn build_info() -> serde_json::Value {
    serde_json::json!({
        "version": crate::VERSION,
        "target": jarvis_dist::TARGET,
        "release_keys": built_in_keys(),
        "update_feed": built_in_feed(),
        "debug_build": cfg!(debug_assertions),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_keys_are_valid_keys() {
        for key in built_in_keys() {
            assert!(jarvis_dist::signing::verifying_key(key).is_ok(), "{key}");
        }
    }
}
