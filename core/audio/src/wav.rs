//! Getting uploaded audio into the form whisper wants: 16 kHz mono f32.

use std::io::Cursor;

/// The sample rate whisper models take.
pub const WHISPER_RATE: u32 = 16_000;

/// Longest audio one request may carry.
pub const MAX_DURATION_SECS: f64 = 30.0 * 60.0;

/// Why audio was refused. Every variant is the client's fault (a 4xx).
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("the upload is not a WAV file ({0}); send 16-bit, 24-bit, 32-bit or float PCM WAV")]
    NotWav(String),
    #[error("unsupported WAV encoding: {0}; send 8/16/24/32-bit integer or 32-bit float PCM")]
    Unsupported(String),
    #[error("the audio is empty")]
    Empty,
    #[error("the audio is {secs:.0} s long; the limit is {limit:.0} s")]
    TooLong { secs: f64, limit: f64 },
}

/// Decoded audio, already mono and at [`WHISPER_RATE`].
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f32>,
    /// What the upload was.
    pub source_rate: u32,
    pub source_channels: u16,
}

impl Audio {
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / f64::from(WHISPER_RATE)
    }
}

/// Decodes a WAV file of any common rate, channel count and PCM encoding,
/// mixes it down to mono and resamples it to 16 kHz.
pub fn decode_wav(bytes: &[u8]) -> Result<Audio, AudioError> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
        hound::Error::Unsupported => {
            AudioError::Unsupported("compressed or extensible format".into())
        }
        other => AudioError::NotWav(other.to_string()),
    })?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate < 1000 || spec.sample_rate > 384_000 {
        return Err(AudioError::Unsupported(format!(
            "{} channels at {} Hz",
            spec.channels, spec.sample_rate
        )));
    }
    let frames = reader.duration() as f64;
    let secs = frames / f64::from(spec.sample_rate);
    if secs > MAX_DURATION_SECS {
        return Err(AudioError::TooLong {
            secs,
            limit: MAX_DURATION_SECS,
        });
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| AudioError::NotWav(e.to_string()))?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| AudioError::NotWav(e.to_string()))?
        }
        (format, bits) => {
            return Err(AudioError::Unsupported(format!("{bits}-bit {format:?}")));
        }
    };
    let channels = usize::from(spec.channels);
    let mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.is_empty() {
        return Err(AudioError::Empty);
    }
    Ok(Audio {
        samples: resample(&mono, spec.sample_rate, WHISPER_RATE),
        source_rate: spec.sample_rate,
        source_channels: spec.channels,
    })
}

/// Band-limited resampling with a Hann-windowed sinc kernel: enough for
/// speech recognition, exact when the rates are equal.
///
/// Rates in a small ratio to each other (44.1 kHz → 16 kHz is 160/441)
/// use a table of the kernel for each of the few output phases, so a
/// 30-second upload costs milliseconds; other ratios compute the kernel
/// as they go.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let kernel = Kernel::new(from, to);
    let out_len = (input.len() as f64 * kernel.ratio).round() as usize;
    let divisor = gcd(from, to);
    let (up, down) = ((to / divisor) as usize, (from / divisor) as usize);
    if up <= MAX_PHASES {
        resample_polyphase(input, &kernel, up, down, out_len)
    } else {
        (0..out_len)
            .map(|n| {
                let center = n as f64 / kernel.ratio;
                let first = (center - kernel.half_width).ceil().max(0.0) as usize;
                let last = ((center + kernel.half_width).floor() as usize).min(input.len() - 1);
                let (mut acc, mut norm) = (0.0f64, 0.0f64);
                for (k, sample) in input.iter().enumerate().take(last + 1).skip(first) {
                    let weight = kernel.weight(k as f64 - center);
                    acc += f64::from(*sample) * weight;
                    norm += weight;
                }
                normalised(acc, norm)
            })
            .collect()
    }
}

/// Output phases up to which the kernel is tabulated (16 kHz from any
/// rate that is a multiple of 25 Hz stays under it).
const MAX_PHASES: usize = 1024;

struct Kernel {
    ratio: f64,
    cutoff: f64,
    /// In input samples.
    half_width: f64,
}

impl Kernel {
    const HALF_TAPS: f64 = 16.0;

    fn new(from: u32, to: u32) -> Self {
        let ratio = f64::from(to) / f64::from(from);
        // Low-pass below the lower of the two Nyquist frequencies.
        let cutoff = ratio.min(1.0) * 0.95;
        Self {
            ratio,
            cutoff,
            half_width: Self::HALF_TAPS / cutoff,
        }
    }

    /// The windowed sinc at `x` input samples from the output instant.
    fn weight(&self, x: f64) -> f64 {
        if x.abs() > self.half_width {
            return 0.0;
        }
        let window = 0.5 + 0.5 * (std::f64::consts::PI * x / self.half_width).cos();
        let arg = std::f64::consts::PI * self.cutoff * x;
        let sinc = if arg.abs() < 1e-9 {
            1.0
        } else {
            arg.sin() / arg
        };
        sinc * window
    }
}

