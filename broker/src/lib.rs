//! `handoffd`, the broker that hands sessions to worker pools without losing any,
//! and the worker side of it.
//!
//! handoffd owns the listening sockets (bound itself or adopted from systemd),
//! accepts TCP connections and UDP datagrams, optionally pre-reads the first bytes,
//! and hands each session to a worker of the right pool over that pool's UNIX
//! socket. It keeps its copy of every session until the worker acknowledges it
//! ([`protocol`]); if a worker goes away first, the session goes to another.
//!
//! Under load, the sessions of one turn of handoffd's event loop go to each worker
//! in one `sendmsg` (up to 253), and the worker acknowledges every session one read
//! brought in one message: the cost of a wakeup is shared by all of them.
//!
//! SIGUSR2 replaces a running handoffd with a new one without losing a connection:
//! listening sockets, workers and held sessions move over (see [`upgrade`]).
//!
//! A worker is a few lines with [`Worker`]:
//!
//! ```no_run
//! use std::io::Write;
//! let mut worker = handoff_broker::Worker::connect("/tmp/handoff-http.sock", 64)?;
//! while let Some(session) = worker.next_session()? {
//!     let request = session.data().clone(); // what handoffd pre-read
//!     let mut stream = session.into_tcp_stream()?;
//!     stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")?;
//! #   drop(request);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod broker;
pub mod config;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod upgrade;
mod worker;

pub use broker::Broker;

/// Writes one line to stderr in one `write(2)`: a handoffd and the successor it
/// started share stderr, and a line written in pieces (as `eprintln!` may) would
/// interleave with the other's.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let line = format!("{line}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}
pub use config::Config;
pub use worker::{MioWorker, Worker};
