//! Socket endpoints and their `sockaddr` images.

use std::ffi::OsStr;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::EndpointError;

/// An address family as the header carries it (`AF_*` of Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `AF_UNIX` (1): an extension; BIND 10 never sends it.
    Unix,
    /// `AF_INET` (2).
    Inet,
    /// `AF_INET6` (10).
    Inet6,
}

impl Family {
    /// The code on the wire and in `sa_family`.
    ///
    /// ```
    /// assert_eq!(handoff_proto::Family::Inet6.code(), 10);
    /// ```
    pub const fn code(self) -> u32 {
        match self {
            Family::Unix => 1,
            Family::Inet => 2,
            Family::Inet6 => 10,
        }
    }

    /// The family with this code, if it is one the format knows.
    ///
    /// ```
    /// use handoff_proto::Family;
    /// assert_eq!(Family::from_code(2), Some(Family::Inet));
    /// assert_eq!(Family::from_code(17), None);
    /// ```
    pub const fn from_code(code: u32) -> Option<Family> {
        match code {
            1 => Some(Family::Unix),
            2 => Some(Family::Inet),
            10 => Some(Family::Inet6),
            _ => None,
        }
    }

    /// The shortest endpoint image a receiver accepts for this family:
    /// `sizeof(sockaddr_in)` = 16, `sizeof(sockaddr_in6)` = 28, and 2 (an unnamed
    /// `sockaddr_un`) for UNIX.
    pub const fn min_endpoint_len(self) -> usize {
        match self {
            Family::Unix => 2,
            Family::Inet => SOCKADDR_IN_LEN,
            Family::Inet6 => SOCKADDR_IN6_LEN,
        }
    }

    /// The longest endpoint image a receiver accepts for this family: 128
    /// (`sizeof(sockaddr_storage)`) for IP, 110 (`sizeof(sockaddr_un)`) for UNIX.
    pub const fn max_endpoint_len(self) -> usize {
        match self {
            Family::Unix => MAX_UNIX_ENDPOINT_LEN,
            Family::Inet | Family::Inet6 => MAX_ENDPOINT_LEN,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Unix => "AF_UNIX",
            Family::Inet => "AF_INET",
            Family::Inet6 => "AF_INET6",
        })
    }
}

