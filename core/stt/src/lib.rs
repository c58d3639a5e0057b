//! Local speech-to-text for the Jarvis core: whisper.cpp (through
//! `whisper-rs`) on a ggml model from the user-data folder.
//!
//! - [`audio`] (from `jarvis-audio`) turns an uploaded WAV into 16 kHz
//!   mono samples.
//! - [`speech`] finds where the speech is, so silence is never encoded.
//! - [`Transcriber`] holds one loaded model; each call gets its own
//!   whisper state, so several transcriptions can run at once.
//!
//! A model file is checked completely ([`jarvis_whisper_ggml::inspect`])
//! before whisper.cpp reads it: whisper.cpp trusts its input, and a corrupt
//! file must cost the user an error message, not the core process.

pub use jarvis_audio::wav as audio;
pub mod speech;

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

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
    /// and no going back to the last timestamp. With them, see
    /// `timed_windows`: the tail after a window's last timestamp is
    /// encoded with a window fitted to it.
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
        let samples = at_least_a_second(samples);
        let samples = &samples[..];
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
        set_window(&mut params, speech_secs, options.fit_audio_context);
        let heard = if options.timestamps {
            timed_windows(&mut state, &params, samples, options.fit_audio_context)?
        } else {
            params.set_no_timestamps(true);
            run_whisper(&mut state, params, samples, 0.0)?
        };
        // whisper's times are on the clock of what it heard; the client's
        // is the upload's.
        let to_original = |t: f64| compacted.as_ref().map_or(t, |c| c.to_original(t));
        let segments: Vec<Segment> = heard
            .into_iter()
            .map(|s| Segment {
                start_secs: to_original(s.start_secs),
                end_secs: to_original(s.end_secs),
                text: s.text,
            })
            .collect();
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

/// `samples`, padded with silence to over a second when shorter: whisper.cpp
/// pads to at least one second, and below that may return nothing at all.
fn at_least_a_second(samples: &[f32]) -> std::borrow::Cow<'_, [f32]> {
    let second = audio::WHISPER_RATE as usize;
    if samples.len() >= second {
        return std::borrow::Cow::Borrowed(samples);
    }
    let mut padded = samples.to_vec();
    padded.resize(second + 1600, 0.0);
    std::borrow::Cow::Owned(padded)
}

/// The encoder window for `secs` of audio: fitted to short audio (one
/// segment under 10 s), whisper's full 30 s window otherwise (and for
/// longer audio, window by window).
fn set_window(params: &mut FullParams<'_, '_>, secs: f64, fit_audio_context: bool) {
    if fit_audio_context && secs < 29.0 {
        params.set_audio_ctx(audio_context_for(secs));
        params.set_single_segment(secs < 10.0);
    } else {
        params.set_audio_ctx(0);
        params.set_single_segment(false);
    }
}

/// Seconds of audio per sample at whisper's rate.
const SECS_PER_SAMPLE: f64 = 1.0 / audio::WHISPER_RATE as f64;

/// Runs whisper.cpp over `samples` and returns its segments, `offset_secs`
/// added to their times.
fn run_whisper(
    state: &mut WhisperState,
    params: FullParams<'_, '_>,
    samples: &[f32],
    offset_secs: f64,
) -> Result<Vec<Segment>, SttError> {
    state
        .full(params, samples)
        .map_err(|e| SttError::Inference(e.to_string()))?;
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
            start_secs: offset_secs + segment.start_timestamp() as f64 / 100.0,
            end_secs: offset_secs + segment.end_timestamp() as f64 / 100.0,
            text,
        });
    }
    Ok(segments)
}

