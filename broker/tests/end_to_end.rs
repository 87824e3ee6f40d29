//! handoffd end to end, with real processes and real clients: curl against a pool
//! of HTTP workers, a worker killed while sessions wait on it, a worker that never
//! acknowledges, a peer uid that is not allowed, a flood past the queue, SIGTERM.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// handoffd, built by cargo for these tests.
fn binary(name: &str) -> PathBuf {
    assert_eq!(name, "handoffd");
    PathBuf::from(env!("CARGO_BIN_EXE_handoffd"))
}

/// An example of this crate, built by `cargo test`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: cargo test builds the examples",
        path.display()
    );
    path
}

/// A fresh path under the temp dir.
fn sock_path(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "handoffd-test-{}-{tag}-{n}.sock",
        std::process::id()
    ))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Handoffd {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    web: u16,
    admin: u16,
    pool: PathBuf,
    config: PathBuf,
    /// Successors started by SIGUSR2 that took over (killed on drop).
    successors: Mutex<Vec<i32>>,
}

impl Handoffd {
    /// Starts handoffd with a pool "http" at a fresh socket; `extra_pool` and
    /// `extra_listener` are TOML lines added to those tables.
    fn start(extra_listener: &str, extra_pool: &str) -> Handoffd {
        let web = free_port();
        Handoffd::launch(web, |admin, pool| {
            Handoffd::config(web, admin, pool, extra_listener, extra_pool)
        })
    }

    /// As [`Handoffd::start`] with no extra lines, but a drain timeout of 300 ms.
    fn start_draining_in_300ms() -> Handoffd {
        let web = free_port();
        Handoffd::launch(web, |admin, pool| {
            Handoffd::config(web, admin, pool, "", "")
                .replace("drain_timeout_ms = 3000", "drain_timeout_ms = 300")
        })
    }

    /// The configuration [`Handoffd::start`] uses.
    fn config(
        web: u16,
        admin: u16,
        pool: &std::path::Path,
        extra_listener: &str,
        extra_pool: &str,
    ) -> String {
        format!(
            "drain_timeout_ms = 3000\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[listener]]\nname = \"web\"\ntcp = \"127.0.0.1:{web}\"\npool = \"http\"\n{extra_listener}\n\
             [[pool]]\nname = \"http\"\nsocket = \"{}\"\n{extra_pool}\n",
            pool.display()
        )
    }

    /// Starts handoffd with the configuration `config(admin_port, pool_socket)`.
    fn launch(web: u16, config: impl FnOnce(u16, &std::path::Path) -> String) -> Handoffd {
        Handoffd::launch_limited(web, None, config)
    }

