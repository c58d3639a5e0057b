//! The brain against its peers, same machine, same files, same run:
//! - chat: time to first token and decode tokens/s of the core (through
//!   its streaming OpenAI endpoint) against llama.cpp (`llama-cpp-python`)
//!   on the same SmolLM2 GGUF with the same thread count; the core both as
//!   the baseline build and, where installed, the x86-64-v3 build;
//! - speech-to-text: the core on 5 s and 30 s espeak-ng clips against
//!   faster-whisper on the same whisper tiny.en (CTranslate2 folder).
//!
//! Targets: decode at least llama.cpp's speed, transcription at most
//! faster-whisper's time. Run with `scripts/bench` (release builds, peers
//! installed into the project's virtual environment).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jarvis_tests::brain::{install_models, python, speak, wait_engine};
use jarvis_tests::{Api, TestHome, bin_dir, smollm2_gguf, whisper_ct2_dir};
use serde_json::{Value, json};

const RUNS: usize = 3;
const MAX_TOKENS: usize = 128;
const PROMPT: &str = "Write a story about a dragon who learns to cook.";

fn threads() -> usize {
    std::env::var("JARVIS_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn main() {
    let threads = threads();
    println!(
        "brain benchmark: {threads} threads, {RUNS} runs each (median), binaries from {}",
        bin_dir().display()
    );
    let mut rows = Vec::new();

    // Chat, through the running Jarvis (each core build in turn).
    // Each core build present (scripts/build-release makes both).
    let mut variants: Vec<(&str, bool)> = Vec::new();
    if bin_dir().join("jarvis-core").is_file() {
        variants.push(("Jarvis core (baseline x86-64)", true));
    }
    if bin_dir().join("jarvis-core-x86-64-v3").is_file() {
        variants.push(("Jarvis core (x86-64-v3)", false));
    }
    assert!(
        !variants.is_empty(),
        "no release core: run scripts/build-release"
    );
    let clips = tempfile::tempdir().unwrap();
    let short = clip(clips.path(), "short.wav", 5.0);
    let long = clip(clips.path(), "long.wav", 30.0);
    // The same 30 s as a typical recorder makes it: 48 kHz stereo.
    let long48 = clips.path().join("long-48k-stereo.wav");
    jarvis_tests::brain::resample(&long, &long48, 48_000, 2, 16);
    let stt_jobs: [(&Path, bool); 4] = [
        (&short, false),
        (&long, false),
        (&long48, false),
        (&long, true),
    ];
    let mut stt_rows: Vec<(String, Vec<f64>)> = Vec::new();
    for (label, baseline) in variants {
        let home = TestHome::new();
        install_models(&home, true);
        home.set_env("JARVIS_THREADS", &threads.to_string());
        if baseline {
            home.set_env("JARVIS_CORE_VARIANT", "baseline");
        }
        let _jarvis = home.up();
        let api = home.api();
        wait_engine(&api, "llm", "ready");
        wait_engine(&api, "stt", "ready");
        stream_chat(&api); // warm-up
        let runs: Vec<(f64, f64)> = (0..RUNS).map(|_| stream_chat(&api)).collect();
        rows.push((
            label.to_owned(),
            median(runs.iter().map(|r| r.0)),
            median(runs.iter().map(|r| r.1)),
        ));
        transcribe(&api, &short, false); // warm-up
        let times = stt_jobs
            .iter()
            .map(|&(wav, timestamps)| median((0..RUNS).map(|_| transcribe(&api, wav, timestamps))))
            .collect();
        stt_rows.push((label.to_owned(), times));
    }
    let (ttft, tps) = llama_cpp(threads);
    rows.push(("llama.cpp (llama-cpp-python)".to_owned(), ttft, tps));
    // faster-whisper's own silence filter (Silero VAD, off by default) as
    // a second row, so skipping silence is compared with its peer too.
    stt_rows.push((
        "faster-whisper, vad_filter=True".to_owned(),
        faster_whisper(threads, &stt_jobs, true),
    ));
    stt_rows.push((
        "faster-whisper (CTranslate2)".to_owned(),
        faster_whisper(threads, &stt_jobs, false),
    ));

    println!();
    println!("SmolLM2-135M-Instruct Q4_1, greedy, up to {MAX_TOKENS} tokens, prompt {PROMPT:?}");
    println!("| engine | time to first token (ms) | decode tokens/s |");
    println!("|---|---:|---:|");
    for (name, ttft, tps) in &rows {
        println!("| {name} | {:.0} | {tps:.1} |", ttft * 1000.0);
    }
    println!();
    println!(
        "whisper tiny.en, espeak-ng speech, greedy; text only (response_format json; faster-whisper \
         without_timestamps=True) unless the column says timestamps (verbose_json; faster-whisper's default)"
    );
    println!(
        "| engine | 5 s clip (ms) | 30 s clip (ms) | 30 s, 48 kHz stereo (ms) | 30 s with timestamps (ms) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, times) in &stt_rows {
        let cells: Vec<String> = times.iter().map(|t| format!("{:.0}", t * 1000.0)).collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    audio_window(&short, &long, threads);
    activations(threads);

    let peer_tps = rows.last().unwrap().2;
    let best_tps = rows[..rows.len() - 1]
        .iter()
        .map(|r| r.2)
        .fold(0.0, f64::max);
    println!();
    println!(
        "decode: {:.2}× llama.cpp (target ≥ 1): {}",
        best_tps / peer_tps,
        if best_tps >= peer_tps {
            "met"
        } else {
            "NOT met"
        }
    );
    // The fastest core build against the faster of faster-whisper's two
    // settings, column by column.
    let (cores, peers) = stt_rows.split_at(stt_rows.len() - 2);
    let fastest = |rows: &[(String, Vec<f64>)], column: usize| {
        rows.iter()
            .map(|r| r.1[column])
            .fold(f64::INFINITY, f64::min)
    };
    let ratios: Vec<f64> = (0..stt_jobs.len())
        .map(|c| fastest(cores, c) / fastest(peers, c))
        .collect();
    println!(
        "speech-to-text: {} × faster-whisper's best time, column by column (target ≤ 1): {}",
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        if ratios.iter().all(|r| *r <= 1.0) {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// The chat model in this process (jarvis-llm directly, same installed
/// Q8_0 file as the core): activations in f32 (what Jarvis asks for on a
/// CPU) against mistralrs' own choice, which is f16 on a CPU.
fn activations(threads: usize) {
    let home = TestHome::new();
    install_models(&home, false);
    let model = jarvis_tests::brain::installed_llm_file(&home);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!();
    println!(
        "SmolLM2 in-process ({threads} rayon threads): activations in f32 vs mistralrs' choice"
    );
    println!("| activations | time to first token (ms) | decode tokens/s |");
    println!("|---|---:|---:|");
    for (label, activations) in [
        ("f32 (Jarvis)", jarvis_llm::Activations::F32),
        (
            "auto (mistralrs: f16 on a CPU)",
            jarvis_llm::Activations::Auto,
        ),
    ] {
        let runs: Vec<(f64, f64)> = runtime.block_on(async {
            let model = std::sync::Arc::new(
                jarvis_llm::ChatModel::load_with(&model, activations)
                    .await
                    .unwrap(),
            );
            let mut runs = Vec::new();
            for _ in 0..=RUNS {
                let mut events = model.generate(jarvis_llm::Request {
                    messages: vec![jarvis_llm::Message {
                        role: jarvis_llm::Role::User,
                        content: PROMPT.to_owned(),
                    }],
                    max_tokens: MAX_TOKENS,
                    temperature: None,
                    top_p: None,
                    stop: Vec::new(),
                    json_schema: None,
                });
                while let Some(event) = events.recv().await {
                    match event {
                        jarvis_llm::Event::Done { usage, .. } => {
                            runs.push((usage.time_to_first_token, usage.decode_tokens_per_sec))
                        }
                        jarvis_llm::Event::Failed(e) => panic!("{e}"),
                        jarvis_llm::Event::Delta(_) => {}
                    }
                }
            }
            runs.remove(0); // warm-up
            runs
        });
        println!(
            "| {label} | {:.0} | {:.1} |",
            median(runs.iter().map(|r| r.0)) * 1000.0,
            median(runs.iter().map(|r| r.1))
        );
    }
}

/// What each step of the speech-to-text path saves, in this process
/// (jarvis-stt directly) on the model the core uses: whisper's full
/// 30-second window, the window fitted to the audio, and silence left out.
fn audio_window(short: &Path, long: &Path, threads: usize) {
    let home = TestHome::new();
    install_models(&home, true);
    let model = home.path("models/whisper-tiny-en/q8_0-1/ggml-model.bin");
    let transcriber = jarvis_stt::Transcriber::load(&model).unwrap();
    println!();
    println!("whisper tiny.en in-process: full window, fitted window, silence left out");
    println!("| clip | window | silence | time (ms) | transcript |");
    println!("|---|---|---|---:|---|");
    for (clip_label, clip) in [("5 s", short), ("30 s", long)] {
        let audio = jarvis_stt::decode_wav(&std::fs::read(clip).unwrap()).unwrap();
        for (label, fit, skip) in [
            ("full 30 s", false, false),
            ("fitted", true, false),
            ("fitted", true, true),
        ] {
            let options = jarvis_stt::TranscribeOptions {
                threads,
                fit_audio_context: fit,
                skip_silence: skip,
                ..Default::default()
            };
            transcriber.transcribe(&audio.samples, &options).unwrap(); // warm-up
            let runs: Vec<(f64, String)> = (0..RUNS)
                .map(|_| {
                    let t = transcriber.transcribe(&audio.samples, &options).unwrap();
                    (t.elapsed.as_secs_f64(), t.text)
                })
                .collect();
            let text = runs[0].1.clone();
            println!(
                "| {clip_label} | {label} | {} | {:.0} | {text} |",
                if skip { "left out" } else { "kept" },
                median(runs.iter().map(|r| r.0)) * 1000.0
            );
        }
    }
}

/// One streamed chat: (seconds to the first token, decode tokens/s).
fn stream_chat(api: &Api) -> (f64, f64) {
    let started = Instant::now();
    let response = api
        .request(reqwest::Method::POST, "/v1/chat/completions")
        .timeout(Duration::from_secs(600))
        .json(&json!({
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": true,
            "stream_options": {"include_usage": true},
        }))
        .send()
        .unwrap();
    assert!(response.status().is_success());
    let (mut first, mut last, mut tokens) = (None, started.elapsed(), 0u64);
    for line in BufReader::new(response).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if chunk["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
        {
            first.get_or_insert(started.elapsed());
            last = started.elapsed();
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            tokens = n;
        }
    }
    let first = first.expect("no token streamed");
    let decode = (last - first).as_secs_f64();
    (
        first.as_secs_f64(),
        tokens.saturating_sub(1) as f64 / decode,
    )
}

fn transcribe(api: &Api, wav: &Path, timestamps: bool) -> f64 {
    let form = reqwest::blocking::multipart::Form::new()
        .file("file", wav)
        .unwrap()
        .text("model", "whisper-tiny-en")
        .text(
            "response_format",
            if timestamps { "verbose_json" } else { "json" },
        );
    let started = Instant::now();
    let response = api
        .request(reqwest::Method::POST, "/v1/audio/transcriptions")
        .timeout(Duration::from_secs(600))
        .multipart(form)
        .send()
        .unwrap();
    assert!(response.status().is_success());
    let _: Value = response.json().unwrap();
    started.elapsed().as_secs_f64()
}

/// espeak-ng speech cut or padded to exactly `secs`, 16 kHz mono.
fn clip(dir: &Path, name: &str, secs: f64) -> std::path::PathBuf {
    let text = "Jarvis is a local assistant. It listens, it answers, and it keeps your data on your own machine. \
                The quick brown fox jumps over the lazy dog. Models are data, never bundled, and updates never erase memory. \
                A crash, a full disk or a killed process at any instant must leave an app that still starts.";
    let raw = speak(dir, &format!("raw-{name}"), text);
    let out = dir.join(name);
    let secs = secs.to_string();
    jarvis_tests::brain::sox(&[
        &raw, &"-r", &"16000", &"-c", &"1", &"-b", &"16", &out, &"trim", &"0", &secs, &"pad", &"0",
        &secs, &"trim", &"0", &secs,
    ]);
    out
}

fn run_python(script: &str, args: &[&str]) -> Value {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("the project's Python is missing: run scripts/bench");
    assert!(
        output.status.success(),
        "peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn llama_cpp(threads: usize) -> (f64, f64) {
    let script = r#"
import json, sys, time, statistics
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_threads=int(sys.argv[2]), n_threads_batch=int(sys.argv[2]), n_ctx=2048, verbose=False)
msgs = [{"role": "user", "content": sys.argv[3]}]
def run():
    llm.reset()  # no reuse of the previous run's prompt: a cold first token, as for the core
    start = time.perf_counter(); first = None; last = None; n = 0
    for chunk in llm.create_chat_completion(messages=msgs, max_tokens=int(sys.argv[4]), temperature=0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            now = time.perf_counter(); first = first or now; last = now; n += 1
    return first - start, (n - 1) / (last - first)
run()
runs = [run() for _ in range(int(sys.argv[5]))]
print(json.dumps([statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)]))
"#;
    let out = run_python(
        script,
        &[
            smollm2_gguf().to_str().unwrap(),
            &threads.to_string(),
            PROMPT,
            &MAX_TOKENS.to_string(),
            &RUNS.to_string(),
        ],
    );
    (out[0].as_f64().unwrap(), out[1].as_f64().unwrap())
}

/// faster-whisper on each (clip, timestamps) job: median seconds.
fn faster_whisper(threads: usize, jobs: &[(&Path, bool)], vad: bool) -> Vec<f64> {
    let script = r#"
import json, sys, time, statistics
from faster_whisper import WhisperModel
model = WhisperModel(sys.argv[1], device="cpu", cpu_threads=int(sys.argv[2]))
runs, vad, jobs = int(sys.argv[3]), sys.argv[4] == "1", json.loads(sys.argv[5])
def run(path, timestamps):
    start = time.perf_counter()
    segments, _ = model.transcribe(path, beam_size=1, language="en", vad_filter=vad,
                                   without_timestamps=not timestamps)
    " ".join(s.text for s in segments)
    return time.perf_counter() - start
run(jobs[0][0], jobs[0][1])
print(json.dumps([statistics.median(run(p, t) for _ in range(runs)) for p, t in jobs]))
"#;
    let jobs: Vec<(&str, bool)> = jobs
        .iter()
        .map(|(path, timestamps)| (path.to_str().unwrap(), *timestamps))
        .collect();
    let out = run_python(
        script,
        &[
            whisper_ct2_dir().to_str().unwrap(),
            &threads.to_string(),
            &RUNS.to_string(),
            if vad { "1" } else { "0" },
            &serde_json::to_string(&jobs).unwrap(),
        ],
    );
    out.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
