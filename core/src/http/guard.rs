//! The check every request passes before its handler.
//!
//! Desktop mode: DNS-rebinding and cross-site defences, then the
//! per-launch bearer token. Server mode: the allowed hosts, CORS for the
//! allowed origins, a user's API key, then that user's rate limit. Either
//! way the request leaves with a [`Caller`]: whose memory it may touch.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::health::UNAUTHENTICATED_PATHS;
use super::state::{Access, AppState, Caller, bearer};
use crate::config::ServerSettings;
use crate::memory::KeySpace;

/// The length of a rate-limit window.
const RATE_WINDOW_MS: i64 = 60_000;

/// Every request: see the module docs.
pub async fn guard(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    match &state.access {
        Access::Desktop { port, .. } => {
            if let Err(error) =
                check_desktop(&state, *port, request.uri().path(), request.headers())
            {
                return error.into_response();
            }
            request.extensions_mut().insert(Caller {
                memory: state.memory.clone(),
                user: None,
            });
            next.run(request).await
        }
        Access::Server(settings) => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            let client = ClientView::of(settings, peer, request.headers());
            // Probes (kubelet, a balancer's health check) name the pod's
            // address, or no host at all: the health routes answer any.
            let probe = UNAUTHENTICATED_PATHS.contains(&request.uri().path());
            let origin = match check_server_origin(settings, &client, request.headers(), probe) {
                Ok(origin) => origin,
                Err(error) => return error.into_response(),
            };
            // A CORS preflight carries no credentials: answer it here.
            if request.method() == Method::OPTIONS && origin.is_some() {
                let mut response = StatusCode::NO_CONTENT.into_response();
                add_cors(response.headers_mut(), origin.as_ref(), true);
                return response;
            }
            let mut response =
                match authenticate(&state, settings, request.uri().path(), request.headers()).await
                {
                    Ok(caller) => {
                        if let Some(caller) = caller {
                            tracing::debug!(
                                user = caller.user.as_ref().map(|u| u.name.as_str()),
                                client = ?client.ip,
                                method = %request.method(),
                                path = request.uri().path(),
                                "request"
                            );
                            request.extensions_mut().insert(caller);
                        }
                        next.run(request).await
                    }
                    Err(error) => error.into_response(),
                };
            add_cors(response.headers_mut(), origin.as_ref(), false);
            response
        }
    }
}

fn check_desktop(
    state: &AppState,
    port: u16,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if host != format!("127.0.0.1:{port}") && host != format!("localhost:{port}") {
        return Err(ApiError::HostNotAllowed { port });
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("<not text>");
        if origin != format!("http://127.0.0.1:{port}")
            && origin != format!("http://localhost:{port}")
        {
            return Err(ApiError::OriginNotAllowed {
                origin: origin.to_owned(),
            });
        }
    }
    if UNAUTHENTICATED_PATHS.contains(&path) || state.has_api_token(headers) {
        return Ok(());
    }
    Err(ApiError::Unauthorized)
}

/// What a request says about its client, believing `X-Forwarded-*` only
/// when it came straight from a trusted proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    /// The client's address: the peer, or (behind trusted proxies) the
    /// last address in `X-Forwarded-For` that is not a trusted proxy.
    pub ip: Option<IpAddr>,
    /// The host the client asked for.
    pub host: String,
}

impl ClientView {
    pub fn of(settings: &ServerSettings, peer: Option<IpAddr>, headers: &HeaderMap) -> Self {
        let trusted = |ip: IpAddr| settings.trusted_proxies.iter().any(|r| r.contains(ip));
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|h| h.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let via_proxy = peer.is_some_and(trusted);
        let mut ip = peer;
        let mut host = text(header::HOST.as_str()).unwrap_or_default().to_owned();
        if via_proxy {
            // Walk back from the nearest hop while the hops are proxies.
            if let Some(chain) = text("x-forwarded-for") {
                for hop in chain.rsplit(',') {
                    let Ok(hop) = hop.trim().parse::<IpAddr>() else {
                        break;
                    };
                    ip = Some(hop);
                    if !trusted(hop) {
                        break;
                    }
                }
            }
            if let Some(forwarded) = text("x-forwarded-host") {
                // The host the client named: the last proxy's view.
                host = forwarded
                    .rsplit(',')
                    .next()
                    .unwrap_or(forwarded)
                    .trim()
                    .to_owned();
            }
        }
        Self {
            ip,
            host: host.to_ascii_lowercase(),
        }
    }
}

