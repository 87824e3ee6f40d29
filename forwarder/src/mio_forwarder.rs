//! The mio-driven forwarder: what the kernel will not take now waits in a bounded
//! queue and goes out when the socket is writable.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use handoff_proto::{Header, Mode, Prefix, MAX_BATCH};
use mio::event::Source;
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

use crate::{batch_parts, encode_batch, sent, sys, ForwardError, Outgoing, Sent};

/// What [`MioForwarder::push`] did with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The whole session is on the wire.
    Sent,
    /// All or part of it waits in the queue (with a copy of its fd where that has not
    /// gone out yet); [`MioForwarder::flush`] sends it when the socket is writable.
    /// The caller may close its own copy of the fd either way.
    Queued,
}

/// A queued session whose fd never went out, handed back by
/// [`MioForwarder::take_unsent`] so that it can go to another receiver.
#[derive(Debug)]
pub struct Unsent {
    /// The forwarder's copy of the socket.
    pub fd: OwnedFd,
    /// The session header.
    pub header: Header,
    /// The session data.
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct Queued {
    /// The forwarder's own copy of the fd, until it goes out.
    fd: Option<OwnedFd>,
    header: Header,
    /// Prefix and data.
    bytes: Vec<u8>,
    data_start: usize,
    /// Bytes of `bytes` already written.
    sent: usize,
}

impl Queued {
    fn new(fd: Option<OwnedFd>, prefix: &Prefix, session: &Outgoing<'_>) -> Queued {
        let mut bytes = Vec::with_capacity(prefix.len() + session.data().len());
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(session.data());
        Queued {
            fd,
            header: session.header().clone(),
            bytes,
            data_start: prefix.len(),
            sent: 0,
        }
    }

    fn rest(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }
}

/// A forwarder for a mio event loop.
///
/// [`push`](MioForwarder::push) sends at once when it can. Otherwise the session — or
/// the rest of one the kernel took only part of — is queued, up to `capacity`
/// sessions, and [`flush`](MioForwarder::flush) sends the queue when the socket is
/// writable, several sessions per `sendmsg` where the mode allows. Order is kept:
/// nothing overtakes the queue. When the queue is full, `push` refuses with
/// [`ForwardError::QueueFull`] and takes nothing: the session stays the caller's.
///
/// Register it for [`Interest::WRITABLE`] (and call `flush` on each writable event)
/// while [`queued`](MioForwarder::queued) is not zero.
///
/// ```no_run
/// use mio::{Events, Interest, Poll, Token};
/// use handoff_forwarder::{MioForwarder, Pushed};
/// # fn sessions() -> Vec<std::net::TcpStream> { vec![] }
///
/// let mut poll = Poll::new()?;
/// let mut fwd = MioForwarder::connect("/run/worker.sock", 1024)?;
/// poll.registry().register(&mut fwd, Token(0), Interest::WRITABLE)?;
/// for conn in sessions() {
///     match fwd.push_tcp(&conn, b"") {
///         Ok(_) => drop(conn),
///         Err(e) if e.name() == "QueueFull" => { /* still ours: serve or refuse it */ }
///         Err(e) => return Err(e.into()),
///     }
/// }
/// let mut events = Events::with_capacity(8);
/// while fwd.queued() > 0 {
///     poll.poll(&mut events, None)?;
///     fwd.flush()?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MioForwarder {
    stream: UnixStream,
    mode: Mode,
    queue: VecDeque<Queued>,
    capacity: usize,
    poisoned: bool,
}

impl MioForwarder {
    /// Wraps a connected mio stream; `capacity` (at least 1) bounds the queue in
    /// sessions.
    pub fn new(stream: UnixStream, capacity: usize) -> MioForwarder {
        MioForwarder {
            stream,
            mode: Mode::default(),
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            poisoned: false,
        }
    }

    /// Connects to a receiver listening on a filesystem path.
    ///
    /// # Errors
    /// What `connect(2)` reports.
    pub fn connect(path: impl AsRef<Path>, capacity: usize) -> io::Result<MioForwarder> {
        let stream = std::os::unix::net::UnixStream::connect(path)?;
        stream.set_nonblocking(true)?;
        Ok(MioForwarder::new(UnixStream::from_std(stream), capacity))
    }

