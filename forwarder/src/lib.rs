//! The sending side of handoff: pushes live sockets, each with its session header and
//! the bytes already read from it, over a connected UNIX stream socket to a
//! [receiver](https://docs.rs/handoff-receiver) in another process.
//!
//! Every session goes out in **one** `sendmsg(2)`: the fd as `SCM_RIGHTS`, the header
//! and the data together, so a stall can never leave half a session behind on the
//! stream (BIND 10 used a `sendmsg` and then a `writev`). Each send is non-blocking
//! and carries `MSG_NOSIGNAL`, so a gone receiver is an error, not a `SIGPIPE`.
//!
//! Two forms:
//! - [`Forwarder`]: push and get an answer at once. A full buffer with nothing
//!   written is [`ForwardError::WouldBlock`] (retry later, nothing lost); a write cut
//!   short is [`ForwardError::Partial`] and poisons the connection.
//! - [`MioForwarder`]: a [`mio::event::Source`] that queues what the kernel would not
//!   take (up to a bound) and flushes it when the socket is writable.
//!
//! The caller keeps its copy of every fd; close it once the push succeeded.
//!
//! ```no_run
//! use std::net::TcpListener;
//! use handoff_forwarder::Forwarder;
//!
//! let mut forwarder = Forwarder::connect("/run/handoff/worker.sock")?;
//! let listener = TcpListener::bind("[::]:8080")?;
//! for conn in listener.incoming() {
//!     let conn = conn?;
//!     forwarder.push_tcp(&conn, b"")?; // the worker now owns the connection
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(html_root_url = "https://docs.rs/handoff-forwarder/0.1.0")]

mod error;
mod mio_forwarder;
mod outgoing;
mod sys;

use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self, UnixStream};
use std::path::Path;

pub use error::ForwardError;
pub use handoff_proto::{Header, Mode};
pub use mio_forwarder::{MioForwarder, Pushed, Unsent};
pub use outgoing::Outgoing;

use handoff_proto::{Prefix, MAX_BATCH};

/// A blocking-free sender of sessions over a connected UNIX stream socket.
///
/// See the [crate docs](crate) for the guarantees; each `push*` method makes at most
/// one `sendmsg(2)`.
#[derive(Debug)]
pub struct Forwarder {
    stream: UnixStream,
    mode: Mode,
    poisoned: bool,
}

