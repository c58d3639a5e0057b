//! Getting models into the store: pulling catalog models through the shared
//! downloader, and importing files, folders and packs offline. Every path
//! ends in [`ModelStore::install_staged`], after every byte was verified.

use std::path::{Path, PathBuf};

use jarvis_download::{DownloadError, Downloader, FileSpec, ProgressSink, Sha256Digest};
use serde::Serialize;

use crate::catalog::{CatalogFile, Conversion, ModelEntry, ModelRole};
use crate::names::{ModelName, ModelVersion, RelativePath};
use crate::store::ReceiptFile;
use crate::store::file_error;
use crate::{Catalog, ModelStore, RegistryError, pack};

/// What an install did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub name: ModelName,
    pub version: ModelVersion,
    pub path: PathBuf,
    /// It was installed before; nothing was fetched.
    pub already_installed: bool,
    /// Bytes received from sources by this call.
    pub bytes_fetched: u64,
    /// Bytes a previous, interrupted pull had already fetched.
    pub bytes_resumed: u64,
}

/// A model named on the command line instead of by the catalog.
#[derive(Debug, Clone)]
pub struct ExplicitModel {
    pub name: ModelName,
    pub version: ModelVersion,
    /// `None`: recognised from the contents ([`crate::detect::role_of`]).
    pub role: Option<ModelRole>,
}

impl ExplicitModel {
    /// The role given, or the one the contents at `path` show.
    fn role_for(&self, path: &Path) -> Result<ModelRole, RegistryError> {
        match self.role {
            Some(role) => Ok(role),
            None => crate::detect::role_of(path),
        }
    }
}

/// Installs into one store with one downloader.
#[derive(Debug)]
pub struct Installer<'a> {
    pub store: &'a ModelStore,
    pub downloader: &'a Downloader,
}

