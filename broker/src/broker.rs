//! The event loop: listeners in, worker pools out, nothing lost in between.
//!
//! One thread, one `mio::Poll`. Each accepted connection (after its pre-read) or
//! received datagram becomes a held session, which waits in its pool's bounded
//! queue until a worker has credit, is sent, and stays held until the worker
//! acknowledges it. A worker that goes away has its unacknowledged sessions put back
//! at the front of the queue, for another worker.
//!
//! Acks are read as soon as they arrive, on purpose: handoffd's copy of a
//! connection keeps it open, so a client sees the end of the stream only once the
//! worker has closed its copy *and* handoffd has let go of its own. (Collecting acks
//! on a timer saved a wakeup per connection and cost every client that timer's
//! delay: tried, measured, reverted.)

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::rc::Rc;
use std::time::{Duration, Instant};

use handoff_forwarder::{ForwardError, Forwarder, MioForwarder, Outgoing};
use handoff_listen::{Activation, Names, UnixOptions};
use handoff_proto::{Endpoint, Header, Protocol, SocketType, UnixEndpoint, MAX_BATCH};
use handoff_receiver::MioReceiver;
use mio::net::{TcpListener, TcpStream, UdpSocket, UnixListener};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
use signal_hook_mio::v1_0::Signals;

use crate::config::{Config, Dispatch, ListenKind, Preread};
use crate::metrics::Shared;
use crate::protocol::Control;
use crate::upgrade::{self, Handed, Item};

/// A session the broker holds until a worker acknowledges it.
#[derive(Debug)]
struct Held {
    /// Shared for UDP: every datagram's session is the one socket.
    fd: Rc<OwnedFd>,
    header: Header,
    data: Vec<u8>,
    pool: usize,
}

enum Source {
    /// A TCP listener, and its address unless it is a wildcard: then an accepted
    /// connection's local address is known without a `getsockname`.
    Tcp(TcpListener, Option<SocketAddr>),
    /// A UNIX stream listener and its address (every connection's local address).
    Udp {
        socket: UdpSocket,
        fd: Rc<OwnedFd>,
        local: SocketAddr,
    },
    Unix(UnixListener, UnixEndpoint),
}

struct Listener {
    /// Shared with its connections still pre-reading, as `preread` is.
    name: Rc<str>,
    pool: usize,
    preread: Rc<Preread>,
    preread_timeout: Duration,
    source: Source,
    /// Set while accepting is paused (out of fds): when to try again.
    paused_until: Option<Instant>,
    /// Whether the last accept ran out of fds (so that it is logged once).
    starved: bool,
}

struct Worker {
    fwd: MioForwarder,
    pid: u32,
    credits: usize,
    outstanding: VecDeque<Held>,
    inbox: Vec<u8>,
    /// Whether the loop watches the socket for room to write: only while the
    /// forwarder holds a queue. Watched always, every read the worker makes would
    /// wake handoffd for nothing.
    watching_writable: bool,
    /// Its socket was full and no fd was left to queue a copy with: it gets nothing
    /// more until the socket has room again.
    stalled: bool,
}

impl Worker {
    /// A worker's connection, with what is known of it.
    fn new(stream: mio::net::UnixStream, pid: u32, credits: usize, inbox: Vec<u8>) -> Worker {
        Worker {
            fwd: MioForwarder::new(stream, MAX_CREDITS),
            pid,
            credits,
            outstanding: VecDeque::new(),
            inbox,
            watching_writable: false,
            stalled: false,
        }
    }

    /// Watches for room to write exactly while there is a queue to flush.
    fn watch(&mut self, registry: &mio::Registry, token: Token) -> io::Result<()> {
        let want = self.fwd.queued() > 0 || self.stalled;
        if want != self.watching_writable {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.fwd, token, interest)?;
            self.watching_writable = want;
        }
        Ok(())
    }
}

struct Pool {
    name: String,
    listener: UnixListener,
    socket_path: std::path::PathBuf,
    allow_uids: Vec<u32>,
    dispatch: Dispatch,
    queue_limit: usize,
    queue: VecDeque<Held>,
    workers: Vec<Token>,
    next: usize,
    /// Whether the queue or the workers changed since the last dispatch: sessions
    /// queued during one turn of the event loop go out together at its end, several
    /// to a `sendmsg`.
    dirty: bool,
    /// Out of fds with the reserve spent, a worker waits in the socket's queue and
    /// no new edge will announce it: when to try accepting again.
    retry_at: Option<Instant>,
    /// Whether that was said (once per episode).
    starved: bool,
}

/// A connection being pre-read.
struct Prereading {
    stream: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    listener: Rc<str>,
    pool: usize,
    preread: Rc<Preread>,
    buf: Vec<u8>,
    deadline: Instant,
}

const SIGNALS: Token = Token(usize::MAX - 1);
/// The pair to a successor being started.
const SUCCESSOR: Token = Token(usize::MAX - 2);
/// The pair from the predecessor, in a successor.
const PREDECESSOR: Token = Token(usize::MAX - 3);
/// Tokens below this are listeners, then pools; connections take the ones above.
const FIRST_DYNAMIC: usize = 1 << 20;
const POOL_BASE: usize = 1 << 19;
/// The most sessions a worker may hold unacknowledged, whatever it asks for.
const MAX_CREDITS: usize = 4096;
/// How long accepting pauses when the process is out of fds.
const EMFILE_PAUSE: Duration = Duration::from_millis(100);

/// How to start a successor: the program and arguments handoffd was started with.
#[derive(Debug, Clone)]
pub struct SuccessorCommand {
    /// The program (a new binary installed at this path is what starts).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// A successor started and not yet ready.
struct Upgrade {
    child: Child,
    channel: mio::net::UnixStream,
    deadline: Instant,
}

/// A successor that said it is ready: it gets the workers once the drain is over.
struct HandOver {
    pid: u32,
    fwd: Forwarder,
    /// Handed over so far.
    workers: usize,
    sessions: usize,
}

/// The broker: build it with [`Broker::new`], run it with [`Broker::run`].
pub struct Broker {
    poll: Poll,
    listeners: Vec<Listener>,
    pools: Vec<Pool>,
    workers: HashMap<Token, (usize, Worker)>,
    prereading: HashMap<Token, Prereading>,
    /// When each pre-read times out, soonest first. A connection that finished
    /// early leaves its entry behind, skipped when it comes up (tokens are never
    /// reused): each turn costs the expired entries, not every connection.
    preread_deadlines: BinaryHeap<Reverse<(Instant, Token)>>,
    next_token: usize,
    metrics: Shared,
    signals: Signals,
    drain_timeout: Duration,
    /// An fd kept open to be given up when the process runs out, so that a worker
    /// (which frees fds) can still connect.
    reserve: Option<std::fs::File>,
    /// Set while draining: when the drain gives up.
    drain_deadline: Option<Instant>,
    /// How to start a successor on SIGUSR2, if this handoffd may.
    successor: Option<SuccessorCommand>,
    /// The admin endpoint's socket, to hand to a successor.
    admin: Option<OwnedFd>,
    upgrade_timeout: Duration,
    /// A successor started and not ready yet.
    upgrade: Option<Upgrade>,
    /// A ready successor, waiting for the drain to end.
    hand_over: Option<HandOver>,
    /// In a successor: the pair it was started with (ready is said on it), and while
    /// the predecessor still sends workers and sessions, its receiving side and pid.
    predecessor: Option<(MioReceiver, u32)>,
    to_predecessor: Option<std::os::unix::net::UnixStream>,
    /// In a successor: the worker the next held sessions belong to, and how many
    /// more are to come.
    receiving_for: Option<(Token, u32)>,
}

fn log(msg: std::fmt::Arguments<'_>) {
    crate::say(format_args!("handoffd: {msg}"));
}

macro_rules! info {
    ($($t:tt)*) => { log(format_args!($($t)*)) };
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field(
                "listeners",
                &self.listeners.iter().map(|l| &l.name).collect::<Vec<_>>(),
            )
            .field(
                "pools",
                &self.pools.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .field("workers", &self.workers.len())
            .field("prereading", &self.prereading.len())
            .finish()
    }
}

impl Broker {
    /// Binds (or adopts from systemd) every listener and pool socket of `config`.
    ///
    /// # Errors
    /// The first listener or pool socket that cannot be set up, with its name.
    pub fn new(config: &Config, metrics: Shared) -> io::Result<Broker> {
        Broker::with_handed(config, metrics, None)
    }

