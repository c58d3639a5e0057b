//! `jarvis-dist installer deb`: a per-machine Debian package, built with
//! `dpkg-deb`. It installs the release into `/usr/lib/jarvis` in the
//! layout the launcher manages (see [`crate::installer`]), `/usr/bin/jarvis`
//! as a link to the launcher, a desktop entry and an icon, and marks the
//! install as apt's (`resources/managed-by`), so the launcher leaves
//! updates to the package manager. No maintainer scripts: the package
//! never touches anyone's user-data folder, on install or on removal.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::DistError;
use crate::feed::{file_error, list_files};
use crate::installer::{
    Compression, DESKTOP_ENTRY, ICON_SVG, MANAGED_BY_FILE, Pointer, SignedRelease, put, read,
    run_tool, work_dir,
};

/// Where the package installs the app.
pub const INSTALL_DIR: &str = "usr/lib/jarvis";

/// Builds `<out>/jarvis_<version>_<arch>.deb` carrying `release`; returns
/// its path.
pub fn build(
    release: &SignedRelease,
    maintainer: &str,
    compression: Compression,
    out: &Path,
) -> Result<PathBuf, DistError> {
    let arch = debian_arch(release.target())?;
    let version = release.release.version;
    let work = work_dir(out, ".deb-")?;
    let root = work.path().join("root");

    let install = root.join(INSTALL_DIR);
    release.write_install(&install, Pointer::Current)?;
    put(
        &install.join("resources").join(MANAGED_BY_FILE),
        b"apt\n",
        false,
    )?;
    let bin = root.join("usr/bin");
    std::fs::create_dir_all(&bin).map_err(|e| file_error("create", &bin, e))?;
    #[cfg(unix)]
    std::os::unix::fs::symlink("../lib/jarvis/jarvis", bin.join("jarvis"))
        .map_err(|e| file_error("link", &bin.join("jarvis"), e))?;
    put(
        &root.join("usr/share/applications/jarvis.desktop"),
        DESKTOP_ENTRY.as_bytes(),
        false,
    )?;
    put(
        &root.join("usr/share/icons/hicolor/scalable/apps/jarvis.svg"),
        ICON_SVG.as_bytes(),
        false,
    )?;
    let doc = root.join("usr/share/doc/jarvis");
    put(
        &doc.join("copyright"),
        copyright(maintainer).as_bytes(),
        false,
    )?;
    put(
        &doc.join("changelog.gz"),
        &gzip(changelog(release, maintainer).as_bytes())?,
        false,
    )?;

    // Control files: what it is, what it needs, every file's checksum.
    let files = list_files(&root)?;
    let mut md5sums = String::new();
    let mut installed_bytes = 0u64;
    for path in &files {
        let bytes = read(&root.join(path))?;
        installed_bytes += bytes.len() as u64;
        md5sums.push_str(&format!("{}  {path}\n", md5_hex(&bytes)));
    }
    let ships_redis = release
        .release
        .files
        .iter()
        .any(|f| f.path == "redis-server");
    let mut depends = "libc6 (>= 2.34), libgcc-s1, libstdc++6".to_owned();
    if !ships_redis {
        depends.push_str(", redis-server");
    }
    let control = format!(
        "Package: jarvis\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {maintainer}\n\
         Installed-Size: {}\n\
         Depends: {depends}\n\
         Section: utils\n\
         Priority: optional\n\
         Homepage: https://github.com/jarvis-app/jarvis\n\
         Description: local-first AI assistant\n \
         Jarvis answers, transcribes and remembers on this computer, offline\n \
         once its models are in place. Models, memory and settings live in\n \
         each person's own data folder, which this package never touches.\n",
        installed_bytes.div_ceil(1024)
    );
    let debian = root.join("DEBIAN");
    put(&debian.join("control"), control.as_bytes(), false)?;
    put(&debian.join("md5sums"), md5sums.as_bytes(), false)?;

    let path = out.join(format!("jarvis_{version}_{arch}.deb"));
    let partial = work.path().join("package.deb");
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--root-owner-group");
    match compression {
        Compression::Best => dpkg.args(["-Zxz", "-z9"]),
        Compression::Fast => dpkg.args(["-Zgzip", "-z1"]),
    };
    dpkg.arg("--build").arg(&root).arg(&partial);
    run_tool(&mut dpkg, "dpkg-deb", "dpkg")?;
    std::fs::rename(&partial, &path).map_err(|e| file_error("move", &path, e))?;
    Ok(path)
}

/// Debian's name for the target's architecture.
fn debian_arch(target: &str) -> Result<&'static str, DistError> {
    if !target.contains("linux") {
        return Err(DistError::BadManifest(format!(
            "a .deb carries a Linux release, not one for {target}"
        )));
    }
    match target.split('-').next() {
        Some("x86_64") => Ok("amd64"),
        Some("aarch64") => Ok("arm64"),
        _ => Err(DistError::BadManifest(format!(
            "no Debian architecture for {target}"
        ))),
    }
}

fn copyright(maintainer: &str) -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: jarvis\n\
         Upstream-Contact: {maintainer}\n\
         \n\
         Files: *\n\
         Copyright: 2025-2026 The Jarvis developers\n\
         License: MIT or Apache-2.0\n \
         Jarvis may be used under the terms of the MIT license or of the\n \
         Apache License, Version 2.0, at your option.\n \
         .\n \
         On Debian systems, the full text of the Apache License, Version 2.0\n \
         is in /usr/share/common-licenses/Apache-2.0.\n"
    )
}

fn changelog(release: &SignedRelease, maintainer: &str) -> String {
    // The release's own time (never later than now), so rebuilding the
    // package of a release gives the same changelog.
    let now = jiff::Timestamp::now();
    let date = release
        .release
        .released_at
        .parse::<jiff::Timestamp>()
        .map_or(now, |released| released.min(now))
        .strftime("%a, %d %b %Y %H:%M:%S +0000");
    format!(
        "jarvis ({}) stable; urgency=medium\n\n  * Jarvis {} ({}).\n\n -- {maintainer}  {date}\n",
        release.release.version, release.release.version, release.channel
    )
}

/// gzip without a name or time in the header, so builds are reproducible.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, DistError> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(bytes))
}
