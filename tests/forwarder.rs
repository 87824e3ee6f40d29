//! The Forwarder: exact bytes, one sendmsg per session, would-block without
//! blocking, poisoning after a partial write, argument errors that write nothing,
//! batches, and the conveniences that read the header off the socket.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use handoff::proto::EncodeError;
use handoff::{
    Endpoint, ForwardError, Forwarder, Header, Mode, Outgoing, Protocol, Receiver, SocketType,
};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// One raw recvmsg: the bytes and the fds (as raw numbers, closed by the caller).
fn recv_raw(sock: &UnixStream) -> (Vec<u8>, Vec<RawFd>) {
    let mut buf = vec![0u8; 1 << 20];
    let mut cmsg = nix::cmsg_space!([RawFd; 253]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fds = Vec::new();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(v) = c {
            fds.extend(v);
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    (buf, fds)
}

fn close_raw(fds: Vec<RawFd>) {
    for fd in fds {
        nix::unistd::close(fd).unwrap();
    }
}

#[cfg(target_endian = "little")]
#[test]
fn writes_the_golden_vector_in_one_sendmsg() {
    let _guard = fd_lock();
    let (tx, rx) = pair();
    let mut fwd = Forwarder::from_stream(tx).unwrap();
    fwd.set_mode(Mode::Bind10);
    let (conn, _client) = tcp_pair(false);
    fwd.push(&Outgoing::new(
        conn.as_fd(),
        golden_header(),
        &[1, 2, 3, 4, 5],
    ))
    .unwrap();
    let (bytes, fds) = recv_raw(&rx);
    assert_eq!(bytes, golden_bytes(), "byte for byte what BIND 10 wrote");
    assert_eq!(fds.len(), 1, "the fd rides on the same message");
    close_raw(fds);
}

#[test]
fn the_header_comes_from_the_socket() {
    let _guard = fd_lock();
    let (tx, rx) = pair();
    let mut fwd = Forwarder::from_stream(tx).unwrap();
    let mut r = Receiver::new(rx).unwrap();
    for v6 in [false, true] {
        let (conn, client) = tcp_pair(v6);
        fwd.push_tcp(&conn, b"tcp").unwrap();
        let s = r.pop().unwrap().unwrap();
        assert_eq!(s.local().ip(), Some(conn.local_addr().unwrap()));
        assert_eq!(s.remote().ip(), Some(client.local_addr().unwrap()));
        assert_eq!(
            (s.socket_type(), s.protocol()),
            (SocketType::STREAM, Protocol::TCP)
        );
    }
    let udp = UdpSocket::bind("[::1]:0").unwrap();
    let remote: SocketAddr = "[2001:db8::7]:5353".parse().unwrap();
    fwd.push_udp(&udp, remote, b"dgram").unwrap();
    let s = r.pop().unwrap().unwrap();
    assert_eq!(s.local().ip(), Some(udp.local_addr().unwrap()));
    assert_eq!(s.remote().ip(), Some(remote));
    assert_eq!(
        (s.socket_type(), s.protocol()),
        (SocketType::DGRAM, Protocol::UDP)
    );

    let (a, _b) = UnixStream::pair().unwrap();
    fwd.push_unix(&a, b"").unwrap();
    let s = r.pop().unwrap().unwrap();
    assert_eq!(s.local().to_string(), "unix:");
    assert_eq!(
        (s.socket_type(), s.protocol()),
        (SocketType::STREAM, Protocol::DEFAULT)
    );
    assert!(s.data().is_empty());
}

#[test]
fn argument_errors_write_nothing() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, rx) = pair();
        let mut fwd = Forwarder::from_stream(tx).unwrap();
        let (conn, _client) = tcp_pair(false);
        let big = vec![0u8; 65536];
        let err = fwd.push_tcp(&conn, &big).unwrap_err();
        assert!(matches!(
            err,
            ForwardError::Encode(EncodeError::DataTooLong { len: 65536, .. })
        ));

        let udp4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = fwd
            .push_udp(&udp4, "[::1]:53".parse().unwrap(), b"x")
            .unwrap_err();
        assert!(matches!(
            err,
            ForwardError::Encode(EncodeError::FamilyMismatch { .. })
        ));

        fwd.set_mode(Mode::Bind10);
        let err = fwd.push_tcp(&conn, b"").unwrap_err();
        assert!(matches!(
            err,
            ForwardError::Encode(EncodeError::StrictEmptyData)
        ));
        let (a, _b) = UnixStream::pair().unwrap();
        let err = fwd.push_unix(&a, b"x").unwrap_err();
        assert!(matches!(err, ForwardError::Encode(EncodeError::StrictUnix)));
        let one = Outgoing::tcp(&conn, b"x").unwrap();
        let err = fwd.push_batch(&[one.clone(), one.clone()]).unwrap_err();
        assert!(matches!(err, ForwardError::StrictBatch));

        fwd.set_mode(Mode::Extended);
        let many = vec![one.clone(); 254];
        let err = fwd.push_batch(&many).unwrap_err();
        assert!(matches!(
            err,
            ForwardError::BatchTooLarge { len: 254, max: 253 }
        ));
        // One bad session spoils the batch before anything is sent.
        let bad = Outgoing::new(conn.as_fd(), golden_header(), &big);
        assert!(fwd.push_batch(&[one.clone(), bad]).is_err());
        assert!(!fwd.is_poisoned());

        drop(fwd);
        let mut r = Receiver::new(rx).unwrap();
        assert!(r.pop().unwrap().is_none(), "not a byte was written");
    }
    assert_eq!(open_fds(), start);
}

