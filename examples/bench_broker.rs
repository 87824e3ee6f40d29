//! Connections per second and server CPU per connection through handoffd with two
//! workers, against a direct server of two `SO_REUSEPORT` workers doing the same
//! work, in the same run; and how evenly the two workers share the load.
//!
//! ```text
//! cargo build --release --workspace --bins --examples
//! target/release/examples/bench_broker [--connections N] [--clients C]
//! ```
//!
//! Each connection sends one HTTP request and reads the answer to the end. Server CPU
//! is user + system time, from `/proc`, of every server process: the two direct
//! workers, or handoffd and its two workers. The load generator (this process) is
//! not counted. Targets (SPEC §7): handoffd's CPU per connection ≤ 1.3× direct; the
//! busiest worker ≤ 52% of sessions.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use handoff::broker::Worker;
use handoff::listen::{self, Options};

const REQUEST: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--direct-worker") => direct_worker(args[2].parse().expect("addr")),
        Some("--handoff-worker") => handoff_worker(Path::new(&args[2])),
        _ => bench(&args[1..]),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_broker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a request head (after `start`), answers with this pid, closes.
fn answer(mut stream: TcpStream, mut head: Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let body = format!("{}\n", std::process::id());
    // One write: formatting into the socket would cost a syscall per piece.
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes())
}

fn direct_worker(addr: SocketAddr) -> io::Result<()> {
    let opts = Options {
        reuse_port: true,
        ..Default::default()
    };
    let l = listen::tcp(addr, &opts).map_err(io::Error::other)?;
    loop {
        let (conn, _) = l.accept()?;
        let _ = answer(conn, Vec::new());
    }
}

fn handoff_worker(pool: &Path) -> io::Result<()> {
    let mut w = Worker::connect(pool, 256)?;
    while let Some(s) = w.next_session().map_err(io::Error::from)? {
        let head = s.data().to_vec();
        if let Ok(conn) = s.into_tcp_stream() {
            let _ = answer(conn, head);
        }
    }
    Ok(())
}

/// User + system CPU of `pid` so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

fn total_cpu(pids: &[u32]) -> Duration {
    pids.iter().map(|&p| cpu(p)).sum()
}

/// One request; the pid that answered.
fn request(addr: SocketAddr) -> io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(REQUEST)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply.lines().last().unwrap_or_default().to_owned())
}

struct Run {
    wall: Duration,
    cpu: Duration,
    by_worker: HashMap<String, u64>,
}

/// `clients` threads make `n` connections in all.
fn load(addr: SocketAddr, n: u64, clients: u64, pids: &[u32]) -> io::Result<Run> {
    let counts = Arc::new(Mutex::new(HashMap::<String, u64>::new()));
    let cpu0 = total_cpu(pids);
    let t0 = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let counts = Arc::clone(&counts);
            let share = n / clients + u64::from(c < n % clients);
            std::thread::spawn(move || -> io::Result<()> {
                let mut mine = HashMap::<String, u64>::new();
                for _ in 0..share {
                    *mine.entry(request(addr)?).or_default() += 1;
                }
                let mut all = counts.lock().unwrap_or_else(|e| e.into_inner());
                for (k, v) in mine {
                    *all.entry(k).or_default() += v;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("a client thread panicked"))??;
    }
    let wall = t0.elapsed();
    let cpu = total_cpu(pids) - cpu0;
    let by_worker = counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Run {
        wall,
        cpu,
        by_worker,
    })
}

fn free_addr() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Waits until two different workers have answered.
fn warm_up(addr: SocketAddr) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        if Instant::now() > deadline {
            return Err(io::Error::other("the servers did not come up"));
        }
        match request(addr) {
            Ok(pid) => {
                seen.insert(pid);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Ok(())
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn bench(args: &[String]) -> io::Result<()> {
    let mut n = 10_000u64;
    let mut clients = 4u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::other(format!("{a} needs a number")))
        };
        match a.as_str() {
            "--connections" => n = value()?,
            "--clients" => clients = value()?.max(1),
            other => return Err(io::Error::other(format!("unknown argument {other}"))),
        }
    }
    let me = std::env::current_exe()?;
    let handoffd: PathBuf = me
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("handoffd"))
        .unwrap_or_default();
    if !handoffd.exists() {
        return Err(io::Error::other(format!(
            "{} is missing: cargo build --release --workspace --bins --examples",
            handoffd.display()
        )));
    }

    // Direct: two SO_REUSEPORT workers.
    let addr = free_addr()?;
    let direct = Procs(
        (0..2)
            .map(|_| {
                Command::new(&me)
                    .args(["--direct-worker", &addr.to_string()])
                    .spawn()
            })
            .collect::<io::Result<_>>()?,
    );
    warm_up(addr)?;
    let pids: Vec<u32> = direct.0.iter().map(Child::id).collect();
    let d = load(addr, n, clients, &pids)?;
    drop(direct);

    // handoffd with two workers.
    let addr = free_addr()?;
    let dir = std::env::temp_dir();
    let pool = dir.join(format!("handoff-bench-{}.sock", std::process::id()));
    let config = dir.join(format!("handoff-bench-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nname = \"web\"\ntcp = \"{addr}\"\npool = \"bench\"\npreread = {{ until = \"\\r\\n\\r\\n\", max = 4096 }}\n\
             [[pool]]\nname = \"bench\"\nsocket = \"{}\"\ndispatch = \"round-robin\"\n",
            pool.display()
        ),
    )?;
    let mut procs = Procs(vec![Command::new(&handoffd)
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()?]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pool.exists() {
        if Instant::now() > deadline {
            return Err(io::Error::other("handoffd did not start"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..2 {
        procs.0.push(
            Command::new(&me)
                .arg("--handoff-worker")
                .arg(&pool)
                .spawn()?,
        );
    }
    warm_up(addr)?;
    let pids: Vec<u32> = procs.0.iter().map(Child::id).collect();
    let broker_cpu0 = cpu(pids[0]);
    let b = load(addr, n, clients, &pids)?;
    let broker_share = (cpu(pids[0]) - broker_cpu0).as_secs_f64() * 1e6 / n as f64;
    drop(procs);
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&pool);

    let per = |r: &Run| r.cpu.as_secs_f64() * 1e6 / n as f64;
    let rate = |r: &Run| n as f64 / r.wall.as_secs_f64();
    let busiest =
        |r: &Run| r.by_worker.values().copied().max().unwrap_or(0) as f64 * 100.0 / n as f64;
    println!("{n} connections from {clients} client threads; server CPU from /proc (10 ms ticks)");
    println!(
        "{:<28} {:>10} {:>18} {:>16}",
        "server", "conn/s", "server CPU µs/conn", "busiest worker"
    );
    println!(
        "{:<28} {:>10.0} {:>18.1} {:>15.1}%",
        "direct (2 × SO_REUSEPORT)",
        rate(&d),
        per(&d),
        busiest(&d)
    );
    println!(
        "{:<28} {:>10.0} {:>18.1} {:>15.1}%",
        "handoffd + 2 workers",
        rate(&b),
        per(&b),
        busiest(&b)
    );
    println!(
        "  of which handoffd itself: {broker_share:.1} µs/conn; its workers: {:.1}",
        per(&b) - broker_share
    );
    println!();
    println!("targets (SPEC §7):");
    println!(
        "  handoffd CPU per connection ≤ 1.3× direct: {:.2}×",
        per(&b) / per(&d)
    );
    println!(
        "  busiest worker ≤ 52% of sessions:          {:.1}% (direct: {:.1}%)",
        busiest(&b),
        busiest(&d)
    );
    Ok(())
}
