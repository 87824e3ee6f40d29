//! handoffd's configuration: a TOML file, checked as a whole, each mistake reported
//! with its line.
//!
//! ```toml
//! drain_timeout_ms = 5000          # SIGTERM: how long to wait for acks (default 5000)
//! upgrade_timeout_ms = 10000       # SIGUSR2: how long a successor may take to get
//!                                  # ready before it is killed (default 10000)
//!
//! [admin]
//! listen = "127.0.0.1:9090"        # Prometheus text at /metrics (optional)
//!
//! [[listener]]
//! name = "web"
//! tcp = "127.0.0.1:8080"           # or udp = "…", unix = "/path" (with mode, default
//!                                  # 0o660), systemd = "name"
//! pool = "http"
//! preread = { until = "\r\n\r\n", max = 8192 }   # or { bytes = 512 }; none by default
//! preread_timeout_ms = 1000
//!
//! [[pool]]
//! name = "http"
//! socket = "/tmp/handoff-http.sock"
//! mode = 0o600                     # or 0o660 (default 0o600)
//! allow_uids = [1000]              # peers checked with SO_PEERCRED (default: our uid)
//! dispatch = "round-robin"         # or "least-outstanding"
//! queue = 1024                     # sessions waiting for a worker; then new ones are refused
//! ```

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long SIGTERM waits for outstanding acks.
    pub drain_timeout: Duration,
    /// How long a successor started by SIGUSR2 may take to report ready.
    pub upgrade_timeout: Duration,
    /// Where the metrics are served.
    pub admin: Option<SocketAddr>,
    /// The listeners, each routed to a pool (by index into `pools`).
    pub listeners: Vec<ListenerConfig>,
    /// The worker pools.
    pub pools: Vec<PoolConfig>,
}

/// One listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Its name (in logs and metrics).
    pub name: String,
    /// What to listen on.
    pub kind: ListenKind,
    /// The pool its sessions go to (index into [`Config::pools`]).
    pub pool: usize,
    /// What to read before handing a connection off.
    pub preread: Preread,
    /// How long pre-reading may take.
    pub preread_timeout: Duration,
    /// The socket file's mode, for a UNIX listener.
    pub unix_mode: u32,
}

/// What a listener listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenKind {
    /// A TCP address (bound here).
    Tcp(SocketAddr),
    /// A UDP address: each datagram is a session.
    Udp(SocketAddr),
    /// A UNIX stream socket path.
    Unix(PathBuf),
    /// A socket passed by systemd under this name.
    Systemd(String),
}

/// What to read from a connection before handing it off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Preread {
    /// Nothing: hand it off at once.
    #[default]
    None,
    /// Up to this many bytes.
    Bytes(usize),
    /// Up to and including this delimiter, at most `max` bytes.
    Until {
        /// The delimiter (for example `\r\n\r\n`, the end of an HTTP request head).
        delimiter: Vec<u8>,
        /// The most to read.
        max: usize,
    },
}

/// One worker pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Its name.
    pub name: String,
    /// The UNIX socket workers connect to.
    pub socket: PathBuf,
    /// The socket file's mode.
    pub mode: u32,
    /// The uids a worker may run as.
    pub allow_uids: Vec<u32>,
    /// How to choose a worker.
    pub dispatch: Dispatch,
    /// How many sessions may wait for a worker before new ones are refused.
    pub queue: usize,
}

/// How a pool chooses among its workers with credit left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Dispatch {
    /// Each in turn.
    #[default]
    RoundRobin,
    /// The one with the fewest sessions unacknowledged.
    LeastOutstanding,
}

