//! The receiver's one door to the kernel: `recvmsg(2)` with `SCM_RIGHTS`, and the
//! `getsockopt(2)` calls that check what arrived.
//!
//! This is the only file of the crate that may use `unsafe`: walking a control
//! buffer needs the `CMSG_*` macros, and every fd in it becomes an [`OwnedFd`] here,
//! before anything else can fail, so none can leak.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use bytes::BytesMut;

/// `SCM_PIDFD` (Linux 6.5): a control message that installs a pidfd. Not in every
/// libc release; its fd must be closed like any other.
const SCM_PIDFD: libc::c_int = 0x04;

/// Room for one `SCM_RIGHTS` message of 253 fds (`CMSG_SPACE(1012)` = 1028) and a
/// credentials message beside it, aligned for `cmsghdr`. A larger batch cannot be sent
/// (the kernel's `SCM_MAX_FD`), so truncation here means the kernel dropped fds.
type ControlBuf = [u64; 136];

/// What one `recvmsg` brought.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Bytes of data (0: end of stream).
    pub(crate) bytes: usize,
    /// Fds appended to the queue.
    pub(crate) fds: usize,
    /// `MSG_CTRUNC`: the kernel dropped control data (and perhaps fds).
    pub(crate) truncated: bool,
    /// The first control message that was not `SCM_RIGHTS`: (level, type).
    pub(crate) unexpected: Option<(i32, i32)>,
}

/// `recvmsg(sock, MSG_CMSG_CLOEXEC)` into the spare capacity of `buf`, whose length
/// grows by what arrived; blocking or not as the socket is.
///
/// Every fd that arrived is pushed onto `fds` as an [`OwnedFd`], whatever else the
/// message holds; the caller decides whether the message was acceptable. Retries
/// `EINTR`.
pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut BytesMut,
    fds: &mut VecDeque<OwnedFd>,
) -> io::Result<Received> {
    let spare: &mut [MaybeUninit<u8>] = buf.spare_capacity_mut();
    let mut control = MaybeUninit::<ControlBuf>::uninit();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of::<ControlBuf>() as _;
    let n = loop {
        // SAFETY: msg points at one iovec over `spare` (writable, uninitialised bytes
        // are fine for the kernel to fill) and at the control buffer, both of which
        // outlive the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the kernel initialised the first n bytes of the spare capacity,
            // and n is at most its length.
            unsafe { buf.set_len(buf.len() + n) };
            break n;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut got = Received {
        bytes: n,
        truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
        ..Received::default()
    };
    // SAFETY: after a successful recvmsg, msg_control/msg_controllen describe the
    // control messages the kernel wrote into `control`, which CMSG_FIRSTHDR and
    // CMSG_NXTHDR walk without leaving it; each header they return is valid to read.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and points at a header inside `control` (above).
        let (level, kind, len) = unsafe {
            (
                (*cmsg).cmsg_level,
                (*cmsg).cmsg_type,
                (*cmsg).cmsg_len as usize,
            )
        };
        let carries_fds =
            level == libc::SOL_SOCKET && (kind == libc::SCM_RIGHTS || kind == SCM_PIDFD);
        if carries_fds {
            // SAFETY: CMSG_LEN(0) is a pure computation.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = len.saturating_sub(header) / mem::size_of::<RawFd>();
            // SAFETY: the kernel wrote `count` fds after the header, inside `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            for i in 0..count {
                // SAFETY: `data` has `count` fds (above); each is a new descriptor the
                // kernel installed in this process for us alone, so we own it.
                let fd = unsafe { OwnedFd::from_raw_fd(data.add(i).read_unaligned()) };
                fds.push_back(fd);
                if kind == libc::SCM_RIGHTS {
                    got.fds += 1;
                } else {
                    // A pidfd is no session's fd: close it at once.
                    drop(fds.pop_back());
                }
            }
        }
        if !(level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS) && got.unexpected.is_none() {
            got.unexpected = Some((level, kind));
        }
        // SAFETY: as for CMSG_FIRSTHDR above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(got)
}

/// The socket's domain and type (`SO_DOMAIN`, `SO_TYPE`); `ENOTSOCK` for an fd that
/// is not a socket.
pub(crate) fn socket_kind(fd: BorrowedFd<'_>) -> io::Result<(i32, i32)> {
    Ok((
        getsockopt_int(fd, libc::SO_DOMAIN)?,
        getsockopt_int(fd, libc::SO_TYPE)?,
    ))
}

fn getsockopt_int(fd: BorrowedFd<'_>, name: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes of the sizes given; fd is borrowed,
    // so open for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
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
