//! A socket handed to us by systemd or by our predecessor, inspected like
//! `sd_is_socket`.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

use socket2::{Domain, SockAddr, Socket, Type};

/// An adopted socket with what the kernel says of it: domain, type, whether it
/// listens, and its address. Converted into the std type it is, once.
pub struct Adopted {
    name: String,
    socket: Socket,
    domain: Domain,
    ty: Type,
    listening: bool,
    /// Boxed: a `sockaddr_storage` is 128 bytes, and `Adopted` travels in `Err`s.
    local: Option<Box<SockAddr>>,
}

impl Adopted {
    /// Inspects `fd` (`SO_DOMAIN`, `SO_TYPE`, `SO_ACCEPTCONN`, `getsockname`).
    ///
    /// # Errors
    /// `ENOTSOCK` (as an `io::Error`) for an fd that is not a socket.
    pub(crate) fn inspect(fd: OwnedFd, name: String) -> std::io::Result<Adopted> {
        let socket = Socket::from(fd);
        let domain = socket.domain()?;
        let ty = socket.r#type()?;
        // Datagram sockets cannot listen; the option answers 0 for them.
        let listening = socket.is_listener().unwrap_or(false);
        let local = socket.local_addr().ok().map(Box::new);
        Ok(Adopted {
            name,
            socket,
            domain,
            ty,
            listening,
            local,
        })
    }

    /// The name it was passed with (`LISTEN_FDNAMES`, or our own list); `unknown`
    /// when none was given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its domain (`AF_INET`, `AF_INET6`, `AF_UNIX`, …).
    pub fn domain(&self) -> Domain {
        self.domain
    }

    /// Its type (`SOCK_STREAM`, `SOCK_DGRAM`, …).
    pub fn socket_type(&self) -> Type {
        self.ty
    }

    /// Whether it is a listening socket (`SO_ACCEPTCONN`). A stream socket that is
    /// not listening is a connection (systemd's `Accept=yes`): never accept on it.
    pub fn is_listening(&self) -> bool {
        self.listening
    }

    /// The IP address it is bound to, if it is an IP socket.
    pub fn ip_addr(&self) -> Option<SocketAddr> {
        self.local.as_deref().and_then(SockAddr::as_socket)
    }

    /// Its address as the kernel reports it.
    pub fn local_addr(&self) -> Option<&SockAddr> {
        self.local.as_deref()
    }

    /// Whether it is a listening TCP socket bound to `port`.
    pub fn is_tcp_listener_on(&self, port: u16) -> bool {
        self.ty == Type::STREAM
            && self.listening
            && self.ip_addr().is_some_and(|a| a.port() == port)
    }

    /// Whether it is a UDP socket bound to `port`.
    pub fn is_udp_on(&self, port: u16) -> bool {
        self.ty == Type::DGRAM && self.ip_addr().is_some_and(|a| a.port() == port)
    }

    /// A listening TCP socket as a [`TcpListener`].
    ///
    /// # Errors
    /// Gives the socket back if it is something else.
    pub fn into_tcp_listener(self) -> Result<TcpListener, Adopted> {
        if self.is_ip() && self.ty == Type::STREAM && self.listening {
            Ok(TcpListener::from(OwnedFd::from(self.socket)))
        } else {
            Err(self)
        }
    }

    /// A UDP socket as a [`UdpSocket`].
    ///
    /// # Errors
    /// Gives the socket back if it is something else.
    pub fn into_udp_socket(self) -> Result<UdpSocket, Adopted> {
        if self.is_ip() && self.ty == Type::DGRAM {
            Ok(UdpSocket::from(OwnedFd::from(self.socket)))
        } else {
            Err(self)
        }
    }

    /// A listening UNIX stream socket as a [`UnixListener`].
    ///
    /// # Errors
    /// Gives the socket back if it is something else.
    pub fn into_unix_listener(self) -> Result<UnixListener, Adopted> {
        if self.domain == Domain::UNIX && self.ty == Type::STREAM && self.listening {
            Ok(UnixListener::from(OwnedFd::from(self.socket)))
        } else {
            Err(self)
        }
    }

    /// A UNIX datagram socket as a [`UnixDatagram`].
    ///
    /// # Errors
    /// Gives the socket back if it is something else.
    pub fn into_unix_datagram(self) -> Result<UnixDatagram, Adopted> {
        if self.domain == Domain::UNIX && self.ty == Type::DGRAM {
            Ok(UnixDatagram::from(OwnedFd::from(self.socket)))
        } else {
            Err(self)
        }
    }

    /// An `Accept=yes` TCP connection as a [`TcpStream`].
    ///
    /// # Errors
    /// Gives the socket back if it is something else.
    pub fn into_tcp_stream(self) -> Result<TcpStream, Adopted> {
        if self.is_ip() && self.ty == Type::STREAM && !self.listening {
            Ok(TcpStream::from(OwnedFd::from(self.socket)))
        } else {
            Err(self)
        }
    }

    /// An `Accept=yes` UNIX connection as a [`UnixStream`].
    ///
    /// # Errors
    /// Gives the socket back if it is something else.
    pub fn into_unix_stream(self) -> Result<UnixStream, Adopted> {
        if self.domain == Domain::UNIX && self.ty == Type::STREAM && !self.listening {
            Ok(UnixStream::from(OwnedFd::from(self.socket)))
        } else {
            Err(self)
        }
    }

    /// The socket itself, whatever it is.
    pub fn into_socket(self) -> Socket {
        self.socket
    }

    fn is_ip(&self) -> bool {
        self.domain == Domain::IPV4 || self.domain == Domain::IPV6
    }
}

impl AsFd for Adopted {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl fmt::Debug for Adopted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adopted")
            .field("name", &self.name)
            .field("fd", &self.socket)
            .field("domain", &self.domain)
            .field("type", &self.ty)
            .field("listening", &self.listening)
            .field("local", &self.local)
            .finish()
    }
}
