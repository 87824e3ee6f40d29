//! The worker side: connect to a pool, announce credits, and loop over sessions.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use handoff_receiver::{ReceiveError, Receiver, Session};

use crate::protocol::Control;

/// A worker's connection to its pool in handoffd.
///
/// Each session is acknowledged as it is received — every session one read
/// brought, in one ack — so the broker can let go of its copy; until then, a worker
/// that dies has its sessions sent to another. From the ack on, the connection is
/// the worker's alone: when [`Worker::next_session`] says the broker closed the
/// pool, finish the connections being served before exiting, or their clients see
/// them cut.
///
/// ```no_run
/// use std::io::Write;
/// let mut worker = handoff_broker::Worker::connect("/run/handoff/http.sock", 64)?;
/// while let Some(session) = worker.next_session()? {
///     let mut stream = session.into_tcp_stream()?;
///     stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Worker {
    receiver: Receiver,
    control: UnixStream,
    received: Received,
}

/// Sessions received and acknowledged, not yet handed out; and an error met while
/// taking them, handed out after them.
#[derive(Debug, Default)]
struct Received {
    ready: VecDeque<Session>,
    error: Option<ReceiveError>,
}

impl Received {
    /// The next session or error already received, in order.
    fn next(&mut self) -> Option<Result<Session, ReceiveError>> {
        match self.ready.pop_front() {
            Some(s) => Some(Ok(s)),
            None => self.error.take().map(Err),
        }
    }

