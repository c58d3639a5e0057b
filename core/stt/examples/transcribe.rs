//! Transcribes a WAV from the command line, for trying a model by hand:
//! `transcribe ggml-model.bin speech.wav [full]` (`full`: always use the
//! 30-second window).

#![allow(clippy::unwrap_used, reason = "a tool")]

use jarvis_stt::{TranscribeOptions, Transcriber, decode_wav};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().collect();
    let model = Transcriber::load(std::path::Path::new(&args[1])).unwrap();
    let audio = decode_wav(&std::fs::read(&args[2]).unwrap()).unwrap();
    let options = TranscribeOptions {
        fit_audio_context: args.get(3).is_none_or(|a| a != "full"),
        ..Default::default()
    };
    let transcript = model.transcribe(&audio.samples, &options).unwrap();
    println!("{:?} in {:?}", transcript.text, transcript.elapsed);
}