    /// As [`Handoffd::launch`], under `ulimit -n fd_limit` if one is given.
    fn launch_limited(
        web: u16,
        fd_limit: Option<usize>,
        config: impl FnOnce(u16, &std::path::Path) -> String,
    ) -> Handoffd {
        let admin = free_port();
        let pool = sock_path("pool");
        let config_path = sock_path("config").with_extension("toml");
        std::fs::write(&config_path, config(admin, &pool)).unwrap();
        let config = config_path;
        let mut command = match fd_limit {
            None => Command::new(binary("handoffd")),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")])
                    .arg(binary("handoffd"));
                sh
            }
        };
        let mut child = command
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready") {
                    let _ = tx.send(());
                }
                sink.lock().unwrap().push(line);
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("handoffd did not get ready");
        Handoffd {
            child,
            log,
            web,
            admin,
            pool,
            config,
            successors: Mutex::new(Vec::new()),
        }
    }

    fn worker(&self) -> Child {
        self.worker_of("http_worker")
    }

    /// An HTTP worker holding up to `credits` sessions, stopped (SIGSTOP) once it
    /// has answered one request: its credits are in by then (a worker stopped before
    /// announcing them would be sent nothing). Its pid is for SIGCONT.
    fn stopped_worker(&self, credits: u32) -> (Child, nix::unistd::Pid) {
        let w = Command::new(example("http_worker"))
            .args(["--credits", &credits.to_string()])
            .arg(&self.pool)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.wait_workers(1);
        assert!(self.curl("/warm").ends_with(" GET /warm\n"));
        let pid = nix::unistd::Pid::from_raw(w.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        (w, pid)
    }

    /// How many fds handoffd has open.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    fn worker_of(&self, example_name: &str) -> Child {
        Command::new(example(example_name))
            .arg(&self.pool)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The value of one metric line, e.g. `handoffd_workers{pool="http"}`.
    fn metric(&self, name: &str) -> u64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&Handoffd) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log: {:?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until handoffd has logged a line containing `needle`.
    fn wait_for_log(&self, needle: &str) {
        self.wait_for(&format!("{needle:?} in the log"), |h| {
            h.log.lock().unwrap().iter().any(|l| l.contains(needle))
        });
    }

    fn wait_workers(&self, n: u64) {
        self.wait_workers_of("http", n);
    }

    fn wait_workers_of(&self, pool: &str, n: u64) {
        let metric = format!("handoffd_workers{{pool=\"{pool}\"}}");
        self.wait_for(&format!("{n} workers"), |h| h.metric(&metric) == n);
    }

    /// Sends handoffd (the first one) a signal.
    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// The pid of the successor that took over, once it says so.
    fn successor(&self) -> i32 {
        self.wait_for_log("taking over from");
        let log = self.log.lock().unwrap();
        let line = log.iter().find(|l| l.contains("taking over from")).unwrap();
        let pid = line
            .split("(pid ")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {line:?}"));
        self.successors.lock().unwrap().push(pid);
        pid
    }

    /// Waits for the first handoffd to exit; its status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "handoffd did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn curl(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "20", "-H", "Connection: close"])
            .arg(format!("http://127.0.0.1:{}{path}", self.web))
            .output()
            .expect("curl");
        assert!(out.status.success(), "curl failed: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "handoffd did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Handoffd {
    /// Kills handoffd if it still runs, and removes its files: a killed handoffd
    /// leaves its pool socket behind (SIGTERM is what cleans up).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &pid in self.successors.lock().unwrap().iter() {
            // Only if it is still ours: the pid of one that exited may be another
            // test's process by now.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let config = self.config.as_os_str().as_encoded_bytes();
            if !cmdline.windows(config.len()).any(|w| w == config) {
                continue;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            wait_gone(pid);
        }
        let _ = std::fs::remove_file(&self.pool);
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Waits until a process that is not our child has exited (gone, or a zombie of
/// whoever adopted it).
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
        if matches!(state, None | Some('Z' | 'X')) {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn served_by(reply: &str) -> String {
    reply
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn curl_against_two_http_workers_round_robin() {
    let mut h = Handoffd::start(
        "preread = { until = \"\\r\\n\\r\\n\", max = 8192 }",
        "dispatch = \"round-robin\"",
    );
    let (mut a, mut b) = (h.worker(), h.worker());
    h.wait_workers(2);
    let mut by_worker = std::collections::HashMap::<String, u32>::new();
    for i in 0..20 {
        let reply = h.curl(&format!("/r{i}"));
        assert!(reply.ends_with(&format!(" GET /r{i}\n")), "{reply}");
        *by_worker.entry(served_by(&reply)).or_default() += 1;
    }
    assert_eq!(by_worker.len(), 2, "{by_worker:?}");
    assert!(
        by_worker.values().all(|&n| n == 10),
        "round robin: {by_worker:?}"
    );
    h.wait_for("acks", |h| {
        h.metric("handoffd_acknowledged_total{pool=\"http\"}") == 20
    });
    assert_eq!(h.metric("handoffd_accepted_total{listener=\"web\"}"), 20);
    assert_eq!(h.metric("handoffd_forwarded_total{pool=\"http\"}"), 20);
    // SIGTERM: drains, exits 0, and removes the pool socket.
    assert!(h.stop().success());
    assert!(!h.pool.exists());
    kill(&mut a);
    kill(&mut b);
}

/// A Python worker that takes sessions and never acknowledges them.
const SILENT_WORKER: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b"C" + struct.pack(">I", 100))
print("connected", flush=True)
time.sleep(60)
"#;

/// Starts the silent worker and waits until handoffd counts it.
fn silent_worker(h: &Handoffd) -> Child {
    let mut silent = Command::new("python3")
        .args(["-c", SILENT_WORKER])
        .arg(&h.pool)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(silent.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    h.wait_workers(1);
    silent
}

/// `n` clients in threads, each sending `GET /{tag}{i}` and reading the reply.
fn waiting_clients(port: u16, n: usize, tag: &'static str) -> Vec<std::thread::JoinHandle<String>> {
    (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                write!(
                    s,
                    "GET /{tag}{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut reply = String::new();
                s.read_to_string(&mut reply).unwrap();
                reply
            })
        })
        .collect()
}

/// Asserts that each client of [`waiting_clients`] got the answer to its request.
fn all_replied(clients: Vec<std::thread::JoinHandle<String>>, tag: &str) {
    for (i, c) in clients.into_iter().enumerate() {
        let reply = c.join().unwrap();
        assert!(
            reply.ends_with(&format!(" GET /{tag}{i}\n")),
            "client {i}: {reply:?}"
        );
    }
}

#[test]
fn sessions_of_a_killed_worker_that_never_acked_go_to_another() {
    let h = Handoffd::start("", "dispatch = \"round-robin\"");
    let fds = h.fds();
    let mut silent = silent_worker(&h);
    // Clients whose sessions go to the silent worker: they wait.
    let clients: Vec<_> = waiting_clients(h.web, 6, "k");
    h.wait_for("6 sessions outstanding", |h| {
        h.metric("handoffd_forwarded_total{pool=\"http\"}") == 6
    });
    assert_eq!(h.metric("handoffd_acknowledged_total{pool=\"http\"}"), 0);
    // A good worker joins, then the silent one is killed: nothing is lost.
    let mut good = h.worker();
    h.wait_workers(2);
    kill(&mut silent);
    all_replied(clients, "k");
    assert_eq!(h.metric("handoffd_redispatched_total{pool=\"http\"}"), 6);
    assert!(h
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("6 unacknowledged session(s) go to another worker")));
    h.wait_for("the acks", |h| {
        h.metric("handoffd_acknowledged_total{pool=\"http\"}") == 6
    });
    kill(&mut good);
    h.wait_workers(0);
    h.wait_for("handoffd to close fds of the sessions or workers", |h| {
        h.fds() == fds
    });
}

#[test]
fn a_worker_of_a_uid_not_allowed_is_refused() {
    let h = Handoffd::start("", "allow_uids = [4242]");
    let fds = h.fds();
    let mut w = h.worker();
    h.wait_for("the refusal", |h| {
        h.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("running as uid") && l.contains("not in allow_uids"))
    });
    assert_eq!(h.metric("handoffd_workers{pool=\"http\"}"), 0);
    // The worker was disconnected: it sees the end of the sessions and exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the refused worker is still connected"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    h.wait_for("handoffd to close the refused worker's connection", |h| {
        h.fds() == fds
    });
}

