//! Creating listeners: TCP and UDP (dual-stack included) and UNIX sockets, with the
//! options production servers set.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{self, UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockAddr, SockRef, Socket, TcpKeepalive, Type};

use crate::error::ListenError;
use crate::holder;

/// The longest UNIX socket path (`sun_path` less its trailing NUL).
pub const MAX_PATH_LEN: usize = 107;

/// Options for IP listeners. `SO_REUSEADDR` is always set.
///
/// ```
/// use std::time::Duration;
/// let opts = handoff_listen::Options {
///     reuse_port: true,
///     keepalive: Some(Duration::from_secs(60)),
///     ..Default::default()
/// };
/// let l = handoff_listen::tcp("127.0.0.1:0".parse()?, &opts)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// `SO_REUSEPORT`: several processes bind the same port and the kernel spreads
    /// connections among them.
    pub reuse_port: bool,
    /// The `listen(2)` backlog (TCP only).
    pub backlog: i32,
    /// `SO_SNDBUF`.
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF`.
    pub recv_buffer: Option<usize>,
    /// TCP keepalive idle time, inherited by accepted connections.
    pub keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT`, inherited by accepted connections.
    pub user_timeout: Option<Duration>,
    /// `O_NONBLOCK` on the listener (for an event loop).
    pub nonblocking: bool,
    /// `TCP_DEFER_ACCEPT`: a connection is not reported to `accept` until its first
    /// data arrives (or about this much time passes), for protocols where the client
    /// speaks first. Saves the server a wakeup per connection.
    pub defer_accept: Option<Duration>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            reuse_port: false,
            backlog: 1024,
            send_buffer: None,
            recv_buffer: None,
            keepalive: None,
            user_timeout: None,
            nonblocking: false,
            defer_accept: None,
        }
    }
}

/// What to create, with IPv6's one extra choice.
fn ip_socket(
    addr: SocketAddr,
    ty: Type,
    opts: &Options,
    v6only: bool,
) -> Result<Socket, ListenError> {
    let what = addr;
    let socket = Socket::new(Domain::for_address(addr), ty, None)
        .map_err(ListenError::io("socket", what))?;
    let set = |op, r: io::Result<()>| r.map_err(ListenError::io(op, what));
    set("setsockopt(SO_REUSEADDR)", socket.set_reuse_address(true))?;
    if opts.reuse_port {
        set("setsockopt(SO_REUSEPORT)", socket.set_reuse_port(true))?;
    }
    if addr.is_ipv6() {
        set("setsockopt(IPV6_V6ONLY)", socket.set_only_v6(v6only))?;
    }
    if let Some(n) = opts.send_buffer {
        set("setsockopt(SO_SNDBUF)", socket.set_send_buffer_size(n))?;
    }
    if let Some(n) = opts.recv_buffer {
        set("setsockopt(SO_RCVBUF)", socket.set_recv_buffer_size(n))?;
    }
    if ty == Type::STREAM {
        if let Some(idle) = opts.keepalive {
            set(
                "setsockopt(SO_KEEPALIVE)",
                socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle)),
            )?;
        }
        if opts.user_timeout.is_some() {
            set(
                "setsockopt(TCP_USER_TIMEOUT)",
                socket.set_tcp_user_timeout(opts.user_timeout),
            )?;
        }
        if let Some(wait) = opts.defer_accept {
            let secs = i32::try_from(wait.as_secs_f64().ceil() as u64)
                .unwrap_or(i32::MAX)
                .max(1);
            set(
                "setsockopt(TCP_DEFER_ACCEPT)",
                crate::sys::set_tcp_defer_accept(socket.as_fd(), secs),
            )?;
        }
    }
    set(
        "fcntl(O_NONBLOCK)",
        socket.set_nonblocking(opts.nonblocking),
    )?;
    if let Err(e) = socket.bind(&addr.into()) {
        return Err(if e.kind() == io::ErrorKind::AddrInUse {
            ListenError::AddrInUse {
                addr,
                holder: holder::find(addr, ty == Type::STREAM),
            }
        } else {
            ListenError::io("bind", what)(e)
        });
    }
    if ty == Type::STREAM {
        set("listen", socket.listen(opts.backlog))?;
    }
    Ok(socket)
}

/// The `TCP_DEFER_ACCEPT` time of a listener (zero: off), as the kernel rounds it.
///
/// # Errors
/// What `getsockopt(2)` reports.
pub fn tcp_defer_accept(listener: &impl AsFd) -> io::Result<Duration> {
    Ok(Duration::from_secs(
        crate::sys::tcp_defer_accept(listener.as_fd())?.max(0) as u64,
    ))
}

/// A TCP listener on `addr` (an IPv6 address gets `IPV6_V6ONLY`).
///
/// # Errors
/// [`ListenError::AddrInUse`] naming the holder when `/proc` tells; others as
/// [`ListenError::Io`].
pub fn tcp(addr: SocketAddr, opts: &Options) -> Result<TcpListener, ListenError> {
    Ok(ip_socket(addr, Type::STREAM, opts, true)?.into())
}

