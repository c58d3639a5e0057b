//! Finding where the speech is, so the encoder never pays for silence.
//!
//! whisper's encoder costs the same for a second of silence as for a
//! second of speech. A voice note often ends in seconds of room noise, and
//! people pause between sentences; [`compact`] keeps every stretch of
//! speech (with a margin around it) and shortens long pauses to a short
//! one, so whisper still hears a sentence break. [`Compacted::to_original`]
//! maps times in the shortened audio back to the upload's clock, so
//! segment timestamps stay true.
//!
//! The detector is deliberately conservative: it compares short-frame
//! energy with both the recording's loudest frames and its noise floor,
//! and only a pause longer than [`MIN_CUT_SECS`] is shortened. Audio it
//! cannot read as speech at all (every frame below [`SILENCE_FLOOR`]) is
//! reported as empty, so pure silence costs nothing and cannot make whisper
//! invent words.

use std::ops::Range;

use crate::audio::WHISPER_RATE;

/// Energy frames of 20 ms.
const FRAME: usize = WHISPER_RATE as usize / 50;

/// RMS below which a frame is silent whatever the recording (-60 dBFS).
pub const SILENCE_FLOOR: f32 = 0.001;

/// A frame is speech when it is within 35 dB of the loudest frames...
const BELOW_PEAK: f32 = 0.0178;
/// ...and at least 6 dB over the noise floor.
const OVER_NOISE: f32 = 2.0;
/// A noise floor within 10 dB of the peak means there is no silence.
const NO_QUIET_PART: f32 = 0.316;

/// Speech keeps this much audio on each side of it.
const MARGIN_SECS: f64 = 0.25;

/// Pauses longer than this (margins aside) are cut down to the two
/// margins and [`KEPT_PAUSE_SECS`] of silence between them.
pub const MIN_CUT_SECS: f64 = 0.5;
const KEPT_PAUSE_SECS: f64 = 0.2;

/// Audio with its long pauses removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Compacted {
    /// The kept audio, in order.
    pub samples: Vec<f32>,
    /// Each kept piece: where it starts in `samples` and in the original.
    pieces: Vec<Piece>,
    original_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    compacted_start: usize,
    original_start: usize,
    len: usize,
}

impl Compacted {
    /// No speech was found.
    pub fn is_silent(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Seconds of audio that were dropped.
    pub fn removed_secs(&self) -> f64 {
        (self.original_len - self.samples.len()) as f64 / f64::from(WHISPER_RATE)
    }

    /// A time in the compacted audio as a time in the original.
    pub fn to_original(&self, secs: f64) -> f64 {
        let rate = f64::from(WHISPER_RATE);
        let at = (secs.max(0.0) * rate) as usize;
        let piece = self
            .pieces
            .iter()
            .rev()
            .find(|p| p.compacted_start <= at)
            .or(self.pieces.first());
        match piece {
            Some(p) => {
                let into = (at - p.compacted_start.min(at)).min(p.len);
                (p.original_start + into) as f64 / rate
            }
            None => secs,
        }
    }
}

/// The stretches of `samples` (16 kHz mono) that hold speech, margins
/// included, in order and not overlapping.
pub fn speech_spans(samples: &[f32]) -> Vec<Range<usize>> {
    let energies: Vec<f32> = samples.chunks(FRAME).map(rms).collect();
    let Some(&peak) = energies.iter().max_by(|a, b| a.total_cmp(b)) else {
        return Vec::new();
    };
    if peak < SILENCE_FLOOR {
        return Vec::new();
    }
    let mut sorted = energies.clone();
    sorted.sort_by(f32::total_cmp);
    let noise = sorted[sorted.len() / 10];
    if noise > peak * NO_QUIET_PART {
        // Less than 10 dB between the quietest tenth and the loudest:
        // nothing here is recognisably silence (continuous speech, or
        // speech over loud noise), so all of it is kept.
        return std::iter::once(0..samples.len()).collect();
    }
    let threshold = SILENCE_FLOOR.max(peak * BELOW_PEAK).max(noise * OVER_NOISE);

    let margin = (MARGIN_SECS * f64::from(WHISPER_RATE)) as usize;
    let mut spans: Vec<Range<usize>> = Vec::new();
    for (i, &energy) in energies.iter().enumerate() {
        if energy < threshold {
            continue;
        }
        let start = (i * FRAME).saturating_sub(margin);
        let end = ((i + 1) * FRAME + margin).min(samples.len());
        match spans.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => spans.push(start..end),
        }
    }
    spans
}

