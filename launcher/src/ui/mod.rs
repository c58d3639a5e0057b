//! The desktop surface: the UI a person uses, served by the launcher on
//! its own loopback port (the design's orchestrator owns the UI; the core
//! stays a headless API).
//!
//! Modules, bottom-up: [`state`] (what every request can reach),
//! [`auth`] (sign-in codes and sessions), [`guard`]
//! (Host, Origin, session and security headers on every request),
//! [`assets`] (the app version's `ui/` files), [`proxy`] (`/v1/...` to
//! the core with the token added here), [`downloads`] (catalog downloads
//! with pause, resume and cancel), [`api`] (`/launcher/...`: models,
//! updates, status, doctor), [`open`] (sign-in URLs for `jarvis open` and
//! a second launch, and the OS browser).

pub mod api;
pub mod assets;
pub mod auth;
pub mod downloads;
pub mod guard;
pub mod open;
pub mod proxy;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Query, State};
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get};
use axum::serve::ListenerExt as _;
use jarvis_dist::manifest::AppVersion;
use jarvis_model_registry::ModelStore;
use jarvis_protocol::env;
use serde::Deserialize;

use crate::gate::Gate;
use crate::paths::AppPaths;
use auth::Auth;
use downloads::Downloads;
pub use state::UiState;
use state::signin_url;

/// What `jarvis up` needs to start the UI.
#[derive(Debug)]
pub struct UiConfig {
    pub paths: AppPaths,
    pub app_dir: PathBuf,
    pub app_version: Option<AppVersion>,
    pub core_url: String,
    pub core_token: String,
    /// For the chat UI's "open the approvals" button.
    pub gate: Arc<Gate>,
}

/// A running UI server.
#[derive(Debug, Clone)]
pub struct Ui {
    state: Arc<UiState>,
}

impl Ui {
    /// Binds the UI's loopback port (`JARVIS_UI_PORT`, else a free one)
    /// and serves it in the background.
    pub async fn start(config: UiConfig) -> anyhow::Result<Self> {
        let (listener, port) = bind_loopback(env::UI_PORT, "the UI").await?;
        let assets_dir = std::env::var_os(env::UI_DIR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| config.app_dir.join("ui"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("could not create the UI's HTTP client")?;
        let catalog = crate::models::load_catalog()
            .await
            .map(Arc::new)
            .map_err(|e| format!("{e:#}"));
        let store = ModelStore::new(config.paths.models_dir.clone());
        let downloads = Downloads::new(store.clone(), &config.paths.data_dir);
        let state = Arc::new(UiState {
            auth: Auth::default(),
            allowed_hosts: vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")],
            cookie_name: guard::cookie_name(port),
            origin: format!("http://127.0.0.1:{port}"),
            assets_dir,
            core_url: config.core_url,
            core_token: config.core_token,
            http,
            paths: config.paths,
            store,
            catalog,
            downloads,
            app_version: config.app_version,
            gate: config.gate,
        });
        let app = router(Arc::clone(&state));
        // Streamed tokens are small writes: send each at once (no Nagle).
        let listener = listener.tap_io(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("could not set TCP_NODELAY on a UI connection: {e}");
            }
        });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("the UI server stopped: {e}");
            }
        });
        if let Ok(catalog) = &state.catalog {
            state.downloads.resume_interrupted(catalog);
        }
        Ok(Self { state })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> &str {
        &self.state.origin
    }

    /// The folder the UI's files are served from.
    pub fn assets_dir(&self) -> &std::path::Path {
        &self.state.assets_dir
    }

    /// A fresh one-time sign-in URL.
    pub fn signin_url(&self) -> String {
        signin_url(&self.state)
    }
}

/// A listener on 127.0.0.1 at the port the environment variable `var`
/// names, else a free one; `what` names it in errors.
pub async fn bind_loopback(
    var: &str,
    what: &str,
) -> anyhow::Result<(tokio::net::TcpListener, u16)> {
    let port = match std::env::var(var) {
        Ok(p) if !p.is_empty() => p
            .parse::<u16>()
            .with_context(|| format!("{var} must be a port number, not '{p}'"))?,
        _ => 0,
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .with_context(|| format!("could not listen for {what} on 127.0.0.1:{port}"))?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

fn router(state: Arc<UiState>) -> Router {
    Router::new()
        .route("/signin", get(signin))
        .merge(api::router())
        .route("/v1/{*rest}", any(proxy::forward))
        .fallback(assets::serve)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            guard::guard,
        ))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct SigninQuery {
    #[serde(default)]
    code: String,
}

/// `GET /signin?code=...`: trades a one-time code for a session cookie and
/// sends the browser to `/`, so the code leaves the address bar.
async fn signin(State(ui): State<Arc<UiState>>, Query(query): Query<SigninQuery>) -> Response {
    guard::signin_response(
        &ui.auth,
        &query.code,
        &ui.cookie_name,
        "<!doctype html><html lang=en><meta charset=utf-8><title>Jarvis: sign-in link expired</title>\
         <h1>This sign-in link has expired or was already used</h1>\
         <p>Open Jarvis again from its icon, or run <code>jarvis open</code>, for a fresh one.</p>",
    )
}
