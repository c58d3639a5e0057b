//! The tools: one name, a one-line description, a risk tier and a JSON
//! schema each, and the checks their arguments must pass.
//!
//! The checks here need no file system: they are what both the core and
//! the launcher can decide from the arguments alone. Whether a path lies
//! in a folder the person allowed is the launcher's to check (it resolves
//! symlinks on the real disk).

use std::fmt;
use std::path::{Component, Path};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// Longest path a tool accepts.
pub const MAX_PATH_CHARS: usize = 4096;
/// Longest URL `open_url` accepts.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest note title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Largest note.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Longest reminder text.
pub const MAX_REMINDER_CHARS: usize = 500;
/// How far ahead a reminder may be set.
pub const MAX_REMINDER_AHEAD: SignedDuration = SignedDuration::from_hours(366 * 24);
/// A reminder due this long ago is refused (a request waits for approval
/// a while, so slightly past is fine: it fires at once).
pub const MAX_REMINDER_LATE: SignedDuration = SignedDuration::from_hours(24);

/// Every tool there is. No tool runs code or a shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    SystemInfo,
    ReadFile,
    WriteNote,
    SetReminder,
    OpenUrl,
    OpenPath,
}

/// How much harm a tool can do, which decides what the person may allow
/// for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Reads harmless facts about this computer.
    ReadOnly,
    /// Writes only Jarvis' own notes and reminders.
    OwnData,
    /// Reads the person's files into the conversation.
    Private,
    /// Opens something outside Jarvis (a web page, a file).
    External,
}

impl Tier {
    /// Whether "always allow" may be offered: only tiers that can neither
    /// leak nor destroy anything.
    pub fn may_always_allow(self) -> bool {
        matches!(self, Self::ReadOnly | Self::OwnData)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::ReadOnly => "reads harmless facts about this computer",
            Self::OwnData => "writes only Jarvis' own notes and reminders",
            Self::Private => "reads your files into the conversation",
            Self::External => "opens something outside Jarvis",
        }
    }
}

