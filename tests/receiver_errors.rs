//! Every failure path of `Receiver::pop`, each with the count of open fds before and
//! after: whatever arrived is closed, and the receiver is poisoned where it must be.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::Duration;

use common::*;
use handoff::proto::{DecodeError, Field};
use handoff::{ReceiveError, Receiver};
use nix::sys::socket::{setsockopt, sockopt};

/// Runs `scenario` with a fresh pair; `scenario` sends, pops, and returns the error.
/// Checks that the error closed every fd that arrived (the count after equals the
/// count before anything was sent) and that nothing leaks in the end.
fn check(
    scenario: impl FnOnce(&mut Receiver, std::os::unix::net::UnixStream) -> ReceiveError,
) -> ReceiveError {
    let _guard = fd_lock();
    let start = open_fds();
    let err;
    {
        let (tx, rx) = pair();
        let mut receiver = Receiver::new(rx).unwrap();
        let before = open_fds();
        err = scenario(&mut receiver, tx);
        assert_eq!(
            open_fds(),
            before - 1,
            "{err:?}: received fds left open (tx dropped)"
        );
        if err.is_fatal() {
            assert!(matches!(receiver.pop(), Err(ReceiveError::Poisoned)));
        }
    }
    assert_eq!(open_fds(), start, "{err:?}: fds leaked");
    err
}

#[test]
fn bad_fd_byte_closes_the_fd() {
    let err = check(|r, tx| {
        let (conn, _client) = tcp_pair(false);
        let mut bytes = tcp_session_bytes(b"x");
        bytes[0] = 7;
        send_raw(&tx, &bytes, &[conn.as_fd()]);
        drop((tx, conn, _client));
        r.pop().unwrap_err()
    });
    assert!(matches!(
        err,
        ReceiveError::Decode(DecodeError::FdByte { byte: 7 })
    ));
}

#[test]
fn header_too_long_closes_the_fd() {
    let err = check(|r, tx| {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        send_raw(&tx, &[0, 1, 27], &[sock.as_fd(), sock.as_fd()]);
        drop((tx, sock));
        r.pop().unwrap_err()
    });
    assert!(matches!(
        err,
        ReceiveError::Decode(DecodeError::HeaderTooLong { len: 283, .. })
    ));
}

#[test]
fn field_past_header_closes_the_fd() {
    let err = check(|r, tx| {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut bytes = tcp_session_bytes(b"x");
        bytes[2] = 20; // header_len cuts the local endpoint
        send_raw(&tx, &bytes, &[sock.as_fd()]);
        drop((tx, sock));
        r.pop().unwrap_err()
    });
    assert!(matches!(
        err,
        ReceiveError::Decode(DecodeError::PastHeader {
            field: Field::Local,
            header_len: 20
        })
    ));
}

#[test]
fn end_of_stream_inside_a_session_is_incomplete() {
    let err = check(|r, tx| {
        let (conn, _client) = tcp_pair(false);
        let bytes = tcp_session_bytes(b"hello");
        send_raw(&tx, &bytes[..40], &[conn.as_fd()]);
        drop((tx, conn, _client));
        r.pop().unwrap_err()
    });
    assert!(matches!(err, ReceiveError::Incomplete { buffered: 40 }));
}

#[test]
fn end_of_stream_inside_the_data_is_incomplete() {
    let err = check(|r, tx| {
        let (conn, _client) = tcp_pair(false);
        let bytes = tcp_session_bytes(b"hello");
        send_raw(&tx, &bytes[..bytes.len() - 1], &[conn.as_fd()]);
        drop((tx, conn, _client));
        r.pop().unwrap_err()
    });
    assert!(matches!(err, ReceiveError::Incomplete { buffered: 63 }));
}

#[test]
fn first_byte_without_its_fd() {
    let err = check(|r, tx| {
        send_raw(&tx, &tcp_session_bytes(b"x"), &[]);
        r.pop().unwrap_err()
    });
    assert!(matches!(err, ReceiveError::FdMissing));
}

