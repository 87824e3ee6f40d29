//! Connections per second and server CPU per connection through handoffd with two
//! workers, against a direct server of two `SO_REUSEPORT` workers doing the same
//! work, in the same run; and how evenly the two workers share the load.
//!
//! ```text
//! cargo build --release --workspace --bins --examples
//! target/release/examples/bench_broker [--connections N] [--clients C,C...] [--rounds R]
//! ```
//!
//! Each connection sends one HTTP request and reads the answer to the end; C client
//! threads do so in a closed loop (4 and 64 by default: a light and a busy server).
//! Server CPU is the time on CPU, in nanoseconds from `/proc/PID/task/*/schedstat`,
//! of every server process: the two direct workers, or handoffd and its two
//! workers. The load generator (this process) is not counted. Both servers run side
//! by side and take turns, R rounds (default 3) of N connections each per load; the
//! figures are medians over the rounds. Targets (SPEC §7): handoffd's CPU per
//! connection ≤ 1.3× direct; the busiest worker ≤ 52% of sessions.

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

/// Time on CPU of every thread of `pid` so far (the first field of each
/// thread's `schedstat`, in nanoseconds).
fn cpu(pid: u32) -> io::Result<Duration> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(Duration::from_nanos(ns))
}

fn total_cpu(pids: &[u32]) -> io::Result<Duration> {
    pids.iter().map(|&p| cpu(p)).sum()
}

/// How many times the threads of `pid` went to sleep and were woken so far
/// (`voluntary_ctxt_switches` of each thread's `status`): a broker's cost per
/// connection is mostly its wakeups.
fn sleeps(pid: u32) -> io::Result<u64> {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status")).unwrap_or_default();
        n += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(n)
}

fn total_sleeps(pids: &[u32]) -> io::Result<u64> {
    pids.iter().map(|&p| sleeps(p)).sum()
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
    /// Of `cpu`, the first process's (handoffd's).
    first_cpu: Duration,
    /// Times every server process, and the first, went to sleep.
    sleeps: u64,
    first_sleeps: u64,
    by_worker: HashMap<String, u64>,
}

/// `clients` threads make `n` connections in all.
fn load(addr: SocketAddr, n: u64, clients: u64, pids: &[u32]) -> io::Result<Run> {
    let counts = Arc::new(Mutex::new(HashMap::<String, u64>::new()));
    let cpu0 = total_cpu(pids)?;
    let first0 = cpu(pids[0])?;
    let (sleeps0, first_sleeps0) = (total_sleeps(pids)?, sleeps(pids[0])?);
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
    let total = total_cpu(pids)? - cpu0;
    let first_cpu = cpu(pids[0])? - first0;
    let first_sleeps = sleeps(pids[0])? - first_sleeps0;
    let all_sleeps = total_sleeps(pids)? - sleeps0;
    let by_worker = counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Run {
        wall,
        cpu: total,
        first_cpu,
        sleeps: all_sleeps,
        first_sleeps,
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
    let mut loads = vec![4u64, 64];
    let mut rounds = 3usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| io::Error::other(format!("{a} needs a value")))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .ok()
                .filter(|&x| x > 0)
                .ok_or_else(|| io::Error::other(format!("{a}: {v:?} is not a count")))
        };
        match a.as_str() {
            "--connections" => n = number(value)?,
            "--clients" => loads = value.split(',').map(number).collect::<io::Result<_>>()?,
            "--rounds" => rounds = number(value)? as usize,
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
    let direct_addr = free_addr()?;
    let direct = Procs(
        (0..2)
            .map(|_| {
                Command::new(&me)
                    .args(["--direct-worker", &direct_addr.to_string()])
                    .spawn()
            })
            .collect::<io::Result<_>>()?,
    );
    warm_up(direct_addr)?;
    let direct_pids: Vec<u32> = direct.0.iter().map(Child::id).collect();

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
    let mut brokered = Procs(vec![Command::new(&handoffd)
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
        brokered.0.push(
            Command::new(&me)
                .arg("--handoff-worker")
                .arg(&pool)
                .spawn()?,
        );
    }
    warm_up(addr)?;
    let brokered_pids: Vec<u32> = brokered.0.iter().map(Child::id).collect();

    println!(
        "{n} connections per round, {rounds} round(s) per load, medians; server CPU = time on CPU of every server process"
    );
    println!(
        "{:<8} {:<22} {:>9} {:>12} {:>12} {:>14} {:>8}",
        "clients", "server", "conn/s", "CPU µs/conn", "sleeps/conn", "busiest worker", "ratio"
    );
    let mut verdicts = Vec::new();
    for &clients in &loads {
        let mut d = Vec::new();
        let mut b = Vec::new();
        for _ in 0..rounds {
            d.push(load(direct_addr, n, clients, &direct_pids)?);
            b.push(load(addr, n, clients, &brokered_pids)?);
        }
        let per = |r: &Run| r.cpu.as_secs_f64() * 1e6 / n as f64;
        let rate = |r: &Run| n as f64 / r.wall.as_secs_f64();
        let busiest =
            |r: &Run| r.by_worker.values().copied().max().unwrap_or(0) as f64 * 100.0 / n as f64;
        let ratio = median(d.iter().zip(&b).map(|(d, b)| per(b) / per(d)));
        let row = |name: &str, runs: &[Run], ratio: String| {
            println!(
                "{clients:<8} {name:<22} {:>9.0} {:>12.1} {:>12.2} {:>13.1}% {ratio:>8}",
                median(runs.iter().map(rate)),
                median(runs.iter().map(per)),
                median(runs.iter().map(|r| r.sleeps as f64 / n as f64)),
                median(runs.iter().map(busiest)),
            );
        };
        row("direct (SO_REUSEPORT)", &d, String::new());
        row("handoffd + 2 workers", &b, format!("{ratio:.2}×"));
        let alone = median(
            d.iter()
                .zip(&b)
                .map(|(d, b)| b.first_cpu.as_secs_f64() * 1e6 / n as f64 / per(d)),
        );
        println!(
            "{:<8} {:<22} handoffd itself {:.1} µs/conn ({alone:.2}× direct), {:.2} sleeps/conn; its workers {:.1} µs/conn",
            "",
            "",
            median(b.iter().map(|r| r.first_cpu.as_secs_f64() * 1e6 / n as f64)),
            median(b.iter().map(|r| r.first_sleeps as f64 / n as f64)),
            median(
                b.iter()
                    .map(|r| (r.cpu - r.first_cpu).as_secs_f64() * 1e6 / n as f64)
            ),
        );
        verdicts.push((clients, ratio, median(b.iter().map(busiest))));
    }
    drop((direct, brokered));
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&pool);

    println!();
    println!("targets (SPEC §7), server CPU of handoffd and its workers together:");
    for (clients, ratio, busiest) in verdicts {
        println!(
            "  {clients:>3} clients: handoffd CPU per connection ≤ 1.3× direct: {ratio:.2}×; busiest worker ≤ 52%: {busiest:.1}%"
        );
    }
    Ok(())
}

/// The median of some figures (the upper one of an even count).
fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
