//! The errors of the wire format: one enum per direction, each variant carrying the
//! offending value.

use std::fmt;

use thiserror::Error;

use crate::endpoint::Family;

/// Which endpoint of a header a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The local endpoint (the socket's own address).
    Local,
    /// The remote endpoint (the peer's address).
    Remote,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Local => "local",
            Side::Remote => "remote",
        })
    }
}

/// A field of the session header, in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The address family (u32).
    Family,
    /// The socket type (u32).
    SocketType,
    /// The protocol (u32).
    Protocol,
    /// The local endpoint's length (u32).
    LocalLen,
    /// The local endpoint's image.
    Local,
    /// The remote endpoint's length (u32).
    RemoteLen,
    /// The remote endpoint's image.
    Remote,
    /// The session data's length (u32).
    DataLen,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Family => "family",
            Field::SocketType => "socket type",
            Field::Protocol => "protocol",
            Field::LocalLen => "local endpoint length",
            Field::Local => "local endpoint",
            Field::RemoteLen => "remote endpoint length",
            Field::Remote => "remote endpoint",
            Field::DataLen => "data length",
        })
    }
}

/// Why bytes on the wire are not a session. Each rule of the format has its own variant.
///
/// After any of these the stream is out of step: the connection is good for nothing
/// more.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The byte that carries the fd is not 0: the stream is out of step.
    #[error("the session's first byte is {byte:#04x}, not the 0x00 that carries its fd; the stream is out of step")]
    FdByte {
        /// The byte found.
        byte: u8,
    },
    /// `header_len` is more than 282.
    #[error("the header length is {len} bytes, more than the {max} allowed")]
    HeaderTooLong {
        /// The length found.
        len: u16,
        /// The largest allowed ([`crate::MAX_HEADER_LEN`]).
        max: u16,
    },
    /// A field runs past the end that `header_len` gives.
    #[error("the {field} runs past the end of the {header_len}-byte header")]
    PastHeader {
        /// The field that does not fit.
        field: Field,
        /// The header length.
        header_len: u16,
    },
    /// The family is not `AF_INET`, `AF_INET6` or `AF_UNIX`.
    #[error("the address family is {family}, not AF_INET (2), AF_INET6 (10) or AF_UNIX (1)")]
    UnknownFamily {
        /// The family code found.
        family: u32,
    },
    /// An endpoint is shorter than its family's `sockaddr`.
    #[error("the {side} endpoint is {len} bytes, shorter than the {min} of a {family} address")]
    EndpointTooShort {
        /// Which endpoint.
        side: Side,
        /// Its length.
        len: u32,
        /// The family of the header.
        family: Family,
        /// The shortest allowed.
        min: usize,
    },
    /// An endpoint is longer than 128 bytes (110 for UNIX).
    #[error("the {side} endpoint is {len} bytes, longer than the {max} allowed for {family}")]
    EndpointTooLong {
        /// Which endpoint.
        side: Side,
        /// Its length.
        len: u32,
        /// The family of the header.
        family: Family,
        /// The longest allowed.
        max: usize,
    },
    /// An endpoint's `sa_family` differs from the header's family.
    #[error("the {side} endpoint has address family {found}, but the header says {expected}")]
    EndpointFamily {
        /// Which endpoint.
        side: Side,
        /// The `sa_family` in the image.
        found: u16,
        /// The family of the header.
        expected: Family,
    },
    /// `data_len` is more than 65535.
    #[error("the session data is {len} bytes, more than the {max} allowed")]
    DataTooLong {
        /// The length found.
        len: u32,
        /// The largest allowed ([`crate::MAX_DATA_LEN`]).
        max: usize,
    },
}

impl DecodeError {
    /// The variant's name, for logs and tools that report errors by kind.
    pub fn name(&self) -> &'static str {
        match self {
            DecodeError::FdByte { .. } => "FdByte",
            DecodeError::HeaderTooLong { .. } => "HeaderTooLong",
            DecodeError::PastHeader { .. } => "PastHeader",
            DecodeError::UnknownFamily { .. } => "UnknownFamily",
            DecodeError::EndpointTooShort { .. } => "EndpointTooShort",
            DecodeError::EndpointTooLong { .. } => "EndpointTooLong",
            DecodeError::EndpointFamily { .. } => "EndpointFamily",
            DecodeError::DataTooLong { .. } => "DataTooLong",
        }
    }
}

/// Why a session cannot be encoded. Nothing has been written when this is returned.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The local and remote endpoints are of different families.
    #[error(
        "the local endpoint is {local} but the remote one is {remote}; a session has one family"
    )]
    FamilyMismatch {
        /// The local endpoint's family.
        local: Family,
        /// The remote endpoint's family.
        remote: Family,
    },
    /// The data is longer than 65535 bytes.
    #[error("the session data is {len} bytes, more than the {max} a session can carry")]
    DataTooLong {
        /// The length given.
        len: usize,
        /// The largest allowed ([`crate::MAX_DATA_LEN`]).
        max: usize,
    },
    /// Strict BIND 10 mode, and the session is a UNIX one (an extension).
    #[error("UNIX sessions are an extension that strict BIND 10 mode does not send")]
    StrictUnix,
    /// Strict BIND 10 mode, and the data is empty (an extension).
    #[error("empty session data is an extension that strict BIND 10 mode does not send")]
    StrictEmptyData,
}

impl EncodeError {
    /// The variant's name, for logs and tools that report errors by kind.
    pub fn name(&self) -> &'static str {
        match self {
            EncodeError::FamilyMismatch { .. } => "FamilyMismatch",
            EncodeError::DataTooLong { .. } => "DataTooLong",
            EncodeError::StrictUnix => "StrictUnix",
            EncodeError::StrictEmptyData => "StrictEmptyData",
        }
    }
}

/// Why bytes or text are not an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The image is shorter than its family's `sockaddr`.
    #[error("the address image is {len} bytes, shorter than the {min} its family needs")]
    ImageTooShort {
        /// Its length.
        len: usize,
        /// The shortest allowed.
        min: usize,
    },
    /// The image is longer than the family allows.
    #[error("the address image is {len} bytes, longer than the {max} its family allows")]
    ImageTooLong {
        /// Its length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// `sa_family` is not one the format knows.
    #[error("address family {family} is not AF_INET, AF_INET6 or AF_UNIX")]
    UnknownFamily {
        /// The `sa_family` found.
        family: u16,
    },
    /// A UNIX name longer than `sun_path` can hold.
    #[error("the UNIX socket name is {len} bytes; at most {max} fit in sun_path")]
    NameTooLong {
        /// Its length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// An empty UNIX path.
    #[error("a UNIX socket path cannot be empty")]
    EmptyPath,
    /// A UNIX path with a NUL byte inside.
    #[error("a UNIX socket path cannot contain a NUL byte")]
    NulInPath,
    /// Text that is not an endpoint.
    #[error("{text:?} is not an address: expected 1.2.3.4:53, [2001:db8::1]:53, [fe80::1%2]:53, unix:/path, unix:@name or unix:")]
    Syntax {
        /// The text given.
        text: String,
    },
}