    /// Sets what the forwarder may emit (see [`Mode`]). In [`Mode::Bind10`] the queue
    /// is flushed one session per `sendmsg`.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Sessions waiting in the queue, whole or in part.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The queue's bound, in sessions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The connection.
    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// Sends a session now, or queues it.
    ///
    /// # Errors
    /// Argument errors before anything happens; [`ForwardError::QueueFull`] (nothing
    /// taken); [`ForwardError::Io`] when the connection failed (queued sessions can be
    /// taken back with [`MioForwarder::take_unsent`]); [`ForwardError::Poisoned`]
    /// after `take_unsent` dropped a session that had partly gone out.
    pub fn push(&mut self, session: &Outgoing<'_>) -> Result<Pushed, ForwardError> {
        if self.poisoned {
            return Err(ForwardError::Poisoned);
        }
        let prefix = session.header().encode(session.data().len(), self.mode)?;
        self.push_encoded(std::slice::from_ref(&prefix), std::slice::from_ref(session))
    }

    /// Sends up to 253 sessions in one `sendmsg(2)`, their fds in one `SCM_RIGHTS`
    /// message (the batch extension), or queues them: all of them are taken, or
    /// none. What the kernel did not take of a batch that went out in part is queued
    /// whole, past the queue's bound if need be: its fds are out already, so the
    /// rest must follow.
    ///
    /// ```no_run
    /// use handoff_forwarder::{MioForwarder, Outgoing};
    /// # fn accepted() -> Vec<std::net::TcpStream> { vec![] }
    /// let mut fwd = MioForwarder::connect("/run/worker.sock", 1024)?;
    /// let conns = accepted();
    /// let batch = conns
    ///     .iter()
    ///     .map(|c| Outgoing::tcp(c, b""))
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// fwd.push_batch(&batch)?; // one sendmsg for all of them, if the socket has room
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`MioForwarder::push`], and [`ForwardError::BatchTooLarge`],
    /// [`ForwardError::StrictBatch`].
    pub fn push_batch(&mut self, sessions: &[Outgoing<'_>]) -> Result<Pushed, ForwardError> {
        if self.poisoned {
            return Err(ForwardError::Poisoned);
        }
        let prefixes = encode_batch(sessions, self.mode)?;
        if sessions.is_empty() {
            return Ok(Pushed::Sent);
        }
        self.push_encoded(&prefixes, sessions)
    }

    /// `push_batch` once every header is encoded.
    fn push_encoded(
        &mut self,
        prefixes: &[Prefix],
        sessions: &[Outgoing<'_>],
    ) -> Result<Pushed, ForwardError> {
        if !self.queue.is_empty() {
            self.flush()?;
        }
        if self.queue.is_empty() {
            let sock = self.stream.as_fd();
            let (result, total) = match (prefixes, sessions) {
                // One session: its arguments on the stack.
                ([prefix], [session]) => {
                    let iov = [IoSlice::new(prefix), IoSlice::new(session.data())];
                    let total = prefix.len() + session.data().len();
                    let fds = [session.fd()];
                    (self.stream.try_io(|| sys::send(sock, &iov, &fds)), total)
                }
                _ => {
                    let (iov, fds, total) = batch_parts(prefixes, sessions);
                    (self.stream.try_io(|| sys::send(sock, &iov, &fds)), total)
                }
            };
            match sent(result, total) {
                Ok(Sent { written, .. }) if written == total => return Ok(Pushed::Sent),
                Ok(Sent { mut written, .. }) => {
                    // Every fd went out with the first byte; the rest must follow.
                    for (prefix, session) in prefixes.iter().zip(sessions) {
                        let len = prefix.len() + session.data().len();
                        if written >= len {
                            written -= len;
                            continue;
                        }
                        let mut q = Queued::new(None, prefix, session);
                        q.sent = written;
                        written = 0;
                        self.queue.push_back(q);
                    }
                    return Ok(Pushed::Queued);
                }
                Err(ForwardError::WouldBlock) => {}
                Err(e) => return Err(e),
            }
        }
        if self.queue.len() + sessions.len() > self.capacity {
            return Err(ForwardError::QueueFull {
                capacity: self.capacity,
            });
        }
        // Every copy first, so that running out of fds takes nothing.
        let fds = sessions
            .iter()
            .map(|s| s.fd().try_clone_to_owned())
            .collect::<io::Result<Vec<OwnedFd>>>()
            .map_err(ForwardError::Io)?;
        for ((fd, prefix), session) in fds.into_iter().zip(prefixes).zip(sessions) {
            self.queue.push_back(Queued::new(Some(fd), prefix, session));
        }
        Ok(Pushed::Queued)
    }

    /// [`push`](MioForwarder::push) of a TCP connection, the header filled from it.
    ///
    /// # Errors
    /// As `push`, and [`ForwardError::Address`].
    pub fn push_tcp(
        &mut self,
        stream: &std::net::TcpStream,
        data: &[u8],
    ) -> Result<Pushed, ForwardError> {
        self.push(&Outgoing::tcp(stream, data)?)
    }

    /// Sends what the queue holds, until it is empty or the socket would block.
    /// Returns the sessions still queued. Call it on every writable event.
    ///
    /// # Errors
    /// [`ForwardError::Io`] when the connection failed; the queue is kept for
    /// [`MioForwarder::take_unsent`].
    pub fn flush(&mut self) -> Result<usize, ForwardError> {
        if self.poisoned {
            return Err(ForwardError::Poisoned);
        }
        while !self.queue.is_empty() {
            // The rest of a session cut short goes alone: fds ride only on messages
            // that start at a session (the receiver relies on it). Otherwise the
            // front and, where the mode allows, the sessions after it, in one sendmsg.
            let max = match (self.queue[0].fd.is_some(), self.mode) {
                (false, _) | (true, Mode::Bind10) => 1,
                (true, Mode::Extended) => MAX_BATCH,
            };
            let n = self
                .queue
                .iter()
                .take(max)
                .take_while(|q| q.fd.is_some())
                .count()
                .max(1);
            let batch = self.queue.range(..n);
            let iov: Vec<IoSlice<'_>> = batch.clone().map(|q| IoSlice::new(q.rest())).collect();
            let fds: Vec<BorrowedFd<'_>> = batch
                .clone()
                .filter_map(|q| q.fd.as_ref().map(AsFd::as_fd))
                .collect();
            let total = batch.map(|q| q.rest().len()).sum();
            let result = self
                .stream
                .try_io(|| sys::send(self.stream.as_fd(), &iov, &fds));
            let mut written = match sent(result, total) {
                Ok(s) => s.written,
                Err(ForwardError::WouldBlock) => break,
                Err(e) => return Err(e),
            };
            drop((iov, fds));
            // Every fd of the batch went out with its first byte.
            for q in self.queue.range_mut(..n) {
                q.fd = None;
            }
            // Every queued session has bytes left, so this ends within the batch.
            while let Some(front) = self.queue.front_mut().filter(|_| written > 0) {
                let rest = front.rest().len();
                if written < rest {
                    front.sent += written;
                    break;
                }
                written -= rest;
                self.queue.pop_front();
            }
        }
        Ok(self.queue.len())
    }

    /// Takes the queued sessions whose fd has not gone out, for another receiver.
    /// A session that had partly gone out cannot be taken back; if there was one, the
    /// connection is out of step and every later call fails with
    /// [`ForwardError::Poisoned`]. Meant for a connection that failed.
    pub fn take_unsent(&mut self) -> Vec<Unsent> {
        let mut unsent = Vec::new();
        for q in self.queue.drain(..) {
            match q.fd {
                Some(fd) => unsent.push(Unsent {
                    fd,
                    header: q.header,
                    data: q.bytes[q.data_start..].to_vec(),
                }),
                None => self.poisoned = true,
            }
        }
        unsent
    }
}

impl Source for MioForwarder {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.stream.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.stream.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.stream.deregister(registry)
    }
}
