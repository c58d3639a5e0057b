//! `release.json`: one version of the app bundle for one channel and
//! target, with every file's size and SHA-256 and the deltas that rebuild
//! it from earlier versions.

use std::fmt;
use std::str::FromStr;

use jarvis_download::Sha256Digest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::DistError;

pub const RELEASE_FORMAT: u32 = 1;
/// The manifest's name in a feed and in an installed version folder.
pub const MANIFEST_NAME: &str = "release.json";
/// Its detached signature beside it.
pub const SIGNATURE_NAME: &str = "release.json.sig";
/// Largest manifest the launcher reads (endless-data defence).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Largest single file a release may carry.
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// `major.minor.patch`, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppVersion(pub u64, pub u64, pub u64);

impl FromStr for AppVersion {
    type Err = DistError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<u64> = s
            .split('.')
            .map(|p| p.parse().map_err(|_| DistError::BadVersion(s.to_owned())))
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [a, b, c] => Ok(Self(a, b, c)),
            _ => Err(DistError::BadVersion(s.to_owned())),
        }
    }
}

impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Serialize for AppVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AppVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub format: u32,
    pub version: AppVersion,
    pub channel: String,
    /// e.g. `x86_64-unknown-linux-gnu`.
    pub target: String,
    /// RFC 3339.
    pub released_at: String,
    /// After this the manifest is refused (freeze defence): updates stop,
    /// launches never do.
    pub expires_at: String,
    /// The oldest launcher that may install it.
    pub min_launcher_version: AppVersion,
    /// Data schemas this version's core works with.
    pub data_schema: SchemaRange,
    /// Share of installs (0–100) offered this release (staged rollout).
    #[serde(default = "full_rollout")]
    pub rollout_percent: u8,
    pub files: Vec<ReleaseFile>,
    /// A tar of the whole version folder, for offline updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<Artifact>,
}

fn full_rollout() -> u8 {
    100
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRange {
    pub min: u32,
    pub max: u32,
}

/// One file of the version folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseFile {
    /// `/`-separated, relative to the version folder.
    pub path: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    #[serde(default)]
    pub executable: bool,
    /// The full file, relative to the manifest's folder.
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<Delta>,
}

/// A patch that turns `from`'s copy of the file into this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    pub from: AppVersion,
    pub kind: crate::delta::DeltaKind,
    pub url: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// A downloadable artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub url: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

impl Release {
    /// Parses a manifest whose signature was already verified, and checks
    /// what it can check alone: format, paths, sizes.
    pub fn parse_verified(bytes: &[u8]) -> Result<Self, DistError> {
        let release: Self =
            serde_json::from_slice(bytes).map_err(|e| DistError::BadManifest(e.to_string()))?;
        if release.format > RELEASE_FORMAT {
            return Err(DistError::BadManifest(format!(
                "format {} is newer than this launcher reads",
                release.format
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for file in &release.files {
            if !is_safe_relative(&file.path) || !is_safe_relative(&file.url) {
                return Err(DistError::BadManifest(format!(
                    "unsafe path '{}'",
                    file.path
                )));
            }
            if !seen.insert(&file.path) {
                return Err(DistError::BadManifest(format!(
                    "'{}' is listed twice",
                    file.path
                )));
            }
            if file.size > MAX_FILE_BYTES || file.deltas.iter().any(|d| d.size > MAX_FILE_BYTES) {
                return Err(DistError::BadManifest(format!(
                    "'{}' is larger than the {MAX_FILE_BYTES} bytes a release may carry",
                    file.path
                )));
            }
            if file.deltas.iter().any(|d| !is_safe_relative(&d.url)) {
                return Err(DistError::BadManifest(format!(
                    "unsafe delta path for '{}'",
                    file.path
                )));
            }
        }
        if release.rollout_percent > 100 {
            return Err(DistError::BadManifest(
                "rollout_percent above 100".to_owned(),
            ));
        }
        Ok(release)
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A relative, `/`-separated path with no `..`, `.`, empty, absolute or
/// drive components.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['\\', ':', '\0']))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let a: AppVersion = "1.10.0".parse().unwrap();
        let b: AppVersion = "1.9.9".parse().unwrap();
        assert!(a > b);
        assert!("1.2".parse::<AppVersion>().is_err());
        assert!("1.2.x".parse::<AppVersion>().is_err());
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in ["", "/etc/x", "a/../b", "..", "a//b", "a\\b", "c:x"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
        assert!(is_safe_relative("ui/index.html"));
    }
}
