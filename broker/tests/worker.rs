//! The worker API against a broker played by hand: what it acknowledges, when, and
//! in how many messages.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use handoff_broker::protocol::{Control, CONTROL_LEN};
use handoff_broker::{MioWorker, Worker};
use handoff_forwarder::{Forwarder, Outgoing};

/// An accepted connection and its client.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (l.accept().unwrap().0, client)
}

/// What the worker said so far, without waiting for more than a moment.
fn said(control: &mut UnixStream) -> Vec<Control> {
    control
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = control.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        bytes.len() % CONTROL_LEN,
        0,
        "a message cut short: {bytes:?}"
    );
    Control::decode_all(&bytes).unwrap().0
}

/// Sends `tags` as sessions of one batch: one sendmsg, so one read for the worker.
fn send_batch(fwd: &mut Forwarder, conn: &TcpStream, tags: &[u8]) {
    let data: Vec<[u8; 1]> = tags.iter().map(|&t| [t]).collect();
    let batch: Vec<_> = data
        .iter()
        .map(|d| Outgoing::tcp(conn, d).unwrap())
        .collect();
    fwd.push_batch(&batch).unwrap();
}

#[test]
fn a_worker_acknowledges_what_one_read_brought_in_one_message() {
    let (broker, worker_end) = UnixStream::pair().unwrap();
    let mut control = broker.try_clone().unwrap();
    let mut fwd = Forwarder::from_stream(broker).unwrap();
    let mut worker = Worker::from_stream(worker_end, 16).unwrap();
    assert_eq!(said(&mut control), [Control::Credits(16)]);

    let (conn, _client) = tcp_pair();
    send_batch(&mut fwd, &conn, &[1, 2, 3, 4, 5]);
    let first = worker.next_session().unwrap().unwrap();
    assert_eq!(first.data()[..], [1]);
    // All five are in the worker's hands, so all five are acknowledged, at once,
    // before the first is even served.
    assert_eq!(said(&mut control), [Control::Ack(5)]);
    for tag in 2..=5u8 {
        let s = worker.next_session().unwrap().unwrap();
        assert_eq!(s.data()[..], [tag]);
    }
    assert_eq!(said(&mut control), []);

    send_batch(&mut fwd, &conn, &[6]);
    assert_eq!(worker.next_session().unwrap().unwrap().data()[..], [6]);
    assert_eq!(said(&mut control), [Control::Ack(1)]);

    // The broker closes: both its handles.
    drop((fwd, control));
    assert!(worker.next_session().unwrap().is_none());
}

#[test]
fn a_mio_worker_acknowledges_what_one_read_brought_in_one_message() {
    // MioWorker::connect takes a path: the broker's end is accepted here.
    let path = std::env::temp_dir().join(format!("handoff-mio-worker-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut worker = MioWorker::connect(&path, 4).unwrap();
    let (broker, _) = listener.accept().unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut control = broker.try_clone().unwrap();
    let mut fwd = Forwarder::from_stream(broker).unwrap();
    assert_eq!(said(&mut control), [Control::Credits(4)]);

    assert!(worker.next_session().unwrap_err().is_would_block());
    let (conn, _client) = tcp_pair();
    send_batch(&mut fwd, &conn, &[7, 8, 9]);
    assert_eq!(worker.next_session().unwrap().unwrap().data()[..], [7]);
    assert_eq!(said(&mut control), [Control::Ack(3)]);
    assert_eq!(worker.next_session().unwrap().unwrap().data()[..], [8]);
    assert_eq!(worker.next_session().unwrap().unwrap().data()[..], [9]);
    assert!(worker.next_session().unwrap_err().is_would_block());
    assert_eq!(said(&mut control), []);

    drop((fwd, control));
    assert!(worker.next_session().unwrap().is_none());
}