/// The allowed hosts, then the origin: `Ok(Some(origin))` for an allowed
/// cross-origin caller (who gets CORS headers), `Ok(None)` without one.
fn check_server_origin(
    settings: &ServerSettings,
    client: &ClientView,
    headers: &HeaderMap,
    any_host: bool,
) -> Result<Option<HeaderValue>, ApiError> {
    if let Some(allowed) = settings.allowed_hosts.as_ref().filter(|_| !any_host) {
        let bare = client
            .host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(client.host.as_str(), |(name, _)| name);
        if !allowed.iter().any(|a| *a == client.host || *a == bare) {
            return Err(ApiError::ServerHostNotAllowed {
                host: client.host.clone(),
            });
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    let text = origin.to_str().unwrap_or("<not text>").to_ascii_lowercase();
    if settings.allowed_origins.contains(&text) {
        Ok(Some(origin.clone()))
    } else {
        Err(ApiError::OriginNotAllowed { origin: text })
    }
}

fn add_cors(headers: &mut HeaderMap, origin: Option<&HeaderValue>, preflight: bool) {
    let Some(origin) = origin else {
        return;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
}

/// The caller of an API route (`None` for the health routes): the user
/// whose key this is, within their rate limit.
async fn authenticate(
    state: &AppState,
    settings: &ServerSettings,
    path: &str,
    headers: &HeaderMap,
) -> Result<Option<Caller>, ApiError> {
    if UNAUTHENTICATED_PATHS.contains(&path) {
        return Ok(None);
    }
    let key = bearer(headers).ok_or(ApiError::UnknownKey)?;
    // Looked up at every request: a revoked key stops working at once, on
    // every replica.
    let user = state
        .memory
        .user_by_key(key)
        .await?
        .ok_or(ApiError::UnknownKey)?;
    let memory = state.memory.scoped(KeySpace::user(&user.id));
    within_rate_limit(settings, &memory).await?;
    Ok(Some(Caller {
        memory,
        user: Some(user),
    }))
}

/// Counts one request (or WebSocket turn) against the user whose memory
/// this is; `429` once they are over their limit for this minute.
pub async fn within_rate_limit(
    settings: &ServerSettings,
    memory: &crate::memory::Memory,
) -> Result<(), ApiError> {
    if settings.rate_limit_per_minute == 0 {
        return Ok(());
    }
    let (count, left_ms) = memory.count_request(RATE_WINDOW_MS).await?;
    if count > i64::from(settings.rate_limit_per_minute) {
        let retry_after_s = u64::try_from(left_ms.max(0))
            .unwrap_or(0)
            .div_ceil(1000)
            .max(1);
        return Err(ApiError::RateLimited { retry_after_s });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use std::time::Duration;

    use super::*;
    use crate::config::IpRange;

    fn settings(proxies: &[&str], hosts: Option<&[&str]>) -> ServerSettings {
        ServerSettings {
            allowed_hosts: hosts.map(|h| h.iter().map(|s| (*s).to_owned()).collect()),
            allowed_origins: vec!["https://app.example".to_owned()],
            trusted_proxies: proxies.iter().map(|p| IpRange::parse(p).unwrap()).collect(),
            rate_limit_per_minute: 0,
            drain: Duration::ZERO,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let s = settings(&["10.0.0.0/8"], None);
        let h = headers(&[
            ("host", "internal:8080"),
            ("x-forwarded-for", "203.0.113.7, 10.0.0.3"),
            ("x-forwarded-host", "Jarvis.Example"),
        ]);
        let via_proxy = ClientView::of(&s, Some("10.0.0.2".parse().unwrap()), &h);
        assert_eq!(via_proxy.ip, Some("203.0.113.7".parse().unwrap()));
        assert_eq!(via_proxy.host, "jarvis.example");
        // The same headers straight from the internet are ignored.
        let direct = ClientView::of(&s, Some("198.51.100.1".parse().unwrap()), &h);
        assert_eq!(direct.ip, Some("198.51.100.1".parse().unwrap()));
        assert_eq!(direct.host, "internal:8080");
        // A forged chain stops at the first hop that is not a proxy.
        let forged = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9")]);
        let view = ClientView::of(&s, Some("10.0.0.2".parse().unwrap()), &forged);
        assert_eq!(view.ip, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn hosts_and_origins_are_checked_against_the_lists() {
        let s = settings(&[], Some(&["jarvis.example"]));
        let view = |host: &str| ClientView {
            ip: None,
            host: host.to_owned(),
        };
        assert!(check_server_origin(&s, &view("jarvis.example"), &HeaderMap::new(), false).is_ok());
        assert!(
            check_server_origin(&s, &view("jarvis.example:443"), &HeaderMap::new(), false).is_ok()
        );
        let err =
            check_server_origin(&s, &view("evil.example"), &HeaderMap::new(), false).unwrap_err();
        assert_eq!(err.code(), "host_not_allowed");
        // Probes may name any host.
        assert!(check_server_origin(&s, &view("10.1.2.3:8080"), &HeaderMap::new(), true).is_ok());
        let any = settings(&[], None);
        assert!(check_server_origin(&any, &view("whatever"), &HeaderMap::new(), false).is_ok());

        let good = headers(&[("origin", "https://app.example")]);
        assert!(
            check_server_origin(&any, &view("x"), &good, false)
                .unwrap()
                .is_some()
        );
        let bad = headers(&[("origin", "https://evil.example")]);
        let err = check_server_origin(&any, &view("x"), &bad, false).unwrap_err();
        assert_eq!(err.code(), "origin_not_allowed");
    }
}
