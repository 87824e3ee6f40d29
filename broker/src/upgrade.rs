//! Hot restart: handoffd hands its sockets, its workers and the sessions it holds to
//! a successor it starts, and no connection is lost.
//!
//! On SIGUSR2 handoffd starts its successor: the program at the path it was started
//! from (so a new binary installed there is what runs) with the same arguments,
//! given one end of a socket pair across exec (`HANDOFFD_UPGRADE`, as
//! [`handoff_listen::inherit()`] reads it). Everything moves over that pair in the
//! session wire format: each socket is a session's fd, and the first line of its
//! data says what it is.
//!
//! ```text
//! predecessor → successor   listener NAME | pool NAME | admin      (its sockets)
//!                           end PID                                (no more sockets)
//! successor → predecessor   R                                      (ready: serving)
//! predecessor → successor   worker POOL PID CREDITS N\n + unread control bytes
//!                           held\n + data        × N, that worker's unacknowledged
//!                                                sessions, their own headers
//!                           queued POOL\n + data (sessions no worker had yet)
//!                           end of stream        (the predecessor exits 0)
//! ```
//!
//! Until the successor says it is ready, the predecessor serves as before; a
//! successor that exits first, or takes longer than `upgrade_timeout_ms`, is killed
//! and the predecessor goes on. Once it is ready the predecessor stops accepting —
//! connections waiting in a listening socket's queue are the successor's to accept,
//! the socket being the same one — delivers what it holds to its workers, waits for
//! their acknowledgements up to `drain_timeout_ms`, and hands the workers over
//! with whatever is still unacknowledged: the workers do not notice, and every
//! session is held by one handoffd or the other until a worker has it. Counters
//! start again from zero in the successor.
//!
//! SIGTERM before the successor is ready kills it and drains as usual; after, the
//! hand-over goes on. A successor takes no SIGUSR2 of its own until its predecessor
//! has handed everything over. A successor that dies after saying it is ready is a
//! crash like any other: what the predecessor had not handed over yet is lost.

use std::collections::HashMap;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use handoff_forwarder::{ForwardError, Forwarder, Outgoing};
use handoff_proto::{Header, Protocol, SocketType, UnixEndpoint};
use handoff_receiver::{ReceiveError, Receiver};

/// The variable that passes the successor its end of the pair (`FD:upgrade`).
pub const VAR: &str = "HANDOFFD_UPGRADE";

/// The name of the passed fd in [`VAR`].
pub const NAME: &str = "upgrade";

/// How long the successor waits for each of its predecessor's sockets.
const SOCKETS_TIMEOUT: Duration = Duration::from_secs(10);

/// What one session on the pair carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A listening socket of the listener of this name.
    Listener(String),
    /// The listening socket of the pool of this name.
    Pool(String),
    /// The admin endpoint's listening socket.
    Admin,
    /// No more sockets; the predecessor's pid.
    End(u32),
    /// A worker's connection: its pool, pid, credits, how many held sessions follow,
    /// and control bytes read from it that do not make a whole message yet.
    Worker {
        /// Its pool's name.
        pool: String,
        /// Its pid.
        pid: u32,
        /// Its credits.
        credits: u32,
        /// How many [`Item::Held`] follow.
        held: u32,
        /// The start of its next control message.
        inbox: Vec<u8>,
    },
    /// A session sent to the worker before it and not acknowledged; the data after
    /// the first line is the session's.
    Held,
    /// A session no worker had yet, for the pool of this name.
    Queued(String),
}

