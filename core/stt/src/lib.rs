//! Local speech-to-text for the Jarvis core: whisper.cpp (through
//! `whisper-rs`) on a ggml model from the user-data folder.
//!
//! - [`audio`] turns an uploaded WAV into 16 kHz mono samples.
//! - [`speech`] finds where the speech is, so silence is never encoded.
//! - [`Transcriber`] holds one loaded model; each call gets its own
//!   whisper state, so several transcriptions can run at once.
//!
//! A model file is checked completely ([`jarvis_whisper_ggml::inspect`])
//! before whisper.cpp reads it: whisper.cpp trusts its input, and a corrupt
//! file must cost the user an error message, not the core process.

pub mod audio;
pub mod speech;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

pub use audio::{Audio, AudioError, decode_wav};

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error("the speech model '{path}' is not usable: {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error("transcription failed: {0}")]
    Inference(String),
}

/// How to transcribe.
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// Threads for whisper.cpp; 0 picks the number of CPU cores.
    pub threads: usize,
    /// ISO 639-1 language, or `None` to detect (multilingual models only).
    pub language: Option<String>,
    /// Fit the encoder's window to short clips instead of always paying
    /// for 30 seconds (see [`audio_context_for`]).
    pub fit_audio_context: bool,
    /// Leave out silence before, between and after speech (see
    /// [`speech::compact`]); timestamps still refer to the upload.
    pub skip_silence: bool,
    /// Segment times are wanted (`verbose_json`). Without them whisper
    /// decodes the audio as one segment per 30-second window: fewer tokens,
    /// and never a second encoder pass for the tail after the last
    /// timestamp.
    pub timestamps: bool,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        Self {
            threads: 0,
            language: None,
            fit_audio_context: true,
            skip_silence: true,
            timestamps: false,
        }
    }
}

/// One piece of a transcript with its place in the audio.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Segment {
    pub start_secs: f64,
    pub end_secs: f64,
    pub text: String,
}

/// What a transcription produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    pub duration_secs: f64,
    pub language: String,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// A loaded whisper model.
