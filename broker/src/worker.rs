//! The worker side: connect to a pool, announce credits, and loop over sessions.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use handoff_receiver::{ReceiveError, Receiver, Session};

use crate::protocol::Control;

/// A worker's connection to its pool in handoffd.
///
/// Each session is acknowledged as it is received, so the broker can let go of its
/// copy; until then, a worker that dies has its sessions sent to another.
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
        Ok(Worker {
            receiver: Receiver::new(stream)?,
            control,
        })
    }

    /// Waits for the next session and acknowledges it. `Ok(None)` when the broker
    /// closed the connection (it is draining or gone).
    ///
    /// # Errors
    /// A [`ReceiveError`]; an error writing the ack is [`ReceiveError::Io`].
    pub fn next_session(&mut self) -> Result<Option<Session>, ReceiveError> {
        let Some(session) = self.receiver.pop()? else {
            return Ok(None);
        };
        self.control
            .write_all(&Control::Ack(1).encode())
            .map_err(ReceiveError::Io)?;
        Ok(Some(session))
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
