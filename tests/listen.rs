//! handoff-listen against real sockets: dual-stack on one port, UNIX listeners and
//! their stale files, options, "address in use" with its holder, accepting on a
//! shared fd, and inheritance across a real exec.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use handoff::listen::socket2::SockRef;
use handoff::listen::{self, ListenError, Options, UnixOptions};

fn read_all(mut s: impl Read) -> String {
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn dual_stack_on_port_zero_shares_one_port() {
    let pair = listen::tcp_dual_stack_on(
        Ipv4Addr::LOCALHOST,
        Ipv6Addr::LOCALHOST,
        0,
        &Options::default(),
    )
    .unwrap();
    let v6 = pair.v6.as_ref().expect("this host has IPv6");
    let port = pair.v4.local_addr().unwrap().port();
    assert_ne!(port, 0);
    assert_eq!(v6.local_addr().unwrap().port(), port);
    assert!(SockRef::from(v6).only_v6().unwrap());
    let _c4 = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let _c6 = TcpStream::connect((Ipv6Addr::LOCALHOST, port)).unwrap();
    assert!(pair.v4.accept().unwrap().1.is_ipv4());
    assert!(v6.accept().unwrap().1.is_ipv6());

    let udp = listen::udp_dual_stack_on(
        Ipv4Addr::LOCALHOST,
        Ipv6Addr::LOCALHOST,
        0,
        &Options::default(),
    )
    .unwrap();
    let port = udp.v4.local_addr().unwrap().port();
    assert_eq!(udp.v6.as_ref().unwrap().local_addr().unwrap().port(), port);
    assert!(udp.note.is_none());
}

#[test]
fn the_wildcard_dual_stack_pair_binds_too() {
    let pair = listen::tcp_dual_stack(0, &Options::default()).unwrap();
    assert!(pair.v4.local_addr().unwrap().ip().is_unspecified());
    assert_eq!(
        pair.v6.unwrap().local_addr().unwrap().port(),
        pair.v4.local_addr().unwrap().port()
    );
}

#[test]
fn one_v6_socket_without_v6only_serves_ipv4_clients() {
    let l = listen::tcp_any_v6(0, &Options::default()).unwrap();
    assert!(!SockRef::from(&l).only_v6().unwrap());
    let port = l.local_addr().unwrap().port();
    let _c = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let (_, peer) = l.accept().unwrap();
    let std::net::SocketAddr::V6(peer) = peer else {
        panic!("{peer}")
    };
    assert_eq!(peer.ip().to_ipv4_mapped(), Some(Ipv4Addr::LOCALHOST));
}

#[test]
fn options_reach_the_socket() {
    let opts = Options {
        reuse_port: true,
        backlog: 16,
        send_buffer: Some(64 * 1024),
        recv_buffer: Some(64 * 1024),
        keepalive: Some(Duration::from_secs(30)),
        user_timeout: Some(Duration::from_secs(10)),
        nonblocking: true,
        defer_accept: Some(Duration::from_millis(1500)),
    };
    let a = listen::tcp("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
    let s = SockRef::from(&a);
    assert!(s.reuse_address().unwrap());
    assert!(s.reuse_port().unwrap());
    assert!(s.keepalive().unwrap());
    assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(30));
    assert_eq!(s.tcp_user_timeout().unwrap(), Some(Duration::from_secs(10)));
    assert!(s.recv_buffer_size().unwrap() >= 64 * 1024);
    assert!(s.nonblocking().unwrap());
    assert!(
        listen::tcp_defer_accept(&a).unwrap() >= Duration::from_secs(2),
        "rounded up"
    );
    let plain = listen::tcp("127.0.0.1:0".parse().unwrap(), &Options::default()).unwrap();
    assert_eq!(listen::tcp_defer_accept(&plain).unwrap(), Duration::ZERO);
    // SO_REUSEPORT: a second listener on the same port.
    let b = listen::tcp(a.local_addr().unwrap(), &opts).unwrap();
    assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
}

#[test]
fn address_in_use_names_the_holder() {
    let held = listen::tcp("127.0.0.1:0".parse().unwrap(), &Options::default()).unwrap();
    let addr = held.local_addr().unwrap();
    let err = listen::tcp(addr, &Options::default()).unwrap_err();
    match &err {
        ListenError::AddrInUse {
            addr: a,
            holder: Some(h),
        } => {
            assert_eq!(*a, addr);
            assert_eq!(h.pid, std::process::id());
            assert!(!h.command.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = listen::udp(udp.local_addr().unwrap(), &Options::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ListenError::AddrInUse {
                holder: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn accept_on_a_shared_fd_tells_would_block_from_errors() {
    let opts = Options {
        nonblocking: true,
        ..Default::default()
    };
    let l = listen::tcp("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
    assert!(listen::accept_tcp(l.as_fd()).unwrap().is_none());
    let addr = l.local_addr().unwrap();
    let clients: Vec<_> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // Two workers share the fd; every connection is accepted exactly once.
    let total = std::sync::atomic::AtomicUsize::new(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (fd, total, want) = (l.as_fd(), &total, clients.len());
            scope.spawn(move || {
                while total.load(std::sync::atomic::Ordering::SeqCst) < want {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "connections went missing"
                    );
                    match listen::accept_tcp(fd).unwrap() {
                        Some((conn, _)) => {
                            assert!(conn.nodelay().unwrap());
                            assert!(!SockRef::from(&conn).nonblocking().unwrap());
                            total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        None => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            });
        }
    });
    assert_eq!(total.into_inner(), clients.len());
    assert!(
        listen::accept_tcp(l.as_fd()).unwrap().is_none(),
        "nothing accepted twice"
    );
    drop(clients);
    // A real error is an error: accept on something that is not a listener.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(listen::accept_tcp(udp.as_fd()).is_err());
}

#[test]
fn unix_listener_mode_and_stale_files() {
    let path = sock_path("mode");
    let l = listen::unix(&path, &UnixOptions::default()).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o660
    );
    // Live: refused, and the file stays.
    let err = listen::unix(&path, &UnixOptions::default()).unwrap_err();
    assert!(matches!(err, ListenError::LiveListener { .. }), "{err:?}");
    assert!(err.to_string().contains(path.to_str().unwrap()));
    drop(l);
    // Stale: replaced, with the new mode.
    let opts = UnixOptions {
        mode: 0o600,
        ..Default::default()
    };
    let l = listen::unix(&path, &opts).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    let mut c = UnixStream::connect(&path).unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.write_all(b"hi").unwrap();
    drop(s);
    assert_eq!(read_all(&mut c), "hi");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn unix_listener_refuses_files_directories_and_long_paths() {
    let file = sock_path("regular");
    std::fs::write(&file, b"keep me").unwrap();
    let err = listen::unix(&file, &UnixOptions::default()).unwrap_err();
    assert!(matches!(err, ListenError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    std::fs::remove_file(&file).unwrap();

    let dir = sock_path("dir");
    std::fs::create_dir(&dir).unwrap();
    assert!(matches!(
        listen::unix(&dir, &UnixOptions::default()),
        Err(ListenError::NotASocket { .. })
    ));
    assert!(dir.is_dir());
    std::fs::remove_dir(&dir).unwrap();

    let long = std::env::temp_dir().join("x".repeat(120));
    let err = listen::unix(&long, &UnixOptions::default()).unwrap_err();
    assert!(
        matches!(err, ListenError::PathTooLong { max: 107, .. }),
        "{err:?}"
    );
    assert!(!long.exists());
}

#[test]
fn abstract_unix_listener() {
    let name = format!("handoff-listen-test-{}", std::process::id());
    let l = listen::unix_abstract(name.as_bytes(), 16).unwrap();
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let _c = UnixStream::connect_addr(&addr).unwrap();
    l.accept().unwrap();
    assert!(
        listen::unix_abstract(name.as_bytes(), 16).is_err(),
        "the name is taken"
    );
}

use std::os::linux::net::SocketAddrExt;

/// A real exec: the example binds, hands its listeners to a successor it starts
/// with `pass_fds`, and exits; the successor adopts them and serves on the same
/// port, and its own children see no inheritance variable.
#[test]
fn listeners_survive_a_real_exec() {
    let path = sock_path("inherit");
    let mut child = Command::new(example("listen_and_serve"))
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--unix",
            path.to_str().unwrap(),
            "--count",
            "2",
            "--handover",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first_pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().unwrap().unwrap();
    let bound = [next(), next()];
    let inherited = [next(), next()];
    assert!(bound.iter().all(|l| l.ends_with(" bound")), "{bound:?}");
    assert!(
        inherited.iter().all(|l| l.ends_with(" inherited")),
        "{inherited:?}"
    );
    // Same sockets: same addresses.
    for (b, i) in bound.iter().zip(&inherited) {
        assert_eq!(b.split(' ').nth(2), i.split(' ').nth(2));
    }
    let tcp_addr = bound[0]
        .split(' ')
        .nth(2)
        .unwrap()
        .strip_prefix("tcp:")
        .unwrap()
        .to_owned();
    let reply = read_all(TcpStream::connect(tcp_addr).unwrap());
    let words: Vec<&str> = reply.split_whitespace().collect();
    assert_eq!(
        words[0], "tcp:127.0.0.1:0",
        "named as the predecessor named it"
    );
    assert_ne!(words[1], first_pid.to_string(), "served by the successor");
    assert_eq!(&words[2..], ["inherited", "child-env:clean"]);
    let reply = read_all(UnixStream::connect(&path).unwrap());
    assert!(reply.contains(" inherited child-env:clean"), "{reply}");
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
}

/// Runs in a child process (this test binary again), whose environment the parent
/// sets: changing the environment of a process with threads is a race.
#[test]
fn inheriting_nothing_is_a_cold_start_and_bad_lists_are_errors() {
    const VAR: &str = "HANDOFF_TEST_INHERIT";
    if let Some(mode) = std::env::var_os("HANDOFF_TEST_INHERIT_MODE") {
        let got = listen::inherit(VAR);
        assert!(std::env::var_os(VAR).is_none(), "removed in every case");
        match mode.to_str().unwrap() {
            "absent" => assert!(got.unwrap().is_empty()),
            "malformed" => assert!(
                matches!(got, Err(listen::AdoptError::BadEntry { .. })),
                "{got:?}"
            ),
            "closed" => assert!(
                matches!(got, Err(listen::AdoptError::Fd { fd: 987654, .. })),
                "{got:?}"
            ),
            other => panic!("{other}"),
        }
        println!("INHERIT-CHECKED");
        return;
    }
    for (mode, value) in [
        ("absent", None),
        ("malformed", Some("3:web,nonsense")),
        ("closed", Some("987654:web")),
    ] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "inheriting_nothing_is_a_cold_start_and_bad_lists_are_errors",
            "--nocapture",
        ])
        .env("HANDOFF_TEST_INHERIT_MODE", mode);
        match value {
            Some(v) => cmd.env(VAR, v),
            None => cmd.env_remove(VAR),
        };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("INHERIT-CHECKED"),
            "{mode}:\n{text}"
        );
    }
}

/// A host without IPv6 (a network namespace of our own with IPv6 disabled, this test
/// binary re-run inside it): the dual-stack pair is IPv4 alone, with a note.
#[test]
fn without_ipv6_the_dual_stack_pair_is_ipv4_and_a_note() {
    if std::env::var_os("HANDOFF_NO_IPV6_CHILD").is_some() {
        let pair = listen::tcp_dual_stack_on(
            Ipv4Addr::LOCALHOST,
            Ipv6Addr::LOCALHOST,
            0,
            &Options::default(),
        )
        .unwrap();
        assert!(pair.v6.is_none());
        let note = pair.note.expect("a note");
        assert!(note.contains("IPv6 is not available"), "{note}");
        let _c = TcpStream::connect(pair.v4.local_addr().unwrap()).unwrap();
        println!("NO-IPV6-CHECKED");
        return;
    }
    let script = "ip link set lo up && echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 \
                  && echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6 \
                  && exec \"$0\" --exact without_ipv6_the_dual_stack_pair_is_ipv4_and_a_note --nocapture";
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", script])
        .arg(std::env::current_exe().unwrap())
        .env("HANDOFF_NO_IPV6_CHILD", "1")
        .output()
        .expect("unshare (util-linux)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("NO-IPV6-CHECKED"),
        "{text}"
    );
}