pub struct Transcriber {
    context: WhisperContext,
    path: PathBuf,
    multilingual: bool,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// whisper.cpp's encoder sees 30 s as 1500 frames (50 per second).
const FRAMES_PER_SEC: f64 = 50.0;
const FULL_CONTEXT: i32 = 1500;

/// The encoder window for a clip of `secs`: its length plus a margin,
/// rounded up to 64 frames, never under 256 (about 5 s), where shorter
/// windows start to cost accuracy.
pub fn audio_context_for(secs: f64) -> i32 {
    let frames = (secs * FRAMES_PER_SEC).ceil() as i32 + 64;
    let rounded = (frames + 63) / 64 * 64;
    rounded.clamp(256, FULL_CONTEXT)
}

impl Transcriber {
    /// Checks the file, then loads it (on the CPU unless this build has a
    /// GPU back end).
    pub fn load(path: &Path) -> Result<Self, SttError> {
        let bad = |reason: String| SttError::BadModel {
            path: path.to_owned(),
            reason,
        };
        let info = jarvis_whisper_ggml::inspect(path).map_err(|e| bad(e.to_string()))?;
        route_logs_to_tracing();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(cfg!(any(feature = "cuda", feature = "metal")));
        let path_str = path
            .to_str()
            .ok_or_else(|| bad("the path is not UTF-8".into()))?;
        let context = WhisperContext::new_with_params(path_str, params)
            .map_err(|e| bad(format!("whisper.cpp refused it: {e}")))?;
        tracing::info!(path = %path.display(), layers = info.hparams.n_audio_layer, "speech model loaded");
        Ok(Self {
            context,
            path: path.to_owned(),
            multilingual: info.multilingual,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transcribes 16 kHz mono samples. Blocking and CPU-heavy: call it
    /// from a blocking thread.
    pub fn transcribe(
        &self,
        samples: &[f32],
        options: &TranscribeOptions,
    ) -> Result<Transcript, SttError> {
        let started = Instant::now();
        let duration_secs = samples.len() as f64 / f64::from(audio::WHISPER_RATE);
        if samples.is_empty() {
            return Err(SttError::Inference("no audio samples".into()));
        }
        let language = match (&options.language, self.multilingual) {
            (_, false) => Some("en".to_owned()),
            (Some(lang), true) => Some(lang.clone()),
            (None, true) => None,
        };
        let compacted = options.skip_silence.then(|| speech::compact(samples));
        if let Some(compacted) = &compacted {
            if compacted.is_silent() {
                tracing::debug!(duration_secs, "no speech in the audio");
                return Ok(Transcript {
                    text: String::new(),
                    segments: Vec::new(),
                    duration_secs,
                    language: language.unwrap_or_else(|| "auto".into()),
                    elapsed: started.elapsed(),
                });
            }
            tracing::debug!(
                duration_secs,
                removed_secs = compacted.removed_secs(),
                "silence left out"
            );
        }
        let samples = compacted.as_ref().map_or(samples, |c| &c.samples[..]);
        let speech_secs = samples.len() as f64 / f64::from(audio::WHISPER_RATE);
        // whisper.cpp pads to at least one second; below that it may
        // return nothing at all.
        let mut padded;
        let samples = if samples.len() < audio::WHISPER_RATE as usize {
            padded = samples.to_vec();
            padded.resize(audio::WHISPER_RATE as usize + 1600, 0.0);
            &padded[..]
        } else {
            samples
        };
        let mut state = self
            .context
            .create_state()
            .map_err(|e| SttError::Inference(e.to_string()))?;
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        let threads = if options.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            options.threads
        };
        params.set_n_threads(i32::try_from(threads).unwrap_or(4));
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        params.set_no_context(true);
        params.set_suppress_blank(true);
        params.set_language(language.as_deref().or(Some("auto")));
        // Short clips: a window fitted to the audio (30 s clips and longer
        // keep the full window, chunk by chunk).
        if options.fit_audio_context && speech_secs < 29.0 {
            params.set_audio_ctx(audio_context_for(speech_secs));
            params.set_single_segment(speech_secs < 10.0);
        }
        params.set_no_timestamps(!options.timestamps);
        state
            .full(params, samples)
            .map_err(|e| SttError::Inference(e.to_string()))?;
        // whisper's times are on the clock of what it heard; the client's
        // is the upload's.
        let to_original = |t: f64| compacted.as_ref().map_or(t, |c| c.to_original(t));
        let mut segments = Vec::new();
        for segment in state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map_err(|e| SttError::Inference(e.to_string()))?
                .trim()
                .to_owned();
            if text.is_empty() {
                continue;
            }
            segments.push(Segment {
                start_secs: to_original(segment.start_timestamp() as f64 / 100.0),
                end_secs: to_original(segment.end_timestamp() as f64 / 100.0),
                text,
            });
        }
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript {
            text,
            segments,
            duration_secs,
            language: language.unwrap_or_else(|| "auto".into()),
            elapsed: started.elapsed(),
        })
    }
}

/// whisper.cpp prints to stderr by default; send it to `tracing` instead.
fn route_logs_to_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(whisper_rs::install_logging_hooks);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn short_clips_get_a_fitted_window() {
        assert_eq!(audio_context_for(0.5), 256);
        assert_eq!(audio_context_for(5.0), 320);
        assert_eq!(audio_context_for(12.0), 704);
        assert_eq!(audio_context_for(40.0), 1500);
    }

    #[test]
    fn a_corrupt_model_is_refused_without_reaching_whisper_cpp() {
        let dir = std::env::temp_dir().join(format!("jarvis-stt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ggml-model.bin");
        std::fs::write(&path, b"lmgg\x01\x02\x03 definitely not a model").unwrap();
        let err = Transcriber::load(&path).unwrap_err();
        assert!(matches!(err, SttError::BadModel { .. }), "{err}");
        assert!(err.to_string().contains("ggml-model.bin"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
