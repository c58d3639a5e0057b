//! The brain with the real models from the registry packages: chat through
//! mistralrs, speech-to-text through whisper.cpp, memory in Redis, the
//! WebSocket and the OpenAI-compatible API, driven through `jarvis up`.

use std::time::Duration;

use jarvis_tests::brain::{
    Socket, install_models, python, resample, sox, speak, transcription, wait_engine,
};
use jarvis_tests::{TestHome, wait_for};
use reqwest::Method;
use serde_json::{Value, json};

/// SmolLM2-135M answers this one right at greedy (so does llama.cpp on
/// the same file); the bare question makes it ramble in French.
const FRANCE: &str = "What is the capital of France? Answer in one sentence.";

/// A running Jarvis with both models installed and speech-to-text loaded.
fn up_with_speech_ready() -> (TestHome, jarvis_tests::Launcher, jarvis_tests::Api) {
    let home = TestHome::new();
    install_models(&home, true);
    let jarvis = home.up();
    let api = home.api();
    wait_engine(&api, "stt", "ready");
    (home, jarvis, api)
}

fn slow(request: reqwest::blocking::RequestBuilder) -> reqwest::blocking::Response {
    request.timeout(Duration::from_secs(180)).send().unwrap()
}

#[test]
fn greedy_chat_answers_paris_and_a_conversation_continues_after_a_core_restart() {
    let home = TestHome::new();
    install_models(&home, false);
    let mut jarvis = home.up();
    let api = home.api();
    let engine = wait_engine(&api, "llm", "ready");
    assert_eq!(engine["model"]["name"], "smollm2-135m-instruct");

    let conversation = api.create_conversation();
    let mut socket = Socket::connect(&api);
    assert_eq!(socket.next_message()["type"], "hello");
    let (answer, done) = socket.chat("t1", &conversation, FRANCE);
    assert_eq!(done["type"], "done", "{done}");
    assert!(answer.contains("Paris"), "{answer}");
    let usage = &done["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{usage}");
    let first_prompt = usage["prompt_tokens"].as_u64().unwrap();

    // Both messages are in memory, in order, with token counts.
    let stored: Value = api
        .request(Method::GET, &format!("/v1/conversations/{conversation}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], answer.as_str());
    assert!(messages[0]["tokens"].as_u64().unwrap() > 0);
    assert_eq!(done["message_index"], 1);

    // Kill the core: the launcher restarts it, and the conversation goes
    // on from Redis: the second turn's prompt holds the first exchange.
    let core_pid = home.instance().unwrap().core.pid;
    jarvis_tests::signal(core_pid, jarvis_tests::Signal::Kill);
    wait_for(Duration::from_secs(60), "a restarted core", || {
        home.instance()
            .filter(|i| i.core.pid != core_pid && i.core.restarts >= 1)
    });
    let api = home.api();
    wait_engine(&api, "llm", "ready");
    let mut socket = Socket::connect(&api);
    let (_, done) = socket.chat("t2", &conversation, FRANCE);
    assert_eq!(done["type"], "done", "{done}");
    let second_prompt = done["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        second_prompt > first_prompt + 10,
        "the history was not in the prompt: {first_prompt} then {second_prompt}"
    );
    assert_eq!(api.messages(&conversation).unwrap().len(), 4);

    // Issue 16, finding 12: a message longer than the whole context is
    // refused before it is stored (kept, it failed every later turn), and
    // a turn's temperature is checked like the settings' are.
    let huge = "The quick brown fox jumps over the lazy dog. ".repeat(4000);
    let (_, refused) = socket.chat("t3", &conversation, &huge);
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["error"]["code"], "context_length_exceeded",
        "{refused}"
    );
    socket.send(&json!({
        "type": "chat",
        "turn_id": "t4",
        "conversation_id": conversation,
        "content": "Hello",
        "temperature": 7.0,
    }));
    let (_, refused) = socket.collect("t4");
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    assert_eq!(api.messages(&conversation).unwrap().len(), 4);
    let (_, done) = socket.chat("t5", &conversation, FRANCE);
    assert_eq!(done["type"], "done", "{done}");
    assert_eq!(api.messages(&conversation).unwrap().len(), 6);
    assert!(jarvis.try_exit().is_none());
}

#[test]
fn four_concurrent_chats_complete_and_a_cancelled_turn_keeps_its_partial_answer() {
    let home = TestHome::new();
    install_models(&home, false);
    let _jarvis = home.up();
    let api = home.api();
    wait_engine(&api, "llm", "ready");

    // A client that sends a long turn and then never reads its socket
    // must not hold up anyone else.
    let stalled_conversation = api.create_conversation();
    let mut stalled = Socket::connect(&api);
    stalled.send(&json!({
        "type": "chat", "turn_id": "stalled", "conversation_id": stalled_conversation,
        "content": "Write a long story about a lighthouse keeper.", "max_tokens": 300,
    }));

    // Two sockets, two conversations each, all four at once.
    let conversations: Vec<String> = (0..4).map(|_| api.create_conversation()).collect();
    let mut sockets = [Socket::connect(&api), Socket::connect(&api)];
    let questions = [
        FRANCE,
        "Name a color.",
        "What is two plus two?",
        "Say hello.",
    ];
    for (i, conversation) in conversations.iter().enumerate() {
        sockets[i % 2].send(&json!({
            "type": "chat", "turn_id": format!("c{i}"), "conversation_id": conversation,
            "content": questions[i], "max_tokens": 32,
        }));
    }
    let mut ended = sockets[0].collect_all(&["c0", "c2"]);
    ended.extend(sockets[1].collect_all(&["c1", "c3"]));
    for (i, conversation) in conversations.iter().enumerate() {
        let (text, done) = &ended[&format!("c{i}")];
        assert_eq!(done["type"], "done", "turn {i}: {done}");
        assert!(!text.trim().is_empty(), "turn {i} said nothing");
        assert_eq!(api.messages(conversation).unwrap().len(), 2, "turn {i}");
    }

    // The stalled client's turn went on (it is generating or done), unread.
    drop(stalled);

    // Cancel a long answer after its first token.
    let conversation = api.create_conversation();
    let socket = &mut sockets[0];
    socket.send(&json!({
        "type": "chat", "turn_id": "long", "conversation_id": conversation,
        "content": "Write a long story about a dragon and a knight.", "max_tokens": 400,
    }));
    loop {
        let message = socket.next_message();
        if message["type"] == "token" && message["turn_id"] == "long" {
            break;
        }
    }
    socket.send(&json!({"type": "cancel", "turn_id": "long"}));
    let (_, end) = socket.collect("long");
    assert_eq!(end["type"], "cancelled", "{end}");
    let messages = api.messages(&conversation).unwrap();
    assert_eq!(messages.len(), 2, "the partial answer is kept");
    assert!(!messages[1].is_empty());

    // Bad client messages get errors; the socket stays usable.
    socket
        .send(&json!({"type": "chat", "turn_id": "x", "conversation_id": "nope", "content": "hi"}));
    let (_, error) = socket.collect("x");
    assert_eq!(error["error"]["code"], "not_found");
    socket.send(&json!({"type": "dance"}));
    assert_eq!(socket.next_message()["error"]["code"], "bad_request");
    let (_, done) = socket.chat("after", &conversation, "Say hello.");
    assert_eq!(done["type"], "done");
}

#[test]
fn espeak_speech_is_transcribed_at_any_rate_and_channel_count() {
    let (home, _jarvis, api) = up_with_speech_ready();

    let spoken = "Please open the door and turn on the lights.";
    let original = speak(&home.scratch(), "door.wav", spoken);
    let stereo = home.scratch().join("door-44k-stereo.wav");
    resample(&original, &stereo, 44_100, 2, 16);
    let hi_res = home.scratch().join("door-48k-24bit.wav");
    resample(&original, &hi_res, 48_000, 1, 24);
    let text_of = |wav: &std::path::Path| {
        let response = transcription(&api, wav, "json");
        assert_eq!(response.status(), 200, "{}", wav.display());
        response.json::<Value>().unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = text_of(&original);
    for wav in [&original, &stereo, &hi_res] {
        let text = text_of(wav).to_lowercase();
        for word in ["please", "open", "door", "turn", "lights"] {
            assert!(
                text.contains(word),
                "'{word}' missing from {text:?} ({})",
                wav.display()
            );
        }
    }
    // After other rates and a run with timestamps, the same upload gets
    // exactly the same text as the first time.
    let timed = transcribe_verbose(&api, &original);
    assert!(!timed["segments"].as_array().unwrap().is_empty(), "{timed}");
    assert_eq!(text_of(&original), first);

    // Wrong formats and oversize uploads get clear 4xx errors.
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            b"ID3\x04\0\0\0\0\0\0not really an mp3".to_vec(),
            415,
            "unsupported_audio_format",
        ),
        (wav_header_only(), 400, "audio_empty"),
    ];
    for (bytes, status, code) in cases {
        let form = reqwest::blocking::multipart::Form::new()
            .part(
                "file",
                reqwest::blocking::multipart::Part::bytes(bytes).file_name("a.wav"),
            )
            .text("model", "whisper-tiny-en");
        let response = slow(
            api.request(Method::POST, "/v1/audio/transcriptions")
                .multipart(form),
        );
        assert_eq!(response.status(), status, "{code}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let response = slow(
        api.request(Method::POST, "/v1/audio/transcriptions")
            .multipart(reqwest::blocking::multipart::Form::new().text("model", "whisper-tiny-en")),
    );
    assert_eq!(response.status(), 400);

    // An upload over 25 MB is refused as soon as its size is declared,
    // before the client has sent it (as curl would see it).
    let response = raw_post_headers(&api, "/v1/audio/transcriptions", 26 * 1024 * 1024);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("payload_too_large"), "{response}");
}

