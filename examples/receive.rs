//! `receive`: accept one forwarder and print each session it hands over.
//!
//! ```text
//! receive [--count N] [--reply HEX] [--no-verify] SOCKPATH
//! ```
//!
//! Binds a UNIX stream listener at SOCKPATH (a stale socket file is replaced; the path
//! appears only once it accepts connections), accepts
//! one forwarder connection, and pops sessions until end of stream or N sessions,
//! printing one JSON line per session:
//!
//! ```text
//! {"family":2,"type":1,"protocol":6,"local":"127.0.0.1:53535","remote":"192.0.2.2:5300","data":"0102ff"}
//! ```
//!
//! With `--reply HEX` it first writes those bytes to each received socket (stream:
//! write, then close; datagram: `sendto` the session's remote). On the first failure
//! it prints `{"error":"<variant>","message":"<sentence>"}` and exits 1.

#[path = "common/mod.rs"]
mod common;

use std::fs;
use std::io::{self, Write};
use std::net::UdpSocket;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use common::{fail, hex, print_line, sentence, unhex};
use handoff::{Receiver, Session, SocketType};

/// Accept one handoff forwarder on a UNIX socket and print each session as JSON.
#[derive(Parser, Debug)]
#[command(name = "receive")]
struct Args {
    /// Stop after N sessions.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Write these bytes (hex) to each received socket before printing it.
    #[arg(long, value_name = "HEX")]
    reply: Option<String>,
    /// Do not check that each fd is a socket of the domain and type its header says.
    #[arg(long)]
    no_verify: bool,
    /// Where to listen.
    sockpath: PathBuf,
}

fn main() -> ExitCode {
    let args = match common::parse_args::<Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let reply = match args.reply.as_deref().map(unhex).transpose() {
        Ok(reply) => reply,
        Err(msg) => return fail("Usage", msg),
    };
    let listener = match listen(&args.sockpath) {
        Ok(l) => l,
        Err(e) => {
            return fail(
                "Io",
                format!("cannot listen on {}: {e}", args.sockpath.display()),
            )
        }
    };
    let conn = match listener.accept() {
        Ok((conn, _)) => conn,
        Err(e) => return fail("Io", format!("accept failed: {e}")),
    };
    drop(listener);
    let _ = fs::remove_file(&args.sockpath);
    let mut receiver = match Receiver::new(conn) {
        Ok(r) => r,
        Err(e) => return fail("Io", e),
    };
    receiver.set_verify(!args.no_verify);
    let mut served = 0;
    while args.count.is_none_or(|n| served < n) {
        let session = match receiver.pop() {
            Ok(Some(session)) => session,
            Ok(None) => break,
            Err(e) => return fail(e.name(), sentence(&e)),
        };
        let line = json_line(&session);
        if let Some(reply) = &reply {
            if let Err(e) = answer(session, reply) {
                return fail("Reply", format!("cannot reply on the received socket: {e}"));
            }
        }
        print_line(&line);
        served += 1;
    }
    ExitCode::SUCCESS
}

/// Binds `path`, replacing a socket file left by an earlier run. Anything else at
/// the path is left alone, and the tool fails.
///
/// The socket is bound and listening under a temporary name, then renamed into
/// place, over the stale socket if there is one: whoever sees the path can connect
/// (a client that raced `bind` and `listen` would otherwise be refused), and the
/// path never names nothing.
fn listen(path: &Path) -> io::Result<UnixListener> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something that is not a socket is there",
            ))
        }
        Err(_) => {}
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

fn json_line(s: &Session) -> String {
    format!(
        "{{\"family\":{},\"type\":{},\"protocol\":{},\"local\":{},\"remote\":{},\"data\":\"{}\"}}",
        s.family().code(),
        s.socket_type().0,
        s.protocol().0,
        common::json_str(&s.local().to_string()),
        common::json_str(&s.remote().to_string()),
        hex(s.data()),
    )
}

/// Stream: write the reply, then close. Datagram: send it to the session's remote.
fn answer(session: Session, reply: &[u8]) -> io::Result<()> {
    if session.socket_type() == SocketType::DGRAM {
        let remote = session
            .remote()
            .ip()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "no IP remote to answer"))?;
        let (fd, _, _) = session.into_parts();
        UdpSocket::from(fd).send_to(reply, remote)?;
    } else {
        let (fd, _, _) = session.into_parts();
        fs::File::from(fd).write_all(reply)?;
    }
    Ok(())
}
