//! The incremental decoder.

use std::ops::Range;

use crate::endpoint::{Endpoint, Family};
use crate::error::{DecodeError, Field, Side};
use crate::header::{Header, Protocol, SocketType};
use crate::{FD_BYTE, MAX_DATA_LEN, MAX_HEADER_LEN};

/// The answer of an incremental decoder: a value, or "not yet" (which is not an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// Enough bytes were there; here is what they say.
    Complete(T),
    /// Every byte so far is well formed, but more are needed.
    Partial,
}

/// A decoded session start: its header, and where its data lies in the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    header: Header,
    header_end: usize,
    data_len: usize,
}

impl Frame {
    /// The session header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The session header, taken out.
    pub fn into_header(self) -> Header {
        self.header
    }

    /// How many fds this session owns: the i-th session on a connection owns the
    /// i-th fd received. Always 1 in version 1.
    pub fn fds(&self) -> usize {
        1
    }

    /// The length of the session data.
    pub fn data_len(&self) -> usize {
        self.data_len
    }

    /// Where the data lies, counted from the session's fd byte.
    pub fn data_range(&self) -> Range<usize> {
        self.header_end..self.header_end + self.data_len
    }

    /// The bytes the whole session takes on the wire: fd byte, `header_len`, header
    /// and data.
    pub fn total_len(&self) -> usize {
        self.header_end + self.data_len
    }
}

/// Decodes the session that starts at `buf[0]` (its fd byte).
///
/// Answers [`Status::Partial`] until the whole header is in `buf`, then
/// [`Status::Complete`] with the header and the data's place; the data itself may
/// still be to come (compare [`Frame::total_len`] with what is buffered). A rule
/// broken by the bytes already there is an error at once, without waiting for more.
///
/// ```
/// use handoff_proto::{decode, Status};
/// let session = [
///     0x00, 0x00, 0x38, // fd byte, header_len = 56
///     0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 6, // AF_INET, SOCK_STREAM, IPPROTO_TCP
///     0, 0, 0, 16, 2, 0, 0x93, 0x77, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
///     0, 0, 0, 16, 2, 0, 0xd8, 0xfc, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
///     0, 0, 0, 5, // data_len
///     1, 2, 3, 4, 5,
/// ];
/// # if cfg!(target_endian = "little") {
/// assert_eq!(decode(&session[..58])?, Status::Partial);
/// let Status::Complete(frame) = decode(&session)? else { panic!() };
/// assert_eq!(frame.header().remote().to_string(), "127.0.0.1:55548");
/// assert_eq!(&session[frame.data_range()], &[1, 2, 3, 4, 5]);
/// # }
/// # Ok::<(), handoff_proto::DecodeError>(())
/// ```
///
/// # Errors
/// One [`DecodeError`] variant per rule of the format.
pub fn decode(buf: &[u8]) -> Result<Status<Frame>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(Status::Partial);
    };
    if first != FD_BYTE {
        return Err(DecodeError::FdByte { byte: first });
    }
    let [_, hi, lo, ..] = *buf else {
        return Ok(Status::Partial);
    };
    let header_len = u16::from_be_bytes([hi, lo]);
    if usize::from(header_len) > MAX_HEADER_LEN {
        return Err(DecodeError::HeaderTooLong {
            len: header_len,
            max: MAX_HEADER_LEN as u16,
        });
    }
    let header_end = 3 + usize::from(header_len);
    let Some(header) = buf.get(3..header_end) else {
        return Ok(Status::Partial);
    };
    let mut r = Reader {
        header,
        header_len,
        at: 0,
    };
    let code = r.u32(Field::Family)?;
    let family = Family::from_code(code).ok_or(DecodeError::UnknownFamily { family: code })?;
    let sock_type = SocketType(r.u32(Field::SocketType)?);
    let protocol = Protocol(r.u32(Field::Protocol)?);
    let local = r.endpoint(Side::Local, family)?;
    let remote = r.endpoint(Side::Remote, family)?;
    let data_len = r.u32(Field::DataLen)?;
    if data_len as usize > MAX_DATA_LEN {
        return Err(DecodeError::DataTooLong {
            len: data_len,
            max: MAX_DATA_LEN,
        });
    }
    // Bytes after data_len inside header_len are room for extensions: ignored.
    Ok(Status::Complete(Frame {
        header: Header::from_checked(sock_type, protocol, local, remote),
        header_end,
        data_len: data_len as usize,
    }))
}

struct Reader<'a> {
    header: &'a [u8],
    header_len: u16,
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], DecodeError> {
        let bytes =
            self.header
                .get(self.at..self.at.saturating_add(n))
                .ok_or(DecodeError::PastHeader {
                    field,
                    header_len: self.header_len,
                })?;
        self.at += n;
        Ok(bytes)
    }

    fn u32(&mut self, field: Field) -> Result<u32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn endpoint(&mut self, side: Side, family: Family) -> Result<Endpoint, DecodeError> {
        let (len_field, field) = match side {
            Side::Local => (Field::LocalLen, Field::Local),
            Side::Remote => (Field::RemoteLen, Field::Remote),
        };
        let len = self.u32(len_field)?;
        if (len as usize) < family.min_endpoint_len() {
            return Err(DecodeError::EndpointTooShort {
                side,
                len,
                family,
                min: family.min_endpoint_len(),
            });
        }
        if len as usize > family.max_endpoint_len() {
            return Err(DecodeError::EndpointTooLong {
                side,
                len,
                family,
                max: family.max_endpoint_len(),
            });
        }
        let image = self.take(len as usize, field)?;
        let found = u16::from_ne_bytes([image[0], image[1]]);
        if u32::from(found) != family.code() {
            return Err(DecodeError::EndpointFamily {
                side,
                found,
                expected: family,
            });
        }
        Ok(Endpoint::from_checked_image(family, image))
    }
}