/// Silence before, between and after speech is left out of what whisper
/// encodes, yet the words are all there and the segment times still refer
/// to the upload; audio with no speech at all is an empty transcript.
#[test]
fn silence_is_skipped_and_timestamps_still_match_the_upload() {
    let (home, _jarvis, api) = up_with_speech_ready();

    let scratch = home.scratch();
    let first = speak(&scratch, "first.wav", "Please open the door.");
    let second = speak(&scratch, "second.wav", "Turn on the lights in the kitchen.");
    let first_secs = wav_secs(&first);
    // 3 s of silence, the first sentence, 4 s, the second, then 6 s.
    let padded = scratch.join("first-padded.wav");
    sox(&[&first, &padded, &"pad", &"3", &"4"]);
    let pauses = scratch.join("pauses.wav");
    sox(&[&padded, &second, &pauses, &"pad", &"0", &"6"]);
    let total_secs = wav_secs(&pauses);

    let body = transcribe_verbose(&api, &pauses);
    let text = body["text"].as_str().unwrap().to_lowercase();
    for word in ["open", "door", "lights", "kitchen"] {
        assert!(text.contains(word), "'{word}' missing from {text:?}");
    }
    assert!(
        (body["duration"].as_f64().unwrap() - total_secs).abs() < 0.01,
        "{body}"
    );
    let segments = body["segments"].as_array().unwrap();
    let start = segments[0]["start"].as_f64().unwrap();
    let end = segments.last().unwrap()["end"].as_f64().unwrap();
    // whisper's times are coarse (and its first segment may begin a
    // little early), but on the compacted clock the speech would start
    // near 0 s and end about 7 s before the upload does.
    assert!(start >= 2.0, "first segment starts at {start} s: {body}");
    assert!(
        end >= 3.0 + first_secs + 4.0 && end <= total_secs - 4.0,
        "last segment ends at {end} s of {total_secs}: {body}"
    );

    // Five seconds of silence: nothing said, nothing invented.
    let silence = scratch.join("silence.wav");
    sox(&[
        &"-n", &"-r", &"16000", &"-c", &"1", &"-b", &"16", &silence, &"trim", &"0", &"5",
    ]);
    let body = transcribe_verbose(&api, &silence);
    assert_eq!(body["text"], "", "{body}");
    assert_eq!(body["segments"], json!([]), "{body}");
}

