//! Offline model packs: a good pack installs; hostile packs are refused
//! with a clear reason, and nothing is written outside the staging folder.

use std::io::Write;
use std::path::Path;

use jarvis_download::Sha256Digest;
use jarvis_tests::{TestHome, pseudo_random_bytes};
use serde_json::{Value, json};

fn manifest(files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    // files: (model name, path, bytes); every model is version "1", role llm.
    let mut models: Vec<Value> = Vec::new();
    for (name, path, bytes) in files {
        let entry = json!({"path": path, "size": bytes.len(), "sha256": Sha256Digest::of(bytes).to_string()});
        match models.iter_mut().find(|m| m["name"] == *name) {
            Some(m) => m["files"].as_array_mut().unwrap().push(entry),
            None => {
                models.push(json!({"name": name, "version": "1", "role": "llm", "files": [entry]}))
            }
        }
    }
    serde_json::to_vec(&json!({"format": 1, "models": models})).unwrap()
}

fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

/// Rewrites the uncompressed size recorded for `name` in both the local and
/// the central header: a zip whose headers lie.
fn patch_uncompressed_size(zip: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    let mut i = 0;
    while i + 46 < zip.len() {
        let signature = u32::from_le_bytes(zip[i..i + 4].try_into().unwrap());
        let (size_at, name_len_at, name_at) = match signature {
            0x0403_4b50 => (22, 26, 30),
            0x0201_4b50 => (24, 28, 46),
            _ => {
                i += 1;
                continue;
            }
        };
        let name_len = usize::from(u16::from_le_bytes(
            zip[i + name_len_at..i + name_len_at + 2]
                .try_into()
                .unwrap(),
        ));
        if zip.get(i + name_at..i + name_at + name_len) == Some(name.as_bytes()) {
            zip[i + size_at..i + size_at + 4].copy_from_slice(&size.to_le_bytes());
            patched += 1;
        }
        i += 4;
    }
    assert_eq!(patched, 2, "both headers of {name} patched");
}

fn import(home: &TestHome, pack: &Path) -> jarvis_tests::Output {
    home.run(&["models", "import", pack.to_str().unwrap()])
}

/// Nothing installed, nothing escaped, no staging left behind.
fn assert_untouched(home: &TestHome) {
    let models = home.path("models");
    let installed: Vec<_> = std::fs::read_dir(&models)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                .filter(|n| n != ".staging")
                .collect()
        })
        .unwrap_or_default();
    assert!(
        installed.is_empty(),
        "nothing may be installed: {installed:?}"
    );
    for escape in [
        home.data_dir().join("escape.txt"),
        home.scratch().join("escape.txt"),
        "/tmp/escape.txt".into(),
    ] {
        assert!(!escape.exists(), "{} was written", escape.display());
    }
    let staged = models.join(".staging/m/1");
    assert!(!staged.exists(), "the staging folder is cleaned up");
}

#[test]
fn a_good_pack_installs_every_model_verified() {
    let home = TestHome::new();
    let a = pseudo_random_bytes(300_000, 41);
    let b = pseudo_random_bytes(1000, 42);
    let pack = home.scratch().join("good.zip");
    write_zip(
        &pack,
        &[
            (
                "pack.json",
                &manifest(&[
                    ("m", "weights.bin", &a),
                    ("m", "sub/config.json", &b),
                    ("n", "n.bin", &b),
                ]),
            ),
            ("m/1/weights.bin", &a),
            ("m/1/sub/config.json", &b),
            ("n/1/n.bin", &b),
        ],
    );
    let out = import(&home, &pack);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(home.path("models/m/1/weights.bin")).unwrap(),
        a
    );
    assert_eq!(
        std::fs::read(home.path("models/m/1/sub/config.json")).unwrap(),
        b
    );
    assert_eq!(
        std::fs::read_to_string(home.path("models/n/active"))
            .unwrap()
            .trim(),
        "1"
    );
    assert!(home.run(&["models", "verify"]).status.success());
}

