//! The mio forms: a session that arrives one byte at a time, a forwarder whose queue
//! fills, flushes on writability, overflows, and gives back what it could not send.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::*;
use handoff::{ForwardError, MioForwarder, MioReceiver, Outgoing, Pushed, ReceiveError, Receiver};
use mio::{Events, Interest, Poll, Token};

#[test]
fn a_session_arriving_one_byte_at_a_time() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, rx) = pair();
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(4);
        let mut r = MioReceiver::new(rx).unwrap();
        poll.registry()
            .register(&mut r, Token(1), Interest::READABLE)
            .unwrap();
        let (conn, _client) = tcp_pair(false);
        let bytes = tcp_session_bytes(b"one byte at a time");

        assert!(r.pop().unwrap_err().is_would_block());
        for (i, b) in bytes.iter().enumerate() {
            let fds = if i == 0 { vec![conn.as_fd()] } else { vec![] };
            send_raw(&tx, &[*b], &fds);
            // Readiness comes for every byte: the receiver went to would-block
            // through mio's try_io each time.
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            assert!(!events.is_empty(), "no readable event for byte {i}");
            if i + 1 < bytes.len() {
                let err = r.pop().unwrap_err();
                assert!(matches!(err, ReceiveError::WouldBlock), "byte {i}: {err:?}");
                assert_eq!(r.buffered(), i + 1);
            }
        }
        let s = r.pop().unwrap().unwrap();
        assert_eq!(&s.data()[..], b"one byte at a time");
        assert_eq!(s.header(), &golden_header());
        assert_eq!(r.buffered(), 0);
        drop(tx);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(r.pop().unwrap().is_none());
        poll.registry().deregister(&mut r).unwrap();
    }
    assert_eq!(open_fds(), start);
}

/// Pushes until the queue is full; the receiver then drains while the forwarder
/// flushes on writable events; every session arrives, in order.
#[test]
fn the_queue_fills_overflows_and_flushes_in_order() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, rx) = pair();
        tx.set_nonblocking(true).unwrap();
        let mut fwd = MioForwarder::new(mio::net::UnixStream::from_std(tx), 8);
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(4);
        poll.registry()
            .register(&mut fwd, Token(0), Interest::WRITABLE)
            .unwrap();

        let data: Vec<Vec<u8>> = (0..5000u32)
            .map(|i| {
                let mut d = i.to_be_bytes().to_vec();
                d.resize(if i % 7 == 0 { 40_000 } else { 100 }, 0xee);
                d
            })
            .collect();
        let (conn, _client) = tcp_pair(false);
        let mut pushed = 0;
        let mut queued = 0;
        let overflow = loop {
            match fwd.push_tcp(&conn, &data[pushed]) {
                Ok(Pushed::Sent) => pushed += 1,
                Ok(Pushed::Queued) => {
                    pushed += 1;
                    queued += 1;
                }
                Err(e) => break e,
            }
            assert!(pushed < data.len(), "the queue never filled");
        };
        assert!(
            matches!(overflow, ForwardError::QueueFull { capacity: 8 }),
            "{overflow:?}"
        );
        assert_eq!(fwd.queued(), 8);
        assert!(queued >= 8);

        // Drain in another thread; flush here on writability, pushing the rest.
        let reader = std::thread::spawn(move || {
            let mut r = Receiver::new(rx).unwrap();
            let mut got = Vec::new();
            while let Some(s) = r.pop().unwrap() {
                got.push(s.data().to_vec());
            }
            got
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while pushed < data.len() || fwd.queued() > 0 {
            assert!(Instant::now() < deadline, "flushing stalled");
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            fwd.flush().unwrap();
            while pushed < data.len() {
                match fwd.push_tcp(&conn, &data[pushed]) {
                    Ok(_) => pushed += 1,
                    Err(ForwardError::QueueFull { .. }) => break,
                    Err(e) => panic!("{e:?}"),
                }
            }
        }
        poll.registry().deregister(&mut fwd).unwrap();
        drop(fwd);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "sessions arrived out of order or changed");
    }
    assert_eq!(open_fds(), start, "queued copies of fds were closed");
}

#[test]
fn a_failed_connection_gives_back_the_sessions_it_never_sent() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, rx) = pair();
        tx.set_nonblocking(true).unwrap();
        let mut fwd = MioForwarder::new(mio::net::UnixStream::from_std(tx), 4);
        let (conn, _client) = tcp_pair(false);
        // Small sessions go whole or not at all: fill until three are queued.
        while fwd.queued() < 3 {
            fwd.push_tcp(&conn, b"small").unwrap();
        }
        drop(rx);
        let err = fwd.flush().unwrap_err();
        assert!(matches!(err, ForwardError::Io(_)), "{err:?}");
        let unsent = fwd.take_unsent();
        assert_eq!(unsent.len(), 3);
        for u in &unsent {
            assert_eq!(u.data, b"small");
            assert_eq!(u.header.remote().ip(), Some(_client.local_addr().unwrap()));
        }
        // No session had partly gone out, so the forwarder is not poisoned; the
        // connection itself is dead.
        assert!(matches!(
            fwd.push_tcp(&conn, b"x"),
            Err(ForwardError::Io(_))
        ));
    }
    assert_eq!(open_fds(), start);
}

