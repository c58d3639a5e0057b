//! Converts a CTranslate2 whisper folder by hand:
//! `convert CT2_FOLDER OUT.bin [f32|f16|q8_0]`.

#![allow(clippy::unwrap_used, reason = "a tool")]

use jarvis_whisper_ggml::ggml::Storage;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let weights = match args.get(3).map(String::as_str) {
        Some("f32") => Storage::F32,
        Some("f16") => Storage::F16,
        _ => Storage::Q8_0,
    };
    let out =
        jarvis_whisper_ggml::convert_with(args[1].as_ref(), args[2].as_ref(), weights).unwrap();
    println!("{} bytes, {:?}", out.size, out.info.hparams);
}
