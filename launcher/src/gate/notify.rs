//! Desktop notifications, where the OS offers them: `notify-send` (Linux,
//! libnotify), `osascript` (macOS), or `JARVIS_NOTIFY_COMMAND` (tests,
//! other desktops). Best effort: without one, the UI and the log still say
//! it.

use jarvis_protocol::env;

/// Shows `title` / `body`; returns whether a notifier was started.
pub fn notify(title: &str, body: &str) -> bool {
    let command =
        if let Some(program) = std::env::var_os(env::NOTIFY_COMMAND).filter(|v| !v.is_empty()) {
            let mut c = std::process::Command::new(program);
            c.arg(title).arg(body);
            c
        } else if cfg!(target_os = "macos") {
            // The texts go in as arguments of the script, never into its source.
            let mut c = std::process::Command::new("osascript");
            c.args([
                "-e",
                "on run argv",
                "-e",
                "display notification (item 2 of argv) with title (item 1 of argv)",
                "-e",
                "end run",
                title,
                body,
            ]);
            c
        } else if cfg!(unix) {
            let mut c = std::process::Command::new("notify-send");
            c.args(["--app-name=Jarvis", "--", title, body]);
            c
        } else {
            tracing::info!(title, body, "no desktop notifier on this OS");
            return false;
        };
    match crate::detached::spawn(command) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!("no desktop notification ({e}): {title}: {body}");
            false
        }
    }
}
