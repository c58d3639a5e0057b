//! Models as data: never bundled, installed once into the user-data folder.
//!
//! Today this crate owns the store's layout ([`MODELS_DIR_NAME`]).
//!
//! It will own (issue "Models as data"): the catalog types, the store
//! `<data>/models/<name>/<version>/` with its atomically replaced `active`
//! pointer, the checksum-verified resumable downloader shared with app
//! updates, offline import of files, folders and model packs, and `gc`.

/// The models folder's name inside the user-data folder.
pub const MODELS_DIR_NAME: &str = "models";