impl Installer<'_> {
    /// Downloads and installs `entry` (resuming any partial download).
    pub async fn pull(
        &self,
        entry: &ModelEntry,
        progress: &dyn ProgressSink,
    ) -> Result<InstallReport, RegistryError> {
        if self.store.is_installed(&entry.name, &entry.version) {
            return Ok(self.report(entry, true, 0, 0));
        }
        let (staging, _lock) = self.store.lock_staging(&entry.name, &entry.version)?;
        check_space_for(entry, &staging)?;
        let (mut fetched, mut resumed) = (0, 0);
        for file in &entry.files {
            let dest = file.path.under(&staging);
            if let Some(parent) = dest.parent() {
                jarvis_durable::create_private_dir_all("model staging folder", parent)?;
            }
            let outcome = self
                .downloader
                .fetch(&file.file_spec(entry), &dest, progress)
                .await?;
            fetched += outcome.bytes_fetched;
            resumed += outcome.resumed_from;
        }
        let origin = entry
            .files
            .first()
            .and_then(|f| f.sources.first())
            .cloned()
            .unwrap_or_default();
        self.finish(&staging, entry, &origin).await?;
        Ok(self.report(entry, false, fetched, resumed))
    }

    /// Imports a file, a folder or a model pack (`.zip`).
    pub async fn import(
        &self,
        catalog: &Catalog,
        path: &Path,
        explicit: Option<ExplicitModel>,
        progress: &dyn ProgressSink,
    ) -> Result<Vec<InstallReport>, RegistryError> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| file_error("read", "import source", path, e))?;
        if meta.is_dir() {
            let entries = match explicit {
                Some(model) => vec![entry_for_folder(path, model)?],
                None => catalog_matches_in_folder(catalog, path),
            };
            if entries.is_empty() {
                return Err(RegistryError::NoCatalogMatch {
                    path: path.to_owned(),
                });
            }
            let mut reports = Vec::new();
            for entry in entries {
                reports.push(
                    self.copy_in(&entry, path, |f| f.path.under(path), progress)
                        .await?,
                );
            }
            return Ok(reports);
        }
        if is_zip(path)? {
            let staged = pack::stage_pack(self.store, path)?;
            let mut reports = Vec::new();
            for (entry, staging, _lock) in staged {
                self.finish(&staging, &entry, &format!("pack {}", path.display()))
                    .await?;
                reports.push(self.report(&entry, false, entry.total_size(), 0));
            }
            return Ok(reports);
        }
        let size = meta.len();
        let sha256 = Sha256Digest::of_file(path)
            .map_err(|e| file_error("read", "import source", path, e))?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| RelativePath::parse(n).ok())
            .ok_or_else(|| RegistryError::NoCatalogMatch {
                path: path.to_owned(),
            })?;
        let entry = match explicit {
            Some(model) => ModelEntry {
                role: model.role_for(path)?,
                name: model.name,
                version: model.version,
                required: false,
                description: String::new(),
                convert: None,
                files: vec![CatalogFile {
                    path: file_name,
                    size,
                    sha256,
                    chunk_size: None,
                    chunk_sha256: Vec::new(),
                    sources: Vec::new(),
                }],
            },
            None => catalog
                .models
                .iter()
                .find(|m| {
                    m.files.len() == 1 && m.files[0].sha256 == sha256 && m.files[0].size == size
                })
                .cloned()
                .ok_or_else(|| RegistryError::NoCatalogMatch {
                    path: path.to_owned(),
                })?,
        };
        // The file keeps the name the catalog gives it, whatever it is
        // called where it came from.
        Ok(vec![
            self.copy_in(&entry, path, |_| path.to_owned(), progress)
                .await?,
        ])
    }

    /// Copies every file of `entry` from where `source_of` says it is into
    /// a staging folder, verified, and installs it.
    async fn copy_in(
        &self,
        entry: &ModelEntry,
        origin: &Path,
        source_of: impl Fn(&CatalogFile) -> PathBuf,
        progress: &dyn ProgressSink,
    ) -> Result<InstallReport, RegistryError> {
        if self.store.is_installed(&entry.name, &entry.version) {
            return Ok(self.report(entry, true, 0, 0));
        }
        let (staging, _lock) = self.store.lock_staging(&entry.name, &entry.version)?;
        check_space_for(entry, &staging)?;
        for file in &entry.files {
            self.copy_file(entry, file, &source_of(file), &staging, progress)
                .await?;
        }
        self.finish(&staging, entry, &format!("import {}", origin.display()))
            .await?;
        Ok(self.report(entry, false, entry.total_size(), 0))
    }

    /// Converts the staged sources when the entry asks for it, then
    /// installs the staging folder.
    async fn finish(
        &self,
        staging: &Path,
        entry: &ModelEntry,
        origin: &str,
    ) -> Result<(), RegistryError> {
        if entry.role == ModelRole::Llm {
            return self.finish_llm(staging, entry, origin).await;
        }
        let whisper = entry.convert == Some(Conversion::WhisperCt2ToGgml)
            || (entry.role == ModelRole::Stt && jarvis_whisper_ggml::is_ct2_whisper(staging));
        if !whisper {
            self.store.install_staged(staging, entry, origin)?;
            return Ok(());
        }
        let (folder, sources) = (staging.to_owned(), entry.files.clone());
        let converted = tokio::task::spawn_blocking(move || convert_whisper(&folder, &sources))
            .await
            .map_err(|e| RegistryError::Conversion {
                name: entry.name.to_string(),
                version: entry.version.to_string(),
                source: jarvis_whisper_ggml::ConvertError::Unsupported(e.to_string()),
            })?
            .map_err(|source| match source {
                ConvertOrFile::Convert(source) => RegistryError::Conversion {
                    name: entry.name.to_string(),
                    version: entry.version.to_string(),
                    source,
                },
                ConvertOrFile::File(e) => e.into(),
            })?;
        self.store.install_staged_files(
            staging,
            entry,
            vec![converted],
            &format!("{origin} (converted from CTranslate2 to ggml)"),
        )?;
        Ok(())
    }

    /// Copies through the downloader's `file://` path: same verification.
    async fn copy_file(
        &self,
        entry: &ModelEntry,
        file: &CatalogFile,
        source: &Path,
        staging: &Path,
        progress: &dyn ProgressSink,
    ) -> Result<(), RegistryError> {
        let meta = std::fs::symlink_metadata(source)
            .map_err(|e| file_error("read", "import source", source, e))?;
        if !meta.is_file() {
            return Err(RegistryError::WrongSize {
                path: source.to_owned(),
                expected: file.size,
                actual: 0,
            });
        }
        let absolute = std::path::absolute(source)
            .map_err(|e| file_error("read", "import source", source, e))?;
        let url = file_url(&absolute);
        let dest = file.path.under(staging);
        if let Some(parent) = dest.parent() {
            jarvis_durable::create_private_dir_all("model staging folder", parent)?;
        }
        let mut spec: FileSpec = file.file_spec(entry);
        spec.sources = vec![url];
        match self.downloader.fetch(&spec, &dest, progress).await {
            Ok(_) => Ok(()),
            Err(DownloadError::WrongSize {
                path,
                expected,
                actual,
                ..
            }) => Err(RegistryError::WrongSize {
                path,
                expected,
                actual,
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn report(
        &self,
        entry: &ModelEntry,
        already: bool,
        fetched: u64,
        resumed: u64,
    ) -> InstallReport {
        InstallReport {
            name: entry.name.clone(),
            version: entry.version.clone(),
            path: self.store.version_dir(&entry.name, &entry.version),
            already_installed: already,
            bytes_fetched: fetched,
            bytes_resumed: resumed,
        }
    }
}

impl Installer<'_> {
    /// A chat model: every GGUF must read as one; Q4_1 weights become Q8_0.
    async fn finish_llm(
        &self,
        staging: &Path,
        entry: &ModelEntry,
        origin: &str,
    ) -> Result<(), RegistryError> {
        let gguf_error = |source| RegistryError::Gguf {
            name: entry.name.to_string(),
            version: entry.version.to_string(),
            source,
        };
        let mut files = Vec::new();
        let mut requantized = false;
        for file in &entry.files {
            let path = file.path.under(staging);
            let is_gguf = file.path.as_str().ends_with(".gguf");
            let header = if is_gguf {
                let p = path.clone();
                Some(
                    tokio::task::spawn_blocking(move || jarvis_gguf::Gguf::open(&p))
                        .await
                        .map_err(|e| {
                            file_error("read", "staged model file", &path, std::io::Error::other(e))
                        })?
                        .map_err(gguf_error)?,
                )
            } else {
                None
            };
            if header.is_none_or(|h| h.q4_1_tensors() == 0) {
                files.push(ReceiptFile {
                    path: file.path.clone(),
                    size: file.size,
                    sha256: file.sha256,
                });
                continue;
            }
            let name = q8_0_name(file.path.as_str());
            let out = staging.join(&name);
            let (src, dst) = (path.clone(), out.clone());
            tokio::task::spawn_blocking(move || jarvis_gguf::requantize_q4_1_to_q8_0(&src, &dst))
                .await
                .map_err(|e| {
                    file_error(
                        "write",
                        "re-quantised model",
                        &out,
                        std::io::Error::other(e),
                    )
                })?
                .map_err(gguf_error)?;
            let size = std::fs::metadata(&out)
                .map_err(|e| file_error("read", "re-quantised model", &out, e))?
                .len();
            let sha256 = Sha256Digest::of_file(&out)
                .map_err(|e| file_error("read", "re-quantised model", &out, e))?;
            std::fs::remove_file(&path)
                .map_err(|e| file_error("remove", "model source", &path, e))?;
            let relative = RelativePath::parse(&name).map_err(|_| RegistryError::InvalidName {
                what: "file name",
                value: name.clone(),
            })?;
            tracing::info!(name = %entry.name, version = %entry.version, file = %name, "re-quantised Q4_1 to Q8_0");
            files.push(ReceiptFile {
                path: relative,
                size,
                sha256,
            });
            requantized = true;
        }
        let origin = if requantized {
            format!("{origin} (Q4_1 re-quantised to Q8_0)")
        } else {
            origin.to_owned()
        };
        self.store
            .install_staged_files(staging, entry, files, &origin)?;
        Ok(())
    }
}

/// `SmolLM2.Q4_1.gguf` → `SmolLM2.Q8_0.gguf`; a name without `Q4_1` gets
/// `.Q8_0` before `.gguf`.
fn q8_0_name(path: &str) -> String {
    for tag in ["Q4_1", "q4_1"] {
        if path.contains(tag) {
            return path.replacen(tag, "Q8_0", 1);
        }
    }
    match path.strip_suffix(".gguf") {
        Some(stem) => format!("{stem}.Q8_0.gguf"),
        None => format!("{path}.Q8_0.gguf"),
    }
}

enum ConvertOrFile {
    Convert(jarvis_whisper_ggml::ConvertError),
    File(jarvis_durable::FileError),
}

/// Converts the verified CTranslate2 sources in `staging` into
/// `ggml-model.bin` and removes the sources. Blocking.
fn convert_whisper(staging: &Path, sources: &[CatalogFile]) -> Result<ReceiptFile, ConvertOrFile> {
    let output = staging.join(jarvis_whisper_ggml::GGML_FILE_NAME);
    let converted =
        jarvis_whisper_ggml::convert(staging, &output).map_err(ConvertOrFile::Convert)?;
    let sha256 = Sha256Digest::of_file(&output)
        .map_err(|e| ConvertOrFile::File(file_error("read", "converted model", &output, e)))?;
    for source in sources {
        let path = source.path.under(staging);
        if path != output {
            std::fs::remove_file(&path)
                .map_err(|e| ConvertOrFile::File(file_error("remove", "model source", &path, e)))?;
        }
    }
    let path = RelativePath::parse(jarvis_whisper_ggml::GGML_FILE_NAME).map_err(|_| {
        ConvertOrFile::Convert(jarvis_whisper_ggml::ConvertError::Corrupt(
            "bad output name".into(),
        ))
    })?;
    Ok(ReceiptFile {
        path,
        size: converted.size,
        sha256,
    })
}

/// Refuses to start when the free space cannot hold what is still missing.
fn check_space_for(entry: &ModelEntry, staging: &Path) -> Result<(), RegistryError> {
    let mut needed = 0u64;
    for file in &entry.files {
        let dest = file.path.under(staging);
        if dest.is_file() {
            continue;
        }
        let (partial, _) = jarvis_download::partial_paths(&dest);
        let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        needed += file.size.saturating_sub(have);
    }
    let available = fs4::available_space(staging)
        .map_err(|e| file_error("check free space in", "model staging folder", staging, e))?;
    if available < needed {
        return Err(DownloadError::DiskFull {
            label: format!("{} {}", entry.name, entry.version),
            dir: staging.to_owned(),
            needed,
            available,
        }
        .into());
    }
    Ok(())
}

fn entry_for_folder(folder: &Path, model: ExplicitModel) -> Result<ModelEntry, RegistryError> {
    let mut files = Vec::new();
    collect_files(folder, folder, &mut files)?;
    // A CTranslate2 whisper folder becomes a ggml speech model.
    let whisper = jarvis_whisper_ggml::is_ct2_whisper(folder);
    if files.is_empty() {
        return Err(RegistryError::NoCatalogMatch {
            path: folder.to_owned(),
        });
    }
    Ok(ModelEntry {
        role: if whisper {
            ModelRole::Stt
        } else {
            model.role_for(folder)?
        },
        name: model.name,
        version: model.version,
        required: false,
        description: String::new(),
        convert: whisper.then_some(Conversion::WhisperCt2ToGgml),
        files,
    })
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<CatalogFile>) -> Result<(), RegistryError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| file_error("list", "import folder", dir, e))?;
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| file_error("read", "import source", &path, e))?;
        if kind.is_symlink() {
            continue; // never follow links out of the folder
        }
        if kind.is_dir() {
            collect_files(root, &path, out)?;
            continue;
        }
        let Some(relative) = path
            .strip_prefix(root)
            .ok()
            .and_then(|r| r.to_str())
            .map(|r| r.replace(std::path::MAIN_SEPARATOR, "/"))
            .and_then(|r| RelativePath::parse(&r).ok())
        else {
            continue;
        };
        let size = entry
            .metadata()
            .map_err(|e| file_error("read", "import source", &path, e))?
            .len();
        let sha256 = Sha256Digest::of_file(&path)
            .map_err(|e| file_error("read", "import source", &path, e))?;
        out.push(CatalogFile {
            path: relative,
            size,
            sha256,
            chunk_size: None,
            chunk_sha256: Vec::new(),
            sources: Vec::new(),
        });
    }
    Ok(())
}

/// Catalog models all of whose files are in `folder` with the right sizes.
fn catalog_matches_in_folder(catalog: &Catalog, folder: &Path) -> Vec<ModelEntry> {
    catalog
        .models
        .iter()
        .filter(|m| {
            m.files.iter().all(|f| {
                std::fs::symlink_metadata(f.path.under(folder))
                    .is_ok_and(|meta| meta.is_file() && meta.len() == f.size)
            })
        })
        .cloned()
        .collect()
}

fn is_zip(path: &Path) -> Result<bool, RegistryError> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file =
        std::fs::File::open(path).map_err(|e| file_error("open", "import source", path, e))?;
    let n = file
        .read(&mut magic)
        .map_err(|e| file_error("read", "import source", path, e))?;
    Ok(n == 4 && magic == *b"PK\x03\x04")
}

fn file_url(path: &Path) -> String {
    url::Url::from_file_path(path)
        .map_or_else(|()| format!("file://{}", path.display()), String::from)
}