    /// As [`Broker::new`], in a successor: the listeners and pool sockets its
    /// predecessor handed over are used where the configuration still names them
    /// (with the same address), the others are bound; and the workers the
    /// predecessor hands over once it has drained are taken in while serving.
    ///
    /// # Errors
    /// As [`Broker::new`].
    pub fn with_handed(
        config: &Config,
        metrics: Shared,
        mut handed: Option<Handed>,
    ) -> io::Result<Broker> {
        let poll = Poll::new()?;
        let mut activation = Activation::from_env(Names::Lenient).map_err(io::Error::other)?;
        let mut pools = Vec::new();
        for (i, p) in config.pools.iter().enumerate() {
            let opts = UnixOptions {
                mode: p.mode,
                ..Default::default()
            };
            let given = handed
                .as_mut()
                .and_then(|h| h.pools.remove(&p.name))
                .map(std::os::unix::net::UnixListener::from)
                .filter(|l| {
                    let same = l
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_pathname().map(|p| p.to_owned()))
                        == Some(p.socket.clone());
                    if !same {
                        info!("pool {:?}: its socket moved; binding the new path", p.name);
                    }
                    same
                });
            let std = match given {
                Some(l) => l,
                None => handoff_listen::unix(&p.socket, &opts)
                    .map_err(|e| io::Error::other(format!("pool {:?}: {e}", p.name)))?,
            };
            std.set_nonblocking(true)?;
            let mut listener = UnixListener::from_std(std);
            poll.registry()
                .register(&mut listener, Token(POOL_BASE + i), Interest::READABLE)?;
            metrics.lock().workers.insert(p.name.clone(), 0);
            metrics.lock().queued.insert(p.name.clone(), 0);
            pools.push(Pool {
                name: p.name.clone(),
                listener,
                socket_path: p.socket.clone(),
                allow_uids: p.allow_uids.clone(),
                dispatch: p.dispatch,
                queue_limit: p.queue,
                queue: VecDeque::new(),
                workers: Vec::new(),
                next: 0,
                dirty: false,
                retry_at: None,
                starved: false,
            });
        }
        let mut listeners = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let named =
                |e: &dyn std::fmt::Display| io::Error::other(format!("listener {:?}: {e}", l.name));
            let given = handed
                .as_mut()
                .and_then(|h| h.listeners.remove(&l.name))
                .and_then(|fd| match handed_source(&l.kind, fd) {
                    Ok(source) => Some(source),
                    Err(e) => {
                        info!(
                            "listener {:?}: not the socket handed over ({e}); binding anew",
                            l.name
                        );
                        None
                    }
                });
            let mut source = match (given, &l.kind) {
                (Some(source), _) => source,
                (None, kind) => match kind {
                    ListenKind::Tcp(addr) => {
                        // Where the client speaks first, accept only once it has.
                        let defer = (l.preread != Preread::None).then_some(l.preread_timeout);
                        let opts = handoff_listen::Options {
                            nonblocking: true,
                            defer_accept: defer,
                            ..Default::default()
                        };
                        tcp_source(handoff_listen::tcp(*addr, &opts).map_err(|e| named(&e))?)
                    }
                    ListenKind::Udp(addr) => udp_source(
                        handoff_listen::udp(*addr, &Default::default()).map_err(|e| named(&e))?,
                    )?,
                    ListenKind::Unix(path) => {
                        let std = handoff_listen::unix(
                            path,
                            &UnixOptions {
                                mode: l.unix_mode,
                                ..Default::default()
                            },
                        )
                        .map_err(|e| named(&e))?;
                        unix_source(std)?
                    }
                    ListenKind::Systemd(name) => {
                        let adopted = activation.take(name).ok_or_else(|| {
                            named(&format!("systemd passed no socket named {name:?}"))
                        })?;
                        match adopted.into_tcp_listener() {
                            Ok(t) => {
                                t.set_nonblocking(true)?;
                                tcp_source(t)
                            }
                            Err(a) => match a.into_udp_socket() {
                                Ok(u) => udp_source(u)?,
                                Err(a) => {
                                    let u = a
                                        .into_unix_listener()
                                        .map_err(|a| named(&format!("cannot serve {a:?}")))?;
                                    unix_source(u)?
                                }
                            },
                        }
                    }
                },
            };
            register_source(&poll, &mut source, Token(i))?;
            listeners.push(Listener {
                name: Rc::from(l.name.as_str()),
                pool: l.pool,
                preread: Rc::new(l.preread.clone()),
                preread_timeout: l.preread_timeout,
                source,
                paused_until: None,
                starved: false,
            });
        }
        let unclaimed = activation.close_unclaimed();
        if unclaimed > 0 {
            info!("closed {unclaimed} socket(s) systemd passed that no listener names");
        }
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGUSR2])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let (mut predecessor, mut to_predecessor) = (None, None);
        if let Some(h) = handed {
            for name in h.listeners.keys() {
                info!("listener {name:?} is no longer configured: its socket is closed");
            }
            for name in h.pools.keys() {
                info!("pool {name:?} is no longer configured: its socket is closed");
            }
            // Its workers and sessions come once it has drained.
            let mut receiver = MioReceiver::new(h.channel.try_clone()?)?;
            receiver.set_verify(false);
            poll.registry()
                .register(&mut receiver, PREDECESSOR, Interest::READABLE)?;
            predecessor = Some((receiver, h.predecessor));
            to_predecessor = Some(h.channel);
        }
        Ok(Broker {
            poll,
            listeners,
            pools,
            workers: HashMap::new(),
            prereading: HashMap::new(),
            preread_deadlines: BinaryHeap::new(),
            next_token: FIRST_DYNAMIC,
            metrics,
            signals,
            reserve: std::fs::File::open("/dev/null").ok(),
            drain_timeout: config.drain_timeout,
            drain_deadline: None,
            successor: None,
            admin: None,
            upgrade_timeout: config.upgrade_timeout,
            upgrade: None,
            hand_over: None,
            predecessor,
            to_predecessor,
            receiving_for: None,
        })
    }

    /// Lets SIGUSR2 start a successor with `command`, handing it `admin` (the admin
    /// endpoint's socket) along with the listeners and pool sockets.
    pub fn allow_upgrade(&mut self, command: SuccessorCommand, admin: Option<OwnedFd>) {
        self.successor = Some(command);
        self.admin = admin;
    }

    /// In a successor, tells the predecessor that this handoffd serves now: it stops
    /// accepting, drains and hands over its workers. Nothing to do in a handoffd
    /// not started by a predecessor.
    ///
    /// # Errors
    /// What the write reports (the predecessor is gone: it keeps nothing to hand).
    pub fn ready(&mut self) -> io::Result<()> {
        match self.to_predecessor.take() {
            Some(mut pair) => pair.write_all(b"R"),
            None => Ok(()),
        }
    }

    /// The addresses the listeners are bound to, by name (for logs and tests).
    pub fn local_addrs(&self) -> Vec<(String, String)> {
        self.listeners
            .iter()
            .map(|l| {
                let addr = match &l.source {
                    Source::Tcp(t, _) => t.local_addr().map(|a| format!("tcp:{a}")),
                    Source::Udp { local, .. } => Ok(format!("udp:{local}")),
                    Source::Unix(u, _) => u
                        .local_addr()
                        .map(|a| format!("unix:{:?}", a.as_pathname())),
                };
                (l.name.to_string(), addr.unwrap_or_default())
            })
            .collect()
    }

    /// Serves until SIGTERM or SIGINT, then drains: stops accepting, delivers what
    /// is queued, waits for acknowledgements up to the drain timeout, and returns.
    /// SIGUSR2 starts a successor (see [`crate::upgrade`]); once it is ready this
    /// handoffd drains the same way, hands its workers over and returns.
    ///
    /// # Errors
    /// A failure of `poll` itself.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Some(deadline) = self.drain_deadline {
                let held: usize = self.pools.iter().map(|p| p.queue.len()).sum::<usize>()
                    + self
                        .workers
                        .values()
                        .map(|(_, w)| w.outstanding.len())
                        .sum::<usize>()
                    // Accepted connections still pre-reading become sessions too.
                    + self.prereading.len();
                if held == 0 {
                    info!("drained: every session delivered and acknowledged");
                    break;
                }
                if Instant::now() >= deadline {
                    if self.hand_over.is_some() {
                        info!(
                            "drain timeout: {held} session(s) not acknowledged go to the successor"
                        );
                    } else {
                        info!("drain timeout: {held} session(s) not acknowledged; exiting");
                    }
                    break;
                }
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in &events {
                match event.token() {
                    SIGNALS => self.on_signals(),
                    SUCCESSOR => self.on_successor(),
                    PREDECESSOR => self.on_predecessor(),
                    Token(t) if t < POOL_BASE => self.on_listener(t),
                    Token(t) if t < FIRST_DYNAMIC => self.on_pool(t - POOL_BASE),
                    token if self.workers.contains_key(&token) => self.on_worker(
                        token,
                        event.is_writable(),
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                    ),
                    token => self.on_preread(token),
                }
            }
            self.expire_prereads();
            self.resume_listeners();
            self.expire_upgrade();
            // Last: everything this turn queued goes out before the next poll.
            self.dispatch_all();
            if let Err(e) = self.hand_over_idle() {
                info!("handing over to the successor failed: {e}");
                return Err(e);
            }
            if self.reserve.is_none() {
                self.reserve = std::fs::File::open("/dev/null").ok();
            }
        }
        if self.hand_over.is_some() {
            // The pool sockets are the successor's now: they stay.
            return self.hand_over_rest();
        }
        if let Some(u) = self.upgrade.take() {
            abandon(u, "is not wanted", "handoffd is stopping");
        }
        for pool in &self.pools {
            let _ = std::fs::remove_file(&pool.socket_path);
        }
        Ok(())
    }

    fn on_signals(&mut self) {
        let signals: Vec<i32> = self.signals.pending().collect();
        for signal in signals {
            if signal == SIGUSR2 {
                self.start_upgrade();
            } else if self.drain_deadline.is_none() {
                if let Some(mut u) = self.upgrade.take() {
                    let _ = self.poll.registry().deregister(&mut u.channel);
                    let _ = u.child.kill();
                    abandon(u, "is not wanted", "handoffd is stopping");
                }
                info!("signal: no longer accepting; delivering what is queued");
                self.stop_accepting();
                self.drain_deadline = Some(Instant::now() + self.drain_timeout);
            }
        }
    }

    /// SIGUSR2: starts a successor and hands it the listening sockets; this
    /// handoffd serves on until the successor says it is ready.
    fn start_upgrade(&mut self) {
        if self.drain_deadline.is_some() || self.upgrade.is_some() {
            info!("SIGUSR2: already stopping or upgrading; ignored");
            return;
        }
        if let Some((_, pid)) = &self.predecessor {
            info!("SIGUSR2: still taking over from pid {pid}; ignored, try again once it is done");
            return;
        }
        let Some(command) = self.successor.clone() else {
            info!("SIGUSR2: this handoffd was not given a way to start a successor; ignored");
            return;
        };
        match self.spawn_successor(&command) {
            Ok(u) => {
                info!(
                    "SIGUSR2: started successor pid {}; serving until it is ready",
                    u.child.id()
                );
                self.upgrade = Some(u);
            }
            Err(e) => info!("SIGUSR2: cannot start a successor: {e}; still serving"),
        }
    }

    fn spawn_successor(&mut self, command: &SuccessorCommand) -> io::Result<Upgrade> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut cmd = Command::new(&command.program);
        cmd.args(&command.args);
        handoff_listen::pass_fds(&mut cmd, upgrade::VAR, &[(theirs.as_fd(), upgrade::NAME)]);
        let mut child = cmd.spawn()?;
        drop(theirs);
        let sent = self.send_sockets(&ours);
        let registered = sent.and_then(|()| {
            ours.set_nonblocking(true)?;
            let mut channel = mio::net::UnixStream::from_std(ours);
            self.poll
                .registry()
                .register(&mut channel, SUCCESSOR, Interest::READABLE)?;
            Ok(channel)
        });
        match registered {
            Ok(channel) => Ok(Upgrade {
                child,
                channel,
                deadline: Instant::now() + self.upgrade_timeout,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Every listening socket, pool socket and the admin socket, by name.
    fn send_sockets(&self, pair: &std::os::unix::net::UnixStream) -> io::Result<()> {
        let mut fwd = Forwarder::from_stream(pair.try_clone()?)?;
        let mut send = |fd: BorrowedFd<'_>, item: Item| {
            upgrade::send_socket(&mut fwd, fd, &item).map_err(io::Error::other)
        };
        for l in &self.listeners {
            send(source_fd(&l.source), Item::Listener(l.name.to_string()))?;
        }
        for p in &self.pools {
            send(p.listener.as_fd(), Item::Pool(p.name.clone()))?;
        }
        if let Some(admin) = &self.admin {
            send(admin.as_fd(), Item::Admin)?;
        }
        // Any fd will do for the last one: the pair's own.
        send(pair.as_fd(), Item::End(std::process::id()))
    }

    /// The successor said it is ready, or went away.
    fn on_successor(&mut self) {
        let Some(u) = &mut self.upgrade else { return };
        let mut buf = [0u8; 16];
        let outcome = loop {
            match u.channel.read(&mut buf) {
                Ok(0) => break Err("closed its end before it was ready"),
                Ok(n) if buf[..n].contains(&b'R') => break Ok(()),
                // Nothing else is said before ready.
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break Err("broke the pair before it was ready"),
            }
        };
        let Some(mut u) = self.upgrade.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut u.channel);
        if let Err(why) = outcome {
            return abandon(u, why, "still serving");
        }
        let pid = u.child.id();
        info!("successor pid {pid} is ready: no longer accepting; delivering what is queued, then handing it the workers");
        self.stop_accepting();
        for p in &mut self.pools {
            // New workers connect to the successor, on the same socket.
            let _ = self.poll.registry().deregister(&mut p.listener);
        }
        // From now on the pair only carries workers and sessions; blocking, since
        // the successor reads them as they come.
        let pair = std::os::unix::net::UnixStream::from(OwnedFd::from(u.channel));
        let fwd = pair
            .set_nonblocking(false)
            .and_then(|()| Forwarder::from_stream(pair));
        match fwd {
            Ok(fwd) => {
                self.hand_over = Some(HandOver {
                    pid,
                    fwd,
                    workers: 0,
                    sessions: 0,
                })
            }
            // Its workers stay here: it drains and exits as on SIGTERM.
            Err(e) => info!("the pair to successor pid {pid}: {e}; draining without handing over"),
        }
        self.drain_deadline = Some(Instant::now() + self.drain_timeout);
    }

    /// A successor that is not ready in time is killed; this handoffd goes on.
    fn expire_upgrade(&mut self) {
        if self
            .upgrade
            .as_ref()
            .is_some_and(|u| Instant::now() >= u.deadline)
        {
            if let Some(mut u) = self.upgrade.take() {
                let _ = self.poll.registry().deregister(&mut u.channel);
                let _ = u.child.kill();
                let timeout = self.upgrade_timeout;
                abandon(
                    u,
                    &format!("was not ready within {timeout:?}; killed it"),
                    "still serving",
                );
            }
        }
    }

    /// While draining for a successor, each turn: a worker with nothing
    /// outstanding (its pool's queue empty) goes to the successor at once, so that
    /// the successor does not wait for the slowest one; and sessions queued for a
    /// pool with no worker left go too.
    fn hand_over_idle(&mut self) -> io::Result<()> {
        if self.hand_over.is_none() {
            return Ok(());
        }
        let idle: Vec<Token> = self
            .pools
            .iter()
            .filter(|p| p.queue.is_empty())
            .flat_map(|p| p.workers.iter().copied())
            .filter(|t| {
                self.workers
                    .get(t)
                    .is_some_and(|(_, w)| w.outstanding.is_empty() && w.fwd.queued() == 0)
            })
            .collect();
        for token in idle {
            self.hand_over_worker(token)?;
        }
        for pool in 0..self.pools.len() {
            if self.pools[pool].workers.is_empty() {
                self.hand_over_queue(pool)?;
            }
        }
        Ok(())
    }

    /// The drain is over: each worker goes to the successor with the sessions it
    /// has not acknowledged, then every session still queued; then this handoffd
    /// is done.
    fn hand_over_rest(&mut self) -> io::Result<()> {
        // Connections still pre-reading: what arrived so far is their data.
        let reading: Vec<Token> = self.prereading.keys().copied().collect();
        for token in reading {
            self.finish_preread(token);
        }
        let tokens: Vec<Token> = self.pools.iter().flat_map(|p| p.workers.clone()).collect();
        for token in tokens {
            self.hand_over_worker(token)?;
        }
        for pool in 0..self.pools.len() {
            self.hand_over_queue(pool)?;
        }
        if let Some(h) = &self.hand_over {
            info!(
                "handed {} worker(s) and {} session(s) to successor pid {}; exiting",
                h.workers, h.sessions, h.pid
            );
        }
        Ok(())
    }

    /// Sends a worker's connection to the successor, followed by the sessions it has
    /// not acknowledged.
    fn hand_over_worker(&mut self, token: Token) -> io::Result<()> {
        // What it said since the last read: acks free sessions, and a worker that
        // left has its sessions put back in the queue.
        self.on_worker(token, false, true);
        let Some((pool, mut worker)) = self.workers.remove(&token) else {
            return Ok(());
        };
        let _ = self.poll.registry().deregister(&mut worker.fwd);
        let name = self.pools[pool].name.clone();
        self.pools[pool].workers.retain(|t| *t != token);
        {
            let mut m = self.metrics.lock();
            m.outstanding.remove(&(name.clone(), worker.pid));
            *m.workers.entry(name.clone()).or_default() -= 1;
        }
        if worker.fwd.queued() > 0 {
            // Part of a session is written and the rest is not: the stream cannot
            // be continued by another process.
            info!("pool {name:?}: worker pid {} has a session half-written; closing it, its sessions go to the successor", worker.pid);
            for held in worker.outstanding.into_iter().rev() {
                self.pools[pool].queue.push_front(held);
            }
            return Ok(());
        }
        let Some(h) = &mut self.hand_over else {
            return Ok(());
        };
        let item = Item::Worker {
            pool: name,
            pid: worker.pid,
            credits: worker.credits as u32,
            held: worker.outstanding.len() as u32,
            inbox: std::mem::take(&mut worker.inbox),
        };
        upgrade::send_socket(&mut h.fwd, worker.fwd.get_ref().as_fd(), &item)
            .map_err(io::Error::other)?;
        for held in &worker.outstanding {
            upgrade::send_session(
                &mut h.fwd,
                held.fd.as_fd(),
                &held.header,
                &Item::Held,
                &held.data,
            )
            .map_err(io::Error::other)?;
        }
        h.workers += 1;
        h.sessions += worker.outstanding.len();
        Ok(())
    }

    /// Sends the sessions queued for a pool to the successor.
    fn hand_over_queue(&mut self, pool: usize) -> io::Result<()> {
        let Some(h) = &mut self.hand_over else {
            return Ok(());
        };
        let p = &mut self.pools[pool];
        while let Some(held) = p.queue.pop_front() {
            let item = Item::Queued(p.name.clone());
            upgrade::send_session(&mut h.fwd, held.fd.as_fd(), &held.header, &item, &held.data)
                .map_err(io::Error::other)?;
            h.sessions += 1;
        }
        self.metrics.lock().queued.insert(p.name.clone(), 0);
        Ok(())
    }

    /// In a successor: the workers and sessions the predecessor hands over.
    fn on_predecessor(&mut self) {
        loop {
            let Some((receiver, pid)) = &mut self.predecessor else {
                return;
            };
            let pid = *pid;
            match upgrade::next_handed(receiver) {
                Ok(Some((item, fd, header, data))) => self.take_handed(item, fd, header, data),
                Ok(None) => {
                    info!("predecessor pid {pid} handed over everything");
                    self.close_predecessor();
                    return;
                }
                Err(e) if e.is_would_block() => return,
                Err(e) => {
                    info!("predecessor pid {pid}: {e}; taking nothing more from it");
                    self.close_predecessor();
                    return;
                }
            }
        }
    }

    fn close_predecessor(&mut self) {
        if let Some((mut receiver, _)) = self.predecessor.take() {
            let _ = self.poll.registry().deregister(&mut receiver);
        }
        if let Some((_, left)) = self.receiving_for.take() {
            if left > 0 {
                info!("{left} session(s) announced by the predecessor never came");
            }
        }
    }

    fn take_handed(&mut self, item: Item, fd: OwnedFd, header: Header, data: Vec<u8>) {
        match item {
            Item::Worker {
                pool,
                pid,
                credits,
                held,
                inbox,
            } => {
                let Some(p) = self.pools.iter().position(|x| x.name == pool) else {
                    info!("worker pid {pid} of pool {pool:?}, which is no longer configured: closing it");
                    self.receiving_for = None;
                    return;
                };
                let stream = std::os::unix::net::UnixStream::from(fd);
                if let Err(e) = stream.set_nonblocking(true) {
                    info!("pool {pool:?}: worker pid {pid}: {e}; closing it");
                    return;
                }
                let token = self.token();
                let credits = (credits as usize).clamp(1, MAX_CREDITS);
                let stream = mio::net::UnixStream::from_std(stream);
                let mut worker = Worker::new(stream, pid, credits, inbox);
                if let Err(e) =
                    self.poll
                        .registry()
                        .register(&mut worker.fwd, token, Interest::READABLE)
                {
                    info!("pool {pool:?}: cannot watch worker pid {pid}: {e}; closing it");
                    return;
                }
                info!("pool {pool:?}: worker pid {pid} handed over, with {held} session(s) it has not acknowledged");
                self.pools[p].workers.push(token);
                self.pools[p].dirty = true;
                self.workers.insert(token, (p, worker));
                self.metrics.add(|m| &mut m.workers, &pool, 1);
                self.receiving_for = Some((token, held));
            }
            Item::Held => {
                let worker = match &mut self.receiving_for {
                    Some((token, left)) if *left > 0 => {
                        *left -= 1;
                        self.workers.get_mut(token)
                    }
                    _ => None,
                };
                match worker {
                    Some((pool, w)) => w.outstanding.push_back(Held {
                        fd: Rc::new(fd),
                        header,
                        data,
                        pool: *pool,
                    }),
                    None => info!("a held session for no worker from the predecessor: closed"),
                }
            }
            Item::Queued(pool) => match self.pools.iter().position(|x| x.name == pool) {
                Some(p) => self.enqueue(Held {
                    fd: Rc::new(fd),
                    header,
                    data,
                    pool: p,
                }),
                None => info!(
                    "a session queued for pool {pool:?}, which is no longer configured: closed"
                ),
            },
            other => info!("the predecessor sent {other:?} after its sockets: ignored"),
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let drain = self.drain_deadline;
        let upgrade = self.upgrade.as_ref().map(|u| u.deadline);
        // Entries of connections no longer pre-reading would wake the loop for
        // nothing.
        while let Some(Reverse((_, token))) = self.preread_deadlines.peek() {
            if self.prereading.contains_key(token) {
                break;
            }
            self.preread_deadlines.pop();
        }
        let preread = self.preread_deadlines.peek().map(|Reverse((at, _))| *at);
        let pauses = self
            .listeners
            .iter()
            .filter_map(|l| l.paused_until)
            .chain(self.pools.iter().filter_map(|p| p.retry_at));
        pauses.chain(preread).chain(drain).chain(upgrade).min()
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    fn stop_accepting(&mut self) {
        for l in &mut self.listeners {
            let _ = deregister_source(&self.poll, &mut l.source);
            l.paused_until = None;
        }
        self.listeners.clear();
    }

    fn on_listener(&mut self, i: usize) {
        loop {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            // The last fd is kept for a worker, which frees fds; a client that
            // would take it waits in the queue like the others.
            let spent = self.reserve.is_none() && !matches!(l.source, Source::Udp { .. }) && {
                self.reserve = std::fs::File::open("/dev/null").ok();
                self.reserve.is_none()
            };
            let accepted = match &l.source {
                _ if spent => Err(io::Error::from_raw_os_error(libc::EMFILE)),
                // accept4 without SOCK_NONBLOCK: the worker gets a blocking socket
                // with no fcntl, and pre-reads use MSG_DONTWAIT.
                Source::Tcp(t, _) => socket2::SockRef::from(t)
                    .accept()
                    .map(|(s, peer)| (Incoming::Tcp(StdTcpStream::from(s)), peer.as_socket())),
                // As for TCP: a blocking socket for the worker, and the peer's address
                // from accept itself.
                Source::Unix(u, _) => socket2::SockRef::from(u).accept().map(|(s, peer)| {
                    let peer = peer
                        .as_unix()
                        .map_or(UnixEndpoint::unnamed(), |a| UnixEndpoint::from(&a));
                    (
                        Incoming::Unix(
                            std::os::unix::net::UnixStream::from(OwnedFd::from(s)),
                            peer,
                        ),
                        None,
                    )
                }),
                Source::Udp { .. } => return self.on_datagrams(i),
            };
            match accepted {
                Ok((conn, peer)) => {
                    if l.starved {
                        info!("listener {:?}: accepting again", l.name);
                        self.listeners[i].starved = false;
                    }
                    let l = &self.listeners[i];
                    self.metrics.add(|m| &mut m.accepted, &l.name, 1);
                    self.incoming(i, conn, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) =>
                {
                    // Out of fds: back off instead of spinning on a readable listener.
                    // Said once per episode, not every pause.
                    if !l.starved {
                        info!(
                            "listener {:?}: {e}; pausing accept for {EMFILE_PAUSE:?} at a time until fds free up",
                            l.name
                        );
                    }
                    let l = &mut self.listeners[i];
                    l.starved = true;
                    let _ = deregister_source(&self.poll, &mut l.source);
                    l.paused_until = Some(Instant::now() + EMFILE_PAUSE);
                    return;
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EINTR)) => {
                    continue
                }
                Err(e) => {
                    info!("listener {:?}: accept failed: {e}", l.name);
                    return;
                }
            }
        }
    }

    fn resume_listeners(&mut self) {
        let now = Instant::now();
        for i in 0..self.listeners.len() {
            let l = &mut self.listeners[i];
            if l.paused_until.is_some_and(|t| t <= now) {
                l.paused_until = None;
                match register_source(&self.poll, &mut l.source, Token(i)) {
                    // Connections queued up while paused: no edge will announce them.
                    Ok(()) => self.on_listener(i),
                    Err(e) => info!("listener {:?}: cannot resume: {e}", l.name),
                }
            }
        }
        for pool in 0..self.pools.len() {
            if self.pools[pool].retry_at.is_some_and(|t| t <= now) {
                self.pools[pool].retry_at = None;
                self.on_pool(pool);
            }
        }
    }

    /// Whether the pool's queue can take one more session. Sessions wait in the
    /// queue until the end of the loop's turn; a queue that looks full is
    /// dispatched first, so that only sessions no worker can take count.
    fn has_room(&mut self, pool: usize) -> bool {
        if self.pools[pool].queue.len() >= self.pools[pool].queue_limit {
            self.dispatch(pool);
        }
        let p = &self.pools[pool];
        p.queue.len() < p.queue_limit
    }

    fn refuse(&self, listener: usize) {
        self.metrics
            .add(|m| &mut m.refused, &self.listeners[listener].name, 1);
    }

    /// Counts a connection or datagram closed without a hand-off; says why unless
    /// the client is the reason.
    fn dropped(&self, listener: &str, why: Option<std::fmt::Arguments<'_>>) {
        if let Some(why) = why {
            info!("listener {listener:?}: closed without a hand-off: {why}");
        }
        self.metrics.add(|m| &mut m.dropped, listener, 1);
    }

    fn incoming(&mut self, listener: usize, conn: Incoming, peer: Option<SocketAddr>) {
        if !self.has_room(self.listeners[listener].pool) {
            // Overload policy: the queue is full; close the connection at once.
            self.refuse(listener);
            return;
        }
        let l = &self.listeners[listener];
        match conn {
            Incoming::Unix(s, peer) => {
                let Source::Unix(_, local) = &l.source else {
                    return self.dropped(&l.name, Some(format_args!("not a UNIX listener")));
                };
                let header = match Header::new(
                    SocketType::STREAM,
                    Protocol::DEFAULT,
                    local.clone().into(),
                    peer.into(),
                ) {
                    Ok(h) => h,
                    Err(e) => return self.dropped(&l.name, Some(format_args!("{e}"))),
                };
                self.enqueue(Held {
                    fd: Rc::new(OwnedFd::from(s)),
                    header,
                    data: Vec::new(),
                    pool: l.pool,
                });
            }
            Incoming::Tcp(s) => {
                let Some(peer) = peer else {
                    return self
                        .dropped(&l.name, Some(format_args!("accept gave no peer address")));
                };
                let local = match &l.source {
                    Source::Tcp(_, local) => *local,
                    _ => None,
                };
                if *l.preread == Preread::None {
                    let (name, pool) = (Rc::clone(&l.name), l.pool);
                    self.hand_off_tcp(s, peer, local, &name, pool, Vec::new());
                } else {
                    let mut p = Prereading {
                        stream: TcpStream::from_std(s),
                        peer,
                        local,
                        listener: Rc::clone(&l.name),
                        pool: l.pool,
                        preread: Rc::clone(&l.preread),
                        buf: Vec::new(),
                        deadline: Instant::now() + l.preread_timeout,
                    };
                    // The listener defers accept until data arrives, so most heads
                    // are whole already and need no registration at all.
                    match read_more(&mut p) {
                        Step::Done => return self.finish_preread_now(p),
                        Step::Gone => return self.dropped(&p.listener, None),
                        Step::More => {}
                    }
                    let token = self.token();
                    match self
                        .poll
                        .registry()
                        .register(&mut p.stream, token, Interest::READABLE)
                    {
                        Ok(()) => {
                            self.preread_deadlines.push(Reverse((p.deadline, token)));
                            self.prereading.insert(token, p);
                        }
                        Err(e) => self.dropped(
                            &p.listener,
                            Some(format_args!("cannot watch it to pre-read: {e}")),
                        ),
                    }
                }
            }
        }
    }

    /// `std` is blocking, as the worker expects (it shares the open file
    /// description, O_NONBLOCK included).
    fn hand_off_tcp(
        &mut self,
        std: StdTcpStream,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        listener: &str,
        pool: usize,
        data: Vec<u8>,
    ) {
        let local = match local.map_or_else(|| std.local_addr(), Ok) {
            Ok(local) => local,
            Err(e) => return self.dropped(listener, Some(format_args!("getsockname: {e}"))),
        };
        let header = match Header::new(SocketType::STREAM, Protocol::TCP, local.into(), peer.into())
        {
            Ok(h) => h,
            Err(e) => return self.dropped(listener, Some(format_args!("{e}"))),
        };
        self.enqueue(Held {
            fd: Rc::new(OwnedFd::from(std)),
            header,
            data,
            pool,
        });
    }

    fn on_preread(&mut self, token: Token) {
        let Some(p) = self.prereading.get_mut(&token) else {
            return;
        };
        match read_more(p) {
            Step::More => {}
            Step::Done => self.finish_preread(token),
            Step::Gone => {
                // The client reset the connection: nothing to hand off.
                if let Some(mut p) = self.prereading.remove(&token) {
                    let _ = self.poll.registry().deregister(&mut p.stream);
                    self.dropped(&p.listener, None);
                }
            }
        }
    }

    fn finish_preread(&mut self, token: Token) {
        let Some(mut p) = self.prereading.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut p.stream);
        self.finish_preread_now(p);
    }

    fn finish_preread_now(&mut self, p: Prereading) {
        self.hand_off_tcp(
            StdTcpStream::from(OwnedFd::from(p.stream)),
            p.peer,
            p.local,
            &p.listener,
            p.pool,
            p.buf,
        );
    }

    fn expire_prereads(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((at, token))) = self.preread_deadlines.peek() {
            if at > now {
                break;
            }
            self.preread_deadlines.pop();
            // Gone already if it finished in time.
            let Some(p) = self.prereading.get(&token) else {
                continue;
            };
            self.metrics
                .add(|m| &mut m.preread_timeouts, &p.listener, 1);
            // What arrived in time travels as the session data.
            self.finish_preread(token);
        }
    }

    fn on_datagrams(&mut self, i: usize) {
        let mut buf = vec![0u8; 65535];
        loop {
            let l = &self.listeners[i];
            let Source::Udp { socket, fd, local } = &l.source else {
                return;
            };
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    info!("listener {:?}: recvfrom failed: {e}", l.name);
                    return;
                }
            };
            self.metrics.add(|m| &mut m.accepted, &l.name, 1);
            let (fd, local) = (Rc::clone(fd), *local);
            // An IPv6 socket reports IPv4 senders as mapped addresses: same family.
            let header = match Header::new(
                SocketType::DGRAM,
                Protocol::UDP,
                Endpoint::from(local),
                Endpoint::from(from),
            ) {
                Ok(h) => h,
                Err(e) => {
                    self.dropped(&l.name, Some(format_args!("datagram from {from}: {e}")));
                    continue;
                }
            };
            let pool = l.pool;
            if !self.has_room(pool) {
                self.refuse(i);
                continue;
            }
            self.enqueue(Held {
                fd,
                header,
                data: buf[..n].to_vec(),
                pool,
            });
        }
    }

    fn enqueue(&mut self, held: Held) {
        let pool = &mut self.pools[held.pool];
        pool.queue.push_back(held);
        pool.dirty = true;
    }

    /// Dispatches every pool whose queue or workers changed in this turn.
    fn dispatch_all(&mut self) {
        for pool in 0..self.pools.len() {
            if self.pools[pool].dirty {
                self.dispatch(pool);
            }
        }
    }

    /// Sends queued sessions to workers with credit, per the pool's policy: first
    /// each session is given its worker, in order; then each worker gets its share
    /// in as few `sendmsg` calls as the batch limit allows.
    fn dispatch(&mut self, pool: usize) {
        while std::mem::take(&mut self.pools[pool].dirty) {
            // Each worker given sessions, and where they start in its outstanding.
            let mut given: Vec<(Token, usize)> = Vec::new();
            while !self.pools[pool].queue.is_empty() {
                let Some(token) = self.pick(pool) else { break };
                // pick() returned a live worker of this pool, and the queue was not
                // empty.
                let Some((_, worker)) = self.workers.get_mut(&token) else {
                    break;
                };
                let Some(held) = self.pools[pool].queue.pop_front() else {
                    break;
                };
                if !given.iter().any(|(t, _)| *t == token) {
                    given.push((token, worker.outstanding.len()));
                }
                worker.outstanding.push_back(held);
            }
            let mut forwarded = 0;
            for (token, from) in given {
                let Some((_, worker)) = self.workers.get_mut(&token) else {
                    continue;
                };
                let (taken, sent) = send_from(worker, from);
                forwarded += taken as u64;
                if let Err(ForwardError::Io(e)) = &sent {
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        // Out of fds to queue copies with, the socket full: not the
                        // worker's fault. What was not taken waits in the pool's
                        // queue, in order, until the worker reads.
                        info!(
                            "pool {:?}: worker {}: socket full and {e}; holding its sessions until it reads",
                            self.pools[pool].name, worker.pid
                        );
                        let back: Vec<Held> = worker.outstanding.drain(from + taken..).collect();
                        let queue = &mut self.pools[pool].queue;
                        for held in back.into_iter().rev() {
                            queue.push_front(held);
                        }
                        worker.stalled = true;
                        // Another worker may take them now.
                        self.pools[pool].dirty = true;
                    }
                }
                let sent = match sent {
                    Err(_) if worker.stalled => Ok(()),
                    other => other.map_err(|e| e.to_string()),
                };
                let watched = worker
                    .watch(self.poll.registry(), token)
                    .map_err(|e| e.to_string());
                match sent.and(watched) {
                    Ok(()) => {
                        let (name, pid) = (self.pools[pool].name.clone(), worker.pid);
                        let out = worker.outstanding.len() as u64;
                        self.metrics.lock().outstanding.insert((name, pid), out);
                    }
                    Err(e) => {
                        info!(
                            "pool {:?}: worker {} failed: {e}",
                            self.pools[pool].name, worker.pid
                        );
                        // Its sessions go back to the queue, and this loop goes on.
                        self.worker_gone(token);
                    }
                }
            }
            let name = self.pools[pool].name.clone();
            if forwarded > 0 {
                self.metrics.add(|m| &mut m.forwarded, &name, forwarded);
            }
            let queued = self.pools[pool].queue.len() as u64;
            self.metrics.lock().queued.insert(name, queued);
        }
    }

    /// The worker to send the next session to, among those with credit left: the
    /// next in turn (round robin), or the one with the fewest sessions outstanding,
    /// ties going round in turn (least-outstanding).
    fn pick(&mut self, pool: usize) -> Option<Token> {
        let p = &mut self.pools[pool];
        let n = p.workers.len();
        let load = |t: &Token| {
            self.workers
                .get(t)
                .filter(|(_, w)| !w.stalled && w.outstanding.len() < w.credits)
                .map(|(_, w)| w.outstanding.len())
        };
        let order = (0..n).map(|k| (p.next + k) % n);
        let chosen = match p.dispatch {
            Dispatch::RoundRobin => order.into_iter().find(|&k| load(&p.workers[k]).is_some()),
            Dispatch::LeastOutstanding => order
                .filter_map(|k| load(&p.workers[k]).map(|l| (l, k)))
                .reduce(|best, x| if x.0 < best.0 { x } else { best })
                .map(|(_, k)| k),
        }?;
        p.next = (chosen + 1) % n;
        Some(p.workers[chosen])
    }

    fn on_pool(&mut self, pool: usize) {
        loop {
            let (stream, _) = match self.pools[pool].listener.accept() {
                Ok(got) => {
                    self.pools[pool].starved = false;
                    got
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of fds, most likely held by sessions waiting for a worker: a
                // worker is what frees them, so spend the reserve fd on it.
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                        && self.reserve.is_some() =>
                {
                    info!(
                        "pool {:?}: {e}; using the reserve fd to let a worker in",
                        self.pools[pool].name
                    );
                    self.reserve = None;
                    continue;
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    let p = &mut self.pools[pool];
                    if !std::mem::replace(&mut p.starved, true) {
                        info!(
                            "pool {:?}: accept failed: {e}; trying again every {EMFILE_PAUSE:?} until an fd frees up",
                            p.name
                        );
                    }
                    p.retry_at = Some(Instant::now() + EMFILE_PAUSE);
                    return;
                }
                Err(e) => {
                    info!("pool {:?}: accept failed: {e}", self.pools[pool].name);
                    return;
                }
            };
            let cred = match nix::sys::socket::getsockopt(
                &stream,
                nix::sys::socket::sockopt::PeerCredentials,
            ) {
                Ok(c) => c,
                Err(e) => {
                    info!(
                        "pool {:?}: cannot read the peer's credentials: {e}; closing",
                        self.pools[pool].name
                    );
                    continue;
                }
            };
            let name = self.pools[pool].name.clone();
            if !self.pools[pool].allow_uids.contains(&cred.uid()) {
                info!(
                    "pool {name:?}: refused worker pid {} running as uid {}: not in allow_uids",
                    cred.pid(),
                    cred.uid()
                );
                continue;
            }
            let token = self.token();
            // No credits until it says how many.
            let mut worker = Worker::new(stream, cred.pid() as u32, 0, Vec::new());
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut worker.fwd, token, Interest::READABLE)
            {
                info!("pool {name:?}: cannot watch worker {}: {e}", worker.pid);
                continue;
            }
            info!(
                "pool {name:?}: worker pid {} (uid {}) connected",
                worker.pid,
                cred.uid()
            );
            self.pools[pool].workers.push(token);
            self.workers.insert(token, (pool, worker));
            self.metrics.add(|m| &mut m.workers, &name, 1);
        }
    }

    fn on_worker(&mut self, token: Token, writable: bool, readable: bool) {
        let Some((pool, worker)) = self.workers.get_mut(&token) else {
            return;
        };
        let pool = *pool;
        // Writable: flush what the socket would not take.
        if writable && worker.stalled {
            // Room again: what waited in the pool's queue can go.
            worker.stalled = false;
            self.pools[pool].dirty = true;
        }
        if writable && (worker.fwd.queued() > 0 || worker.watching_writable) {
            let flushed = worker.fwd.flush().map(drop).map_err(|e| e.to_string());
            let watched = worker
                .watch(self.poll.registry(), token)
                .map_err(|e| e.to_string());
            if let Err(e) = flushed.and(watched) {
                info!(
                    "pool {:?}: worker {} failed: {e}",
                    self.pools[pool].name, worker.pid
                );
                return self.worker_gone(token);
            }
        }
        if !readable {
            return;
        }
        // Readable: credits and acks.
        let mut buf = [0u8; 4096];
        let mut closed = false;
        loop {
            match worker.fwd.get_ref().read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    worker.inbox.extend_from_slice(&buf[..n]);
                    // A short read emptied the socket; more data raises a new event.
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        let (msgs, used) = match Control::decode_all(&worker.inbox) {
            Ok(m) => m,
            Err(e) => {
                info!(
                    "pool {:?}: worker {}: {e}; dropping it",
                    self.pools[pool].name, worker.pid
                );
                return self.worker_gone(token);
            }
        };
        worker.inbox.drain(..used);
        let mut acked = 0u64;
        for m in msgs {
            match m {
                Control::Credits(n) => worker.credits = (n as usize).clamp(1, MAX_CREDITS),
                Control::Ack(n) => {
                    for _ in 0..n {
                        if worker.outstanding.pop_front().is_some() {
                            acked += 1;
                        }
                    }
                }
            }
        }
        let (pid, out) = (worker.pid, worker.outstanding.len() as u64);
        let name = self.pools[pool].name.clone();
        if acked > 0 {
            self.metrics.add(|m| &mut m.acknowledged, &name, acked);
            self.metrics.lock().outstanding.insert((name, pid), out);
        }
        if closed {
            return self.worker_gone(token);
        }
        // Credit freed: what waits goes out at the end of this turn.
        self.pools[pool].dirty = true;
    }

    /// A worker went away: every session it had not acknowledged goes back to the
    /// front of the queue, in order, for another worker.
    fn worker_gone(&mut self, token: Token) {
        let Some((pool, mut worker)) = self.workers.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut worker.fwd);
        let p = &mut self.pools[pool];
        p.workers.retain(|t| *t != token);
        let n = worker.outstanding.len() as u64;
        for held in worker.outstanding.into_iter().rev() {
            p.queue.push_front(held);
        }
        let name = p.name.clone();
        info!(
            "pool {name:?}: worker pid {} left; {n} unacknowledged session(s) go to another worker",
            worker.pid
        );
        {
            let mut m = self.metrics.lock();
            m.outstanding.remove(&(name.clone(), worker.pid));
            *m.workers.entry(name.clone()).or_default() -= 1;
            *m.redispatched.entry(name).or_default() += n;
        }
        self.pools[pool].dirty = true;
    }
}