/// Speech longer than whisper's 30-second window, with timestamps: each
/// window after the first starts at the last timestamp whisper decoded
/// (with a window fitted to what is left), so every sentence is there
/// once, in order, and the segments follow each other on the upload's
/// clock.
#[test]
fn speech_longer_than_one_window_keeps_every_sentence_once_with_ordered_times() {
    let (home, _jarvis, api) = up_with_speech_ready();

    let sentences = [
        (
            "apple",
            "The first sentence is about an apple on the table.",
        ),
        (
            "garden",
            "The second sentence is about a garden full of flowers.",
        ),
        (
            "winter",
            "The third sentence is about a long and cold winter.",
        ),
        (
            "river",
            "The fourth sentence is about a river that runs to the sea.",
        ),
        (
            "mountain",
            "The fifth sentence is about a mountain covered in snow.",
        ),
        (
            "library",
            "The sixth sentence is about a library with many old books.",
        ),
        (
            "engine",
            "The seventh sentence is about an engine that never stops.",
        ),
        (
            "market",
            "The eighth sentence is about a busy market in the morning.",
        ),
        (
            "bicycle",
            "The ninth sentence is about a bicycle with a red bell.",
        ),
        (
            "kitchen",
            "The tenth sentence is about a kitchen that smells of bread.",
        ),
    ];
    let scratch = home.scratch();
    let spoken = speak(&scratch, "long.wav", &sentences.map(|(_, s)| s).join(" "));
    let total_secs = wav_secs(&spoken);
    assert!(
        total_secs > 35.0,
        "the clip must need two windows: {total_secs} s"
    );

    let body = transcribe_verbose(&api, &spoken);
    let text = body["text"].as_str().unwrap().to_lowercase();
    let mut last_at = 0;
    for (word, _) in sentences {
        assert_eq!(
            text.matches(word).count(),
            1,
            "'{word}' must be there exactly once: {text:?}"
        );
        let at = text.find(word).unwrap();
        assert!(at >= last_at, "'{word}' out of order in {text:?}");
        last_at = at;
    }
    let segments = body["segments"].as_array().unwrap();
    assert!(segments.len() >= 2, "{body}");
    let mut previous_end = 0.0;
    for segment in segments {
        let (start, end) = (
            segment["start"].as_f64().unwrap(),
            segment["end"].as_f64().unwrap(),
        );
        assert!(start <= end, "{segment}");
        assert!(start + 0.5 >= previous_end, "segments overlap: {body}");
        previous_end = end;
    }
    assert!(
        previous_end > 30.0 && previous_end <= total_secs + 0.5,
        "the last segment ends at {previous_end} s of {total_secs}: {body}"
    );
}

