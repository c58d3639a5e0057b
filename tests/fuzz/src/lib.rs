//! Fuzz targets: every parser in Jarvis that reads bytes it cannot trust,
//! each behind a function that takes arbitrary bytes. A target must return
//! for every input: no panic, no hang, no allocation past the bound
//! `scripts/fuzz` sets. It returns whether the input was accepted, so the
//! regression test can check that the seeds reach the deep code.
//!
//! The instrumented driver is `tests/fuzz/libfuzzer` (libFuzzer, stable
//! toolchain), run by `scripts/fuzz`. `tests/corpus.rs` replays the seeds,
//! the committed corpus and every crash reproducer on every test run.

#![allow(
    clippy::expect_used,
    reason = "the fuzz harness's own set-up fails loudly; targets never do"
)]

pub mod seeds;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use jarvis_dist::delta::DeltaKind;

/// A target: arbitrary bytes in, whether the parser accepted them out.
pub type Target = fn(&[u8]) -> bool;

/// Every target by name.
pub const TARGETS: &[(&str, Target)] = &[
    ("release", release),
    ("delta", delta),
    ("catalog", catalog),
    ("pack", pack),
    ("gguf", gguf),
    ("ggml", ggml),
    ("ct2", ct2),
    ("wav", wav),
    ("form", form),
];

pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The most a patched file may become in the `delta` target.
pub const DELTA_MAX_OUTPUT: u64 = 1 << 20;

/// The boundary of the `form` target's multipart bodies.
pub const FORM_BOUNDARY: &str = "jarvis-fuzz-boundary";

/// The key the `release` seeds are signed with (a fixed test key).
pub fn release_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// A folder for the targets that read files: in memory where possible,
/// one per process, emptied as the targets go.
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let builder = tempfile::Builder::new()
            .prefix("jarvis-fuzz-")
            .tempdir_in(shm);
        builder
            .or_else(|_| tempfile::tempdir())
            .expect("a scratch folder for the fuzz targets")
    })
    .path()
}

/// Writes `data` to a scratch file named `name` and returns its path.
fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, data).expect("writing a scratch file");
    path
}

/// The signed release manifest: `<signature hex>\n<manifest bytes>`. The
/// manifest parser runs whatever the signature says, as it would behind a
/// key that signed something broken; the signature check (ed25519
/// arithmetic, the slow part) runs for manifests that parse.
pub fn release(data: &[u8]) -> bool {
    let (signature, manifest) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let parsed = jarvis_dist::manifest::Release::parse_verified(manifest)
        .map(|release| release.total_size())
        .is_ok();
    static TRUSTED: OnceLock<[ed25519_dalek::VerifyingKey; 1]> = OnceLock::new();
    let trusted = TRUSTED.get_or_init(|| [release_key().verifying_key()]);
    parsed
        && jarvis_dist::signing::verify(manifest, &String::from_utf8_lossy(signature), trusted)
            .is_ok()
}

/// An update patch: byte 0 picks the kind, bytes 1–2 (little-endian) the
/// length of the old file that follows, the rest is the patch.
pub fn delta(data: &[u8]) -> bool {
    let [selector, low, high, rest @ ..] = data else {
        return false;
    };
    let kind = if selector % 2 == 0 {
        DeltaKind::BsdiffZstd
    } else {
        DeltaKind::ZstdPatchFrom
    };
    let old_len = usize::from(u16::from_le_bytes([*low, *high])).min(rest.len());
    let (old, patch) = rest.split_at(old_len);
    jarvis_dist::delta::apply(kind, old, patch, DELTA_MAX_OUTPUT)
        .is_ok_and(|new| new.len() as u64 <= DELTA_MAX_OUTPUT)
}

/// The model catalog (`JARVIS_CATALOG`, or fetched).
pub fn catalog(data: &[u8]) -> bool {
    jarvis_model_registry::Catalog::parse(data)
        .map(|catalog| {
            for entry in catalog.latest_of_each() {
                let _ = entry.total_size();
                for file in &entry.files {
                    let _ = file.file_spec(entry);
                }
            }
        })
        .is_ok()
}

/// A model pack (zip) staged into an empty store.
pub fn pack(data: &[u8]) -> bool {
    let zip = scratch_file("pack.zip", data);
    let root = scratch().join("store");
    let store = jarvis_model_registry::ModelStore::new(root.clone());
    let accepted = jarvis_model_registry::pack::stage_pack(&store, &zip).is_ok();
    let _ = std::fs::remove_dir_all(&root);
    accepted
}

/// A GGUF model: header and tensor table, the role detection that sniffs
/// it, and the Q4_1 → Q8_0 rewrite an import may run.
pub fn gguf(data: &[u8]) -> bool {
    let path = scratch_file("model.gguf", data);
    let _ = jarvis_model_registry::detect::role_of(&path);
    let Ok(model) = jarvis_gguf::Gguf::open(&path) else {
        return false;
    };
    if model.q4_1_tensors() > 0 {
        let out = scratch().join("requantized.gguf");
        let _ = jarvis_gguf::requantize_q4_1_to_q8_0(&path, &out);
        let _ = std::fs::remove_file(out);
    }
    true
}

/// A whisper ggml model, checked completely before whisper.cpp reads it.
pub fn ggml(data: &[u8]) -> bool {
    jarvis_whisper_ggml::inspect(&scratch_file("model.ggml", data)).is_ok()
}

/// A CTranslate2 whisper `model.bin` (with a small vocabulary beside it),
/// converted to ggml.
pub fn ct2(data: &[u8]) -> bool {
    let folder = scratch().join("ct2");
    std::fs::create_dir_all(&folder).expect("a scratch folder");
    std::fs::write(folder.join("vocabulary.txt"), seeds::CT2_VOCABULARY)
        .expect("writing a scratch file");
    std::fs::write(folder.join("model.bin"), data).expect("writing a scratch file");
    let out = scratch().join("ct2.ggml");
    let converted = jarvis_whisper_ggml::convert(&folder, &out).is_ok();
    let _ = std::fs::remove_file(out);
    converted
}

/// A WAV upload.
pub fn wav(data: &[u8]) -> bool {
    jarvis_audio::decode_wav(data).is_ok()
}

/// A multipart transcription form, as the core's route reads it.
pub fn form(data: &[u8]) -> bool {
    use axum::extract::{FromRequest, Multipart};
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    });
    let request = axum::http::Request::builder()
        .method("POST")
        .header(
            axum::http::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={FORM_BOUNDARY}"),
        )
        .body(axum::body::Body::from(data.to_vec()))
        .expect("a valid request");
    runtime.block_on(async {
        let Ok(mut multipart) = Multipart::from_request(request, &()).await else {
            return false;
        };
        jarvis_audio::read_form(&mut multipart)
            .await
            .is_ok_and(|form| form.file.is_some())
    })
}