/// Sends a worker the sessions of its outstanding list from index `from` on, up to
/// the batch limit per `sendmsg`: how many the forwarder took (sent or queued), and
/// the error that stopped it, if one did.
fn send_from(worker: &mut Worker, from: usize) -> (usize, Result<(), ForwardError>) {
    let fresh = &worker.outstanding.make_contiguous()[from..];
    let mut taken = 0;
    for chunk in fresh.chunks(MAX_BATCH) {
        let batch: Vec<Outgoing<'_>> = chunk
            .iter()
            .map(|h| Outgoing::new(h.fd.as_fd(), h.header.clone(), &h.data))
            .collect();
        if let Err(e) = worker.fwd.push_batch(&batch) {
            return (taken, Err(e));
        }
        taken += chunk.len();
    }
    (taken, Ok(()))
}

/// Where a pre-read stands after reading what is there.
enum Step {
    /// The condition is met (or the client finished sending): hand it off.
    Done,
    /// More must arrive.
    More,
    /// The connection failed.
    Gone,
}

/// Reads what is there without blocking (`MSG_DONTWAIT`), up to what the pre-read
/// asks for.
fn read_more(p: &mut Prereading) -> Step {
    let mut chunk = [0u8; 4096];
    loop {
        let want = match &*p.preread {
            Preread::None => 0,
            Preread::Bytes(n) => n.saturating_sub(p.buf.len()),
            Preread::Until { max, .. } => max.saturating_sub(p.buf.len()),
        };
        if want == 0 {
            return Step::Done;
        }
        let asked = want.min(chunk.len());
        let read = nix::sys::socket::recv(
            p.stream.as_raw_fd(),
            &mut chunk[..asked],
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        );
        match read {
            Ok(0) => return Step::Done,
            Ok(n) => {
                p.buf.extend_from_slice(&chunk[..n]);
                if let Preread::Until { delimiter, .. } = &*p.preread {
                    let from = p.buf.len().saturating_sub(n + delimiter.len());
                    if memchr::memmem::find(&p.buf[from..], delimiter).is_some() {
                        return Step::Done;
                    }
                }
                // A short read emptied the socket; more data raises a new event.
                if n < asked {
                    return Step::More;
                }
            }
            Err(nix::errno::Errno::EAGAIN) => return Step::More,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Step::Gone,
        }
    }
}