/// `samples` with silence before the first and after the last speech
/// removed and every pause longer than [`MIN_CUT_SECS`] shortened.
pub fn compact(samples: &[f32]) -> Compacted {
    let spans = speech_spans(samples);
    let rate = f64::from(WHISPER_RATE);
    let min_cut = (MIN_CUT_SECS * rate) as usize;
    let kept_pause = (KEPT_PAUSE_SECS * rate) as usize;

    // Merge spans whose pause is too short to cut.
    let mut kept: Vec<Range<usize>> = Vec::new();
    for span in spans {
        match kept.last_mut() {
            Some(last) if span.start - last.end < min_cut => last.end = span.end,
            _ => kept.push(span),
        }
    }

    let mut out = Compacted {
        samples: Vec::with_capacity(kept.iter().map(|s| s.len() + kept_pause).sum()),
        pieces: Vec::with_capacity(kept.len()),
        original_len: samples.len(),
    };
    for (i, span) in kept.iter().enumerate() {
        if i > 0 {
            // The shortened pause: the margins on both sides already hold
            // half a second of the room; a little silence between them
            // keeps the break a clear one.
            out.samples.extend(std::iter::repeat_n(0.0, kept_pause));
        }
        out.pieces.push(Piece {
            compacted_start: out.samples.len(),
            original_start: span.start,
            len: span.len(),
        });
        out.samples.extend_from_slice(&samples[span.clone()]);
    }
    out
}

fn rms(frame: &[f32]) -> f32 {
    let sum: f32 = frame.iter().map(|s| s * s).sum();
    (sum / frame.len() as f32).sqrt()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    const RATE: usize = WHISPER_RATE as usize;

    /// A 220 Hz tone standing in for speech, over optional noise.
    fn tone(secs: f64, amplitude: f32) -> Vec<f32> {
        (0..(secs * RATE as f64) as usize)
            .map(|i| amplitude * (i as f32 * 220.0 * std::f32::consts::TAU / RATE as f32).sin())
            .collect()
    }

    fn quiet(secs: f64, amplitude: f32) -> Vec<f32> {
        // Deterministic pseudo-noise.
        let mut x: u32 = 12345;
        (0..(secs * RATE as f64) as usize)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                amplitude * ((x >> 16) as f32 / 32768.0 - 1.0)
            })
            .collect()
    }

    fn concat(parts: &[Vec<f32>]) -> Vec<f32> {
        parts.concat()
    }

    #[test]
    fn digital_silence_and_empty_input_hold_no_speech() {
        assert!(compact(&[]).is_silent());
        assert!(compact(&vec![0.0; RATE * 3]).is_silent());
        assert!(compact(&quiet(3.0, 0.0005)).is_silent());
    }

    #[test]
    fn trailing_and_leading_silence_is_cut_with_a_margin() {
        let audio = concat(&[quiet(2.0, 0.002), tone(3.0, 0.3), quiet(8.0, 0.002)]);
        let c = compact(&audio);
        let secs = c.samples.len() as f64 / RATE as f64;
        assert!((3.4..=3.6).contains(&secs), "kept {secs} s");
        assert!((c.removed_secs() - (13.0 - secs)).abs() < 1e-9);
        // The speech starts 0.25 s into the kept audio, 2 s into the upload.
        assert!(
            (c.to_original(0.25) - 2.0).abs() < 0.03,
            "{}",
            c.to_original(0.25)
        );
    }

    #[test]
    fn long_pauses_are_shortened_and_short_ones_kept() {
        let audio = concat(&[
            tone(1.0, 0.3),
            quiet(0.6, 0.0), // short: kept whole
            tone(1.0, 0.3),
            quiet(4.0, 0.0), // long: shortened
            tone(1.0, 0.3),
        ]);
        let c = compact(&audio);
        let secs = c.samples.len() as f64 / RATE as f64;
        // 3 s of tone + the 0.6 s pause + margins (0.25 + 0.25) + 0.2 s.
        assert!((4.2..=4.4).contains(&secs), "kept {secs} s");
        // The last tone begins 6.6 s into the upload.
        let last_start = 1.0 + 0.6 + 1.0 + 0.25 + 0.2 + 0.25;
        assert!(
            (c.to_original(last_start) - 6.6).abs() < 0.03,
            "{}",
            c.to_original(last_start)
        );
    }

    #[test]
    fn quiet_speech_in_a_quiet_room_is_kept() {
        // Speech at -40 dBFS over noise at -60 dBFS.
        let audio = concat(&[quiet(1.0, 0.0017), tone(2.0, 0.014), quiet(1.0, 0.0017)]);
        let c = compact(&audio);
        assert!(!c.is_silent());
        let secs = c.samples.len() as f64 / RATE as f64;
        assert!((2.4..=2.6).contains(&secs), "kept {secs} s");
    }

    #[test]
    fn continuous_sound_is_kept_whole() {
        let audio = tone(5.0, 0.3);
        let c = compact(&audio);
        assert_eq!(c.samples, audio);
        assert_eq!(c.to_original(2.0), 2.0);
    }
}