#[test]
fn a_flood_past_the_queue_is_refused_cleanly_and_counted() {
    let h = Handoffd::start("", "queue = 4");
    let fds = h.fds();
    // No worker: four connections wait in the queue, the rest are closed at once.
    let conns: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(("127.0.0.1", h.web)).unwrap())
        .collect();
    h.wait_for("6 refusals", |h| {
        h.metric("handoffd_refused_total{listener=\"web\"}") == 6
    });
    assert_eq!(h.metric("handoffd_queued{pool=\"http\"}"), 4);
    // The refused ones see the end of the stream; the queued ones get served once a
    // worker comes.
    let mut w = h.worker();
    let mut served = 0;
    let mut closed = 0;
    for (i, mut c) in conns.into_iter().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = write!(
            c,
            "GET /f{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut reply = String::new();
        match c.read_to_string(&mut reply) {
            Ok(_) if reply.contains(" 200 OK") => served += 1,
            _ => closed += 1,
        }
    }
    assert_eq!((served, closed), (4, 6));
    assert_eq!(
        h.metric("handoffd_accepted_total{listener=\"web\"}"),
        10,
        "alive and counting"
    );
    h.wait_for("the acks", |h| {
        h.metric("handoffd_acknowledged_total{pool=\"http\"}") == 4
    });
    kill(&mut w);
    h.wait_workers(0);
    h.wait_for("handoffd to close refused and served connections", |h| {
        h.fds() == fds
    });
}

#[test]
fn check_config_reports_every_mistake_with_its_line() {
    let bad = sock_path("bad").with_extension("toml");
    std::fs::write(
        &bad,
        "[[listener]]\nname = \"a\"\ntcp = \"nowhere\"\npool = \"none\"\n",
    )
    .unwrap();
    let out = Command::new(binary("handoffd"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = bad.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:3: listener \"a\": \"nowhere\" is not an address"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:4: listener \"a\" routes to pool \"none\"")),
        "{err}"
    );
    let good = Command::new(binary("handoffd"))
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/handoffd.toml"),
        ])
        .output()
        .unwrap();
    assert!(good.status.success(), "{good:?}");
    let help = Command::new(binary("handoffd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("check-config") && help.contains("SIGTERM"),
        "{help}"
    );
    let _ = std::fs::remove_file(&bad);
}