fn transcribe_verbose(api: &jarvis_tests::Api, wav: &std::path::Path) -> Value {
    let response = transcription(api, wav, "verbose_json");
    assert_eq!(response.status(), 200, "{}", wav.display());
    response.json().unwrap()
}

fn wav_secs(path: &std::path::Path) -> f64 {
    let output = std::process::Command::new("soxi")
        .arg("-D")
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "soxi -D {}", path.display());
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

/// Sends only the headers of a multipart POST declaring `length` bytes and
/// returns what the server answers.
fn raw_post_headers(api: &jarvis_tests::Api, path: &str, length: usize) -> String {
    use std::io::{Read, Write};
    let authority = api.base_url.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n\r\n",
        api.token
    )
    .unwrap();
    let mut response = vec![0u8; 4096];
    let n = stream.read(&mut response).unwrap();
    String::from_utf8_lossy(&response[..n]).into_owned()
}

/// A WAV with a valid header and no samples.
fn wav_header_only() -> Vec<u8> {
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&36u32.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&32_000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&0u32.to_le_bytes());
    wav
}

#[test]
fn the_stock_openai_python_client_works_unchanged() {
    let home = TestHome::new();
    install_models(&home, true);
    let _jarvis = home.up();
    let api = home.api();
    wait_engine(&api, "llm", "ready");
    wait_engine(&api, "stt", "ready");
    let wav = speak(&home.scratch(), "hello.wav", "Hello, how are you today?");

    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0, timeout=180)
