//! Which build of the core this CPU runs, and so which weight formats have
//! fast kernels here. The launcher starts `jarvis-core-x86-64-v3` where
//! [`runs_x86_64_v3`] holds; the model registry keeps Q4_1 chat models as
//! shipped only there (the v3 core has an AVX2 Q4_1 kernel; elsewhere
//! they are re-quantised to Q8_0, which has SIMD kernels everywhere).

/// Whether this CPU runs x86-64-v3 code (AVX, AVX2, BMI1/2, F16C, FMA,
/// LZCNT, MOVBE, XSAVE).
pub fn runs_x86_64_v3() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("f16c")
            && std::arch::is_x86_feature_detected!("lzcnt")
            && std::arch::is_x86_feature_detected!("movbe")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
