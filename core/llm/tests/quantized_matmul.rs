//! The patched quantized matmul (third_party/candle-core: four weight rows
//! per task, one parallel loop for all prompt rows) against a plain f32
//! matmul of the same dequantized weights, for every shape class it has:
//! one row (decoding) and several (a prompt), weight rows in whole groups
//! of four and with a partial last group. And the quantisation of the
//! activations (AVX2 in the x86-64-v3 build) against the scalar rule,
//! byte for byte.

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

/// The scalar rule of `quantize_row_q8_0`: per block of 32, d = max|x|/127
/// stored as f16, q = round(x / d) with halves away from zero.
fn q8_0_reference(xs: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for block in xs.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        bytes.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        bytes.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
    }
    bytes
}

#[test]
fn q8_0_quantisation_matches_the_scalar_rule_byte_for_byte() {
    // Exact halves (the block's max is 127, so the scale is exactly 1),
    // values either side of them, zeros, and ordinary values.
    let mut ties = vec![
        127.0,
        -0.5,
        0.5,
        1.5,
        -1.5,
        2.5,
        -2.5,
        126.5,
        -126.5,
        0.499_999_97,
        -0.499_999_97,
        0.0,
        -0.0,
        3.499_999_8,
        3.500_000_2,
        -63.5,
    ];
    ties.resize(32, 0.25);
    let mut xs = ties;
    xs.extend(values(32 * 63, 7));
    xs.extend([0.0; 32]);
    let device = Device::Cpu;
    let tensor = Tensor::from_vec(xs.clone(), (1, xs.len()), &device).unwrap();
    let quantized = QTensor::quantize(&tensor, GgmlDType::Q8_0).unwrap();
    let got = quantized.data().unwrap();
    let want = q8_0_reference(&xs);
    assert_eq!(got.len(), want.len());
    for (block, (g, w)) in got.chunks(34).zip(want.chunks(34)).enumerate() {
        assert_eq!(g, w, "block {block}");
    }
}