enum Incoming {
    /// Blocking: pre-reads use `MSG_DONTWAIT`.
    Tcp(StdTcpStream),
    /// Blocking, with the peer's address.
    Unix(std::os::unix::net::UnixStream, UnixEndpoint),
}

fn tcp_source(listener: std::net::TcpListener) -> Source {
    let local = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    Source::Tcp(TcpListener::from_std(listener), local)
}

fn unix_source(listener: std::os::unix::net::UnixListener) -> io::Result<Source> {
    listener.set_nonblocking(true)?;
    let local = UnixEndpoint::from(&listener.local_addr()?);
    Ok(Source::Unix(UnixListener::from_std(listener), local))
}

fn udp_source(socket: std::net::UdpSocket) -> io::Result<Source> {
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    let fd = Rc::new(socket.as_fd().try_clone_to_owned()?);
    Ok(Source::Udp {
        socket: UdpSocket::from_std(socket),
        fd,
        local,
    })
}

fn register_source(poll: &Poll, source: &mut Source, token: Token) -> io::Result<()> {
    let r = poll.registry();
    match source {
        Source::Tcp(t, _) => r.register(t, token, Interest::READABLE),
        Source::Udp { socket, .. } => r.register(socket, token, Interest::READABLE),
        Source::Unix(u, _) => r.register(u, token, Interest::READABLE),
    }
}

