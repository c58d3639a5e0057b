//! Crash-safe file operations for everything Jarvis persists.
//!
//! Invariant: a file written through [`write_atomic`] is, after a crash at
//! any instant, either its complete old content or its complete new content,
//! never a mix and never empty. The recipe is the classic one: write a
//! temporary file in the destination's own folder, `fsync` it, rename it over
//! the destination, then `fsync` the folder so the rename itself is durable.
//!
//! Every error names the *role* of the file ("config file", "API token") and
//! its path, so a message tells the user which file failed and where.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An I/O failure on a named file.
#[derive(Debug, thiserror::Error)]
#[error("could not {action} the {role} at '{path}'")]
pub struct FileError {
    pub action: &'static str,
    pub role: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FileError {
    fn new(action: &'static str, role: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            role,
            path: path.to_owned(),
            source,
        }
    }

    /// True when the underlying error is "no space left on device".
    pub fn is_disk_full(&self) -> bool {
        self.source.raw_os_error() == Some(libc_enospc())
    }
}

/// The variable [`checkpoint`] reads (`jarvis_protocol::env::CRASH_AT`
/// documents it with the others; this foundation crate sits below the
/// contract, so it names the variable itself and a test keeps the two the
/// same).
pub const CRASH_AT_VAR: &str = "JARVIS_CRASH_AT";

/// A named point in a crash-sensitive sequence. When the environment
/// variable `JARVIS_CRASH_AT` names it, the process kills itself there with
/// `SIGKILL`, exactly as `kill -9` would; crash tests use this to stop the
/// real binary at every step. Otherwise it only logs nothing and returns.
pub fn checkpoint(name: &str) {
    if std::env::var(CRASH_AT_VAR).is_ok_and(|v| v == name) {
        eprintln!("crash test: killing this process at checkpoint '{name}'");
        #[cfg(unix)]
        // SAFETY: plain syscalls on our own pid.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

/// Copies a file durably, with its permissions (an executable stays
/// one): into a temporary file beside `to`, fsynced, then renamed over
/// `to`. `role` names the file in errors.
pub fn copy_atomic(role: &'static str, from: &Path, to: &Path) -> Result<u64, FileError> {
    let mut source = fs::File::open(from).map_err(|e| FileError::new("open", role, from, e))?;
    let permissions = source
        .metadata()
        .map_err(|e| FileError::new("read the permissions of", role, from, e))?
        .permissions();
    replace_with(to, Visibility::Normal, |file| {
        let copied = io::copy(&mut source, file)?;
        file.set_permissions(permissions)?;
        Ok(copied)
    })
    .map_err(|(action, e)| FileError::new(action.unwrap_or("copy"), role, to, e))
}

/// Who may read a file that [`write_atomic`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// The usual permissions for a new file: 0644 less the umask on Unix
    /// (a temporary file alone would be 0600).
    Normal,
    /// Owner read/write only (secrets: tokens, passwords).
    OwnerOnly,
}

/// Replaces `path` with `contents` so that a crash leaves the old or the new
/// content, never a mix. `role` names the file in errors ("config file").
pub fn write_atomic(
    role: &'static str,
    path: &Path,
    contents: &[u8],
    visibility: Visibility,
) -> Result<(), FileError> {
    replace_with(path, visibility, |file| file.write_all(contents))
        .map_err(|(action, e)| FileError::new(action.unwrap_or("write"), role, path, e))
}

/// Fills a temporary file beside `path` with `fill`, fsyncs it, renames it
/// over `path` and fsyncs the folder: the one recipe every durable write
/// here uses. Errors carry the step that failed (`None`: inside `fill`).
fn replace_with<T>(
    path: &Path,
    visibility: Visibility,
    fill: impl FnOnce(&mut fs::File) -> io::Result<T>,
) -> Result<T, (Option<&'static str>, io::Error)> {
    let dir = parent_dir(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    #[cfg(unix)]
    if visibility == Visibility::Normal {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    let mut temp = builder
        .tempfile_in(dir)
        .map_err(|e| (Some("create a temporary file for"), e))?;
    if visibility == Visibility::OwnerOnly {
        restrict_to_owner(temp.as_file()).map_err(|e| (Some("set permissions on"), e))?;
    }
    let value = fill(temp.as_file_mut()).map_err(|e| (None, e))?;
    temp.as_file()
        .sync_all()
        .map_err(|e| (Some("flush to disk"), e))?;
    temp.persist(path).map_err(|e| (Some("replace"), e.error))?;
    sync_dir(dir).map_err(|e| (Some("flush the folder of"), e))?;
    Ok(value)
}

/// Reads a whole file, naming its role in the error.
pub fn read(role: &'static str, path: &Path) -> Result<Vec<u8>, FileError> {
    fs::read(path).map_err(|e| FileError::new("read", role, path, e))
}

/// Reads a whole UTF-8 file, naming its role in the error.
pub fn read_to_string(role: &'static str, path: &Path) -> Result<String, FileError> {
    fs::read_to_string(path).map_err(|e| FileError::new("read", role, path, e))
}

/// Reads a file that may legitimately be absent: `Ok(None)` when it is.
pub fn read_optional(role: &'static str, path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::new("read", role, path, e)),
    }
}

/// Removes a file if it exists; a missing file is not an error.
pub fn remove_if_exists(role: &'static str, path: &Path) -> Result<(), FileError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::new("remove", role, path, e)),
    }
}

/// Creates `path` and missing parents; on Unix each folder this call creates
/// is owner-only (`0700`). Existing folders are left as they are.
pub fn create_private_dir_all(role: &'static str, path: &Path) -> Result<(), FileError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(path)
        .map_err(|e| FileError::new("create", role, path, e))
}

/// `fsync`s a folder so that renames and creations inside it are durable.
/// A no-op where the OS cannot open folders as files (Windows).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn restrict_to_owner(file: &fs::File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        // The user-data folder lives in the user's own profile, which
        // Windows already restricts to that user.
        let _ = file;
        Ok(())
    }
}

