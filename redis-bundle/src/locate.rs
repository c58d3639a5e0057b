use std::path::{Path, PathBuf};

use crate::RedisError;

/// The server executable's file name on this OS.
pub const BINARY_NAME: &str = if cfg!(windows) {
    "redis-server.exe"
} else {
    "redis-server"
};

/// Finds `redis-server`: in the app bundle first (`None`: the bundle may
/// not run one, e.g. its signed manifest lists none), then at
/// `env_override` (the value of `env_var`), then on `path_var` (the `PATH`
/// value).
///
/// An override that is set but wrong is an error of its own rather than a
/// silent fall-through, so a typo does not run some other Redis.
pub fn locate(
    bundle_dir: Option<&Path>,
    env_var: &'static str,
    env_override: Option<PathBuf>,
    path_var: Option<std::ffi::OsString>,
) -> Result<PathBuf, RedisError> {
    if let Some(bundle_dir) = bundle_dir {
        let bundled = bundle_dir.join(BINARY_NAME);
        if is_executable(&bundled) {
            return Ok(bundled);
        }
    }
    if let Some(path) = env_override.filter(|p| !p.as_os_str().is_empty()) {
        if is_executable(&path) {
            return Ok(path);
        }
        return Err(RedisError::OverrideNotExecutable { env_var, path });
    }
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(&path_var) {
            let candidate = dir.join(BINARY_NAME);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(RedisError::NotFound {
        bundle: bundle_dir
            .map_or_else(|| "none it may run".to_owned(), |d| d.display().to_string()),
        env_var,
    })
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[cfg(unix)]
    fn fake_binary(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(BINARY_NAME);
        std::fs::write(&path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[cfg(unix)]
    #[test]
    fn bundle_wins_over_override_and_path() {
        let bundle = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let bundled = fake_binary(bundle.path());
        let elsewhere = fake_binary(other.path());
        let found = locate(
            Some(bundle.path()),
            "X",
            Some(elsewhere.clone()),
            Some(other.path().as_os_str().to_owned()),
        )
        .unwrap();
        assert_eq!(found, bundled);
        // A bundle that may not run its own: the override, never the
        // bundled file.
        let found = locate(None, "X", Some(elsewhere.clone()), None).unwrap();
        assert_eq!(found, elsewhere);
    }

    #[cfg(unix)]
    #[test]
    fn falls_back_to_path() {
        let bundle = tempfile::tempdir().unwrap();
        let on_path = tempfile::tempdir().unwrap();
        let expected = fake_binary(on_path.path());
        let path_var = std::env::join_paths([Path::new("/nonexistent"), on_path.path()]).unwrap();
        let found = locate(Some(bundle.path()), "X", None, Some(path_var)).unwrap();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_wrong_override_is_an_error_not_a_fall_through() {
        let bundle = tempfile::tempdir().unwrap();
        let err = locate(
            Some(bundle.path()),
            "JARVIS_REDIS_SERVER",
            Some(PathBuf::from("/nonexistent/redis-server")),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("JARVIS_REDIS_SERVER"), "{err}");
    }

    #[test]
    fn not_found_names_all_three_places() {
        // The fix (which package to install) is the launcher's hint:
        // `launcher/src/hint.rs` tests it, `tests/it/lifecycle.rs` sees it.
        let bundle = tempfile::tempdir().unwrap();
        let err = locate(Some(bundle.path()), "JARVIS_REDIS_SERVER", None, None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("app bundle"), "{text}");
        assert!(text.contains("JARVIS_REDIS_SERVER"), "{text}");
        assert!(text.contains("PATH"), "{text}");
    }
}
