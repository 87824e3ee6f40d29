//! Counters, rendered in the Prometheus text format on the admin endpoint.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};

/// Everything handoffd counts. Shared between the event loop (which writes) and the
/// admin thread (which renders).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections accepted (and datagrams received), per listener.
    pub accepted: BTreeMap<String, u64>,
    /// Pre-reads that ran out of time, per listener.
    pub preread_timeouts: BTreeMap<String, u64>,
    /// Sessions refused (closed, or datagrams dropped) because the pool was full or
    /// draining, per listener.
    pub refused: BTreeMap<String, u64>,
    /// Connections and datagrams closed without being handed off, for another
    /// reason than a full pool: the client reset the connection while it was
    /// pre-read, or handoffd could not describe or watch it. Per listener.
    pub dropped: BTreeMap<String, u64>,
    /// Sessions sent to a worker, per pool.
    pub forwarded: BTreeMap<String, u64>,
    /// Sessions a worker acknowledged, per pool.
    pub acknowledged: BTreeMap<String, u64>,
    /// Sessions sent again after their worker went away, per pool.
    pub redispatched: BTreeMap<String, u64>,
    /// Sessions waiting for a worker, per pool.
    pub queued: BTreeMap<String, u64>,
    /// Sessions sent and not yet acknowledged, per (pool, worker pid).
    pub outstanding: BTreeMap<(String, u32), u64>,
    /// Workers connected, per pool.
    pub workers: BTreeMap<String, u64>,
}

/// A handle to the shared counters.
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<Metrics>>);

impl Shared {
    /// The counters, locked.
    pub fn lock(&self) -> MutexGuard<'_, Metrics> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `n` to `map[key]`.
    pub fn add(
        &self,
        pick: impl FnOnce(&mut Metrics) -> &mut BTreeMap<String, u64>,
        key: &str,
        n: u64,
    ) {
        let mut m = self.lock();
        let counters = pick(&mut m);
        // Every key is there from the start, but for a name first seen here.
        match counters.get_mut(key) {
            Some(count) => *count += n,
            None => drop(counters.insert(key.to_owned(), n)),
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        let mut family =
            |name: &str, kind: &str, help: &str, label: &str, map: &BTreeMap<String, u64>| {
                let _ = writeln!(
                    out,
                    "# HELP handoffd_{name} {help}\n# TYPE handoffd_{name} {kind}"
                );
                for (k, v) in map {
                    let _ = writeln!(out, "handoffd_{name}{{{label}=\"{k}\"}} {v}");
                }
            };
        family(
            "accepted_total",
            "counter",
            "Connections accepted and datagrams received.",
            "listener",
            &m.accepted,
        );
        family(
            "preread_timeouts_total",
            "counter",
            "Pre-reads that ran out of time.",
            "listener",
            &m.preread_timeouts,
        );
        family(
            "refused_total",
            "counter",
            "Sessions refused: pool full or draining.",
            "listener",
            &m.refused,
        );
        family(
            "dropped_total",
            "counter",
            "Connections and datagrams closed without a hand-off, the pool not being full: the client reset it while pre-read, or handoffd could not describe or watch it (logged).",
            "listener",
            &m.dropped,
        );
        family(
            "forwarded_total",
            "counter",
            "Sessions sent to a worker.",
            "pool",
            &m.forwarded,
        );
        family(
            "acknowledged_total",
            "counter",
            "Sessions acknowledged by a worker.",
            "pool",
            &m.acknowledged,
        );
        family(
            "redispatched_total",
            "counter",
            "Sessions sent again after their worker went away.",
            "pool",
            &m.redispatched,
        );
        family(
            "queued",
            "gauge",
            "Sessions waiting for a worker.",
            "pool",
            &m.queued,
        );
        family("workers", "gauge", "Workers connected.", "pool", &m.workers);
        let _ = writeln!(out, "# HELP handoffd_worker_outstanding Sessions sent to a worker and not yet acknowledged.\n# TYPE handoffd_worker_outstanding gauge");
        for ((pool, pid), v) in &m.outstanding {
            let _ = writeln!(
                out,
                "handoffd_worker_outstanding{{pool=\"{pool}\",worker=\"{pid}\"}} {v}"
            );
        }
        out
    }
}

/// Serves `GET /metrics` on `listener`, one request per connection, in a thread of
/// its own so that a slow scraper never stalls the event loop.
pub fn serve(listener: TcpListener, metrics: Shared) {
    // Never blocks in accept (see below); a failure here only costs a blocking one.
    let _ = listener.set_nonblocking(true);
    std::thread::spawn(move || loop {
        // Wait for a connection before accepting it: accept(2) takes an fd slot
        // before it waits, and out of fds that slot is one a worker needs.
        let mut fds = [nix::poll::PollFd::new(
            listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).is_err() {
            continue;
        }
        let mut conn = match listener.accept() {
            Ok((conn, _)) => conn,
            // Out of fds: retrying at once would spin.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            Err(_) => continue,
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let (status, body) = if line.starts_with("GET /metrics ") {
            ("200 OK", metrics.render())
        } else {
            ("404 Not Found", "only /metrics is here\n".to_owned())
        };
        let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
    });
}
