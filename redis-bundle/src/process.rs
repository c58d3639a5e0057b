//! Child processes tied to the launcher's life, and a look at other
//! processes by pid.
//!
//! The launcher's children (Redis, the core) must never outlive it: on Linux
//! each child asks the kernel for `SIGTERM` when its parent dies
//! (`PR_SET_PDEATHSIG`), which Redis and the core both treat as a graceful
//! stop. Children also get their own process group, so a Ctrl-C in the
//! terminal reaches only the launcher, which then stops them in order. Where
//! a child survives anyway (another OS, a launcher killed mid-spawn), the next
//! launcher finds it through `run/instance.json` or Redis' pid file and
//! checks [`identity`] before it signals anything.

use tokio::process::Command;

/// Makes `cmd` start a child that dies with this process (Linux) and that
/// does not receive the terminal's Ctrl-C directly (Unix).
pub fn tie_to_parent(cmd: &mut Command) {
    // Windows does it after the start: see `adopt_into_job`.
    #[cfg(not(unix))]
    let _ = cmd;
    #[cfg(unix)]
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only async-signal-safe functions (prctl, getppid, _exit).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
}

/// Windows: puts a started child into the launcher's job object, which the
/// OS closes when the launcher exits however it exits, killing every process
/// in it (`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`). Elsewhere a no-op:
/// [`tie_to_parent`] did the work before the child started.
pub fn adopt_into_job(child: &tokio::process::Child) -> std::io::Result<()> {
    #[cfg(windows)]
    {
        use std::sync::OnceLock;

        use windows_sys::Win32::Foundation::HANDLE;
        use windows_sys::Win32::System::JobObjects::{
            AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
            JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
            SetInformationJobObject,
        };

        // The job's handle, as an integer so it can live in a static; 0
        // when it could not be made. It is never closed: the OS closes it
        // when the launcher exits, which is the point.
        static JOB: OnceLock<usize> = OnceLock::new();
        let job = *JOB.get_or_init(|| {
            // SAFETY: plain Win32 calls; `info` is a zeroed plain-data
            // struct whose size is passed with it.
            unsafe {
                let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
                if job.is_null() {
                    return 0;
                }
                let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
                info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
                let ok = SetInformationJobObject(
                    job,
                    JobObjectExtendedLimitInformation,
                    (&raw const info).cast(),
                    std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                );
                if ok == 0 { 0 } else { job as usize }
            }
        });
        if job == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let Some(handle) = child.raw_handle() else {
            return Ok(()); // already exited
        };
        // SAFETY: both handles are valid: the job lives for the process,
        // the child's handle as long as `child`.
        if unsafe { AssignProcessToJobObject(job as HANDLE, handle as HANDLE) } == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(windows))]
    {
        let _ = child;
        Ok(())
    }
}

/// What we can learn about a running process from its pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Opaque start time (Linux: clock ticks after boot).
    pub start_time: Option<u64>,
    /// The command line, arguments joined by spaces.
    pub command_line: String,
    /// The working folder, where the OS tells it.
    pub cwd: Option<std::path::PathBuf>,
    /// The executable's path, where the OS tells it (it may hold spaces,
    /// as macOS' `Application Support` does).
    pub executable: Option<std::path::PathBuf>,
}

impl Identity {
    /// Whether the process runs a program named one of `names`: its
    /// executable's file name, else the first word of its command line.
    pub fn runs_one_of(&self, names: &[&str]) -> bool {
        let by_exe = self
            .executable
            .as_deref()
            .and_then(std::path::Path::file_name)
            .and_then(|n| n.to_str())
            .is_some_and(|n| names.contains(&n));
        let by_command = self
            .command_line
            .split_whitespace()
            .next()
            .is_some_and(|exe| names.iter().any(|name| exe.ends_with(name)));
        by_exe || by_command
    }
}