const fn libc_enospc() -> i32 {
    // ENOSPC is 28 on Linux, macOS and the BSDs; Windows reports
    // ERROR_DISK_FULL (112) through raw_os_error.
    if cfg!(windows) { 112 } else { 28 }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_crash_hook_reads_the_variable_the_contract_documents() {
        assert_eq!(CRASH_AT_VAR, jarvis_protocol::env::CRASH_AT);
    }

    #[test]
    fn write_atomic_replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        write_atomic("config file", &path, b"old", Visibility::Normal).unwrap();
        write_atomic("config file", &path, b"new", Visibility::Normal).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.json")]);
    }

    #[cfg(unix)]
    #[test]
    fn owner_only_files_and_private_dirs_have_tight_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("a/b");
        create_private_dir_all("data folder", &private).unwrap();
        let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let token = private.join("api-token");
        write_atomic("API token", &token, b"secret", Visibility::OwnerOnly).unwrap();
        let mode = fs::metadata(&token).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// Issue 16, finding 12: a temporary file is 0600, and every Normal
    /// file used to keep that (a copied launcher lost its execute bits).
    #[cfg(unix)]
    #[test]
    fn normal_files_get_the_usual_mode_and_copies_keep_theirs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let reference = dir.path().join("reference");
        fs::File::create(&reference).unwrap();
        let normal = dir.path().join("current");
        write_atomic("pointer", &normal, b"1.0.0", Visibility::Normal).unwrap();
        assert_eq!(mode(&normal), mode(&reference) & 0o644);

        let program = dir.path().join("jarvis");
        fs::write(&program, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join("jarvis.previous");
        copy_atomic("previous launcher", &program, &copy).unwrap();
        assert_eq!(mode(&copy), 0o755);
        assert_eq!(fs::read(&copy).unwrap(), b"#!/bin/sh\n");
    }

    #[test]
    fn errors_name_the_role_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope/config.json");
        let err = write_atomic("config file", &missing, b"x", Visibility::Normal).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("config file"), "{text}");
        assert!(text.contains("nope"), "{text}");
        assert!(read_optional("config file", &missing).unwrap().is_none());
    }
}