/// `sizeof(struct sockaddr_in)`.
pub const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(struct sockaddr_in6)`.
pub const SOCKADDR_IN6_LEN: usize = 28;
/// The longest endpoint image a receiver accepts (`sizeof(struct sockaddr_storage)`).
pub const MAX_ENDPOINT_LEN: usize = 128;
/// The longest UNIX endpoint image (`sizeof(struct sockaddr_un)`).
pub const MAX_UNIX_ENDPOINT_LEN: usize = 110;
/// The size of `sun_path`: the longest pathname. A pathname this long has no room
/// for its trailing NUL, and goes without, as the kernel allows.
pub const SUN_PATH_LEN: usize = MAX_UNIX_ENDPOINT_LEN - 2;
/// The longest abstract name: `sun_path` less its leading NUL.
pub const MAX_UNIX_ABSTRACT_LEN: usize = SUN_PATH_LEN - 1;

/// The address of a UNIX socket, as Linux reports it.
///
/// Its constructors check what the kernel would refuse, so every value can be encoded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnixEndpoint(UnixKind);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum UnixKind {
    Unnamed,
    Abstract(Vec<u8>),
    Pathname(PathBuf),
}

impl UnixEndpoint {
    /// The address of an unnamed socket (one end of a `socketpair`, an unbound client).
    pub const fn unnamed() -> UnixEndpoint {
        UnixEndpoint(UnixKind::Unnamed)
    }

    /// A filesystem path.
    ///
    /// ```
    /// use handoff_proto::UnixEndpoint;
    /// let ep = UnixEndpoint::pathname("/run/handoff.sock").unwrap();
    /// assert_eq!(ep.to_string(), "unix:/run/handoff.sock");
    /// assert!(UnixEndpoint::pathname("").is_err());
    /// ```
    ///
    /// # Errors
    /// [`EndpointError::EmptyPath`], [`EndpointError::NulInPath`], or
    /// [`EndpointError::NameTooLong`] past 108 bytes.
    pub fn pathname(path: impl AsRef<Path>) -> Result<UnixEndpoint, EndpointError> {
        let bytes = path.as_ref().as_os_str().as_bytes();
        if bytes.is_empty() {
            return Err(EndpointError::EmptyPath);
        }
        if bytes.contains(&0) {
            return Err(EndpointError::NulInPath);
        }
        if bytes.len() > SUN_PATH_LEN {
            return Err(EndpointError::NameTooLong {
                len: bytes.len(),
                max: SUN_PATH_LEN,
            });
        }
        Ok(UnixEndpoint(UnixKind::Pathname(path.as_ref().to_owned())))
    }

    /// A name in the abstract namespace, without its leading NUL.
    ///
    /// ```
    /// use handoff_proto::UnixEndpoint;
    /// let ep = UnixEndpoint::abstract_name(b"handoff").unwrap();
    /// assert_eq!(ep.to_string(), "unix:@handoff");
    /// ```
    ///
    /// # Errors
    /// [`EndpointError::NameTooLong`] past 107 bytes.
    pub fn abstract_name(name: &[u8]) -> Result<UnixEndpoint, EndpointError> {
        if name.len() > MAX_UNIX_ABSTRACT_LEN {
            return Err(EndpointError::NameTooLong {
                len: name.len(),
                max: MAX_UNIX_ABSTRACT_LEN,
            });
        }
        Ok(UnixEndpoint(UnixKind::Abstract(name.to_vec())))
    }

    /// Whether this is the address of an unnamed socket.
    pub fn is_unnamed(&self) -> bool {
        matches!(self.0, UnixKind::Unnamed)
    }

    /// The path, for a pathname socket.
    pub fn as_pathname(&self) -> Option<&Path> {
        match &self.0 {
            UnixKind::Pathname(p) => Some(p),
            _ => None,
        }
    }

    /// The name without its leading NUL, for an abstract socket.
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        match &self.0 {
            UnixKind::Abstract(n) => Some(n),
            _ => None,
        }
    }

    /// The length of the image as the kernel reports it: 2 for unnamed, 2 + 1 + name
    /// length for abstract, 2 + path length + 1 for a pathname (but at most 110: a
    /// 108-byte path fills `sun_path` and has no trailing NUL).
    pub fn sockaddr_len(&self) -> usize {
        match &self.0 {
            UnixKind::Unnamed => 2,
            UnixKind::Abstract(n) => 3 + n.len(),
            UnixKind::Pathname(p) => (3 + p.as_os_str().len()).min(MAX_UNIX_ENDPOINT_LEN),
        }
    }

    /// Reads `sun_path` (the image after `sun_family`); `path` is at most 108 bytes.
    fn from_sun_path(path: &[u8]) -> UnixEndpoint {
        match path.split_first() {
            None => UnixEndpoint(UnixKind::Unnamed),
            Some((0, name)) => UnixEndpoint(UnixKind::Abstract(name.to_vec())),
            Some(_) => {
                // A pathname ends at its first NUL; a sender may leave it out.
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                let os = OsStr::from_bytes(&path[..end]);
                UnixEndpoint(UnixKind::Pathname(PathBuf::from(os)))
            }
        }
    }
}

impl From<&net::SocketAddr> for UnixEndpoint {
    /// The address std reports for a UNIX socket (`local_addr`, `peer_addr`, what
    /// `accept` returns). Pure: std already parsed `sun_path`.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use handoff_proto::UnixEndpoint;
    /// let (a, _b) = UnixStream::pair()?;
    /// assert!(UnixEndpoint::from(&a.local_addr()?).is_unnamed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn from(addr: &net::SocketAddr) -> UnixEndpoint {
        let kind = if let Some(path) = addr.as_pathname() {
            UnixKind::Pathname(path.to_owned())
        } else if let Some(name) = addr.as_abstract_name() {
            UnixKind::Abstract(name.to_vec())
        } else {
            UnixKind::Unnamed
        };
        // The kernel never reports a name longer than sun_path: every value fits.
        UnixEndpoint(kind)
    }
}

