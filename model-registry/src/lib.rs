//! Models as data: never bundled, installed once into the user-data folder,
//! verified before anything loads them, kept across every app update.
//!
//! This crate owns:
//! - [`catalog`]: which models exist and what their files must be.
//! - [`store`]: `<data>/models/<name>/<version>/` with atomically replaced
//!   `active` and `previous` pointers, `verify`, `rollback` and `gc`.
//! - [`install`]: pulling a catalog model through the shared verifying
//!   downloader, and importing files, folders and model packs offline.
//!
//! Invariants:
//! - A version folder appears only by renaming a fully verified staging
//!   folder into place, with its receipt already inside; it is never
//!   modified afterwards.
//! - The `active` pointer names an installed version or does not exist; it
//!   is replaced by rename, so a crash leaves the old or the new pointer.
//! - `gc` removes only versions that are neither active nor previous, only
//!   folders that carry our receipt, and never anything in `.staging`
//!   (a download may resume from it).
//! - Imports never write outside their staging folder, whatever the input.
//! - A model whose catalog entry asks for a conversion (a CTranslate2
//!   whisper folder) is converted inside its staging folder after its
//!   sources were verified; the version installed holds only the converted
//!   file, whose hash goes into the receipt.
//! - A chat model's GGUF is read before it is installed (a file that is not
//!   a GGUF is refused), and Q4_1 tensors, which the CPU runtime has no
//!   fast kernels for, are re-quantised to Q8_0 in staging
//!   (`jarvis-gguf`); the receipt records it.

pub mod catalog;
pub mod detect;
pub mod install;
mod names;
pub mod pack;
pub mod store;

pub use catalog::{Catalog, CatalogFile, Conversion, ModelEntry, ModelRole};
pub use names::{ModelName, ModelVersion, RelativePath};
pub use store::{InstalledModel, InstalledVersion, ModelStore, Receipt};

use std::path::PathBuf;

/// The models folder's name inside the user-data folder.
pub const MODELS_DIR_NAME: &str = "models";

/// Everything that can go wrong with models.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("'{value}' is not a valid {what}")]
    InvalidName { what: &'static str, value: String },

    #[error("the model catalog is not valid: {0}")]
    InvalidCatalog(String),

    #[error("{name} is not in the model catalog")]
    UnknownModel { name: String },

    #[error("{name} {version} is not installed")]
    NotInstalled { name: String, version: String },

    #[error("{name} has no previous version to roll back to")]
    NoPrevious { name: String },

    #[error("{name} {version} is already installed")]
    AlreadyInstalled { name: String, version: String },

    #[error("another Jarvis process is installing {name} {version} right now")]
    Busy { name: String, version: String },

    #[error("'{path}' matches no model in the catalog")]
    NoCatalogMatch { path: PathBuf },

    #[error(
        "'{path}' is not a model Jarvis recognises: neither a GGUF chat model, a whisper.cpp ggml file nor a CTranslate2 whisper folder"
    )]
    UnrecognisedModel { path: PathBuf },

    #[error("the model pack '{path}' was refused: {reason}; nothing was installed")]
    HostilePack { path: PathBuf, reason: String },

    #[error("'{path}' is {actual} bytes, expected {expected}")]
    WrongSize {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error("checksum failed for '{path}', expected: '{expected}', calculated: '{calculated}'")]
    ChecksumMismatch {
        path: PathBuf,
        expected: jarvis_download::Sha256Digest,
        calculated: jarvis_download::Sha256Digest,
    },

    #[error("converting {name} {version} failed: {source}; nothing was installed")]
    Conversion {
        name: String,
        version: String,
        source: jarvis_whisper_ggml::ConvertError,
    },

    #[error("{name} {version} is not a usable chat model: {source}; nothing was installed")]
    Gguf {
        name: String,
        version: String,
        source: jarvis_gguf::GgufError,
    },

    #[error(transparent)]
    Download(#[from] jarvis_download::DownloadError),

    #[error(transparent)]
    File(#[from] jarvis_durable::FileError),
}