#[test]
fn hostile_packs_are_refused_and_nothing_is_written() {
    let good = pseudo_random_bytes(5000, 43);
    let declared = manifest(&[("m", "w.bin", &good)]);
    type Case = (&'static str, Box<dyn Fn(&Path)>, &'static str);
    let declared2 = declared.clone();
    let declared3 = declared.clone();
    let declared4 = declared.clone();
    let declared5 = declared.clone();
    let declared6 = declared.clone();
    let good2 = good.clone();
    let good3 = good.clone();
    let good4 = good.clone();
    let good5 = good.clone();
    let cases: Vec<Case> = vec![
        (
            "dot-dot path",
            Box::new(move |p| {
                write_zip(
                    p,
                    &[
                        ("pack.json", &declared),
                        ("m/1/w.bin", &good),
                        ("../../escape.txt", b"x"),
                    ],
                )
            }),
            "not a safe path",
        ),
        (
            "absolute path",
            Box::new(move |p| {
                write_zip(
                    p,
                    &[
                        ("pack.json", &declared2),
                        ("m/1/w.bin", &good2),
                        ("/tmp/escape.txt", b"x"),
                    ],
                )
            }),
            "not a safe path",
        ),
        (
            "symlink",
            Box::new(move |p| {
                let mut zip = zip::ZipWriter::new(std::fs::File::create(p).unwrap());
                let options = zip::write::SimpleFileOptions::default();
                zip.start_file("pack.json", options).unwrap();
                zip.write_all(&declared3).unwrap();
                zip.add_symlink("m/1/w.bin", "/etc/passwd", options)
                    .unwrap();
                zip.finish().unwrap();
            }),
            "symbolic link",
        ),
        (
            "duplicate names",
            Box::new(move |p| {
                write_zip(
                    p,
                    &[
                        ("pack.json", &declared4),
                        ("m/1/w.bin", &good3),
                        ("m/1/x.bin", &good3),
                    ],
                );
                let mut bytes = std::fs::read(p).unwrap();
                let from = b"m/1/x.bin";
                let mut i = 0;
                while i + from.len() <= bytes.len() {
                    if &bytes[i..i + from.len()] == from {
                        bytes[i..i + from.len()].copy_from_slice(b"m/1/w.bin");
                    }
                    i += 1;
                }
                std::fs::write(p, bytes).unwrap();
            }),
            "a name appears twice",
        ),
        (
            "size differs from the declaration",
            Box::new(move |p| {
                let mut longer = good4.clone();
                longer.extend_from_slice(b"more");
                write_zip(p, &[("pack.json", &declared5), ("m/1/w.bin", &longer)]);
            }),
            "bytes in the zip but",
        ),
        (
            "undeclared entry",
            Box::new(move |p| {
                write_zip(
                    p,
                    &[
                        ("pack.json", &declared6),
                        ("m/1/w.bin", &good5),
                        ("m/1/extra.bin", b"x"),
                    ],
                )
            }),
            "not declared in pack.json",
        ),
        (
            "missing pack.json",
            Box::new(|p| write_zip(p, &[("m/1/w.bin", b"x")])),
            "no pack.json",
        ),
        (
            "declared file missing",
            Box::new(|p| {
                let bytes = pseudo_random_bytes(10, 44);
                write_zip(p, &[("pack.json", &manifest(&[("m", "w.bin", &bytes)]))]);
            }),
            "declared in pack.json but missing",
        ),
        (
            "content does not match its checksum",
            Box::new(|p| {
                let bytes = pseudo_random_bytes(5000, 45);
                let mut other = bytes.clone();
                other[10] ^= 1;
                write_zip(
                    p,
                    &[
                        ("pack.json", &manifest(&[("m", "w.bin", &bytes)])),
                        ("m/1/w.bin", &other),
                    ],
                );
            }),
            "checksum failed",
        ),
        (
            "zip bomb: an entry inflating past its header",
            Box::new(|p| {
                let zeros = vec![0u8; 20 * 1024 * 1024];
                let small = vec![0u8; 1000];
                write_zip(
                    p,
                    &[
                        ("pack.json", &manifest(&[("m", "w.bin", &small)])),
                        ("m/1/w.bin", &zeros),
                    ],
                );
                let mut bytes = std::fs::read(p).unwrap();
                patch_uncompressed_size(&mut bytes, "m/1/w.bin", 1000);
                std::fs::write(p, bytes).unwrap();
            }),
            "w.bin",
        ),
        (
            "zip bomb: headers and pack.json both claim 4 GiB for 1000 bytes",
            Box::new(huge_claim_pack),
            "pack.json declares 4294967285",
        ),
        (
            "not a zip at all",
            Box::new(|p| std::fs::write(p, b"PK\x03\x04 this is not really a zip file").unwrap()),
            "not a readable zip",
        ),
    ];
    for (what, build, reason) in cases {
        let home = TestHome::new();
        let pack = home.scratch().join("pack.zip");
        build(&pack);
        let out = import(&home, &pack);
        assert!(!out.status.success(), "{what}: accepted\n{out:?}");
        assert!(
            out.stderr.contains(reason),
            "{what}: expected {reason:?} in\n{}",
            out.stderr
        );
        assert_untouched(&home);
    }
}

fn huge_claim_pack(p: &Path) {
    let zeros = vec![0u8; 1000];
    let huge = u32::MAX - 10;
    let mut doc: Value = serde_json::from_slice(&manifest(&[("m", "w.bin", &zeros)])).unwrap();
    doc["models"][0]["files"][0]["size"] = json!(huge);
    write_zip(
        p,
        &[
            ("pack.json", &serde_json::to_vec(&doc).unwrap()),
            ("m/1/w.bin", &zeros),
        ],
    );
    let mut bytes = std::fs::read(p).unwrap();
    patch_uncompressed_size(&mut bytes, "m/1/w.bin", huge);
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn a_pack_claiming_more_than_the_free_space_is_refused_before_extracting() {
    let Some(disk) = jarvis_tests::Tmpfs::mount(8) else {
        eprintln!(
            "note: mounting a tmpfs needs root; the bounded-extraction case above still covers this pack"
        );
        return;
    };
    let home = TestHome::new();
    home.set_env("JARVIS_HOME", disk.path.join("SparkAI").to_str().unwrap());
    let pack = home.scratch().join("pack.zip");
    huge_claim_pack(&pack);
    let out = import(&home, &pack);
    assert!(!out.status.success());
    assert!(out.stderr.contains("are free"), "{}", out.stderr);
    assert!(!disk.path.join("SparkAI/models/m").exists());
    assert!(!disk.path.join("SparkAI/models/.staging/m/1").exists());
}
