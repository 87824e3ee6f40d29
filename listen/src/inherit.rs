//! Listeners inherited across exec from our own previous generation.
//!
//! The parent lists the fds it passes, with names, in one environment variable
//! (`HANDOFF_LISTEN_FDS=3:web,4:dns` by default; in a name, `%` and `,` are written
//! `%25` and `%2C`); close-on-exec is cleared only in
//! the child, between fork and exec. The child adopts them and removes the variable,
//! so its own children do not adopt them too.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::process::Command;

use crate::activation::adopt_all;
use crate::adopted::Adopted;
use crate::error::AdoptError;
use crate::sys;

/// The variable [`inherit`] and [`pass_fds`] use unless told otherwise.
pub const DEFAULT_VAR: &str = "HANDOFF_LISTEN_FDS";

/// Makes `cmd` inherit `fds` under their names: sets `var` to the list and clears
/// close-on-exec on them in the child only.
///
/// ```no_run
/// use std::os::fd::AsFd;
/// use std::process::Command;
/// let listener = std::net::TcpListener::bind("[::]:8080")?;
/// let mut successor = Command::new(std::env::current_exe()?);
/// handoff_listen::pass_fds(&mut successor, handoff_listen::inherit::DEFAULT_VAR, &[(listener.as_fd(), "web")]);
/// successor.spawn()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pass_fds(cmd: &mut Command, var: &str, fds: &[(BorrowedFd<'_>, &str)]) {
    let list: Vec<String> = fds
        .iter()
        .map(|(fd, name)| {
            format!(
                "{}:{}",
                fd.as_raw_fd(),
                name.replace('%', "%25").replace(',', "%2C")
            )
        })
        .collect();
    cmd.env(var, list.join(","));
    sys::keep_across_exec(cmd, fds.iter().map(|(fd, _)| fd.as_raw_fd()).collect());
}

/// The list in `value`: `FD:NAME` entries separated by commas.
///
/// ```
/// let got = handoff_listen::inherit::parse("X", "3:web,7:dns").unwrap();
/// assert_eq!(got, vec![(3, "web".to_string()), (7, "dns".to_string())]);
/// ```
///
/// # Errors
/// [`AdoptError::BadEntry`] for an entry that is not `FD:NAME` with FD ≥ 0.
pub fn parse(var: &str, value: &str) -> Result<Vec<(RawFd, String)>, AdoptError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|entry| {
            let bad = || AdoptError::BadEntry {
                var: var.to_owned(),
                entry: entry.to_owned(),
            };
            let (fd, name) = entry.split_once(':').ok_or_else(bad)?;
            let fd: RawFd = fd.parse().ok().filter(|&fd| fd >= 0).ok_or_else(bad)?;
            Ok((fd, name.replace("%2C", ",").replace("%25", "%")))
        })
        .collect()
}

/// Adopts the sockets listed in `var` and removes the variable. Nothing listed is
/// an empty list (a cold start), not an error. Call it early, before other threads
/// start (it changes the environment).
///
/// # Errors
/// A malformed list, or a listed fd that is not an open socket.
pub fn inherit(var: &str) -> Result<Vec<Adopted>, AdoptError> {
    let Some(value) = std::env::var_os(var) else {
        return Ok(Vec::new());
    };
    std::env::remove_var(var);
    let value = value.to_string_lossy();
    Ok(adopt_all(parse(var, &value)?)?
        .into_iter()
        .flatten()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lists_are_refused() {
        for bad in ["3", "x:web", "-1:web", "3:web,,4:dns", ":web"] {
            assert!(
                matches!(parse("V", bad), Err(AdoptError::BadEntry { .. })),
                "{bad}"
            );
        }
        assert_eq!(parse("V", "").unwrap(), vec![]);
        assert_eq!(parse("V", "3:").unwrap(), vec![(3, String::new())]);
        assert_eq!(
            parse("V", "3:tcp:[::1]:53%2Cx%252C").unwrap(),
            vec![(3, "tcp:[::1]:53,x%2C".to_owned())]
        );
    }
}