fn deregister_source(poll: &Poll, source: &mut Source) -> io::Result<()> {
    let r = poll.registry();
    match source {
        Source::Tcp(t, _) => r.deregister(t),
        Source::Udp { socket, .. } => r.deregister(socket),
        Source::Unix(u, _) => r.deregister(u),
    }
}

/// Gives up on a successor: waits a moment for it to exit (it may be on its way
/// out), kills it otherwise, and says why with how it ended.
fn abandon(mut u: Upgrade, why: &str, then: &str) {
    let pid = u.child.id();
    let deadline = Instant::now() + Duration::from_millis(200);
    let status = loop {
        match u.child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = u.child.kill();
                break u.child.wait().ok();
            }
        }
    };
    let how = status.map_or_else(String::new, |s| format!(" ({s})"));
    info!("successor pid {pid} {why}{how}; {then}");
}

fn source_fd(source: &Source) -> BorrowedFd<'_> {
    match source {
        Source::Tcp(t, _) => t.as_fd(),
        Source::Udp { socket, .. } => socket.as_fd(),
        Source::Unix(u, _) => u.as_fd(),
    }
}

/// A socket handed over by a predecessor as the source of a listener configured
/// as `kind`, if it is one: same type, same address.
fn handed_source(kind: &ListenKind, fd: OwnedFd) -> Result<Source, String> {
    let socket = socket2::Socket::from(fd);
    let ty = socket.r#type().map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let stream = ty == socket2::Type::STREAM;
    let fits = match kind {
        ListenKind::Tcp(addr) => stream && local.as_socket() == Some(*addr),
        ListenKind::Udp(addr) => ty == socket2::Type::DGRAM && local.as_socket() == Some(*addr),
        ListenKind::Unix(path) => stream && local.as_pathname() == Some(path.as_path()),
        // Adopted from systemd by the predecessor: whatever it was.
        ListenKind::Systemd(_) => true,
    };
    if !fits {
        return Err(format!("{ty:?} socket on {local:?}"));
    }
    let fd = OwnedFd::from(socket);
    let built = if ty == socket2::Type::DGRAM {
        udp_source(std::net::UdpSocket::from(fd))
    } else if local.is_unix() {
        unix_source(std::os::unix::net::UnixListener::from(fd))
    } else {
        let t = std::net::TcpListener::from(fd);
        t.set_nonblocking(true).map(|()| tcp_source(t))
    };
    built.map_err(|e| e.to_string())
}
