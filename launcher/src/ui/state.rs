//! What every UI request can reach: the leaf the UI's modules share.

use std::path::PathBuf;
use std::sync::Arc;

use jarvis_dist::manifest::AppVersion;
use jarvis_model_registry::{Catalog, ModelStore};

use super::auth::Auth;
use super::downloads::Downloads;
use crate::gate::Gate;
use crate::paths::AppPaths;

/// Where `jarvis open` asks the running launcher for a sign-in code (with
/// the API token).
pub const SIGNIN_CODES_PATH: &str = "/launcher/signin-codes";
/// Where `jarvis stop` asks the launcher to stop, with the API token (a
/// signal cannot reach it on Windows).
pub const STOP_PATH: &str = "/launcher/stop";

/// What every UI request can reach.
#[derive(Debug)]
pub struct UiState {
    pub auth: Auth,
    /// `127.0.0.1:<port>` and `localhost:<port>`.
    pub allowed_hosts: Vec<String>,
    pub cookie_name: String,
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
    pub assets_dir: PathBuf,
    /// `http://127.0.0.1:<core port>`.
    pub core_url: String,
    pub core_token: String,
    /// For forwarding to the core: no overall timeout (answers stream).
    pub http: reqwest::Client,
    pub paths: AppPaths,
    pub store: ModelStore,
    /// The model catalog, read once at start (as the supervisor does), or
    /// why it could not be: the models screen polls twice a second while a
    /// download runs, and `JARVIS_CATALOG` may be a URL.
    pub catalog: Result<Arc<Catalog>, String>,
    pub downloads: Arc<Downloads>,
    /// The installed app version that runs (`None` in a checkout).
    pub app_version: Option<AppVersion>,
    /// The gatekeeper: the UI opens its approval surface (never decides).
    pub gate: Arc<Gate>,
}

/// A fresh one-time sign-in URL.
pub fn signin_url(state: &UiState) -> String {
    format!("{}/signin?code={}", state.origin, state.auth.new_code())
}
