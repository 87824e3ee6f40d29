//! `forward`: hand one real socket to a receiver, N times.
//!
//! ```text
//! forward [--mode tcp4|tcp6|udp4|udp6|unix] [--count N] [--remote ADDR] [--strict]
//!         [--expect-reply] SOCKPATH DATA_HEX
//! ```
//!
//! Connects a Forwarder to SOCKPATH and pushes N sessions (default 1) of one real
//! socket: `tcp4`/`tcp6` the accepted side of a loopback TCP connection (remote: its
//! real peer); `udp4`/`udp6` a UDP socket bound on loopback (remote: `--remote`,
//! default `192.0.2.1:53` / `[2001:db8::1]:53`); `unix` the accepted side of a UNIX
//! listener on a temporary path. DATA_HEX may be empty (an error with `--strict`,
//! which allows only what BIND 10 understands). With `--expect-reply` (stream modes)
//! it then reads its client end to end of stream and prints `{"reply":"<hex>"}`.
//! On failure it prints `{"error":"<variant>","message":"<sentence>"}` and exits 1.

#[path = "common/mod.rs"]
mod common;

use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use common::{fail, hex, print_line, sentence, unhex};
use handoff::{Endpoint, ForwardError, Forwarder, Mode, Outgoing};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Hand a real socket to a handoff receiver.
#[derive(Parser, Debug)]
#[command(name = "forward")]
struct Args {
    /// The kind of socket to forward.
    #[arg(long, value_enum, default_value = "tcp4")]
    mode: Kind,
    /// How many sessions to push (all of the same socket).
    #[arg(long, value_name = "N", default_value_t = 1)]
    count: u64,
    /// The remote endpoint of UDP sessions, as 1.2.3.4:53 or [2001:db8::1]:53.
    #[arg(long, value_name = "ADDR")]
    remote: Option<String>,
    /// Send only what a BIND 10 receiver understands (no UNIX, no empty data).
    #[arg(long)]
    strict: bool,
    /// Read the client end to end of stream afterwards and print what came back.
    #[arg(long)]
    expect_reply: bool,
    /// The receiver's socket.
    sockpath: PathBuf,
    /// The session data, in hex (may be empty).
    data_hex: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    Tcp4,
    Tcp6,
    Udp4,
    Udp6,
    Unix,
}

/// The socket being forwarded and, for streams, the client end that stays here.
enum Subject {
    Tcp {
        conn: TcpStream,
        client: TcpStream,
    },
    Udp {
        socket: UdpSocket,
        remote: SocketAddr,
    },
    Unix {
        conn: UnixStream,
        client: UnixStream,
    },
}

impl Subject {
    fn outgoing<'a>(&'a self, data: &'a [u8]) -> Result<Outgoing<'a>, ForwardError> {
        match self {
            Subject::Tcp { conn, .. } => Outgoing::tcp(conn, data),
            Subject::Udp { socket, remote } => Outgoing::udp(socket, *remote, data),
            Subject::Unix { conn, .. } => Outgoing::unix(conn, data),
        }
    }

    /// Closes the forwarded socket; gives back the client end, if any.
    fn into_client(self) -> Option<Box<dyn Read>> {
        match self {
            Subject::Tcp { client, .. } => Some(Box::new(client)),
            Subject::Unix { client, .. } => Some(Box::new(client)),
            Subject::Udp { .. } => None,
        }
    }
}

fn main() -> ExitCode {
    let args = match common::parse_args::<Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((name, message)) => fail(&name, message),
    }
}

type Failure = (String, String);

fn usage(message: impl Into<String>) -> Failure {
    ("Usage".into(), message.into())
}

fn io_failure(what: &str) -> impl FnOnce(io::Error) -> Failure + '_ {
    move |e| ("Io".into(), format!("{what}: {e}"))
}

