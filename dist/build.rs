//! Records the target triple so `jarvis-dist bundle` defaults to it.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=JARVIS_DIST_TARGET={target}");
}