#[test]
fn fd_arriving_after_the_first_byte_is_refused() {
    let err = check(|r, tx| {
        let (conn, _client) = tcp_pair(false);
        let bytes = tcp_session_bytes(b"x");
        send_raw(&tx, &bytes[..1], &[]);
        let err = r.pop().unwrap_err();
        // The fd comes too late; it is closed with the connection.
        send_raw(&tx, &bytes[1..], &[conn.as_fd()]);
        drop((tx, conn, _client));
        err
    });
    assert!(matches!(err, ReceiveError::FdMissing));
}

#[test]
fn two_fds_for_one_session_are_caught_before_the_next_takes_a_wrong_one() {
    let err = check(|r, tx| {
        let (a, _ca) = tcp_pair(false);
        let (b, _cb) = tcp_pair(false);
        let bytes = tcp_session_bytes(b"x");
        send_raw(&tx, &bytes, &[a.as_fd(), a.as_fd()]);
        send_raw(&tx, &bytes, &[b.as_fd()]);
        let first = r.pop().unwrap().unwrap();
        drop(first);
        drop((tx, a, b, _ca, _cb));
        r.pop().unwrap_err()
    });
    assert!(matches!(err, ReceiveError::ExtraFds { held: 2 }));
}

#[test]
fn fds_in_the_middle_of_a_session_are_extra() {
    let err = check(|r, tx| {
        let (a, _ca) = tcp_pair(false);
        let bytes = tcp_session_bytes(b"hello");
        send_raw(&tx, &bytes[..30], &[a.as_fd()]);
        send_raw(&tx, &bytes[30..], &[a.as_fd()]);
        drop((tx, a, _ca));
        r.pop().unwrap_err()
    });
    assert!(matches!(err, ReceiveError::ExtraFds { held: 2 }));
}

#[test]
fn fds_left_at_end_of_stream_are_unclaimed() {
    let err = check(|r, tx| {
        let (a, _ca) = tcp_pair(false);
        let bytes = tcp_session_bytes(b"x");
        // One message, one session, three fds: the first session is fine, and at the
        // end two fds have no session.
        send_raw(&tx, &bytes, &[a.as_fd(), a.as_fd(), a.as_fd()]);
        drop((tx, a, _ca));
        let s = r.pop().unwrap().unwrap();
        assert_eq!(&s.data()[..], b"x");
        drop(s);
        r.pop().unwrap_err()
    });
    assert!(matches!(err, ReceiveError::UnclaimedFds { count: 2 }));
}

#[test]
fn credentials_are_an_unexpected_control_message() {
    let err = check(|r, tx| {
        setsockopt(r.get_ref(), sockopt::PassCred, &true).unwrap();
        let (a, _ca) = tcp_pair(false);
        send_raw(&tx, &tcp_session_bytes(b"x"), &[a.as_fd()]);
        drop((tx, a, _ca));
        r.pop().unwrap_err()
    });
    assert!(
        matches!(err, ReceiveError::UnexpectedControl { level: 1, kind: 2 }),
        "{err:?}"
    );
}

#[test]
fn a_pipe_is_not_a_socket_and_the_next_session_still_comes() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, rx) = pair();
        let mut r = Receiver::new(rx).unwrap();
        let (pipe_r, pipe_w) = nix::unistd::pipe().unwrap();
        let (a, _ca) = tcp_pair(false);
        let bytes = tcp_session_bytes(b"x");
        send_raw(&tx, &bytes, &[pipe_r.as_fd()]);
        send_raw(&tx, &bytes, &[a.as_fd()]);
        drop((pipe_r, pipe_w));
        let before = open_fds();
        let err = r.pop().unwrap_err();
        assert!(matches!(err, ReceiveError::NotASocket(_)), "{err:?}");
        assert!(!err.is_fatal());
        assert_eq!(open_fds(), before, "the pipe was closed");
        let s = r.pop().unwrap().unwrap();
        assert_eq!(&s.data()[..], b"x");
    }
    assert_eq!(open_fds(), start);
}