impl Item {
    /// The session data that says this, followed by `payload`.
    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        let line = match self {
            Item::Listener(name) => format!("listener {name}\n"),
            Item::Pool(name) => format!("pool {name}\n"),
            Item::Admin => "admin\n".to_owned(),
            Item::End(pid) => format!("end {pid}\n"),
            Item::Worker {
                pool,
                pid,
                credits,
                held,
                ..
            } => format!("worker {pool} {pid} {credits} {held}\n"),
            Item::Held => "held\n".to_owned(),
            Item::Queued(pool) => format!("queued {pool}\n"),
        };
        let mut out = line.into_bytes();
        if let Item::Worker { inbox, .. } = self {
            out.extend_from_slice(inbox);
        }
        out.extend_from_slice(payload);
        out
    }

    /// What a session's data says, and the payload after it (the data of a held or
    /// queued session).
    ///
    /// ```
    /// use handoff_broker::upgrade::Item;
    /// let data = Item::Queued("http".into()).encode(b"GET / HTTP/1.1\r\n");
    /// let (item, rest) = Item::decode(&data).unwrap();
    /// assert_eq!(item, Item::Queued("http".into()));
    /// assert_eq!(rest, b"GET / HTTP/1.1\r\n");
    /// ```
    ///
    /// # Errors
    /// A description of what is wrong with the first line.
    pub fn decode(data: &[u8]) -> Result<(Item, &[u8]), String> {
        let end = data
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("no line ending the item")?;
        let line = std::str::from_utf8(&data[..end]).map_err(|_| "an item line not in UTF-8")?;
        let rest = &data[end + 1..];
        let mut words = line.split(' ');
        let kind = words.next().unwrap_or_default();
        let mut next = |what: &str| {
            words
                .next()
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("{kind:?} without its {what}"))
        };
        let number = |w: String, what: &str| {
            w.parse::<u32>()
                .map_err(|_| format!("{kind:?}: {what} {w:?} is not a number"))
        };
        let item = match kind {
            "listener" => Item::Listener(next("name")?),
            "pool" => Item::Pool(next("name")?),
            "admin" => Item::Admin,
            "end" => Item::End(number(next("pid")?, "pid")?),
            "worker" => {
                let pool = next("pool")?;
                let pid = number(next("pid")?, "pid")?;
                let credits = number(next("credits")?, "credits")?;
                let held = number(next("count")?, "count")?;
                return Ok((
                    Item::Worker {
                        pool,
                        pid,
                        credits,
                        held,
                        inbox: rest.to_vec(),
                    },
                    &[],
                ));
            }
            "held" => Item::Held,
            "queued" => Item::Queued(next("pool")?),
            other => return Err(format!("unknown item {other:?}")),
        };
        Ok((item, rest))
    }
}

/// A header for a socket that is not a client's session (the data says what it is).
fn socket_header() -> Header {
    let unnamed = || UnixEndpoint::unnamed().into();
    Header::new(SocketType::STREAM, Protocol::DEFAULT, unnamed(), unnamed())
        .expect("two unnamed UNIX endpoints make a valid header")
}

/// Sends one socket, saying what it is.
///
/// # Errors
/// What the forwarder reports.
pub fn send_socket(
    fwd: &mut Forwarder,
    fd: BorrowedFd<'_>,
    item: &Item,
) -> Result<(), ForwardError> {
    fwd.push(&Outgoing::new(fd, socket_header(), &item.encode(&[])))
}

/// Sends a held or queued session: its own fd and header, the item before its data.
///
/// # Errors
/// What the forwarder reports.
pub fn send_session(
    fwd: &mut Forwarder,
    fd: BorrowedFd<'_>,
    header: &Header,
    item: &Item,
    data: &[u8],
) -> Result<(), ForwardError> {
    fwd.push(&Outgoing::new(fd, header.clone(), &item.encode(data)))
}

/// What a successor was handed before it starts serving.
#[derive(Debug)]
pub struct Handed {
    /// Listening sockets by listener name.
    pub listeners: HashMap<String, OwnedFd>,
    /// Pool sockets by pool name.
    pub pools: HashMap<String, OwnedFd>,
    /// The admin endpoint's socket.
    pub admin: Option<OwnedFd>,
    /// The pair: `R` goes back on it; workers and sessions come on it.
    pub channel: UnixStream,
    /// The predecessor's pid.
    pub predecessor: u32,
}

