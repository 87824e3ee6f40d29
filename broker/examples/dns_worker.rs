//! `dns_worker`: a DNS worker for handoffd, answering A queries for a small zone over
//! UDP (each datagram is a session; the answer goes back with `sendto` on the
//! socket handoffd shares) and TCP (length-prefixed messages on the connection).
//!
//! ```text
//! dns_worker POOL_SOCKET
//! ```
//!
//! The zone, `example.test.`: `example.test` → 192.0.2.1, `www` → 192.0.2.10,
//! `mail` → 192.0.2.25, and `worker` → 127.0.0.N where N is this worker's pid
//! modulo 256, so that tests see which worker answered. Other names in the zone are
//! NXDOMAIN; names outside it are REFUSED.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::process::ExitCode;

use handoff_broker::Worker;
use handoff_proto::SocketType;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dns_worker POOL_SOCKET");
        return ExitCode::from(2);
    };
    let mut worker = match Worker::connect(&path, 256) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("dns_worker: cannot connect to {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A scope: when handoffd closes the pool, TCP connections being served are
    // finished before the worker exits.
    std::thread::scope(|serving| loop {
        let session = match worker.next_session() {
            Ok(Some(s)) => s,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dns_worker: {e}");
                return ExitCode::FAILURE;
            }
        };
        let data = session.data().to_vec();
        let Some(remote) = session.remote().ip() else {
            continue;
        };
        let result = if session.socket_type() == SocketType::DGRAM {
            session
                .into_udp_socket()
                .map_err(io::Error::other)
                .and_then(|sock: UdpSocket| match answer(&data) {
                    Some(reply) => sock.send_to(&reply, remote).map(drop),
                    None => Ok(()),
                })
        } else {
            match session.into_tcp_stream() {
                Ok(stream) => {
                    serving.spawn(move || serve_tcp(stream, data));
                    Ok(())
                }
                Err(e) => Err(io::Error::other(e)),
            }
        };
        if let Err(e) = result {
            eprintln!("dns_worker: {e}");
        }
    })
}

/// DNS over TCP: two-byte length, message; as many as the client sends.
fn serve_tcp(mut stream: TcpStream, mut buf: Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if buf.len() < 2 + len {
                break;
            }
            let msg: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
            if let Some(reply) = answer(&msg) {
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                stream.write_all(&framed)?;
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

const ZONE: &str = "example.test";

fn lookup(name: &str) -> Option<Ipv4Addr> {
    match name {
        "example.test" => Some(Ipv4Addr::new(192, 0, 2, 1)),
        "www.example.test" => Some(Ipv4Addr::new(192, 0, 2, 10)),
        "mail.example.test" => Some(Ipv4Addr::new(192, 0, 2, 25)),
        "worker.example.test" => Some(Ipv4Addr::new(127, 0, 0, (std::process::id() % 256) as u8)),
        _ => None,
    }
}

/// The answer to one query, or `None` for something that is not a query.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // no compression in a question
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    query.get(..question_end)?;
    let name = labels.join(".");
    let in_zone = name == ZONE || name.ends_with(&format!(".{ZONE}"));
    let (rcode, addr) = match (in_zone, lookup(&name)) {
        (false, _) => (5, None),   // REFUSED
        (true, None) => (3, None), // NXDOMAIN
        (true, Some(a)) if qtype == 1 => (0, Some(a)),
        (true, Some(_)) => (0, None), // NODATA
    };
    let mut out = Vec::with_capacity(question_end + 16);
    out.extend_from_slice(&query[..2]); // id
    out.push(0x84 | (query[2] & 0x01)); // QR, AA, RD copied
    out.push(rcode);
    out.extend_from_slice(&[0, 1, 0, u8::from(addr.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    if let Some(a) = addr {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4]);
        out.extend_from_slice(&a.octets());
    }
    Some(out)
}
