//! Every fuzz input worth keeping, replayed on every test run (without
//! instrumentation): the seeds (each valid one must be accepted, so the
//! targets reach the code behind the format checks), the corpus
//! `scripts/fuzz` kept (`corpus/<target>/`), and every input that once
//! crashed a target (`crashes/<target>/`), which must now be answered.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};

fn inputs(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
}

#[test]
fn every_valid_seed_is_accepted() {
    for (name, target) in jarvis_fuzz::TARGETS {
        for seed in jarvis_fuzz::seeds::of(name) {
            let accepted = target(&seed.bytes);
            if seed.valid {
                assert!(accepted, "{name}: the seed '{}' was refused", seed.name);
            }
        }
    }
    // And the targets refuse what is plainly not their format.
    for (name, target) in jarvis_fuzz::TARGETS {
        assert!(!target(b"not a file of any kind"), "{name} accepted junk");
    }
}

#[test]
fn the_kept_corpus_and_every_crash_reproducer_are_answered() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for (name, target) in jarvis_fuzz::TARGETS {
        for kind in ["corpus", "crashes"] {
            for path in inputs(&root.join(kind).join(name)) {
                let bytes = std::fs::read(&path).unwrap();
                // A panic here fails the test and names the input.
                eprintln!("{}", path.display());
                target(&bytes);
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= jarvis_fuzz::TARGETS.len(),
        "expected a kept corpus for every target, replayed {replayed} inputs"
    );
}
