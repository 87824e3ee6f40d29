//! `handoffd`: see `handoffd --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::os::fd::OwnedFd;

use handoff_broker::broker::SuccessorCommand;
use handoff_broker::{metrics, upgrade, Broker, Config};

/// handoffd accepts connections and datagrams and hands each one, with the bytes it
/// pre-read, to a worker process of the right pool, keeping its copy until the
/// worker acknowledges it.
///
/// Workers connect to their pool's UNIX socket (see the worker API in the
/// handoff-broker crate). SIGTERM stops accepting, delivers what is queued, waits
/// for acknowledgements up to drain_timeout_ms, and exits 0.
///
/// SIGUSR2 upgrades without losing a connection: handoffd starts the program at its
/// own path again, with the same arguments, and hands it the listening sockets;
/// once the successor is ready, this one stops accepting, drains, hands it the
/// workers and exits 0. A successor that fails, or is not ready within
/// upgrade_timeout_ms, is killed and this one serves on.
#[derive(Parser, Debug)]
#[command(
    name = "handoffd",
    version,
    after_help = "Metrics: GET /metrics on [admin] listen, in the Prometheus text format."
)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/handoff/handoffd.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a configuration file and report every mistake with its line.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

/// `eprintln!`, in one `write` (see [`handoff_broker::say`]).
macro_rules! say {
    ($($t:tt)*) => {
        handoff_broker::say(format_args!($($t)*))
    };
}

fn load(path: &PathBuf) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Config::parse(&text, nix::unistd::getuid().as_raw()).map_err(|errs| {
        errs.0
            .iter()
            .map(|(line, msg)| match line {
                Some(l) => format!("{}:{l}: {msg}", path.display()),
                None => format!("{}: {msg}", path.display()),
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match load(file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} listener(s), {} pool(s))",
                    file.display(),
                    c.listeners.len(),
                    c.pools.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                say!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    // Before anything else: the sockets of a predecessor, if one started us.
    let mut handed = match upgrade::take_over() {
        Ok(h) => h,
        Err(e) => {
            say!("handoffd: taking over from the predecessor: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Where this program is now: an upgrade starts what is installed there then.
    let successor = std::env::current_exe().map(|program| SuccessorCommand {
        program,
        args: std::env::args_os().skip(1).collect(),
    });
    let config = match load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            say!("{e}");
            return ExitCode::from(2);
        }
    };
    let predecessor = handed.as_ref().map(|h| h.predecessor);
    let handed_admin = handed.as_mut().and_then(|h| h.admin.take());
    let shared = metrics::Shared::default();
    let mut broker = match Broker::with_handed(&config, shared.clone(), handed) {
        Ok(b) => b,
        Err(e) => {
            say!("handoffd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut admin_fd = None;
    if let Some(addr) = config.admin {
        let given = handed_admin
            .map(std::net::TcpListener::from)
            .filter(|l| l.local_addr().ok() == Some(addr));
        match given.map_or_else(|| std::net::TcpListener::bind(addr), Ok) {
            Ok(l) => {
                admin_fd = l.try_clone().ok().map(OwnedFd::from);
                metrics::serve(l, shared);
            }
            Err(e) => {
                say!("handoffd: admin endpoint {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match successor {
        Ok(command) => broker.allow_upgrade(command, admin_fd),
        Err(e) => {
            say!("handoffd: cannot tell where this program is ({e}): SIGUSR2 will not upgrade")
        }
    }
    for (name, addr) in broker.local_addrs() {
        say!("handoffd: listener {name:?} on {addr}");
    }
    match predecessor {
        Some(pid) => say!(
            "handoffd: ready (pid {}), taking over from pid {pid}",
            std::process::id()
        ),
        None => say!("handoffd: ready (pid {})", std::process::id()),
    }
    if let Err(e) = broker.ready() {
        say!("handoffd: cannot tell the predecessor it is ready: {e}");
    }
    match handoff_broker::notify::ready() {
        Ok(true) => say!("handoffd: told the supervisor (NOTIFY_SOCKET) it is ready"),
        Ok(false) => {}
        Err(e) => say!("handoffd: cannot notify the supervisor: {e}"),
    }
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("handoffd: {e}");
            ExitCode::FAILURE
        }
    }
}
