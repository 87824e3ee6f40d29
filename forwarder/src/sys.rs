//! The forwarder's one door to the kernel: `sendmsg(2)` with `SCM_RIGHTS`.
//!
//! This is the only file of the crate that may use `unsafe`: a `sendmsg` with
//! ancillary data has no safe wrapper in std, and the control buffer must be laid out
//! with the `CMSG_*` macros.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

use handoff_proto::MAX_BATCH;

/// Room for one `SCM_RIGHTS` message of [`MAX_BATCH`] fds, aligned for `cmsghdr`.
/// `CMSG_SPACE(253 * 4)` is 1028 on 64-bit Linux; 130 u64 hold it with room to spare.
type ControlBuf = [u64; 130];

/// `sendmsg(sock, iov, SCM_RIGHTS(fds), MSG_NOSIGNAL | MSG_DONTWAIT)`.
///
/// Returns the bytes written, which may be fewer than asked (then every fd went out
/// with the first of them). `fds` may be empty, and at most [`MAX_BATCH`] long.
/// Retries `EINTR`, which the kernel only reports when nothing was written.
pub(crate) fn send(
    sock: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    assert!(
        fds.len() <= MAX_BATCH,
        "at most {MAX_BATCH} fds per sendmsg"
    );
    let mut control: ControlBuf = [0; 130];
    let fd_bytes = mem::size_of_val(fds) as u32;
    // SAFETY: msghdr is a plain C struct for which all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix; sendmsg only reads it.
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    if !fds.is_empty() {
        // SAFETY: CMSG_SPACE is a pure computation on its argument.
        let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
        debug_assert!(space <= mem::size_of::<ControlBuf>());
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, cmsghdr-aligned bytes, which
        // is room for one header and `fd_bytes` of data; CMSG_FIRSTHDR therefore returns
        // a non-null pointer into `control`, and CMSG_DATA a pointer `fd_bytes` of
        // which lie inside it. RawFd is i32 and the writes are unaligned-safe.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: msg points at iovecs and a control buffer that outlive the call; the
        // fds in it are borrowed, so open for its whole length.
        let n = unsafe {
            libc::sendmsg(
                sock.as_raw_fd(),
                &msg,
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
