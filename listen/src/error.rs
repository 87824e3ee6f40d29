//! The errors of handoff-listen, each carrying what a person needs to fix it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

/// Why adopting passed sockets failed (systemd activation or inheritance).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AdoptError {
    /// A variable is not a number where it must be.
    #[error("{var}={value:?} is not a valid number")]
    Malformed {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// `LISTEN_FDS` is 0, negative or absurdly large.
    #[error("LISTEN_FDS={count} is out of range")]
    BadCount {
        /// The count given.
        count: String,
    },
    /// `LISTEN_FDNAMES` does not name as many fds as `LISTEN_FDS` passes.
    #[error("LISTEN_FDNAMES has {names} names for {fds} fds (older systemd-socket-activate repeats or drops names; the lenient mode pads with \"unknown\")")]
    NameCount {
        /// Names given.
        names: usize,
        /// Fds passed.
        fds: usize,
    },
    /// A malformed entry of our own inheritance variable.
    #[error("{var} entry {entry:?} is not FD:NAME")]
    BadEntry {
        /// The variable.
        var: String,
        /// The entry.
        entry: String,
    },
    /// An fd the environment names is not open, or cannot be inspected.
    #[error("fd {fd} ({name}) was passed but cannot be used")]
    Fd {
        /// The fd number.
        fd: i32,
        /// Its name.
        name: String,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

/// Who holds an address: a process found through `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.command, self.pid)
    }
}

/// Why a listener could not be created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The address is taken; `holder` names the process when `/proc` tells.
    #[error("{addr} is already in use{}", holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default())]
    AddrInUse {
        /// The address.
        addr: SocketAddr,
        /// The process holding it, if found.
        holder: Option<Holder>,
    },
    /// A UNIX path longer than `sun_path` holds (checked before any syscall).
    #[error("the socket path {path:?} is {len} bytes; at most {max} fit")]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// Something that is not a socket is at the path: it is left alone.
    #[error("{path:?} exists and is not a socket; refusing to remove it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A live listener is at the path: someone accepts on it.
    #[error("{path:?} is a socket that a running process listens on")]
    LiveListener {
        /// The path.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{op} failed for {what}")]
    Io {
        /// The operation (`bind`, `listen`, `setsockopt(SO_REUSEPORT)`, …).
        op: &'static str,
        /// The address or path.
        what: String,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

impl ListenError {
    pub(crate) fn io(
        op: &'static str,
        what: impl std::fmt::Display,
    ) -> impl FnOnce(io::Error) -> ListenError {
        let what = what.to_string();
        move |source| ListenError::Io { op, what, source }
    }
}
