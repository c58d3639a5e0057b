//! The approval surface: where the person sees and decides what the core
//! asked for. Its own loopback origin (own port, own one-time sign-in,
//! own cookie), apart from the chat UI's, so no script in the page that
//! renders model output can reach it: the browser keeps origins apart, the
//! chat UI's cookie is not this one, every state change needs this exact
//! `Origin`, and the page can never be framed.
//!
//! - `GET /signin?code=...`: a one-time code for the session cookie.
//! - `GET /` and three files: the page (`approvals.html`,
//!   `assets/approvals.js`, `assets/app.css`, `assets/icon.svg` from the
//!   UI folder; nothing else from it).
//! - `GET /gate/pending`, `POST /gate/decide` (`{id, arguments_hash,
//!   choice}`), `GET /gate/permissions`, `POST /gate/permissions/revoke`
//!   (`{tool, conversation_id?}`), `POST /gate/folders` and
//!   `/gate/folders/remove` (`{path}`), `GET /gate/audit`,
//!   `GET /gate/reminders`.
//! - `POST /gate/signin-codes`: a fresh sign-in URL.
//!
//! The terminal (`jarvis approvals`) uses the same `/gate/...` routes with
//! `Authorization: Bearer <control token>` and no `Origin`: the control
//! token lives in `<data>/run/control-token`, is made by this launcher
//! and is never given to the core (whose API token decides nothing here).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jarvis_actions::{DecidedBy, Tool};
use jarvis_durable::{Visibility, write_atomic};
use jarvis_protocol::env;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;

use super::permissions::{FolderError, Permissions};
use super::{Choice, DecideError, Gate, audit};
use crate::paths::AppPaths;
use crate::secrets::random_hex;
use crate::ui::bind_loopback;
use crate::ui::guard::{
    Refusal, check_fetch_site, check_host, refusal_response, security_headers, session_cookie,
    signin_response,
};

/// The control token's file under `<data>/run/` (owner-only).
pub const CONTROL_TOKEN_FILE: &str = "control-token";

/// How many audit entries `GET /gate/audit` returns at most.
const AUDIT_LIMIT: usize = 500;

struct Surface {
    gate: Arc<Gate>,
    allowed_hosts: Vec<String>,
    cookie_name: String,
    control_token: String,
    assets_dir: PathBuf,
}

/// Where the approval surface listens.
#[derive(Debug, Clone)]
pub struct Started {
    /// `http://127.0.0.1:<port>`.
    pub origin: String,
}

/// Makes the control token, binds the surface's port
/// (`JARVIS_APPROVALS_PORT`, else a free one) and serves it.
pub async fn start(
    gate: Arc<Gate>,
    paths: &AppPaths,
    assets_dir: PathBuf,
) -> anyhow::Result<Started> {
    let (listener, port) = bind_loopback(env::APPROVALS_PORT, "approvals").await?;
    let control_token = random_hex(32);
    write_atomic(
        "control token",
        &paths.run_dir.join(CONTROL_TOKEN_FILE),
        format!("{control_token}\n").as_bytes(),
        Visibility::OwnerOnly,
    )?;
    let origin = format!("http://127.0.0.1:{port}");
    let _ = gate.surface_origin.set(origin.clone());
    let surface = Arc::new(Surface {
        gate,
        allowed_hosts: vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")],
        cookie_name: format!("jarvis_approvals_{port}"),
        control_token,
        assets_dir,
    });
    let app = Router::new()
        .route("/signin", get(signin))
        .route("/gate/signin-codes", post(signin_code))
        .route("/gate/pending", get(pending))
        .route("/gate/decide", post(decide))
        .route("/gate/permissions", get(permissions))
        .route("/gate/permissions/revoke", post(revoke))
        .route("/gate/folders", post(allow_folder))
        .route("/gate/folders/remove", post(forget_folder))
        .route("/gate/audit", get(audit_log))
        .route("/gate/reminders", get(reminders))
        .fallback(asset)
        .layer(middleware::from_fn_with_state(Arc::clone(&surface), guard))
        .with_state(surface);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the approval surface stopped: {e}");
        }
    });
    Ok(Started { origin })
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The signed-in approval page.
    Page,
    /// `jarvis approvals` with the control token.
    Terminal,
    /// Not signed in (only `/signin` and the page's files).
    Nobody,
}

