//! Runs an approved action. Only the launcher executes; nothing here runs
//! code or a shell, and each tool checks its own limits again right before
//! it acts (the allowed folders are resolved on the real disk now, not
//! when the request arrived).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use jarvis_actions::Arguments;
use jarvis_durable::{Visibility, write_atomic};
use serde_json::{Value, json};

use super::permissions::Permissions;
use super::reminders::{Reminder, Reminders};

/// Largest file `read_file` reads.
pub const MAX_READ_BYTES: u64 = 256 * 1024;

/// Runs `arguments`; `Ok` is the tool's result, `Err` why it failed.
pub async fn run(
    arguments: &Arguments,
    data_dir: &Path,
    reminders: &Reminders,
    request_id: &str,
    conversation_id: Option<&str>,
) -> Result<Value, String> {
    match arguments {
        Arguments::SystemInfo => {
            let data_dir = data_dir.to_owned();
            blocking(move || Ok(system_info(&data_dir))).await
        }
        Arguments::ReadFile { path } => {
            let (path, data_dir) = (PathBuf::from(path), data_dir.to_owned());
            blocking(move || read_file(&path, &data_dir)).await
        }
        Arguments::WriteNote { title, content } => {
            let (title, content, data_dir) = (title.clone(), content.clone(), data_dir.to_owned());
            blocking(move || write_note(&title, &content, &data_dir)).await
        }
        Arguments::SetReminder { text, due_at } => {
            let reminder = Reminder {
                id: request_id.to_owned(),
                text: text.clone(),
                due_at: due_at.to_string(),
                conversation_id: conversation_id.map(str::to_owned),
            };
            reminders
                .add(&reminder, *due_at)
                .await
                .map_err(|e| format!("could not store the reminder: {e:#}"))?;
            Ok(json!({"id": reminder.id, "text": reminder.text, "due_at": reminder.due_at}))
        }
        Arguments::OpenUrl { url } => {
            let url = url.clone();
            blocking(move || open_with_os(&url).map(|()| json!({"url": url}))).await
        }
        Arguments::OpenPath { path } => {
            let (path, data_dir) = (PathBuf::from(path), data_dir.to_owned());
            blocking(move || {
                let resolved = Permissions::load(&data_dir)
                    .map_err(|e| format!("{e:#}"))?
                    .resolve_allowed(&path)?;
                open_with_os(&resolved.to_string_lossy())?;
                Ok(json!({"path": resolved}))
            })
            .await
        }
    }
}

async fn blocking(
    work: impl FnOnce() -> Result<Value, String> + Send + 'static,
) -> Result<Value, String> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(format!("the action stopped unexpectedly: {e}")))
}

fn system_info(data_dir: &Path) -> Value {
    let (total, available) = memory();
    json!({
        "os": os_name(),
        "arch": std::env::consts::ARCH,
        "cpus": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "memory_total_bytes": total,
        "memory_available_bytes": available,
        "data_disk_free_bytes": fs4::available_space(data_dir).ok(),
    })
}

fn os_name() -> String {
    if cfg!(target_os = "linux")
        && let Ok(release) = std::fs::read_to_string("/etc/os-release")
        && let Some(name) = release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))
    {
        return name.trim_matches('"').to_owned();
    }
    std::env::consts::OS.to_owned()
}