/// In a successor, takes the predecessor's sockets; `Ok(None)` in a handoffd not
/// started by one. Call it early, before other threads start (it changes the
/// environment).
///
/// # Errors
/// A description of what went wrong: the variable, the pair, or an item.
pub fn take_over() -> Result<Option<Handed>, String> {
    let adopted = handoff_listen::inherit(VAR).map_err(|e| format!("{VAR}: {e}"))?;
    let Some(found) = adopted.into_iter().find(|a| a.name() == NAME) else {
        return Ok(None);
    };
    let channel = found
        .into_unix_stream()
        .map_err(|a| format!("{VAR}: {a:?} is not a UNIX stream socket"))?;
    let read_end = channel.try_clone().map_err(|e| e.to_string())?;
    let mut receiver = Receiver::new(read_end).map_err(|e| e.to_string())?;
    receiver.set_verify(false);
    receiver
        .set_read_timeout(Some(SOCKETS_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut handed = Handed {
        listeners: HashMap::new(),
        pools: HashMap::new(),
        admin: None,
        channel,
        predecessor: 0,
    };
    loop {
        let session = match receiver.pop() {
            Ok(Some(s)) => s,
            Ok(None) => return Err("the predecessor closed the pair before its last socket".into()),
            Err(e) => return Err(format!("receiving the predecessor's sockets: {e}")),
        };
        let (item, _) = Item::decode(session.data())?;
        let (fd, _, _) = session.into_parts();
        match item {
            Item::Listener(name) => drop(handed.listeners.insert(name, fd)),
            Item::Pool(name) => drop(handed.pools.insert(name, fd)),
            Item::Admin => handed.admin = Some(fd),
            Item::End(pid) => {
                handed.predecessor = pid;
                return Ok(Some(handed));
            }
            other => return Err(format!("{other:?} among the predecessor's sockets")),
        }
    }
}

/// The successor's side of the pair once it serves: the next worker or session —
/// what it is, its fd, header and data (the session's own, for a held or queued
/// one) — or `None` at the end of the stream.
pub(crate) type HandedItem = (Item, OwnedFd, Header, Vec<u8>);

pub(crate) fn next_handed(
    receiver: &mut handoff_receiver::MioReceiver,
) -> Result<Option<HandedItem>, ReceiveError> {
    let Some(session) = receiver.pop()? else {
        return Ok(None);
    };
    let (fd, header, data) = session.into_parts();
    match Item::decode(&data) {
        Ok((item, rest)) => {
            let rest = rest.to_vec();
            Ok(Some((item, fd, header, rest)))
        }
        Err(e) => Err(ReceiveError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            e,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_comes_back_with_its_payload() {
        let items = [
            Item::Listener("web".into()),
            Item::Pool("http".into()),
            Item::Admin,
            Item::End(42),
            Item::Held,
            Item::Queued("dns".into()),
        ];
        for item in items {
            let data = item.encode(b"\x00payload\n");
            assert_eq!(Item::decode(&data).unwrap(), (item, &b"\x00payload\n"[..]));
        }
        // A worker's unread control bytes are its payload.
        let worker = Item::Worker {
            pool: "http".into(),
            pid: 7,
            credits: 64,
            held: 3,
            inbox: b"A\x00".to_vec(),
        };
        assert_eq!(
            Item::decode(&worker.encode(&[])).unwrap(),
            (worker, &[][..])
        );
    }

    #[test]
    fn malformed_items_say_what_is_wrong() {
        for (data, says) in [
            (&b"listener web"[..], "no line"),
            (b"listener\n", "without its name"),
            (b"end x\n", "is not a number"),
            (b"worker http 1 2\n", "without its count"),
            (b"socket web\n", "unknown item"),
            (b"\xff\n", "UTF-8"),
        ] {
            let e = Item::decode(data).unwrap_err();
            assert!(e.contains(says), "{data:?}: {e}");
        }
    }
}
