//! `handoffd`: see `handoffd --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use handoff_broker::{metrics, Broker, Config};

/// handoffd accepts connections and datagrams and hands each one, with the bytes it
/// pre-read, to a worker process of the right pool, keeping its copy until the
/// worker acknowledges it.
///
/// Workers connect to their pool's UNIX socket (see the worker API in the
/// handoff-broker crate). SIGTERM stops accepting, delivers what is queued, waits
/// for acknowledgements up to drain_timeout_ms, and exits 0.
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
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let shared = metrics::Shared::default();
    let broker = match Broker::new(&config, shared.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("handoffd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = config.admin {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => metrics::serve(l, shared),
            Err(e) => {
                eprintln!("handoffd: admin endpoint {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for (name, addr) in broker.local_addrs() {
        eprintln!("handoffd: listener {name:?} on {addr}");
    }
    eprintln!("handoffd: ready (pid {})", std::process::id());
    match handoff_broker::notify::ready() {
        Ok(true) => eprintln!("handoffd: told the supervisor (NOTIFY_SOCKET) it is ready"),
        Ok(false) => {}
        Err(e) => eprintln!("handoffd: cannot notify the supervisor: {e}"),
    }
    match broker.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("handoffd: {e}");
            ExitCode::FAILURE
        }
    }
}
