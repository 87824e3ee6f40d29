//! What the blocking and the mio receiver share: the buffer, the fd queue, and the
//! rules that tie each fd to its session.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use bytes::{Buf, Bytes, BytesMut};
use handoff_proto::{decode, Status, MAX_BATCH};

use crate::sys::{self, Received};
use crate::{ReceiveError, Session};

/// Bytes asked of each `recvmsg` at least: a few small sessions, or a good part of a
/// large one. The kernel ends a read after the message that carried fds anyway.
const READ_SIZE: usize = 64 * 1024;
/// Below this much spare room, the buffer grows before the next read.
const MIN_SPARE: usize = 4096;
/// The most fds that may wait for their sessions: one batch whose sessions are still
/// arriving, and the next.
const MAX_UNCLAIMED: usize = 2 * MAX_BATCH;

/// A read that brought fds. The kernel delivers a message's fds with its first byte
/// and ends a read after the message that carried fds, and a forwarder attaches fds
/// only to a message that starts at a session; so the last session that starts before
/// the read's `end` is the first that owns one of these fds (`fds_before` is its index).
/// Every fd received before belongs to a session that starts earlier.
#[derive(Debug, Clone, Copy)]
struct Mark {
    end: u64,
    fds_before: u64,
}

#[derive(Debug)]
pub(crate) struct Core {
    buf: BytesMut,
    fds: VecDeque<OwnedFd>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    received: u64,
    claimed: u64,
    marks: VecDeque<Mark>,
    eof: bool,
    poisoned: bool,
    pub(crate) verify: bool,
}

impl Core {
    pub(crate) fn new() -> Core {
        Core {
            buf: BytesMut::new(),
            fds: VecDeque::new(),
            offset: 0,
            received: 0,
            claimed: 0,
            marks: VecDeque::new(),
            eof: false,
            poisoned: false,
            verify: true,
        }
    }

    /// Bytes buffered and not yet handed out.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next session: from the buffer if a whole one is there, else after reads
    /// through `read` until one is, the stream ends, or `read` fails.
    pub(crate) fn pop(
        &mut self,
        mut read: impl FnMut(&mut BytesMut, &mut VecDeque<OwnedFd>) -> io::Result<Received>,
    ) -> Result<Option<Session>, ReceiveError> {
        loop {
            if let Some(session) = self.next_buffered()? {
                return Ok(Some(session));
            }
            if self.eof {
                return self.finish();
            }
            if self.buf.capacity() - self.buf.len() < MIN_SPARE {
                self.buf.reserve(READ_SIZE);
            }
            match read(&mut self.buf, &mut self.fds) {
                Ok(got) => self.absorb(got)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(ReceiveError::WouldBlock)
                }
                Err(e) => return Err(self.fatal(ReceiveError::Io(e))),
            }
        }
    }

    /// A whole session already buffered, without reading.
    pub(crate) fn pop_buffered(&mut self) -> Result<Option<Session>, ReceiveError> {
        self.next_buffered()
    }

    /// Applies the fd rules to what one read brought.
    fn absorb(&mut self, got: Received) -> Result<(), ReceiveError> {
        self.received += got.fds as u64;
        if got.truncated {
            return Err(self.fatal(ReceiveError::ControlTruncated));
        }
        if let Some((level, kind)) = got.unexpected {
            return Err(self.fatal(ReceiveError::UnexpectedControl { level, kind }));
        }
        if got.bytes == 0 {
            self.eof = true;
            return Ok(());
        }
        if got.fds > 0 {
            self.marks.push_back(Mark {
                end: self.offset + self.buf.len() as u64,
                fds_before: self.received - got.fds as u64,
            });
        }
        if self.fds.len() > MAX_UNCLAIMED {
            return Err(self.extra_fds());
        }
        Ok(())
    }

    /// A whole session from the buffer, if there is one.
    fn next_buffered(&mut self) -> Result<Option<Session>, ReceiveError> {
        if self.poisoned {
            return Err(ReceiveError::Poisoned);
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let frame = match decode(&self.buf) {
            Ok(Status::Complete(frame)) => Some(frame),
            Ok(Status::Partial) => None,
            Err(e) => return Err(self.fatal(e.into())),
        };
        // The session's first byte is here: so must its fd be, and each read that
        // brought fds, if this session starts past it, must have had a session of its
        // own start in it.
        while let Some(&Mark { end, fds_before }) = self.marks.front() {
            if end > self.offset {
                break;
            }
            if self.claimed <= fds_before {
                return Err(self.extra_fds());
            }
            self.marks.pop_front();
        }
        if self.fds.is_empty() {
            return Err(self.fatal(ReceiveError::FdMissing));
        }
        let Some(frame) = frame.filter(|f| f.total_len() <= self.buf.len()) else {
            return Ok(None);
        };
        // The last session to start inside a read that brought fds owns one of them.
        let end = self.offset + frame.total_len() as u64;
        let owed = self.marks.iter().take_while(|m| m.end <= end).last();
        if owed.is_some_and(|m| self.claimed < m.fds_before) {
            return Err(self.extra_fds());
        }
        let Some(fd) = self.fds.pop_front() else {
            return Err(self.fatal(ReceiveError::FdMissing));
        };
        self.claimed += 1;
        self.offset = end;
        self.buf.advance(frame.data_range().start);
        let data = if frame.data_len() == 0 {
            Bytes::new()
        } else {
            self.buf.split_to(frame.data_len()).freeze()
        };
        let header = frame.into_header();
        if self.verify {
            check_socket(fd.as_fd(), &header)?;
        }
        Ok(Some(Session::new(fd, header, data)))
    }

    /// At end of stream: clean only at a session boundary with no fd left over.
    fn finish(&mut self) -> Result<Option<Session>, ReceiveError> {
        if !self.buf.is_empty() {
            let buffered = self.buf.len();
            return Err(self.fatal(ReceiveError::Incomplete { buffered }));
        }
        if !self.fds.is_empty() {
            let count = self.fds.len();
            return Err(self.fatal(ReceiveError::UnclaimedFds { count }));
        }
        Ok(None)
    }

    fn extra_fds(&mut self) -> ReceiveError {
        let held = self.fds.len();
        self.fatal(ReceiveError::ExtraFds { held })
    }

    /// Closes every fd held and refuses all further work.
    fn fatal(&mut self, e: ReceiveError) -> ReceiveError {
        self.poisoned = true;
        self.fds.clear();
        self.marks.clear();
        self.buf = BytesMut::new();
        e
    }
}

/// The received fd must be a socket of the header's domain and type.
fn check_socket(fd: BorrowedFd<'_>, header: &handoff_proto::Header) -> Result<(), ReceiveError> {
    // ENOTSOCK, in practice: an fd that is no socket has no SO_DOMAIN.
    let (domain, actual_type) = sys::socket_kind(fd).map_err(ReceiveError::NotASocket)?;
    let family = header.family();
    let sock_type = header.socket_type();
    if domain as u32 != family.code() || actual_type as u32 != sock_type.0 {
        return Err(ReceiveError::SocketMismatch {
            family,
            sock_type,
            domain,
            actual_type,
        });
    }
    Ok(())
}