fn run(args: Args) -> Result<(), Failure> {
    let data = unhex(&args.data_hex).map_err(usage)?;
    let udp = matches!(args.mode, Kind::Udp4 | Kind::Udp6);
    if args.remote.is_some() && !udp {
        return Err(usage("--remote is for the UDP modes only"));
    }
    if args.expect_reply && udp {
        return Err(usage("--expect-reply is for the stream modes only"));
    }
    let subject = make_subject(args.mode, args.remote.as_deref())?;
    let mut forwarder = Forwarder::connect(&args.sockpath).map_err(io_failure(&format!(
        "cannot connect to {}",
        args.sockpath.display()
    )))?;
    if args.strict {
        forwarder.set_mode(Mode::Bind10);
    }
    let session = subject
        .outgoing(&data)
        .map_err(|e| (e.name().to_owned(), sentence(&e)))?;
    for _ in 0..args.count {
        push(&mut forwarder, &session).map_err(|e| (e.name().to_owned(), sentence(&e)))?;
    }
    drop(session);
    drop(forwarder);
    if let Some(mut client) = subject.into_client().filter(|_| args.expect_reply) {
        let mut reply = Vec::new();
        client
            .read_to_end(&mut reply)
            .map_err(io_failure("cannot read the reply"))?;
        print_line(&format!("{{\"reply\":\"{}\"}}", hex(&reply)));
    }
    Ok(())
}

/// Pushes, waiting for room while the receiver is behind.
fn push(forwarder: &mut Forwarder, session: &Outgoing<'_>) -> Result<(), ForwardError> {
    loop {
        match forwarder.push(session) {
            Err(ForwardError::WouldBlock) => {
                let mut fds = [PollFd::new(forwarder.get_ref().as_fd(), PollFlags::POLLOUT)];
                poll(&mut fds, PollTimeout::NONE).map_err(|e| ForwardError::Io(e.into()))?;
            }
            other => return other,
        }
    }
}

fn make_subject(kind: Kind, remote: Option<&str>) -> Result<Subject, Failure> {
    let loopback = |v6: bool| -> SocketAddr {
        if v6 {
            (Ipv6Addr::LOCALHOST, 0).into()
        } else {
            (Ipv4Addr::LOCALHOST, 0).into()
        }
    };
    match kind {
        Kind::Tcp4 | Kind::Tcp6 => {
            let listener = TcpListener::bind(loopback(kind == Kind::Tcp6))
                .map_err(io_failure("cannot listen on loopback"))?;
            let client =
                TcpStream::connect(listener.local_addr().map_err(io_failure("getsockname"))?)
                    .map_err(io_failure("cannot connect on loopback"))?;
            let (conn, _) = listener.accept().map_err(io_failure("accept"))?;
            Ok(Subject::Tcp { conn, client })
        }
        Kind::Udp4 | Kind::Udp6 => {
            let v6 = kind == Kind::Udp6;
            let default = if v6 {
                "[2001:db8::1]:53"
            } else {
                "192.0.2.1:53"
            };
            let text = remote.unwrap_or(default);
            let remote = match text.parse::<Endpoint>().map_err(|e| usage(e.to_string()))? {
                Endpoint::V4(a) if !v6 => SocketAddr::V4(a),
                Endpoint::V6(a) if v6 => SocketAddr::V6(a),
                _ => {
                    return Err(usage(format!(
                        "--remote {text} is not an address of the {kind:?} family"
                    )))
                }
            };
            let socket =
                UdpSocket::bind(loopback(v6)).map_err(io_failure("cannot bind on loopback"))?;
            Ok(Subject::Udp { socket, remote })
        }
        Kind::Unix => {
            let path =
                std::env::temp_dir().join(format!("handoff-forward-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path)
                .map_err(io_failure(&format!("cannot listen on {}", path.display())))?;
            let client = UnixStream::connect(&path);
            let accepted = listener.accept();
            // The accepted socket keeps its address; the file is no longer needed.
            let _ = std::fs::remove_file(&path);
            let client = client.map_err(io_failure("cannot connect to the UNIX listener"))?;
            let (conn, _) = accepted.map_err(io_failure("accept"))?;
            Ok(Subject::Unix { conn, client })
        }
    }
}