/// Total and available memory in bytes where the OS says (Linux).
fn memory() -> (Option<u64>, Option<u64>) {
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else {
        return (None, None);
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

fn read_file(path: &Path, data_dir: &Path) -> Result<Value, String> {
    let permissions = Permissions::load(data_dir).map_err(|e| format!("{e:#}"))?;
    let resolved = permissions.resolve_allowed(path)?;
    let file = open_no_follow(&resolved)
        .map_err(|e| format!("cannot open {}: {e}", resolved.display()))?;
    // The path was checked, then opened: if a folder on the way was
    // swapped for a symlink in between, the file opened is elsewhere. Ask
    // the OS which file is open, and check that one.
    if let Some(opened) = opened_path(&file)
        && permissions.resolve_allowed(&opened).is_err()
    {
        return Err(format!(
            "{} changed while Jarvis opened it and now leads outside the folders you allowed",
            path.display()
        ));
    }
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", resolved.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", resolved.display()));
    }
    if meta.len() > MAX_READ_BYTES {
        return Err(format!(
            "{} is {} KiB; Jarvis reads text files up to {} KiB",
            resolved.display(),
            meta.len() / 1024,
            MAX_READ_BYTES / 1024
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_READ_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", resolved.display()))?;
    let text = String::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'))
        .ok_or_else(|| format!("{} is not a text file", resolved.display()))?;
    Ok(json!({"path": resolved, "bytes": text.len(), "text": text}))
}

/// Opens for reading without following a symlink in the last step.
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    options.open(path)
}

/// The path of the file `file` is, as the OS says (Linux: `/proc/self/fd`);
/// `None` where it cannot say.
fn opened_path(file: &std::fs::File) -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
    }
}

/// Notes go to `<data>/notes/<slug>.md`, never elsewhere, never over an
/// existing note.
fn write_note(title: &str, content: &str, data_dir: &Path) -> Result<Value, String> {
    let dir = data_dir.join("notes");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let slug = slug(title);
    let mut path = dir.join(format!("{slug}.md"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{slug}-{n}.md"));
        n += 1;
    }
    let body = format!("# {title}\n\n{content}\n");
    write_atomic("note", &path, body.as_bytes(), Visibility::OwnerOnly)
        .map_err(|e| format!("{e:#}"))?;
    Ok(json!({"path": path, "title": title}))
}

/// Lowercase letters, digits and dashes, at most 60; `note` if none.
fn slug(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 60 {
            break;
        }
    }
    let slug = slug.trim_matches('-').to_owned();
    if slug.is_empty() { "note".into() } else { slug }
}

/// Opens a URL or path with the OS's handler (or `JARVIS_OPEN_COMMAND`),
/// as one argument: no shell reads it.
pub fn open_with_os(target: &str) -> Result<(), String> {
    let mut command = crate::detached::os_opener();
    command.arg(target);
    crate::detached::spawn(command)
        .map_err(|e| format!("could not start the program that opens files and links: {e}"))
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn slugs_are_safe_file_names() {
        assert_eq!(slug("Buy milk & bread!"), "buy-milk-bread");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("日本"), "note");
    }

    #[test]
    fn notes_never_overwrite_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_note("Shopping", "milk", dir.path()).unwrap();
        let b = write_note("Shopping", "bread", dir.path()).unwrap();
        assert_ne!(a["path"], b["path"]);
        let b_path = b["path"].as_str().unwrap();
        assert!(b_path.ends_with("notes/shopping-2.md"), "{b_path}");
        assert_eq!(
            std::fs::read_to_string(b_path).unwrap(),
            "# Shopping\n\nbread\n"
        );
    }

    #[test]
    fn read_file_refuses_big_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        std::fs::create_dir_all(&allowed).unwrap();
        Permissions::update(dir.path(), |p| {
            p.folders.push(allowed.clone());
            Ok(())
        })
        .unwrap();
        std::fs::write(allowed.join("big.txt"), vec![b'a'; 300 * 1024]).unwrap();
        std::fs::write(allowed.join("bin"), [0u8, 1, 2]).unwrap();
        std::fs::write(allowed.join("ok.txt"), "hello").unwrap();
        assert!(
            read_file(&allowed.join("big.txt"), dir.path())
                .unwrap_err()
                .contains("KiB")
        );
        assert!(
            read_file(&allowed.join("bin"), dir.path())
                .unwrap_err()
                .contains("not a text file")
        );
        assert_eq!(
            read_file(&allowed.join("ok.txt"), dir.path()).unwrap()["text"],
            "hello"
        );
    }
}