/// A receiver that never reads: each push answers at once, the last with
/// would-block; the connection stays usable; draining finds every pushed session.
#[test]
fn a_receiver_that_never_reads_gets_would_block_not_a_hang() {
    let _guard = fd_lock();
    let (tx, rx) = pair();
    let (done_tx, done_rx) = mpsc::channel();
    let pusher = std::thread::spawn(move || {
        let mut fwd = Forwarder::from_stream(tx).unwrap();
        let (conn, _client) = tcp_pair(false);
        let mut pushed = 0u32;
        let err = loop {
            match fwd.push_tcp(&conn, &pushed.to_be_bytes()) {
                Ok(()) => pushed += 1,
                Err(e) => break e,
            }
        };
        done_tx.send(()).unwrap();
        (fwd, conn, pushed, err)
    });
    // A push that blocked would never get here.
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("push blocked");
    let (mut fwd, conn, pushed, err) = pusher.join().unwrap();
    assert!(err.is_would_block(), "{err:?}");
    assert!(!fwd.is_poisoned());
    assert!(pushed > 10, "only {pushed} pushed");

    let mut r = Receiver::new(rx).unwrap();
    for i in 0..pushed {
        let s = r.pop().unwrap().unwrap();
        assert_eq!(&s.data()[..], &i.to_be_bytes(), "session {i} in order");
    }
    fwd.push_tcp(&conn, b"after").unwrap();
    assert_eq!(&r.pop().unwrap().unwrap().data()[..], b"after");
    drop(fwd);
    assert!(
        r.pop().unwrap().is_none(),
        "the stream is well formed to its end"
    );
}

/// Sessions too large for what is left of the send buffer are cut short: the
/// connection is poisoned, and the receiver sees the whole ones, then Incomplete.
#[test]
fn a_partial_write_poisons() {
    let _guard = fd_lock();
    let (tx, rx) = pair();
    let mut fwd = Forwarder::from_stream(tx).unwrap();
    let (conn, _client) = tcp_pair(false);
    let big = vec![0xabu8; 65535];
    let mut whole = 0;
    let err = loop {
        match fwd.push_tcp(&conn, &big) {
            Ok(()) => whole += 1,
            Err(e) => break e,
        }
    };
    match err {
        ForwardError::Partial { written, total } => {
            assert!(written > 0 && written < total);
            assert!(fwd.is_poisoned());
            assert!(matches!(
                fwd.push_tcp(&conn, b"x"),
                Err(ForwardError::Poisoned)
            ));
            drop(fwd);
            let mut r = Receiver::new(rx).unwrap();
            for _ in 0..whole {
                assert_eq!(r.pop().unwrap().unwrap().data().len(), 65535);
            }
            assert!(matches!(
                r.pop(),
                Err(handoff::ReceiveError::Incomplete { .. })
            ));
        }
        // The buffer filled exactly at a session boundary: nothing to poison.
        ForwardError::WouldBlock => assert!(!fwd.is_poisoned()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_batch_is_one_sendmsg_with_all_its_fds() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, rx) = pair();
        let mut fwd = Forwarder::from_stream(tx).unwrap();
        let (conn, _client) = tcp_pair(false);
        let data: Vec<[u8; 2]> = (0..253u16).map(|i| i.to_be_bytes()).collect();
        let batch: Vec<Outgoing<'_>> = data
            .iter()
            .map(|d| Outgoing::tcp(&conn, d).unwrap())
            .collect();
        fwd.push_batch(&batch).unwrap();
        let (bytes, fds) = recv_raw(&rx);
        assert_eq!(fds.len(), 253);
        assert_eq!(bytes.len(), 253 * (3 + 56 + 2));
        close_raw(fds);

        // And the receiver takes it apart in order.
        fwd.push_batch(&batch).unwrap();
        drop(fwd);
        let mut r = Receiver::new(rx).unwrap();
        for d in &data {
            assert_eq!(&r.pop().unwrap().unwrap().data()[..], d);
        }
        assert!(r.pop().unwrap().is_none());
    }
    assert_eq!(open_fds(), start);
}

