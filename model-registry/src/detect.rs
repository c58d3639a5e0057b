//! What a model is, recognised from its contents, so an import needs no
//! `--role`: a GGUF file is a chat model; a whisper.cpp ggml file or a
//! CTranslate2 (faster-whisper) whisper folder is a speech-to-text model.
//! Only the first bytes are read here; the full checks (GGUF header and
//! tensor table, the whole ggml file) run later, at install.

use std::io::Read as _;
use std::path::Path;

use crate::RegistryError;
use crate::catalog::ModelRole;
use crate::store::file_error;

/// The role of the model at `path` (a file or a folder).
pub fn role_of(path: &Path) -> Result<ModelRole, RegistryError> {
    let unrecognised = || RegistryError::UnrecognisedModel {
        path: path.to_owned(),
    };
    if path.is_dir() {
        if jarvis_whisper_ggml::is_ct2_whisper(path) {
            return Ok(ModelRole::Stt);
        }
        // A folder holding one model file, as downloaded by hand.
        let mut roles = std::fs::read_dir(path)
            .map_err(|e| file_error("list", "import folder", path, e))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| file_role(&e.path()));
        return match (roles.next(), roles.next()) {
            (Some(role), None) => Ok(role),
            _ => Err(unrecognised()),
        };
    }
    file_role(path).ok_or_else(unrecognised)
}

/// A file's role from its magic number, `None` when it is neither kind.
fn file_role(path: &Path) -> Option<ModelRole> {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut magic)
        .ok()?;
    if &magic == jarvis_gguf::MAGIC {
        Some(ModelRole::Llm)
    } else if u32::from_le_bytes(magic) == jarvis_whisper_ggml::ggml::MAGIC {
        Some(ModelRole::Stt)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn magic_numbers_name_the_role_and_anything_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("chat.bin");
        std::fs::write(&gguf, b"GGUF\x03\0\0\0rest").unwrap();
        assert_eq!(role_of(&gguf).unwrap(), ModelRole::Llm);
        let ggml = dir.path().join("ggml-model.bin");
        std::fs::write(&ggml, [0x6c, 0x6d, 0x67, 0x67, 1, 2, 3]).unwrap();
        assert_eq!(role_of(&ggml).unwrap(), ModelRole::Stt);
        for bytes in [&b"PK\x03\x04zip"[..], b"GG", b""] {
            let other = dir.path().join("other.bin");
            std::fs::write(&other, bytes).unwrap();
            assert!(matches!(
                role_of(&other),
                Err(RegistryError::UnrecognisedModel { .. })
            ));
        }
    }

    #[test]
    fn a_folder_with_one_model_file_has_that_role_and_two_are_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README.md"), "card").unwrap();
        std::fs::write(dir.path().join("model.gguf"), b"GGUF....").unwrap();
        assert_eq!(role_of(dir.path()).unwrap(), ModelRole::Llm);
        std::fs::write(dir.path().join("ggml.bin"), [0x6c, 0x6d, 0x67, 0x67]).unwrap();
        assert!(matches!(
            role_of(dir.path()),
            Err(RegistryError::UnrecognisedModel { .. })
        ));
    }
}
