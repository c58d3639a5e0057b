//! The patched quantized matmul (third_party/candle-core: four weight rows
//! per task, one parallel loop for all prompt rows) against a plain f32
//! matmul of the same dequantized weights, for every shape class it has:
//! one row (decoding) and several (a prompt), weight rows in whole groups
//! of four and with a partial last group.

#![expect(clippy::unwrap_used, reason = "tests")]

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module as _, Tensor};

/// Deterministic values in [-1, 1) with some large ones, as activations and
/// weights have.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            if i % 97 == 0 { v * 8.0 } else { v }
        })
        .collect()
}

#[test]
fn q8_0_matmul_matches_the_dequantized_product_for_every_shape() {
    let device = Device::Cpu;
    let k = 256;
    for n in [1, 3, 4, 5, 8, 33, 64, 67, 1000] {
        let weights = Tensor::from_vec(values(n * k, n as u64), (n, k), &device).unwrap();
        let quantized = QTensor::quantize(&weights, GgmlDType::Q8_0).unwrap();
        let dequantized = quantized.dequantize(&device).unwrap();
        let matmul = QMatMul::from_qtensor(quantized).unwrap();
        for m in [1, 2, 7] {
            let xs = Tensor::from_vec(values(m * k, 1000 + m as u64), (m, k), &device).unwrap();
            let got: Vec<Vec<f32>> = matmul.forward(&xs).unwrap().to_vec2().unwrap();
            let want: Vec<Vec<f32>> = xs
                .matmul(&dequantized.t().unwrap())
                .unwrap()
                .to_vec2()
                .unwrap();
            let scale: Vec<f32> = xs
                .abs()
                .unwrap()
                .matmul(&dequantized.abs().unwrap().t().unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!((got.len(), got[0].len()), (m, n), "shape m={m} n={n}");
            for (row, (got_row, want_row)) in got.iter().zip(&want).enumerate() {
                for (col, (g, w)) in got_row.iter().zip(want_row).enumerate() {
                    // The activations are quantized to 8 bits too.
                    let tolerance = 0.01 * scale[row * n + col] + 1e-4;
                    assert!(
                        (g - w).abs() <= tolerance,
                        "m={m} n={n} at ({row}, {col}): {g} vs {w}"
                    );
                }
            }
        }
    }
}
