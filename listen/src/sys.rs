//! The listen crate's one door to raw fd numbers: taking ownership of fds that
//! another process left us (systemd, our predecessor), and clearing close-on-exec in
//! a child between fork and exec. Everything else goes through socket2 and std.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Takes ownership of an inherited fd number: checks that it is open
/// (`fcntl(F_GETFD)`), sets close-on-exec, and wraps it.
///
/// The caller promises that nothing else in the process owns `fd`: it is one the
/// environment says was passed to us, adopted once.
pub(crate) fn adopt(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the fd table; an invalid fd gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::FD_CLOEXEC == 0 {
        // SAFETY: as above; F_SETFD changes only this fd's flags.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: fd is open (checked above) and, per the caller's promise, owned by no
    // one else in this process; it is closed when the OwnedFd drops.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arranges for `fds` to stay open across the exec of `cmd`: close-on-exec is
/// cleared in the child only, after fork and before exec, so no other child the
/// parent spawns meanwhile inherits them.
pub(crate) fn keep_across_exec(cmd: &mut Command, fds: Vec<RawFd>) {
    let hook = move || {
        for &fd in &fds {
            // fcntl is async-signal-safe: fine between fork and exec.
            // SAFETY: only this child's fd flags change.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook allocates nothing and calls only fcntl, which is
    // async-signal-safe, as a pre_exec hook must be.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// `setsockopt(IPPROTO_TCP, TCP_DEFER_ACCEPT, secs)`: neither socket2 nor nix has it.
pub(crate) fn set_tcp_defer_accept(fd: std::os::fd::BorrowedFd<'_>, secs: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the value is a c_int on the stack, for the length given; fd is
    // borrowed, so open for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt(IPPROTO_TCP, TCP_DEFER_ACCEPT)`, in seconds as the kernel rounds it.
pub(crate) fn tcp_defer_accept(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given; fd is borrowed.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}
