//! What can go wrong when receiving sessions.

use std::io;

use handoff_proto::{DecodeError, Family, SocketType};
use thiserror::Error;

/// Why [`pop`](crate::Receiver::pop) returned no session.
///
/// Most of these leave the connection out of step: the receiver closes every fd it
/// holds and answers [`ReceiveError::Poisoned`] from then on. The exceptions, after
/// which the next `pop` goes on normally, are [`ReceiveError::WouldBlock`],
/// [`ReceiveError::TimedOut`], and the two verification failures
/// ([`ReceiveError::NotASocket`], [`ReceiveError::SocketMismatch`]), which consume only
/// the session at fault (its fd is closed). [`ReceiveError::is_fatal`] tells which.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The bytes break a rule of the wire format.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stream ended inside a session.
    #[error("the stream ended inside a session ({buffered} bytes of it had arrived)")]
    Incomplete {
        /// Bytes of the unfinished session that had arrived.
        buffered: usize,
    },
    /// A session's first byte arrived before its fd.
    #[error("a session's first byte arrived without its fd")]
    FdMissing,
    /// A message brought fds that belong to no session: more fds than sessions, or
    /// fds attached to bytes in the middle of a session. Caught before the session
    /// that would have taken a wrong fd is handed out.
    #[error("a message brought fds that no session owns ({held} fds were held)")]
    ExtraFds {
        /// The fds held when it was caught (all now closed).
        held: usize,
    },
    /// The stream ended with fds that no session claimed.
    #[error("the stream ended with {count} fds that no session claimed")]
    UnclaimedFds {
        /// The fds with no session.
        count: usize,
    },
    /// The kernel truncated the control data (`MSG_CTRUNC`): fds were dropped, most
    /// likely because this process is at its limit of open files.
    #[error("the kernel dropped ancillary data (MSG_CTRUNC): fds were lost, perhaps at the open-file limit")]
    ControlTruncated,
    /// A control message other than `SCM_RIGHTS` arrived (for example credentials,
    /// with `SO_PASSCRED` set on the socket).
    #[error("an unexpected control message arrived (level {level}, type {kind})")]
    UnexpectedControl {
        /// `cmsg_level`.
        level: i32,
        /// `cmsg_type`.
        kind: i32,
    },
    /// Verification: the fd received is not a socket. The session was dropped.
    #[error("the fd received is not a socket")]
    NotASocket(#[source] io::Error),
    /// Verification: the socket's domain or type differs from the header's. The
    /// session was dropped.
    #[error("the header says a {family} {sock_type:?} socket, but the fd is domain {domain}, type {actual_type}")]
    SocketMismatch {
        /// The header's family.
        family: Family,
        /// The header's socket type.
        sock_type: SocketType,
        /// The socket's `SO_DOMAIN`.
        domain: i32,
        /// The socket's `SO_TYPE`.
        actual_type: i32,
    },
    /// The read timeout passed with no whole session; what arrived is kept, and `pop`
    /// may be called again.
    #[error("no whole session within the read timeout ({buffered} bytes waiting)")]
    TimedOut {
        /// Bytes of a partial session buffered.
        buffered: usize,
    },
    /// Non-blocking mode: no whole session yet; what arrived is kept.
    #[error("no whole session yet")]
    WouldBlock,
    /// An earlier error left the connection out of step; every fd was closed.
    #[error("an earlier error left this connection out of step")]
    Poisoned,
    /// Reading from the connection failed.
    #[error("reading from the forwarder failed")]
    Io(#[source] io::Error),
}

impl ReceiveError {
    /// Whether the connection is out of step (every later `pop` fails).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            ReceiveError::WouldBlock
                | ReceiveError::TimedOut { .. }
                | ReceiveError::NotASocket(_)
                | ReceiveError::SocketMismatch { .. }
        )
    }

    /// Whether there is just nothing to read yet (non-blocking mode).
    pub fn is_would_block(&self) -> bool {
        matches!(self, ReceiveError::WouldBlock)
    }

    /// The variant's name (a decode error's own), for logs and tools that report
    /// errors by kind.
    pub fn name(&self) -> &'static str {
        match self {
            ReceiveError::Decode(e) => e.name(),
            ReceiveError::Incomplete { .. } => "Incomplete",
            ReceiveError::FdMissing => "FdMissing",
            ReceiveError::ExtraFds { .. } => "ExtraFds",
            ReceiveError::UnclaimedFds { .. } => "UnclaimedFds",
            ReceiveError::ControlTruncated => "ControlTruncated",
            ReceiveError::UnexpectedControl { .. } => "UnexpectedControl",
            ReceiveError::NotASocket(_) => "NotASocket",
            ReceiveError::SocketMismatch { .. } => "SocketMismatch",
            ReceiveError::TimedOut { .. } => "TimedOut",
            ReceiveError::WouldBlock => "WouldBlock",
            ReceiveError::Poisoned => "Poisoned",
            ReceiveError::Io(_) => "Io",
        }
    }
}

impl From<ReceiveError> for io::Error {
    /// Keeps `WouldBlock` and timeouts visible as [`io::ErrorKind::WouldBlock`] and
    /// [`io::ErrorKind::TimedOut`], and OS errors as they were.
    fn from(e: ReceiveError) -> io::Error {
        match e {
            ReceiveError::WouldBlock => io::ErrorKind::WouldBlock.into(),
            ReceiveError::Io(e) => e,
            e @ ReceiveError::TimedOut { .. } => io::Error::new(io::ErrorKind::TimedOut, e),
            e @ ReceiveError::Incomplete { .. } => io::Error::new(io::ErrorKind::UnexpectedEof, e),
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}
