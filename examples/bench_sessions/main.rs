//! Sessions/s and CPU per session between two processes: handoff against a raw
//! single-`sendmsg` loop and BIND 10's two-syscall framing, all in the same run.
//!
//! ```text
//! cargo run --release --example bench_sessions [-- --sessions N --rounds R]
//! ```
//!
//! Each mode sends N sessions of one UDP socket with an IPv4 header and 16 bytes of
//! data from this process to a child process (this program, re-executed), which
//! receives them and closes every fd. Wall time runs from the first send to the
//! child's exit; CPU is user + system of both processes. Each mode runs R rounds,
//! interleaved, and the best round counts. The ratios are the point: absolute
//! figures vary with the machine and its load.
//!
//! Modes:
//! - `raw`: one blocking `sendmsg` (fd + header + data, header encoded once) and one
//!   blocking `recvmsg` per session, by hand: the kernel's cost.
//! - `bind10`: BIND 10's framing: `sendmsg` of the fd byte with the fd, then a
//!   `writev` of header and data; the receiver reads fd, length, header, data.
//! - `handoff`: `Forwarder::push` (non-blocking, `poll` when full) and
//!   `Receiver::pop`, with verification off, then on.
//! - `batch`: `Forwarder::push_batch` of 253 sessions, `Receiver::pop` each.

mod raw;

use std::io::{self, IoSlice, Read};
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use handoff::{ForwardError, Forwarder, Header, Mode, Outgoing, Protocol, Receiver, SocketType};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{getrusage, UsageWho};

const DATA: &[u8; 16] = b"0123456789abcdef";
const MODES: [&str; 5] = ["raw", "bind10", "handoff", "handoff-verify", "batch"];

fn header() -> Header {
    Header::new(
        SocketType::DGRAM,
        Protocol::UDP,
        "127.0.0.1:53".parse().expect("addr"),
        "192.0.2.1:5300".parse().expect("addr"),
    )
    .expect("header")
}

