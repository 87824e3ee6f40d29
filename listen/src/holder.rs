//! Which process holds an address: `/proc/net/{tcp,udp}{,6}` give the socket's
//! inode, and `/proc/PID/fd` tells who has it open. Best effort: without permission
//! to read another user's fds, nobody is named.

use std::fs;
use std::net::SocketAddr;

use crate::error::Holder;

/// The process holding `addr`'s port (listening, for TCP), if `/proc` tells.
pub(crate) fn find(addr: SocketAddr, tcp: bool) -> Option<Holder> {
    let proto = if tcp { "tcp" } else { "udp" };
    let inode = ["", "6"]
        .iter()
        .filter_map(|v| fs::read_to_string(format!("/proc/net/{proto}{v}")).ok())
        .find_map(|table| inode_on_port(&table, addr.port(), tcp))?;
    let target = format!("socket:[{inode}]");
    for proc_entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
        {
            let command = fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
            return Some(Holder {
                pid,
                command: command.trim().to_owned(),
            });
        }
    }
    None
}

/// The inode of the first socket in a `/proc/net` table bound to `port` (in state
/// LISTEN, `0A`, for TCP).
fn inode_on_port(table: &str, port: u16, tcp: bool) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
        let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        let inode: u64 = inode.parse().ok()?;
        (p == port && (!tcp || *state == "0A") && inode != 0).then_some(inode)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_proc_net_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 0100007F:D8FC 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0";
        assert_eq!(inode_on_port(table, 8080, true), Some(12345));
        assert_eq!(
            inode_on_port(table, 8081, true),
            None,
            "established, not listening"
        );
        assert_eq!(inode_on_port(table, 8081, false), Some(999));
    }

    #[test]
    fn names_ourselves_when_we_hold_the_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let holder = find(l.local_addr().unwrap(), true).expect("found");
        assert_eq!(holder.pid, std::process::id());
    }
}
