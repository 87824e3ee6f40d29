//! A session to send: a borrowed fd, its header and its data.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use handoff_proto::{Header, Protocol, SocketType, UnixEndpoint};

use crate::ForwardError;

/// One session to push: the socket (borrowed: the caller keeps its copy), the header,
/// and the bytes already read from it.
///
/// The constructors for std sockets fill the header from the socket itself.
///
/// ```no_run
/// use std::net::TcpListener;
/// use handoff_forwarder::{Forwarder, Outgoing};
///
/// let listener = TcpListener::bind("127.0.0.1:8080")?;
/// let mut forwarder = Forwarder::connect("/run/worker.sock")?;
/// let (conn, _) = listener.accept()?;
/// forwarder.push(&Outgoing::tcp(&conn, b"")?)?;
/// drop(conn); // the worker has its own copy now
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    fd: BorrowedFd<'a>,
    header: Header,
    data: &'a [u8],
}

impl<'a> Outgoing<'a> {
    /// A session from its parts, as given: nothing is checked against the socket.
    pub fn new(fd: BorrowedFd<'a>, header: Header, data: &'a [u8]) -> Outgoing<'a> {
        Outgoing { fd, header, data }
    }

    /// A TCP connection: local and remote from `getsockname`/`getpeername`.
    ///
    /// # Errors
    /// [`ForwardError::Address`] if either address cannot be read (for example, the
    /// peer already reset the connection).
    pub fn tcp(stream: &'a TcpStream, data: &'a [u8]) -> Result<Outgoing<'a>, ForwardError> {
        let local = stream.local_addr().map_err(ForwardError::Address)?;
        let remote = stream.peer_addr().map_err(ForwardError::Address)?;
        Self::ip(
            stream.as_fd(),
            SocketType::STREAM,
            Protocol::TCP,
            local,
            remote,
            data,
        )
    }

    /// A UDP socket, with the sender of `datagram` as the remote endpoint.
    ///
    /// # Errors
    /// [`ForwardError::Address`] if the local address cannot be read;
    /// `FamilyMismatch` if `remote` is not of the socket's family (an IPv6 socket
    /// reports IPv4 senders as mapped addresses).
    pub fn udp(
        socket: &'a UdpSocket,
        remote: SocketAddr,
        datagram: &'a [u8],
    ) -> Result<Outgoing<'a>, ForwardError> {
        let local = socket.local_addr().map_err(ForwardError::Address)?;
        Self::ip(
            socket.as_fd(),
            SocketType::DGRAM,
            Protocol::UDP,
            local,
            remote,
            datagram,
        )
    }

    /// A UNIX stream connection (an extension: refused in strict BIND 10 mode).
    ///
    /// # Errors
    /// [`ForwardError::Address`] if either address cannot be read.
    pub fn unix(stream: &'a UnixStream, data: &'a [u8]) -> Result<Outgoing<'a>, ForwardError> {
        let local = UnixEndpoint::from(&stream.local_addr().map_err(ForwardError::Address)?);
        let remote = UnixEndpoint::from(&stream.peer_addr().map_err(ForwardError::Address)?);
        let header = Header::new(
            SocketType::STREAM,
            Protocol::DEFAULT,
            local.into(),
            remote.into(),
        )?;
        Ok(Outgoing::new(stream.as_fd(), header, data))
    }

    fn ip(
        fd: BorrowedFd<'a>,
        sock_type: SocketType,
        protocol: Protocol,
        local: SocketAddr,
        remote: SocketAddr,
        data: &'a [u8],
    ) -> Result<Outgoing<'a>, ForwardError> {
        let header = Header::new(sock_type, protocol, local.into(), remote.into())?;
        Ok(Outgoing::new(fd, header, data))
    }

    /// The socket to send.
    pub fn fd(&self) -> BorrowedFd<'a> {
        self.fd
    }

    /// The session header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The session data.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}