impl fmt::Display for UnixEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            UnixKind::Unnamed => f.write_str("unix:"),
            UnixKind::Abstract(n) => write!(f, "unix:@{}", String::from_utf8_lossy(n)),
            UnixKind::Pathname(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One end of a communication: an IPv4 or IPv6 socket address, or a UNIX address.
///
/// On the wire it travels as the machine's own `sockaddr` image (see the crate docs);
/// [`Endpoint::from_sockaddr`] and [`Endpoint::write_sockaddr`] convert.
///
/// Its text form is the one `handoff`'s tools print and parse:
///
/// ```
/// use handoff_proto::Endpoint;
/// for text in ["127.0.0.1:53", "[2001:db8::1]:5300", "[fe80::1%2]:53", "unix:/tmp/s", "unix:@name", "unix:"] {
///     let ep: Endpoint = text.parse().unwrap();
///     assert_eq!(ep.to_string(), text);
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// An IPv4 address and port.
    V4(SocketAddrV4),
    /// An IPv6 address, port, flow info and scope id.
    V6(SocketAddrV6),
    /// A UNIX socket address.
    Unix(UnixEndpoint),
}

impl Endpoint {
    /// The family of this endpoint.
    pub fn family(&self) -> Family {
        match self {
            Endpoint::V4(_) => Family::Inet,
            Endpoint::V6(_) => Family::Inet6,
            Endpoint::Unix(_) => Family::Unix,
        }
    }

    /// The IP socket address, if this is one.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::V4(a) => Some(SocketAddr::V4(*a)),
            Endpoint::V6(a) => Some(SocketAddr::V6(*a)),
            Endpoint::Unix(_) => None,
        }
    }

    /// The UNIX address, if this is one.
    pub fn unix(&self) -> Option<&UnixEndpoint> {
        match self {
            Endpoint::Unix(u) => Some(u),
            _ => None,
        }
    }

    /// The length of the canonical image: 16, 28, or the UNIX length the kernel reports.
    pub fn sockaddr_len(&self) -> usize {
        match self {
            Endpoint::V4(_) => SOCKADDR_IN_LEN,
            Endpoint::V6(_) => SOCKADDR_IN6_LEN,
            Endpoint::Unix(u) => u.sockaddr_len(),
        }
    }

    /// Parses a `sockaddr` image as `getsockname(2)` fills it, with the length it
    /// reports. Bytes past the family's structure (padding, `sockaddr_storage` slack)
    /// are ignored.
    ///
    /// ```
    /// use handoff_proto::Endpoint;
    /// let mut image = [0u8; 16];
    /// image[..2].copy_from_slice(&2u16.to_ne_bytes());
    /// image[2..4].copy_from_slice(&53u16.to_be_bytes());
    /// image[4..8].copy_from_slice(&[192, 0, 2, 1]);
    /// assert_eq!(Endpoint::from_sockaddr(&image).unwrap().to_string(), "192.0.2.1:53");
    /// ```
    ///
    /// # Errors
    /// [`EndpointError::UnknownFamily`], [`EndpointError::ImageTooShort`] or
    /// [`EndpointError::ImageTooLong`].
    pub fn from_sockaddr(image: &[u8]) -> Result<Endpoint, EndpointError> {
        let [a, b, ..] = *image else {
            return Err(EndpointError::ImageTooShort {
                len: image.len(),
                min: 2,
            });
        };
        let code = u16::from_ne_bytes([a, b]);
        let family = Family::from_code(u32::from(code))
            .ok_or(EndpointError::UnknownFamily { family: code })?;
        if image.len() < family.min_endpoint_len() {
            return Err(EndpointError::ImageTooShort {
                len: image.len(),
                min: family.min_endpoint_len(),
            });
        }
        if image.len() > family.max_endpoint_len() {
            return Err(EndpointError::ImageTooLong {
                len: image.len(),
                max: family.max_endpoint_len(),
            });
        }
        Ok(Endpoint::from_checked_image(family, image))
    }

    /// Builds the endpoint from an image whose family and length bounds are checked.
    pub(crate) fn from_checked_image(family: Family, image: &[u8]) -> Endpoint {
        let port = || u16::from_be_bytes([image[2], image[3]]);
        match family {
            Family::Inet => {
                let ip = Ipv4Addr::new(image[4], image[5], image[6], image[7]);
                Endpoint::V4(SocketAddrV4::new(ip, port()))
            }
            Family::Inet6 => {
                let flowinfo = u32::from_ne_bytes(array(&image[4..8]));
                let ip = Ipv6Addr::from(array::<16>(&image[8..24]));
                let scope_id = u32::from_ne_bytes(array(&image[24..28]));
                Endpoint::V6(SocketAddrV6::new(ip, port(), flowinfo, scope_id))
            }
            Family::Unix => Endpoint::Unix(UnixEndpoint::from_sun_path(&image[2..])),
        }
    }

    /// Writes the canonical image into `out` and returns its length: padding is zero,
    /// `sa_family`, flow info and scope id in host order, the port in network order.
    ///
    /// # Panics
    /// If `out` is shorter than [`Endpoint::sockaddr_len`].
    ///
    /// ```
    /// use handoff_proto::Endpoint;
    /// let ep: Endpoint = "127.0.0.1:37751".parse().unwrap();
    /// let mut out = [0xffu8; 128];
    /// let n = ep.write_sockaddr(&mut out);
    /// assert_eq!(Endpoint::from_sockaddr(&out[..n]).unwrap(), ep);
    /// ```
    pub fn write_sockaddr(&self, out: &mut [u8]) -> usize {
        let len = self.sockaddr_len();
        let out = &mut out[..len];
        out.fill(0);
        out[..2].copy_from_slice(&(self.family().code() as u16).to_ne_bytes());
        match self {
            Endpoint::V4(a) => {
                out[2..4].copy_from_slice(&a.port().to_be_bytes());
                out[4..8].copy_from_slice(&a.ip().octets());
            }
            Endpoint::V6(a) => {
                out[2..4].copy_from_slice(&a.port().to_be_bytes());
                out[4..8].copy_from_slice(&a.flowinfo().to_ne_bytes());
                out[8..24].copy_from_slice(&a.ip().octets());
                out[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            }
            Endpoint::Unix(u) => match &u.0 {
                UnixKind::Unnamed => {}
                // The leading NUL is already there.
                UnixKind::Abstract(n) => out[3..].copy_from_slice(n),
                // So is the trailing one, where there is room for it.
                UnixKind::Pathname(p) => {
                    let path = p.as_os_str().as_bytes();
                    out[2..2 + path.len()].copy_from_slice(path);
                }
            },
        }
        len
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        match addr {
            SocketAddr::V4(a) => Endpoint::V4(a),
            SocketAddr::V6(a) => Endpoint::V6(a),
        }
    }
}