/// SIGPIPE pending for this thread, from /proc: with SIGPIPE blocked, a send that
/// raises it leaves it pending instead of delivered (and the runtime's SIG_IGN does not
/// discard a blocked signal).
fn sigpipe_pending() -> bool {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("SigPnd:")).unwrap();
    let mask = u64::from_str_radix(line["SigPnd:".len()..].trim(), 16).unwrap();
    mask & (1 << (libc::SIGPIPE - 1)) != 0
}

#[test]
fn a_gone_receiver_is_an_error_not_a_signal() {
    let _guard = fd_lock();
    // A thread of its own: its blocked mask and pending signals die with it.
    std::thread::spawn(|| {
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(nix::sys::signal::Signal::SIGPIPE);
        set.thread_block().unwrap();

        let (tx, rx) = pair();
        drop(rx);
        let mut fwd = Forwarder::from_stream(tx).unwrap();
        let (conn, _client) = tcp_pair(false);
        match fwd.push_tcp(&conn, b"x").unwrap_err() {
            ForwardError::Io(e) => assert_eq!(e.raw_os_error(), Some(libc::EPIPE)),
            other => panic!("{other:?}"),
        }
        assert!(!sigpipe_pending(), "the forwarder raised SIGPIPE");

        // The check can see one: a send(2) without MSG_NOSIGNAL to a gone peer.
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        assert!(nix::sys::socket::send(a.as_raw_fd(), b"x", MsgFlags::empty()).is_err());
        assert!(
            sigpipe_pending(),
            "control: send(2) should have raised SIGPIPE"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn a_hand_built_header_goes_out_as_given() {
    let _guard = fd_lock();
    let (tx, rx) = pair();
    let mut fwd = Forwarder::from_stream(tx).unwrap();
    let mut r = Receiver::new(rx).unwrap();
    r.set_verify(false);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let header = Header::new(
        SocketType::DGRAM,
        Protocol::UDP,
        Endpoint::V4("10.9.8.7:53".parse().unwrap()),
        Endpoint::V4("192.0.2.2:5300".parse().unwrap()),
    )
    .unwrap();
    fwd.push(&Outgoing::new(udp.as_fd(), header.clone(), b"\x01\x02\xff"))
        .unwrap();
    let s = r.pop().unwrap().unwrap();
    assert_eq!(s.header(), &header);
    assert_eq!(
        s.into_udp_socket().unwrap().local_addr().unwrap(),
        udp.local_addr().unwrap()
    );
}

#[test]
fn connects_to_an_abstract_name() {
    use std::os::linux::net::SocketAddrExt;
    let _guard = fd_lock();
    let name = format!("handoff-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let mut fwd = Forwarder::connect_abstract(name.as_bytes()).unwrap();
    let (rx, _) = listener.accept().unwrap();
    let (conn, _client) = tcp_pair(true);
    fwd.push_tcp(&conn, b"abstract").unwrap();
    let s = Receiver::new(rx).unwrap().pop().unwrap().unwrap();
    assert_eq!(&s.data()[..], b"abstract");
    assert_eq!(s.family(), handoff::Family::Inet6);
}
