//! `/launcher/...`: what only the launcher can do, for the UI (the core's
//! own API is forwarded under `/v1/...`). Every route here is behind the
//! guard: a signed-in session, this origin only.
//!
//! - `GET  /launcher/session`                       signed in?
//! - `POST /launcher/signout`
//! - `POST /launcher/signin-codes`                  a sign-in URL (API token)
//! - `GET  /launcher/status`                        versions, folders, health
//! - `GET  /launcher/doctor`                        `jarvis doctor`'s checks
//! - `GET  /launcher/models`                        catalog, installed, downloads
//! - `POST /launcher/models/{name}/download|pause|cancel`
//! - `POST /launcher/models/{name}/activate`        `{"version": "..."}`
//! - `POST /launcher/models/{name}/rollback`
//! - `POST /launcher/models/verify`, `POST /launcher/models/gc`
//! - `POST /launcher/models/import`                 `{"path", "name"?, "version"?}`
//! - `GET  /launcher/updates`, `POST /launcher/updates/dismiss`
//! - `GET  /launcher/approvals`                     how many requests wait
//! - `POST /launcher/approvals/open`                opens the approval
//!   surface in the browser (its sign-in link never reaches this page)
//! - `GET  /launcher/reminders`                     fired and upcoming

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jarvis_download::NoProgress;
use jarvis_model_registry::install::ExplicitModel;
use jarvis_model_registry::store::CheckOutcome;
use jarvis_model_registry::{Catalog, ModelName, ModelVersion};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use super::guard;
use super::state::{SIGNIN_CODES_PATH, STOP_PATH, UiState, signin_url};
use crate::hint::hints;
use crate::install::Install;
use crate::updater::UpdateState;

pub fn router() -> Router<Arc<UiState>> {
    Router::new()
        .route("/launcher/session", get(session))
        .route("/launcher/signout", post(signout))
        .route(SIGNIN_CODES_PATH, post(signin_code))
        .route(STOP_PATH, post(stop))
        .route("/launcher/status", get(status))
        .route("/launcher/doctor", get(doctor))
        .route("/launcher/models", get(models))
        .route("/launcher/models/verify", post(verify))
        .route("/launcher/models/gc", post(gc))
        .route("/launcher/models/import", post(import))
        .route("/launcher/models/{name}/download", post(download))
        .route("/launcher/models/{name}/pause", post(pause))
        .route("/launcher/models/{name}/cancel", post(cancel))
        .route("/launcher/models/{name}/activate", post(activate))
        .route("/launcher/models/{name}/rollback", post(rollback))
        .route("/launcher/updates", get(updates))
        .route("/launcher/updates/dismiss", post(dismiss_update_notice))
        .route("/launcher/approvals", get(approvals))
        .route("/launcher/approvals/open", post(open_approvals))
        .route("/launcher/reminders", get(reminders))
}

/// Only the count and ids: the details are for the approval surface.
async fn approvals(State(ui): State<Arc<UiState>>) -> Json<Value> {
    let pending = ui.gate.pending();
    let ids: Vec<&str> = pending.iter().map(|p| p.id.as_str()).collect();
    Json(json!({"pending": pending.len(), "ids": ids}))
}

/// Opens the approval surface in the person's browser. The sign-in link
/// goes from the launcher to the browser directly; a script in this page
/// (which renders model output) never sees it.
async fn open_approvals(State(ui): State<Arc<UiState>>) -> Result<Json<Value>> {
    let url = ui.gate.surface_signin_url().ok_or_else(|| {
        UiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            anyhow::anyhow!("the approval page is still starting"),
        )
    })?;
    super::open::open_in_browser(&url);
    Ok(Json(json!({"opened": true})))
}