/// Mistakes in a configuration, each with its line (1-based, when known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<(Option<usize>, String)>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (line, msg)) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match line {
                Some(l) => write!(f, "line {l}: {msg}")?,
                None => write!(f, "{msg}")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    drain_timeout_ms: Option<u64>,
    upgrade_timeout_ms: Option<u64>,
    admin: Option<RawAdmin>,
    #[serde(default)]
    listener: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pool: Vec<Spanned<RawPool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: Spanned<String>,
    tcp: Option<Spanned<String>>,
    udp: Option<Spanned<String>>,
    unix: Option<PathBuf>,
    mode: Option<u32>,
    systemd: Option<String>,
    pool: Spanned<String>,
    preread: Option<Spanned<RawPreread>>,
    preread_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPreread {
    Word(String),
    Bytes { bytes: usize },
    Until { until: String, max: Option<usize> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Spanned<String>,
    socket: PathBuf,
    mode: Option<Spanned<u32>>,
    allow_uids: Option<Vec<u32>>,
    #[serde(default)]
    dispatch: Dispatch,
    queue: Option<usize>,
}

/// The line of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Config {
    /// Parses and checks `text`. `our_uid` is the default allow list.
    ///
    /// # Errors
    /// Every mistake found, each with its line.
    pub fn parse(text: &str, our_uid: u32) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigErrors(vec![(line, e.message().to_owned())])
        })?;
        let mut errors = Vec::new();
        let at = |span: std::ops::Range<usize>| Some(line_of(text, span.start));

        let mut pools = Vec::new();
        let mut pool_names = HashSet::new();
        for p in &raw.pool {
            let line = at(p.span());
            let p = p.get_ref();
            if !pool_names.insert(p.name.get_ref().clone()) {
                errors.push((
                    at(p.name.span()),
                    format!("pool {:?} is defined twice", p.name.get_ref()),
                ));
            }
            let mode = p.mode.as_ref().map_or(0o600, |m| *m.get_ref());
            if mode & 0o007 != 0 || mode & !0o777 != 0 {
                let line = p.mode.as_ref().map_or(line, |m| at(m.span()));
                errors.push((
                    line,
                    format!(
                        "pool {:?}: mode {mode:#o} lets every user connect; use 0o600 or 0o660",
                        p.name.get_ref()
                    ),
                ));
            }
            if p.socket.as_os_str().len() > handoff_listen::MAX_PATH_LEN {
                errors.push((
                    line,
                    format!(
                        "pool {:?}: socket path {:?} is too long",
                        p.name.get_ref(),
                        p.socket
                    ),
                ));
            }
            pools.push(PoolConfig {
                name: p.name.get_ref().clone(),
                socket: p.socket.clone(),
                mode,
                allow_uids: p.allow_uids.clone().unwrap_or_else(|| vec![our_uid]),
                dispatch: p.dispatch,
                queue: p.queue.unwrap_or(1024).max(1),
            });
        }

        let mut listeners = Vec::new();
        let mut names = HashSet::new();
        for l in &raw.listener {
            let line = at(l.span());
            let l = l.get_ref();
            let name = l.name.get_ref().clone();
            if !names.insert(name.clone()) {
                errors.push((
                    at(l.name.span()),
                    format!("listener {name:?} is defined twice"),
                ));
            }
            let kinds = [
                l.tcp.is_some(),
                l.udp.is_some(),
                l.unix.is_some(),
                l.systemd.is_some(),
            ];
            let kind = match kinds.iter().filter(|&&k| k).count() {
                1 => {
                    let addr = |s: &Spanned<String>, errors: &mut Vec<_>| match s
                        .get_ref()
                        .parse::<SocketAddr>(
                    ) {
                        Ok(a) => Some(a),
                        Err(_) => {
                            errors.push((at(s.span()), format!("listener {name:?}: {:?} is not an address like 127.0.0.1:8080 or [::]:53", s.get_ref())));
                            None
                        }
                    };
                    if let Some(t) = &l.tcp {
                        addr(t, &mut errors).map(ListenKind::Tcp)
                    } else if let Some(u) = &l.udp {
                        addr(u, &mut errors).map(ListenKind::Udp)
                    } else if let Some(p) = &l.unix {
                        Some(ListenKind::Unix(p.clone()))
                    } else {
                        l.systemd.clone().map(ListenKind::Systemd)
                    }
                }
                n => {
                    errors.push((line, format!("listener {name:?} needs exactly one of tcp, udp, unix, systemd ({n} given)")));
                    None
                }
            };
            let pool = pools.iter().position(|p| &p.name == l.pool.get_ref());
            if pool.is_none() {
                errors.push((
                    at(l.pool.span()),
                    format!(
                        "listener {name:?} routes to pool {:?}, which is not defined",
                        l.pool.get_ref()
                    ),
                ));
            }
            let preread = match l.preread.as_ref() {
                None => Preread::None,
                Some(p) => match p.get_ref() {
                    RawPreread::Word(w) if w == "none" => Preread::None,
                    RawPreread::Word(w) => {
                        errors.push((at(p.span()), format!("listener {name:?}: preread {w:?} is not \"none\", {{ bytes = N }} or {{ until = \"…\", max = N }}")));
                        Preread::None
                    }
                    RawPreread::Bytes { bytes } => Preread::Bytes(*bytes),
                    RawPreread::Until { until, max } if !until.is_empty() => Preread::Until {
                        delimiter: until.as_bytes().to_vec(),
                        max: max.unwrap_or(8192),
                    },
                    RawPreread::Until { .. } => {
                        errors.push((
                            at(p.span()),
                            format!("listener {name:?}: an empty delimiter"),
                        ));
                        Preread::None
                    }
                },
            };
            if matches!(kind, Some(ListenKind::Udp(_))) && preread != Preread::None {
                errors.push((line, format!("listener {name:?}: UDP sessions are whole datagrams; preread does not apply")));
            }
            if let (Some(kind), Some(pool)) = (kind, pool) {
                listeners.push(ListenerConfig {
                    name,
                    kind,
                    pool,
                    preread,
                    preread_timeout: Duration::from_millis(l.preread_timeout_ms.unwrap_or(1000)),
                    unix_mode: l.mode.unwrap_or(0o660) & 0o777,
                });
            }
        }
        if raw.listener.is_empty() {
            errors.push((
                None,
                "no [[listener]]: there is nothing to accept".to_owned(),
            ));
        }
        let admin = raw
            .admin
            .as_ref()
            .and_then(|a| match a.listen.get_ref().parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    errors.push((
                        at(a.listen.span()),
                        format!("admin listen {:?} is not an address", a.listen.get_ref()),
                    ));
                    None
                }
            });
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            drain_timeout: Duration::from_millis(raw.drain_timeout_ms.unwrap_or(5000)),
            upgrade_timeout: Duration::from_millis(raw.upgrade_timeout_ms.unwrap_or(10_000)),
            admin,
            listeners,
            pools,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[admin]
