//! The session header and its encoding.

use std::fmt;
use std::ops::Deref;

use crate::endpoint::{Endpoint, Family};
use crate::error::EncodeError;
use crate::{FD_BYTE, FIXED_FIELDS_LEN, MAX_DATA_LEN, MAX_PREFIX_LEN};

/// A socket type (`SOCK_*` of Linux) as the header carries it.
///
/// Any value decodes; the constants name the ones handoff produces.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketType(pub u32);

impl SocketType {
    /// `SOCK_STREAM` (1).
    pub const STREAM: SocketType = SocketType(1);
    /// `SOCK_DGRAM` (2).
    pub const DGRAM: SocketType = SocketType(2);
    /// `SOCK_SEQPACKET` (5).
    pub const SEQPACKET: SocketType = SocketType(5);
}

impl fmt::Debug for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SocketType::STREAM => f.write_str("SOCK_STREAM"),
            SocketType::DGRAM => f.write_str("SOCK_DGRAM"),
            SocketType::SEQPACKET => f.write_str("SOCK_SEQPACKET"),
            SocketType(n) => write!(f, "SocketType({n})"),
        }
    }
}

/// A protocol number as the header carries it.
///
/// Any value decodes; the constants name the ones handoff produces.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocol(pub u32);

impl Protocol {
    /// 0: the family's default (what UNIX sessions carry).
    pub const DEFAULT: Protocol = Protocol(0);
    /// `IPPROTO_TCP` (6).
    pub const TCP: Protocol = Protocol(6);
    /// `IPPROTO_UDP` (17).
    pub const UDP: Protocol = Protocol(17);
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Protocol::DEFAULT => f.write_str("0"),
            Protocol::TCP => f.write_str("IPPROTO_TCP"),
            Protocol::UDP => f.write_str("IPPROTO_UDP"),
            Protocol(n) => write!(f, "Protocol({n})"),
        }
    }
}

/// What an encoder may emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Version 1 with the extensions: UNIX sessions, empty data, batches.
    #[default]
    Extended,
    /// Only what a BIND 10 receiver understands; extensions are refused with an error.
    Bind10,
}

/// Everything about a session but its fd and its data: family, type, protocol, and
/// the two endpoints.
///
/// A `Header` always has one family: [`Header::new`] refuses endpoints of two.
///
/// ```
/// use handoff_proto::{Header, Protocol, SocketType};
/// let h = Header::new(
///     SocketType::STREAM,
///     Protocol::TCP,
///     "127.0.0.1:37751".parse().unwrap(),
///     "127.0.0.1:55548".parse().unwrap(),
/// )?;
/// assert_eq!(h.header_len(), 56);
/// # Ok::<(), handoff_proto::EncodeError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    sock_type: SocketType,
    protocol: Protocol,
    local: Endpoint,
    remote: Endpoint,
}

impl Header {
    /// A header for a socket of this type and protocol with these endpoints.
    ///
    /// # Errors
    /// [`EncodeError::FamilyMismatch`] if the endpoints are of different families.
    pub fn new(
        sock_type: SocketType,
        protocol: Protocol,
        local: Endpoint,
        remote: Endpoint,
    ) -> Result<Header, EncodeError> {
        if local.family() != remote.family() {
            return Err(EncodeError::FamilyMismatch {
                local: local.family(),
                remote: remote.family(),
            });
        }
        Ok(Header {
            sock_type,
            protocol,
            local,
            remote,
        })
    }

    /// Built by the decoder, which has checked the families.
    pub(crate) fn from_checked(
        sock_type: SocketType,
        protocol: Protocol,
        local: Endpoint,
        remote: Endpoint,
    ) -> Header {
        debug_assert_eq!(local.family(), remote.family());
        Header {
            sock_type,
            protocol,
            local,
            remote,
        }
    }

    /// The address family of the socket and of both endpoints.
    pub fn family(&self) -> Family {
        self.local.family()
    }

    /// The socket type.
    pub fn socket_type(&self) -> SocketType {
        self.sock_type
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The local endpoint as the forwarder reported it. Do not trust it: some
    /// forwarders send the remote endpoint in its place.
    pub fn local(&self) -> &Endpoint {
        &self.local
    }

    /// The remote endpoint.
    pub fn remote(&self) -> &Endpoint {
        &self.remote
    }

    /// The value of the `header_len` field this header encodes to.
    pub fn header_len(&self) -> usize {
        FIXED_FIELDS_LEN + self.local.sockaddr_len() + self.remote.sockaddr_len()
    }

    /// Encodes the fd byte, `header_len` and the header for a session with `data_len`
    /// bytes of data. The data itself follows on the wire; it is not copied here.
    ///
    /// ```
    /// use handoff_proto::{Header, Mode, Protocol, SocketType};
    /// let h = Header::new(
    ///     SocketType::STREAM,
    ///     Protocol::TCP,
    ///     "127.0.0.1:37751".parse().unwrap(),
    ///     "127.0.0.1:55548".parse().unwrap(),
    /// )?;
    /// let prefix = h.encode(5, Mode::Bind10)?;
    /// assert_eq!(prefix.len(), 1 + 2 + 56);
    /// assert_eq!(&prefix[..3], &[0x00, 0x00, 0x38]);
    /// # Ok::<(), handoff_proto::EncodeError>(())
    /// ```
    ///
    /// # Errors
    /// [`EncodeError::DataTooLong`] past 65535 bytes; in [`Mode::Bind10`],
    /// [`EncodeError::StrictUnix`] and [`EncodeError::StrictEmptyData`].
    pub fn encode(&self, data_len: usize, mode: Mode) -> Result<Prefix, EncodeError> {
        if data_len > MAX_DATA_LEN {
            return Err(EncodeError::DataTooLong {
                len: data_len,
                max: MAX_DATA_LEN,
            });
        }
        if mode == Mode::Bind10 {
            if self.family() == Family::Unix {
                return Err(EncodeError::StrictUnix);
            }
            if data_len == 0 {
                return Err(EncodeError::StrictEmptyData);
            }
        }
        let mut prefix = Prefix {
            buf: [0; MAX_PREFIX_LEN],
            len: 0,
        };
        let header_len = self.header_len();
        let mut w = Writer {
            buf: &mut prefix.buf,
            at: 0,
        };
        w.put(&[FD_BYTE]);
        // At most 24 + 2 * 110: it fits.
        w.put(&(header_len as u16).to_be_bytes());
        w.put_u32(self.family().code());
        w.put_u32(self.sock_type.0);
        w.put_u32(self.protocol.0);
        for ep in [&self.local, &self.remote] {
            w.put_u32(ep.sockaddr_len() as u32);
            w.at += ep.write_sockaddr(&mut w.buf[w.at..]);
        }
        w.put_u32(data_len as u32);
        prefix.len = w.at;
        debug_assert_eq!(prefix.len, 3 + header_len);
        Ok(prefix)
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn put_u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
}

/// The encoded start of a session: the fd byte, `header_len` and the header, on the
/// stack. It dereferences to its bytes.
#[derive(Clone)]
pub struct Prefix {
    buf: [u8; MAX_PREFIX_LEN],
    len: usize,
}

impl Deref for Prefix {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl AsRef<[u8]> for Prefix {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Prefix").field(&&self[..]).finish()
    }
}