async fn guard(State(surface): State<Arc<Surface>>, mut request: Request, next: Next) -> Response {
    let mut response = match check(&surface, &request) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => refusal_response(refusal),
    };
    security_headers(response.headers_mut());
    response
}

fn check(surface: &Surface, request: &Request) -> Result<Caller, Refusal> {
    let headers = request.headers();
    let host = check_host(headers, &surface.allowed_hosts)?;
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let own_origin = format!("http://{host}");
    // The terminal: the control token, and no Origin (browsers always send
    // one on a POST, so no page can use a token it somehow learnt).
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let valid = bool::from(token.as_bytes().ct_eq(surface.control_token.as_bytes()));
        if valid && origin.is_none() && headers.get("sec-fetch-site").is_none() {
            return Ok(Caller::Terminal);
        }
        return Err((
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong or misused control token",
        ));
    }
    if *request.method() != Method::GET && origin != Some(own_origin.as_str()) {
        return Err((
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "decisions must come from the Jarvis approval page itself",
        ));
    }
    if !request.uri().path().starts_with("/gate/") {
        return Ok(Caller::Nobody);
    }
    check_fetch_site(
        headers,
        "the approvals answer only the Jarvis approval page",
    )?;
    let session = session_cookie(headers, &surface.cookie_name);
    if session.is_some_and(|s| surface.gate.surface_auth.check_session(s)) {
        Ok(Caller::Page)
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
            "open the approval page from Jarvis (or run `jarvis approvals open`) to sign in",
        ))
    }
}

/// Why a `/gate/...` request failed: status, stable code, message, as the
/// same JSON error body the guard answers with.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            code,
            message: message.to_string(),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<JsonRejection> for Refused {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            rejection.body_text(),
        )
    }
}

impl From<anyhow::Error> for Refused {
    fn from(error: anyhow::Error) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            format!("{error:#}"),
        )
    }
}

impl From<DecideError> for Refused {
    fn from(error: DecideError) -> Self {
        let (status, code) = match error {
            DecideError::Other(e) => return e.into(),
            DecideError::NotPending(_) => (StatusCode::NOT_FOUND, "not_pending"),
            DecideError::ArgumentsChanged(_) => (StatusCode::CONFLICT, "arguments_changed"),
            DecideError::AlwaysNotAllowed(_) | DecideError::NoConversation(_) => {
                (StatusCode::BAD_REQUEST, "choice_not_allowed")
            }
        };
        Self::new(status, code, error)
    }
}

impl From<FolderError> for Refused {
    fn from(error: FolderError) -> Self {
        match error {
            FolderError::NotFound { .. } => Self::new(StatusCode::BAD_REQUEST, "not_found", error),
            FolderError::NotAFolder(_) => Self::new(StatusCode::BAD_REQUEST, "not_a_folder", error),
            FolderError::Store(e) => e.into(),
        }
    }
}

type Answer = Result<Json<Value>, Refused>;

#[derive(Debug, Deserialize)]
struct SigninQuery {
    #[serde(default)]
    code: String,
}

async fn signin(State(surface): State<Arc<Surface>>, Query(query): Query<SigninQuery>) -> Response {
    signin_response(
        &surface.gate.surface_auth,
        &query.code,
        &surface.cookie_name,
        "<!doctype html><html lang=en><meta charset=utf-8><title>Jarvis: link expired</title>\
         <h1>This approval link has expired or was already used</h1>\
         <p>Open the approvals again from Jarvis, or run <code>jarvis approvals open</code>.</p>",
    )
}

async fn signin_code(
    State(surface): State<Arc<Surface>>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Answer {
    if caller != Caller::Terminal {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the terminal may ask for sign-in links",
        ));
    }
    let url = surface.gate.surface_signin_url().ok_or_else(|| {
        Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the approval surface is starting",
        )
    })?;
    Ok(Json(json!({"url": url})))
}

