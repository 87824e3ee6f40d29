//! handoff moves live sockets between processes on one Linux host, safely and fast.
//!
//! A front-end that accepted a connection (or read a datagram) hands it — the fd over
//! `SCM_RIGHTS`, a header with family, type, protocol and both endpoints, and the
//! bytes already read — to a backend worker in another process, which rebuilds it and
//! serves it. This crate re-exports the parts:
//!
//! - [`proto`]: the wire format (BIND 10 `socketsession` compatible), sans I/O;
//! - [`forwarder`]: [`Forwarder`] and [`MioForwarder`], the sending side;
//! - [`receiver`]: [`Receiver`] and [`MioReceiver`], the receiving side;
//! - [`listen`]: listening sockets from systemd, from a predecessor, or bound with
//!   the options production servers need;
//! - [`broker`]: `handoffd`, which hands sessions to worker pools, and the worker API.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use std::os::unix::net::UnixStream;
//! use handoff::{Forwarder, Receiver};
//!
//! // The acceptor and the worker would be two processes; a socketpair stands in.
//! let (a, b) = UnixStream::pair()?;
//! let mut forwarder = Forwarder::from_stream(a)?;
//! let mut receiver = Receiver::new(b)?;
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let mut client = TcpStream::connect(listener.local_addr()?)?;
//! let (conn, _) = listener.accept()?;
//! client.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
//! let mut head = [0; 18];
//! (&conn).read_exact(&mut head)?;
//!
//! forwarder.push_tcp(&conn, &head)?; // the acceptor hands it off...
//! drop(conn);
//!
//! let session = receiver.pop()?.expect("a session"); // ...and the worker serves it
//! assert_eq!(&session.data()[..], b"GET / HTTP/1.0\r\n\r\n");
//! assert_eq!(session.remote().ip(), Some(client.local_addr()?));
//! session.into_tcp_stream()?.write_all(b"HTTP/1.0 200 OK\r\n\r\n")?;
//! let mut reply = String::new();
//! client.read_to_string(&mut reply)?;
//! assert_eq!(reply, "HTTP/1.0 200 OK\r\n\r\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use handoff_broker as broker;
pub use handoff_forwarder as forwarder;
pub use handoff_listen as listen;
pub use handoff_proto as proto;
pub use handoff_receiver as receiver;

pub use handoff_forwarder::{ForwardError, Forwarder, MioForwarder, Outgoing, Pushed};
pub use handoff_proto::{Endpoint, Family, Header, Mode, Protocol, SocketType, UnixEndpoint};
pub use handoff_receiver::{MioReceiver, ReceiveError, Receiver, Session};

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
