//! `jarvis chat` and `jarvis transcribe`: clients of the running core.
//!
//! They find the core through `<data>/run/instance.json` and authenticate
//! with the per-launch token in `<data>/run/api-token`, like any other
//! client: the launcher gets no back door into the core.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::hint::hinted;
use crate::instance;
use crate::paths::AppPaths;

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Say this, print the answer and exit (without it: an interactive
    /// session; an empty line or Ctrl-D ends it).
    message: Option<String>,
    /// Continue this conversation (its id) instead of starting a new one.
    #[arg(long)]
    conversation: Option<String>,
    /// Most tokens an answer may have.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature (0 = deterministic).
    #[arg(long)]
    temperature: Option<f64>,
}

#[derive(Debug, Args)]
pub struct TranscribeArgs {
    /// A WAV file (any common rate, channels and PCM encoding).
    file: PathBuf,
    /// Print the whole result (segments, timings) as JSON.
    #[arg(long)]
    json: bool,
    /// Language of the speech (ISO 639-1), for multilingual models.
    #[arg(long)]
    language: Option<String>,
}

/// Where the running core is and how to talk to it.
struct Core {
    base_url: String,
    token: String,
}

impl Core {
    fn find(paths: &AppPaths) -> anyhow::Result<Self> {
        let running = paths.data_dir.exists() && instance::is_running(paths)?;
        let record = running
            .then(|| instance::read(paths))
            .transpose()?
            .flatten();
        let Some(record) = record else {
            return Err(hinted("Jarvis is not running", "start it with `jarvis up`"));
        };
        let token_file = paths.token_file();
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("could not read the API token '{}'", token_file.display()))?
            .trim()
            .to_owned();
        Ok(Self {
            base_url: record.base_url,
            token,
        })
    }

    fn http(&self) -> anyhow::Result<reqwest::Client> {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("could not build an HTTP client")
    }

    /// The core's JSON error, as a sentence.
    async fn error_of(response: reqwest::Response) -> anyhow::Error {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        let message = body["error"]["message"]
            .as_str()
            .map_or_else(|| status.to_string(), str::to_owned);
        anyhow::anyhow!("{message}")
    }
}

pub async fn chat(paths: &AppPaths, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let core = Core::find(paths)?;
    let conversation = match &args.conversation {
        Some(id) => id.clone(),
        None => {
            let response = core
                .http()?
                .post(format!("{}/v1/conversations", core.base_url))
                .bearer_auth(&core.token)
                .send()
                .await
                .context("could not reach the core")?;
            if !response.status().is_success() {
                return Err(Core::error_of(response).await);
            }
            let created: Value = response.json().await?;
            created["id"].as_str().unwrap_or_default().to_owned()
        }
    };
    let ws_url = format!("{}/v1/ws", core.base_url.replacen("http://", "ws://", 1));
    let mut request = ws_url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", core.token).parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("could not open the chat connection to the core")?;
    eprintln!(
        "conversation {conversation} (continue it with `jarvis chat --conversation {conversation}`)"
    );

    let mut turn = 0u64;
    let one_shot = args.message.is_some();
    let mut pending = args.message.clone();
    loop {
        let message = match pending.take() {
            Some(m) => m,
            None if one_shot => break,
            None => match read_line()? {
                Some(line) if !line.trim().is_empty() => line,
                _ => break,
            },
        };
        turn += 1;
        let turn_id = format!("t{turn}");
        let mut chat = json!({
            "type": "chat",
            "turn_id": turn_id,
            "conversation_id": conversation,
            "content": message,
        });
        if let Some(n) = args.max_tokens {
            chat["max_tokens"] = json!(n);
        }
        if let Some(t) = args.temperature {
            chat["temperature"] = json!(t);
        }
        socket.send(Message::Text(chat.to_string().into())).await?;
        loop {
            let next = tokio::select! {
                next = socket.next() => next,
                _ = tokio::signal::ctrl_c() => {
                    let cancel = json!({"type": "cancel", "turn_id": turn_id});
                    socket.send(Message::Text(cancel.to_string().into())).await?;
                    continue;
                }
            };
            let Some(frame) = next else {
                bail!("the core closed the connection");
            };
            let Message::Text(text) = frame? else {
                continue;
            };
            let event: Value = serde_json::from_str(&text)?;
            if event["turn_id"].as_str().is_some_and(|t| t != turn_id) {
                continue;
            }
            match event["type"].as_str() {
                Some("token") => {
                    print!("{}", event["text"].as_str().unwrap_or_default());
                    std::io::stdout().flush()?;
                }
                Some("done") => {
                    println!();
                    let usage = &event["usage"];
                    tracing::debug!(%usage, "turn done");
                    break;
                }
                Some("cancelled") => {
                    println!("\n[cancelled]");
                    break;
                }
                Some("error") if event.get("turn_id").is_some() => {
                    bail!(
                        "{}",
                        event["error"]["message"]
                            .as_str()
                            .unwrap_or("the core failed")
                    );
                }
                _ => {}
            }
        }
    }
    let _ = socket.close(None).await;
    Ok(ExitCode::SUCCESS)
}

fn read_line() -> anyhow::Result<Option<String>> {
    eprint!("> ");
    let mut line = String::new();
    let n = std::io::stdin().lock().read_line(&mut line)?;
    Ok((n > 0).then(|| line.trim_end_matches(['\n', '\r']).to_owned()))
}

pub async fn transcribe(paths: &AppPaths, args: TranscribeArgs) -> anyhow::Result<ExitCode> {
    let core = Core::find(paths)?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("could not read '{}'", args.file.display()))?;
    let name = file_name(&args.file);
    let mut form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        )
        .text(
            "response_format",
            if args.json { "verbose_json" } else { "json" },
        );
    if let Some(language) = args.language {
        form = form.text("language", language);
    }
    let response = core
        .http()?
        .post(format!("{}/v1/audio/transcriptions", core.base_url))
        .bearer_auth(&core.token)
        .multipart(form)
        .send()
        .await
        .context("could not reach the core")?;
    if !response.status().is_success() {
        return Err(Core::error_of(response).await);
    }
    let body: Value = response.json().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!("{}", body["text"].as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("audio.wav")
        .to_owned()
}