async fn pending(State(surface): State<Arc<Surface>>) -> Json<Value> {
    Json(json!({
        "pending": surface.gate.pending(),
        "timeout_seconds": surface.gate.timeout.as_secs(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    id: String,
    arguments_hash: String,
    choice: Choice,
}

async fn decide(
    State(surface): State<Arc<Surface>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Json<Decision>, JsonRejection>,
) -> Answer {
    let Json(decision) = body?;
    let state = surface
        .gate
        .decide(
            &decision.id,
            &decision.arguments_hash,
            decision.choice,
            by(caller),
        )
        .await?;
    Ok(Json(json!({"id": decision.id, "state": state})))
}

async fn permissions(State(surface): State<Arc<Surface>>) -> Answer {
    Ok(Json(json!(Permissions::load(surface.gate.data_dir())?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    tool: Tool,
    conversation_id: Option<String>,
}

async fn revoke(
    State(surface): State<Arc<Surface>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Json<Revoke>, JsonRejection>,
) -> Answer {
    let Json(body) = body?;
    let revoked = Permissions::update(surface.gate.data_dir(), |p| {
        Ok(p.revoke(body.tool, body.conversation_id.as_deref()))
    })?;
    let _ = surface.gate.audit.record(json!({
        "event": "permission_revoked", "tool": body.tool,
        "conversation_id": body.conversation_id, "count": revoked, "by": by(caller),
    }));
    Ok(Json(json!({"revoked": revoked})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Folder {
    path: PathBuf,
}

async fn allow_folder(
    State(surface): State<Arc<Surface>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Json<Folder>, JsonRejection>,
) -> Answer {
    let Json(body) = body?;
    let (resolved, added) = Permissions::allow_folder(surface.gate.data_dir(), &body.path)?;
    let _ = surface.gate.audit.record(json!({
        "event": "folder_allowed", "path": resolved, "by": by(caller),
    }));
    Ok(Json(json!({"path": resolved, "added": added})))
}

async fn forget_folder(
    State(surface): State<Arc<Surface>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Json<Folder>, JsonRejection>,
) -> Answer {
    let Json(body) = body?;
    let (resolved, removed) = Permissions::forget_folder(surface.gate.data_dir(), &body.path)?;
    let _ = surface.gate.audit.record(json!({
        "event": "folder_forgotten", "path": resolved, "by": by(caller),
    }));
    Ok(Json(json!({"removed": removed})))
}

fn by(caller: Caller) -> DecidedBy {
    if caller == Caller::Terminal {
        DecidedBy::Terminal
    } else {
        DecidedBy::Ui
    }
}

async fn audit_log(State(surface): State<Arc<Surface>>) -> Answer {
    let mut entries = audit::read(surface.gate.data_dir())?;
    let skip = entries.len().saturating_sub(AUDIT_LIMIT);
    entries.drain(..skip);
    entries.reverse();
    Ok(Json(json!({"entries": entries})))
}

async fn reminders(State(surface): State<Arc<Surface>>) -> Answer {
    let unavailable = |e: redis::RedisError| {
        Refused::new(StatusCode::SERVICE_UNAVAILABLE, "memory_unavailable", e)
    };
    let reminders = surface.gate.reminders();
    let upcoming = reminders.upcoming().await.map_err(unavailable)?;
    let fired = reminders.fired().await.map_err(unavailable)?;
    Ok(Json(json!({"upcoming": upcoming, "fired": fired})))
}

/// The page and its files: a fixed list, nothing else from the folder.
async fn asset(State(surface): State<Arc<Surface>>, request: Request) -> Result<Response, Refused> {
    let (name, content_type) = match request.uri().path() {
        "/" => ("approvals.html", "text/html; charset=utf-8"),
        "/assets/approvals.js" => ("assets/approvals.js", "text/javascript; charset=utf-8"),
        "/assets/app.css" => ("assets/app.css", "text/css; charset=utf-8"),
        "/assets/icon.svg" => ("assets/icon.svg", "image/svg+xml"),
        _ => {
            return Err(Refused::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such page",
            ));
        }
    };
    let bytes = tokio::fs::read(surface.assets_dir.join(name))
        .await
        .map_err(|_| {
            Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ui_missing",
                format!(
                    "the approval page is missing from {}",
                    surface.assets_dir.display()
                ),
            )
        })?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Reads the control token of a running Jarvis (for `jarvis approvals`).
pub fn read_control_token(paths: &AppPaths) -> anyhow::Result<String> {
    let file = paths.run_dir.join(CONTROL_TOKEN_FILE);
    Ok(std::fs::read_to_string(&file)
        .with_context(|| format!("could not read the control token in {}", file.display()))?
        .trim()
        .to_owned())
}