#[test]
fn a_udp_socket_under_a_tcp_header_is_a_mismatch() {
    let err = check(|r, tx| {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        send_raw(&tx, &tcp_session_bytes(b"x"), &[sock.as_fd()]);
        drop((tx, sock));
        let err = r.pop().unwrap_err();
        // Not fatal: the stream is in step; it then ends cleanly.
        assert!(matches!(r.pop(), Ok(None)));
        err
    });
    assert!(
        matches!(
            err,
            ReceiveError::SocketMismatch {
                domain: 2,
                actual_type: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn with_verification_off_the_mismatch_passes() {
    let _guard = fd_lock();
    let (tx, rx) = pair();
    let mut r = Receiver::new(rx).unwrap();
    r.set_verify(false);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    send_raw(&tx, &tcp_session_bytes(b"x"), &[sock.as_fd()]);
    assert!(r.pop().unwrap().is_some());
}

#[test]
fn a_stalled_forwarder_times_out_and_the_session_survives() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, rx) = pair();
        let mut r = Receiver::new(rx).unwrap();
        r.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let (a, _ca) = tcp_pair(false);
        let bytes = tcp_session_bytes(b"hello");
        send_raw(&tx, &bytes[..10], &[a.as_fd()]);
        let err = r.pop().unwrap_err();
        assert!(
            matches!(err, ReceiveError::TimedOut { buffered: 10 }),
            "{err:?}"
        );
        assert!(!err.is_fatal());
        send_raw(&tx, &bytes[10..], &[]);
        let s = r.pop().unwrap().unwrap();
        assert_eq!(&s.data()[..], b"hello");
        drop(tx);
        assert!(r.pop().unwrap().is_none());
    }
    assert_eq!(open_fds(), start);
}

#[test]
fn a_timeout_at_a_boundary_leaves_nothing_behind() {
    let _guard = fd_lock();
    let (_tx, rx) = pair();
    let mut r = Receiver::new(rx).unwrap();
    r.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    assert!(matches!(
        r.pop(),
        Err(ReceiveError::TimedOut { buffered: 0 })
    ));
}

#[test]
fn a_clean_end_at_a_boundary_is_not_an_error() {
    let _guard = fd_lock();
    let (tx, rx) = pair();
    let mut r = Receiver::new(rx).unwrap();
    drop(tx);
    assert!(r.pop().unwrap().is_none());
    assert!(r.pop().unwrap().is_none(), "and stays so");
}

/// `MSG_CTRUNC`: the kernel cannot install the fds when the receiving process is at
/// its open-file limit. Run in a child process (this test binary, re-executed) so that
/// lowering the limit touches no other test.
#[test]
fn truncated_control_data_closes_what_arrived() {
    if std::env::var_os("HANDOFF_CTRUNC_CHILD").is_some() {
        return ctrunc_child();
    }
    // Spawning opens pipes: keep the fd counts of the other tests exact.
    let _guard = fd_lock();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "truncated_control_data_closes_what_arrived",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HANDOFF_CTRUNC_CHILD", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("CTRUNC-CHECKED"),
        "child did not run the check:\n{text}"
    );
}

fn ctrunc_child() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (tx, rx) = pair();
    let mut r = Receiver::new(rx).unwrap();
    let socks: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let fds: Vec<_> = socks.iter().map(|s| s.as_fd()).collect();
    send_raw(&tx, &tcp_session_bytes(b"x"), &fds);
    drop(socks);
    // Room for three more fds: the kernel installs some and drops the rest.
    let open = open_fds() as u64;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, open + 2, hard).unwrap();
    let before = open_fds();
    let err = r.pop().unwrap_err();
    assert!(matches!(err, ReceiveError::ControlTruncated), "{err:?}");
    assert_eq!(open_fds(), before, "the fds that did arrive were closed");
    assert!(matches!(r.pop(), Err(ReceiveError::Poisoned)));
    println!("CTRUNC-CHECKED");
}
