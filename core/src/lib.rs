//! `jarvis-core`, the brain of Jarvis.
//!
//! An axum server over Redis memory and local models (chat through
//! `jarvis-llm`, speech-to-text through `jarvis-stt`, both loaded in the
//! background by [`engines`]). The launcher starts it; it never starts
//! anything itself. Invariants:
//! - Configuration comes only from the environment variables in
//!   [`jarvis_protocol::env`] ([`config::CoreConfig::from_env`]).
//! - It never creates OS folders, never starts Redis and never touches the
//!   OS on its own: the data folder must already exist.
//! - It serves HTTP before Redis is reachable: `/healthz` answers at once,
//!   `/readyz` says 503 until Redis answers, and the memory layer keeps
//!   retrying (and reconnects when Redis restarts).
//! - Desktop mode (the default) listens on loopback only, and every
//!   request must pass the checks in [`http::guard`]: a `Host` of the
//!   core's own address, no foreign `Origin`, and (all but the health
//!   routes) the per-launch bearer token.
//! - Server mode (`JARVIS_DEPLOYMENT=server`) is the same core as one of N
//!   stateless replicas: users' API keys instead of the token, each user's
//!   memory in its own key space ([`memory::KeySpace`]), rate limits,
//!   turn events and cancels between replicas ([`relay`]), never an
//!   action, and a graceful [`drain`] on stop. Nothing about a request
//!   depends on which replica served the one before.
//! - [`memory`] is the only code that knows Redis keys; every write the API
//!   acknowledges is in Redis before the answer.
//! - A missing or broken model never stops the core: the requests that need
//!   it get a 503 (`model_not_installed`, `model_loading`, `model_failed`)
//!   and everything else keeps working.
//! - Models are read from `JARVIS_MODELS_DIR` only, fully offline.
//!
//! Layers run one way: [`http`] (routes over its leaf modules
//! `http::state` and `http::error`) above the domain ([`chat`], [`actions`], [`prompt`],
//! [`engines`], [`models`], [`memory`]), which never imports the HTTP
//! layer; [`config`] and [`listen`] set the process up.

pub mod actions;
pub mod chat;
pub mod config;
pub mod engines;
pub mod http;
pub mod listen;
pub mod memory;
pub mod model_actions;
pub mod models;
pub mod prompt;
pub mod relay;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use http::{AppState, app};

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A free-form note baked in at build time (`JARVIS_BUILD_NOTE`), logged at
/// start-up; release builds put the commit here. The update benchmark uses
/// it to make two real builds that differ by a small code change.
pub const BUILD_NOTE: &str = match option_env!("JARVIS_BUILD_NOTE") {
    Some(note) => note,
    None => "development build",
};

/// Serves the core on an already bound `listener` until `shutdown`
/// completes, then drains ([`drain`]) and finishes the requests in flight.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = Arc::clone(&state);
    let shutdown = async move {
        shutdown.await;
        drain(&draining).await;
    };
    // Streamed tokens and events are small writes: send each at once
    // instead of waiting for Nagle's algorithm (up to 40 ms a token).
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY: {e}");
        }
    });
    let app = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Server mode's graceful stop: `/readyz` turns 503 (the orchestrator
/// stops sending traffic), no new turn starts, and the running turns get
/// up to the drain time to finish; those still running then are stopped,
/// each keeping what it said. Requests keep being served meanwhile.
pub async fn drain(state: &AppState) {
    state.start_draining();
    let (Some(relay), http::state::Access::Server(settings)) = (&state.relay, &state.access) else {
        return;
    };
    let mut running = relay.running();
    let turns = *running.borrow();
    tracing::info!(turns, limit = ?settings.drain, "draining");
    let finished = tokio::time::timeout(settings.drain, running.wait_for(|n| *n == 0))
        .await
        .is_ok();
    if !finished {
        tracing::warn!(
            turns = *running.borrow(),
            "drain time is up; stopping the turns still running"
        );
        relay.cancel_all();
        // Each stopped turn stores its partial answer before it ends.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            running.wait_for(|n| *n == 0),
        )
        .await;
    }
    tracing::info!("drained");
}