/// The identity of a live process, `None` when no such process exists (or is
/// a zombie).
pub fn identity(pid: u32) -> Option<Identity> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised command name; the name may contain
        // spaces and parentheses, so split after the last ')'.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            return None;
        }
        // Field 22 of the full line is the 20th after the name.
        let start_time = fields.get(19).and_then(|s| s.parse().ok());
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let command_line = raw
            .split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        let executable = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        Some(Identity {
            start_time,
            command_line,
            cwd,
            executable,
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        // macOS and Windows have no /proc: ask the OS through sysinfo for
        // just this process (start time in seconds since the epoch).
        use sysinfo::{ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};
        let pid = sysinfo::Pid::from_u32(pid);
        let mut system = System::new();
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing()
                .with_exe(UpdateKind::Always)
                .with_cwd(UpdateKind::Always)
                .with_cmd(UpdateKind::Always),
        );
        let process = system.process(pid)?;
        if process.status() == ProcessStatus::Zombie {
            return None;
        }
        let command_line = process
            .cmd()
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        Some(Identity {
            start_time: Some(process.start_time()),
            command_line,
            cwd: process.cwd().map(std::path::Path::to_owned),
            executable: process.exe().map(std::path::Path::to_owned),
        })
    }
}

/// Asks a process to stop (`SIGTERM`). Returns false if it does not exist.
pub fn terminate(pid: u32) -> bool {
    send(pid, Signal::Terminate)
}

/// Kills a process outright (`SIGKILL`). Returns false if it does not exist.
pub fn kill(pid: u32) -> bool {
    send(pid, Signal::Kill)
}

enum Signal {
    Terminate,
    Kill,
}

fn send(pid: u32, signal: Signal) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        let sig = match signal {
            Signal::Terminate => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        // SAFETY: plain syscall on a positive pid; no memory is shared.
        unsafe { libc::kill(pid, sig) == 0 }
    }
    #[cfg(windows)]
    {
        // No signals: an orphan (a launcher killed before its job object
        // held the child) is ended outright; `jarvis stop` asks the
        // launcher itself over HTTP instead.
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::Threading::{
            OpenProcess, PROCESS_TERMINATE, TerminateProcess,
        };
        let _ = signal;
        // SAFETY: plain Win32 calls on a handle we open and close here.
        unsafe {
            let handle = OpenProcess(PROCESS_TERMINATE, 0, pid);
            if handle.is_null() {
                return false;
            }
            let ended = TerminateProcess(handle, 1) != 0;
            CloseHandle(handle);
            ended
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (pid, signal);
        false
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn identity_of_self_has_a_start_time_and_command_line() {
        let me = identity(std::process::id()).unwrap();
        assert!(me.start_time.is_some());
        assert!(!me.command_line.is_empty());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(me.executable.as_deref(), Some(exe.as_path()));
        let name = exe.file_name().unwrap().to_str().unwrap();
        assert!(me.runs_one_of(&[name]));
        assert!(!me.runs_one_of(&["redis-server"]));
    }

    /// Issue 16, finding 10: a program in a folder whose name holds a space
    /// (macOS' `Application Support`) is still recognised by its name.
    #[test]
    fn a_program_is_recognised_by_its_executable_even_with_spaces_in_the_path() {
        let identity = Identity {
            start_time: Some(1),
            command_line: "/Users/a/Library/Application Support/jarvis-app/resources/app/1.0.0/redis-server 127.0.0.1:6379".to_owned(),
            cwd: None,
            executable: Some(std::path::PathBuf::from(
                "/Users/a/Library/Application Support/jarvis-app/resources/app/1.0.0/redis-server",
            )),
        };
        assert!(identity.runs_one_of(&["redis-server"]));
        assert!(!identity.runs_one_of(&["jarvis-core"]));
    }

    #[test]
    fn no_identity_for_a_pid_that_cannot_exist() {
        assert!(identity(u32::MAX - 1).is_none());
        assert!(!terminate(0));
    }
}