/// Output sample `n` sits at input position `n * down / up`: its integer
/// part moves along the input, its fraction is one of `up` phases, each
/// with its own row of weights.
fn resample_polyphase(
    input: &[f32],
    kernel: &Kernel,
    up: usize,
    down: usize,
    out_len: usize,
) -> Vec<f32> {
    let reach = kernel.half_width.ceil() as usize + 1;
    let taps = 2 * reach + 1;
    // Row p holds the weights of input samples base - reach ..= base + reach
    // for an output at base + p / up.
    let table: Vec<f32> = (0..up)
        .flat_map(|phase| {
            let fraction = phase as f64 / up as f64;
            (0..taps).map(move |t| kernel.weight(t as f64 - reach as f64 - fraction) as f32)
        })
        .collect();
    let row_sums: Vec<f32> = table
        .chunks_exact(taps)
        .map(|row| row.iter().sum())
        .collect();
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let position = n * down;
        let (base, phase) = (position / up, position % up);
        let row = &table[phase * taps..(phase + 1) * taps];
        if base >= reach && base + reach < input.len() {
            // Away from the edges every tap is there: a plain dot product.
            let window = &input[base - reach..=base + reach];
            out.push(dot(window, row) / row_sums[phase]);
            continue;
        }
        let first = base.saturating_sub(reach);
        let last = (base + reach).min(input.len() - 1);
        if first > last {
            out.push(0.0);
            continue;
        }
        let offset = first + reach - base; // where `first` falls in the row
        let (mut acc, mut norm) = (0.0f32, 0.0f32);
        for (sample, weight) in input[first..=last].iter().zip(&row[offset..]) {
            acc += sample * weight;
            norm += weight;
        }
        out.push(normalised(f64::from(acc), f64::from(norm)));
    }
    out
}

/// `a · b` over eight independent sums, which the compiler turns into
/// SIMD (a single running sum would pin it to one lane).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn normalised(acc: f64, norm: f64) -> f32 {
    if norm.abs() > 1e-9 {
        (acc / norm) as f32
    } else {
        0.0
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;

    fn wav(rate: u32, channels: u16, bits: u16, float: bool, frames: &[f32]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut buf = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        for s in frames {
            for _ in 0..channels {
                if float {
                    w.write_sample(*s).unwrap();
                } else {
                    let max = (1i64 << (bits - 1)) - 1;
                    w.write_sample((f64::from(*s) * max as f64) as i32).unwrap();
                }
            }
        }
        w.finalize().unwrap();
        buf.into_inner()
    }

    fn tone(rate: u32, hz: f64, secs: f64) -> Vec<f32> {
        (0..(f64::from(rate) * secs) as usize)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as f32
            })
            .collect()
    }

    /// Strength of `hz` in `x` (a single-bin DFT), normalised.
    fn power_at(x: &[f32], rate: u32, hz: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, s) in x.iter().enumerate() {
            let phase = 2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate);
            re += f64::from(*s) * phase.cos();
            im += f64::from(*s) * phase.sin();
        }
        (re * re + im * im).sqrt() / x.len() as f64
    }

    #[test]
    fn every_common_format_becomes_16k_mono() {
        for (rate, channels, bits, float) in [
            (16_000, 1, 16, false),
            (44_100, 2, 16, false),
            (48_000, 2, 24, false),
            (8_000, 1, 8, false),
            (22_050, 1, 32, true),
            (32_000, 6, 32, false),
        ] {
            let bytes = wav(rate, channels, bits, float, &tone(rate, 440.0, 0.5));
            let audio = decode_wav(&bytes).unwrap();
            assert_eq!((audio.source_rate, audio.source_channels), (rate, channels));
            assert!((audio.duration_secs() - 0.5).abs() < 0.01, "{rate}");
            // The 440 Hz tone survives, at about its amplitude (0.25 = 0.5/2).
            let p = power_at(&audio.samples, WHISPER_RATE, 440.0);
            assert!(
                (p - 0.25).abs() < 0.03,
                "{rate} Hz {channels} ch {bits} bit: {p}"
            );
        }
    }

    #[test]
    fn frequencies_above_8k_are_removed_when_downsampling() {
        let audio = decode_wav(&wav(48_000, 1, 16, false, &tone(48_000, 12_000.0, 0.5))).unwrap();
        let rms = (audio
            .samples
            .iter()
            .map(|s| f64::from(*s).powi(2))
            .sum::<f64>()
            / audio.samples.len() as f64)
            .sqrt();
        assert!(rms < 0.02, "aliasing left {rms}");
    }

    #[test]
    fn the_tabulated_and_the_direct_kernels_agree() {
        // 44.1 kHz → 16 kHz takes the table (160 phases); compare it with
        // the kernel computed sample by sample.
        let input = tone(44_100, 440.0, 0.2);
        let fast = resample(&input, 44_100, 16_000);
        let kernel = Kernel::new(44_100, 16_000);
        assert_eq!(fast.len(), 3200);
        for (n, got) in fast.iter().enumerate().step_by(7) {
            let center = n as f64 / kernel.ratio;
            let (mut acc, mut norm) = (0.0, 0.0);
            for (k, sample) in input.iter().enumerate() {
                let weight = kernel.weight(k as f64 - center);
                acc += f64::from(*sample) * weight;
                norm += weight;
            }
            let want = normalised(acc, norm);
            assert!((got - want).abs() < 1e-4, "sample {n}: {got} vs {want}");
        }
        // A rate with no small ratio to 16 kHz takes the direct path.
        let odd = resample(&tone(44_101, 440.0, 0.5), 44_101, 16_000);
        let p = power_at(&odd, WHISPER_RATE, 440.0);
        assert!((p - 0.25).abs() < 0.03, "{p}");
    }

    #[test]
    fn bad_uploads_get_clear_errors() {
        assert!(matches!(
            decode_wav(b"ID3\x03 not a wav"),
            Err(AudioError::NotWav(_))
        ));
        assert!(matches!(decode_wav(b""), Err(AudioError::NotWav(_))));
        assert!(matches!(
            decode_wav(&wav(16_000, 1, 16, false, &[])),
            Err(AudioError::Empty)
        ));
        let mut truncated = wav(16_000, 1, 16, false, &tone(16_000, 440.0, 0.1));
        truncated.truncate(60);
        assert!(decode_wav(&truncated).is_err());
    }
}
