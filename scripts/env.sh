# Sourced by the project scripts: one cargo target folder shared by every
# run on this machine (CI clones included), so nothing is built twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/jarvis/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
