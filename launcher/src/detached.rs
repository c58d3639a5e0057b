//! Helper programs the launcher starts and does not wait for (the OS
//! handler that opens a URL or file, the desktop notifier): no terminal
//! input or output, reaped on a thread of their own so none lingers as a
//! zombie.

use std::process::{Command, Stdio};

use jarvis_protocol::env;

/// The program that opens a URL or a file with its usual app: the OS's
/// handler (`open`, `rundll32 url.dll,FileProtocolHandler`, `xdg-open`) or
/// `JARVIS_OPEN_COMMAND`. The caller adds the target as one argument; no
/// shell ever reads it (`start` would, and treats `&` and `^` specially).
pub fn os_opener() -> Command {
    if let Some(program) = std::env::var_os(env::OPEN_COMMAND).filter(|v| !v.is_empty()) {
        Command::new(program)
    } else if cfg!(target_os = "macos") {
        Command::new("open")
    } else if cfg!(windows) {
        let mut c = Command::new("rundll32");
        c.arg("url.dll,FileProtocolHandler");
        c
    } else {
        Command::new("xdg-open")
    }
}

/// Starts `command` detached from our terminal; `Err` if it could not start.
pub fn spawn(mut command: Command) -> std::io::Result<()> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = command.spawn()?;
    std::thread::spawn(move || child.wait());
    Ok(())
}