/// A UDP socket bound to `addr` (an IPv6 address gets `IPV6_V6ONLY`).
///
/// # Errors
/// As [`tcp`].
pub fn udp(addr: SocketAddr, opts: &Options) -> Result<UdpSocket, ListenError> {
    Ok(ip_socket(addr, Type::DGRAM, opts, true)?.into())
}

/// One IPv6 wildcard TCP socket with `IPV6_V6ONLY` off: it serves IPv4 clients too
/// (as mapped addresses).
///
/// # Errors
/// As [`tcp`].
pub fn tcp_any_v6(port: u16, opts: &Options) -> Result<TcpListener, ListenError> {
    Ok(ip_socket(
        (Ipv6Addr::UNSPECIFIED, port).into(),
        Type::STREAM,
        opts,
        false,
    )?
    .into())
}

/// An IPv4 and an IPv6 socket on one port.
#[derive(Debug)]
pub struct DualStack<T> {
    /// The IPv4 socket.
    pub v4: T,
    /// The IPv6 socket (`IPV6_V6ONLY`), unless the host has no IPv6.
    pub v6: Option<T>,
    /// Why there is no IPv6 socket, if there is none.
    pub note: Option<String>,
}

/// Binds `v4` and `v6` (loopback or wildcard) on one port, `port` 0 included: the
/// IPv6 socket takes a port and the IPv4 one the same (tried again a few times if
/// another process takes it in between). A host without IPv6 gets the IPv4 socket
/// and a note.
fn dual<T>(
    v4: Ipv4Addr,
    v6: Ipv6Addr,
    port: u16,
    make: impl Fn(SocketAddr, bool) -> Result<Socket, ListenError>,
    into: impl Fn(Socket) -> T,
) -> Result<DualStack<T>, ListenError> {
    const ATTEMPTS: usize = 16;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let six = match make((v6, port).into(), true) {
            Ok(s) => s,
            Err(ListenError::Io { source, .. }) if no_ipv6(&source) => {
                let note = format!("IPv6 is not available here ({source}); listening on IPv4 only");
                return Ok(DualStack {
                    v4: into(make((v4, port).into(), true)?),
                    v6: None,
                    note: Some(note),
                });
            }
            Err(e) => return Err(e),
        };
        let chosen = six
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(port, |a| a.port());
        match make((v4, chosen).into(), true) {
            Ok(four) => {
                return Ok(DualStack {
                    v4: into(four),
                    v6: Some(into(six)),
                    note: None,
                })
            }
            // Port 0: the kernel's pick for IPv6 is taken on IPv4; pick again.
            Err(ListenError::AddrInUse { .. }) if port == 0 && attempt < ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}

fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL) | Some(libc::EPROTONOSUPPORT)
    )
}

/// TCP on `port` over IPv4 (`0.0.0.0`) and IPv6 (`::`, `IPV6_V6ONLY`).
///
/// ```
/// let pair = handoff_listen::tcp_dual_stack(0, &Default::default())?;
/// let port = pair.v4.local_addr()?.port();
/// if let Some(v6) = &pair.v6 {
///     assert_eq!(v6.local_addr()?.port(), port);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// As [`tcp`].
pub fn tcp_dual_stack(port: u16, opts: &Options) -> Result<DualStack<TcpListener>, ListenError> {
    tcp_dual_stack_on(Ipv4Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, port, opts)
}

/// [`tcp_dual_stack`] on given addresses (for example both loopbacks).
///
/// # Errors
/// As [`tcp`].
pub fn tcp_dual_stack_on(
    v4: Ipv4Addr,
    v6: Ipv6Addr,
    port: u16,
    opts: &Options,
) -> Result<DualStack<TcpListener>, ListenError> {
    dual(
        v4,
        v6,
        port,
        |a, only| ip_socket(a, Type::STREAM, opts, only),
        TcpListener::from,
    )
}

/// UDP on `port` over IPv4 and IPv6, as [`tcp_dual_stack`].
///
/// # Errors
/// As [`tcp`].
pub fn udp_dual_stack(port: u16, opts: &Options) -> Result<DualStack<UdpSocket>, ListenError> {
    udp_dual_stack_on(Ipv4Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED, port, opts)
}

/// [`udp_dual_stack`] on given addresses.
///
/// # Errors
/// As [`tcp`].
pub fn udp_dual_stack_on(
    v4: Ipv4Addr,
    v6: Ipv6Addr,
    port: u16,
    opts: &Options,
) -> Result<DualStack<UdpSocket>, ListenError> {
    dual(
        v4,
        v6,
        port,
        |a, only| ip_socket(a, Type::DGRAM, opts, only),
        UdpSocket::from,
    )
}

/// Options for UNIX listeners.
#[derive(Debug, Clone)]
pub struct UnixOptions {
    /// The socket file's mode: 0660 by default. It is never more permissive while
    /// being set up (the mode is on the socket before `bind` creates the file).
    pub mode: u32,
    /// The `listen(2)` backlog.
    pub backlog: i32,
}

