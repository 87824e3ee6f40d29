//! systemd socket activation, to the letter of `sd_listen_fds_with_names(3)`.

use std::collections::HashMap;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::RawFd;

use crate::adopted::Adopted;
use crate::error::AdoptError;
use crate::sys;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// How to read `LISTEN_FDNAMES`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Names {
    /// A name count that differs from the fd count is an error (as libsystemd).
    #[default]
    Strict,
    /// Missing names become `unknown` and extra ones are dropped: for
    /// `systemd-socket-activate` before v258, which repeats or truncates names.
    Lenient,
}

/// The fds and names the variables describe, if they are for `our_pid`.
///
/// Pure: the variables' values come in, nothing is touched. `Ok(None)` means
/// "nothing passed to us" (absent variables, or `LISTEN_PID` of another process).
///
/// ```
/// use handoff_listen::activation::{parse, Names};
/// let got = parse(Some("42"), Some("2"), Some("web:dns"), 42, Names::Strict).unwrap();
/// assert_eq!(got, Some(vec![(3, "web".to_string()), (4, "dns".to_string())]));
/// assert_eq!(parse(Some("41"), Some("2"), None, 42, Names::Strict).unwrap(), None);
/// ```
///
/// # Errors
/// [`AdoptError::Malformed`], [`AdoptError::BadCount`], [`AdoptError::NameCount`].
pub fn parse(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    our_pid: u32,
    names: Names,
) -> Result<Option<Vec<(RawFd, String)>>, AdoptError> {
    let Some(pid) = listen_pid else {
        return Ok(None);
    };
    let pid: u32 =
        pid.trim()
            .parse()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| AdoptError::Malformed {
                var: "LISTEN_PID",
                value: pid.to_owned(),
            })?;
    if pid != our_pid {
        return Ok(None);
    }
    let Some(count) = listen_fds else {
        return Ok(None);
    };
    let n: i64 = count.trim().parse().map_err(|_| AdoptError::Malformed {
        var: "LISTEN_FDS",
        value: count.to_owned(),
    })?;
    if n <= 0 || n > i64::from(i32::MAX - LISTEN_FDS_START) {
        return Err(AdoptError::BadCount {
            count: count.to_owned(),
        });
    }
    let n = n as usize;
    let mut list: Vec<String> = match listen_fdnames {
        Some(s) => s.split(':').map(str::to_owned).collect(),
        None => vec!["unknown".to_owned(); n],
    };
    if list.len() != n {
        if names == Names::Strict {
            return Err(AdoptError::NameCount {
                names: list.len(),
                fds: n,
            });
        }
        list.resize(n, "unknown".to_owned());
    }
    Ok(Some(
        list.into_iter()
            .enumerate()
            .map(|(i, name)| (LISTEN_FDS_START + i as RawFd, name))
            .collect(),
    ))
}

/// The sockets systemd passed us, each handed out once.
///
/// Created by [`Activation::from_env`], which reads `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES` once and removes them, so children never adopt them too. Call it
/// early, before other threads start (it changes the environment).
///
/// ```no_run
/// use handoff_listen::{Activation, Names};
/// let mut passed = Activation::from_env(Names::Strict)?;
/// let web = match passed.take_tcp(8080) {
///     Some(l) => l,                                   // from systemd
///     None => std::net::TcpListener::bind("[::]:8080")?, // started by hand
/// };
/// passed.close_unclaimed();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Activation {
    sockets: Vec<Option<Adopted>>,
}