out = {}
out["models"] = sorted(m.id for m in client.models.list().data)
q = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
r = client.chat.completions.create(model="smollm2-135m-instruct", messages=q, temperature=0, max_tokens=32)
out["content"] = r.choices[0].message.content
out["finish_reason"] = r.choices[0].finish_reason
out["usage"] = r.usage.total_tokens
chunks = client.chat.completions.create(model="smollm2-135m-instruct", messages=q, temperature=0, max_tokens=32, stream=True, stream_options={"include_usage": True})
streamed, usage = "", None
for c in chunks:
    if c.choices and c.choices[0].delta.content:
        streamed += c.choices[0].delta.content
    if c.usage:
        usage = c.usage.total_tokens
out["streamed"] = streamed
out["stream_usage"] = usage
with open(sys.argv[3], "rb") as f:
    out["transcript"] = client.audio.transcriptions.create(model="whisper-tiny-en", file=f).text
try:
    client.chat.completions.create(model="gpt-4o", messages=q)
except Exception as e:
    out["wrong_model"] = [getattr(e, "status_code", None), str(e)]
print(json.dumps(out))
"#;
    let output = std::process::Command::new(python())
        .args([
            "-c",
            script,
            &api.base_url,
            &api.token,
            wav.to_str().unwrap(),
        ])
        .output()
        .expect("the project's Python is missing: run scripts/setup");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        out["models"],
        json!(["smollm2-135m-instruct", "whisper-tiny-en"])
    );
    let content = out["content"].as_str().unwrap();
    assert!(content.contains("Paris"), "{out}");
    assert_eq!(
        out["streamed"], out["content"],
        "greedy: streaming gives the same answer"
    );
    assert!(out["usage"].as_u64().unwrap() > 0);
    assert_eq!(out["stream_usage"], out["usage"]);
    let transcript = out["transcript"].as_str().unwrap().to_lowercase();
    assert!(
        transcript.contains("hello") && transcript.contains("today"),
        "{transcript}"
    );
    assert_eq!(out["wrong_model"][0], 404, "{out}");
    assert!(
        out["wrong_model"][1]
            .as_str()
            .unwrap()
            .contains("smollm2-135m-instruct")
    );
}

#[test]
fn without_models_the_core_runs_and_says_model_not_installed() {
    let home = TestHome::new();
    let _jarvis = home.up();
    let api = home.api();
    wait_engine(&api, "llm", "missing");
    let response = api
        .request(Method::POST, "/v1/chat/completions")
        .json(&json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "model_not_installed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jarvis models pull")
    );

    // Transcription says so whatever `model` names.
    for model in ["whisper-1", "anything"] {
        let form = reqwest::blocking::multipart::Form::new()
            .part(
                "file",
                reqwest::blocking::multipart::Part::bytes(wav_header_only()).file_name("a.wav"),
            )
            .text("model", model);
        let response = api
            .request(Method::POST, "/v1/audio/transcriptions")
            .multipart(form)
            .send()
            .unwrap();
        assert_eq!(response.status(), 503, "{model}");
        assert_eq!(
            response.json::<Value>().unwrap()["error"]["code"],
            "model_not_installed"
        );
    }

    // The WebSocket says it per turn; memory keeps working.
    let conversation = api.create_conversation();
    let mut socket = Socket::connect(&api);
    let (_, error) = socket.chat("t", &conversation, "hi");
    assert_eq!(error["error"]["code"], "model_not_installed", "{error}");
    assert_eq!(
        api.messages(&conversation).unwrap().len(),
        0,
        "nothing stored"
    );
    let models: Value = api
        .request(Method::GET, "/v1/models")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(models["data"], json!([]));
}

