//! The baselines' raw syscalls: what a careful C programmer writes by hand, so that
//! handoff is measured against the kernel and not against another library.
//!
//! The only unsafe code outside the crates' `sys` modules; a benchmark baseline must
//! be plain syscalls to mean anything.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

type Control = [u64; 4];

/// One blocking `sendmsg` with `iov` and one fd (or none).
pub fn sendmsg(
    sock: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    let mut control: Control = [0; 4];
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    if let Some(fd) = fd {
        // SAFETY: the control buffer is aligned and has room for one int's cmsg
        // (CMSG_SPACE(4) = 24 <= 32); CMSG_FIRSTHDR is then non-null and CMSG_DATA
        // points 4 writable bytes inside it.
        unsafe {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(4) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as _;
            libc::CMSG_DATA(c)
                .cast::<libc::c_int>()
                .write_unaligned(fd.as_raw_fd());
        }
    }
    // SAFETY: msg points at live iovecs and control data for the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One blocking `recvmsg` into `buf`, returning the bytes and the fd that came, if
/// any (at most one is expected).
pub fn recvmsg(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut control: Control = [0; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of::<Control>() as _;
    // SAFETY: msg points at `buf` and `control`, both live and writable.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after a successful recvmsg the header, if any, lies inside `control`.
    let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    let fd = if c.is_null() {
        None
    } else {
        // SAFETY: c is a valid header; an SCM_RIGHTS one carries an int we now own.
        unsafe {
            ((*c).cmsg_type == libc::SCM_RIGHTS).then(|| {
                OwnedFd::from_raw_fd(libc::CMSG_DATA(c).cast::<libc::c_int>().read_unaligned())
            })
        }
    };
    Ok((n as usize, fd))
}