impl Activation {
    /// Adopts what systemd passed to this process (nothing, if the variables are
    /// absent or for another pid). The variables are removed in every case.
    ///
    /// # Errors
    /// Malformed variables, a name count mismatch ([`Names::Strict`]), or an fd in
    /// the window that is not open or not a socket. Fds already adopted are closed.
    pub fn from_env(names: Names) -> Result<Activation, AdoptError> {
        let var = |k| std::env::var(k).ok();
        let (pid, fds, fdnames) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
        for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(k);
        }
        let parsed = parse(
            pid.as_deref(),
            fds.as_deref(),
            fdnames.as_deref(),
            std::process::id(),
            names,
        )?;
        Ok(Activation {
            sockets: adopt_all(parsed.unwrap_or_default())?,
        })
    }

    /// How many sockets are left to take.
    pub fn remaining(&self) -> usize {
        self.sockets.iter().flatten().count()
    }

    /// Whether nothing was passed (or everything was taken).
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The names of the sockets left, in fd order.
    pub fn names(&self) -> Vec<&str> {
        self.sockets.iter().flatten().map(Adopted::name).collect()
    }

    /// Takes the first socket with this name.
    pub fn take(&mut self, name: &str) -> Option<Adopted> {
        self.take_where(|s| s.name() == name)
    }

    /// Takes the first socket for which `pred` holds.
    pub fn take_where(&mut self, mut pred: impl FnMut(&Adopted) -> bool) -> Option<Adopted> {
        self.sockets
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(&mut pred))?
            .take()
    }

    /// Takes a listening TCP socket on `port`: IPv4, or IPv6 (which, as a wildcard
    /// without `IPV6_V6ONLY`, serves both).
    pub fn take_tcp(&mut self, port: u16) -> Option<TcpListener> {
        self.take_where(|s| s.is_tcp_listener_on(port))?
            .into_tcp_listener()
            .ok()
    }

    /// Takes a UDP socket on `port`.
    pub fn take_udp(&mut self, port: u16) -> Option<UdpSocket> {
        self.take_where(|s| s.is_udp_on(port))?
            .into_udp_socket()
            .ok()
    }

    /// Takes an `Accept=yes` connection: a stream socket that is not listening. Never
    /// `accept` on such a socket.
    pub fn take_connection(&mut self) -> Option<Adopted> {
        self.take_where(|s| s.socket_type() == socket2::Type::STREAM && !s.is_listening())
    }

    /// Takes every socket left, in fd order.
    pub fn take_all(&mut self) -> Vec<Adopted> {
        self.sockets.iter_mut().filter_map(Option::take).collect()
    }

    /// Closes the sockets nobody took, and says how many there were.
    pub fn close_unclaimed(&mut self) -> usize {
        self.take_all().len()
    }
}

/// Adopts each fd of the list (all or none: on an error the ones adopted so far
/// close as they drop).
pub(crate) fn adopt_all(list: Vec<(RawFd, String)>) -> Result<Vec<Option<Adopted>>, AdoptError> {
    let mut seen = HashMap::new();
    list.into_iter()
        .map(|(fd, name)| {
            if seen.insert(fd, ()).is_some() {
                return Err(AdoptError::Fd {
                    fd,
                    name,
                    source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "listed twice"),
                });
            }
            let owned = sys::adopt(fd).map_err(|source| AdoptError::Fd {
                fd,
                name: name.clone(),
                source,
            })?;
            Adopted::inspect(owned, name.clone())
                .map(Some)
                .map_err(|source| AdoptError::Fd { fd, name, source })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_of_sd_listen_fds() {
        let strict = |p, f, n| parse(p, f, n, 100, Names::Strict);
        assert_eq!(
            strict(None, Some("2"), None).unwrap(),
            None,
            "no LISTEN_PID"
        );
        assert_eq!(
            strict(Some("99"), Some("2"), None).unwrap(),
            None,
            "not ours"
        );
        assert_eq!(
            strict(Some("100"), None, None).unwrap(),
            None,
            "no LISTEN_FDS"
        );
        assert_eq!(
            strict(Some("100"), Some("2"), None).unwrap(),
            Some(vec![(3, "unknown".into()), (4, "unknown".into())])
        );
        assert!(matches!(
            strict(Some("x"), Some("1"), None),
            Err(AdoptError::Malformed {
                var: "LISTEN_PID",
                ..
            })
        ));
        assert!(matches!(
            strict(Some("0"), Some("1"), None),
            Err(AdoptError::Malformed { .. })
        ));
        assert!(matches!(
            strict(Some("100"), Some("one"), None),
            Err(AdoptError::Malformed {
                var: "LISTEN_FDS",
                ..
            })
        ));
        assert!(matches!(
            strict(Some("100"), Some("0"), None),
            Err(AdoptError::BadCount { .. })
        ));
        assert!(matches!(
            strict(Some("100"), Some("-3"), None),
            Err(AdoptError::BadCount { .. })
        ));
        assert!(matches!(
            strict(Some("100"), Some("2"), Some("a:b:c")),
            Err(AdoptError::NameCount { names: 3, fds: 2 })
        ));
        assert!(matches!(
            strict(Some("100"), Some("3"), Some("a")),
            Err(AdoptError::NameCount { names: 1, fds: 3 })
        ));
    }

    #[test]
    fn lenient_names_pad_and_truncate() {
        let lenient = |n| {
            parse(Some("7"), Some("3"), Some(n), 7, Names::Lenient)
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            lenient("a"),
            vec![
                (3, "a".into()),
                (4, "unknown".into()),
                (5, "unknown".into())
            ]
        );
        assert_eq!(lenient("a:b:c:d").len(), 3);
    }
}
