//! `sd_notify(3)`: tell systemd (or any supervisor that sets `NOTIFY_SOCKET`) that
//! handoffd is ready, so that a `Type=notify` unit starts its dependents only once
//! every listener is bound.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `READY=1` and `MAINPID=` to `$NOTIFY_SOCKET`, if set (a path, or an
/// abstract name starting with `@`). Returns whether anything was sent.
///
/// # Errors
/// What `sendto(2)` reports, or `InvalidInput` for an unusable address.
pub fn ready() -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let addr = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(&target)?,
    };
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
    Ok(true)
}
