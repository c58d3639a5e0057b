//! Model packs: a zip with a `pack.json` that lists every file with its size
//! and SHA-256, for installing models with no network at all.
//!
//! ```text
//! pack.json
//! <name>/<version>/<path>      each file pack.json lists, nothing else
//! ```
//!
//! A pack is checked completely before anything is extracted, and every
//! byte is verified while it is extracted. Refused, with nothing written
//! outside the staging folder: `..`, absolute or otherwise unsafe paths,
//! symlinks, duplicate names, entries pack.json does not declare, sizes that
//! differ from the declaration, and zip bombs (an entry that inflates past
//! its declared size, or declarations larger than the free disk space).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use jarvis_download::Sha256Digest;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::catalog::{CatalogFile, ModelEntry, ModelRole};
use crate::names::{ModelName, ModelVersion, RelativePath};
use crate::store::file_error;
use crate::{ModelStore, RegistryError};

/// The pack format this build reads.
pub const PACK_FORMAT: u32 = 1;
/// The manifest's name inside the zip.
pub const MANIFEST_NAME: &str = "pack.json";
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
const MAX_ENTRIES: usize = 10_000;

/// `pack.json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackManifest {
    pub format: u32,
    pub models: Vec<PackModel>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackModel {
    pub name: ModelName,
    pub version: ModelVersion,
    pub role: ModelRole,
    pub files: Vec<PackFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackFile {
    pub path: RelativePath,
    pub size: u64,
    pub sha256: Sha256Digest,
}

impl PackModel {
    pub fn entry(&self) -> ModelEntry {
        ModelEntry {
            name: self.name.clone(),
            version: self.version.clone(),
            role: self.role,
            required: false,
            description: String::new(),
            // A CTranslate2 whisper model in a pack is recognised and
            // converted on install like any other.
            convert: None,
            files: self
                .files
                .iter()
                .map(|f| CatalogFile {
                    path: f.path.clone(),
                    size: f.size,
                    sha256: f.sha256,
                    chunk_size: None,
                    chunk_sha256: Vec::new(),
                    sources: Vec::new(),
                })
                .collect(),
        }
    }
}

/// Checks `zip_path` and extracts its models into staging folders, verified.
/// Returns each model with its staging folder (locked); the caller installs
/// them.
pub fn stage_pack(
    store: &ModelStore,
    zip_path: &Path,
) -> Result<Vec<(ModelEntry, std::path::PathBuf, crate::store::StagingLock)>, RegistryError> {
    let hostile = |reason: String| RegistryError::HostilePack {
        path: zip_path.to_owned(),
        reason,
    };
    let mut file =
        File::open(zip_path).map_err(|e| file_error("open", "model pack", zip_path, e))?;
    let recorded = central_directory_entries(&mut file)
        .map_err(|e| file_error("read", "model pack", zip_path, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| hostile(format!("not a readable zip file ({e})")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(hostile(format!("it has more than {MAX_ENTRIES} entries")));
    }
    // The zip reader keys entries by name, so a second entry of the same
    // name would silently hide the first: compare with the raw count.
    if let Some(recorded) = recorded
        && recorded != archive.len()
    {
        return Err(hostile(format!(
            "its directory lists {recorded} entries but only {} distinct names: a name appears twice",
            archive.len()
        )));
    }

    // Pass 1: every entry's name, type and declared size, before extracting.
    let mut entries: HashMap<String, (usize, u64)> = HashMap::new();
    let mut seen = HashSet::new();
    for index in 0..archive.len() {
        let entry = archive
            .by_index(index)
            .map_err(|e| hostile(format!("entry {index} is unreadable ({e})")))?;
        let name = entry
            .name()
            .map_err(|e| hostile(format!("entry {index} has an unreadable name ({e})")))?
            .into_owned();
        if !seen.insert(name.clone()) {
            return Err(hostile(format!("'{name}' appears twice")));
        }
        if entry.is_symlink() || entry.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(hostile(format!("'{name}' is a symbolic link")));
        }
        if entry.is_dir() {
            let trimmed = name.trim_end_matches('/');
            if !trimmed.is_empty() && RelativePath::parse(trimmed).is_err() {
                return Err(hostile(format!("'{name}' is not a safe path")));
            }
            continue;
        }
        if RelativePath::parse(&name).is_err() {
            return Err(hostile(format!("'{name}' is not a safe path")));
        }
        entries.insert(name, (index, entry.size()));
    }

    let manifest = read_manifest(&mut archive, &entries).map_err(hostile)?;
    let mut declared = HashSet::new();
    let mut total = 0u64;
    for model in &manifest.models {
        for file in &model.files {
            let name = format!("{}/{}/{}", model.name, model.version, file.path);
            let Some((_, size)) = entries.get(&name) else {
                return Err(hostile(format!(
                    "'{name}' is declared in pack.json but missing"
                )));
            };
            if *size != file.size {
                return Err(hostile(format!(
                    "'{name}' is {size} bytes in the zip but {} bytes in pack.json",
                    file.size
                )));
            }
            total = total.saturating_add(file.size);
            declared.insert(name);
        }
    }
    if let Some(extra) = entries
        .keys()
        .find(|n| *n != MANIFEST_NAME && !declared.contains(*n))
    {
        return Err(hostile(format!("'{extra}' is not declared in pack.json")));
    }
    let available = fs4::available_space(store.root()).unwrap_or(u64::MAX);
    if total > available {
        return Err(hostile(format!(
            "it unpacks to {total} bytes but only {available} bytes are free in '{}'",
            store.root().display()
        )));
    }

    // Pass 2: extract, bounded by the declared sizes, hashing every byte.
    let mut staged = Vec::new();
    for model in &manifest.models {
        let entry = model.entry();
        if store.is_installed(&entry.name, &entry.version) {
            continue;
        }
        let (staging, lock) = store.lock_staging(&entry.name, &entry.version)?;
        let result = (|| {
            for file in &model.files {
                let name = format!("{}/{}/{}", model.name, model.version, file.path);
                let (index, _) = entries[&name];
                let mut source = archive
                    .by_index(index)
                    .map_err(|e| hostile(format!("'{name}' is unreadable ({e})")))?;
                extract_verified(&mut source, file, &staging, &name).map_err(|e| match e {
                    ExtractError::Hostile(reason) => hostile(reason),
                    ExtractError::Registry(e) => e,
                })?;
            }
            Ok::<_, RegistryError>(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&staging);
            for (_, dir, _) in &staged {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(e);
        }
        staged.push((entry, staging, lock));
    }
    Ok(staged)
}

/// The entry count in the zip's end-of-central-directory record, `None`
/// when it is not there in plain form (zip64 archives).
fn central_directory_entries(file: &mut File) -> std::io::Result<Option<usize>> {
    use std::io::{Seek, SeekFrom};
    let len = file.seek(SeekFrom::End(0))?;
    let tail_len = len.min(65_557);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::new();
    file.take(tail_len).read_to_end(&mut tail)?;
    file.seek(SeekFrom::Start(0))?;
    let Some(at) = tail.windows(4).rposition(|w| w == [0x50, 0x4b, 0x05, 0x06]) else {
        return Ok(None);
    };
    let Some(count) = tail.get(at + 10..at + 12) else {
        return Ok(None);
    };
    let count = u16::from_le_bytes([count[0], count[1]]);
    Ok((count != u16::MAX).then_some(usize::from(count)))
}

fn read_manifest(
    archive: &mut zip::ZipArchive<File>,
    entries: &HashMap<String, (usize, u64)>,
) -> Result<PackManifest, String> {
    let Some((index, size)) = entries.get(MANIFEST_NAME) else {
        return Err("it has no pack.json".to_owned());
    };
    if *size > MAX_MANIFEST_BYTES {
        return Err("its pack.json is too large".to_owned());
    }
    let mut text = Vec::new();
    archive
        .by_index(*index)
        .map_err(|e| format!("pack.json is unreadable ({e})"))?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("pack.json is unreadable ({e})"))?;
    let manifest: PackManifest =
        serde_json::from_slice(&text).map_err(|e| format!("pack.json is not valid: {e}"))?;
    if manifest.format > PACK_FORMAT {
        return Err(format!(
            "pack format {} is newer than this Jarvis reads",
            manifest.format
        ));
    }
    let mut names = HashSet::new();
    for model in &manifest.models {
        if !names.insert((&model.name, &model.version)) {
            return Err(format!("{} {} is listed twice", model.name, model.version));
        }
        let mut paths = HashSet::new();
        for file in &model.files {
            if !paths.insert(&file.path) {
                return Err(format!("'{}' is listed twice", file.path));
            }
        }
    }
    Ok(manifest)
}

enum ExtractError {
    Hostile(String),
    Registry(RegistryError),
}

fn extract_verified(
    source: &mut impl Read,
    file: &PackFile,
    staging: &Path,
    name: &str,
) -> Result<(), ExtractError> {
    let dest = file.path.under(staging);
    // The path was validated, so it stays inside staging; check anyway.
    if !dest.starts_with(staging) {
        return Err(ExtractError::Hostile(format!(
            "'{name}' escapes the staging folder"
        )));
    }
    if let Some(parent) = dest.parent() {
        jarvis_durable::create_private_dir_all("model staging folder", parent)
            .map_err(|e| ExtractError::Registry(e.into()))?;
    }
    let io = |e: std::io::Error| {
        ExtractError::Registry(file_error("write", "staged model file", &dest, e).into())
    };
    let mut out = File::create(&dest).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    // Read at most one byte more than declared: inflating past it is a bomb.
    let mut limited = source.take(file.size + 1);
    loop {
        let n = limited.read(&mut buf).map_err(|e| {
            ExtractError::Hostile(format!("'{name}' could not be decompressed ({e})"))
        })?;
        if n == 0 {
            break;
        }
        written += n as u64;
        if written > file.size {
            return Err(ExtractError::Hostile(format!(
                "'{name}' inflates past its declared {} bytes",
                file.size
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io)?;
    }
    if written != file.size {
        return Err(ExtractError::Hostile(format!(
            "'{name}' has {written} bytes, pack.json declares {}",
            file.size
        )));
    }
    let calculated = Sha256Digest::from_bytes(hasher.finalize().into());
    if calculated != file.sha256 {
        return Err(ExtractError::Registry(RegistryError::ChecksumMismatch {
            path: dest,
            expected: file.sha256,
            calculated,
        }));
    }
    out.sync_all().map_err(io)?;
    Ok(())
}