impl Tool {
    pub const ALL: [Tool; 6] = [
        Tool::SystemInfo,
        Tool::ReadFile,
        Tool::WriteNote,
        Tool::SetReminder,
        Tool::OpenUrl,
        Tool::OpenPath,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::SystemInfo => "system_info",
            Self::ReadFile => "read_file",
            Self::WriteNote => "write_note",
            Self::SetReminder => "set_reminder",
            Self::OpenUrl => "open_url",
            Self::OpenPath => "open_path",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::SystemInfo => {
                "Tell the operating system, CPU, memory and free disk space of Jarvis' data folder."
            }
            Self::ReadFile => "Read a text file in a folder you allowed Jarvis to read.",
            Self::WriteNote => "Save a Markdown note in Jarvis' notes folder.",
            Self::SetReminder => "Remind you of something at a given time.",
            Self::OpenUrl => "Open a web address (http or https) in your browser.",
            Self::OpenPath => {
                "Open a file or folder you allowed Jarvis to open, with its usual app."
            }
        }
    }

    pub fn tier(self) -> Tier {
        match self {
            Self::SystemInfo => Tier::ReadOnly,
            Self::WriteNote | Self::SetReminder => Tier::OwnData,
            Self::ReadFile => Tier::Private,
            Self::OpenUrl | Self::OpenPath => Tier::External,
        }
    }

    /// The JSON schema of the tool's arguments (also what a model that
    /// calls tools is constrained to).
    pub fn schema(self) -> Value {
        let object = |properties: Value, required: &[&str]| {
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        };
        match self {
            Self::SystemInfo => object(json!({}), &[]),
            Self::ReadFile => object(
                json!({"path": {"type": "string", "description": "Absolute path of the file", "maxLength": MAX_PATH_CHARS}}),
                &["path"],
            ),
            Self::WriteNote => object(
                json!({
                    "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE_CHARS},
                    "content": {"type": "string", "maxLength": MAX_NOTE_BYTES},
                }),
                &["title", "content"],
            ),
            Self::SetReminder => object(
                json!({
                    "text": {"type": "string", "minLength": 1, "maxLength": MAX_REMINDER_CHARS},
                    "due_at": {"type": "string", "format": "date-time", "description": "When, RFC 3339"},
                }),
                &["text", "due_at"],
            ),
            Self::OpenUrl => object(
                json!({"url": {"type": "string", "format": "uri", "pattern": "^https?://", "maxLength": MAX_URL_CHARS}}),
                &["url"],
            ),
            Self::OpenPath => object(
                json!({"path": {"type": "string", "description": "Absolute path of the file or folder", "maxLength": MAX_PATH_CHARS}}),
                &["path"],
            ),
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tool's arguments once they passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arguments {
    SystemInfo,
    ReadFile { path: String },
    WriteNote { title: String, content: String },
    SetReminder { text: String, due_at: Timestamp },
    OpenUrl { url: String },
    OpenPath { path: String },
}

/// Why arguments were refused (the message says which and how).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidArguments {
    #[error("there is no tool '{0}'")]
    UnknownTool(String),
    #[error("the arguments of {0} must be a JSON object")]
    NotAnObject(Tool),
    #[error("{tool} takes no argument '{name}'")]
    Unexpected { tool: Tool, name: String },
    #[error("{tool} needs '{name}' as a string")]
    Missing { tool: Tool, name: &'static str },
    #[error("{tool}: {message}")]
    Invalid { tool: Tool, message: String },
}

/// Checks `arguments` for `tool` as of `now`: types, sizes, schemes,
/// absolute paths without `..`, times.
pub fn validate(
    tool: Tool,
    arguments: &Value,
    now: Timestamp,
) -> Result<Arguments, InvalidArguments> {
    let object = arguments
        .as_object()
        .ok_or(InvalidArguments::NotAnObject(tool))?;
    let allowed: &[&str] = match tool {
        Tool::SystemInfo => &[],
        Tool::ReadFile | Tool::OpenPath => &["path"],
        Tool::WriteNote => &["title", "content"],
        Tool::SetReminder => &["text", "due_at"],
        Tool::OpenUrl => &["url"],
    };
    if let Some(name) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(InvalidArguments::Unexpected {
            tool,
            name: name.clone(),
        });
    }
    let text = |name: &'static str| -> Result<String, InvalidArguments> {
        object
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(InvalidArguments::Missing { tool, name })
    };
    let invalid = |message: String| InvalidArguments::Invalid { tool, message };
    Ok(match tool {
        Tool::SystemInfo => Arguments::SystemInfo,
        Tool::ReadFile | Tool::OpenPath => {
            let path = text("path")?;
            check_path(&path).map_err(invalid)?;
            if tool == Tool::ReadFile {
                Arguments::ReadFile { path }
            } else {
                Arguments::OpenPath { path }
            }
        }
        Tool::WriteNote => {
            let title = text("title")?;
            let content = text("content")?;
            if title.trim().is_empty() {
                return Err(invalid("the title must not be empty".into()));
            }
            if title.chars().count() > MAX_TITLE_CHARS {
                return Err(invalid(format!(
                    "the title is longer than {MAX_TITLE_CHARS} characters"
                )));
            }
            if title.chars().any(char::is_control) {
                return Err(invalid("the title must be one line of text".into()));
            }
            if content.len() > MAX_NOTE_BYTES {
                return Err(invalid(format!(
                    "the note is larger than {} KiB",
                    MAX_NOTE_BYTES / 1024
                )));
            }
            Arguments::WriteNote { title, content }
        }
        Tool::SetReminder => {
            let text_value = text("text")?;
            if text_value.trim().is_empty() {
                return Err(invalid("the reminder text must not be empty".into()));
            }
            if text_value.chars().count() > MAX_REMINDER_CHARS {
                return Err(invalid(format!(
                    "the reminder is longer than {MAX_REMINDER_CHARS} characters"
                )));
            }
            let due_at: Timestamp = text("due_at")?
                .parse()
                .map_err(|e| invalid(format!("due_at is not an RFC 3339 time: {e}")))?;
            let ahead = due_at.duration_since(now);
            if ahead > MAX_REMINDER_AHEAD {
                return Err(invalid("a reminder can be at most a year ahead".into()));
            }
            if ahead < -MAX_REMINDER_LATE {
                return Err(invalid("that time has passed".into()));
            }
            Arguments::SetReminder {
                text: text_value,
                due_at,
            }
        }
        Tool::OpenUrl => {
            let url = text("url")?;
            check_url(&url).map_err(invalid)?;
            Arguments::OpenUrl { url }
        }
    })
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path must not be empty".into());
    }
    if path.chars().count() > MAX_PATH_CHARS {
        return Err(format!(
            "the path is longer than {MAX_PATH_CHARS} characters"
        ));
    }
    if path.contains('\0') {
        return Err("the path contains a NUL character".into());
    }
    let parsed = Path::new(path);
    if !parsed.is_absolute() {
        return Err(format!("'{path}' is not an absolute path"));
    }
    if parsed.components().any(|c| c == Component::ParentDir) {
        return Err(format!("'{path}' contains '..'"));
    }
    Ok(())
}

fn check_url(raw: &str) -> Result<(), String> {
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(format!(
            "the address is longer than {MAX_URL_CHARS} characters"
        ));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("'{raw}' is not a web address: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "only http and https addresses can be opened, not '{}:'",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{raw}' names no host"));
    }
    Ok(())
}

