//! The fake cluster world: the fakes of `kubectl`, `istioctl`, `helm`,
//! `systemctl` and K3s's install script keeping the cluster in the
//! world's state (`tests/fakes/`), and the release files (K3s, Helm,
//! Istio, the NFS provisioner's chart) served on 127.0.0.1 with their sums.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::world::World;

/// Release files by URL path, and the paths asked for.
#[derive(Clone, Default)]
pub struct Releases {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
    /// Serve bodies in small paced pieces, as a slow network would.
    slow: Arc<AtomicBool>,
    /// How far the server's clock (its `Date`) is off the test's.
    clock_offset_seconds: Arc<AtomicI64>,
}

/// An HTTP date (RFC 9110 `IMF-fixdate`), `offset` seconds from now.
fn http_date(offset: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset);
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at.format(format).unwrap()
}

impl Releases {
    /// Serves the files on 127.0.0.1; returns the base URL.
    pub fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let this = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .replace("%2B", "+");
                this.requests.lock().unwrap().push(path.clone());
                let body = this.files.lock().unwrap().get(&path).cloned();
                let mut stream = &stream;
                let head = match &body {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nDate: {}\r\nConnection: close\r\n\r\n",
                        body.len(),
                        http_date(this.clock_offset_seconds.load(Ordering::SeqCst))
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    }
                };
                let _ = stream.write_all(head.as_bytes());
                let body = body.unwrap_or_default();
                if this.slow.load(Ordering::SeqCst) {
                    for piece in body.chunks(32 * 1024) {
                        let _ = stream.write_all(piece);
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                } else {
                    let _ = stream.write_all(&body);
                }
            }
        });
        base
    }

    /// Sets how far the server's clock is off (its `Date` header).
    pub fn set_clock_offset(&self, seconds: i64) {
        self.clock_offset_seconds.store(seconds, Ordering::SeqCst);
    }

    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(path.into(), bytes);
    }

    /// Serves bodies slowly from now on (something for progress to show).
    pub fn slow_down(&self) {
        self.slow.store(true, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `.tar.gz` holding `member` (a path under one top directory) with
/// `contents`, mode 0755.
pub fn tarball(member: &str, contents: &str) -> Vec<u8> {
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    archive
        .append_data(&mut header, member, contents.as_bytes())
        .unwrap();
    archive.into_inner().unwrap().finish().unwrap()
}

pub const K3S_BINARY: &str =
    "#!/bin/sh\necho 'k3s version v1.29.0+k3s1 (3190a5a7)'\necho 'go version go1.21.5'\n";

/// The pin key and file of Helm's archive, which the tests pin to the fake.
pub const HELM_PIN: &str = "helm/v3.14.2/helm-v3.14.2-linux-amd64.tar.gz";
pub const HELM_FILE: &str = "/helm/helm-v3.14.2-linux-amd64.tar.gz";

/// Where the provisioner's chart is served (the profile's version).
pub const PROVISIONER_CHART: &str =
    "/charts/nfs-subdir-external-provisioner-4.0.18/nfs-subdir-external-provisioner-4.0.18.tgz";

/// The pin key of the provisioner's chart (the profile's version).
pub const PROVISIONER_PIN: &str =
    "nfs-subdir-external-provisioner/4.0.18/nfs-subdir-external-provisioner-4.0.18.tgz";

/// A stand-in for the provisioner's chart `.tgz` (the fake `helm` only
/// checks that the file is there, and records its SHA-256).
pub fn provisioner_chart() -> Vec<u8> {
    b"a stand-in for nfs-subdir-external-provisioner 4.0.18\n".to_vec()
}

/// The SHA-256 of `provisioner_chart()`, as the profile pins it.
pub fn provisioner_chart_sha256() -> String {
    sha256(&provisioner_chart())
}

/// The release files of the default profile, with their sums; returns
/// the pins of the archives (as a `[downloads.pins]` TOML table),
/// standing in for the profile's real ones. K3s stays unpinned, as in the
/// profile. K3s's install script runs the fake `k3s-install`.
fn publish(releases: &Releases) -> String {
    let k3s = K3S_BINARY.as_bytes().to_vec();
    let sums = format!(
        "{}  k3s-airgap-images-amd64.tar\n{}  k3s\n",
        sha256(b"images"),
        sha256(&k3s)
    );
    releases.put("/k3s/v1.29.0+k3s1/k3s", k3s);
    releases.put("/k3s/v1.29.0+k3s1/sha256sum-amd64.txt", sums.into_bytes());
    releases.put(
        "/k3s-script/v1.29.0+k3s1/install.sh",
        b"#!/bin/sh\nexec k3s-install \"$@\"\n".to_vec(),
    );
    let helm = tarball("linux-amd64/helm", "#!/bin/sh\nprintf v3.14.2\n");
    let helm_file = "helm-v3.14.2-linux-amd64.tar.gz";
    releases.put(
        &format!("/helm/{helm_file}.sha256sum"),
        format!("{}  {helm_file}\n", sha256(&helm)).into_bytes(),
    );
    let helm_sum = sha256(&helm);
    releases.put(&format!("/helm/{helm_file}"), helm);
    let istio = tarball("istio-1.20.3/bin/istioctl", "#!/bin/sh\necho 1.20.3\n");
    let istio_file = "istio-1.20.3-linux-amd64.tar.gz";
    releases.put(
        &format!("/istio/1.20.3/{istio_file}.sha256"),
        format!("{}  {istio_file}\n", sha256(&istio)).into_bytes(),
    );
    let pins = format!(
        "{{ \"{HELM_PIN}\" = {{ sha256 = \"{helm_sum}\", source = \"the tests' release server\" }}, \"istio/1.20.3/{istio_file}\" = {{ sha256 = \"{}\", source = \"the tests' release server\" }}, \"{PROVISIONER_PIN}\" = {{ sha256 = \"{}\", source = \"the tests' release server\" }} }}",
        sha256(&istio),
        provisioner_chart_sha256()
    );
    releases.put(&format!("/istio/1.20.3/{istio_file}"), istio);
    releases.put(PROVISIONER_CHART, provisioner_chart());
    pins
}

/// A world with the cluster's fakes, the release files served, the
/// profile pointed at them, and the cluster's steps only (the database and
/// application steps have worlds of their own).
pub fn cluster_world() -> (World, Releases) {
    let mut world = World::new();
    let releases = Releases::default();
    let pins = publish(&releases);
    world.set_env("STACKINSTALL_DOWNLOADS__PINS", &pins);
    let base = releases.serve();
    world.fakes(&[
        "kubectl",
        "istioctl",
        "helm",
        "k3s-install",
        "k3s-uninstall",
        "systemctl",
    ]);
    // The host's other units run; K3s's is made by its install script.
    world.configure(|config| config.units_present = true);
    for (key, path) in [
        ("K3S", "/k3s/{version}"),
        ("K3S_INSTALL_SCRIPT", "/k3s-script/{version}/install.sh"),
        ("HELM", "/helm"),
        ("ISTIO", "/istio/{version}"),
    ] {
        world.set_env(
            &format!("STACKINSTALL_DOWNLOADS__{key}"),
            &format!("{base}{path}"),
        );
    }
    world.set_env(
        "STACKINSTALL_STORAGE__CHART_URL",
        &format!("{base}/charts/nfs-subdir-external-provisioner-{{version}}/nfs-subdir-external-provisioner-{{version}}.tgz"),
    );
    world.set_env("STACKINSTALL_ONLY", "k3s,helm,istio,namespace,tls,gateway");
    (world, releases)
}

/// A host of a cluster several worlds share (its state in `cluster`:
/// `Config::cluster_state`): a cluster world with K3s's fakes, the `k3s`
/// program, apt and dpkg, named `name` at `address`, running the `k3s`
/// step only (what `join` runs).
pub fn cluster_host(cluster: &std::path::Path, name: &str, address: &str) -> (World, Releases) {
    let (mut world, releases) = cluster_world();
    world.fakes(&["k3s", "dpkg-query", "apt-get"]);
    world.configure(|config| {
        config.cluster_state = Some(cluster.to_path_buf());
        config.node_name = name.into();
        config.node_address = address.into();
    });
    world.write("/etc/hostname", &format!("{name}\n"));
    world.set_env("STACKINSTALL_CLUSTER__HOST_IP", address);
    world.set_env("STACKINSTALL_ONLY", "k3s");
    (world, releases)
}
