//! A received session.

use std::fmt;
use std::net::{TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use bytes::Bytes;
use handoff_proto::{Endpoint, Family, Header, Protocol, SocketType};

/// A session received: the socket, its header, and the bytes already read from it.
///
/// The socket is an [`OwnedFd`] (close-on-exec); the conversions turn it into the std
/// type its header names. Note that the socket shares its open file description with
/// the forwarder's copy: its `O_NONBLOCK` flag is the forwarder's too.
#[derive(Debug)]
pub struct Session {
    fd: OwnedFd,
    header: Header,
    data: Bytes,
}

impl Session {
    pub(crate) fn new(fd: OwnedFd, header: Header, data: Bytes) -> Session {
        Session { fd, header, data }
    }

    /// The header as it arrived.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The address family.
    pub fn family(&self) -> Family {
        self.header.family()
    }

    /// The socket type.
    pub fn socket_type(&self) -> SocketType {
        self.header.socket_type()
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.header.protocol()
    }

    /// The local endpoint as the forwarder sent it. Do not trust it: some forwarders
    /// send the remote one in its place; ask the socket (`local_addr`) when it matters.
    pub fn local(&self) -> &Endpoint {
        self.header.local()
    }

    /// The remote endpoint: for UDP, the sender of the datagram in [`Session::data`].
    pub fn remote(&self) -> &Endpoint {
        self.header.remote()
    }

    /// The bytes already read from the socket (for UDP, the datagram).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The socket, borrowed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The parts, taken out.
    pub fn into_parts(self) -> (OwnedFd, Header, Bytes) {
        (self.fd, self.header, self.data)
    }

    /// The socket as a [`TcpStream`], if the header says TCP over IP. Take the data
    /// first (`session.data().clone()` is cheap).
    ///
    /// # Errors
    /// [`IntoSocketError`], which gives the session back.
    pub fn into_tcp_stream(self) -> Result<TcpStream, IntoSocketError> {
        if self.is_ip() && self.socket_type() == SocketType::STREAM {
            Ok(TcpStream::from(self.fd))
        } else {
            Err(IntoSocketError::new(self, "TcpStream"))
        }
    }

    /// The socket as a [`UdpSocket`], if the header says a datagram socket over IP.
    ///
    /// # Errors
    /// [`IntoSocketError`], which gives the session back.
    pub fn into_udp_socket(self) -> Result<UdpSocket, IntoSocketError> {
        if self.is_ip() && self.socket_type() == SocketType::DGRAM {
            Ok(UdpSocket::from(self.fd))
        } else {
            Err(IntoSocketError::new(self, "UdpSocket"))
        }
    }

    /// The socket as a [`UnixStream`], if the header says a UNIX stream socket.
    ///
    /// # Errors
    /// [`IntoSocketError`], which gives the session back.
    pub fn into_unix_stream(self) -> Result<UnixStream, IntoSocketError> {
        if self.family() == Family::Unix && self.socket_type() == SocketType::STREAM {
            Ok(UnixStream::from(self.fd))
        } else {
            Err(IntoSocketError::new(self, "UnixStream"))
        }
    }

    fn is_ip(&self) -> bool {
        matches!(self.family(), Family::Inet | Family::Inet6)
    }
}

/// A session that is not of the kind asked for; it is inside, untouched.
#[derive(Debug)]
pub struct IntoSocketError {
    session: Box<Session>,
    wanted: &'static str,
}

impl IntoSocketError {
    fn new(session: Session, wanted: &'static str) -> IntoSocketError {
        IntoSocketError {
            session: Box::new(session),
            wanted,
        }
    }

    /// The session, given back.
    pub fn into_session(self) -> Session {
        *self.session
    }
}

impl fmt::Display for IntoSocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} {:?} session cannot become a {}",
            self.session.family(),
            self.session.socket_type(),
            self.wanted
        )
    }
}

impl std::error::Error for IntoSocketError {}