impl Forwarder {
    /// Connects to a receiver listening on a filesystem path.
    ///
    /// # Errors
    /// What `connect(2)` reports.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Forwarder> {
        Forwarder::from_stream(UnixStream::connect(path)?)
    }

    /// Connects to a receiver listening on an abstract name (no leading NUL).
    ///
    /// # Errors
    /// What `connect(2)` reports; `InvalidInput` if the name is too long.
    pub fn connect_abstract(name: &[u8]) -> io::Result<Forwarder> {
        let addr = net::SocketAddr::from_abstract_name(name)?;
        Forwarder::from_stream(UnixStream::connect_addr(&addr)?)
    }

    /// Wraps a connected stream, which is made non-blocking.
    ///
    /// # Errors
    /// What `fcntl(2)` reports.
    pub fn from_stream(stream: UnixStream) -> io::Result<Forwarder> {
        stream.set_nonblocking(true)?;
        Ok(Forwarder {
            stream,
            mode: Mode::default(),
            poisoned: false,
        })
    }

    /// Sets what the forwarder may emit: [`Mode::Bind10`] refuses UNIX sessions,
    /// empty data and batches, so that a BIND 10 receiver understands every byte.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether an earlier partial write left the connection out of step.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The connection.
    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// The connection, taken out.
    pub fn into_inner(self) -> UnixStream {
        self.stream
    }

    /// Sends one session in one `sendmsg(2)`.
    ///
    /// # Errors
    /// Argument errors ([`ForwardError::Encode`]) before anything is written;
    /// [`ForwardError::WouldBlock`] when the buffer is full and nothing went out;
    /// [`ForwardError::Partial`] (which poisons the connection);
    /// [`ForwardError::Poisoned`]; [`ForwardError::Io`].
    pub fn push(&mut self, session: &Outgoing<'_>) -> Result<(), ForwardError> {
        self.usable()?;
        let prefix = session.header().encode(session.data().len(), self.mode)?;
        let sent = send_one(self.stream.as_fd(), &prefix, session);
        self.finish(sent)
    }

    /// Sends a TCP connection, with the header filled from the socket.
    ///
    /// # Errors
    /// As [`Forwarder::push`], and [`ForwardError::Address`].
    pub fn push_tcp(&mut self, stream: &TcpStream, data: &[u8]) -> Result<(), ForwardError> {
        self.push(&Outgoing::tcp(stream, data)?)
    }

    /// Sends a UDP socket with one datagram from `remote`.
    ///
    /// # Errors
    /// As [`Forwarder::push`], and [`ForwardError::Address`].
    pub fn push_udp(
        &mut self,
        socket: &UdpSocket,
        remote: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), ForwardError> {
        self.push(&Outgoing::udp(socket, remote, datagram)?)
    }

    /// Sends a UNIX stream connection (an extension).
    ///
    /// # Errors
    /// As [`Forwarder::push`], and [`ForwardError::Address`].
    pub fn push_unix(&mut self, stream: &UnixStream, data: &[u8]) -> Result<(), ForwardError> {
        self.push(&Outgoing::unix(stream, data)?)
    }

    /// Sends up to 253 sessions in one `sendmsg(2)` with all their fds in one
    /// `SCM_RIGHTS` message (the batch extension). All or nothing, as for
    /// [`Forwarder::push`]: the headers are all encoded before anything is sent, and a
    /// write cut short poisons the connection. A batch whose bytes exceed the socket's
    /// send buffer is bound to be cut short: keep batches well below `SO_SNDBUF`.
    ///
    /// # Errors
    /// As [`Forwarder::push`], and [`ForwardError::BatchTooLarge`],
    /// [`ForwardError::StrictBatch`].
    pub fn push_batch(&mut self, sessions: &[Outgoing<'_>]) -> Result<(), ForwardError> {
        self.usable()?;
        let prefixes = encode_batch(sessions, self.mode)?;
        let sent = send_batch(self.stream.as_fd(), &prefixes, sessions);
        self.finish(sent)
    }

    fn usable(&self) -> Result<(), ForwardError> {
        if self.poisoned {
            Err(ForwardError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn finish(&mut self, sent: Result<Sent, ForwardError>) -> Result<(), ForwardError> {
        let sent = sent?;
        if sent.written == sent.total {
            Ok(())
        } else {
            self.poisoned = true;
            Err(ForwardError::Partial {
                written: sent.written,
                total: sent.total,
            })
        }
    }
}

/// What one `sendmsg` did: `written` of `total` bytes, with at least one written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) written: usize,
    pub(crate) total: usize,
}

/// Maps the syscall's answer: nothing written is `WouldBlock` or `Io`.
fn sent(result: io::Result<usize>, total: usize) -> Result<Sent, ForwardError> {
    match result {
        Ok(0) if total > 0 => Err(ForwardError::WouldBlock),
        Ok(written) => Ok(Sent { written, total }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(ForwardError::WouldBlock),
        Err(e) => Err(ForwardError::Io(e)),
    }
}

/// One session, fd and bytes, in one `sendmsg`.
pub(crate) fn send_one(
    sock: BorrowedFd<'_>,
    prefix: &Prefix,
    session: &Outgoing<'_>,
) -> Result<Sent, ForwardError> {
    let total = prefix.len() + session.data().len();
    let iov = [IoSlice::new(prefix), IoSlice::new(session.data())];
    sent(sys::send(sock, &iov, &[session.fd()]), total)
}

/// Encodes every header of a batch, or fails before anything is written.
pub(crate) fn encode_batch(
    sessions: &[Outgoing<'_>],
    mode: Mode,
) -> Result<Vec<Prefix>, ForwardError> {
    if sessions.len() > MAX_BATCH {
        return Err(ForwardError::BatchTooLarge {
            len: sessions.len(),
            max: MAX_BATCH,
        });
    }
    if sessions.len() > 1 && mode == Mode::Bind10 {
        return Err(ForwardError::StrictBatch);
    }
    sessions
        .iter()
        .map(|s| Ok(s.header().encode(s.data().len(), mode)?))
        .collect()
}

pub(crate) fn send_batch(
    sock: BorrowedFd<'_>,
    prefixes: &[Prefix],
    sessions: &[Outgoing<'_>],
) -> Result<Sent, ForwardError> {
    let (iov, fds, total) = batch_parts(prefixes, sessions);
    sent(sys::send(sock, &iov, &fds), total)
}

/// A batch's `sendmsg` arguments: prefix and data of each session in turn, every fd,
/// and the bytes in all.
pub(crate) fn batch_parts<'a>(
    prefixes: &'a [Prefix],
    sessions: &[Outgoing<'a>],
) -> (Vec<IoSlice<'a>>, Vec<BorrowedFd<'a>>, usize) {
    let mut iov = Vec::with_capacity(2 * sessions.len());
    let mut total = 0;
    for (prefix, s) in prefixes.iter().zip(sessions) {
        iov.push(IoSlice::new(prefix));
        iov.push(IoSlice::new(s.data()));
        total += prefix.len() + s.data().len();
    }
    let fds = sessions.iter().map(Outgoing::fd).collect();
    (iov, fds, total)
}

/// Sends raw bytes with fds attached in one `sendmsg(2)` (`MSG_NOSIGNAL`,
/// non-blocking), returning the bytes written.
///
/// This is not a way to send sessions (use [`Forwarder`]); it exists to test
/// receivers against streams that break the rules, and to speak the format by hand.
///
/// ```
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// let (a, b) = UnixStream::pair()?;
/// assert_eq!(handoff_forwarder::send_with_fds(&a, b"\0", &[b.as_fd()])?, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// What `sendmsg(2)` reports (`WouldBlock` when nothing fits); `InvalidInput` for
/// more than 253 fds.
pub fn send_with_fds(sock: &impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    if fds.len() > MAX_BATCH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_BATCH} fds fit in one SCM_RIGHTS message"),
        ));
    }
    sys::send(sock.as_fd(), &[IoSlice::new(bytes)], fds)
}
