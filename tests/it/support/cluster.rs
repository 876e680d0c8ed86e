//! The fake cluster world of `tests/cluster.rs` (fake `kubectl`/`istioctl`
//! keeping objects in `$STATE`, release files served on 127.0.0.1), shared
//! for tests that need an installed cluster first. Included with `#[path]`.
#![allow(dead_code, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::common::World;
/// Release files by URL path, and the paths asked for.
#[derive(Clone, Default)]
pub struct Releases {
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
    /// Serve bodies in small paced pieces, as a slow network would.
    slow: Arc<AtomicBool>,
}

impl Releases {
    /// Serves the files on 127.0.0.1; returns the base URL.
    fn serve(&self) -> String {
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
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
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

pub fn sha256(bytes: &[u8]) -> String {
    hex_string(&Sha256::digest(bytes))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `.tar.gz` holding `member` with `contents` (made with `tar`).
fn tarball(member: &str, contents: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(member);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, contents).unwrap();
    let archive = dir.path().join("out.tar.gz");
    let top = member.split('/').next().unwrap();
    let status = std::process::Command::new("tar")
        .args([
            "-czf",
            archive.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
            top,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(archive).unwrap()
}

pub const K3S_BINARY: &str =
    "#!/bin/sh\necho 'k3s version v1.29.0+k3s1 (3190a5a7)'\necho 'go version go1.21.5'\n";

/// The pin key and file of Helm's archive, which the tests pin to the fake.
pub const HELM_PIN: &str = "helm/v3.14.2/helm-v3.14.2-linux-amd64.tar.gz";
pub const HELM_FILE: &str = "/helm/helm-v3.14.2-linux-amd64.tar.gz";

/// The pinned release files of the default profile, with their sums;
/// returns the pins of the archives (as a `[downloads.pins]` TOML table),
/// standing in for the profile's real ones. K3s stays unpinned, as in the
/// profile.
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
    let helm_bytes = helm.clone();
    releases.put(&format!("/helm/{helm_file}"), helm);
    let istio = tarball("istio-1.20.3/bin/istioctl", "#!/bin/sh\necho 1.20.3\n");
    let istio_file = "istio-1.20.3-linux-amd64.tar.gz";
    releases.put(
        &format!("/istio/1.20.3/{istio_file}.sha256"),
        format!("{}  {istio_file}\n", sha256(&istio)).into_bytes(),
    );
    let pins = format!(
        "{{ \"{HELM_PIN}\" = {{ sha256 = \"{}\", source = \"the tests' release server\" }}, \"istio/1.20.3/{istio_file}\" = {{ sha256 = \"{}\", source = \"the tests' release server\" }}, \"{PROVISIONER_PIN}\" = {{ sha256 = \"{}\", source = \"the tests' release server\" }} }}",
        sha256(&helm_bytes),
        sha256(&istio),
        provisioner_chart_sha256()
    );
    releases.put(&format!("/istio/1.20.3/{istio_file}"), istio);
    releases.put(PROVISIONER_CHART, provisioner_chart());
    pins
}

/// The part of a fake K3s install script that does what K3s does when it
/// starts: write its kubeconfig `/etc/rancher/k3s/k3s.yaml` (under the
/// world's root) with the mode of `--write-kubeconfig-mode` in
/// `INSTALL_K3S_EXEC`, 0600 without it (K3s's default).
pub fn k3s_writes_kubeconfig(world: &World) -> String {
    let file = world.path("/etc/rancher/k3s/k3s.yaml");
    format!(
        r#"mode=600; previous=""
for word in $INSTALL_K3S_EXEC; do
  [ "$previous" = --write-kubeconfig-mode ] && mode="$word"
  previous="$word"
done
mkdir -p "{dir}"
printf 'apiVersion: v1
clusters:
- cluster:
    server: https://127.0.0.1:6443
  name: default
users:
- name: default
  user:
    client-key-data: ZmFrZSBrZXk=
' > "{file}"
chmod "$mode" "{file}""#,
        dir = file.parent().unwrap().display(),
        file = file.display()
    )
}

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

/// The part of a fake K3s install script that records, in
/// `$STATE/k3s-starts`, whether the kubelet's credential provider (its
/// config file and the plugin in its bin dir, under the world's root) was in
/// place when K3s started: K3s reads them only then.
pub fn k3s_records_provider(world: &World) -> String {
    let config = world.path("/var/lib/rancher/credentialprovider/config.yaml");
    let plugin = world.path("/var/lib/rancher/credentialprovider/bin/stackinstall");
    format!(
        r#"if [ -f "{config}" ] && [ -x "{plugin}" ]; then echo "provider in place" >> "$STATE/k3s-starts"; else echo "no provider" >> "$STATE/k3s-starts"; fi"#,
        config = config.display(),
        plugin = plugin.display()
    )
}

pub fn python() -> String {
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys, yaml; print(sys.executable)"])
        .output()
        .expect("python3 with PyYAML runs the fake kubectl");
    assert!(
        output.status.success(),
        "python3 with PyYAML is needed by the fake kubectl"
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A world with the fakes, the release files served, the profile pointed at them.
pub fn cluster_world() -> (World, Releases) {
    let mut world = World::new();
    let releases = Releases::default();
    let pins = publish(&releases);
    world.set_env("STACKINSTALL_DOWNLOADS__PINS", &pins);
    let base = releases.serve();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakes/cluster.py");
    let python = python();
    for program in ["kubectl", "istioctl"] {
        let body = format!(
            "printf '%s' \"$STDIN\" | {python} {} \"$STATE\" {program} \"$@\"",
            script.display()
        );
        world.fake(program, &body);
    }
    world.fake("helm", include_str!("../fakes/helm.sh"));
    world.fake(
        "k3s-install",
        &format!(
            "{}\ntouch \"$STATE/k3s-running\"\n{}",
            k3s_records_provider(&world),
            k3s_writes_kubeconfig(&world)
        ),
    );
    world.fake(
        "systemctl",
        "if [ \"$1\" = is-active ]; then [ -f \"$STATE/k3s-running\" ]; exit; fi; exit 0",
    );
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
    // The cluster's steps only: the database and application steps have
    // tests of their own (and a real apt-get must never run here).
    world.set_env("STACKINSTALL_ONLY", "k3s,helm,istio,namespace,tls,gateway");
    (world, releases)
}
