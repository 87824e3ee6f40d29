//! The receiving side of handoff: rebuilds live sockets, each with its session header
//! and data, from a [forwarder](https://docs.rs/handoff-forwarder) in another process.
//!
//! # What it guarantees
//!
//! - **No fd leaks.** Every fd that arrives becomes an [`std::os::fd::OwnedFd`] the
//!   moment `recvmsg(2)` returns, before any check; whatever no session claims is
//!   closed. Received fds are close-on-exec (`MSG_CMSG_CLOEXEC`).
//! - **Nothing half-trusted.** Each rule of the wire format is checked
//!   ([`handoff_proto::DecodeError`]), and so are the fd rules: the i-th session owns
//!   the i-th fd received; a session whose first byte arrives before its fd is
//!   [`ReceiveError::FdMissing`]; fds that no session claims are
//!   [`ReceiveError::ExtraFds`] or, at end of stream, [`ReceiveError::UnclaimedFds`];
//!   truncated control data ([`ReceiveError::ControlTruncated`]) and control messages
//!   other than `SCM_RIGHTS` ([`ReceiveError::UnexpectedControl`]) are errors too.
//!   After any of these the connection is out of step: every fd held is closed.
//! - **Verification.** By default each fd is checked to be a socket whose domain and
//!   type match the header (two `getsockopt` calls); [`Receiver::set_verify`] turns
//!   it off for speed. The local endpoint is never trusted.
//! - **End of stream.** At a session boundary it is the end of the sessions
//!   (`Ok(None)`); inside a session it is [`ReceiveError::Incomplete`].
//!
//! # How it reads
//!
//! Each read is one `recvmsg(2)` of up to 64 KiB into a buffer, and `pop` serves
//! sessions already buffered before it reads again. The kernel ends a read after the
//! message that carried fds, so with one session per `sendmsg` that is one `recvmsg`
//! per session; a batch of sessions sent together often needs only one for all. The
//! session data is a [`bytes::Bytes`] slice of that buffer: no copy.
//!
//! ```no_run
//! use std::io::Write;
//! use std::os::unix::net::UnixListener;
//! use handoff_receiver::Receiver;
//!
//! let listener = UnixListener::bind("/run/handoff/worker.sock")?;
//! let (conn, _) = listener.accept()?;
//! let mut receiver = Receiver::new(conn)?;
//! while let Some(session) = receiver.pop()? {
//!     println!("{} sent {} bytes", session.remote(), session.data().len());
//!     let mut stream = session.into_tcp_stream()?;
//!     stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(html_root_url = "https://docs.rs/handoff-receiver/0.1.0")]

mod core;
mod error;
mod mio_receiver;
mod session;
mod sys;

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use error::ReceiveError;
pub use handoff_proto::{Endpoint, Family, Header, Protocol, SocketType, UnixEndpoint};
pub use mio_receiver::MioReceiver;
pub use session::{IntoSocketError, Session};

use crate::core::Core;

/// A blocking receiver of sessions over a connected UNIX stream socket.
///
/// See the [crate docs](crate) for what it checks and how it reads.
#[derive(Debug)]
pub struct Receiver {
    stream: UnixStream,
    core: Core,
}

impl Receiver {
    /// Wraps a connected stream, which is made blocking.
    ///
    /// # Errors
    /// What `fcntl(2)` reports.
    pub fn new(stream: UnixStream) -> io::Result<Receiver> {
        stream.set_nonblocking(false)?;
        Ok(Receiver {
            stream,
            core: Core::new(),
        })
    }

    /// Connects to a forwarder that listens on a filesystem path (the usual setup
    /// has the receiver listen instead: accept, then [`Receiver::new`]).
    ///
    /// # Errors
    /// What `connect(2)` reports.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Receiver> {
        Receiver::new(UnixStream::connect(path)?)
    }

    /// Whether to check that each fd is a socket whose domain and type match its
    /// header (on by default; two `getsockopt` calls per session).
    pub fn set_verify(&mut self, verify: bool) {
        self.core.verify = verify;
    }

    /// How long one read may wait (`SO_RCVTIMEO`); `None`, the default, waits for
    /// ever. When it passes, `pop` answers [`ReceiveError::TimedOut`] and keeps what
    /// arrived, so a forwarder that stalls mid-session cannot hang the receiver.
    ///
    /// # Errors
    /// What `setsockopt(2)` reports; `InvalidInput` for a zero duration.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// The connection.
    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// The next session if a whole one is buffered already, from reads that
    /// [`pop`](Receiver::pop) made; never reads, so never blocks. `Ok(None)` says
    /// only that no whole session is buffered.
    ///
    /// One read often brings several sessions (a batch always does): after `pop`,
    /// this takes the others, so that they can be handled, or acknowledged, at once.
    ///
    /// ```no_run
    /// let mut receiver = handoff_receiver::Receiver::connect("/run/acceptor.sock")?;
    /// while let Some(first) = receiver.pop()? {
    ///     let mut read_together = vec![first];
    ///     while let Some(next) = receiver.pop_buffered()? {
    ///         read_together.push(next);
    ///     }
    ///     println!("{} session(s) from one read", read_together.len());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Receiver::pop`], for what is buffered.
    pub fn pop_buffered(&mut self) -> Result<Option<Session>, ReceiveError> {
        self.core.pop_buffered()
    }

    /// Waits for the next session. `Ok(None)` is a clean end of stream.
    ///
    /// # Errors
    /// See [`ReceiveError`]; [`ReceiveError::is_fatal`] tells whether the connection
    /// can go on.
    pub fn pop(&mut self) -> Result<Option<Session>, ReceiveError> {
        let sock = self.stream.as_fd();
        let popped = self.core.pop(|buf, fds| sys::recv(sock, buf, fds));
        match popped {
            Err(ReceiveError::WouldBlock) => Err(ReceiveError::TimedOut {
                buffered: self.core.buffered(),
            }),
            other => other,
        }
    }
}
