//! Local chat generation for the Jarvis core: a GGUF model loaded with
//! `mistralrs` on the CPU, fully offline (the tokenizer and chat template
//! come from the GGUF file itself).
//!
//! [`ChatModel::generate`] streams [`Event`]s through a channel; dropping
//! the receiver cancels the generation (mistralrs stops the sequence when
//! it can no longer deliver tokens), so a closed connection or a cancelled
//! turn frees the model at once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mistralrs::core::{
    AddModelConfig, AutoDeviceMapParams, DefaultSchedulerMethod, DeviceMapSetting, EngineConfig,
    GGUFLoaderBuilder, GGUFSpecificConfig, ModelDType, SchedulerConfig,
};
use mistralrs::{
    Model, RequestBuilder, Response, SamplingParams, StopTokens, TextMessageRole, TokenSource,
};
use tokio::sync::mpsc;

/// Everything that can go wrong loading or running a chat model.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the chat model '{path}' is not usable: {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error("generation failed: {0}")]
    Inference(String),
}

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// What to generate and how.
#[derive(Debug, Clone)]
pub struct Request {
    pub messages: Vec<Message>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// `None` or 0 means greedy decoding (deterministic).
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    /// A JSON schema the answer must match: generation is constrained
    /// token by token (mistralrs' llguidance), so even a model that was
    /// never trained to call tools answers with JSON of this shape.
    pub json_schema: Option<serde_json::Value>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer (or hit a stop string).
    Stop,
    /// `max_tokens` was reached.
    Length,
}

/// Counts and timings of one generation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// From the request to the first token, in seconds.
    pub time_to_first_token: f64,
    /// Generated tokens per second after the first.
    pub decode_tokens_per_sec: f64,
    pub total_secs: f64,
}

/// What a generation streams.
#[derive(Debug, Clone)]
pub enum Event {
    /// More text of the answer.
    Delta(String),
    /// The answer is complete.
    Done {
        finish_reason: FinishReason,
        usage: Usage,
    },
    /// It failed; nothing more follows.
    Failed(String),
}

/// A loaded GGUF chat model.
pub struct ChatModel {
    model: Model,
    path: PathBuf,
    context_length: usize,
}

impl std::fmt::Debug for ChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatModel")
            .field("path", &self.path)
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

/// The type the model computes its activations in (the weights stay as
/// the GGUF file has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activations {
    /// 32-bit floats: what the CPU kernels are written for. mistralrs'
    /// own choice on a CPU is f16 (the first type a test matmul accepts),
    /// which turns every attention step into conversions and scalar
    /// half-precision loops; measured in `BENCHMARKS.md`.
    F32,
    /// Whatever mistralrs picks for the device (f16 on a CPU, bf16 or f16
    /// on a GPU).
    Auto,
}

impl Default for Activations {
    /// f32 on the CPU, mistralrs' choice on a GPU.
    fn default() -> Self {
        if GPU_BUILD { Self::Auto } else { Self::F32 }
    }
}

/// This build has a GPU back end (otherwise it runs on the CPU).
const GPU_BUILD: bool = cfg!(any(feature = "cuda", feature = "metal"));

/// Up to this many chats are decoded together.
const MAX_RUNNING_CHATS: usize = 8;

/// Loads the GGUF `file` in `dir` the way `mistralrs::GgufModelBuilder`
/// does, but with the activations' type ours to choose (the builder always
/// lets mistralrs pick) and nothing fetched from a hub.
async fn build(dir: String, file: String, activations: Activations) -> Result<Model, String> {
    let loader = GGUFLoaderBuilder::new(
        None,
        None,
        dir,
        vec![file],
        GGUFSpecificConfig { topology: None },
        false,
        None,
    )
    .build();
    let device =
        mistralrs::best_device(!GPU_BUILD).map_err(|e| format!("no device to run it on: {e}"))?;
    let dtype = match activations {
        Activations::F32 => ModelDType::F32,
        Activations::Auto => ModelDType::Auto,
    };
    let pipeline = loader
        .load_model_from_hf(
            None,
            TokenSource::None,
            &dtype,
            &device,
            true,
            DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()),
            None,
            None,
        )
        .map_err(|e| format!("{e:#}"))?;
    let running = std::num::NonZeroUsize::new(MAX_RUNNING_CHATS).ok_or("no chats may run")?;
    let scheduler = SchedulerConfig::DefaultScheduler {
        method: DefaultSchedulerMethod::Fixed(running),
    };
    let config = AddModelConfig {
        engine_config: EngineConfig {
            throughput_logging_enabled: false,
            ..EngineConfig::default()
        },
        mcp_client_config: None,
        loader_config: None,
    };
    Ok(
        mistralrs::model_builder_trait::build_model_from_pipeline(pipeline, scheduler, config)
            .await,
    )
}

