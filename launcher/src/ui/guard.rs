//! The UI origin's front door: every request passes [`guard`].
//!
//! The UI listens on a loopback port that any local web page can try, and
//! cookies ignore ports (a page on another `http://127.0.0.1:*` port is
//! "same-site"), so the cookie alone proves nothing. The rules:
//! - `Host` must name this listener (no DNS rebinding);
//! - every state-changing request and every WebSocket upgrade carries an
//!   `Origin` that is exactly this origin;
//! - API requests (`/v1/...`, `/launcher/...`) need a live session and,
//!   where the browser says where a request comes from (`Sec-Fetch-Site`),
//!   the same origin, so no other page can embed or read them;
//! - no CORS header is ever sent; every response carries the security
//!   headers ([`security_headers`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Auth;
use super::state::UiState;

/// The Content-Security-Policy of every response: only this origin's own
/// scripts, styles, images and connections; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Where the session cookie of the UI on `port` is kept. The port is part
/// of the name because cookies ignore ports: two Jarvis instances (two data
/// folders) never overwrite each other's session.
pub fn cookie_name(port: u16) -> String {
    format!("jarvis_session_{port}")
}

pub async fn guard(State(ui): State<Arc<UiState>>, request: Request, next: Next) -> Response {
    let mut response = match check(&ui, &request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal_response(refusal),
    };
    security_headers(response.headers_mut());
    response
}

/// Why a guard turned a request away: status, stable code, message.
pub type Refusal = (StatusCode, &'static str, &'static str);

/// A refusal as the JSON error body every origin of ours answers with.
pub fn refusal_response((status, code, message): Refusal) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// The request's `Host`, if it is one of `allowed` (no DNS rebinding).
pub fn check_host<'a>(headers: &'a HeaderMap, allowed: &[String]) -> Result<&'a str, Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if allowed.iter().any(|a| a == host) {
        Ok(host)
    } else {
        Err((
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "this address is not Jarvis",
        ))
    }
}

/// Refuses (with `message`) a request the browser says comes from another
/// site or origin (`Sec-Fetch-Site`); clients that send none pass.
pub fn check_fetch_site(headers: &HeaderMap, message: &'static str) -> Result<(), Refusal> {
    match headers.get("sec-fetch-site") {
        Some(site) if site.as_bytes() != b"same-origin" => {
            Err((StatusCode::FORBIDDEN, "origin_not_allowed", message))
        }
        _ => Ok(()),
    }
}

fn check(ui: &UiState, request: &Request) -> Result<(), Refusal> {
    let headers = request.headers();
    let host = check_host(headers, &ui.allowed_hosts)?;
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let own_origin = format!("http://{host}");
    let is_upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    let path = request.uri().path();
    // `jarvis open` asks for a sign-in code, and `jarvis stop` for a stop,
    // with the API token; it is no browser and sends no `Origin` (every
    // browser sends one on a POST).
    let token_path = path == super::state::SIGNIN_CODES_PATH || path == super::state::STOP_PATH;
    let token_client = token_path && origin.is_none();
    if (changes_state || is_upgrade) && !token_client && origin != Some(own_origin.as_str()) {
        return Err((
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "requests that change anything must come from the Jarvis UI itself",
        ));
    }
    let is_api = path.starts_with("/v1/") || path.starts_with("/launcher/");
    if !is_api {
        return Ok(());
    }
    // Chromium, Firefox and Safari say where a request comes from; a
    // cross-site `<script src>` or `<img src>` carrying our cookie is
    // refused here (and by `Cross-Origin-Resource-Policy` below).
    check_fetch_site(headers, "the Jarvis API answers only the Jarvis UI")?;
    if token_path {
        return Ok(()); // authenticated by the API token instead
    }
    let session = session_cookie(headers, &ui.cookie_name);
    if !session.is_some_and(|s| ui.auth.check_session(s)) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
            "open Jarvis from its icon (or run `jarvis open`) to sign in",
        ));
    }
    Ok(())
}

/// `GET /signin?code=...` for an origin with sign-in codes (the UI and the
/// approval surface): trades a one-time code for an `HttpOnly;
/// SameSite=Strict` session cookie named `cookie_name` and sends the
/// browser to `/`, so the code leaves the address bar; an unknown, used or
/// expired code gets `expired_page` (HTML) and no cookie.
pub fn signin_response(
    auth: &Auth,
    code: &str,
    cookie_name: &str,
    expired_page: &'static str,
) -> Response {
    let Some(session) = auth.redeem(code) else {
        let mut response = (StatusCode::FORBIDDEN, expired_page).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return response;
    };
    let cookie = format!("{cookie_name}={session}; HttpOnly; SameSite=Strict; Path=/");
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

/// The value of the cookie `name`, if the request carries it.
pub fn session_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The headers every UI response carries.
pub fn security_headers(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "cross-origin-resource-policy", "same-origin");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(
        headers,
        "permissions-policy",
        "microphone=(self), camera=(), geolocation=()",
    );
    // No Access-Control-* header, ever: a response never names another
    // origin, so the browser never lets another page read it.
    headers.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
    headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; jarvis_session_80=abc; b=2"),
        );
        assert_eq!(session_cookie(&headers, "jarvis_session_80"), Some("abc"));
        assert_eq!(session_cookie(&headers, "jarvis_session_81"), None);
    }
}
