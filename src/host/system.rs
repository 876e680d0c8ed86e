//! Read-only facts about the machine: user, OS, CPUs, memory, disk, ports.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The fields of an os-release file (`ID`, `VERSION_ID`, `PRETTY_NAME`...).
pub fn os_release(path: &Path) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(path).ok()?;
    let fields = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let value = value.trim().trim_matches('"').trim_matches('\'');
            (key.trim().to_string(), value.to_string())
        })
        .collect();
    Some(fields)
}

/// How many CPUs the machine has.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Total memory in MiB, from `/proc/meminfo`.
pub fn memory_mib() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Free space in GiB on the file system holding `path` (or its nearest
/// existing ancestor).
pub fn free_disk_gib(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let c_path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid C string and stat a valid out pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64 / (1024 * 1024 * 1024))
}

/// The host's primary IPv4 address: the source address of its default
/// route (found by connecting a UDP socket, which sends nothing).
pub fn primary_ipv4() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect(("192.0.2.1", 53)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// The numeric id of `name` in a passwd or group file (`name:x:ID:...`).
pub fn id_in(file: &Path, name: &str) -> Option<u32> {
    let text = fs::read_to_string(file).ok()?;
    text.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| fields.get(2)?.parse().ok())
}

/// Who listens on a TCP port: `None` when it is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortUse {
    Free,
    /// In use; the listening program's name when it could be found.
    Taken(Option<String>),
}

/// Whether a program listens on TCP `port`, and which. Read from the
/// kernel's socket tables, so looking never holds the port itself.
pub fn port_use(port: u16) -> PortUse {
    port_uses(&[port]).remove(&port).unwrap_or(PortUse::Free)
}

/// [`port_use`] for several ports, with one pass over the processes.
pub fn port_uses(ports: &[u16]) -> BTreeMap<u16, PortUse> {
    let listening = listening_inodes(ports);
    let mut programs = programs_with_sockets(listening.keys().cloned().collect());
    let mut uses: BTreeMap<u16, PortUse> =
        ports.iter().map(|&port| (port, PortUse::Free)).collect();
    for (inode, port) in listening {
        let program = programs.remove(&inode);
        let entry = uses.entry(port).or_insert(PortUse::Free);
        if !matches!(entry, PortUse::Taken(Some(_))) {
            *entry = PortUse::Taken(program);
        }
    }
    uses
}

/// Whether a UDP socket is bound to `port` (flannel's VXLAN on 8472, for
/// one): read from the kernel's socket tables.
pub fn udp_port_bound(port: u16) -> bool {
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|table| {
        let text = fs::read_to_string(table).unwrap_or_default();
        text.lines().skip(1).any(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
                == Some(port)
        })
    })
}

/// `socket:[INODE]` of every listening TCP socket on one of `ports`.
fn listening_inodes(ports: &[u16]) -> BTreeMap<String, u16> {
    const LISTEN: &str = "0A";
    let mut inodes = BTreeMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields
                .get(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            let Some(port) = port.filter(|port| ports.contains(port)) else {
                continue;
            };
            if let Some(inode) = fields.get(9).filter(|_| fields.get(3) == Some(&LISTEN)) {
                inodes.insert(format!("socket:[{inode}]"), port);
            }
        }
    }
    inodes
}

/// The program name holding each of `inodes`, as far as this user can see.
/// A socket that systemd listens on for a socket unit is also held by the
/// service it started: that service is named, systemd only when it is the
/// one holder.
fn programs_with_sockets(mut wanted: BTreeSet<String>) -> BTreeMap<String, String> {
    const SYSTEMD: &str = "systemd";
    let mut found = BTreeMap::new();
    let Ok(processes) = fs::read_dir("/proc") else {
        return found;
    };
    for process in processes.flatten() {
        if wanted.is_empty() {
            break;
        }
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            if !wanted.contains(&target) {
                continue;
            }
            let name = fs::read_to_string(process.path().join("comm")).unwrap_or_default();
            let name = name.trim().to_string();
            if name != SYSTEMD {
                wanted.remove(&target);
            }
            found.insert(target, name);
        }
    }
    found
}

/// Keeps the passwords this process holds out of core files and out of
/// reach of a same-user debugger: no core file (`RLIMIT_CORE` 0, also for
/// the children it starts) and not dumpable (`PR_SET_DUMPABLE` 0, which
/// also makes `/proc/PID/mem` and `environ` root's). Called first thing.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_port_is_taken_by_this_program() {
        use std::net::TcpListener;
        let listener = TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let PortUse::Taken(Some(program)) = port_use(port) else {
            panic!("port {port} should be taken by this test")
        };
        let me = fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(program, me.trim());
    }
}
