//! Socket activation with the real `systemd-socket-activate`, driving the
//! `listen_and_serve` example: named listeners served by the right handler, the
//! connection that triggered activation served, `Accept=yes`, name-count mismatches,
//! a `LISTEN_PID` that is not ours, and children that see no `LISTEN_*` variables.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

fn activate(args: &[&str], server_args: &[&str]) -> Child {
    assert!(
        Path::new(ACTIVATE).exists(),
        "{ACTIVATE} is missing: install Debian's systemd package (.ci/run does)"
    );
    Command::new(ACTIVATE)
        .args(args)
        .arg(example("listen_and_serve"))
        .args(server_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A loopback port nobody uses right now.
fn free_port(v6: bool) -> u16 {
    TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" })
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects, retrying while the activator sets up its listeners.
fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("cannot connect to {addr}: {e}"),
        }
    }
}

/// Connects and reads the reply to the end.
fn ask(addr: SocketAddr) -> String {
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn ask_unix(connect: impl Fn() -> std::io::Result<UnixStream>) -> String {
    let mut s = connect().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn words(reply: &str) -> Vec<String> {
    reply.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn named_listeners_each_served_by_the_right_handler() {
    let (p4, p6) = (free_port(false), free_port(true));
    let path = sock_path("activated");
    let abs = format!("handoff-activated-{}", std::process::id());
    let l4 = format!("127.0.0.1:{p4}");
    let l6 = format!("[::1]:{p6}");
    let child = activate(
        &[
            "-l",
            &l4,
            "-l",
            &l6,
            "-l",
            path.to_str().unwrap(),
            "-l",
            &format!("@{abs}"),
            "--fdname=web:web6:local:abs",
        ],
        &["--count", "4"],
    );
    // This first connection triggers the start, and is served.
    let first = words(&ask(l4.parse().unwrap()));
    assert_eq!(first[0], "web");
    assert_eq!(&first[2..], ["systemd", "child-env:clean"]);
    let pid = first[1].clone();
    let v6 = words(&ask(l6.parse().unwrap()));
    assert_eq!((v6[0].as_str(), &v6[1]), ("web6", &pid));
    let local = words(&ask_unix(|| UnixStream::connect(&path)));
    assert_eq!((local[0].as_str(), &local[1]), ("local", &pid));
    let abs_addr = std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes()).unwrap();
    let a = words(&ask_unix(|| UnixStream::connect_addr(&abs_addr)));
    assert_eq!((a[0].as_str(), &a[1]), ("abs", &pid));

    let out = finish(child, 30);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains(&format!("listening web tcp:{l4} systemd")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("listening web6 tcp:{l6} systemd")),
        "{printed}"
    );
    let _ = std::fs::remove_file(&path);
}

use std::os::linux::net::SocketAddrExt;

#[test]
fn accept_yes_connections_are_served_not_accepted_on() {
    let port = free_port(false);
    let l = format!("127.0.0.1:{port}");
    let mut child = activate(&["-a", "-l", &l], &[]);
    let one = words(&ask(l.parse().unwrap()));
    let two = words(&ask(l.parse().unwrap()));
    for w in [&one, &two] {
        assert_eq!(&w[2..], ["accept-yes", "child-env:clean"], "{w:?}");
    }
    assert_ne!(one[1], two[1], "one process per connection");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_name_count_mismatch_is_an_error_unless_lenient() {
    // systemd-socket-activate (before v258) passes three names for two fds here.
    let (a, b) = (free_port(false), free_port(false));
    let (la, lb) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}"));
    let strict = activate(&["-l", &la, "-l", &lb, "--fdname=x:y:z"], &[]);
    let _trigger = connect(la.parse().unwrap()); // starts the server
    let out = finish(strict, 30);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LISTEN_FDNAMES has 3 names for 2 fds"),
        "{err}"
    );

    let (a, b) = (free_port(false), free_port(false));
    let (la, lb) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}"));
    let lenient = activate(
        &["-l", &la, "-l", &lb, "--fdname=x:y:z"],
        &["--lenient-names", "--count", "2"],
    );
    assert_eq!(words(&ask(la.parse().unwrap()))[0], "x");
    assert_eq!(words(&ask(lb.parse().unwrap()))[0], "y");
    assert!(finish(lenient, 30).status.success());
}

#[test]
fn a_listen_pid_of_another_process_falls_back_to_binding() {
    let out_child = Command::new(example("listen_and_serve"))
        .args(["--tcp", "127.0.0.1:0", "--count", "1"])
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "stolen")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = out_child;
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.ends_with(" bound\n"), "{line}");
    let addr = line
        .split(' ')
        .nth(2)
        .unwrap()
        .strip_prefix("tcp:")
        .unwrap();
    let reply = words(&ask(addr.parse().unwrap()));
    // Not for us, yet removed: the server's children do not see them either.
    assert_eq!(&reply[2..], ["bound", "child-env:clean"]);
    assert!(child.wait().unwrap().success());
}

/// The window's fds must be open sockets: a closed fd 3 or a file there is an error
/// that names the fd (the shell keeps its pid through `exec`, so LISTEN_PID is right).
#[test]
fn fds_in_the_window_must_be_open_sockets() {
    let server = example("listen_and_serve");
    for (setup, want) in [
        (
            "exec 3<&-",
            "fd 3 (unknown) was passed but cannot be used: Bad file descriptor",
        ),
        (
            "exec 3</dev/null",
            "fd 3 (unknown) was passed but cannot be used: Socket operation on non-socket",
        ),
    ] {
        let script = format!("{setup}; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\"");
        let out = Command::new("sh")
            .args(["-c", &script])
            .arg(&server)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{setup}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{setup}: {err}");
    }
}
