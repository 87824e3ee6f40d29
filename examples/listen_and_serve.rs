//! `listen_and_serve`: a server that gets its listeners the production way.
//!
//! ```text
//! listen_and_serve [--tcp ADDR]... [--udp ADDR]... [--unix PATH]... [--abstract NAME]...
//!                  [--lenient-names] [--count N] [--handover]
//! ```
//!
//! It takes its sockets, in this order, from its predecessor (inherited across exec),
//! from systemd (socket activation), or binds the ones given on the command line. It
//! prints one line per listener (`listening NAME ADDR SOURCE`), then answers every
//! connection (or datagram) with `NAME PID SOURCE child-env:clean` — the last word
//! says whether a child it spawns still sees `LISTEN_*` variables or adopted fds (it
//! must see neither). An
//! `Accept=yes` connection is answered once. With `--count N` it stops after N
//! answers. With `--handover` it starts a successor that inherits its listeners, and
//! exits: the successor serves.
//!
//! Alone:
//!
//! ```text
//! cargo run --example listen_and_serve -- --tcp 127.0.0.1:8080 --unix /tmp/s.sock
//! ```
//!
//! Under systemd's activation tool (the first connection starts it):
//!
//! ```text
//! systemd-socket-activate -l 127.0.0.1:8080 -l /tmp/s.sock --fdname=web:local \
//!     target/debug/examples/listen_and_serve
//! systemd-socket-activate -a -l 127.0.0.1:8081 target/debug/examples/listen_and_serve
//! ```

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use handoff::listen::{self, Activation, Adopted, Names, Options};

/// One listener to serve.
enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Unix(UnixListener),
}

struct Named {
    name: String,
    listener: Listener,
}

