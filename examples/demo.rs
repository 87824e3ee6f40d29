//! The whole idea in one command: an acceptor process takes TCP connections, reads
//! the request head, and hands each connection (fd, addresses and the bytes already
//! read) to a worker process, which answers on it.
//!
//! ```text
//! cargo run --example demo
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, ExitCode};

use handoff::{Forwarder, Receiver};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--worker") => worker(&args[2]),
        _ => acceptor(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn acceptor() -> io::Result<()> {
    let path = std::env::temp_dir().join(format!("handoff-demo-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let workers = UnixListener::bind(&path)?;
    let mut worker = Command::new(std::env::current_exe()?)
        .arg("--worker")
        .arg(&path)
        .spawn()?;
    let (conn, _) = workers.accept()?;
    std::fs::remove_file(&path)?;
    let mut forwarder = Forwarder::from_stream(conn)?;
    println!(
        "acceptor  pid {}: worker pid {} connected",
        std::process::id(),
        worker.id()
    );

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("acceptor  pid {}: listening on {addr}", std::process::id());
    for path in ["/", "/hello", "/bye"] {
        // A client (a thread here; curl would do) sends a request...
        let client = std::thread::spawn(move || -> io::Result<String> {
            let mut c = TcpStream::connect(addr)?;
            write!(c, "GET {path} HTTP/1.0\r\nHost: demo\r\n\r\n")?;
            let mut reply = String::new();
            c.read_to_string(&mut reply)?;
            Ok(reply)
        });
        // ...the acceptor takes it, reads its head, and hands it off.
        let (conn, peer) = listener.accept()?;
        let head = read_head(&conn)?;
        forwarder.push_tcp(&conn, &head).map_err(io::Error::from)?;
        drop(conn);
        println!(
            "acceptor  pid {}: handed off {peer} with {} bytes read",
            std::process::id(),
            head.len()
        );
        let reply = client
            .join()
            .map_err(|_| io::Error::other("client panicked"))??;
        println!(
            "client           : got {:?}",
            reply.lines().last().unwrap_or("")
        );
    }
    drop(forwarder); // end of sessions: the worker exits
    let status = worker.wait()?;
    println!(
        "acceptor  pid {}: worker exited ({status})",
        std::process::id()
    );
    Ok(())
}

/// Reads up to the end of the request head, byte by byte (a demo, not a parser).
fn read_head(conn: &TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut reader = BufReader::with_capacity(1, conn);
    while !head.ends_with(b"\r\n\r\n") {
        if reader.read_until(b'\n', &mut head)? == 0 {
            break;
        }
    }
    Ok(head)
}

fn worker(path: &str) -> io::Result<()> {
    let mut receiver = Receiver::new(UnixStream::connect(path)?)?;
    while let Some(session) = receiver.pop().map_err(io::Error::from)? {
        let data = session.data().clone();
        let first = String::from_utf8_lossy(&data);
        let first = first.lines().next().unwrap_or("");
        println!(
            "worker    pid {}: session from {}: {first:?}",
            std::process::id(),
            session.remote()
        );
        let mut stream = session.into_tcp_stream().map_err(io::Error::other)?;
        write!(
            stream,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nserved by worker pid {} for {first:?}\n",
            std::process::id()
        )?;
    }
    Ok(())
}
