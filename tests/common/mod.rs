//! Helpers the integration tests share: fd counting, raw streams, golden bytes and
//! the example programs.
#![allow(dead_code)]

use std::io::IoSlice;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use handoff::{Header, Mode, Protocol, SocketType};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

/// Tests that count open fds hold this, so that no other test of the same binary
/// opens or closes fds meanwhile.
pub static FD_LOCK: Mutex<()> = Mutex::new(());

pub fn fd_lock() -> MutexGuard<'static, ()> {
    FD_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open fds of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Sends raw bytes with fds attached in one sendmsg, with nix: an implementation
/// independent of the forwarder, to build streams that break the rules.
pub fn send_raw(sock: &impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &[IoSlice::new(bytes)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .expect("sendmsg");
    assert_eq!(n, bytes.len());
}

/// A connected loopback TCP pair: (accepted side, client side).
pub fn tcp_pair(v6: bool) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (conn, _) = listener.accept().expect("accept");
    (conn, client)
}

/// A blocking UNIX stream pair: (forwarder side, receiver side).
pub fn pair() -> (UnixStream, UnixStream) {
    UnixStream::pair().expect("socketpair")
}

/// A well-formed IPv4 TCP session's bytes (no fd), with this data.
pub fn tcp_session_bytes(data: &[u8]) -> Vec<u8> {
    let h = golden_header();
    let mut v = h
        .encode(data.len(), Mode::Extended)
        .expect("encode")
        .to_vec();
    v.extend_from_slice(data);
    v
}

/// The header of SPEC §2's golden vector.
pub fn golden_header() -> Header {
    Header::new(
        SocketType::STREAM,
        Protocol::TCP,
        "127.0.0.1:37751".parse().expect("addr"),
        "127.0.0.1:55548".parse().expect("addr"),
    )
    .expect("header")
}

/// SPEC §2's golden vector as bytes (little-endian host).
pub fn golden_bytes() -> Vec<u8> {
    let text = "00 0038 00000002 00000001 00000006 00000010 0200 9377 7f000001 0000000000000000
        00000010 0200 d8fc 7f000001 0000000000000000 00000005 0102030405";
    let s: String = text.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The path of an example program built by `cargo test`.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples first (cargo test does)",
        path.display()
    );
    path
}

/// A fresh socket path under the temp dir.
pub fn sock_path(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "handoff-test-{}-{tag}-{n}.sock",
        std::process::id()
    ))
}

/// Waits for a child while draining its output, killing it after `secs` (so a hang
/// fails instead of hanging).
pub fn finish(child: Child, secs: u64) -> Output {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let out = rx.recv().unwrap().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            panic!("timed out; stdout began: {}", &text[..text.len().min(400)]);
        }
    }
}
