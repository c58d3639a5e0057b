# Sourced by the project scripts: one cargo target folder shared by every
# run on this machine (CI clones included), so nothing is built twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jarvis/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# whisper.cpp's instruction sets for the two release cores (GGML_* options
# that whisper-rs-sys passes to cmake), used by build-release and bench.
# ggml turns AVX2, FMA, F16C and BMI2 ON when GGML_NATIVE is OFF unless
# told otherwise, so the baseline turns each one off by name.
# GGML_LLAMAFILE: llamafile's tiled matrix kernels (tinyBLAS) for the Q8_0
# and f16 products of whisper's encoder, about a quarter off a 30 s clip
# (BENCHMARKS.md, session 5).
JARVIS_WHISPER_BASELINE=(GGML_NATIVE=OFF GGML_SSE42=OFF GGML_AVX=OFF GGML_AVX2=OFF GGML_BMI2=OFF
    GGML_FMA=OFF GGML_F16C=OFF GGML_LLAMAFILE=OFF)
JARVIS_WHISPER_V3=(GGML_NATIVE=OFF GGML_SSE42=ON GGML_AVX=ON GGML_AVX2=ON GGML_BMI2=ON
    GGML_FMA=ON GGML_F16C=ON GGML_LLAMAFILE=ON)

# Records VALUE in the stamp file FILE (written atomically) and succeeds
# when the stamp held something else: "these whisper.cpp options changed"
# (build-release; whisper-rs-sys does not rebuild when GGML_* change, see
# CONTRIBUTING.md).
stamp_changed() {
    [ "$(cat "$1" 2>/dev/null)" != "$2" ] || return 1
    mkdir -p "$(dirname "$1")"
    printf '%s' "$2" >"$1.partial"
    mv "$1.partial" "$1"
}

# Every launcher built by the project's scripts trusts the public test
# release key (tests/fixtures/release-test-key), so tests sign their own
# releases; scripts/release sets the real keys and refuses this one. The
# key's text (not its path) is what goes in, so clones in other folders
# share the build.
if [ -z "${JARVIS_RELEASE_KEYS+set}" ] && [ -z "${JARVIS_RELEASE_KEYS_FILE:-}" ]; then
    JARVIS_RELEASE_KEYS="$(cat "$(dirname "${BASH_SOURCE[0]}")/../tests/fixtures/release-test-key/release.pub")"
    export JARVIS_RELEASE_KEYS
fi