#[derive(Default)]
struct Args {
    tcp: Vec<SocketAddr>,
    udp: Vec<SocketAddr>,
    unix: Vec<PathBuf>,
    abstract_names: Vec<String>,
    lenient: bool,
    count: Option<u64>,
    handover: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--tcp" => a
                .tcp
                .push(value()?.parse().map_err(|e| format!("--tcp: {e}"))?),
            "--udp" => a
                .udp
                .push(value()?.parse().map_err(|e| format!("--udp: {e}"))?),
            "--unix" => a.unix.push(value()?.into()),
            "--abstract" => a.abstract_names.push(value()?),
            "--count" => a.count = Some(value()?.parse().map_err(|e| format!("--count: {e}"))?),
            "--lenient-names" => a.lenient = true,
            "--handover" => a.handover = true,
            "-h" | "--help" => {
                println!("usage: listen_and_serve [--tcp ADDR]... [--udp ADDR]... [--unix PATH]... [--abstract NAME]... [--lenient-names] [--count N] [--handover]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            eprintln!("listen_and_serve: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    // Adoption first, before any thread starts: it edits the environment.
    let inherited = listen::inherit(listen::inherit::DEFAULT_VAR)?;
    let names = if args.lenient {
        Names::Lenient
    } else {
        Names::Strict
    };
    let mut activation = Activation::from_env(names)?;
    let child_env = child_env()?;

    if let Some(conn) = activation.take_connection() {
        // Accept=yes: this process exists for this one connection.
        let name = conn.name().to_owned();
        let mut stream: Box<dyn Write> = match conn.into_tcp_stream() {
            Ok(s) => Box::new(s),
            Err(c) => Box::new(
                c.into_unix_stream()
                    .map_err(|c| format!("an Accept=yes socket of an unknown kind: {c:?}"))?,
            ),
        };
        let reply = format!(
            "{name} {} accept-yes child-env:{child_env}\n",
            std::process::id()
        );
        stream.write_all(reply.as_bytes())?;
        return Ok(());
    }

    let (source, listeners) = if !inherited.is_empty() {
        (
            "inherited",
            inherited
                .into_iter()
                .map(named)
                .collect::<Result<Vec<_>, _>>()?,
        )
    } else if !activation.is_empty() {
        (
            "systemd",
            activation
                .take_all()
                .into_iter()
                .map(named)
                .collect::<Result<Vec<_>, _>>()?,
        )
    } else {
        ("bound", bind(&args)?)
    };
    if listeners.is_empty() {
        return Err(
            "nothing to serve: give --tcp, --udp, --unix or --abstract, or start me under systemd"
                .into(),
        );
    }
    for l in &listeners {
        println!("listening {} {} {source}", l.name, describe(&l.listener));
    }
    io::stdout().flush()?;

    if args.handover {
        let mut successor = Command::new(std::env::current_exe()?);
        successor.args(std::env::args().skip(1).filter(|a| a != "--handover"));
        let fds: Vec<_> = listeners
            .iter()
            .map(|l| (fd_of(&l.listener), l.name.as_str()))
            .collect();
        listen::pass_fds(&mut successor, listen::inherit::DEFAULT_VAR, &fds);
        let status = successor.spawn()?.wait()?;
        std::process::exit(status.code().unwrap_or(1));
    }

    serve(listeners, source, child_env, args.count)
}

/// What a child of ours would see: `clean` if no `LISTEN_*` (or inheritance)
/// variable survived adoption and no adopted fd (3 to 9) leaked into it, that is,
/// every one was made close-on-exec.
fn child_env() -> io::Result<&'static str> {
    let out = Command::new("sh")
        .args(["-c", "env; for fd in 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$fd ] && echo LEAKED_FD=$fd; done; true"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let dirty = text.lines().any(|l| {
        l.starts_with("LISTEN_")
            || l.starts_with(listen::inherit::DEFAULT_VAR)
            || l.starts_with("LEAKED_FD=")
    });
    Ok(if dirty { "dirty" } else { "clean" })
}

fn named(a: Adopted) -> Result<Named, String> {
    let name = a.name().to_owned();
    let listener = a
        .into_tcp_listener()
        .map(Listener::Tcp)
        .or_else(|a| a.into_udp_socket().map(Listener::Udp))
        .or_else(|a| a.into_unix_listener().map(Listener::Unix))
        .map_err(|a| {
            format!(
                "socket {:?} is of a kind this server does not serve: {a:?}",
                a.name()
            )
        })?;
    Ok(Named { name, listener })
}

fn bind(args: &Args) -> Result<Vec<Named>, listen::ListenError> {
    let opts = Options::default();
    let mut out = Vec::new();
    for a in &args.tcp {
        out.push(Named {
            name: format!("tcp:{a}"),
            listener: Listener::Tcp(listen::tcp(*a, &opts)?),
        });
    }
    for a in &args.udp {
        out.push(Named {
            name: format!("udp:{a}"),
            listener: Listener::Udp(listen::udp(*a, &opts)?),
        });
    }
    for p in &args.unix {
        let l = listen::unix(p, &Default::default())?;
        out.push(Named {
            name: format!("unix:{}", p.display()),
            listener: Listener::Unix(l),
        });
    }
    for n in &args.abstract_names {
        let l = listen::unix_abstract(n.as_bytes(), 1024)?;
        out.push(Named {
            name: format!("unix:@{n}"),
            listener: Listener::Unix(l),
        });
    }
    Ok(out)
}

fn describe(l: &Listener) -> String {
    match l {
        Listener::Tcp(t) => format!(
            "tcp:{}",
            t.local_addr().map(|a| a.to_string()).unwrap_or_default()
        ),
        Listener::Udp(u) => format!(
            "udp:{}",
            u.local_addr().map(|a| a.to_string()).unwrap_or_default()
        ),
        Listener::Unix(u) => match u.local_addr() {
            Ok(a) => match (
                a.as_pathname(),
                std::os::linux::net::SocketAddrExt::as_abstract_name(&a),
            ) {
                (Some(p), _) => format!("unix:{}", p.display()),
                (None, Some(n)) => format!("unix:@{}", String::from_utf8_lossy(n)),
                _ => "unix:".to_owned(),
            },
            Err(_) => "unix:?".to_owned(),
        },
    }
}

fn fd_of(l: &Listener) -> std::os::fd::BorrowedFd<'_> {
    match l {
        Listener::Tcp(t) => t.as_fd(),
        Listener::Udp(u) => u.as_fd(),
        Listener::Unix(u) => u.as_fd(),
    }
}

/// One thread per listener; the main thread counts answers and stops at `count`.
fn serve(
    listeners: Vec<Named>,
    source: &'static str,
    child_env: &'static str,
    count: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let answered = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = mpsc::channel::<io::Error>();
    for Named { name, listener } in listeners {
        let reply = format!(
            "{name} {} {source} child-env:{child_env}\n",
            std::process::id()
        );
        let answered = Arc::clone(&answered);
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let result = (|| -> io::Result<()> {
                loop {
                    match &listener {
                        Listener::Tcp(t) => {
                            let (mut c, _) = t.accept()?;
                            c.write_all(reply.as_bytes())?;
                        }
                        Listener::Unix(u) => {
                            let (mut c, _) = u.accept()?;
                            c.write_all(reply.as_bytes())?;
                        }
                        Listener::Udp(u) => {
                            let mut buf = [0u8; 1500];
                            let (_, from) = u.recv_from(&mut buf)?;
                            u.send_to(reply.as_bytes(), from)?;
                        }
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                    done.send(io::Error::other("answered")).ok();
                }
            })();
            if let Err(e) = result {
                done.send(e).ok();
            }
        });
    }
    drop(done_tx);
    while let Ok(event) = done_rx.recv() {
        if event.to_string() != "answered" {
            return Err(event.into());
        }
        if count.is_some_and(|n| answered.load(Ordering::SeqCst) >= n) {
            return Ok(());
        }
    }
    Ok(())
}
