//! Desktop notifications, where the OS offers them: `notify-send` (Linux,
//! libnotify), `osascript` (macOS), a toast through Windows PowerShell
//! (Windows 10 and later), or `JARVIS_NOTIFY_COMMAND` (tests, other
//! desktops). Best effort: without one, the UI and the log still say it.

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
        } else if cfg!(windows) {
            // The texts go in through the environment, never into the
            // script's source; the toast's XML is built with escaping.
            let mut c = std::process::Command::new("powershell.exe");
            c.args([
                "-NoProfile",
                "-NonInteractive",
                "-WindowStyle",
                "Hidden",
                "-Command",
                WINDOWS_TOAST_SCRIPT,
            ]);
            c.env("JARVIS_TOAST_TITLE", title)
                .env("JARVIS_TOAST_BODY", body);
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

/// Shows a toast with the texts of `JARVIS_TOAST_TITLE` and
/// `JARVIS_TOAST_BODY`, as Windows PowerShell's own app (no registration
/// needed).
const WINDOWS_TOAST_SCRIPT: &str = r#"
$ErrorActionPreference = 'Stop'
[Windows.UI.Notifications.ToastNotificationManager, Windows.UI.Notifications, ContentType = WindowsRuntime] > $null
[Windows.Data.Xml.Dom.XmlDocument, Windows.Data.Xml.Dom.XmlDocument, ContentType = WindowsRuntime] > $null
$title = [System.Security.SecurityElement]::Escape($env:JARVIS_TOAST_TITLE)
$body = [System.Security.SecurityElement]::Escape($env:JARVIS_TOAST_BODY)
$xml = New-Object Windows.Data.Xml.Dom.XmlDocument
$xml.LoadXml("<toast><visual><binding template='ToastGeneric'><text>$title</text><text>$body</text></binding></visual></toast>")
$app = '{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\WindowsPowerShell\v1.0\powershell.exe'
[Windows.UI.Notifications.ToastNotificationManager]::CreateToastNotifier($app).Show([Windows.UI.Notifications.ToastNotification]::new($xml))
"#;