/// A transcription with segment times, one 30-second window per whisper.cpp
/// run.
///
/// whisper.cpp decodes a window, goes back to the last timestamp it
/// decoded and encodes a new window from there, with the same encoder
/// window size, even when only a short tail is left: a second full-price
/// encoder pass for a few seconds of speech. Here each run stops after its
/// first window (the encoder-begin hook) and the next run starts at that
/// timestamp with a window fitted to what is left. A tail of under a
/// tenth of a second, or one without speech, ends it.
fn timed_windows(
    state: &mut WhisperState,
    params: &FullParams<'_, '_>,
    samples: &[f32],
    fit_audio_context: bool,
) -> Result<Vec<Segment>, SttError> {
    const WINDOW_SECS: f64 = 30.0;
    let mut segments = Vec::new();
    let mut offset = 0;
    loop {
        let rest_secs = (samples.len() - offset) as f64 * SECS_PER_SAMPLE;
        let rest = at_least_a_second(&samples[offset..]);
        let mut window = params.clone();
        window.set_no_timestamps(false);
        set_window(&mut window, rest_secs, fit_audio_context);
        let mut windows_begun: u32 = 0;
        // SAFETY: the hook matches whisper.cpp's encoder-begin signature and
        // only touches `windows_begun`, which outlives the run below.
        unsafe {
            window.set_start_encoder_callback(Some(first_window_only));
            window.set_start_encoder_callback_user_data((&raw mut windows_begun).cast());
        }
        let heard = run_whisper(state, window, &rest, offset as f64 * SECS_PER_SAMPLE)?;
        let window_secs = rest_secs.min(WINDOW_SECS);
        // Where whisper.cpp would go on: its last timestamp, or the end of
        // the window when it decoded nothing after the window's first second.
        let last_end = heard
            .last()
            .map_or(0.0, |s| s.end_secs - offset as f64 * SECS_PER_SAMPLE);
        segments.extend(heard);
        let next_secs = if last_end >= 1.0 {
            last_end.min(window_secs)
        } else {
            window_secs
        };
        offset += ((next_secs / SECS_PER_SAMPLE) as usize).max(1);
        let tail = &samples[offset.min(samples.len())..];
        if tail.len() < audio::WHISPER_RATE as usize / 10 || speech::speech_spans(tail).is_empty() {
            return Ok(segments);
        }
    }
}

/// whisper.cpp's encoder-begin hook for [`timed_windows`]: lets the first
/// window of a run through and ends the run before a second.
unsafe extern "C" fn first_window_only(
    _context: *mut whisper_rs::WhisperSysContext,
    _state: *mut whisper_rs::WhisperSysState,
    windows_begun: *mut std::ffi::c_void,
) -> bool {
    // SAFETY: `timed_windows` passes a pointer to its `u32` counter, alive
    // for the whole run; whisper.cpp calls this from the running thread.
    let windows_begun = unsafe { &mut *windows_begun.cast::<u32>() };
    *windows_begun += 1;
    *windows_begun == 1
}

/// whisper.cpp prints to stderr by default; send it to `tracing` instead.
fn route_logs_to_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        whisper_rs::install_logging_hooks();
        // SAFETY: `whisper_log` is a C-callable function that never unwinds
        // and keeps no pointer it is given.
        unsafe { whisper_rs::set_log_callback(Some(whisper_log), std::ptr::null_mut()) };
    });
}

/// whisper.cpp's log lines as `tracing` events. The error it logs when
/// [`first_window_only`] ends a run on purpose is not an error here.
unsafe extern "C" fn whisper_log(
    level: whisper_rs::whisper_rs_sys::ggml_log_level,
    text: *const std::ffi::c_char,
    _user_data: *mut std::ffi::c_void,
) {
    use whisper_rs::whisper_rs_sys::{
        ggml_log_level_GGML_LOG_LEVEL_ERROR as ERROR, ggml_log_level_GGML_LOG_LEVEL_INFO as INFO,
        ggml_log_level_GGML_LOG_LEVEL_WARN as WARN,
    };

    if text.is_null() {
        return;
    }
    // SAFETY: whisper.cpp passes a NUL-terminated string, valid for the call.
    let text = unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy();
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    match level {
        ERROR if text.contains("encoder_begin_callback returned false") => {
            tracing::debug!(target: "whisper", "{text}");
        }
        ERROR => tracing::error!(target: "whisper", "{text}"),
        WARN => tracing::warn!(target: "whisper", "{text}"),
        INFO => tracing::info!(target: "whisper", "{text}"),
        _ => tracing::debug!(target: "whisper", "{text}"),
    }
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