listen = "127.0.0.1:9090"

[[listener]]
name = "web"
tcp = "127.0.0.1:8080"
pool = "http"
preread = { until = "\r\n\r\n", max = 4096 }

[[listener]]
name = "dns"
udp = "127.0.0.1:5353"
pool = "http"

[[pool]]
name = "http"
socket = "/tmp/h.sock"
mode = 0o660
dispatch = "least-outstanding"
"#;

    #[test]
    fn a_good_config() {
        let c = Config::parse(GOOD, 1000).unwrap();
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(
            c.listeners[0].preread,
            Preread::Until {
                delimiter: b"\r\n\r\n".to_vec(),
                max: 4096
            }
        );
        assert_eq!(c.pools[0].mode, 0o660);
        assert_eq!(c.pools[0].allow_uids, [1000]);
        assert_eq!(c.pools[0].dispatch, Dispatch::LeastOutstanding);
        assert_eq!(c.admin, Some("127.0.0.1:9090".parse().unwrap()));
    }

    #[test]
    fn every_mistake_with_its_line() {
        let bad = r#"
[[listener]]
name = "web"
tcp = "localhost"
pool = "nope"

[[listener]]
name = "web"
udp = "127.0.0.1:53"
unix = "/tmp/x"
pool = "p"

[[pool]]
name = "p"
socket = "/tmp/p.sock"
mode = 0o666
"#;
        let errs = Config::parse(bad, 0).unwrap_err();
        let text = errs.to_string();
        assert!(
            text.contains("line 4: listener \"web\": \"localhost\" is not an address"),
            "{text}"
        );
        assert!(
            text.contains("line 5: listener \"web\" routes to pool \"nope\""),
            "{text}"
        );
        assert!(
            text.contains("line 8: listener \"web\" is defined twice"),
            "{text}"
        );
        assert!(
            text.contains("needs exactly one of tcp, udp, unix, systemd (2 given)"),
            "{text}"
        );
        assert!(
            text.contains("line 16: pool \"p\": mode 0o666 lets every user connect"),
            "{text}"
        );
        assert_eq!(errs.0.len(), 5, "{text}");
    }

    #[test]
    fn syntax_errors_and_unknown_keys_have_lines() {
        let errs = Config::parse("[[listener]]\nname = \"a\"\nport = 8080\n", 0).unwrap_err();
        assert_eq!(errs.0[0].0, Some(3), "{errs}");
        assert!(errs.to_string().contains("unknown field `port`"), "{errs}");
        let errs = Config::parse("[[pool]\n", 0).unwrap_err();
        assert_eq!(errs.0[0].0, Some(1), "{errs}");
    }
}