/// Reminders, for the UI's toasts: the ones that fired and those to come.
async fn reminders(State(ui): State<Arc<UiState>>) -> Result<Json<Value>> {
    let reminders = ui.gate.reminders();
    let upcoming = reminders
        .upcoming()
        .await
        .map_err(|e| UiError::new(StatusCode::SERVICE_UNAVAILABLE, "memory_unavailable", e))?;
    let fired = reminders
        .fired()
        .await
        .map_err(|e| UiError::new(StatusCode::SERVICE_UNAVAILABLE, "memory_unavailable", e))?;
    Ok(Json(json!({"upcoming": upcoming, "fired": fired})))
}

/// An error as the UI shows it: what went wrong, and how to fix it.
#[derive(Debug)]
pub struct UiError {
    status: StatusCode,
    code: &'static str,
    error: anyhow::Error,
}

impl UiError {
    fn new(status: StatusCode, code: &'static str, error: impl Into<anyhow::Error>) -> Self {
        Self {
            status,
            code,
            error: error.into(),
        }
    }
}

impl From<anyhow::Error> for UiError {
    fn from(error: anyhow::Error) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", error)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let hints = hints(&self.error);
        (
            self.status,
            Json(json!({"error": {
                "code": self.code,
                "message": format!("{:#}", self.error),
                "hint": (!hints.is_empty()).then(|| hints.join(" ")),
            }})),
        )
            .into_response()
    }
}

type Result<T> = std::result::Result<T, UiError>;

fn bad_request(message: impl Into<String>) -> UiError {
    UiError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        anyhow::anyhow!(message.into()),
    )
}

fn parse_name(name: &str) -> Result<ModelName> {
    ModelName::parse(name).map_err(|e| bad_request(format!("{e}")))
}

async fn session() -> Json<Value> {
    Json(json!({"signed_in": true}))
}

