//! Read-only facts about the machine: user, OS, CPUs, memory, disk, ports.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
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

/// The host's own address on its default route (what pods reach it at);
/// no packet is sent. `None` without a route.
pub fn primary_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect(("192.0.2.1", 9)).ok()?;
    socket.local_addr().ok().map(|address| address.ip())
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

/// Whether `port` is free on all interfaces, and if not, which program has it.
pub fn port_use(port: u16) -> PortUse {
    if TcpListener::bind(("0.0.0.0", port)).is_ok() && TcpListener::bind(("::", port)).is_ok() {
        return PortUse::Free;
    }
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return PortUse::Taken(None);
    }
    PortUse::Taken(program_with_socket(&inodes))
}

fn listening_inodes(port: u16) -> Vec<String> {
    const LISTEN: &str = "0A";
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = fields.get(1) else { continue };
            let Some((_, hex_port)) = local.rsplit_once(':') else { continue };
            if u16::from_str_radix(hex_port, 16) == Ok(port) && fields.get(3) == Some(&LISTEN) {
                if let Some(inode) = fields.get(9) {
                    inodes.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    inodes
}

fn program_with_socket(inodes: &[String]) -> Option<String> {
    for process in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(fds) = fs::read_dir(process.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            if inodes.iter().any(|inode| target.as_os_str() == inode.as_str()) {
                let name = fs::read_to_string(process.path().join("comm")).ok()?;
                return Some(name.trim().to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_port_is_taken_by_this_program() {
        let listener = TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let PortUse::Taken(Some(program)) = port_use(port) else {
            panic!("port {port} should be taken by this test")
        };
        let me = fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(program, me.trim());
    }
}