impl Default for UnixOptions {
    fn default() -> UnixOptions {
        UnixOptions {
            mode: 0o660,
            backlog: 1024,
        }
    }
}

/// A UNIX stream listener at `path`.
///
/// A socket file already there is removed only if it is stale: a probe connection
/// is refused. A live listener, a regular file, a directory or anything else is an
/// error that names the path, and is left alone.
///
/// ```
/// let path = std::env::temp_dir().join(format!("listen-doc-{}.sock", std::process::id()));
/// let l = handoff_listen::unix(&path, &Default::default())?;
/// drop(l); // the file stays: a stale socket...
/// let l = handoff_listen::unix(&path, &Default::default())?; // ...replaced safely
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ListenError::PathTooLong`] before any syscall, [`ListenError::NotASocket`],
/// [`ListenError::LiveListener`], [`ListenError::Io`].
pub fn unix(path: &Path, opts: &UnixOptions) -> Result<UnixListener, ListenError> {
    use std::os::unix::ffi::OsStrExt;
    let len = path.as_os_str().as_bytes().len();
    if len > MAX_PATH_LEN {
        return Err(ListenError::PathTooLong {
            path: path.to_owned(),
            len,
            max: MAX_PATH_LEN,
        });
    }
    let shown = &path.display().to_string();
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(ListenError::LiveListener {
                    path: path.to_owned(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                fs::remove_file(path)
                    .map_err(ListenError::io("unlink of a stale socket", shown))?;
            }
            Err(e) => return Err(ListenError::io("probe connect", shown)(e)),
        },
        Ok(_) => {
            return Err(ListenError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ListenError::io("stat", shown)(e)),
    }
    let socket =
        Socket::new(Domain::UNIX, Type::STREAM, None).map_err(ListenError::io("socket", shown))?;
    // Linux creates the file with the socket inode's mode less the umask: set the
    // mode first, so the file never exists more open than asked.
    let socket = with_mode(socket, opts.mode).map_err(ListenError::io("fchmod", shown))?;
    let addr = SockAddr::unix(path).map_err(ListenError::io("address", shown))?;
    socket.bind(&addr).map_err(ListenError::io("bind", shown))?;
    // The umask may have taken bits the caller asked for: give them back.
    fs::set_permissions(path, fs::Permissions::from_mode(opts.mode))
        .map_err(ListenError::io("chmod", shown))?;
    socket
        .listen(opts.backlog)
        .map_err(ListenError::io("listen", shown))?;
    Ok(UnixListener::from(OwnedFd::from(socket)))
}

/// `fchmod` on a socket, through std's `File` (which only wraps the fd).
fn with_mode(socket: Socket, mode: u32) -> io::Result<Socket> {
    let file = fs::File::from(OwnedFd::from(socket));
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(Socket::from(OwnedFd::from(file)))
}

/// A UNIX stream listener on an abstract name (no file, no mode: any local process
/// may connect; check peers with `SO_PEERCRED`).
///
/// # Errors
/// [`ListenError::Io`]; "address in use" when the name is taken.
pub fn unix_abstract(name: &[u8], backlog: i32) -> Result<UnixListener, ListenError> {
    let shown = format!("@{}", String::from_utf8_lossy(name));
    let addr =
        net::SocketAddr::from_abstract_name(name).map_err(ListenError::io("address", &shown))?;
    let l = UnixListener::bind_addr(&addr).map_err(ListenError::io("bind", &shown))?;
    SockRef::from(&l)
        .listen(backlog)
        .map_err(ListenError::io("listen", &shown))?;
    Ok(l)
}

/// Accepts one connection on a borrowed listener fd, which several workers may
/// share. `Ok(None)` is "would block" (a non-blocking listener with nothing
/// pending, or another worker won the race); a real error stays an error. The
/// connection is close-on-exec, blocking, and has `TCP_NODELAY`.
///
/// ```
/// let l = handoff_listen::tcp("127.0.0.1:0".parse()?, &handoff_listen::Options { nonblocking: true, ..Default::default() })?;
/// use std::os::fd::AsFd;
/// assert!(handoff_listen::accept_tcp(l.as_fd())?.is_none());
/// let _c = std::net::TcpStream::connect(l.local_addr()?)?;
/// # std::thread::sleep(std::time::Duration::from_millis(50));
/// let (conn, peer) = handoff_listen::accept_tcp(l.as_fd())?.expect("pending");
/// assert!(conn.nodelay()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// What `accept4(2)` reports, but for would-block; `EMFILE` and the like included.
pub fn accept_tcp(listener: BorrowedFd<'_>) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    let sock = SockRef::from(&listener);
    loop {
        match sock.accept() {
            Ok((conn, peer)) => {
                conn.set_nonblocking(false)?;
                conn.set_tcp_nodelay(true)?;
                let peer = peer
                    .as_socket()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP peer"))?;
                return Ok(Some((TcpStream::from(OwnedFd::from(conn)), peer)));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            // A connection that died in the queue is not the listener's failure.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNABORTED) | Some(libc::EINTR)
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
}