/// Used when the model does not say its context length.
const DEFAULT_CONTEXT: usize = 2048;

impl ChatModel {
    /// Checks that `path` is a GGUF file, then loads it (on the CPU unless
    /// this build has a GPU back end) with [`Activations::default`].
    pub async fn load(path: &Path) -> Result<Self, LlmError> {
        Self::load_with(path, Activations::default()).await
    }

    /// [`ChatModel::load`] with the activations' type chosen (the
    /// benchmarks compare them).
    pub async fn load_with(path: &Path, activations: Activations) -> Result<Self, LlmError> {
        let bad = |reason: String| LlmError::BadModel {
            path: path.to_owned(),
            reason,
        };
        check_gguf_header(path).map_err(bad)?;
        let (Some(dir), Some(file)) = (
            path.parent().and_then(Path::to_str),
            path.file_name().and_then(|f| f.to_str()),
        ) else {
            return Err(bad("the path is not UTF-8".into()));
        };
        // mistralrs may panic on malformed tensors; keep that inside this
        // task so a bad file is an error, not a dead core.
        let model = tokio::spawn(build(dir.to_owned(), file.to_owned(), activations))
            .await
            .map_err(|e| bad(format!("the loader crashed: {}", panic_message(e))))?
            .map_err(bad)?;
        let context_length = model
            .max_sequence_length()
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_CONTEXT);
        tracing::info!(path = %path.display(), context_length, ?activations, "chat model loaded");
        Ok(Self {
            model,
            path: path.to_owned(),
            context_length,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The most tokens a prompt and its answer may hold together.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The prompt the chat template makes of `messages`, as the model
    /// sees it (special tokens included), for diagnostics.
    pub async fn render_prompt(&self, messages: &[Message]) -> Result<String, LlmError> {
        let mut text = mistralrs::TextMessages::new();
        for m in messages {
            text = text.add_message(role_of(m.role), &m.content);
        }
        let tokens = self
            .model
            .tokenize(either::Either::Left(text), None, true, true, None)
            .await
            .map_err(|e| LlmError::Inference(e.to_string()))?;
        self.model
            .detokenize(tokens, false)
            .await
            .map_err(|e| LlmError::Inference(e.to_string()))
    }

    /// Tokens `text` takes (without chat-template overhead).
    pub async fn count_tokens(&self, text: &str) -> Result<usize, LlmError> {
        self.model
            .tokenize(
                either::Either::Right(text.to_owned()),
                None,
                false,
                false,
                None,
            )
            .await
            .map(|t| t.len())
            .map_err(|e| LlmError::Inference(e.to_string()))
    }

    /// Starts generating. Events arrive on the returned channel; drop it
    /// to cancel.
    ///
    /// The channel is unbounded on purpose: mistralrs runs every sequence
    /// in one loop, so a consumer that stops reading must never make this
    /// task stop reading mistralrs (that would stall every other chat). An
    /// answer is bounded by `max_tokens` anyway.
    pub fn generate(self: &Arc<Self>, request: Request) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(message) = this.run(request, &tx).await {
                let _ = tx.send(Event::Failed(message));
            }
        });
        rx
    }

    async fn run(&self, request: Request, tx: &mpsc::UnboundedSender<Event>) -> Result<(), String> {
        let started = Instant::now();
        let mut builder = RequestBuilder::new();
        for message in &request.messages {
            builder = builder.add_message(role_of(message.role), &message.content);
        }
        let mut sampling = match request.temperature {
            Some(t) if t > 0.0 => SamplingParams {
                temperature: Some(t),
                top_k: None,
                top_p: request.top_p,
                ..SamplingParams::deterministic()
            },
            // Greedy. mistralrs reads a missing temperature as 1.0 and then
            // samples with top-k 1 (a softmax over the whole vocabulary and a
            // weighted draw per token); an explicit 0 takes its argmax path,
            // the same token for less work (not measurable in tokens/s here).
            _ => SamplingParams {
                temperature: Some(0.0),
                ..SamplingParams::deterministic()
            },
        };
        sampling.max_len = Some(request.max_tokens.max(1));
        if !request.stop.is_empty() {
            sampling.stop_toks = Some(StopTokens::Seqs(request.stop.clone()));
        }
        let mut builder = builder.set_sampling(sampling);
        if let Some(schema) = request.json_schema {
            builder = builder.set_constraint(mistralrs::Constraint::JsonSchema(schema));
            // Inside a string the grammar allows anything, and a small
            // model's greedy text tends to loop ("It is very good. It is
            // very good. ..."): DRY penalises repeating a run of tokens,
            // and its default breakers (quotes, colons, newlines) leave
            // the JSON's own structure alone.
            let dry = mistralrs::DrySamplingParams::new_with_defaults(0.8, None, None, None)
                .map_err(|e| e.to_string())?;
            builder = builder.set_sampler_dry_params(dry);
        }
        let mut stream = self
            .model
            .stream_chat_request(builder)
            .await
            .map_err(|e| e.to_string())?;
        let mut first_token: Option<Duration> = None;
        while let Some(response) = stream.next().await {
            match response {
                Response::Chunk(chunk) => {
                    let Some(choice) = chunk.choices.first() else {
                        continue;
                    };
                    if let Some(text) = choice.delta.content.as_ref().filter(|t| !t.is_empty()) {
                        first_token.get_or_insert_with(|| started.elapsed());
                        if tx.send(Event::Delta(text.clone())).is_err() {
                            return Ok(()); // cancelled: dropping the stream stops mistralrs
                        }
                    }
                    if let Some(reason) = &choice.finish_reason {
                        let usage = chunk.usage.as_ref();
                        let total = started.elapsed();
                        let ttft = first_token.unwrap_or(total);
                        let completion_tokens = usage.map_or(0, |u| u.completion_tokens);
                        let decode_secs = (total - ttft).as_secs_f64();
                        let event = Event::Done {
                            finish_reason: if reason == "length" {
                                FinishReason::Length
                            } else {
                                FinishReason::Stop
                            },
                            usage: Usage {
                                prompt_tokens: usage.map_or(0, |u| u.prompt_tokens),
                                completion_tokens,
                                time_to_first_token: ttft.as_secs_f64(),
                                decode_tokens_per_sec: if decode_secs > 0.0 {
                                    completion_tokens.saturating_sub(1) as f64 / decode_secs
                                } else {
                                    0.0
                                },
                                total_secs: total.as_secs_f64(),
                            },
                        };
                        let _ = tx.send(event);
                        return Ok(());
                    }
                }
                Response::Done(_) => return Ok(()),
                Response::ModelError(message, _) => return Err(message),
                Response::InternalError(e) | Response::ValidationError(e) => {
                    return Err(e.to_string());
                }
                _ => {}
            }
        }
        Err("the model stopped without finishing the answer".into())
    }
}

