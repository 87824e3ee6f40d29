//! Every legal way of putting sessions and their fds on the stream — one sendmsg
//! per session, BIND 10's fd byte then the rest, batches, batches whose bytes
//! trail their fds, bytes cut anywhere — read by a receiver running concurrently:
//! each session must arrive with its own fd, and nothing else may be reported.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::net::UdpSocket;
use std::os::fd::AsFd;

use common::*;
use handoff::{Header, Mode, Protocol, Receiver, SocketType};

/// A session whose header names its own socket's port, so the receiver can check
/// that the fd it got is the one that belongs to it.
struct Planned {
    socket: UdpSocket,
    bytes: Vec<u8>,
}

fn plan(n: usize) -> Vec<Planned> {
    (0..n)
        .map(|i| {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let header = Header::new(
                SocketType::DGRAM,
                Protocol::UDP,
                socket.local_addr().unwrap().into(),
                "192.0.2.1:53".parse().unwrap(),
            )
            .unwrap();
            let data = vec![i as u8; i % 300];
            let mut bytes = header.encode(data.len(), Mode::Extended).unwrap().to_vec();
            bytes.extend_from_slice(&data);
            Planned { socket, bytes }
        })
        .collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Sends `bytes` in pieces cut at random; the fds go with the first piece.
fn send_cut(
    tx: &std::os::unix::net::UnixStream,
    bytes: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
    rng: &mut Rng,
) {
    let mut at = 0;
    let mut first = true;
    while at < bytes.len() {
        let piece = 1 + rng.below((bytes.len() - at).min(97));
        send_raw(tx, &bytes[at..at + piece], if first { fds } else { &[] });
        first = false;
        at += piece;
        if rng.below(8) == 0 {
            std::thread::yield_now();
        }
    }
}

#[test]
fn every_legal_framing_delivers_each_fd_to_its_own_session() {
    let _guard = fd_lock();
    for seed in [1u64, 7, 0xdead_beef] {
        let sessions = plan(600);
        let (tx, rx) = pair();
        let expected: Vec<u16> = sessions
            .iter()
            .map(|s| s.socket.local_addr().unwrap().port())
            .collect();
        let reader = std::thread::spawn(move || {
            let mut r = Receiver::new(rx).unwrap();
            let mut got = Vec::new();
            while let Some(s) = r
                .pop()
                .unwrap_or_else(|e| panic!("after {} sessions: {e:?}", got.len()))
            {
                let header_port = s.local().ip().unwrap().port();
                let fd_port = s.into_udp_socket().unwrap().local_addr().unwrap().port();
                assert_eq!(
                    header_port,
                    fd_port,
                    "session {} got another session's fd",
                    got.len()
                );
                got.push(fd_port);
            }
            got
        });
        let mut rng = Rng(seed);
        let mut i = 0;
        while i < sessions.len() {
            match rng.below(4) {
                // One sendmsg: fd, header and data.
                0 => {
                    send_raw(&tx, &sessions[i].bytes, &[sessions[i].socket.as_fd()]);
                    i += 1;
                }
                // BIND 10: the fd byte with the fd, then the rest in pieces.
                1 => {
                    let s = &sessions[i];
                    send_raw(&tx, &s.bytes[..1], &[s.socket.as_fd()]);
                    send_cut(&tx, &s.bytes[1..], &[], &mut rng);
                    i += 1;
                }
                // A batch in one sendmsg.
                2 => {
                    let k = (1 + rng.below(20)).min(sessions.len() - i);
                    let batch = &sessions[i..i + k];
                    let bytes: Vec<u8> = batch.iter().flat_map(|s| s.bytes.clone()).collect();
                    let fds: Vec<_> = batch.iter().map(|s| s.socket.as_fd()).collect();
                    send_raw(&tx, &bytes, &fds);
                    i += k;
                }
                // A batch whose bytes trail its fds, cut anywhere.
                _ => {
                    let k = (1 + rng.below(20)).min(sessions.len() - i);
                    let batch = &sessions[i..i + k];
                    let bytes: Vec<u8> = batch.iter().flat_map(|s| s.bytes.clone()).collect();
                    let fds: Vec<_> = batch.iter().map(|s| s.socket.as_fd()).collect();
                    send_cut(&tx, &bytes, &fds, &mut rng);
                    i += k;
                }
            }
        }
        drop(tx);
        assert_eq!(reader.join().unwrap(), expected, "seed {seed}");
    }
}

/// `pop_buffered` hands out the rest of what one read brought — here a batch of
/// five — and answers `None` at once, never blocking, when nothing whole is there.
#[test]
fn pop_buffered_takes_the_rest_of_a_read_and_never_blocks() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, rx) = pair();
        let mut fwd = handoff::Forwarder::from_stream(tx).unwrap();
        let mut rx = Receiver::new(rx).unwrap();
        assert!(rx.pop_buffered().unwrap().is_none(), "nothing read yet");

        let (conn, _client) = tcp_pair(false);
        let data: Vec<[u8; 1]> = (0..5u8).map(|i| [i]).collect();
        let batch: Vec<_> = data
            .iter()
            .map(|d| handoff::Outgoing::tcp(&conn, d).unwrap())
            .collect();
        fwd.push_batch(&batch).unwrap();
        let first = rx.pop().unwrap().unwrap();
        assert_eq!(first.data()[..], [0]);
        for i in 1..5u8 {
            let s = rx
                .pop_buffered()
                .unwrap()
                .expect("buffered by the same read");
            assert_eq!(s.data()[..], [i]);
        }
        // Empty, and the stream still open: `None`, not a wait.
        assert!(rx.pop_buffered().unwrap().is_none());
        // Half a session: still `None`, and the rest completes it.
        let bytes = tcp_session_bytes(b"half");
        let (a, b) = bytes.split_at(10);
        handoff::forwarder::send_with_fds(fwd.get_ref(), a, &[conn.as_fd()]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        rx.set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        assert!(matches!(
            rx.pop(),
            Err(handoff::ReceiveError::TimedOut { buffered: 10 })
        ));
        assert!(rx.pop_buffered().unwrap().is_none());
        handoff::forwarder::send_with_fds(fwd.get_ref(), b, &[]).unwrap();
        assert_eq!(rx.pop().unwrap().unwrap().data()[..], b"half"[..]);
    }
    assert_eq!(open_fds(), start);
}