/// What a decision is bound to: SHA-256 (hex) of the tool's name and the
/// arguments in canonical JSON (object keys sorted, no spaces). A decision
/// that names another hash was made for other arguments and is refused.
pub fn arguments_hash(tool: &str, arguments: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tool.as_bytes());
    hasher.update([0]);
    hasher.update(canonical(arguments).to_string().as_bytes());
    hex::encode(hasher.finalize())
}

fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut sorted = Map::new();
            for key in keys {
                sorted.insert(key.clone(), canonical(&map[key]));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn now() -> Timestamp {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    fn refused(tool: Tool, arguments: Value) -> String {
        validate(tool, &arguments, now()).unwrap_err().to_string()
    }

    #[test]
    fn every_tool_has_a_schema_that_forbids_other_arguments() {
        for tool in Tool::ALL {
            let schema = tool.schema();
            assert_eq!(schema["additionalProperties"], false, "{tool}");
            assert_eq!(Tool::from_name(tool.name()), Some(tool));
        }
        assert_eq!(Tool::from_name("run_shell"), None);
    }

    #[test]
    fn only_harmless_tiers_can_be_always_allowed() {
        let always: Vec<Tool> = Tool::ALL
            .into_iter()
            .filter(|t| t.tier().may_always_allow())
            .collect();
        assert_eq!(
            always,
            [Tool::SystemInfo, Tool::WriteNote, Tool::SetReminder]
        );
    }

    #[test]
    fn paths_must_be_absolute_without_parent_steps() {
        assert!(validate(Tool::ReadFile, &json!({"path": "/home/a/notes.txt"}), now()).is_ok());
        assert!(refused(Tool::ReadFile, json!({"path": "notes.txt"})).contains("not an absolute"));
        assert!(refused(Tool::ReadFile, json!({"path": "/home/a/../b/x"})).contains("'..'"));
        assert!(refused(Tool::OpenPath, json!({"path": "/a\u{0}b"})).contains("NUL"));
        assert!(refused(Tool::ReadFile, json!({"path": 7})).contains("needs 'path'"));
        assert!(
            refused(Tool::ReadFile, json!({"path": "/x", "mode": "w"}))
                .contains("no argument 'mode'")
        );
        assert!(refused(Tool::ReadFile, json!(["/x"])).contains("JSON object"));
    }

    #[test]
    fn only_http_and_https_addresses_open() {
        assert!(
            validate(
                Tool::OpenUrl,
                &json!({"url": "https://example.org/a?b=c"}),
                now()
            )
            .is_ok()
        );
        for bad in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "ftp://example.org/",
            "data:text/html,hi",
            "https://",
            "example.org",
        ] {
            assert!(
                validate(Tool::OpenUrl, &json!({"url": bad}), now()).is_err(),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn reminders_are_within_a_year_and_not_long_past() {
        let ok = validate(
            Tool::SetReminder,
            &json!({"text": "tea", "due_at": "2026-11-30T12:05:00Z"}),
            now(),
        )
        .unwrap();
        assert!(matches!(ok, Arguments::SetReminder { .. }));
        assert!(
            refused(
                Tool::SetReminder,
                json!({"text": "tea", "due_at": "2028-01-01T00:00:00Z"})
            )
            .contains("a year")
        );
        assert!(
            refused(
                Tool::SetReminder,
                json!({"text": "tea", "due_at": "2020-01-01T00:00:00Z"})
            )
            .contains("passed")
        );
        assert!(
            refused(
                Tool::SetReminder,
                json!({"text": " ", "due_at": "2026-11-30T12:05:00Z"})
            )
            .contains("empty")
        );
        assert!(
            refused(Tool::SetReminder, json!({"text": "tea", "due_at": "soon"}))
                .contains("RFC 3339")
        );
    }

    #[test]
    fn notes_have_a_one_line_title_and_a_size_cap() {
        assert!(
            refused(Tool::WriteNote, json!({"title": "a\nb", "content": ""})).contains("one line")
        );
        let big = "x".repeat(MAX_NOTE_BYTES + 1);
        assert!(refused(Tool::WriteNote, json!({"title": "a", "content": big})).contains("KiB"));
    }

    #[test]
    fn the_hash_ignores_key_order_but_not_values() {
        let a = arguments_hash("write_note", &json!({"title": "a", "content": "b"}));
        let b = arguments_hash("write_note", &json!({"content": "b", "title": "a"}));
        let c = arguments_hash("write_note", &json!({"content": "B", "title": "a"}));
        let d = arguments_hash("open_url", &json!({"content": "b", "title": "a"}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(a.len(), 64);
    }
}