fn role_of(role: Role) -> TextMessageRole {
    match role {
        Role::System => TextMessageRole::System,
        Role::User => TextMessageRole::User,
        Role::Assistant => TextMessageRole::Assistant,
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panic".into()),
        Err(e) => e.to_string(),
    }
}

/// A GGUF file starts with `GGUF` and a version (2 or 3) and is big
/// enough to hold a header; anything else is refused before mistralrs
/// sees it.
fn check_gguf_header(path: &Path) -> Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut header = [0u8; 24];
    file.read_exact(&mut header)
        .map_err(|_| "it is too short to be a GGUF file".to_owned())?;
    if &header[..4] != b"GGUF" {
        return Err("it is not a GGUF file (bad magic)".into());
    }
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(2..=3).contains(&version) {
        return Err(format!("GGUF version {version} is not supported"));
    }
    let tensors = u64::from_le_bytes(header[8..16].try_into().unwrap_or([0; 8]));
    let metadata = u64::from_le_bytes(header[16..24].try_into().unwrap_or([0; 8]));
    if tensors == 0 || tensors > 100_000 || metadata > 100_000 {
        return Err(format!(
            "the header is corrupt ({tensors} tensors, {metadata} metadata entries)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn headers_that_are_not_gguf_are_refused() {
        let dir = std::env::temp_dir().join(format!("jarvis-llm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.gguf");
        for (bytes, want) in [
            (&b"GGU"[..], "too short"),
            (&b"GGML\x03\0\0\0aaaaaaaabbbbbbbb"[..], "bad magic"),
            (&b"GGUF\x09\0\0\0aaaaaaaabbbbbbbb"[..], "version 9"),
            (
                &b"GGUF\x03\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\0\0\0\0\0\0\0\0"[..],
                "corrupt",
            ),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let err = check_gguf_header(&path).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