/// Batches of every size up to 253, some with sessions big enough to cut a batch
/// short, pushed while the receiver drains: every session arrives once, in order,
/// with its own connection's fd; no copy of an fd outlives the forwarder.
#[test]
fn batches_go_out_whole_cut_short_or_queued_and_arrive_in_order() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, rx) = pair();
        tx.set_nonblocking(true).unwrap();
        let mut fwd = MioForwarder::new(mio::net::UnixStream::from_std(tx), 4096);
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(4);
        poll.registry()
            .register(&mut fwd, Token(0), Interest::WRITABLE)
            .unwrap();
        // Three connections, told apart by the client's port.
        let conns: Vec<_> = (0..3).map(|_| tcp_pair(false)).collect();
        let sizes = [1usize, 2, 7, 64, 253, 100, 253, 3];
        let total: usize = sizes.iter().sum();
        let data: Vec<Vec<u8>> = (0..total as u32)
            .map(|i| {
                let mut d = i.to_be_bytes().to_vec();
                d.resize(if i % 50 == 0 { 30_000 } else { 60 }, 0xbb);
                d
            })
            .collect();

        // Nothing reads yet: the socket fills, a batch is cut short, and the
        // batches after it wait in the queue with copies of their fds.
        let mut next = 0;
        let mut queued = 0;
        for &n in &sizes {
            let batch: Vec<Outgoing<'_>> = (next..next + n)
                .map(|i| Outgoing::tcp(&conns[i % 3].0, &data[i]).unwrap())
                .collect();
            if fwd.push_batch(&batch).unwrap() == Pushed::Queued {
                queued += 1;
            }
            next += n;
        }
        assert!(queued >= 2, "the socket never filled");
        assert!(
            open_fds() > start + 100,
            "queued batches hold copies of their fds"
        );

        let reader = std::thread::spawn(move || {
            let mut r = Receiver::new(rx).unwrap();
            let mut got = Vec::new();
            while let Some(s) = r.pop().unwrap() {
                let data = s.data().to_vec();
                let tcp = s.into_tcp_stream().unwrap();
                got.push((data, tcp.peer_addr().unwrap()));
            }
            got
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while fwd.queued() > 0 {
            assert!(Instant::now() < deadline, "flushing stalled");
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            fwd.flush().unwrap();
        }
        poll.registry().deregister(&mut fwd).unwrap();
        drop(fwd);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), total);
        for (i, (d, peer)) in got.iter().enumerate() {
            assert!(*d == data[i], "session {i} arrived out of order or changed");
            assert_eq!(*peer, conns[i % 3].1.local_addr().unwrap(), "session {i}");
        }
    }
    assert_eq!(open_fds(), start, "queued copies of fds were closed");
}

/// A batch the queue cannot hold, one too large, or one in BIND 10's mode: refused,
/// and nothing of it taken.
#[test]
fn a_batch_is_taken_whole_or_not_at_all() {
    let _guard = fd_lock();
    let start = open_fds();
    {
        let (tx, _rx) = pair();
        tx.set_nonblocking(true).unwrap();
        let mut fwd = MioForwarder::new(mio::net::UnixStream::from_std(tx), 8);
        let (conn, _client) = tcp_pair(false);
        let big = vec![0u8; 60_000];
        while fwd.queued() < 5 {
            fwd.push_tcp(&conn, &big).unwrap();
        }
        let before = (fwd.queued(), open_fds());
        let four: Vec<_> = (0..4)
            .map(|_| Outgoing::tcp(&conn, b"x").unwrap())
            .collect();
        let err = fwd.push_batch(&four).unwrap_err();
        assert!(
            matches!(err, ForwardError::QueueFull { capacity: 8 }),
            "{err:?}"
        );
        assert_eq!((fwd.queued(), open_fds()), before);
        let many: Vec<_> = (0..254)
            .map(|_| Outgoing::tcp(&conn, b"").unwrap())
            .collect();
        let err = fwd.push_batch(&many).unwrap_err();
        assert!(
            matches!(err, ForwardError::BatchTooLarge { len: 254, max: 253 }),
            "{err:?}"
        );
        fwd.set_mode(handoff::Mode::Bind10);
        let err = fwd.push_batch(&four[..2]).unwrap_err();
        assert!(matches!(err, ForwardError::StrictBatch), "{err:?}");
        assert_eq!((fwd.queued(), open_fds()), before);
        // Three more fit: taken, all of them.
        fwd.set_mode(handoff::Mode::Extended);
        assert_eq!(fwd.push_batch(&four[..3]).unwrap(), Pushed::Queued);
        assert_eq!(fwd.queued(), 8);
        assert_eq!(fwd.push_batch(&[]).unwrap(), Pushed::Sent);
    }
    assert_eq!(open_fds(), start);
}