async fn signout(State(ui): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    if let Some(session) = guard::session_cookie(&headers, &ui.cookie_name) {
        ui.auth.end_session(session);
    }
    let mut response = Json(json!({"signed_in": false})).into_response();
    let expired = format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ui.cookie_name
    );
    if let Ok(value) = expired.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /launcher/signin-codes` with `Authorization: Bearer <API token>`:
/// a fresh sign-in URL, for `jarvis open` and a second launch.
async fn signin_code(State(ui): State<Arc<UiState>>, headers: HeaderMap) -> Result<Json<Value>> {
    require_api_token(&ui, &headers)?;
    Ok(Json(json!({"url": signin_url(&ui)})))
}

/// `jarvis stop` on every OS: the launcher stops as on `SIGTERM`.
async fn stop(State(ui): State<Arc<UiState>>, headers: HeaderMap) -> Result<Json<Value>> {
    require_api_token(&ui, &headers)?;
    eprintln!("Stop requested by `jarvis stop`.");
    crate::shutdown::request_stop();
    Ok(Json(json!({"stopping": true})))
}

/// The tools' requests (`jarvis open`, `jarvis stop`) carry the API token.
fn require_api_token(ui: &UiState, headers: &HeaderMap) -> Result<()> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(ui.core_token.as_bytes())) {
        return Err(UiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            anyhow::anyhow!("a valid API token is required"),
        ));
    }
    Ok(())
}

async fn status(State(ui): State<Arc<UiState>>) -> Json<Value> {
    // The core's own readiness (Redis, models), as it reports it.
    let core = match ui
        .http
        .get(format!("{}/readyz", ui.core_url))
        .bearer_auth(&ui.core_token)
        .timeout(Duration::from_secs(3))
        .send()
        .await
    {
        Ok(reply) => reply
            .json::<Value>()
            .await
            .unwrap_or_else(|e| json!({"ready": false, "error": e.to_string()})),
        Err(e) => json!({"ready": false, "error": format!("the core is not reachable: {e}")}),
    };
    let instance = crate::instance::read(&ui.paths).ok().flatten();
    // How this install gets new versions, in words for the status page.
    let auto_update = crate::config::AppConfig::load_existing(&ui.paths)
        .ok()
        .flatten()
        .is_none_or(|c| c.auto_update);
    let updates = match Install::new(&ui.paths.bundle_dir).managed_by() {
        Some(manager) => format!("through {manager}, with your system's software updates"),
        None if ui.app_version.is_none() => "none (a development build)".to_owned(),
        None if auto_update => {
            "automatic: downloaded in the background, applied at the next start".to_owned()
        }
        None => "off (auto_update is off in config.json)".to_owned(),
    };
    Json(json!({
        "launcher_version": crate::VERSION,
        "app_version": ui.app_version.map(|v| v.to_string()),
        "updates": updates,
        "core": core,
        "instance": instance,
        "paths": {
            "data": ui.paths.data_dir,
            "models": ui.paths.models_dir,
            "logs": ui.paths.logs_dir,
        },
    }))
}

async fn doctor(State(ui): State<Arc<UiState>>) -> Json<Value> {
    Json(json!({"checks": crate::doctor::run(&ui.paths).await}))
}

#[derive(Debug, Serialize)]
struct CatalogModel {
    name: String,
    version: String,
    role: jarvis_model_registry::ModelRole,
    required: bool,
    description: String,
    size: u64,
    installed: bool,
    /// Bytes of it already in staging (a paused or interrupted download).
    staged_bytes: u64,
}

async fn models(State(ui): State<Arc<UiState>>) -> Result<Json<Value>> {
    let installed = ui.store.installed().map_err(anyhow::Error::from)?;
    let (catalog_models, missing_required, catalog_error) = match &ui.catalog {
        Ok(catalog) => {
            let models: Vec<CatalogModel> = catalog
                .latest_of_each()
                .into_iter()
                .map(|m| CatalogModel {
                    name: m.name.to_string(),
                    version: m.version.to_string(),
                    role: m.role,
                    required: m.required,
                    description: m.description.clone(),
                    size: m.total_size(),
                    installed: ui.store.is_installed(&m.name, &m.version),
                    staged_bytes: ui.store.staged_bytes(m),
                })
                .collect();
            let missing: Vec<String> = crate::models::missing_required(catalog, &ui.store)?
                .into_iter()
                .map(|m| m.name.to_string())
                .collect();
            (models, missing, None)
        }
        Err(e) => (Vec::new(), Vec::new(), Some(e.clone())),
    };
    Ok(Json(json!({
        "catalog": catalog_models,
        "catalog_error": catalog_error,
        "installed": installed,
        "missing_required": missing_required,
        "downloads": ui.downloads.views(),
    })))
}

async fn download(State(ui): State<Arc<UiState>>, Path(name): Path<String>) -> Result<Json<Value>> {
    let name = parse_name(&name)?;
    let catalog = ui.catalog.as_ref().map_err(|e| {
        UiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_catalog",
            anyhow::anyhow!("{e}"),
        )
    })?;
    let entry = catalog.latest(&name).cloned().ok_or_else(|| {
        UiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            anyhow::anyhow!("{name} is not in the model catalog"),
        )
    })?;
    ui.downloads.start(entry);
    Ok(Json(json!({"downloads": ui.downloads.views()})))
}

async fn pause(State(ui): State<Arc<UiState>>, Path(name): Path<String>) -> Result<Json<Value>> {
    if !ui.downloads.pause(&name) {
        return Err(bad_request(format!("{name} is not downloading")));
    }
    Ok(Json(json!({"downloads": ui.downloads.views()})))
}

async fn cancel(State(ui): State<Arc<UiState>>, Path(name): Path<String>) -> Result<Json<Value>> {
    if !ui.downloads.cancel(&name).await? {
        return Err(bad_request(format!("there is no download of {name}")));
    }
    Ok(Json(json!({"downloads": ui.downloads.views()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    version: String,
}

async fn activate(
    State(ui): State<Arc<UiState>>,
    Path(name): Path<String>,
    body: std::result::Result<Json<ActivateBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let name = parse_name(&name)?;
    let Json(body) = body.map_err(|e| bad_request(e.body_text()))?;
    let version = ModelVersion::parse(&body.version).map_err(|e| bad_request(format!("{e}")))?;
    ui.store
        .activate(&name, &version)
        .map_err(|e| UiError::new(StatusCode::CONFLICT, "not_installed", e))?;
    Ok(Json(json!({"name": name, "active": version})))
}

async fn rollback(State(ui): State<Arc<UiState>>, Path(name): Path<String>) -> Result<Json<Value>> {
    let name = parse_name(&name)?;
    let version = ui
        .store
        .rollback(&name)
        .map_err(|e| UiError::new(StatusCode::CONFLICT, "no_previous", e))?;
    Ok(Json(json!({"name": name, "active": version})))
}

async fn verify(State(ui): State<Arc<UiState>>) -> Result<Json<Value>> {
    let store = ui.store.clone();
    // Hashing gigabytes takes a while: off the launcher's only thread.
    let checks = tokio::task::spawn_blocking(move || store.verify(None))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(anyhow::Error::from)?;
    let damaged = checks
        .iter()
        .filter(|c| c.outcome != CheckOutcome::Ok)
        .count();
    Ok(Json(json!({"checks": checks, "damaged": damaged})))
}

async fn gc(State(ui): State<Arc<UiState>>) -> Result<Json<Value>> {
    let removed = ui.store.gc(false).map_err(anyhow::Error::from)?;
    Ok(Json(json!({"removed": removed})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    path: PathBuf,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

async fn import(
    State(ui): State<Arc<UiState>>,
    body: std::result::Result<Json<ImportBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let Json(body) = body.map_err(|e| bad_request(e.body_text()))?;
    if !body.path.is_absolute() {
        return Err(bad_request(
            "give the full path of a model file, folder or pack",
        ));
    }
    let explicit = match (body.name.as_deref(), body.version.as_deref()) {
        (Some(name), Some(version)) if !name.is_empty() && !version.is_empty() => {
            Some(ExplicitModel {
                name: parse_name(name)?,
                version: ModelVersion::parse(version).map_err(|e| bad_request(format!("{e}")))?,
                role: None,
            })
        }
        (None | Some(""), None | Some("")) => None,
        _ => return Err(bad_request("give both a name and a version, or neither")),
    };
    // Without the configured catalog, files are still recognised by the
    // built-in one.
    let catalog = match &ui.catalog {
        Ok(c) => Catalog::clone(c),
        Err(_) => Catalog::builtin().map_err(anyhow::Error::from)?,
    };
    // Hashing and converting are CPU work: off the launcher's only
    // runtime thread, so the supervisor and the UI keep going.
    let store = ui.store.clone();
    let runtime = tokio::runtime::Handle::current();
    let (reports, activated) = tokio::task::spawn_blocking(move || {
        runtime.block_on(crate::models::import(
            &store,
            &catalog,
            &body.path,
            explicit,
            &NoProgress,
        ))
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(|e| UiError::new(StatusCode::UNPROCESSABLE_ENTITY, "import_failed", e))?;
    Ok(Json(json!({"imported": reports, "activated": activated})))
}

async fn updates(State(ui): State<Arc<UiState>>) -> Result<Json<Value>> {
    let state = UpdateState::load(&ui.paths)?;
    let managed_by = Install::new(&ui.paths.bundle_dir).managed_by();
    Ok(Json(json!({
        "managed_by": managed_by,
        "current": ui.app_version.map(|v| v.to_string()),
        "staged": state.staged.map(|v| v.to_string()),
        "notice": state.notice,
        "last_error": state.last_error,
    })))
}

async fn dismiss_update_notice(State(ui): State<Arc<UiState>>) -> Result<Json<Value>> {
    let mut state = UpdateState::load(&ui.paths)?;
    if state.notice.take().is_some() {
        state.save(&ui.paths)?;
    }
    Ok(Json(json!({"notice": null})))
}
