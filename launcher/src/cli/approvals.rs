//! `jarvis approvals` and `jarvis permissions`: the gatekeeper from the
//! terminal.
//!
//! `approvals` talks to the running launcher's approval surface with the
//! launcher-only control token (`<data>/run/control-token`); the core's
//! API token decides nothing. A decision is bound to the arguments this
//! command printed: it sends their hash, and the launcher refuses it if the
//! request holds anything else. `permissions` edits
//! `<data>/permissions.json` under its lock, running or not.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use jarvis_actions::Tool;
use serde_json::{Value, json};

use crate::gate::permissions::Permissions;
use crate::gate::surface::read_control_token;
use crate::gate::{Choice, audit};
use crate::hint::hinted;
use crate::instance;
use crate::paths::AppPaths;
use crate::ui::open::open_in_browser;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// What waits for your decision, and what was decided lately.
    List {
        /// Print JSON for scripts (pending requests and the audit log).
        #[arg(long)]
        json: bool,
    },
    /// Allow a pending request (printed in full first).
    Approve {
        id: String,
        /// once, conversation (this tool in its conversation from now on),
        /// or always (only harmless tools).
        #[arg(long, default_value = "once")]
        scope: String,
        /// The arguments' hash you checked (from `list --json`); without it,
        /// the request as printed now is what you approve.
        #[arg(long)]
        hash: Option<String>,
    },
    /// Deny a pending request.
    Deny { id: String },
    /// Open the approval page in the browser (prints a fresh sign-in URL).
    Open {
        /// Only print the sign-in URL.
        #[arg(long)]
        no_browser: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PermissionsCommand {
    /// Standing permissions and the folders Jarvis may read and open.
    List {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Take back a standing permission for a tool (all of them, or one
    /// conversation's); the next request asks again.
    Revoke {
        tool: String,
        #[arg(long)]
        conversation: Option<String>,
    },
    /// Let `read_file` and `open_path` reach files in this folder.
    AllowFolder { path: PathBuf },
    /// Stop allowing a folder.
    ForgetFolder { path: PathBuf },
}

/// A client of the running launcher's approval surface.
struct Surface {
    origin: String,
    token: String,
    http: reqwest::Client,
}

impl Surface {
    fn connect(paths: &AppPaths) -> anyhow::Result<Self> {
        let record = instance::require_running(paths)?;
        let Some(origin) = record.approvals_url else {
            return Err(hinted(
                format!(
                    "the running Jarvis {} has no gatekeeper (it predates it)",
                    record.version
                ),
                "restart Jarvis: `jarvis stop`, then `jarvis`",
            ));
        };
        Ok(Self {
            origin,
            token: read_control_token(paths)?,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.origin))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request
            .send()
            .await
            .with_context(|| format!("could not reach the approval surface at {}", self.origin))?;
        let status = reply.status();
        let value: Value = reply.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{}",
                value["error"]["message"]
                    .as_str()
                    .unwrap_or("the launcher refused")
            );
        }
        Ok(value)
    }
}

pub async fn approvals(paths: &AppPaths, command: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    let surface = Surface::connect(paths)?;
    match command {
        ApprovalsCommand::List { json } => {
            let pending = surface
                .call(reqwest::Method::GET, "/gate/pending", None)
                .await?;
            let audit = surface
                .call(reqwest::Method::GET, "/gate/audit", None)
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "pending": pending["pending"],
                        "audit": audit["entries"],
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            let list = pending["pending"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("Nothing waits for your approval.");
            }
            for p in &list {
                print_request(p);
            }
            let entries = audit["entries"].as_array().cloned().unwrap_or_default();
            if !entries.is_empty() {
                println!("\nLately:");
                for e in entries.iter().take(15) {
                    println!(
                        "  {}  {}  {}  {}{}",
                        e["at"].as_str().unwrap_or_default(),
                        e["id"].as_str().unwrap_or("-"),
                        e["event"].as_str().unwrap_or_default(),
                        e["decision"]
                            .as_str()
                            .or(e["status"].as_str())
                            .or(e["tool"].as_str())
                            .unwrap_or_default(),
                        e["by"]
                            .as_str()
                            .map(|b| format!(" (by {b})"))
                            .unwrap_or_default(),
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ApprovalsCommand::Approve { id, scope, hash } => {
            let choice = match scope.as_str() {
                "once" => Choice::Once,
                "conversation" => Choice::Conversation,
                "always" => Choice::Always,
                other => bail!("--scope must be once, conversation or always, not '{other}'"),
            };
            decide(&surface, &id, choice, hash).await
        }
        ApprovalsCommand::Deny { id } => decide(&surface, &id, Choice::Deny, None).await,
        ApprovalsCommand::Open { no_browser } => {
            let reply = surface
                .call(reqwest::Method::POST, "/gate/signin-codes", None)
                .await?;
            let url = reply["url"]
                .as_str()
                .context("no sign-in link in the answer")?;
            println!("approvals: {url}");
            if !no_browser {
                open_in_browser(url);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_request(p: &Value) {
    println!(
        "{}  {} ({}: {})",
        p["id"].as_str().unwrap_or_default(),
        p["tool"].as_str().unwrap_or_default(),
        p["tier"].as_str().unwrap_or_default(),
        p["tier_description"].as_str().unwrap_or_default(),
    );
    println!(
        "  from: {}{}",
        p["source"].as_str().unwrap_or_default(),
        p["conversation_id"]
            .as_str()
            .map(|c| format!(", conversation {c}"))
            .unwrap_or_default()
    );
    println!(
        "  expires: {}",
        p["expires_at"].as_str().unwrap_or_default()
    );
    println!("  arguments:");
    for line in p["arguments_text"].as_str().unwrap_or_default().lines() {
        println!("    {line}");
    }
}

async fn decide(
    surface: &Surface,
    id: &str,
    choice: Choice,
    hash: Option<String>,
) -> anyhow::Result<ExitCode> {
    let pending = surface
        .call(reqwest::Method::GET, "/gate/pending", None)
        .await?;
    let request = pending["pending"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["id"] == id))
        .cloned()
        .ok_or_else(|| {
            hinted(
                format!("no request '{id}' waits for a decision"),
                "`jarvis approvals list` shows what waits",
            )
        })?;
    print_request(&request);
    let hash = hash.unwrap_or_else(|| {
        request["arguments_hash"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    let reply = surface
        .call(
            reqwest::Method::POST,
            "/gate/decide",
            Some(json!({"id": id, "arguments_hash": hash, "choice": choice})),
        )
        .await?;
    let state = &reply["state"];
    match state["status"].as_str().unwrap_or_default() {
        "denied" => println!("Denied."),
        "done" => println!("Done: {}", state["result"]),
        "failed" => println!(
            "It failed: {}",
            state["reason"].as_str().unwrap_or_default()
        ),
        other => println!("{other}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn permissions(paths: &AppPaths, command: PermissionsCommand) -> anyhow::Result<ExitCode> {
    let data_dir = &paths.data_dir;
    if !matches!(command, PermissionsCommand::List { .. }) {
        paths.create_tree()?;
    }
    match command {
        PermissionsCommand::List { json } => {
            let p = Permissions::load(data_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
                return Ok(ExitCode::SUCCESS);
            }
            if p.grants.is_empty() {
                println!("No standing permissions: every request asks you.");
            }
            for g in &p.grants {
                println!(
                    "{}  {}{}  (given {} by {})",
                    g.tool,
                    serde_json::to_value(g.scope)?.as_str().unwrap_or_default(),
                    g.conversation_id
                        .as_deref()
                        .map(|c| format!(" {c}"))
                        .unwrap_or_default(),
                    g.granted_at,
                    serde_json::to_value(g.granted_by)?
                        .as_str()
                        .unwrap_or_default(),
                );
            }
            if p.folders.is_empty() {
                println!("No folder is allowed for read_file and open_path.");
            } else {
                println!("Folders Jarvis may read and open:");
                for f in &p.folders {
                    println!("  {}", f.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PermissionsCommand::Revoke { tool, conversation } => {
            let tool = Tool::from_name(&tool).ok_or_else(|| {
                hinted(
                    format!("there is no tool '{tool}'"),
                    "`jarvis permissions list` shows the granted ones",
                )
            })?;
            let n = Permissions::update(data_dir, |p| Ok(p.revoke(tool, conversation.as_deref())))?;
            record(
                paths,
                json!({"event": "permission_revoked", "tool": tool, "conversation_id": conversation, "count": n, "by": "terminal"}),
            );
            println!("Revoked {n} permission(s) for {tool}; the next request asks you.");
            Ok(ExitCode::SUCCESS)
        }
        PermissionsCommand::AllowFolder { path } => {
            let (resolved, _) = Permissions::allow_folder(data_dir, &path)?;
            record(
                paths,
                json!({"event": "folder_allowed", "path": resolved, "by": "terminal"}),
            );
            println!(
                "Jarvis may now read and open files in {}.",
                resolved.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PermissionsCommand::ForgetFolder { path } => {
            let (resolved, removed) = Permissions::forget_folder(data_dir, &path)?;
            if removed == 0 {
                bail!("{} was not an allowed folder", resolved.display());
            }
            record(
                paths,
                json!({"event": "folder_forgotten", "path": resolved, "by": "terminal"}),
            );
            println!("Jarvis may no longer reach {}.", resolved.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Into the audit log too (the running launcher appends to the same file;
/// each line is one `write`).
fn record(paths: &AppPaths, entry: Value) {
    match audit::Audit::open(&paths.data_dir) {
        Ok(log) => {
            if let Err(e) = log.record(entry) {
                tracing::warn!("{e:#}");
            }
        }
        Err(e) => tracing::warn!("{e:#}"),
    }
}
