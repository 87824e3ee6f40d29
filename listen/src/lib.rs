//! Listening sockets the way production servers need them.
//!
//! - **systemd socket activation** ([`Activation`]), to the letter of
//!   `sd_listen_fds_with_names(3)`: `LISTEN_PID` must be ours (else nothing was
//!   passed to us, which is no error), the `LISTEN_FDS` window starts at fd 3, the
//!   `LISTEN_FDNAMES` count must match (or, in [`Names::Lenient`], is padded with
//!   `unknown` for older `systemd-socket-activate`), every fd is checked to be open
//!   and set close-on-exec, and the variables are read once and removed so children
//!   never adopt them. Each fd is inspected like `sd_is_socket` and handed out once,
//!   by name or by port; an `Accept=yes` connection is recognised and never accepted
//!   on; [`Activation::close_unclaimed`] closes what nobody took.
//! - **Inheritance across exec** ([`pass_fds`], [`inherit()`]): our own successor finds
//!   its listeners through one variable, cleared after adoption; close-on-exec is
//!   cleared only in the child, between fork and exec.
//! - **Dual-stack** ([`tcp_dual_stack`], [`udp_dual_stack`]): an IPv4 and an IPv6
//!   (`IPV6_V6ONLY`) socket on one port, port 0 included; or one IPv6 socket that
//!   serves both ([`tcp_any_v6`]). A host without IPv6 gets IPv4 and a note.
//! - **UNIX listeners** ([`unix()`]): a stale socket file is replaced only if a probe
//!   finds nobody accepting; other files are errors that name the path; mode 0660 by
//!   default and never more open while being set up; path-too-long caught before any
//!   syscall. Abstract names too ([`unix_abstract`]).
//! - **Options** ([`Options`]): `SO_REUSEADDR` always, `SO_REUSEPORT`, backlog 1024,
//!   buffer sizes, keepalive, `TCP_USER_TIMEOUT`, non-blocking; [`accept_tcp`] on a
//!   borrowed, shared listener fd, with would-block apart from real errors and
//!   `TCP_NODELAY` on what it accepts. "Address in use" names the process holding
//!   the port when `/proc` tells.
//!
//! ```no_run
//! use handoff_listen::{Activation, Names, Options};
//!
//! // Under systemd (or systemd-socket-activate -l 8080 …) take the passed socket;
//! // started by hand, bind it.
//! let mut passed = Activation::from_env(Names::Lenient)?;
//! let web = match passed.take_tcp(8080) {
//!     Some(l) => l,
//!     None => handoff_listen::tcp("0.0.0.0:8080".parse()?, &Options::default())?,
//! };
//! passed.close_unclaimed();
//! # drop(web);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod activation;
mod adopted;
mod bind;
mod error;
mod holder;
pub mod inherit;
mod sys;

pub use activation::{Activation, Names, LISTEN_FDS_START};
pub use adopted::Adopted;
pub use bind::{
    accept_tcp, tcp, tcp_any_v6, tcp_defer_accept, tcp_dual_stack, tcp_dual_stack_on, udp,
    udp_dual_stack, udp_dual_stack_on, unix, unix_abstract, DualStack, Options, UnixOptions,
    MAX_PATH_LEN,
};
pub use error::{AdoptError, Holder, ListenError};
pub use inherit::{inherit, pass_fds};
/// socket2, whose types [`Adopted`] exposes.
pub use socket2;
