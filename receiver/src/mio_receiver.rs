//! The mio-driven receiver: partial sessions wait in the buffer across calls.

use std::io;
use std::os::fd::AsFd;

use mio::event::Source;
use mio::net::UnixStream;
use mio::{Interest, Registry, Token};

use crate::core::Core;
use crate::{sys, ReceiveError, Session};

/// A receiver for a mio event loop.
///
/// Register it for [`Interest::READABLE`]; on each readable event call
/// [`pop`](MioReceiver::pop) until it answers [`ReceiveError::WouldBlock`]. A session
/// that arrives in pieces waits in the buffer, fds and all, until it is whole.
///
/// ```no_run
/// use mio::{Events, Interest, Poll, Token};
/// use handoff_receiver::MioReceiver;
///
/// let mut poll = Poll::new()?;
/// let (conn, _) = std::os::unix::net::UnixListener::bind("/run/w.sock")?.accept()?;
/// let mut receiver = MioReceiver::new(conn)?;
/// poll.registry().register(&mut receiver, Token(0), Interest::READABLE)?;
/// let mut events = Events::with_capacity(8);
/// 'serve: loop {
///     poll.poll(&mut events, None)?;
///     loop {
///         match receiver.pop() {
///             Ok(Some(session)) => println!("from {}", session.remote()),
///             Ok(None) => break 'serve,
///             Err(e) if e.is_would_block() => break,
///             Err(e) => return Err(e.into()),
///         }
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MioReceiver {
    stream: UnixStream,
    core: Core,
}

impl MioReceiver {
    /// Wraps a connected stream, which is made non-blocking.
    ///
    /// # Errors
    /// What `fcntl(2)` reports.
    pub fn new(stream: std::os::unix::net::UnixStream) -> io::Result<MioReceiver> {
        stream.set_nonblocking(true)?;
        Ok(MioReceiver {
            stream: UnixStream::from_std(stream),
            core: Core::new(),
        })
    }

    /// As [`Receiver::set_verify`](crate::Receiver::set_verify).
    pub fn set_verify(&mut self, verify: bool) {
        self.core.verify = verify;
    }

    /// Bytes of a session still arriving, kept across calls.
    pub fn buffered(&self) -> usize {
        self.core.buffered()
    }

    /// As [`Receiver::pop_buffered`](crate::Receiver::pop_buffered): a whole
    /// session already buffered, without reading.
    ///
    /// # Errors
    /// As [`MioReceiver::pop`], for what is buffered.
    pub fn pop_buffered(&mut self) -> Result<Option<Session>, ReceiveError> {
        self.core.pop_buffered()
    }

    /// The next session if a whole one has arrived; `Ok(None)` at a clean end of
    /// stream; [`ReceiveError::WouldBlock`] when more must arrive first.
    ///
    /// # Errors
    /// See [`ReceiveError`].
    pub fn pop(&mut self) -> Result<Option<Session>, ReceiveError> {
        let stream = &self.stream;
        self.core
            .pop(|buf, fds| stream.try_io(|| sys::recv(stream.as_fd(), buf, fds)))
    }
}

impl Source for MioReceiver {
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
