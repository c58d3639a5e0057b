//! The UI's files, served from the app version's `ui/` folder (so an
//! update replaces them with the rest of the app; they are never in the
//! user's data).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::state::UiState;

/// Largest file served (the bundled scripts are a few hundred KiB).
const MAX_ASSET_BYTES: u64 = 16 * 1024 * 1024;

pub async fn serve(State(ui): State<Arc<UiState>>, request: Request) -> Response {
    let path = request.uri().path();
    let relative = if path == "/" {
        "index.html"
    } else {
        &path[1..]
    };
    let Some(file) = resolve(&ui.assets_dir, relative) else {
        return not_found();
    };
    let bytes = match tokio::fs::metadata(&file).await {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_ASSET_BYTES => {
            match tokio::fs::read(&file).await {
                Ok(bytes) => bytes,
                Err(_) => return not_found(),
            }
        }
        _ if relative == "index.html" => return missing_ui(&ui.assets_dir),
        _ => return not_found(),
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file)),
    );
    // Small files, and a new app version replaces them: always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `relative` under `root`, or `None` for anything that could leave it
/// (`..`, absolute paths, backslashes, NULs, hidden files).
fn resolve(root: &Path, relative: &str) -> Option<PathBuf> {
    if relative.is_empty() || relative.contains(['\\', '\0']) {
        return None;
    }
    let mut path = root.to_path_buf();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) if !part.to_string_lossy().starts_with('.') => {
                path.push(part);
            }
            _ => return None,
        }
    }
    Some(path)
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// What a person sees when the app version has no UI files (a build made
/// without `scripts/build-ui`).
fn missing_ui(dir: &Path) -> Response {
    let body = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Jarvis</title>\
         <h1>Jarvis is running, but its UI files are missing</h1>\
         <p>Expected them in {}. Reinstall Jarvis, or build them with <code>scripts/build-ui</code>.</p>",
        html_escape(&dir.display().to_string())
    );
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_assets_folder() {
        let root = Path::new("/app/ui");
        assert_eq!(
            resolve(root, "assets/app.js"),
            Some(PathBuf::from("/app/ui/assets/app.js"))
        );
        for bad in [
            "../secret",
            "a/../../b",
            "/etc/passwd",
            "a\\b",
            ".env",
            "a/.git/config",
            "",
            "a\0b",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad:?}");
        }
    }
}
