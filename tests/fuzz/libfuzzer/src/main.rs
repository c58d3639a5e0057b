//! One libFuzzer binary for every target; `JARVIS_FUZZ_TARGET` names the
//! one to run (see `jarvis_fuzz::TARGETS`).
#![no_main]

use std::sync::OnceLock;

fn target() -> jarvis_fuzz::Target {
    static TARGET: OnceLock<jarvis_fuzz::Target> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let name = std::env::var("JARVIS_FUZZ_TARGET").unwrap_or_default();
        jarvis_fuzz::target(&name).unwrap_or_else(|| {
            let names: Vec<&str> = jarvis_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
            eprintln!("set JARVIS_FUZZ_TARGET to one of: {}", names.join(", "));
            std::process::exit(2)
        })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    target()(data);
});