#[test]
fn corrupt_model_files_are_refused_with_a_clear_error_and_the_core_stays_up() {
    let home = TestHome::new();
    // A GGUF whose header is fine and whose body is garbage is refused at
    // import, and nothing is installed.
    let gguf = std::fs::read(jarvis_tests::smollm2_gguf()).unwrap();
    let broken_gguf = home.scratch().join("broken.gguf");
    let mut bytes = gguf[..4096].to_vec();
    bytes.extend(jarvis_tests::pseudo_random_bytes(1 << 20, 7));
    std::fs::write(&broken_gguf, bytes).unwrap();
    let out = home.run(&[
        "models",
        "import",
        broken_gguf.to_str().unwrap(),
        "--name",
        "broken-llm",
        "--version",
        "1",
        "--role",
        "llm",
    ]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("not a usable chat model"),
        "{}",
        out.stderr
    );
    assert!(!home.path("models/broken-llm/1").exists());

    // Files damaged after install (a disk error, a stray edit) reach the
    // core: a chat model cut in half, and a ggml speech model that is
    // noise after its magic, imported by name as a user could.
    install_models(&home, false);
    let installed = jarvis_tests::brain::installed_llm_file(&home);
    let installed_name = installed.file_name().unwrap().to_str().unwrap().to_owned();
    let good = std::fs::read(&installed).unwrap();
    std::fs::write(&installed, &good[..good.len() / 2]).unwrap();
    let broken_ggml = home.scratch().join("ggml-model.bin");
    let mut ggml = jarvis_tests::pseudo_random_bytes(1 << 16, 8);
    ggml[..4].copy_from_slice(&0x6767_6d6c_u32.to_le_bytes());
    std::fs::write(&broken_ggml, ggml).unwrap();
    let out = home.run(&[
        "models",
        "import",
        broken_ggml.to_str().unwrap(),
        "--name",
        "broken-stt",
        "--version",
        "1",
        "--role",
        "stt",
    ]);
    assert!(out.status.success(), "{out:?}");

    let mut jarvis = home.up();
    let api = home.api();
    let llm = wait_engine(&api, "llm", "failed");
    assert!(
        llm["detail"].as_str().unwrap().contains(&installed_name),
        "{llm}"
    );
    let stt = wait_engine(&api, "stt", "failed");
    assert!(
        stt["detail"].as_str().unwrap().contains("ggml-model.bin"),
        "{stt}"
    );
    // Issue 16, finding 12: without the token `/readyz` says the states,
    // never the details (they name files and folders).
    let anonymous: Value = api
        .anonymous(Method::GET, "/readyz")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let engines = anonymous["models"]["engines"].as_array().unwrap();
    assert!(
        engines.iter().any(|e| e["state"] == "failed"),
        "{anonymous}"
    );
    assert!(
        engines.iter().all(|e| e.get("detail").is_none()),
        "{anonymous}"
    );
    assert!(
        !anonymous
            .to_string()
            .contains(&home.data_dir().display().to_string()),
        "{anonymous}"
    );

    let response = api
        .request(Method::POST, "/v1/chat/completions")
        .json(&json!({"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "model_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jarvis models verify")
    );

    // Still up, same process, memory works.
    assert!(api.ready());
    let conversation = api.create_conversation();
    assert_eq!(
        api.add_message(&conversation, "user", "still here")
            .status(),
        201
    );
    assert_eq!(home.instance().unwrap().core.restarts, 0);
    assert!(jarvis.try_exit().is_none());

    // Activating a good model swaps it in without a restart, announced
    // by the launcher on Redis and forwarded to WebSocket clients.
    let mut socket = Socket::connect(&api);
    assert_eq!(socket.next_message()["type"], "hello");
    let out = home.run(&[
        "models",
        "import",
        jarvis_tests::smollm2_gguf().to_str().unwrap(),
        "--name",
        "smollm2-135m-instruct",
        "--version",
        "q4_1-2",
        "--role",
        "llm",
    ]);
    assert!(out.status.success(), "{out:?}");
    // A new version of an active model waits for `activate`.
    let out = home.run(&["models", "activate", "smollm2-135m-instruct", "q4_1-2"]);
    assert!(out.status.success(), "{out:?}");
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &Value| e["type"] == "model_status" && e["state"] == "ready")
    {
        let message = socket.next_message();
        if message["type"] == "event" {
            seen.push(message["event"].clone());
        }
    }
    assert!(
        seen.iter()
            .any(|e| e["type"] == "model_activated" && e["name"] == "smollm2-135m-instruct"),
        "{seen:?}"
    );
    let engine = wait_engine(&api, "llm", "ready");
    assert_eq!(engine["model"]["version"], "q4_1-2");
}

#[test]
fn conversation_settings_are_stored_and_checked() {
    let home = TestHome::new();
    let _jarvis = home.up();
    let api = home.api();
    let conversation = api.create_conversation();
    let path = format!("/v1/conversations/{conversation}/settings");
    let empty: Value = api
        .request(Method::GET, &path)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(empty, json!({}));
    let settings =
        json!({"system_prompt": "Answer in one word.", "temperature": 0.0, "max_tokens": 16});
    let response = api
        .request(Method::PUT, &path)
        .json(&settings)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let stored: Value = api
        .request(Method::GET, &path)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(stored, settings);

    for (bad, code) in [
        (json!({"temperature": 7.0}), 400),
        (json!({"max_tokens": 0}), 400),
        (json!({"colour": "blue"}), 400),
    ] {
        let response = api.request(Method::PUT, &path).json(&bad).send().unwrap();
        assert_eq!(response.status(), code, "{bad}");
    }
    let missing = "/v1/conversations/0123456789abcdef0123456789abcdef/settings";
    let response = api
        .request(Method::PUT, missing)
        .json(&settings)
        .send()
        .unwrap();
    assert_eq!(response.status(), 404);
    // A refused update left the stored settings alone.
    let stored: Value = api
        .request(Method::GET, &path)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(stored, settings);
}

#[test]
fn a_pull_in_another_process_is_reported_to_websocket_clients_as_it_goes() {
    use jarvis_tests::catalog::{document, file, model};
    use jarvis_tests::fault_server::FaultServer;
    let home = TestHome::new();
    let server = FaultServer::start();
    let bytes = jarvis_tests::pseudo_random_bytes(3 * 1024 * 1024, 41);
    server.add_bytes("/slow/weights.bin", bytes.clone());
    let sources = [server.url("/slow/weights.bin")];
    home.use_catalog(&document(vec![model(
        "slow-model",
        "1",
        "stt",
        false,
        vec![file("weights.bin", &bytes, Some(1024 * 1024), &sources)],
    )]));
    // About three seconds of download: several progress looks.
    server.set_rate_limit(1024 * 1024);
    let _jarvis = home.up();
    let api = home.api();
    let mut socket = Socket::connect(&api);
    assert_eq!(socket.next_message()["type"], "hello");

    let pull = home
        .jarvis(&["models", "pull", "slow-model"])
        .spawn()
        .unwrap();
    let mut progress = Vec::new();
    loop {
        let message = socket.next_message();
        let event = &message["event"];
        if event["type"] == "model_progress" && event["name"] == "slow-model" {
            assert_eq!(event["total"], bytes.len());
            progress.push(event["done"].as_u64().unwrap());
        }
        if event["type"] == "model_activated" && event["name"] == "slow-model" {
            break;
        }
    }
    let status = pull.wait_with_output().unwrap().status;
    assert!(status.success());
    assert!(
        progress.iter().any(|d| *d > 0 && *d < bytes.len() as u64),
        "no progress between start and end: {progress:?}"
    );
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
}

#[test]
fn conversations_are_listed_empty_renamed_searched_and_deleted() {
    let home = TestHome::new();
    let _jarvis = home.up();
    let api = home.api();
    let list = |query: &str| -> Vec<String> {
        let body: Value = api
            .request(Method::GET, &format!("/v1/conversations{query}"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        body["conversations"]
            .as_array()
            .unwrap_or_else(|| panic!("no list in {body}"))
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // With no conversation at all the list is empty, not an error.
    assert_eq!(list(""), Vec::<String>::new());
    assert_eq!(list("?q=anything"), Vec::<String>::new());

    let trip = api.create_conversation();
    api.add_message(&trip, "user", "Plan a trip to Lisbon");
    let food = api.create_conversation();
    api.add_message(&food, "user", "A recipe, please");
    api.add_message(&food, "assistant", "Try aubergines with MISO glaze.");

    // Search: titles and message content, any case, newest first.
    assert_eq!(list("?q=lisbon"), vec![trip.clone()]);
    assert_eq!(list("?q=miso"), vec![food.clone()]);
    assert_eq!(list("?q=a"), vec![food.clone(), trip.clone()]);
    assert_eq!(list("?q=%20%20"), vec![food.clone(), trip.clone()]);

    // Rename: trimmed, never empty, only existing conversations.
    let path = format!("/v1/conversations/{trip}");
    let renamed = api
        .request(Method::PATCH, &path)
        .json(&json!({"title": "  Lisbon holiday "}))
        .send()
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let conversation: Value = api
        .request(Method::GET, &path)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(conversation["title"], "Lisbon holiday");
    assert_eq!(list("?q=holiday"), vec![trip.clone()]);
    for (body, status) in [(json!({"title": "   "}), 400), (json!({"name": "x"}), 400)] {
        let response = api
            .request(Method::PATCH, &path)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
    }
    let missing = "/v1/conversations/0123456789abcdef0123456789abcdef";
    let response = api
        .request(Method::PATCH, missing)
        .json(&json!({"title": "x"}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 404);

    // Delete: the conversation, its messages and settings; once.
    api.request(Method::PUT, &format!("{path}/settings"))
        .json(&json!({"max_tokens": 5}))
        .send()
        .unwrap();
    let deleted = api.request(Method::DELETE, &path).send().unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        api.request(Method::GET, &path).send().unwrap().status(),
        404
    );
    let settings = api
        .request(Method::GET, &format!("{path}/settings"))
        .send()
        .unwrap();
    assert_eq!(settings.status(), 404);
    assert_eq!(
        api.request(Method::DELETE, &path).send().unwrap().status(),
        404
    );
    assert_eq!(list(""), vec![food.clone()]);
    assert_eq!(
        api.messages(&food).unwrap().len(),
        2,
        "the other one is untouched"
    );
}

#[test]
fn regenerate_replaces_the_last_answer_and_refuses_when_there_is_nothing_to_answer() {
    let home = TestHome::new();
    install_models(&home, false);
    let _jarvis = home.up();
    let api = home.api();
    wait_engine(&api, "llm", "ready");
    let conversation = api.create_conversation();
    let mut socket = Socket::connect(&api);

    // Nothing to answer yet.
    socket.send(&json!({"type": "regenerate", "turn_id": "r0", "conversation_id": conversation}));
    let (_, refused) = socket.collect("r0");
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");

    let (first, done) = socket.chat("c1", &conversation, FRANCE);
    assert_eq!(done["type"], "done");
    assert_eq!(api.messages(&conversation).unwrap().len(), 2);

    socket.send(&json!({
        "type": "regenerate", "turn_id": "r1", "conversation_id": conversation, "max_tokens": 24,
    }));
    let (again, done) = socket.collect("r1");
    assert_eq!(done["type"], "done", "{done}");
    assert_eq!(
        done["message_index"], 1,
        "the new answer takes the old one's place"
    );
    let messages = api.messages(&conversation).unwrap();
    assert_eq!(messages.len(), 2, "replaced, not added: {messages:?}");
    assert_eq!(messages[0], FRANCE);
    assert_eq!(messages[1], again);
    assert!(!first.is_empty() && !again.is_empty());
}
