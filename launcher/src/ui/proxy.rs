//! `/v1/...` on the UI origin, forwarded to the core with the API token
//! added here: the browser never sees the token, and the core stays a
//! headless API that any client can use.
//!
//! HTTP bodies stream both ways (answers as server-sent events, uploads up
//! to the core's own limit); `/v1/ws` is bridged message by message.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{Message as UiMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message as CoreMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use super::state::UiState;

/// The largest request body forwarded (the core's own limit for audio is
/// 25 MB; anything larger is refused there or here).
pub const MAX_FORWARDED_BODY: usize = 26 * 1024 * 1024;

/// Request headers passed on to the core; everything else (cookies above
/// all, and `Origin`, which the core would refuse) stays here.
const FORWARDED_REQUEST_HEADERS: [header::HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
];

/// Response headers passed back to the browser.
const FORWARDED_RESPONSE_HEADERS: [header::HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::RETRY_AFTER,
    header::CONTENT_DISPOSITION,
];

pub async fn forward(State(ui): State<Arc<UiState>>, request: Request) -> Response {
    if request.uri().path() == "/v1/ws" {
        let (mut parts, _body) = request.into_parts();
        return match WebSocketUpgrade::from_request_parts(&mut parts, &ui).await {
            Ok(upgrade) => bridge_websocket(ui, upgrade),
            Err(rejection) => rejection.into_response(),
        };
    }
    match forward_http(&ui, request).await {
        Ok(response) => response,
        Err(message) => {
            tracing::warn!("UI proxy: {message}");
            error(StatusCode::BAD_GATEWAY, "core_unreachable", &message)
        }
    }
}

async fn forward_http(ui: &UiState, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let url = format!("{}{path_and_query}", ui.core_url);
    let body = match axum::body::to_bytes(body, MAX_FORWARDED_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request is larger than Jarvis accepts",
            ));
        }
    };
    let mut outgoing = ui
        .http
        .request(parts.method.clone(), &url)
        .bearer_auth(&ui.core_token)
        .body(body);
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = parts.headers.get(&name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let reply = outgoing
        .send()
        .await
        .map_err(|e| format!("could not reach the core at {}: {e}", ui.core_url))?;
    let mut response = Response::builder().status(reply.status());
    if let Some(headers) = response.headers_mut() {
        for name in FORWARDED_RESPONSE_HEADERS {
            if let Some(value) = reply.headers().get(&name) {
                headers.insert(name, value.clone());
            }
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    // Chunk by chunk, as the core sends them (server-sent events stream).
    // An error ends the stream (the browser sees a cut-short body).
    let chunks = futures_util::stream::unfold(Some(reply), |reply| async move {
        let mut reply = reply?;
        match reply.chunk().await {
            Ok(Some(chunk)) => Some((Ok::<_, reqwest::Error>(chunk), Some(reply))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    response
        .body(Body::from_stream(chunks))
        .map_err(|e| format!("could not build the response: {e}"))
}

/// Accepts the browser's WebSocket, then opens one to the core (with the
/// token) and relays both ways until either side closes.
fn bridge_websocket(ui: Arc<UiState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_FORWARDED_BODY)
        .on_upgrade(move |browser| async move {
            if let Err(e) = relay(&ui, browser).await {
                tracing::info!("UI WebSocket closed: {e}");
            }
        })
}

async fn relay(ui: &UiState, mut browser: WebSocket) -> Result<(), String> {
    let ws_url = format!("{}/v1/ws", ui.core_url.replacen("http://", "ws://", 1));
    let mut request = ws_url
        .into_client_request()
        .map_err(|e| format!("bad core address: {e}"))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", ui.core_token))
        .map_err(|e| format!("bad token: {e}"))?;
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    // No Nagle delay: tokens are small messages that must go at once.
    let core = match tokio_tungstenite::connect_async_with_config(request, None, true).await {
        Ok((core, _)) => core,
        Err(e) => {
            let _ = browser
                .send(UiMessage::Close(Some(axum::extract::ws::CloseFrame {
                    code: 1011,
                    reason: "the core is not reachable".into(),
                })))
                .await;
            return Err(format!("could not reach the core: {e}"));
        }
    };
    let (mut core_tx, mut core_rx) = core.split();
    let (mut browser_tx, mut browser_rx) = browser.split();
    let upstream = async {
        while let Some(Ok(message)) = browser_rx.next().await {
            let forwarded = match message {
                UiMessage::Text(text) => CoreMessage::Text(text.as_str().into()),
                UiMessage::Binary(bytes) => CoreMessage::Binary(bytes),
                UiMessage::Close(_) => break,
                UiMessage::Ping(_) | UiMessage::Pong(_) => continue,
            };
            if core_tx.send(forwarded).await.is_err() {
                break;
            }
        }
        let _ = core_tx.close().await;
    };
    let downstream = async {
        while let Some(Ok(message)) = core_rx.next().await {
            let forwarded = match message {
                CoreMessage::Text(text) => UiMessage::Text(text.as_str().into()),
                CoreMessage::Binary(bytes) => UiMessage::Binary(bytes),
                CoreMessage::Close(_) => break,
                _ => continue,
            };
            if browser_tx.send(forwarded).await.is_err() {
                break;
            }
        }
        let _ = browser_tx.close().await;
    };
    // Either side closing ends both.
    tokio::select! {
        () = upstream => {},
        () = downstream => {},
    }
    Ok(())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}
