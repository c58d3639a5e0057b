//! The socket the core serves on: bound here from `JARVIS_CORE_ADDR`, or
//! inherited from the launcher (`JARVIS_CORE_LISTEN_FD`, Unix), which binds
//! it once so that every core it starts answers on the same address and no
//! other process can take the port between a crash and the restart.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::CoreConfig;

/// Why the core has no socket to serve on.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("could not listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the inherited descriptor {fd} is not open; the launcher passes it, start the core with `jarvis up`"
    )]
    NotOpen { fd: i32 },
    #[error("the inherited descriptor {fd} is not a listening TCP socket")]
    NotAListener {
        fd: i32,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("the inherited socket listens on {addr}, which is not a loopback address")]
    NotLoopback { addr: SocketAddr },
    #[error("inherited sockets are only supported on Unix")]
    Unsupported,
    #[error("could not serve on the inherited socket")]
    Adopt(#[source] std::io::Error),
}

/// The listener `config` asks for.
pub async fn listener(config: &CoreConfig) -> Result<TcpListener, ListenError> {
    match config.listen_fd {
        Some(fd) => inherited(fd),
        None => TcpListener::bind(config.listen)
            .await
            .map_err(|source| ListenError::Bind {
                addr: config.listen,
                source,
            }),
    }
}

#[cfg(unix)]
fn inherited(fd: i32) -> Result<TcpListener, ListenError> {
    use std::os::fd::FromRawFd as _;

    // SAFETY: F_GETFD only reads the descriptor's flags; a descriptor that
    // is not open answers -1 (EBADF) and nothing else happens.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(ListenError::NotOpen { fd });
    }
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `listening` and `len` are valid for writes of the size given.
    let answered = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut listening).cast(),
            &raw mut len,
        )
    };
    if answered != 0 {
        return Err(ListenError::NotAListener {
            fd,
            source: Some(std::io::Error::last_os_error()),
        });
    }
    if listening == 0 {
        return Err(ListenError::NotAListener { fd, source: None });
    }
    // SAFETY: the descriptor is open and is a listening socket; the launcher
    // handed it to this process to own, and no other code here refers to it.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    let addr = listener
        .local_addr()
        .map_err(|source| ListenError::NotAListener {
            fd,
            source: Some(source),
        })?;
    if !addr.ip().is_loopback() {
        return Err(ListenError::NotLoopback { addr });
    }
    listener.set_nonblocking(true).map_err(ListenError::Adopt)?;
    TcpListener::from_std(listener).map_err(ListenError::Adopt)
}

#[cfg(not(unix))]
fn inherited(_fd: i32) -> Result<TcpListener, ListenError> {
    Err(ListenError::Unsupported)
}
