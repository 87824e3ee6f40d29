//! The handoff session wire format, version 1: byte-compatible with BIND 10's
//! `socketsession`, plus three extensions. This crate only encodes and decodes bytes
//! and counts fds; it never touches an fd or makes a syscall.
//!
//! # The stream
//!
//! A connected `AF_UNIX` `SOCK_STREAM` socket carries sessions back to back. One
//! session is an fd (passed as `SCM_RIGHTS` ancillary data) and these bytes:
//!
//! ```text
//!  offset  size  field
//!  ------  ----  ---------------------------------------------------------------
//!       0     1  fd byte, 0x00 — SCM_RIGHTS with exactly one fd is attached to it
//!       1     2  header_len    — bytes of header that follow (not itself, not the
//!                                fd byte, not the data); at most 282
//!       3     4  family        — AF_INET = 2, AF_INET6 = 10 (AF_UNIX = 1: extension)
//!       7     4  type          — SOCK_STREAM = 1, SOCK_DGRAM = 2
//!      11     4  protocol      — IPPROTO_TCP = 6, IPPROTO_UDP = 17 (0 for UNIX)
//!      15     4  local_len     — bytes of the local endpoint that follow
//!      19     L  local         — the endpoint as the kernel lays out its sockaddr
//!    19+L     4  remote_len
//!    23+L     R  remote        — same encoding
//!  23+L+R     4  data_len      — 1..=65535 (0: extension)
//!     ...     …  (bytes up to header_len are ignored: room for extensions)
//!  3+hlen     D  data          — the bytes already read from the socket
//! ```
//!
//! Every integer field is big-endian. The endpoints are the machine's own `sockaddr`
//! images, since both ends share one host:
//!
//! ```text
//!  sockaddr_in  (16):  sa_family u16 (host order) | port u16 (big-endian) |
//!                      address [4] | zero [8]
//!  sockaddr_in6 (28):  sa_family u16 (host order) | port u16 (big-endian) |
//!                      flowinfo u32 (as stored) | address [16] | scope_id u32 (host order)
//!  sockaddr_un  (2..=110): sa_family u16 (host order) | sun_path at the length the
//!                      kernel reports: nothing (unnamed), NUL + name (abstract),
//!                      path + NUL (pathname)
//! ```
//!
//! An encoder writes zeros into padding; a decoder ignores padding. An IPv4 header is
//! 56 bytes, an IPv6 header 80.
//!
//! The golden vector: an IPv4 TCP session, 127.0.0.1:37751 local, 127.0.0.1:55548
//! remote, data `01 02 03 04 05`, as a BIND 10 forwarder wrote it (on a little-endian
//! machine):
//!
//! ```text
//! 00 0038 00000002 00000001 00000006
//! 00000010 0200 9377 7f000001 0000000000000000
//! 00000010 0200 d8fc 7f000001 0000000000000000
//! 00000005 0102030405
//! ```
//!
//! # What a decoder checks
//!
//! Each rule has its own [`DecodeError`] variant: the fd byte is 0
//! ([`DecodeError::FdByte`]); `header_len` ≤ 282 ([`DecodeError::HeaderTooLong`]);
//! the family is 2, 10 or 1 ([`DecodeError::UnknownFamily`]); each endpoint length is
//! at least the family's `sockaddr` size (16, 28; 2 for UNIX) and at most 128 (110 for
//! UNIX) ([`DecodeError::EndpointTooShort`], [`DecodeError::EndpointTooLong`]); each
//! endpoint's `sa_family` equals the header's family ([`DecodeError::EndpointFamily`]);
//! `data_len` ≤ 65535 ([`DecodeError::DataTooLong`]); no field runs past `header_len`
//! ([`DecodeError::PastHeader`]). [`decode`] answers [`Status::Partial`] for every
//! prefix of a valid header, so it can be fed a stream as it arrives.
//!
//! The rules about fds belong to the I/O layer, which counts them with
//! [`Frame::fds`]: the i-th session on a connection owns the i-th fd received; a
//! session whose first byte arrives before its fd is an error; fds still unclaimed at
//! end of stream are an error; the stream must not end inside a session. A sender
//! attaches fds only to a message that begins at a session's fd byte (BIND 10 sends
//! the fd byte alone with its fd; we send whole sessions), which lets a receiver tell
//! an extra fd from an early one: the kernel hands over a message's fds with its first
//! byte and ends a read after the message that carried them.
//!
//! # Extensions
//!
//! Our decoder accepts them; an encoder in [`Mode::Bind10`] refuses to emit them.
//!
//! - **UNIX sessions:** family `AF_UNIX` (1), protocol 0, `sockaddr_un` images.
//! - **Empty data:** `data_len` 0, for a session handed off before anything was read.
//! - **Batches:** one `sendmsg` carries k sessions back to back and k fds in one
//!   `SCM_RIGHTS` message (k ≤ [`MAX_BATCH`]). The bytes are the same; only the fds
//!   arrive together.
//!
//! # Example
//!
//! ```
//! use handoff_proto::{decode, Header, Mode, Protocol, SocketType, Status};
//!
//! let header = Header::new(
//!     SocketType::DGRAM,
//!     Protocol::UDP,
//!     "[::1]:53".parse()?,
//!     "[2001:db8::1]:5300".parse()?,
//! )?;
//! let data = b"\x12\x34";
//! let mut wire = header.encode(data.len(), Mode::Bind10)?.to_vec();
//! wire.extend_from_slice(data);
//! assert_eq!(header.header_len(), 80);
//!
//! let Status::Complete(frame) = decode(&wire)? else { unreachable!() };
//! assert_eq!(frame.header(), &header);
//! assert_eq!(&wire[frame.data_range()], data);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode;
mod endpoint;
mod error;
mod header;

pub use decode::{decode, Frame, Status};
pub use endpoint::{
    Endpoint, Family, UnixEndpoint, MAX_ENDPOINT_LEN, MAX_UNIX_ABSTRACT_LEN, MAX_UNIX_ENDPOINT_LEN,
    SOCKADDR_IN6_LEN, SOCKADDR_IN_LEN, SUN_PATH_LEN,
};
pub use error::{DecodeError, EncodeError, EndpointError, Field, Side};
pub use header::{Header, Mode, Prefix, Protocol, SocketType};

/// The value of the byte that carries a session's fd.
pub const FD_BYTE: u8 = 0x00;
/// The largest `header_len` a decoder accepts (BIND 10's buffer: 2 + 6 × 4 + 2 × 128).
pub const MAX_HEADER_LEN: usize = 282;
/// The largest session data.
pub const MAX_DATA_LEN: usize = 65535;
/// The most sessions (and fds) one batch may carry: the kernel's `SCM_MAX_FD`.
pub const MAX_BATCH: usize = 253;
/// The six u32 fields of a header.
pub const FIXED_FIELDS_LEN: usize = 6 * 4;
/// The longest [`Prefix`] an encoder writes: fd byte, `header_len` and a header with
/// two 110-byte UNIX endpoints.
pub const MAX_PREFIX_LEN: usize = 3 + FIXED_FIELDS_LEN + 2 * MAX_UNIX_ENDPOINT_LEN;

#[cfg(test)]
mod tests;
