//! The model catalog: which models exist, what their files must be, and
//! where to get them. Plain serde types shared by the launcher, tools and
//! tests; its JSON schema is snapshot-tested.

use jarvis_download::{Chunks, FileSpec, Sha256Digest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::RegistryError;
use crate::names::{ModelName, ModelVersion, RelativePath};

/// The catalog format this build reads and writes.
pub const CATALOG_FORMAT: u32 = 1;

/// Largest file a catalog may list (defence against absurd sizes).
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024 * 1024;

/// The catalog shipped with the app; `JARVIS_CATALOG` replaces it.
pub const DEFAULT_CATALOG: &str = include_str!("../catalog/default.json");

/// A list of models. Several versions of one model may be listed; the last
/// listed is the newest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Format version of this document ([`CATALOG_FORMAT`]).
    pub format: u32,
    pub models: Vec<ModelEntry>,
}

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// A chat model (GGUF).
    Llm,
    /// A speech-to-text model.
    Stt,
}

impl std::fmt::Display for ModelRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Llm => "llm",
            Self::Stt => "stt",
        })
    }
}

/// One version of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: ModelName,
    pub version: ModelVersion,
    pub role: ModelRole,
    /// Jarvis needs it to work; `jarvis up` reports it when missing.
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The files are a source format that is converted on install; the
    /// installed version holds the converted file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convert: Option<Conversion>,
    pub files: Vec<CatalogFile>,
}

/// A conversion done on install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Conversion {
    /// A CTranslate2 (faster-whisper) whisper folder into whisper.cpp's
    /// ggml file (`ggml-model.bin`).
    WhisperCt2ToGgml,
}

/// One file of a model version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Path inside the version folder.
    pub path: RelativePath,
    pub size: u64,
    pub sha256: Sha256Digest,
    /// Size of the chunks `chunk_sha256` covers (the last may be shorter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u64>,
    /// SHA-256 of each chunk, so a corrupt chunk is refetched alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_sha256: Vec<Sha256Digest>,
    /// Where to get it: `https://`, `http://` or `file://` URLs, tried in
    /// order.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl Catalog {
    /// Parses and checks a catalog document.
    pub fn parse(bytes: &[u8]) -> Result<Self, RegistryError> {
        let catalog: Self = serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::InvalidCatalog(e.to_string()))?;
        catalog.check()?;
        Ok(catalog)
    }

    /// The built-in catalog.
    pub fn builtin() -> Result<Self, RegistryError> {
        Self::parse(DEFAULT_CATALOG.as_bytes())
    }

    fn check(&self) -> Result<(), RegistryError> {
        let invalid = |m: String| Err(RegistryError::InvalidCatalog(m));
        if self.format > CATALOG_FORMAT {
            return invalid(format!(
                "catalog format {} is newer than this Jarvis reads ({CATALOG_FORMAT}); update Jarvis",
                self.format
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for model in &self.models {
            if !seen.insert((&model.name, &model.version)) {
                return invalid(format!("{} {} is listed twice", model.name, model.version));
            }
            if model.files.is_empty() {
                return invalid(format!("{} {} lists no files", model.name, model.version));
            }
            let mut paths = std::collections::HashSet::new();
            for file in &model.files {
                if !paths.insert(&file.path) {
                    return invalid(format!(
                        "{} {} lists '{}' twice",
                        model.name, model.version, file.path
                    ));
                }
                if file.size > MAX_FILE_SIZE {
                    return invalid(format!(
                        "'{}' is larger than {MAX_FILE_SIZE} bytes",
                        file.path
                    ));
                }
                match file.chunk_size {
                    Some(0) => return invalid(format!("'{}' has a chunk size of 0", file.path)),
                    Some(chunk) => {
                        let expected = file.size.div_ceil(chunk);
                        if file.chunk_sha256.len() as u64 != expected {
                            return invalid(format!(
                                "'{}' lists {} chunk hashes, its size needs {expected}",
                                file.path,
                                file.chunk_sha256.len()
                            ));
                        }
                    }
                    None if !file.chunk_sha256.is_empty() => {
                        return invalid(format!(
                            "'{}' has chunk hashes but no chunk size",
                            file.path
                        ));
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// The newest listed version of `name`.
    pub fn latest(&self, name: &ModelName) -> Option<&ModelEntry> {
        self.models.iter().rev().find(|m| &m.name == name)
    }

    pub fn entry(&self, name: &ModelName, version: &ModelVersion) -> Option<&ModelEntry> {
        self.models
            .iter()
            .find(|m| &m.name == name && &m.version == version)
    }

    /// The newest version of every required model.
    pub fn required(&self) -> Vec<&ModelEntry> {
        let mut names: Vec<&ModelName> = Vec::new();
        for m in self.models.iter().filter(|m| m.required) {
            if !names.contains(&&m.name) {
                names.push(&m.name);
            }
        }
        names.into_iter().filter_map(|n| self.latest(n)).collect()
    }

    /// The newest version of every model, in catalog order.
    pub fn latest_of_each(&self) -> Vec<&ModelEntry> {
        let mut names: Vec<&ModelName> = Vec::new();
        for m in &self.models {
            if !names.contains(&&m.name) {
                names.push(&m.name);
            }
        }
        names.into_iter().filter_map(|n| self.latest(n)).collect()
    }

    /// JSON schema of the catalog format.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Catalog)).unwrap_or_default()
    }
}

impl ModelEntry {
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

impl CatalogFile {
    /// What the downloader needs to fetch this file.
    pub fn file_spec(&self, model: &ModelEntry) -> FileSpec {
        FileSpec {
            label: format!("{} {}: {}", model.name, model.version, self.path),
            sources: self.sources.clone(),
            size: self.size,
            sha256: self.sha256,
            chunks: self.chunk_size.map(|size| Chunks {
                size,
                sha256: self.chunk_sha256.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_builtin_catalog_parses_and_requires_an_llm() {
        let catalog = Catalog::builtin().unwrap();
        let required = catalog.required();
        assert!(required.iter().any(|m| m.role == ModelRole::Llm));
        for model in &catalog.models {
            for file in &model.files {
                assert!(!file.sources.is_empty(), "{} has no source", file.path);
            }
        }
    }

    #[test]
    fn the_catalog_json_schema_is_stable() {
        // Sorted: serde_json keeps insertion order when another crate in
        // the build enables its `preserve_order` feature.
        insta::with_settings!({ sort_maps => true }, {
            insta::assert_json_snapshot!("catalog_schema", Catalog::json_schema());
        });
    }

    #[test]
    fn inconsistent_catalogs_are_refused_with_a_reason() {
        let file = r#"{"path":"m.gguf","size":10,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#;
        let model = |files: &str| {
            format!(
                r#"{{"format":1,"models":[{{"name":"m","version":"1","role":"llm","files":[{files}]}}]}}"#
            )
        };
        assert!(Catalog::parse(model(file).as_bytes()).is_ok());
        let cases = [
            (model(&format!("{file},{file}")), "twice"),
            (model(""), "no files"),
            (
                model(&file.replace(r#""size":10"#, r#""size":10,"chunk_size":4"#)),
                "chunk hashes",
            ),
            (
                model(&file.replace("m.gguf", "../m.gguf")),
                "relative file path",
            ),
            (r#"{"format":99,"models":[]}"#.to_owned(), "newer"),
            (
                model(&file.replace(r#""size":10"#, r#""size":10,"bogus":1"#)),
                "unknown field",
            ),
        ];
        for (doc, needle) in cases {
            let err = Catalog::parse(doc.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
