//! The stop request: Ctrl-C, on Unix `SIGTERM` and `SIGHUP` (a closed
//! terminal, a logout), and on every OS the UI server's `POST
//! /launcher/stop` (what `jarvis stop` and the UI's Quit send).

/// Set by [`request_stop`]; a permit waits for the next `recv`.
static STOP_REQUESTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Asks the running launcher to stop, as a signal would.
pub fn request_stop() {
    STOP_REQUESTED.notify_one();
}

/// Resolves when the person or `jarvis stop` asks Jarvis to stop.
pub struct ShutdownSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    pub fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use anyhow::Context as _;
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("could not handle SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("could not handle SIGINT")?,
                hangup: signal(SignalKind::hangup()).context("could not handle SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => {}
                _ = self.interrupt.recv() => {}
                _ = self.hangup.recv() => {}
                () = STOP_REQUESTED.notified() => {}
            }
        }
        #[cfg(not(unix))]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = STOP_REQUESTED.notified() => {}
            }
        }
        tracing::info!("stop requested");
    }
}
