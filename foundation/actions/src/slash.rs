//! Slash commands in a chat message: actions any model can take, because
//! the person names them.
//!
//! - `/sysinfo`
//! - `/note TEXT` (the first line, cut, is the title)
//! - `/remind DURATION TEXT` (`90s`, `5m`, `2h`, `1d`, or combined `1h30m`)
//! - `/open URL` (http or https) or `/open PATH` (an absolute path)
//! - `/read PATH`
//!
//! A message that starts with `/` but names none of these is an ordinary
//! message (`/etc/hosts is what?`).

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::tools::Tool;

/// Longest title made from a note's first line.
const TITLE_CHARS: usize = 60;

/// The commands, for help texts.
pub const COMMANDS: [(&str, &str); 5] = [
    ("/note TEXT", "save a note"),
    ("/remind 5m TEXT", "remind you in 5 minutes (s, m, h, d)"),
    (
        "/open https://… or /open /path",
        "open a web page, file or folder",
    ),
    (
        "/read /path/to/file.txt",
        "read a text file into the conversation",
    ),
    ("/sysinfo", "tell about this computer"),
];

/// A slash command that names a tool but cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (usage: {usage})")]
pub struct SlashError {
    pub message: String,
    pub usage: &'static str,
}

/// The tool and arguments a message asks for; `None` when it is no command.
pub fn parse(message: &str, now: Timestamp) -> Option<Result<(Tool, Value), SlashError>> {
    let trimmed = message.trim_start();
    let rest = trimmed.strip_prefix('/')?;
    let (command, argument) = match rest.find(char::is_whitespace) {
        Some(at) => (&rest[..at], rest[at..].trim()),
        None => (rest, ""),
    };
    let error = |message: &str, usage: &'static str| {
        Some(Err(SlashError {
            message: message.to_owned(),
            usage,
        }))
    };
    match command {
        "sysinfo" => Some(Ok((Tool::SystemInfo, json!({})))),
        "note" => {
            if argument.is_empty() {
                return error("the note is empty", "/note TEXT");
            }
            let first_line = argument.lines().next().unwrap_or_default().trim();
            let mut title: String = first_line.chars().take(TITLE_CHARS).collect();
            if first_line.chars().count() > TITLE_CHARS {
                title.push('…');
            }
            Some(Ok((
                Tool::WriteNote,
                json!({"title": title, "content": argument}),
            )))
        }
        "remind" => {
            let usage = "/remind 5m TEXT";
            let (when, text) = match argument.find(char::is_whitespace) {
                Some(at) => (&argument[..at], argument[at..].trim()),
                None => (argument, ""),
            };
            let Some(after) = parse_duration(when) else {
                return error(
                    &format!("'{when}' is not a duration like 5m or 1h30m"),
                    usage,
                );
            };
            if text.is_empty() {
                return error("what should Jarvis remind you of?", usage);
            }
            let due_at = now.saturating_add(after).unwrap_or(now);
            Some(Ok((
                Tool::SetReminder,
                json!({"text": text, "due_at": due_at.to_string()}),
            )))
        }
        "open" => {
            let usage = "/open https://… or /open /path";
            if argument.is_empty() {
                return error("open what?", usage);
            }
            let scheme = argument.contains("://")
                || argument.contains(':') && !argument.starts_with('/') && !is_drive_path(argument);
            if scheme {
                Some(Ok((Tool::OpenUrl, json!({"url": argument}))))
            } else {
                Some(Ok((Tool::OpenPath, json!({"path": argument}))))
            }
        }
        "read" => {
            if argument.is_empty() {
                return error("read which file?", "/read /path/to/file.txt");
            }
            Some(Ok((Tool::ReadFile, json!({"path": argument}))))
        }
        _ => None,
    }
}

/// `C:\\...` or `C:/...`: a Windows path, not a URL scheme.
fn is_drive_path(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/')
}

/// `90s`, `5m`, `2h`, `1d`, `1h30m`: at least one second.
fn parse_duration(text: &str) -> Option<SignedDuration> {
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: i64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
    }
    if !digits.is_empty() || total < 1 {
        return None;
    }
    Some(SignedDuration::from_secs(total))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn now() -> Timestamp {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    fn ok(message: &str) -> (Tool, Value) {
        parse(message, now()).unwrap().unwrap()
    }

    #[test]
    fn commands_become_tools() {
        assert_eq!(ok("/sysinfo"), (Tool::SystemInfo, json!({})));
        assert_eq!(
            ok("/note buy milk\nand bread"),
            (
                Tool::WriteNote,
                json!({"title": "buy milk", "content": "buy milk\nand bread"})
            )
        );
        assert_eq!(
            ok("/remind 1h30m call Ana"),
            (
                Tool::SetReminder,
                json!({"text": "call Ana", "due_at": "2026-11-30T13:30:00Z"})
            )
        );
        assert_eq!(
            ok("/open https://example.org/"),
            (Tool::OpenUrl, json!({"url": "https://example.org/"}))
        );
        assert_eq!(
            ok("/open javascript:alert(1)").0,
            Tool::OpenUrl,
            "a scheme makes it a URL, refused later by the URL check"
        );
        assert_eq!(
            ok("/open /home/a/report.pdf"),
            (Tool::OpenPath, json!({"path": "/home/a/report.pdf"}))
        );
        assert_eq!(
            ok("  /read /home/a/x.txt "),
            (Tool::ReadFile, json!({"path": "/home/a/x.txt"}))
        );
    }

    #[test]
    fn windows_paths_are_paths() {
        assert_eq!(ok("/open C:\\Users\\a\\x.pdf").0, Tool::OpenPath);
        assert_eq!(ok("/open mailto:a@b.c").0, Tool::OpenUrl);
    }

    #[test]
    fn other_messages_are_not_commands() {
        assert!(parse("/etc/hosts is what?", now()).is_none());
        assert!(parse("hello /note", now()).is_none());
        assert!(parse("", now()).is_none());
    }

    #[test]
    fn malformed_commands_say_how() {
        let e = parse("/remind soon tea", now()).unwrap().unwrap_err();
        assert!(e.to_string().contains("usage: /remind 5m TEXT"), "{e}");
        assert!(parse("/remind 5m", now()).unwrap().is_err());
        assert!(parse("/note", now()).unwrap().is_err());
        assert!(parse("/read", now()).unwrap().is_err());
        assert!(parse("/remind 0s tea", now()).unwrap().is_err());
        assert!(parse("/remind 5x tea", now()).unwrap().is_err());
    }
}
