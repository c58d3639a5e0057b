//! Release tooling for Jarvis, and the pieces of it the launcher's updater
//! shares: the signed release manifest, signature checks and delta patches.
//!
//! - [`manifest`]: `release.json`, plain serde types. A manifest is trusted
//!   only after [`signing::verify`] accepted the signature over its raw
//!   bytes, before anything in it is parsed.
//! - [`signing`]: ed25519 keys (`jarvis-dist keygen`) and signatures (the
//!   keys a launcher trusts are baked in when it is built: `launcher/build.rs`).
//! - [`release_check`]: whether a built launcher may be shipped
//!   (`jarvis-dist check-launcher`).
//! - [`delta`]: per-file patches, bsdiff-style or zstd `--patch-from`-style
//!   (prefix with long-distance matching), whichever is smaller.
//! - [`feed`]: assembling a version folder (`jarvis-dist bundle`) and a
//!   release feed (`jarvis-dist release`): full files, deltas from earlier
//!   versions, an archive for offline updates, the signed manifest.
//!
//! - [`installer`]: what the installers share (the signed release they
//!   carry, the installed layout); [`appimage`], [`deb`], [`tarball`],
//!   [`dmg`], [`msi`] and [`nsis`]: the formats (`jarvis-dist installer
//!   FORMAT`).
//!
//! Nothing here runs on a user's machine except through the launcher.

/// The target triple this build runs on; releases must match it.
pub const TARGET: &str = env!("JARVIS_DIST_TARGET");

/// `.exe` for a Windows target triple, nothing for the others: how the
/// executables of a release for `target` are named.
pub fn exe_suffix(target: &str) -> &'static str {
    if target.contains("windows") {
        ".exe"
    } else {
        ""
    }
}

pub mod appimage;
pub mod deb;
pub mod delta;
pub mod dmg;
pub mod feed;
pub mod installer;
pub mod manifest;
pub mod msi;
pub mod nsis;
pub mod release_check;
pub mod signing;
pub mod tarball;

/// Everything that can go wrong with releases.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error(
        "the release manifest's signature is not valid for any trusted key; nothing was changed"
    )]
    BadSignature,
    #[error("the release signature file is malformed: {0}")]
    MalformedSignature(String),
    #[error("'{0}' is not a valid key: {1}")]
    BadKey(String, String),
    #[error("the release manifest is not valid: {0}")]
    BadManifest(String),
    #[error("'{0}' is not a version like 1.2.3")]
    BadVersion(String),
    #[error("patch failed: {0}")]
    Patch(String),
    #[error(transparent)]
    File(#[from] jarvis_durable::FileError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
