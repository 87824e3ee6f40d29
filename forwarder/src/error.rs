//! What can go wrong when pushing a session.

use std::io;

use handoff_proto::EncodeError;
use thiserror::Error;

/// Why a push failed. Each variant says whether anything reached the connection.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The session cannot be encoded (argument error). Nothing was written.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The socket's local or peer address could not be read. Nothing was written.
    #[error("cannot read the address of the socket to forward")]
    Address(#[source] io::Error),
    /// The send buffer is full and nothing was written: retry later; the connection
    /// is still usable.
    #[error("the receiver is not keeping up: nothing was sent, try again later")]
    WouldBlock,
    /// Only part of the session went out before the buffer filled. The connection is
    /// now poisoned: the receiver holds a partial session.
    #[error("only {written} of {total} bytes were sent; the connection is out of step and must be closed")]
    Partial {
        /// Bytes written.
        written: usize,
        /// Bytes the push had to write.
        total: usize,
    },
    /// An earlier partial write left the connection out of step; nothing was written.
    #[error("an earlier partial write left this connection out of step; open a new one")]
    Poisoned,
    /// A batch holds more sessions than one `SCM_RIGHTS` message can carry.
    #[error("a batch of {len} sessions is more than the {max} one sendmsg can carry")]
    BatchTooLarge {
        /// Sessions in the batch.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// Strict BIND 10 mode, and a batch of more than one session was asked for.
    #[error("batches are an extension that strict BIND 10 mode does not send")]
    StrictBatch,
    /// The outbound queue of a [`crate::MioForwarder`] is full; the session was not
    /// taken: the caller still owns it.
    #[error("the outbound queue is full ({capacity} sessions); the session was not taken")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The connection failed (the receiver went away, or the kernel refused). Nothing
    /// of this session was written.
    #[error("the connection to the receiver failed")]
    Io(#[source] io::Error),
}

impl ForwardError {
    /// Whether the same push may simply be retried later on this connection.
    pub fn is_would_block(&self) -> bool {
        matches!(self, ForwardError::WouldBlock)
    }

    /// The variant's name, for logs and tools that report errors by kind.
    pub fn name(&self) -> &'static str {
        match self {
            ForwardError::Encode(e) => e.name(),
            ForwardError::Address(_) => "Address",
            ForwardError::WouldBlock => "WouldBlock",
            ForwardError::Partial { .. } => "Partial",
            ForwardError::Poisoned => "Poisoned",
            ForwardError::BatchTooLarge { .. } => "BatchTooLarge",
            ForwardError::StrictBatch => "StrictBatch",
            ForwardError::QueueFull { .. } => "QueueFull",
            ForwardError::Io(_) => "Io",
        }
    }
}

impl From<ForwardError> for io::Error {
    /// Keeps `WouldBlock` visible as [`io::ErrorKind::WouldBlock`] and OS errors as
    /// they were; the rest become `InvalidInput` or `Other` with the message.
    fn from(e: ForwardError) -> io::Error {
        match e {
            ForwardError::WouldBlock => io::ErrorKind::WouldBlock.into(),
            ForwardError::Io(e) | ForwardError::Address(e) => e,
            e @ (ForwardError::Encode(_)
            | ForwardError::BatchTooLarge { .. }
            | ForwardError::StrictBatch) => io::Error::new(io::ErrorKind::InvalidInput, e),
            e => io::Error::other(e),
        }
    }
}