impl From<SocketAddrV4> for Endpoint {
    fn from(addr: SocketAddrV4) -> Endpoint {
        Endpoint::V4(addr)
    }
}

impl From<SocketAddrV6> for Endpoint {
    fn from(addr: SocketAddrV6) -> Endpoint {
        Endpoint::V6(addr)
    }
}

impl From<UnixEndpoint> for Endpoint {
    fn from(addr: UnixEndpoint) -> Endpoint {
        Endpoint::Unix(addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::V4(a) => a.fmt(f),
            Endpoint::V6(a) => {
                // std prints the scope id, never the flow info; so do we.
                write!(f, "[{}", a.ip())?;
                if a.scope_id() != 0 {
                    write!(f, "%{}", a.scope_id())?;
                }
                write!(f, "]:{}", a.port())
            }
            Endpoint::Unix(u) => u.fmt(f),
        }
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    /// Parses `1.2.3.4:53`, `[2001:db8::1]:53`, `[fe80::1%2]:53`, `unix:/path`,
    /// `unix:@abstract` or `unix:` (unnamed).
    fn from_str(s: &str) -> Result<Endpoint, EndpointError> {
        let syntax = || EndpointError::Syntax { text: s.to_owned() };
        if let Some(rest) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(match rest.strip_prefix('@') {
                _ if rest.is_empty() => UnixEndpoint::unnamed(),
                Some(name) => UnixEndpoint::abstract_name(name.as_bytes())?,
                None => UnixEndpoint::pathname(rest)?,
            }));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(syntax)?;
            let (ip, scope) = match host.split_once('%') {
                Some((ip, scope)) => (ip, scope.parse::<u32>().map_err(|_| syntax())?),
                None => (host, 0),
            };
            let ip: Ipv6Addr = ip.parse().map_err(|_| syntax())?;
            let port: u16 = port.parse().map_err(|_| syntax())?;
            return Ok(Endpoint::V6(SocketAddrV6::new(ip, port, 0, scope)));
        }
        s.parse::<SocketAddrV4>()
            .map(Endpoint::V4)
            .map_err(|_| syntax())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_images_have_the_kernel_lengths() {
        let unnamed = Endpoint::Unix(UnixEndpoint::unnamed());
        let abs = Endpoint::Unix(UnixEndpoint::abstract_name(b"abc").unwrap());
        let path = Endpoint::Unix(UnixEndpoint::pathname("/a/b").unwrap());
        let mut buf = [0xaa; 128];
        assert_eq!(unnamed.write_sockaddr(&mut buf), 2);
        assert_eq!(&buf[..2], &1u16.to_ne_bytes());
        assert_eq!(abs.write_sockaddr(&mut buf), 6);
        assert_eq!(&buf[2..6], b"\0abc");
        assert_eq!(path.write_sockaddr(&mut buf), 7);
        assert_eq!(&buf[2..7], b"/a/b\0");
        for ep in [unnamed, abs, path] {
            let n = ep.write_sockaddr(&mut buf);
            assert_eq!(Endpoint::from_sockaddr(&buf[..n]).unwrap(), ep);
        }
    }