/// A port free for both TCP and UDP on loopback.
fn free_port_both() -> u16 {
    loop {
        let p = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn dig(port: u16, extra: &[&str], name: &str) -> String {
    let out = Command::new("dig")
        .args(["+time=5", "+tries=1", "-p", &port.to_string(), "@127.0.0.1"])
        .args(extra)
        .arg(name)
        .output()
        .expect("dig (Debian's bind9-dnsutils; .ci/run installs it)");
    assert!(out.status.success(), "dig failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn dig_against_the_dns_pool_over_udp_and_tcp() {
    let port = free_port_both();
    let h = Handoffd::launch(port, |admin, pool| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[listener]]\nname = \"dns-udp\"\nudp = \"127.0.0.1:{port}\"\npool = \"dns\"\n\
             [[listener]]\nname = \"dns-tcp\"\ntcp = \"127.0.0.1:{port}\"\npool = \"dns\"\n\
             [[pool]]\nname = \"dns\"\nsocket = \"{}\"\ndispatch = \"least-outstanding\"\n",
            pool.display()
        )
    });
    let mut workers = [h.worker_of("dns_worker"), h.worker_of("dns_worker")];
    h.wait_workers_of("dns", 2);
    assert_eq!(
        dig(port, &["+short"], "www.example.test").trim(),
        "192.0.2.10"
    );
    assert_eq!(
        dig(port, &["+short", "+tcp"], "mail.example.test").trim(),
        "192.0.2.25"
    );
    assert!(dig(port, &[], "nope.example.test").contains("status: NXDOMAIN"));
    assert!(dig(port, &["+tcp"], "elsewhere.invalid").contains("status: REFUSED"));
    // Least-outstanding spreads the load over both workers (each names itself).
    let answers: std::collections::HashSet<String> = (0..20)
        .map(|_| {
            dig(port, &["+short"], "worker.example.test")
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(
        h.metric("handoffd_accepted_total{listener=\"dns-udp\"}"),
        22
    );
    assert_eq!(h.metric("handoffd_accepted_total{listener=\"dns-tcp\"}"), 2);
    for w in &mut workers {
        kill(w);
    }
}

#[test]
fn a_preread_that_times_out_hands_off_what_arrived() {
    let h = Handoffd::start(
        "preread = { until = \"\\r\\n\\r\\n\", max = 8192 }\npreread_timeout_ms = 200",
        "",
    );
    let mut w = h.worker();
    h.wait_workers(1);
    let mut c = TcpStream::connect(("127.0.0.1", h.web)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n").unwrap();
    h.wait_for("the timeout", |h| {
        h.metric("handoffd_preread_timeouts_total{listener=\"web\"}") == 1
    });
    // The worker has the start of the head and reads the rest itself.
    c.write_all(b"Connection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with(" GET /slow\n"), "{reply}");
    kill(&mut w);
}

/// Pre-reads that finish in time leave nothing to wake handoffd later: once they
/// are served, it sleeps through the moments they would have timed out.
#[test]
fn finished_prereads_leave_no_timers_behind() {
    let h = Handoffd::start(
        "preread = { until = \"\\r\\n\\r\\n\", max = 4096 }\npreread_timeout_ms = 400",
        "",
    );
    let mut w = h.worker();
    h.wait_workers(1);
    // Each head in two writes, so that each connection waits for a second read;
    // one connection after another, so that their deadlines spread over the
    // moments measured below.
    for i in 0..20 {
        let mut c = TcpStream::connect(("127.0.0.1", h.web)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "GET /t{i} HTTP/1.1\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(30));
        c.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert!(reply.ends_with(&format!(" GET /t{i}\n")), "{reply:?}");
    }
    assert_eq!(
        h.metric("handoffd_preread_timeouts_total{listener=\"web\"}"),
        0
    );
    // The event loop is the main thread; the admin endpoint has its own.
    let wakeups = || -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", h.child.id()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let before = wakeups();
    std::thread::sleep(Duration::from_millis(700));
    let woke = wakeups() - before;
    assert!(woke <= 3, "handoffd woke {woke} times with nothing to do");
    kill(&mut w);
}

/// A worker that stops reading (SIGSTOP) while 256 sessions of 4 KB each are sent
/// to it: far more than its socket holds, so handoffd queues them, and sends the
/// rest when the worker reads again. Every client is answered.
#[test]
fn sessions_a_stalled_worker_cannot_take_yet_wait_and_follow() {
    let h = Handoffd::start("preread = { until = \"\\r\\n\\r\\n\", max = 8192 }", "");
    let (mut w, worker) = h.stopped_worker(256);
    let padding = "x".repeat(4000);
    let clients: Vec<TcpStream> = (0..256)
        .map(|i| {
            let mut c = TcpStream::connect(("127.0.0.1", h.web)).unwrap();
            write!(
                c,
                "GET /big{i} HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            c
        })
        .collect();
    h.wait_for("all 256 (and the first) handed to the worker", |h| {
        h.metric("handoffd_forwarded_total{pool=\"http\"}") == 257
    });
    nix::sys::signal::kill(worker, nix::sys::signal::Signal::SIGCONT).unwrap();
    for (i, mut c) in clients.into_iter().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply)
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert!(reply.ends_with(&format!(" GET /big{i}\n")), "{reply:?}");
    }
    kill(&mut w);
}

#[test]
fn least_outstanding_avoids_a_worker_that_holds_sessions() {
    let h = Handoffd::start("", "dispatch = \"least-outstanding\"");
    let mut silent = silent_worker(&h);
    let stuck: Vec<_> = waiting_clients(h.web, 3, "held");
    h.wait_for("3 held", |h| {
        h.metric("handoffd_forwarded_total{pool=\"http\"}") == 3
    });
    let mut good = h.worker();
    h.wait_workers(2);
    // The silent worker holds 3: every new session goes to the idle one.
    let pids: std::collections::HashSet<String> = (0..10)
        .map(|i| served_by(&h.curl(&format!("/lo{i}"))))
        .collect();
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_eq!(pids.into_iter().next().unwrap(), good.id().to_string());
    kill(&mut silent);
    for t in stuck {
        assert!(t.join().unwrap().contains(" 200 OK"));
    }
    kill(&mut good);
}

#[test]
fn a_mio_worker_serves_through_its_event_loop() {
    use mio::{Events, Interest, Poll, Token};
    let h = Handoffd::start("preread = { until = \"\\r\\n\\r\\n\", max = 4096 }", "");
    let pool = h.pool.clone();
    let worker = std::thread::spawn(move || {
        let mut poll = Poll::new().unwrap();
        let mut w = handoff_broker::MioWorker::connect(&pool, 8).unwrap();
        poll.registry()
            .register(&mut w, Token(0), Interest::READABLE)
            .unwrap();
        let mut events = Events::with_capacity(8);
        let mut served = 0;
        while served < 3 {
            poll.poll(&mut events, Some(Duration::from_secs(10)))
                .unwrap();
            assert!(!events.is_empty(), "no session came");
            loop {
                match w.next_session() {
                    Ok(Some(s)) => {
                        let head = String::from_utf8_lossy(s.data()).into_owned();
                        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                        let body = format!("mio {path}\n");
                        let mut conn = s.into_tcp_stream().unwrap();
                        conn.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes()).unwrap();
                        served += 1;
                    }
                    Ok(None) => return served,
                    Err(e) if e.is_would_block() => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        served
    });
    h.wait_workers(1);
    for i in 0..3 {
        assert_eq!(h.curl(&format!("/m{i}")), format!("mio /m{i}\n"));
    }
    assert_eq!(worker.join().unwrap(), 3);
    h.wait_for("acks", |h| {
        h.metric("handoffd_acknowledged_total{pool=\"http\"}") == 3
    });
}

#[test]
fn listeners_adopted_from_systemd_by_name() {
    let port = free_port();
    let pool = sock_path("sd-pool");
    let config = sock_path("sd-config").with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nname = \"web\"\nsystemd = \"web\"\npool = \"http\"\n\
             [[pool]]\nname = \"http\"\nsocket = \"{}\"\n",
            pool.display()
        ),
    )
    .unwrap();
    let mut activator = Command::new("/usr/bin/systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=web"])
        .arg(binary("handoffd"))
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate");
    // This connection starts handoffd; it waits in the adopted listener's queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    };
    first
        .write_all(b"GET /first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    while !pool.exists() {
        assert!(Instant::now() < deadline, "handoffd did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut w = Command::new(example("http_worker"))
        .arg(&pool)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    first.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with(" GET /first\n"), "{reply}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(activator.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(activator.wait().unwrap().success());
    kill(&mut w);
    let _ = std::fs::remove_file(&config);
}

/// handoffd under a limit of 40 fds, and 60 clients that have sent `GET /{tag}{i}`:
/// the held connections use the fds up long before the 60th arrives.
fn out_of_fds(tag: &str) -> (Handoffd, Vec<TcpStream>) {
    let web = free_port();
    let hd = Handoffd::launch_limited(web, Some(40), |admin, pool| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[[listener]]\nname = \"web\"\ntcp = \"127.0.0.1:{web}\"\npool = \"http\"\n\
             [[pool]]\nname = \"http\"\nsocket = \"{}\"\n",
            pool.display()
        )
    });
    let clients: Vec<TcpStream> = (0..60)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", web)).unwrap();
            write!(
                s,
                "GET /{tag}{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    hd.wait_for_log("pausing accept");
    (hd, clients)
}

/// Asserts that every client of [`out_of_fds`] gets its answer.
fn all_answered(hd: &Handoffd, clients: Vec<TcpStream>, tag: &str) {
    for (i, mut c) in clients.into_iter().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reply = String::new();
        if let Err(e) = c.read_to_string(&mut reply) {
            panic!("client {i}: {e}; log: {:?}", hd.log.lock().unwrap());
        }
        assert!(
            reply.ends_with(&format!(" GET /{tag}{i}\n")),
            "client {i}: {reply:?}"
        );
    }
}

/// Out of fds: accept pauses instead of spinning, and nothing is lost once fds free.
#[test]
fn out_of_fds_backs_off_and_recovers() {
    let (hd, clients) = out_of_fds("e");
    // Paused, not spinning: a second of it costs little CPU.
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<u64> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        f[11] + f[12]
    };
    let before = cpu(hd.child.id());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu(hd.child.id()) - before;
    assert!(
        used < 50,
        "{used} ticks of CPU in one second while out of fds"
    );
    // A worker drains the held sessions; fds free up; every client is answered.
    let mut w = hd.worker();
    all_answered(&hd, clients, "e");
    kill(&mut w);
}

/// Out of fds, the reserve fd spent on a first worker: a second worker waits in the
/// pool socket's queue, where no new event will announce it. It is accepted once an
/// fd frees up (here: the first worker dies), and clients never take the fd a
/// worker needs.
#[test]
fn a_worker_that_finds_no_fd_left_is_let_in_once_one_frees() {
    let (hd, clients) = out_of_fds("n");
    // A worker that never acknowledges: it takes the reserve fd, and its sessions
    // keep every other fd in use.
    let mut silent = Command::new("python3")
        .args(["-c", SILENT_WORKER])
        .arg(&hd.pool)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    hd.wait_for_log("using the reserve fd");
    hd.wait_for_log("(uid");
    // A real worker: no fd is left to accept it with.
    let mut w = hd.worker();
    hd.wait_for_log("pool \"http\": accept failed: Too many open files");
    // The silent worker dies: its fd frees up, and its sessions go back to the queue.
    kill(&mut silent);
    all_answered(&hd, clients, "n");
    kill(&mut w);
}

/// Out of fds with a worker's socket full: the forwarder cannot copy fds to queue
/// sessions, which is no fault of the worker. handoffd keeps them in the pool's
/// queue and sends them when the worker reads again, instead of dropping it.
#[test]
fn a_full_worker_socket_at_the_fd_limit_holds_sessions_instead_of_dropping_the_worker() {
    // Enough 12 KB requests to overfill the worker's socket (its send buffer is
    // the system's default), and an fd limit that they leave room under.
    let wmem: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(212_992);
    let whole = wmem / 12_000 + 4;
    let web = free_port();
    let h = Handoffd::launch_limited(web, Some(whole + 28), |admin, pool| {
        Handoffd::config(
            web,
            admin,
            pool,
            "preread = { until = \"\\r\\n\\r\\n\", max = 16384 }",
            "",
        )
    });
    let (mut w, worker) = h.stopped_worker(256);
    // First the whole requests: more than the worker's socket holds.
    let padding = "x".repeat(12_000);
    let mut clients: Vec<(String, TcpStream)> = (0..whole)
        .map(|i| {
            let mut c = TcpStream::connect(("127.0.0.1", web)).unwrap();
            write!(
                c,
                "GET /full{i} HTTP/1.1\r\nHost: x\r\nX-Pad: {padding}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            (format!("/full{i}"), c)
        })
        .collect();
    // Then heads that stay incomplete, until handoffd has no fd left to accept with.
    let mut late = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("pausing accept"))
    {
        assert!(
            Instant::now() < deadline,
            "fds never ran out: {:?}",
            h.log.lock().unwrap()
        );
        let i = late.len();
        let mut c = TcpStream::connect(("127.0.0.1", web)).unwrap();
        write!(c, "GET /late{i} HTTP/1.1\r\n").unwrap();
        late.push((format!("/late{i}"), c));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Their heads complete: sessions for a full socket, and no fd to queue them with.
    for (_, c) in &mut late {
        c.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    clients.append(&mut late);
    h.wait_for_log("holding its sessions until it reads");
    nix::sys::signal::kill(worker, nix::sys::signal::Signal::SIGCONT).unwrap();
    for (path, mut c) in clients {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply)
            .unwrap_or_else(|e| panic!("{path}: {e}; log: {:?}", h.log.lock().unwrap()));
        assert!(
            reply.ends_with(&format!(" GET {path}\n")),
            "{path}: {reply:?}"
        );
    }
    let log = h.log.lock().unwrap();
    assert!(!log.iter().any(|l| l.contains("failed")), "{log:?}");
    drop(log);
    kill(&mut w);
}

#[test]
fn a_unix_listener_serves_curl_over_its_socket() {
    let web = sock_path("web-unix");
    let h = Handoffd::launch(0, |admin, pool| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[listener]]\nname = \"local\"\nunix = \"{}\"\nmode = 0o600\npool = \"http\"\n\
             preread = {{ until = \"\\r\\n\\r\\n\", max = 4096 }}\n\
             [[pool]]\nname = \"http\"\nsocket = \"{}\"\n",
            web.display(),
            pool.display()
        )
    });
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&web).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut w = h.worker();
    h.wait_workers(1);
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--unix-socket"])
        .arg(&web)
        .arg("http://localhost/over-unix")
        .output()
        .unwrap();
    let reply = String::from_utf8(out.stdout).unwrap();
    assert!(reply.ends_with(" GET /over-unix\n"), "{reply:?}");
    kill(&mut w);
    let _ = std::fs::remove_file(&web);
}

