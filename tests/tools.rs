//! End to end between real processes: the `receive` and `forward` example programs
//! (and, as an independent peer, a Python forwarder) over real sockets, for TCP and
//! UDP on IPv4 and IPv6 and for UNIX, with data then flowing through the received
//! socket.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Starts `receive` on a fresh path and waits until it listens.
fn start_receive(args: &[&str], path: &Path) -> Child {
    // receive binds under a temporary name and renames into place: listening once
    // `path` is a new inode (a stale socket already there is not the listener).
    let inode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.ino());
    let stale = inode(path);
    let child = Command::new(example("receive"))
        .args(args)
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while inode(path).is_none() || inode(path) == stale {
        assert!(Instant::now() < deadline, "receive did not start listening");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn forward(args: &[&str]) -> Output {
    let child = Command::new(example("forward"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, 30)
}

/// The JSON lines a tool printed; asserts it printed nothing else.
fn lines(out: &Output) -> Vec<Value> {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn assert_error(out: &Output, name: &str) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let all = lines(out);
    let last = all.last().expect("an error line");
    assert_eq!(last["error"], name, "{last}");
    assert!(last["message"].as_str().unwrap().len() > 10);
    let mut k = keys(last);
    k.sort();
    assert_eq!(k, ["error", "message"]);
}

#[test]
fn stream_sessions_for_tcp4_tcp6_and_unix_carry_data_both_ways() {
    for (mode, family, protocol) in [("tcp4", 2, 6), ("tcp6", 10, 6), ("unix", 1, 0)] {
        let path = sock_path(mode);
        let rx = start_receive(&["--reply", "6f6b0a"], &path);
        let fwd = forward(&[
            "--mode",
            mode,
            "--count",
            "3",
            "--expect-reply",
            path.to_str().unwrap(),
            "0102ff",
        ]);
        let rx = finish(rx, 30);
        assert!(rx.status.success(), "{mode}: {rx:?}");
        assert!(fwd.status.success(), "{mode}: {fwd:?}");
        let sessions = lines(&rx);
        assert_eq!(sessions.len(), 3, "{mode}");
        for s in &sessions {
            let mut k = keys(s);
            k.sort();
            assert_eq!(k, ["data", "family", "local", "protocol", "remote", "type"]);
            assert_eq!(s["family"], family);
            assert_eq!(s["type"], 1);
            assert_eq!(s["protocol"], protocol);
            assert_eq!(s["data"], "0102ff");
        }
        let local = sessions[0]["local"].as_str().unwrap();
        let remote = sessions[0]["remote"].as_str().unwrap();
        match mode {
            "tcp4" => assert!(local.starts_with("127.0.0.1:") && remote.starts_with("127.0.0.1:")),
            "tcp6" => assert!(local.starts_with("[::1]:") && remote.starts_with("[::1]:")),
            _ => {
                assert!(
                    local.starts_with("unix:/") && local.ends_with(".sock"),
                    "{local}"
                );
                assert_eq!(remote, "unix:");
            }
        }
        // Each received copy answered, then closed; the client read to the end.
        assert_eq!(
            lines(&fwd),
            [serde_json::json!({"reply": "6f6b0a6f6b0a6f6b0a"})],
            "{mode}"
        );
    }
}

#[test]
fn udp_sessions_answer_the_remote_with_sendto() {
    for (mode, bind) in [("udp4", "127.0.0.1:0"), ("udp6", "[::1]:0")] {
        let client = UdpSocket::bind(bind).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let remote = client.local_addr().unwrap().to_string();
        let path = sock_path(mode);
        let rx = start_receive(&["--reply", "beef"], &path);
        let fwd = forward(&[
            "--mode",
            mode,
            "--remote",
            &remote,
            path.to_str().unwrap(),
            "abcd",
        ]);
        let rx = finish(rx, 30);
        assert!(
            fwd.status.success() && rx.status.success(),
            "{fwd:?} {rx:?}"
        );
        assert!(fwd.stdout.is_empty());
        let s = &lines(&rx)[0];
        assert_eq!(s["type"], 2);
        assert_eq!(s["protocol"], 17);
        assert_eq!(s["remote"], remote.as_str());
        let mut buf = [0u8; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[0xbe, 0xef]);
        // The answer came from the forwarded socket itself.
        assert_eq!(from.to_string(), s["local"].as_str().unwrap());
    }
}

#[test]
fn the_default_remotes_and_scope_ids_print_as_specified() {
    for (mode, remote, want) in [
        ("udp4", None, "192.0.2.1:53"),
        ("udp6", None, "[2001:db8::1]:53"),
        ("udp6", Some("[fe80::1%1]:53"), "[fe80::1%1]:53"),
    ] {
        let path = sock_path("remote");
        let rx = start_receive(&[], &path);
        let mut args = vec!["--mode", mode];
        if let Some(r) = remote {
            args.extend(["--remote", r]);
        }
        args.extend([path.to_str().unwrap(), "00"]);
        assert!(forward(&args).status.success());
        let rx = finish(rx, 30);
        assert_eq!(lines(&rx)[0]["remote"], want);
    }
}

#[test]
fn the_largest_and_the_empty_session() {
    let big = "a5".repeat(65535);
    let path = sock_path("big");
    let rx = start_receive(&["--reply", "00"], &path);
    let fwd = forward(&["--expect-reply", path.to_str().unwrap(), &big]);
    let rx = finish(rx, 30);
    assert!(fwd.status.success() && rx.status.success());
    assert_eq!(lines(&rx)[0]["data"], big.as_str());

    let path = sock_path("empty");
    let rx = start_receive(&[], &path);
    assert!(forward(&[path.to_str().unwrap(), ""]).status.success());
    assert_eq!(lines(&finish(rx, 30))[0]["data"], "");
}

#[test]
fn strict_mode_refuses_the_extensions() {
    for (args, name) in [
        (vec!["--strict"], "StrictEmptyData"),
        (vec!["--strict", "--mode", "unix"], "StrictUnix"),
    ] {
        let path = sock_path("strict");
        let rx = start_receive(&[], &path);
        let mut all = args.clone();
        let data = if name == "StrictEmptyData" { "" } else { "01" };
        all.extend([path.to_str().unwrap(), data]);
        let fwd = forward(&all);
        assert_error(&fwd, name);
        // The receiver saw a connection close without a session: a clean end.
        let rx = finish(rx, 30);
        assert!(rx.status.success() && rx.stdout.is_empty(), "{rx:?}");
    }
}

#[test]
fn receive_stops_after_count() {
    let path = sock_path("count");
    let rx = start_receive(&["--count", "2"], &path);
    let fwd = forward(&["--count", "2", path.to_str().unwrap(), "01"]);
    assert!(fwd.status.success());
    let rx = finish(rx, 30);
    assert!(rx.status.success());
    assert_eq!(lines(&rx).len(), 2);
}

#[test]
fn usage_and_connection_errors_are_error_lines() {
    let path = sock_path("nobody");
    assert_error(&forward(&[path.to_str().unwrap(), "01"]), "Io");
    assert_error(
        &forward(&["--remote", "1.2.3.4:5", path.to_str().unwrap(), "01"]),
        "Usage",
    );
    assert_error(&forward(&[path.to_str().unwrap(), "0g"]), "Usage");
    assert_error(
        &forward(&[
            "--mode",
            "udp4",
            "--remote",
            "[::1]:5",
            path.to_str().unwrap(),
            "01",
        ]),
        "Usage",
    );
    assert_error(
        &forward(&["--mode", "sctp", path.to_str().unwrap(), "01"]),
        "Usage",
    );
}

/// A stale socket file from an earlier run is removed; a regular file is not.
#[test]
fn receive_replaces_a_stale_socket_but_not_a_file() {
    let path = sock_path("stale");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let rx = start_receive(&[], &path);
    assert!(forward(&[path.to_str().unwrap(), "01"]).status.success());
    assert!(finish(rx, 30).status.success());

    let file = sock_path("file");
    std::fs::write(&file, b"precious").unwrap();
    let out = Command::new(example("receive"))
        .arg(&file)
        .output()
        .unwrap();
    assert_error(&out, "Io");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    std::fs::remove_file(&file).unwrap();
}

// An independent forwarder in Python, for what our own will never send.
const PY_FORWARDER: &str = r#"
import os, socket, sys
path, data, how = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen()
c = socket.create_connection(l.getsockname())
conn, _ = l.accept()
if how == "bind10":
    # BIND 10's framing: the fd byte with the fd in one sendmsg, the rest in a write.
    socket.send_fds(s, [data[:1]], [conn.fileno()])
    s.sendall(data[1:])
elif how == "die":
    socket.send_fds(s, [data[: len(data) // 2]], [conn.fileno()])
    os.kill(os.getpid(), 9)
elif how == "nofd":
    s.sendall(data)
elif how == "twofds":
    socket.send_fds(s, [data], [conn.fileno(), conn.fileno()])
elif how == "pipe":
    r, w = os.pipe()
    socket.send_fds(s, [data], [r])
s.close()
conn.close()
reply = b""
while True:
    chunk = c.recv(4096)
    if not chunk:
        break
    reply += chunk
print(reply.hex())
"#;

fn py_forward(path: &Path, how: &str) -> Output {
    let hex: String = tcp_session_bytes(b"\x01\x02\x03\x04\x05")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let child = Command::new("python3")
        .args(["-c", PY_FORWARDER, path.to_str().unwrap(), &hex, how])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    finish(child, 30)
}

#[test]
fn a_bind10_style_forwarder_interoperates() {
    let path = sock_path("bind10");
    let rx = start_receive(&["--reply", "2a"], &path);
    let py = py_forward(&path, "bind10");
    let rx = finish(rx, 30);
    assert!(rx.status.success(), "{rx:?}");
    assert_eq!(
        lines(&rx),
        [
            serde_json::json!({"family":2,"type":1,"protocol":6,"local":"127.0.0.1:37751","remote":"127.0.0.1:55548","data":"0102030405"})
        ]
    );
    assert!(py.status.success(), "{py:?}");
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "2a",
        "the reply flowed back"
    );
}

#[test]
fn a_forwarder_that_dies_mid_session_is_incomplete() {
    let path = sock_path("die");
    let rx = start_receive(&[], &path);
    let py = py_forward(&path, "die");
    assert!(!py.status.success());
    assert_error(&finish(rx, 30), "Incomplete");
}

#[test]
fn fd_rules_are_visible_in_the_tools() {
    for (how, name, printed) in [
        ("nofd", "FdMissing", 0),
        ("twofds", "UnclaimedFds", 1),
        ("pipe", "NotASocket", 0),
    ] {
        let path = sock_path(how);
        let rx = start_receive(&[], &path);
        py_forward(&path, how);
        let rx = finish(rx, 30);
        assert_error(&rx, name);
        assert_eq!(lines(&rx).len(), printed + 1, "{how}");
    }
    // --no-verify lets the pipe through.
    let path = sock_path("pipe-noverify");
    let rx = start_receive(&["--no-verify"], &path);
    py_forward(&path, "pipe");
    let rx = finish(rx, 30);
    assert!(rx.status.success(), "{rx:?}");
    assert_eq!(lines(&rx).len(), 1);
}

/// Success is silent on stderr: only the JSON lines on stdout.
#[test]
fn the_tools_print_nothing_on_stderr() {
    let path = sock_path("quiet");
    let mut rx = start_receive(&[], &path);
    let fwd = forward(&[path.to_str().unwrap(), "01"]);
    assert!(fwd.stderr.is_empty());
    let mut err = String::new();
    rx.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.is_empty(), "{err}");
    assert!(finish(rx, 30).status.success());
}