    /// Takes `first` and every whole session buffered behind it; how many.
    fn take(
        &mut self,
        first: Session,
        mut buffered: impl FnMut() -> Result<Option<Session>, ReceiveError>,
    ) -> u32 {
        self.ready.push_back(first);
        loop {
            match buffered() {
                Ok(Some(s)) => self.ready.push_back(s),
                Ok(None) => break,
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        self.ready.len() as u32
    }
}

impl Worker {
    /// Connects to the pool socket at `path` and announces `credits`: how many
    /// sessions this worker may hold unacknowledged (at least 1).
    ///
    /// # Errors
    /// What `connect(2)` and the first write report.
    pub fn connect(path: impl AsRef<Path>, credits: u32) -> io::Result<Worker> {
        Worker::from_stream(UnixStream::connect(path)?, credits)
    }

    /// As [`Worker::connect`], over a stream already connected.
    ///
    /// # Errors
    /// What the first write reports.
    pub fn from_stream(stream: UnixStream, credits: u32) -> io::Result<Worker> {
        let mut control = stream.try_clone()?;
        control.write_all(&Control::Credits(credits.max(1)).encode())?;
        let mut receiver = Receiver::new(stream)?;
        receiver.set_verify(false);
        Ok(Worker {
            receiver,
            control,
            received: Received::default(),
        })
    }

    /// Whether to check each fd against its header, as
    /// [`Receiver::set_verify`] does: off by default here, because handoffd builds
    /// every header from the socket it accepted or received on, and the check costs
    /// two `getsockopt` calls per session. Turn it on for a broker you do not trust
    /// to get that right.
    pub fn set_verify(&mut self, verify: bool) {
        self.receiver.set_verify(verify);
    }

    /// Waits for the next session and acknowledges it, with every other whole
    /// session the same read brought (one ack for them all; they come out of the
    /// next calls without waiting). `Ok(None)` when the broker closed the connection
    /// (it is draining or gone); sessions already returned are still the worker's
    /// to finish.
    ///
    /// # Errors
    /// A [`ReceiveError`]; an error writing the ack is [`ReceiveError::Io`] (the
    /// sessions it was for are closed here: unacknowledged, they are still the
    /// broker's to send to another worker).
    pub fn next_session(&mut self) -> Result<Option<Session>, ReceiveError> {
        if let Some(next) = self.received.next() {
            return next.map(Some);
        }
        let Some(first) = self.receiver.pop()? else {
            return Ok(None);
        };
        let n = self.received.take(first, || self.receiver.pop_buffered());
        if let Err(e) = self.control.write_all(&Control::Ack(n).encode()) {
            self.received = Received::default();
            return Err(ReceiveError::Io(e));
        }
        self.received.next().transpose()
    }

    /// Changes how many sessions this worker may hold unacknowledged.
    ///
    /// # Errors
    /// What the write reports.
    pub fn set_credits(&mut self, credits: u32) -> io::Result<()> {
        self.control
            .write_all(&Control::Credits(credits.max(1)).encode())
    }
}

/// The worker side for a mio event loop: [`MioWorker::next_session`] answers
/// [`ReceiveError::WouldBlock`] until a whole session has arrived, and sessions are
/// acknowledged on receipt as with [`Worker`], those of one read in one ack (an ack
/// the socket will not take now goes with the next call).
///
/// ```no_run
/// use mio::{Events, Interest, Poll, Token};
/// let mut poll = Poll::new()?;
/// let mut worker = handoff_broker::MioWorker::connect("/tmp/handoff-http.sock", 64)?;
/// poll.registry().register(&mut worker, Token(0), Interest::READABLE)?;
/// let mut events = Events::with_capacity(16);
/// loop {
///     poll.poll(&mut events, None)?;
///     loop {
///         match worker.next_session() {
///             Ok(Some(session)) => drop(session), // serve it
///             Ok(None) => return Ok(()),          // handoffd closed the pool
///             Err(e) if e.is_would_block() => break,
///             Err(e) => return Err(e.into()),
///         }
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MioWorker {
    receiver: handoff_receiver::MioReceiver,
    control: UnixStream,
    unsent: Vec<u8>,
    received: Received,
}

impl MioWorker {
    /// Connects to the pool socket at `path` and announces `credits`.
    ///
    /// # Errors
    /// What `connect(2)` and the first write report.
    pub fn connect(path: impl AsRef<Path>, credits: u32) -> io::Result<MioWorker> {
        let stream = UnixStream::connect(path)?;
        let mut control = stream.try_clone()?;
        control.write_all(&Control::Credits(credits.max(1)).encode())?;
        // The clone shares the stream's O_NONBLOCK, which MioReceiver sets.
        let mut receiver = handoff_receiver::MioReceiver::new(stream)?;
        receiver.set_verify(false);
        Ok(MioWorker {
            receiver,
            control,
            unsent: Vec::new(),
            received: Received::default(),
        })
    }

    /// As [`Worker::set_verify`]: off by default.
    pub fn set_verify(&mut self, verify: bool) {
        self.receiver.set_verify(verify);
    }

    /// The next session if a whole one has arrived, acknowledged; `Ok(None)` when
    /// the broker closed the connection.
    ///
    /// # Errors
    /// [`ReceiveError::WouldBlock`] when more must arrive first; other
    /// [`ReceiveError`]s; an error writing an ack is [`ReceiveError::Io`].
    pub fn next_session(&mut self) -> Result<Option<Session>, ReceiveError> {
        self.flush_acks().map_err(ReceiveError::Io)?;
        if let Some(next) = self.received.next() {
            return next.map(Some);
        }
        let Some(first) = self.receiver.pop()? else {
            return Ok(None);
        };
        let n = self.received.take(first, || self.receiver.pop_buffered());
        self.unsent.extend_from_slice(&Control::Ack(n).encode());
        if let Err(e) = self.flush_acks() {
            self.received = Received::default();
            return Err(ReceiveError::Io(e));
        }
        self.received.next().transpose()
    }

    /// Writes acks the socket would not take before.
    ///
    /// # Errors
    /// What `write(2)` reports, but for would-block.
    pub fn flush_acks(&mut self) -> io::Result<()> {
        while !self.unsent.is_empty() {
            match self.control.write(&self.unsent) {
                Ok(n) => drop(self.unsent.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl mio::event::Source for MioWorker {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.receiver.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.receiver.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.receiver.deregister(registry)
    }
}