fn cpu_now() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Duration::from_micros(us(u.user_time()) + us(u.system_time()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return match child(&args[2], args[3].parse().expect("count"), &args[4]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut sessions = 200_000u64;
    let mut rounds = 3;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sessions" => {
                sessions = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--sessions N")
            }
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds R"),
            other => {
                eprintln!(
                    "unknown argument {other}; usage: bench_sessions [--sessions N] [--rounds R]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let sessions = sessions / 253 * 253; // whole batches
    let mut best: Vec<Option<Measure>> = vec![None; MODES.len()];
    for round in 0..rounds {
        for (i, mode) in MODES.iter().enumerate() {
            let m = match run(mode, sessions) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("{mode}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            eprintln!(
                "round {round} {mode:>14}: {:>9.0} sessions/s",
                m.rate(sessions)
            );
            if best[i].is_none_or(|b| m.wall < b.wall) {
                best[i] = Some(m);
            }
        }
    }
    let best: Vec<Measure> = best.into_iter().map(|m| m.expect("measured")).collect();
    report(sessions, &best);
    ExitCode::SUCCESS
}

#[derive(Clone, Copy, Debug)]
struct Measure {
    wall: Duration,
    cpu: Duration,
}

impl Measure {
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.wall.as_secs_f64()
    }
    fn cpu_us(&self, n: u64) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / n as f64
    }
}

fn report(n: u64, m: &[Measure]) {
    let by = |name: &str| m[MODES.iter().position(|x| *x == name).expect("mode")];
    let (raw, bind10) = (by("raw"), by("bind10"));
    println!("{n} sessions per round, best of the rounds; CPU is both processes");
    println!(
        "{:<16} {:>12} {:>14} {:>10} {:>10} {:>12}",
        "mode", "sessions/s", "CPU µs/session", "vs raw", "vs bind10", "vs raw (CPU)"
    );
    for (name, x) in MODES.iter().zip(m) {
        println!(
            "{:<16} {:>12.0} {:>14.2} {:>9.2}× {:>9.2}× {:>11.2}×",
            name,
            x.rate(n),
            x.cpu_us(n),
            x.rate(n) / raw.rate(n),
            x.rate(n) / bind10.rate(n),
            raw.cpu_us(n) / x.cpu_us(n),
        );
    }
    let (h, hv, b) = (by("handoff"), by("handoff-verify"), by("batch"));
    println!();
    println!("targets (SPEC §7):");
    println!(
        "  handoff ≥ 0.9× raw:        {:.2}× (verification on: {:.2}×)",
        h.rate(n) / raw.rate(n),
        hv.rate(n) / raw.rate(n)
    );
    println!(
        "  handoff ≥ 2× BIND 10:      {:.2}×",
        h.rate(n) / bind10.rate(n)
    );
    println!(
        "  batched ≥ 4× per CPU:      {:.2}×",
        h.cpu_us(n) / b.cpu_us(n)
    );
}

fn run(mode: &str, n: u64) -> io::Result<Measure> {
    let path = std::env::temp_dir().join(format!("handoff-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--child",
            mode,
            &n.to_string(),
            path.to_str().expect("utf-8 path"),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let (conn, _) = listener.accept()?;
    drop(listener);
    let _ = std::fs::remove_file(&path);
    let sock = UdpSocket::bind("127.0.0.1:0")?;

    let cpu0 = cpu_now();
    let t0 = Instant::now();
    match mode {
        "raw" => send_raw(&conn, &sock, n)?,
        "bind10" => send_bind10(&conn, &sock, n)?,
        "handoff" | "handoff-verify" => send_handoff(conn, &sock, n, false)?,
        "batch" => send_handoff(conn, &sock, n, true)?,
        _ => unreachable!(),
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)?;
    let status = child.wait()?;
    let wall = t0.elapsed();
    let cpu = cpu_now() - cpu0;
    if !status.success() {
        return Err(io::Error::other(format!(
            "the receiving child failed: {status}"
        )));
    }
    let child_cpu: u64 = out
        .trim()
        .parse()
        .map_err(|_| io::Error::other(format!("child said {out:?}")))?;
    Ok(Measure {
        wall,
        cpu: cpu + Duration::from_micros(child_cpu),
    })
}

fn send_raw(conn: &UnixStream, sock: &UdpSocket, n: u64) -> io::Result<()> {
    let prefix = header()
        .encode(DATA.len(), Mode::Bind10)
        .map_err(io::Error::other)?;
    let iov = [IoSlice::new(&prefix), IoSlice::new(DATA)];
    for _ in 0..n {
        raw::sendmsg(conn.as_fd(), &iov, Some(sock.as_fd()))?;
    }
    Ok(())
}

fn send_bind10(conn: &UnixStream, sock: &UdpSocket, n: u64) -> io::Result<()> {
    let prefix = header()
        .encode(DATA.len(), Mode::Bind10)
        .map_err(io::Error::other)?;
    let rest = [IoSlice::new(&prefix[1..]), IoSlice::new(DATA)];
    for _ in 0..n {
        raw::sendmsg(
            conn.as_fd(),
            &[IoSlice::new(&prefix[..1])],
            Some(sock.as_fd()),
        )?;
        raw::sendmsg(conn.as_fd(), &rest, None)?;
    }
    Ok(())
}

fn send_handoff(conn: UnixStream, sock: &UdpSocket, n: u64, batch: bool) -> io::Result<()> {
    let mut fwd = Forwarder::from_stream(conn)?;
    let one = Outgoing::new(sock.as_fd(), header(), DATA);
    let many = vec![one.clone(); 253];
    let mut sent = 0;
    while sent < n {
        let result = if batch {
            fwd.push_batch(&many)
        } else {
            fwd.push(&one)
        };
        match result {
            Ok(()) => sent += if batch { 253 } else { 1 },
            Err(ForwardError::WouldBlock) => {
                let mut fds = [PollFd::new(fwd.get_ref().as_fd(), PollFlags::POLLOUT)];
                poll(&mut fds, PollTimeout::NONE)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The receiving side: prints its CPU µs when all `n` sessions are in.
fn child(mode: &str, n: u64, path: &str) -> io::Result<()> {
    let conn = UnixStream::connect(path)?;
    let cpu0 = cpu_now();
    match mode {
        "raw" => {
            let len = 3 + header().header_len() + DATA.len();
            let mut buf = vec![0u8; len];
            for _ in 0..n {
                let mut got = 0;
                let mut fds = 0;
                while got < len {
                    let (k, fd) = raw::recvmsg(conn.as_fd(), &mut buf[got..])?;
                    if k == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    got += k;
                    fds += usize::from(fd.is_some());
                }
                if fds != 1 {
                    return Err(io::Error::other("one fd per session expected"));
                }
            }
        }
        "bind10" => {
            // SocketSessionReceiver::pop: recv_fd, then the length, header and data.
            let mut buf = [0u8; 512];
            let mut conn_r = &conn;
            for _ in 0..n {
                let (k, fd) = raw::recvmsg(conn.as_fd(), &mut buf[..1])?;
                if k != 1 || fd.is_none() {
                    return Err(io::Error::other("no fd byte"));
                }
                conn_r.read_exact(&mut buf[..2])?;
                let hlen = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                conn_r.read_exact(&mut buf[..hlen])?;
                let dlen =
                    u32::from_be_bytes(buf[hlen - 4..hlen].try_into().expect("4 bytes")) as usize;
                conn_r.read_exact(&mut buf[..dlen])?;
            }
        }
        _ => {
            let mut r = Receiver::new(conn)?;
            r.set_verify(mode == "handoff-verify");
            for _ in 0..n {
                if r.pop().map_err(io::Error::from)?.is_none() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
    println!("{}", (cpu_now() - cpu0).as_micros());
    Ok(())
}
