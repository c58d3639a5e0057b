//! Actions the brain asks for: the core only describes them. It checks the
//! arguments, hands the request to the launcher through memory, and
//! reports what the launcher says; it cannot decide, and it never touches
//! the OS itself (the launcher's gatekeeper does, once the person agreed).
//!
//! Domain logic, no HTTP: the routes map [`ActionError`] to their answers.

use std::time::Duration;

use jarvis_actions::slash::SlashError;
use jarvis_actions::{
    ActionRequest, ActionState, DecidedBy, InvalidArguments, Source, Status, Tool, validate,
};
use jiff::Timestamp;
use serde_json::Value;

use crate::memory::{ConversationId, Memory, MemoryError};

/// How long a chat turn waits for the launcher's answer: the approval
/// timeout the launcher applies (`JARVIS_APPROVAL_TIMEOUT_S`, default
/// 120 s) and a margin; the launcher has denied it by then.
pub fn approval_wait() -> Duration {
    let seconds = std::env::var(jarvis_protocol::env::APPROVAL_TIMEOUT_S)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(jarvis_actions::record::DEFAULT_APPROVAL_TIMEOUT_S);
    Duration::from_secs(seconds.saturating_add(30))
}

/// How often a waiting turn looks at the request's state.
const POLL: Duration = Duration::from_millis(200);

/// Why a request was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Invalid(#[from] InvalidArguments),
    #[error(transparent)]
    Slash(#[from] SlashError),
    #[error("no conversation '{}'", .0.as_str())]
    ConversationNotFound(ConversationId),
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// Checks and hands a request to the launcher; returns it with its new id.
pub async fn submit(
    memory: &Memory,
    tool: &str,
    arguments: Value,
    conversation: Option<&ConversationId>,
    source: Source,
) -> Result<ActionRequest, ActionError> {
    let known = Tool::from_name(tool).ok_or_else(|| InvalidArguments::UnknownTool(tool.into()))?;
    validate(known, &arguments, Timestamp::now())?;
    if let Some(id) = conversation
        && memory.settings(id).await?.is_none()
    {
        return Err(ActionError::ConversationNotFound(id.clone()));
    }
    let request = ActionRequest {
        id: new_id(),
        tool: known.name().to_owned(),
        arguments,
        conversation_id: conversation.map(|c| c.as_str().to_owned()),
        source,
        created_at: Timestamp::now().to_string(),
    };
    memory.submit_action(&request).await?;
    tracing::info!(id = %request.id, tool = %request.tool, ?source, "action requested");
    Ok(request)
}

/// Waits until the launcher says the request is over, or `deadline`
/// passes (`None`: the launcher never answered).
pub async fn wait_final(
    memory: &Memory,
    id: &str,
    deadline: Duration,
) -> Result<Option<ActionState>, MemoryError> {
    let started = tokio::time::Instant::now();
    loop {
        if let Some((_, Some(state))) = memory.action(id).await?
            && state.status.is_final()
        {
            return Ok(Some(state));
        }
        if started.elapsed() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What the chat says about a finished request (Markdown).
pub fn describe(request: &ActionRequest, state: Option<&ActionState>) -> String {
    let Some(state) = state else {
        return "Jarvis' launcher did not answer this request, so nothing was done.".into();
    };
    let reason = state.reason.as_deref().unwrap_or("no reason given");
    match state.status {
        Status::Done => describe_result(request, state.result.as_ref()),
        Status::Denied if state.decided_by == Some(DecidedBy::Launcher) => {
            format!("Jarvis refused this request: {reason}")
        }
        Status::Denied if state.decided_by == Some(DecidedBy::Requester) => {
            "This request was withdrawn, so nothing was done.".into()
        }
        Status::Denied => "You declined this request, so nothing was done.".into(),
        Status::Expired => "Nobody approved this request in time, so nothing was done.".into(),
        Status::Failed => format!("That did not work: {reason}"),
        Status::Pending | Status::Running => "This request is still waiting.".into(),
    }
}

fn describe_result(request: &ActionRequest, result: Option<&Value>) -> String {
    let empty = Value::Null;
    let r = result.unwrap_or(&empty);
    let text = |key: &str| r[key].as_str().unwrap_or_default().to_owned();
    let bytes = |key: &str| {
        r[key]
            .as_u64()
            .map(human_bytes)
            .unwrap_or_else(|| "unknown".into())
    };
    match Tool::from_name(&request.tool) {
        Some(Tool::SystemInfo) => format!(
            "This computer:\n\n- System: {} ({})\n- CPU threads: {}\n- Memory: {} free of {}\n- Free disk space for Jarvis' data: {}",
            text("os"),
            text("arch"),
            r["cpus"].as_u64().unwrap_or_default(),
            bytes("memory_available_bytes"),
            bytes("memory_total_bytes"),
            bytes("data_disk_free_bytes"),
        ),
        Some(Tool::ReadFile) => {
            let body = text("text");
            let fence = "`".repeat(longest_backtick_run(&body).max(2) + 1);
            format!(
                "Contents of `{}`:\n\n{fence}\n{body}\n{fence}",
                text("path")
            )
        }
        Some(Tool::WriteNote) => format!(
            "Saved the note **{}** as `{}`.",
            text("title"),
            text("path")
        ),
        Some(Tool::SetReminder) => {
            format!("I will remind you at {}: {}", text("due_at"), text("text"))
        }
        Some(Tool::OpenUrl) => format!("Opened {}", text("url")),
        Some(Tool::OpenPath) => format!("Opened `{}`.", text("path")),
        None => "Done.".into(),
    }
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

fn human_bytes(n: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let gib = n as f64 / GIB;
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let mib = n as f64 / (1024.0 * 1024.0);
        format!("{mib:.0} MiB")
    }
}

/// A fresh request id: 32 random hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not something to continue after.
    #[expect(clippy::expect_used, reason = "no randomness, no ids")]
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(tool: &str) -> ActionRequest {
        ActionRequest {
            id: new_id(),
            tool: tool.into(),
            arguments: json!({}),
            conversation_id: None,
            source: Source::Slash,
            created_at: String::new(),
        }
    }

    fn state(status: Status, decided_by: DecidedBy, result: Value) -> ActionState {
        ActionState {
            status,
            decided_by: Some(decided_by),
            result: Some(result),
            reason: Some("not allowed".into()),
            arguments_hash: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn file_contents_are_fenced_whatever_they_hold() {
        let text = describe(
            &request("read_file"),
            Some(&state(
                Status::Done,
                DecidedBy::Ui,
                json!({"path": "/a", "text": "x ``` y"}),
            )),
        );
        assert!(text.contains("\n````\nx ``` y\n````"), "{text}");
    }

    #[test]
    fn outcomes_read_as_sentences() {
        let r = request("open_url");
        assert!(describe(&r, None).contains("nothing was done"));
        assert!(
            describe(
                &r,
                Some(&state(Status::Denied, DecidedBy::Launcher, json!(null)))
            )
            .contains("refused this request: not allowed")
        );
        assert!(
            describe(
                &r,
                Some(&state(Status::Expired, DecidedBy::Timeout, json!(null)))
            )
            .contains("in time")
        );
        assert_eq!(
            describe(
                &r,
                Some(&state(
                    Status::Done,
                    DecidedBy::Ui,
                    json!({"url": "https://a.b/"})
                ))
            ),
            "Opened https://a.b/"
        );
    }
}
