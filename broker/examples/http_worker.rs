//! `http_worker`: an HTTP/1.1 worker for handoffd's pool socket.
//!
//! ```text
//! http_worker [--credits N] POOL_SOCKET
//! ```
//!
//! Connects to the pool, and serves each connection handoffd hands it — starting
//! with the request head handoffd pre-read — with keep-alive, answering every request
//! with `200 OK` and the body `worker <pid> <method> <path>\n`, so a client sees which
//! worker served it. Each connection gets a thread of its own; when handoffd closes
//! the pool, the worker finishes the connections it has before it exits.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use handoff_broker::Worker;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut credits = 64;
    if args.first().map(String::as_str) == Some("--credits") && args.len() > 1 {
        credits = args[1].parse().unwrap_or(64);
        args.drain(..2);
    }
    let [path] = args.as_slice() else {
        eprintln!("usage: http_worker [--credits N] POOL_SOCKET");
        return ExitCode::from(2);
    };
    let mut worker = match Worker::connect(path, credits) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("http_worker: cannot connect to {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "http_worker: pid {} connected to {path}",
        std::process::id()
    );
    // A scope, so that when handoffd closes the pool (it is draining) the worker
    // finishes the connections it is serving before it exits: handoffd let go of
    // them when they were acknowledged, and a client must not see them cut.
    std::thread::scope(|serving| loop {
        match worker.next_session() {
            Ok(Some(session)) => {
                let head = session.data().to_vec();
                // TCP, or a UNIX stream listener's connection.
                let stream: Box<dyn ReadWrite> = match session.into_tcp_stream() {
                    Ok(tcp) => Box::new(tcp),
                    Err(e) => match e.into_session().into_unix_stream() {
                        Ok(unix) => Box::new(unix),
                        Err(e) => {
                            eprintln!("http_worker: {e}");
                            continue;
                        }
                    },
                };
                serving.spawn(move || {
                    let _ = serve(stream, head);
                });
            }
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("http_worker: {e}");
                return ExitCode::FAILURE;
            }
        }
    })
}

/// A connection of either kind.
trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// Serves requests on `stream` until the client closes or asks to.
fn serve(mut stream: Box<dyn ReadWrite>, mut buf: Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 64 * 1024 {
                stream.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")?;
                return Ok(());
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let request = lines.next().unwrap_or("");
        let mut parts = request.split(' ');
        let (method, path, version) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let mut body_len = 0usize;
        let mut close = version != "HTTP/1.1";
        for line in lines {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => body_len = value.trim().parse().unwrap_or(0),
                "connection" if value.trim().eq_ignore_ascii_case("close") => close = true,
                "connection" if value.trim().eq_ignore_ascii_case("keep-alive") => close = false,
                _ => {}
            }
        }
        // Skip the request body.
        let mut rest = buf.split_off(end + 4);
        while rest.len() < body_len {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        buf = rest.split_off(body_len);
        let body = format!("worker {} {method} {path}\n", std::process::id());
        let connection = if close { "close" } else { "keep-alive" };
        stream.write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}", body.len())
                .as_bytes(),
        )?;
        if close {
            return Ok(());
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
