//! Diagnostics: `tracing` to stderr, and for `jarvis up` also to
//! `<data>/logs/launcher.log` (rotated daily, a week kept). The core's and
//! Redis' output go to `core.log` and `redis.log` beside it, rotated by size
//! at each launch.

use std::path::Path;

use jarvis_protocol::env;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Child logs larger than this are rotated at launch.
const ROTATE_BYTES: u64 = 5 * 1024 * 1024;
/// Rotated child logs kept (`core.1.log` ... `core.3.log`).
const ROTATE_KEEP: u32 = 3;

/// Terminal-only diagnostics (every command but `up`).
pub fn init_terminal() {
    let _ = tracing_subscriber::registry()
        .with(terminal_layer())
        .try_init();
}

/// Terminal plus `<logs>/launcher.log`.
pub fn init_with_file(logs_dir: &Path) {
    let file = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("launcher")
        .filename_suffix("log")
        .max_log_files(7)
        .build(logs_dir);
    let file_layer = file.ok().map(|writer| {
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_filter(filter("info"))
    });
    let _ = tracing_subscriber::registry()
        .with(terminal_layer())
        .with(file_layer)
        .try_init();
}

/// Renames `<name>.log` to `<name>.1.log` (shifting older ones) when it has
/// grown past the limit.
pub fn rotate_if_large(logs_dir: &Path, name: &str) {
    let current = logs_dir.join(format!("{name}.log"));
    let Ok(meta) = std::fs::metadata(&current) else {
        return;
    };
    if meta.len() < ROTATE_BYTES {
        return;
    }
    for n in (1..ROTATE_KEEP).rev() {
        let from = logs_dir.join(format!("{name}.{n}.log"));
        let to = logs_dir.join(format!("{name}.{}.log", n + 1));
        let _ = std::fs::rename(from, to);
    }
    if let Err(e) = std::fs::rename(&current, logs_dir.join(format!("{name}.1.log"))) {
        tracing::warn!(file = %current.display(), "could not rotate log: {e}");
    }
}

use tracing_subscriber::Layer as _;

fn terminal_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter("warn"))
}

fn filter(default: &str) -> EnvFilter {
    std::env::var(env::LOG)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default))
}
