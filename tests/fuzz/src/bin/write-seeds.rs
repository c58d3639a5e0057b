//! `write-seeds OUT`: writes each target's seeds to `OUT/<target>/` and
//! prints the target names, one per line (for `scripts/fuzz`).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args_os().nth(1).unwrap_or_else(|| "seeds".into()));
    for (name, _) in jarvis_fuzz::TARGETS {
        let folder = out.join(name);
        std::fs::create_dir_all(&folder)?;
        for seed in jarvis_fuzz::seeds::of(name) {
            std::fs::write(folder.join(format!("seed-{}", seed.name)), &seed.bytes)?;
        }
        println!("{name}");
    }
    Ok(())
}
