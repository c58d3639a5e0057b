//! Where releases come from: an online feed (`JARVIS_UPDATE_URL`), an
//! offline folder, or an offline `.tar` unpacked with every entry checked;
//! and the size-bounded fetch of its small files (manifest, signature).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use jarvis_protocol::env;

use crate::install::Install;

/// Where a release is read from: a URL prefix ending in `/`.
pub struct Feed {
    base: String,
    /// Keeps an unpacked offline archive alive.
    unpacked: Option<tempfile::TempDir>,
    /// The release an installer carries, going into an empty install
    /// folder: see [`Feed::for_first_install`].
    pub(super) first_install: bool,
}

impl Feed {
    pub fn online(channel: &str) -> anyhow::Result<Self> {
        // `JARVIS_UPDATE_URL` (a mirror, a test feed) over the feed this
        // build was made with; what is found there is checked against the
        // built-in keys either way.
        let root = match std::env::var(env::UPDATE_URL) {
            Ok(url) if !url.is_empty() => url,
            _ => crate::release_config::built_in_feed()
                .context(
                    "this build of Jarvis has no update feed (built without JARVIS_UPDATE_FEED); \
                     set JARVIS_UPDATE_URL or update from a file with `jarvis update apply --from`",
                )?
                .to_owned(),
        };
        Self::at(&root, channel, None)
    }

    pub fn offline(path: &Path, channel: &str, install: &Install) -> anyhow::Result<Self> {
        if path.is_dir() {
            let root = std::path::absolute(path)?;
            let root =
                url::Url::from_directory_path(&root).map_err(|()| anyhow::anyhow!("bad folder"))?;
            return Self::at(root.as_str(), channel, None);
        }
        jarvis_durable::create_private_dir_all("app folder", &install.app_dir)?;
        let unpacked = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempdir_in(&install.app_dir)?;
        unpack_safely(path, unpacked.path())?;
        let root = url::Url::from_directory_path(unpacked.path())
            .map_err(|()| anyhow::anyhow!("bad folder"))?;
        Self::at(root.as_str(), channel, Some(unpacked))
    }

    /// Where an offline archive was unpacked (`.incoming-*` in the app
    /// folder), while this feed is in use.
    pub fn unpacked_dir(&self) -> Option<&Path> {
        self.unpacked.as_ref().map(tempfile::TempDir::path)
    }

    /// Marks the release an installer carries, installed into an empty
    /// install folder: its manifest may have expired (the installer was
    /// downloaded long after its release). The expiry defends a running
    /// install against a frozen feed; a first install has nothing to
    /// defend yet, and the updater moves on from it at the next check.
    pub fn for_first_install(mut self) -> Self {
        self.first_install = true;
        self
    }

    fn at(root: &str, channel: &str, unpacked: Option<tempfile::TempDir>) -> anyhow::Result<Self> {
        let root = if root.contains("://") {
            root.to_owned()
        } else {
            url::Url::from_directory_path(std::path::absolute(root)?)
                .map_err(|()| anyhow::anyhow!("'{root}' is not a usable feed folder"))?
                .to_string()
        };
        let base = format!(
            "{}/{channel}/{}/",
            root.trim_end_matches('/'),
            jarvis_dist::TARGET
        );
        Ok(Self {
            base,
            unpacked,
            first_install: false,
        })
    }

    pub fn url(&self, relative: &str) -> String {
        format!("{}{relative}", self.base)
    }
}

/// Fetches a small file (manifest, signature), refusing more than `max`.
pub async fn fetch_small(url: &str, max: u64) -> anyhow::Result<Vec<u8>> {
    let bytes = if let Some(rest) = url.strip_prefix("file://") {
        let path = url::Url::parse(url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| PathBuf::from(rest));
        let file = std::fs::File::open(&path)
            .with_context(|| format!("could not read '{}'", path.display()))?;
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, max + 1), &mut out)?;
        out
    } else {
        let mut response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("could not fetch '{url}'"))?;
        let mut out = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            out.extend_from_slice(&chunk);
            if out.len() as u64 > max {
                break;
            }
        }
        out
    };
    if bytes.len() as u64 > max {
        bail!("'{url}' is larger than the {max} bytes allowed; refusing it (endless-data defence)");
    }
    Ok(bytes)
}

/// Unpacks an offline update archive, refusing anything but plain files and
/// folders at safe relative paths (no `..`, absolute paths or links).
fn unpack_safely(archive: &Path, into: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(archive)
        .with_context(|| format!("could not open '{}'", archive.display()))?;
    let mut tar = tar::Archive::new(file);
    let mut total = 0u64;
    for entry in tar.entries().context("not a readable tar archive")? {
        let mut entry = entry.context("the archive is damaged")?;
        let path = entry
            .path()
            .context("an entry has an unreadable name")?
            .into_owned();
        let text = path.to_string_lossy().replace('\\', "/");
        let text = text.trim_end_matches('/');
        if !jarvis_dist::manifest::is_safe_relative(text) {
            bail!(
                "the update archive was refused: entry '{}' is not a safe path; nothing was changed",
                path.display()
            );
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(jarvis_dist::feed::under(into, text))?;
            continue;
        }
        if !kind.is_file() {
            bail!(
                "the update archive was refused: entry '{}' is a link or special file; nothing was changed",
                path.display()
            );
        }
        total += entry.size();
        if total > 8 * jarvis_dist::manifest::MAX_FILE_BYTES {
            bail!("the update archive was refused: it unpacks to more than a release may hold");
        }
        let dest = jarvis_dist::feed::under(into, text);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&dest)?;
        let size = entry.header().size()?;
        std::io::copy(&mut std::io::Read::take(&mut entry, size), &mut out)?;
    }
    Ok(())
}
