//! Opening the UI: a fresh sign-in URL from the running launcher (for
//! `jarvis open` and a second launch) and the OS's default browser.

use std::time::Duration;

use anyhow::Context as _;
use jarvis_protocol::instance::TOKEN_FILE_NAME;

use super::state::{SIGNIN_CODES_PATH, STOP_PATH};
use crate::hint::hinted;
use crate::instance;
use crate::paths::AppPaths;

/// Asks the running launcher to stop (`jarvis stop`), through its UI
/// origin with the API token: the same on every OS.
pub async fn request_stop(paths: &AppPaths) -> anyhow::Result<()> {
    post_with_token(paths, STOP_PATH, "the running Jarvis refused to stop").await?;
    Ok(())
}

/// Asks the running Jarvis for a one-time sign-in URL, proving with the
/// API token (owner-only, in `<data>/run/`) that we are its user.
pub async fn request_signin_url(paths: &AppPaths) -> anyhow::Result<String> {
    let reply = post_with_token(
        paths,
        SIGNIN_CODES_PATH,
        "the running Jarvis refused to make a sign-in link",
    )
    .await?;
    let body: serde_json::Value = reply.json().await?;
    body["url"]
        .as_str()
        .map(str::to_owned)
        .context("the running Jarvis answered without a sign-in link")
}

/// `POST <ui origin><path>` to the running launcher with the API token, as
/// the tools do (no `Origin`); `refused` names a non-2xx answer.
async fn post_with_token(
    paths: &AppPaths,
    path: &str,
    refused: &'static str,
) -> anyhow::Result<reqwest::Response> {
    let record = instance::require_running(paths)?;
    let Some(ui_url) = record.ui_url else {
        return Err(hinted(
            format!(
                "the running Jarvis {} has no UI (it predates it)",
                record.version
            ),
            "restart Jarvis: `jarvis stop`, then `jarvis`",
        ));
    };
    let token_file = paths.run_dir.join(TOKEN_FILE_NAME);
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("could not read the API token in {}", token_file.display()))?;
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?
        .post(format!("{ui_url}{path}"))
        .bearer_auth(token.trim())
        .send()
        .await
        .with_context(|| format!("could not reach the Jarvis UI at {ui_url}"))?
        .error_for_status()
        .context(refused)
}

/// Opens `url` in the default browser. Failing to is not fatal: the URL is
/// printed too.
pub fn open_in_browser(url: &str) {
    let mut command = crate::detached::os_opener();
    command.arg(url);
    if let Err(e) = crate::detached::spawn(command) {
        tracing::info!("could not open a browser: {e}");
        eprintln!("Could not open a browser ({e}); open the address above yourself.");
    }
}
