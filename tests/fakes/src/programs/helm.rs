//! `helm` 3.14 (helm/helm `cmd/helm/{upgrade,pull,history,list,rollback,
//! uninstall,version}.go`): each release's history in
//! `state/helm/RELEASE.json`, the objects it made in `RELEASE.objects`.
//!
//! A release puts its objects into the fake cluster and `uninstall` takes
//! them away: the NFS provisioner's chart (a
//! `nfs-subdir-external-provisioner-*.tgz` file) makes its StorageClass
//! (from `--set storageClass.*`) and an available Deployment; any other
//! chart makes the objects of `state/chart/*.json` (the test's application
//! chart) in the release's namespace. `upgrade` records the values file's
//! mode and contents (`values-mode`, `values-seen.yaml`) and the chart
//! file's SHA-256 (`RELEASE.chart-sha256`); it is `pending-install` or
//! `pending-upgrade` while it works, as Helm's release is, and refuses to
//! start over a pending one with Helm's message.
//!
//! `pull REF [--version V] --destination DIR` writes `DIR/NAME-V.tgz` (V is
//! 1.0.0, "the newest", without `--version`): the bytes of
//! `state/registry/NAME-V.tgz` when the test put a chart there, else a
//! stand-in text; for an `oci://` reference it prints Helm's `Pulled:` and
//! `Digest:` lines (the manifest digest: the SHA-256 of `manifest of ` and
//! the file's SHA-256).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::cluster::Cluster;
use crate::flags::{self, Parsed, Refused, Spec};
use crate::store::Resource;
use crate::{Fake, Reply, lock_state};

const SPEC: Spec = Spec {
    values: &[
        &["-n", "--namespace"],
        &["-f", "--values"],
        &["--set"],
        &["--set-string"],
        &["--version"],
        &["--timeout"],
        &["--description"],
        &["-d", "--destination"],
        &["--max"],
        &["-o", "--output"],
        &["--template"],
        &["--kubeconfig"],
        &["--filter"],
    ],
    switches: &[
        &["-i", "--install"],
        &["--wait"],
        &["--atomic"],
        &["--create-namespace"],
        &["--short"],
        &["--keep-history"],
        &["-a", "--all"],
    ],
};

const UNREACHABLE: &str = "Error: Kubernetes cluster unreachable: Get \"https://127.0.0.1:6443/version\": dial tcp 127.0.0.1:6443: connect: connection refused\n";

/// Runs helm; takes the state lock itself (an upgrade lets go of it while
/// it works, as a real one takes a while).
pub fn run(fake: &Fake) -> Reply {
    let parsed = match flags::parse(&fake.args, &SPEC) {
        Ok(parsed) => parsed,
        Err(Refused::Unknown(flag)) => {
            return Reply::fail(1, format!("Error: unknown flag: {flag}\n"));
        }
        Err(Refused::Shorthand(letter, word)) => {
            return Reply::fail(
                1,
                format!("Error: unknown shorthand flag: '{letter}' in {word}\n"),
            );
        }
        Err(Refused::MissingValue(flag)) => {
            return Reply::fail(1, format!("Error: flag needs an argument: {flag}\n"));
        }
    };
    let words: Vec<&str> = parsed.positional.iter().map(String::as_str).collect();
    let helm = Helm {
        fake,
        parsed: &parsed,
    };
    let lock = lock_state(fake);
    match words.as_slice() {
        ["version"] => Reply::out(match (parsed.value("--template"), parsed.switch("--short")) {
            (Some(_), _) => "v3.14.2".to_string(),
            (None, true) => "v3.14.2+gc309b6f\n".to_string(),
            (None, false) => "version.BuildInfo{Version:\"v3.14.2\", GitCommit:\"c309b6f0ff63856811846ce18f3bdc93d2b4d54b\", GitTreeState:\"clean\", GoVersion:\"go1.21.7\"}\n".to_string(),
        }),
        ["pull", reference] => helm.pull(reference),
        [verb, ..] if !["history", "list", "upgrade", "rollback", "uninstall", "get"].contains(verb) => {
            Reply::fail(1, format!("Error: unknown command \"{verb}\" for \"helm\"\n"))
        }
        _ if !Cluster::new(fake).up() => Reply::fail(1, UNREACHABLE),
        ["history", release] => helm.history(release),
        ["list"] => helm.list(),
        ["get", "values", release] => helm.get_values(release),
        ["upgrade", release, chart] if parsed.switch("-i") => helm.upgrade(release, chart, lock),
        ["rollback", release, revision] => helm.rollback(release, revision),
        ["uninstall", release] => helm.uninstall(release),
        _ => Reply::fail(
            1,
            format!("Error: this fake does not know `helm {}`\n", words.join(" ")),
        ),
    }
}

