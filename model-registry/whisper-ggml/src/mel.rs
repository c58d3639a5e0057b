//! The mel filterbank whisper was trained with: librosa's
//! `filters.mel(sr=16000, n_fft=400, n_mels=N)` (Slaney scale and area
//! normalisation), computed in f64 and stored as f32, as OpenAI ships it.

/// Sample rate whisper models expect.
pub const SAMPLE_RATE: f64 = 16_000.0;
/// FFT window whisper uses.
pub const N_FFT: usize = 400;

/// `n_mels × (N_FFT/2 + 1)` weights, row-major.
pub fn filterbank(n_mels: usize) -> Vec<f32> {
    let n_freqs = N_FFT / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_freqs)
        .map(|k| k as f64 * SAMPLE_RATE / N_FFT as f64)
        .collect();
    let (min_mel, max_mel) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2.0));
    let mel_points: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(min_mel + (max_mel - min_mel) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = Vec::with_capacity(n_mels * n_freqs);
    for i in 0..n_mels {
        let (left, center, right) = (mel_points[i], mel_points[i + 1], mel_points[i + 2]);
        let norm = 2.0 / (right - left);
        for &f in &fft_freqs {
            let lower = (f - left) / (center - left);
            let upper = (right - f) / (right - center);
            weights.push((lower.min(upper).max(0.0) * norm) as f32);
        }
    }
    weights
}

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        mel * F_SP
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn matches_librosa_at_known_points() {
        // Values of librosa.filters.mel(sr=16000, n_fft=400, n_mels=80).
        let bank = filterbank(80);
        assert_eq!(bank.len(), 80 * 201);
        // Row 0 peaks at bin 1 (25 Hz) with 0.02486259.
        assert!((bank[1] - 0.024_862_59).abs() < 1e-6, "{}", bank[1]);
        assert_eq!(bank[0], 0.0);
        // Every row is a triangle: non-negative, and not all zero.
        for row in bank.chunks(201) {
            assert!(row.iter().all(|w| *w >= 0.0));
            assert!(row.iter().any(|w| *w > 0.0));
        }
    }
}
