//! The fake cluster's objects: one JSON file per object under
//! `state/kube/KIND/NAMESPACE/NAME.json` (`_` for cluster-scoped kinds), so
//! that a second run sees what the first applied, and a test can put or
//! read an object directly.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A kind of object the fake API server knows, with the names `kubectl`
/// accepts for it (`kubectl api-resources` of a K3s v1.29 cluster with
/// Istio 1.20's CRDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    pub kind: &'static str,
    pub plural: &'static str,
    pub short: &'static [&'static str],
    /// The API group (`""` for the core group).
    pub group: &'static str,
    pub namespaced: bool,
}

const fn resource(
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    group: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        kind,
        plural,
        short,
        group,
        namespaced,
    }
}

/// The kinds of the fake cluster.
pub const RESOURCES: &[Resource] = &[
    resource("Pod", "pods", &["po"], "", true),
    resource("Service", "services", &["svc"], "", true),
    resource("Secret", "secrets", &[], "", true),
    resource("ConfigMap", "configmaps", &["cm"], "", true),
    resource("Event", "events", &["ev"], "", true),
    resource("ServiceAccount", "serviceaccounts", &["sa"], "", true),
    resource(
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        &["pvc"],
        "",
        true,
    ),
    resource("PersistentVolume", "persistentvolumes", &["pv"], "", false),
    resource("Namespace", "namespaces", &["ns"], "", false),
    resource("Node", "nodes", &["no"], "", false),
    resource("Deployment", "deployments", &["deploy"], "apps", true),
    resource("ReplicaSet", "replicasets", &["rs"], "apps", true),
    resource("StatefulSet", "statefulsets", &["sts"], "apps", true),
    resource("DaemonSet", "daemonsets", &["ds"], "apps", true),
    resource("Job", "jobs", &[], "batch", true),
    resource("CronJob", "cronjobs", &["cj"], "batch", true),
    resource(
        "StorageClass",
        "storageclasses",
        &["sc"],
        "storage.k8s.io",
        false,
    ),
    resource("Gateway", "gateways", &["gw"], "networking.istio.io", true),
    resource(
        "VirtualService",
        "virtualservices",
        &["vs"],
        "networking.istio.io",
        true,
    ),
    resource(
        "DestinationRule",
        "destinationrules",
        &["dr"],
        "networking.istio.io",
        true,
    ),
    resource("Lease", "leases", &[], "coordination.k8s.io", true),
    resource("Role", "roles", &[], "rbac.authorization.k8s.io", true),
    resource(
        "RoleBinding",
        "rolebindings",
        &[],
        "rbac.authorization.k8s.io",
        true,
    ),
    resource(
        "PeerAuthentication",
        "peerauthentications",
        &["pa"],
        "security.istio.io",
        true,
    ),
];

impl Resource {
    /// The resource `name` names: its kind, singular, plural or short name,
    /// optionally followed by its group (`gateways.networking.istio.io`).
    pub fn named(name: &str) -> Option<Resource> {
        let name = name.to_ascii_lowercase();
        RESOURCES.iter().copied().find(|resource| {
            let singular = resource.kind.to_ascii_lowercase();
            let mut names = vec![singular.clone(), resource.plural.to_string()];
            names.extend(resource.short.iter().map(|short| short.to_string()));
            if !resource.group.is_empty() {
                names.push(format!("{}.{}", resource.plural, resource.group));
                names.push(format!("{singular}.{}", resource.group));
            }
            names.contains(&name)
        })
    }

    /// The resource of an object's `kind`.
    pub fn of_kind(kind: &str) -> Option<Resource> {
        RESOURCES
            .iter()
            .copied()
            .find(|resource| resource.kind.eq_ignore_ascii_case(kind))
    }

    /// How `kubectl -o name` and the API's messages name the resource:
    /// `deployment.apps`, `pod`.
    pub fn qualified(&self) -> String {
        let singular = self.kind.to_ascii_lowercase();
        if self.group.is_empty() {
            singular
        } else {
            format!("{singular}.{}", self.group)
        }
    }

    /// The plural with its group, as `Error from server (NotFound)` says it.
    pub fn plural_qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The directory name of the kind in the store.
    fn dir(&self) -> String {
        self.kind.to_ascii_lowercase()
    }
}

/// Objects on disk.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store of the state directory `state`.
    pub fn new(state: &Path) -> Self {
        Self {
            dir: state.join("kube"),
        }
    }

    /// The state directory the store is in (the cluster's).
    pub fn state_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    fn path(&self, resource: Resource, namespace: Option<&str>, name: &str) -> PathBuf {
        let scope = match resource.namespaced {
            true => namespace.unwrap_or("default"),
            false => "_",
        };
        self.dir
            .join(resource.dir())
            .join(scope)
            .join(format!("{name}.json"))
    }

    /// The object, or `None`.
    pub fn get(&self, resource: Resource, namespace: Option<&str>, name: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.path(resource, namespace, name)).ok()?;
        Some(serde_json::from_str(&text).expect("a stored object is JSON"))
    }

    /// Stores `object` (its kind and namespace from its metadata, `default`
    /// when a namespaced object has none); whether it changed.
    pub fn put(&self, object: &Value) -> Result<bool, String> {
        let kind = object["kind"].as_str().ok_or("an object without a kind")?;
        let resource = Resource::of_kind(kind)
            .ok_or_else(|| format!("no matches for kind \"{kind}\" in the fake cluster"))?;
        let name = object["metadata"]["name"]
            .as_str()
            .ok_or("an object without metadata.name")?;
        let namespace = object["metadata"]["namespace"].as_str();
        let before = self.get(resource, namespace, name);
        let path = self.path(resource, namespace, name);
        std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(&path, object.to_string()).map_err(|e| e.to_string())?;
        Ok(before.as_ref() != Some(object))
    }

    /// Removes the object; whether it was there.
    pub fn delete(&self, resource: Resource, namespace: Option<&str>, name: &str) -> bool {
        std::fs::remove_file(self.path(resource, namespace, name)).is_ok()
    }

    /// The objects of `resource` in `namespace` (every namespace: `None`),
    /// sorted by namespace and name.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<Value> {
        let kind_dir = self.dir.join(resource.dir());
        let scopes: Vec<PathBuf> = match (resource.namespaced, namespace) {
            (false, _) => vec![kind_dir.join("_")],
            (true, Some(namespace)) => vec![kind_dir.join(namespace)],
            (true, None) => sorted_entries(&kind_dir),
        };
        let mut objects = Vec::new();
        for scope in scopes {
            let mut files: Vec<PathBuf> = sorted_entries(&scope)
                .into_iter()
                .filter(|file| file.extension().is_some_and(|e| e == "json"))
                .collect();
            // By name, as the API lists them.
            files.sort_by_key(|file| file.file_stem().map(|stem| stem.to_os_string()));
            objects.extend(
                (files.iter())
                    .filter_map(|file| std::fs::read_to_string(file).ok())
                    .map(|text| serde_json::from_str(&text).expect("a stored object is JSON")),
            );
        }
        objects
    }

    /// Removes every object of namespace `namespace` (what deleting the
    /// namespace takes with it).
    pub fn delete_namespaced(&self, namespace: &str) {
        for kind in sorted_entries(&self.dir) {
            let _ = std::fs::remove_dir_all(kind.join(namespace));
        }
    }
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    entries.sort();
    entries
}
