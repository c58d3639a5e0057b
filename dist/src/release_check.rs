//! Whether a built launcher may be shipped: `jarvis-dist check-launcher`
//! reads what the launcher says it trusts (`jarvis build-info --json`) and
//! refuses one that could never accept an update from the person cutting
//! the release.

use ed25519_dalek::SigningKey;
use serde::Deserialize;

use crate::signing::to_hex;

/// The public half of the test key pair in
/// `tests/fixtures/release-test-key` (whose secret half is public).
pub const TEST_KEY: &str = include_str!("../../tests/fixtures/release-test-key/release.pub");

/// What `jarvis build-info --json` prints (the fields checked here).
#[derive(Debug, Clone, Deserialize)]
pub struct BuildInfo {
    pub version: String,
    pub release_keys: Vec<String>,
    pub update_feed: Option<String>,
    pub debug_build: bool,
}

/// How strict to be.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Accept the public test key, a debug build and no feed (the test
    /// suite's own launchers); never for a real release.
    pub for_tests: bool,
}

/// Every reason the launcher must not be shipped; empty when it may.
pub fn problems(info: &BuildInfo, secret_keys: &[SigningKey], policy: Policy) -> Vec<String> {
    let mut problems = Vec::new();
    if info.release_keys.is_empty() {
        problems.push(
            "the launcher trusts no release key, so it could never accept an update \
             (build it with JARVIS_RELEASE_KEYS)"
                .to_owned(),
        );
    }
    let have: Vec<String> = secret_keys
        .iter()
        .map(|k| to_hex(k.verifying_key().as_bytes()))
        .collect();
    for key in &info.release_keys {
        if key.eq_ignore_ascii_case(TEST_KEY.trim()) && !policy.for_tests {
            problems.push(format!(
                "the launcher trusts the public test key {key}, whose secret half anyone can read"
            ));
        } else if !have.iter().any(|h| h.eq_ignore_ascii_case(key)) {
            problems.push(format!(
                "the launcher trusts {key}, but no --key given is its private half \
                 (a release nobody can sign for strands its users)"
            ));
        }
    }
    for key in &have {
        if !info
            .release_keys
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
        {
            problems.push(format!(
                "the key {key} given to sign with is not one the launcher trusts"
            ));
        }
    }
    if !policy.for_tests {
        if info.debug_build {
            problems.push("the launcher is a debug build".to_owned());
        }
        if info.update_feed.is_none() {
            problems.push(
                "the launcher has no update feed (build it with JARVIS_UPDATE_FEED)".to_owned(),
            );
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn info(keys: &[&str], feed: Option<&str>, debug: bool) -> BuildInfo {
        BuildInfo {
            version: "1.0.0".into(),
            release_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            update_feed: feed.map(str::to_owned),
            debug_build: debug,
        }
    }

    fn public(key: &SigningKey) -> String {
        to_hex(key.verifying_key().as_bytes())
    }

    #[test]
    fn a_release_launcher_with_both_keys_held_and_a_feed_passes() {
        let (a, b) = (
            crate::signing::generate().unwrap(),
            crate::signing::generate().unwrap(),
        );
        let launcher = info(
            &[&public(&a), &public(&b)],
            Some("https://updates.example/feed"),
            false,
        );
        assert!(problems(&launcher, &[a, b], Policy::default()).is_empty());
    }

    #[test]
    fn no_keys_a_key_without_its_private_half_the_test_key_or_no_feed_are_refused() {
        let a = crate::signing::generate().unwrap();
        let stranger = crate::signing::generate().unwrap();
        let feed = Some("https://updates.example/feed");
        let refused = |launcher: BuildInfo, keys: &[SigningKey], needle: &str| {
            let found = problems(&launcher, keys, Policy::default());
            assert!(found.iter().any(|p| p.contains(needle)), "{found:?}");
        };
        refused(
            info(&[], feed, false),
            std::slice::from_ref(&a),
            "trusts no release key",
        );
        refused(
            info(&[&public(&a), &public(&stranger)], feed, false),
            std::slice::from_ref(&a),
            "no --key given is its private half",
        );
        refused(
            info(&[&public(&a)], feed, false),
            &[a.clone(), stranger],
            "not one the launcher trusts",
        );
        refused(
            info(&[TEST_KEY.trim()], feed, false),
            &[],
            "public test key",
        );
        refused(
            info(&[&public(&a)], None, false),
            std::slice::from_ref(&a),
            "no update feed",
        );
        refused(
            info(&[&public(&a)], feed, true),
            std::slice::from_ref(&a),
            "debug build",
        );
    }
}