    #[test]
    fn pathname_without_trailing_nul_is_accepted() {
        let mut image = 1u16.to_ne_bytes().to_vec();
        image.extend_from_slice(b"/x");
        let ep = Endpoint::from_sockaddr(&image).unwrap();
        assert_eq!(ep.to_string(), "unix:/x");
    }

    #[test]
    fn longest_unix_names_fit_and_longer_ones_do_not() {
        let p107 = "/".repeat(SUN_PATH_LEN - 1);
        let ep = UnixEndpoint::pathname(&p107).unwrap();
        assert_eq!(ep.sockaddr_len(), MAX_UNIX_ENDPOINT_LEN);
        // 108 bytes fill sun_path: no trailing NUL, and the image round-trips.
        let p108 = Endpoint::Unix(UnixEndpoint::pathname(format!("{p107}/")).unwrap());
        let mut buf = [0xaa; 128];
        assert_eq!(p108.write_sockaddr(&mut buf), MAX_UNIX_ENDPOINT_LEN);
        assert_eq!(Endpoint::from_sockaddr(&buf[..110]).unwrap(), p108);
        assert_eq!(
            UnixEndpoint::pathname(format!("{p107}//")),
            Err(EndpointError::NameTooLong {
                len: SUN_PATH_LEN + 1,
                max: SUN_PATH_LEN
            })
        );
        let name = vec![b'x'; MAX_UNIX_ABSTRACT_LEN];
        assert_eq!(
            UnixEndpoint::abstract_name(&name).unwrap().sockaddr_len(),
            MAX_UNIX_ENDPOINT_LEN
        );
        assert!(UnixEndpoint::abstract_name(&[b'x'; MAX_UNIX_ABSTRACT_LEN + 1]).is_err());
        assert_eq!(
            UnixEndpoint::pathname("/a\0b"),
            Err(EndpointError::NulInPath)
        );
    }

    #[test]
    fn v6_image_keeps_flowinfo_and_scope_in_host_order() {
        let a = SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0x0102_0304, 7);
        let mut buf = [0; 28];
        Endpoint::V6(a).write_sockaddr(&mut buf);
        assert_eq!(&buf[..2], &10u16.to_ne_bytes());
        assert_eq!(&buf[2..4], &[0, 53]);
        assert_eq!(&buf[4..8], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&buf[24..28], &7u32.to_ne_bytes());
        assert_eq!(Endpoint::from_sockaddr(&buf).unwrap(), Endpoint::V6(a));
    }

    #[test]
    fn text_forms() {
        for bad in [
            "",
            "1.2.3.4",
            "[::1]",
            "[::1%x]:5",
            "[zz]:1",
            "300.1.1.1:1",
            "1.2.3.4:99999",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} parsed");
        }
        let ep: Endpoint = "[fe80::1%1]:53".parse().unwrap();
        assert_eq!(ep.ip().unwrap().to_string(), "[fe80::1%1]:53");
    }

    #[test]
    fn bad_images() {
        assert_eq!(
            Endpoint::from_sockaddr(&[2]),
            Err(EndpointError::ImageTooShort { len: 1, min: 2 })
        );
        let mut v4 = [0u8; 15];
        v4[..2].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(
            Endpoint::from_sockaddr(&v4),
            Err(EndpointError::ImageTooShort { len: 15, min: 16 })
        );
        let mut unknown = [0u8; 16];
        unknown[..2].copy_from_slice(&17u16.to_ne_bytes());
        assert_eq!(
            Endpoint::from_sockaddr(&unknown),
            Err(EndpointError::UnknownFamily { family: 17 })
        );
        let mut big = [0u8; 129];
        big[..2].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(
            Endpoint::from_sockaddr(&big),
            Err(EndpointError::ImageTooLong { len: 129, max: 128 })
        );
    }
}
