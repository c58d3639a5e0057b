//! Uploaded audio: the multipart transcription form ([`form`]) and the WAV
//! inside it, decoded to the 16 kHz mono samples whisper takes ([`wav`]).
//! Both read untrusted bytes; `tests/fuzz` fuzzes them.

pub mod form;
pub mod wav;

pub use form::{TranscriptionForm, discard, read_form};
pub use wav::{Audio, AudioError, MAX_DURATION_SECS, WHISPER_RATE, decode_wav, resample};