/// A client that resets its connection while handoffd pre-reads it is counted as
/// dropped, and handoffd keeps no fd of it; the next client is served.
#[test]
fn a_client_reset_while_pre_read_is_counted_and_leaves_no_fd() {
    let h = Handoffd::start(
        "preread = { until = \"\\r\\n\\r\\n\", max = 4096 }\npreread_timeout_ms = 5000",
        "",
    );
    let mut w = h.worker();
    h.wait_workers(1);
    let fds = h.fds();
    let c = TcpStream::connect(("127.0.0.1", h.web)).unwrap();
    (&c).write_all(b"GET /half HTTP/1.1\r\n").unwrap();
    h.wait_for("the accept", |h| {
        h.metric("handoffd_accepted_total{listener=\"web\"}") == 1
    });
    // A zero linger time makes close send a reset.
    nix::sys::socket::setsockopt(
        &c,
        nix::sys::socket::sockopt::Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
    drop(c);
    h.wait_for("the drop", |h| {
        h.metric("handoffd_dropped_total{listener=\"web\"}") == 1
    });
    h.wait_for("handoffd to close the reset connection", |h| h.fds() == fds);
    assert_eq!(h.metric("handoffd_forwarded_total{pool=\"http\"}"), 0);
    assert!(h.curl("/next").ends_with(" GET /next\n"));
    kill(&mut w);
}

/// SIGTERM while a connection is still pre-reading: it is not dropped; it becomes
/// a session once its head is in, and the drain waits for it.
#[test]
fn draining_waits_for_connections_still_pre_reading() {
    let mut h = Handoffd::start(
        "preread = { until = \"\\r\\n\\r\\n\", max = 4096 }\npreread_timeout_ms = 5000",
        "",
    );
    let mut w = h.worker();
    h.wait_workers(1);
    let mut c = TcpStream::connect(("127.0.0.1", h.web)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /late HTTP/1.1\r\n").unwrap();
    // Accepted (deferred accept wakes on the first bytes) and pre-reading.
    h.wait_for("the accept", |h| {
        h.metric("handoffd_accepted_total{listener=\"web\"}") == 1
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(h.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with(" GET /late\n"), "{reply:?}");
    assert!(h.stop().success());
    kill(&mut w);
}

/// `Type=notify`: with NOTIFY_SOCKET set, handoffd says READY=1 and its MAINPID
/// once every listener is bound.
#[test]
fn it_notifies_the_supervisor_when_ready() {
    let notify = sock_path("notify");
    let supervisor = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    supervisor
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let web = free_port();
    let pool = sock_path("notify-pool");
    let config = sock_path("notify-config").with_extension("toml");
    std::fs::write(
        &config,
        format!("[[listener]]\nname = \"web\"\ntcp = \"127.0.0.1:{web}\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nsocket = \"{}\"\n", pool.display()),
    )
    .unwrap();
    let mut hd = Command::new(binary("handoffd"))
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = supervisor.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(msg, format!("READY=1\nMAINPID={}\n", hd.id()));
    // Ready means bound: the listener takes connections now.
    TcpStream::connect(("127.0.0.1", web)).unwrap();
    kill(&mut hd);
    for p in [&notify, &pool, &config] {
        let _ = std::fs::remove_file(p);
    }
}

/// SIGUSR2 under constant load: the successor takes the listening socket, the old
/// handoffd drains and hands it the same two workers, and no client sees an error.
#[test]
fn an_upgrade_under_constant_load_loses_no_connection() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let mut h = Handoffd::start("preread = { until = \"\\r\\n\\r\\n\", max = 4096 }", "");
    let (mut a, mut b) = (h.worker(), h.worker());
    h.wait_workers(2);
    let workers = [a.id().to_string(), b.id().to_string()];
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (stop, served, port) = (Arc::clone(&stop), Arc::clone(&served), h.web);
            std::thread::spawn(move || -> Vec<String> {
                let mut errors = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let path = format!("/u{c}-{i}");
                    let attempt = (|| -> std::io::Result<String> {
                        let mut s = TcpStream::connect(("127.0.0.1", port))?;
                        s.set_read_timeout(Some(Duration::from_secs(10)))?;
                        write!(
                            s,
                            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        )?;
                        let mut reply = String::new();
                        s.read_to_string(&mut reply)?;
                        Ok(reply)
                    })();
                    match attempt {
                        Ok(reply) if reply.ends_with(&format!(" GET {path}\n")) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(reply) => errors.push(format!("{path}: {reply:?}")),
                        Err(e) => errors.push(format!("{path}: {e}")),
                    }
                }
                errors
            })
        })
        .collect();
    let wait_served = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let from = served.load(Ordering::Relaxed);
        while served.load(Ordering::Relaxed) < from + n {
            assert!(Instant::now() < deadline, "the clients stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_served(200);
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    let successor = h.successor();
    h.wait_for_log("handed 2 worker(s)");
    assert!(h.wait_exit().success(), "the old handoffd exits 0");
    wait_served(200);
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        errors.is_empty(),
        "{} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    // The same workers serve, through the successor (which serves the metrics too).
    assert!(workers.contains(&served_by(&h.curl("/after"))));
    assert_eq!(h.metric("handoffd_workers{pool=\"http\"}"), 2);
    // The successor is a handoffd like any other: SIGTERM drains it and removes the
    // pool socket, which the old one left in place.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(successor),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_gone(successor);
    assert!(!h.pool.exists());
    kill(&mut a);
    kill(&mut b);
}

/// Sessions a stopped worker has not acknowledged when the old handoffd's drain
/// times out go to the successor with the worker; its acks go there too.
#[test]
fn unacknowledged_sessions_move_with_their_worker() {
    let h = Handoffd::start_draining_in_300ms();
    let (mut w, worker) = h.stopped_worker(64);
    let clients = waiting_clients(h.web, 3, "h");
    h.wait_for("3 more sessions sent", |h| {
        h.metric("handoffd_forwarded_total{pool=\"http\"}") == 4
    });
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    h.successor();
    h.wait_for_log("handed 1 worker(s) and 3 session(s)");
    h.wait_for_log("with 3 session(s) it has not acknowledged");
    nix::sys::signal::kill(worker, nix::sys::signal::Signal::SIGCONT).unwrap();
    all_replied(clients, "h");
    h.wait_for("the successor's acks", |h| {
        h.metric("handoffd_acknowledged_total{pool=\"http\"}") == 3
    });
    kill(&mut w);
}

/// Sessions no worker had yet go to the successor's queue, and to the first worker
/// that connects to it.
#[test]
fn queued_sessions_move_to_the_successor() {
    let h = Handoffd::start_draining_in_300ms();
    let clients = waiting_clients(h.web, 2, "q");
    h.wait_for("2 queued", |h| {
        h.metric("handoffd_queued{pool=\"http\"}") == 2
    });
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    h.successor();
    h.wait_for_log("handed 0 worker(s) and 2 session(s)");
    let mut w = h.worker();
    all_replied(clients, "q");
    kill(&mut w);
}

/// A successor that fails (here: the configuration file became invalid) is reaped
/// and the old handoffd serves on; once the file is fixed, an upgrade works.
#[test]
fn a_successor_that_fails_leaves_the_old_one_serving() {
    let mut h = Handoffd::start("", "");
    let mut w = h.worker();
    h.wait_workers(1);
    let good = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(&h.config, "listener = [").unwrap();
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    h.wait_for_log("closed its end before it was ready");
    h.wait_for_log("still serving");
    assert!(
        h.child.try_wait().unwrap().is_none(),
        "the old one still runs"
    );
    assert!(h.curl("/still").ends_with(" GET /still\n"));
    std::fs::write(&h.config, good).unwrap();
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    h.successor();
    assert!(h.wait_exit().success());
    assert!(h.curl("/new").ends_with(" GET /new\n"));
    kill(&mut w);
}

/// A successor that hangs before it is ready (here: reading a configuration file
/// that is a FIFO nobody writes) is killed after upgrade_timeout_ms.
#[test]
fn a_successor_that_hangs_is_killed_and_the_old_one_serves_on() {
    let web = free_port();
    let mut h = Handoffd::launch(web, |admin, pool| {
        format!(
            "upgrade_timeout_ms = 500\n{}",
            Handoffd::config(web, admin, pool, "", "")
        )
    });
    let mut w = h.worker();
    h.wait_workers(1);
    std::fs::remove_file(&h.config).unwrap();
    nix::unistd::mkfifo(
        &h.config,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    h.signal(nix::sys::signal::Signal::SIGUSR2);
    h.wait_for_log("was not ready within 500ms; killed it");
    let pid: i32 = {
        let log = h.log.lock().unwrap();
        let line = log
            .iter()
            .find(|l| l.contains("started successor pid"))
            .unwrap();
        line.split("pid ")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    wait_gone(pid);
    assert!(
        h.child.try_wait().unwrap().is_none(),
        "the old one still runs"
    );
    assert!(h.curl("/on").ends_with(" GET /on\n"));
    kill(&mut w);
}