struct Helm<'a> {
    fake: &'a Fake,
    parsed: &'a Parsed,
}

impl Helm<'_> {
    fn dir(&self) -> std::path::PathBuf {
        let dir = self.fake.state.join("helm");
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    fn namespace(&self) -> &str {
        self.parsed.value("-n").unwrap_or("default")
    }

    fn history_of(&self, release: &str) -> Option<Vec<Value>> {
        let text = std::fs::read_to_string(self.dir().join(format!("{release}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save_history(&self, release: &str, history: &[Value]) {
        let file = self.dir().join(format!("{release}.json"));
        std::fs::write(file, serde_json::to_string_pretty(history).unwrap()).unwrap();
    }

    fn add_revision(&self, release: &str, status: &str, description: &str) {
        let mut history = self.history_of(release).unwrap_or_default();
        for revision in &mut history {
            if revision["status"] == "deployed" && status == "deployed" {
                revision["status"] = json!("superseded");
            }
        }
        let number = history.len() + 1;
        history.push(json!({ "revision": number, "status": status,
            "description": description, "chart": "stackbill-1.0.0" }));
        self.save_history(release, &history);
    }

    fn history(&self, release: &str) -> Reply {
        match self.history_of(release) {
            Some(history) => Reply::out(format!("{}\n", Value::Array(history))),
            None => Reply::fail(1, "Error: release: not found\n"),
        }
    }

    /// `helm list [--all] [--filter REGEX] -o json` (`cmd/helm/list.go`):
    /// the releases as a JSON list of `name`, `namespace`, `revision` (a
    /// string), `status` and `chart`; without `--all`, only deployed and
    /// failed ones. The filter here is an anchored name (`^NAME$`) or a
    /// plain substring, which is what stackinstall passes.
    fn list(&self) -> Reply {
        if self.parsed.value("-o") != Some("json") {
            return Reply::fail(1, "Error: this fake prints `helm list` as JSON only\n");
        }
        let filter = self.parsed.value("--filter").unwrap_or("");
        let matches = |name: &str| match filter.strip_prefix('^').and_then(|f| f.strip_suffix('$'))
        {
            Some(exact) => name == exact.replace("\\.", "."),
            None => name.contains(filter),
        };
        let Ok(entries) = std::fs::read_dir(self.dir()) else {
            return Reply::out("[]\n");
        };
        let mut releases = Vec::new();
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().to_string();
            let Some(name) = file.strip_suffix(".json") else {
                continue;
            };
            let Some(latest) = self.history_of(name).and_then(|h| h.last().cloned()) else {
                continue;
            };
            let status = latest["status"].as_str().unwrap_or_default().to_string();
            let shown =
                self.parsed.switch("-a") || matches!(status.as_str(), "deployed" | "failed");
            if matches(name) && shown {
                releases.push(json!({ "name": name, "namespace": self.namespace(),
                    "revision": latest["revision"].to_string(), "status": status,
                    "chart": latest["chart"] }));
            }
        }
        Reply::out(format!("{}\n", Value::Array(releases)))
    }

    /// `helm get values RELEASE` (`cmd/helm/get_values.go`): the
    /// user-supplied values of the release's last revision, as YAML with
    /// `-o yaml`, under `USER-SUPPLIED VALUES:` in the default table
    /// output; `null` when none were given.
    fn get_values(&self, release: &str) -> Reply {
        if self.history_of(release).is_none() {
            return Reply::fail(1, "Error: release: not found\n");
        }
        let values = std::fs::read_to_string(self.dir().join(format!("{release}.values.yaml")))
            .unwrap_or_else(|_| "null\n".into());
        match self.parsed.value("-o") {
            Some("yaml") => Reply::out(values),
            None | Some("table") => Reply::out(format!("USER-SUPPLIED VALUES:\n{values}")),
            Some(other) => Reply::fail(
                1,
                format!(
                    "Error: invalid argument \"{other}\" for \"-o, --output\" flag: invalid format type\n"
                ),
            ),
        }
    }

    fn pull(&self, reference: &str) -> Reply {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        let version = self.parsed.value("--version").unwrap_or("1.0.0");
        let Some(destination) = self.parsed.value("-d") else {
            return Reply::fail(1, "Error: this fake pulls into --destination only\n");
        };
        if !std::path::Path::new(destination).is_dir() {
            return Reply::fail(
                1,
                format!("Error: failed to untar: mkdir {destination}: no such file or directory\n"),
            );
        }
        let file = format!("{destination}/{name}-{version}.tgz");
        let published = self
            .fake
            .state
            .join("registry")
            .join(format!("{name}-{version}.tgz"));
        let bytes = std::fs::read(published).unwrap_or_else(|_| {
            format!("a stand-in for the chart {name} {version}\n").into_bytes()
        });
        std::fs::write(&file, &bytes).unwrap();
        match reference.strip_prefix("oci://") {
            Some(location) => {
                let manifest = format!("manifest of {}", hex(&Sha256::digest(&bytes)));
                Reply::out(format!(
                    "Pulled: {location}:{version}\nDigest: sha256:{}\n",
                    hex(&Sha256::digest(manifest.as_bytes()))
                ))
            }
            None => Reply::ok(),
        }
    }

    fn upgrade(&self, release: &str, chart: &str, lock: Option<crate::StateLock>) -> Reply {
        let pending = |history: &Option<Vec<Value>>| {
            (history.as_ref().and_then(|h| h.last()))
                .is_some_and(|last| last["status"].as_str().unwrap_or("").starts_with("pending"))
        };
        let history = self.history_of(release);
        if pending(&history) {
            return Reply::fail(
                1,
                "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n",
            );
        }
        if let Some(values) = self.parsed.value("-f") {
            let mode = std::fs::metadata(values).map(|m| m.permissions().mode() & 0o777);
            if let Ok(mode) = mode {
                std::fs::write(self.dir().join("values-mode"), format!("{mode:o}\n")).unwrap();
            }
            let _ = std::fs::copy(values, self.dir().join("values-seen.yaml"));
            let _ = std::fs::copy(values, self.dir().join(format!("{release}.values.yaml")));
        }
        if chart.starts_with('/') {
            let Ok(bytes) = std::fs::read(chart) else {
                return Reply::fail(1, format!("Error: path \"{chart}\" not found\n"));
            };
            let sum = format!("{}\n", hex(&Sha256::digest(&bytes)));
            std::fs::write(self.dir().join(format!("{release}.chart-sha256")), sum).unwrap();
        }
        let status = match history {
            Some(_) => "pending-upgrade",
            None => "pending-install",
        };
        let description = self.parsed.value("--description").unwrap_or("");
        self.add_revision(release, status, description);
        // The release is pending while Helm works: a run killed now leaves it so.
        drop(lock);
        if self.fake.config.delay_seconds > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(self.fake.config.delay_seconds));
        }
        let _lock = lock_state(self.fake);
        let made =
            match chart.contains("nfs-subdir-external-provisioner-") && chart.ends_with(".tgz") {
                true => self.provisioner_objects(release),
                false => self.chart_objects(),
            };
        if let Err(error) = made.and_then(|objects| self.keep_objects(release, objects)) {
            return Reply::fail(1, format!("Error: UPGRADE FAILED: {error}\n"));
        }
        let mut history = self.history_of(release).unwrap_or_default();
        for revision in &mut history {
            if revision["status"] == "deployed" {
                revision["status"] = json!("superseded");
            }
        }
        if let Some(last) = history.last_mut() {
            last["status"] = json!("deployed");
        }
        self.save_history(release, &history);
        Reply::out(format!(
            "Release \"{release}\" has been upgraded. Happy Helming!\n"
        ))
    }

    /// The value `--set` or `--set-string` gives `key` (the last one),
    /// read as Helm's `pkg/strvals/parser.go` reads them: `\` takes the
    /// next character as it is and an unescaped `,` starts another
    /// KEY=VALUE.
    fn setting(&self, key: &str) -> String {
        let mut pairs = Vec::new();
        for set in
            (self.parsed.values("--set").into_iter()).chain(self.parsed.values("--set-string"))
        {
            pairs.extend(split_set(set));
        }
        (pairs.iter().rev())
            .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
            .unwrap_or("")
            .to_string()
    }

    fn provisioner_objects(&self, release: &str) -> Result<Vec<Value>, String> {
        let namespace = self.namespace();
        let class = self.setting("storageClass.name");
        Ok(vec![
            json!({ "kind": "StorageClass", "apiVersion": "storage.k8s.io/v1", "metadata": { "name": class },
                "provisioner": "cluster.local/nfs-subdir-external-provisioner",
                "parameters": { "archiveOnDelete": self.setting("storageClass.archiveOnDelete") },
                "reclaimPolicy": "Delete" }),
            json!({ "kind": "Deployment", "metadata": { "name": release, "namespace": namespace },
                "spec": { "template": { "spec": { "containers": [{ "name": "nfs-subdir-external-provisioner",
                    "env": [{ "name": "NFS_SERVER", "value": self.setting("nfs.server") },
                            { "name": "NFS_PATH", "value": self.setting("nfs.path") }] }] } } },
                "status": { "replicas": 1, "availableReplicas": 1 } }),
        ])
    }

    fn chart_objects(&self) -> Result<Vec<Value>, String> {
        let mut files: Vec<_> = std::fs::read_dir(self.fake.state.join("chart"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        let mut objects = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
            let mut object: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            object["metadata"]["namespace"] = json!(self.namespace());
            objects.push(object);
        }
        Ok(objects)
    }

    /// Puts the release's objects into the cluster and remembers them.
    fn keep_objects(&self, release: &str, objects: Vec<Value>) -> Result<(), String> {
        let store = Cluster::new(self.fake).store;
        let file = self.dir().join(format!("{release}.objects"));
        let mut kept: Vec<Value> = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        for object in objects {
            store.put(&object)?;
            let entry = json!([
                object["kind"],
                object["metadata"]["namespace"],
                object["metadata"]["name"]
            ]);
            if !kept.contains(&entry) {
                kept.push(entry);
            }
        }
        std::fs::write(file, Value::Array(kept).to_string()).map_err(|e| e.to_string())
    }

    fn rollback(&self, release: &str, revision: &str) -> Reply {
        if self.history_of(release).is_none() {
            return Reply::fail(1, "Error: release: not found\n");
        }
        self.add_revision(release, "deployed", &format!("Rollback to {revision}"));
        Reply::out("Rollback was a success! Happy Helming!\n")
    }

    fn uninstall(&self, release: &str) -> Reply {
        if self.history_of(release).is_none() {
            return Reply::fail(
                1,
                format!("Error: uninstall: Release not loaded: {release}: release: not found\n"),
            );
        }
        // Helm keeps a release's values in its release records, which
        // uninstall deletes (`pkg/action/uninstall.go`).
        let _ = std::fs::remove_file(self.dir().join(format!("{release}.values.yaml")));
        let store = Cluster::new(self.fake).store;
        let file = self.dir().join(format!("{release}.objects"));
        let kept: Vec<Value> = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        for entry in kept {
            let resource = entry[0].as_str().and_then(Resource::of_kind);
            if let (Some(resource), Some(name)) = (resource, entry[2].as_str()) {
                store.delete(resource, entry[1].as_str(), name);
            }
        }
        let _ = std::fs::remove_file(file);
        let _ = std::fs::remove_file(self.dir().join(format!("{release}.json")));
        Reply::out(format!("release \"{release}\" uninstalled\n"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One `--set` argument's KEY=VALUE parts, as strvals splits them.
fn split_set(text: &str) -> Vec<String> {
    let (mut parts, mut part) = (Vec::new(), String::new());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => part.extend(characters.next()),
            ',' => parts.push(std::mem::take(&mut part)),
            other => part.push(other),
        }
    }
    parts.push(part);
    parts
}
