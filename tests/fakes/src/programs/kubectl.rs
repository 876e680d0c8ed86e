//! `kubectl` against the fake cluster (see `cluster.rs`), modelled on
//! kubectl 1.29 (kubernetes/kubectl `pkg/cmd/{get,apply,delete,logs,
//! describe,rollout,wait,version}`): the verbs and flags stackinstall and
//! doctor use, with kubectl's messages for an unknown flag or command, an
//! unknown resource type, an object that is not there and an API server
//! that does not answer.
//!
//! `get` prints one object for one name asked (`get pod x`, `get pod/x`),
//! a List otherwise; `apply -f -` reads YAML or JSON documents (a `List`
//! too) on stdin; deleting a namespace deletes what is in it.

use serde_json::{Value, json};

use super::cluster::Cluster;
use crate::flags::{self, Parsed, Refused, Spec};
use crate::store::Resource;
use crate::{Fake, Reply};

/// What kubectl prints when nothing listens on the API server's port.
pub const REFUSED: &str = "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?\n";

/// What client-go's cached discovery (`k8s.io/client-go/discovery/cached/
/// memory/memcache.go`) logs through klog before that, once per attempt,
/// for the verbs that map resource names (get, apply, delete, describe,
/// wait, rollout): kubectl 1.29 with the API server down prints five such
/// lines, then `REFUSED`.
fn discovery_warnings() -> String {
    let line = "E1206 04:20:00.000000    4242 memcache.go:265] couldn't get current server API group list: Get \"https://127.0.0.1:6443/api?timeout=32s\": dial tcp 127.0.0.1:6443: connect: connection refused\n";
    line.repeat(5)
}

const GLOBAL_VALUES: &[&[&str]] = &[
    &["-n", "--namespace"],
    &["--kubeconfig"],
    &["--context"],
    &["--request-timeout"],
];

const VERBS: &[&str] = &[
    "get", "apply", "delete", "logs", "describe", "rollout", "wait", "version", "cordon", "drain",
    "create",
];

pub fn run(fake: &Fake) -> Reply {
    let Some(verb) = fake.args.iter().find(|arg| !arg.starts_with('-')) else {
        return Reply::out("kubectl controls the Kubernetes cluster manager.\n");
    };
    if !VERBS.contains(&verb.as_str()) {
        return Reply::fail(
            1,
            format!(
                "error: unknown command \"{verb}\" for \"kubectl\"\n\nDid you mean this?\n\tget\n"
            ),
        );
    }
    let (values, switches): (Vec<&[&str]>, Vec<&[&str]>) = match verb.as_str() {
        "get" => (
            vec![
                &["-o", "--output"],
                &["-l", "--selector"],
                &["--sort-by"],
                &["--field-selector"],
            ],
            vec![
                &["-A", "--all-namespaces"],
                &["--ignore-not-found"],
                &["--no-headers"],
                &["--show-labels"],
            ],
        ),
        "apply" => (
            vec![&["-f", "--filename"], &["--field-manager"], &["--dry-run"]],
            vec![&["--server-side"], &["--force-conflicts"]],
        ),
        "delete" => (
            vec![&["--timeout"], &["--grace-period"], &["-l", "--selector"]],
            vec![&["--ignore-not-found"], &["--wait"], &["--now"]],
        ),
        "logs" => (
            vec![&["-c", "--container"], &["--tail"]],
            vec![
                &["-p", "--previous"],
                &["--all-containers"],
                &["-f", "--follow"],
            ],
        ),
        "describe" => (
            vec![&["-l", "--selector"]],
            vec![&["-A", "--all-namespaces"]],
        ),
        "rollout" => (vec![&["--timeout"]], vec![&["-w", "--watch"]]),
        "cordon" => (vec![], vec![]),
        "create" => (vec![&["-f", "--filename"], &["--duration"]], vec![]),
        "drain" => (
            vec![&["--timeout"], &["--grace-period"]],
            vec![
                &["--ignore-daemonsets"],
                &["--delete-emptydir-data"],
                &["--force"],
            ],
        ),
        "wait" => (vec![&["--for"], &["--timeout"]], vec![&["--all"]]),
        _ => (vec![&["-o", "--output"]], vec![&["--client"]]),
    };
    let values: Vec<&[&str]> = GLOBAL_VALUES.iter().copied().chain(values).collect();
    let spec = Spec {
        values: &values,
        switches: &switches,
    };
    let parsed = match flags::parse(&fake.args, &spec) {
        Ok(parsed) => parsed,
        Err(refused) => return refuse_flag(verb, refused),
    };
    let words: Vec<&str> = parsed
        .positional
        .iter()
        .skip(1)
        .map(String::as_str)
        .collect();
    let cluster = Cluster::new(fake);
    if verb == "version" {
        return version(fake, &cluster, &parsed);
    }
    match super::members::remote_access(fake) {
        Some(Err(refused)) => return Reply::fail(1, refused),
        Some(Ok(())) => {}
        None if !cluster.up() => {
            return Reply::fail(1, format!("{}{REFUSED}", discovery_warnings()));
        }
        None => {}
    }
    let namespace = parsed.value("-n").unwrap_or("default");
    match verb.as_str() {
        "get" => get(&cluster, &parsed, &words, namespace),
        "apply" => apply(fake, &cluster, &parsed, namespace),
        "delete" => delete(&cluster, &parsed, &words, namespace),
        "logs" => logs(&cluster, &parsed, &words, namespace),
        "describe" => describe(fake, &cluster, &words, namespace),
        "rollout" => rollout(&cluster, &words, namespace),
        "cordon" | "drain" => cordon(&cluster, verb, &words),
        "create" => create(fake, &cluster, &parsed, &words, namespace),
        _ => wait(&cluster, &parsed, &words, namespace),
    }
}

fn refuse_flag(verb: &str, refused: Refused) -> Reply {
    let what = match refused {
        Refused::Unknown(flag) => format!("unknown flag: {flag}"),
        Refused::Shorthand(letter, word) => format!("unknown shorthand flag: '{letter}' in {word}"),
        Refused::MissingValue(flag) => format!("flag needs an argument: {flag}"),
    };
    Reply::fail(
        1,
        format!("error: {what}\nSee 'kubectl {verb} --help' for usage.\n"),
    )
}

fn no_resource_type(name: &str) -> Reply {
    Reply::fail(
        1,
        format!("error: the server doesn't have a resource type \"{name}\"\n"),
    )
}

fn not_found(resource: Resource, name: &str) -> String {
    format!(
        "Error from server (NotFound): {} \"{name}\" not found\n",
        resource.plural_qualified()
    )
}

/// The resource types of `TYPE[,TYPE...]`; `all` is the workloads and
/// services, as kubectl's `all` category.
fn resources(types: &str) -> Result<Vec<Resource>, Reply> {
    let mut found = Vec::new();
    for name in types.split(',') {
        if name == "all" {
            for kind in [
                "Pod",
                "Service",
                "DaemonSet",
                "Deployment",
                "ReplicaSet",
                "StatefulSet",
                "Job",
                "CronJob",
            ] {
                found.push(Resource::of_kind(kind).unwrap());
            }
            continue;
        }
        found.push(Resource::named(name).ok_or_else(|| no_resource_type(name))?);
    }
    Ok(found)
}

/// The objects named by `words` (`TYPE NAME...` or `TYPE/NAME...`), or
/// `None` for a listing (`TYPE[,TYPE]`).
fn named(words: &[&str]) -> Result<Option<Vec<(Resource, String)>>, Reply> {
    match words {
        [] => Err(Reply::fail(
            1,
            "error: you must specify the type of resource to get\n",
        )),
        [first, ..] if first.contains('/') => {
            let mut objects = Vec::new();
            for word in words {
                let Some((kind, name)) = word.split_once('/') else {
                    return Err(Reply::fail(
                        1,
                        "error: there is no need to specify a resource type as a separate argument when passing arguments in resource/name form\n",
                    ));
                };
                let resource = Resource::named(kind).ok_or_else(|| no_resource_type(kind))?;
                objects.push((resource, name.to_string()));
            }
            Ok(Some(objects))
        }
        [_] => Ok(None),
        [types, names @ ..] => {
            let resources = resources(types)?;
            if resources.len() != 1 {
                return Err(Reply::fail(
                    1,
                    "error: arguments in resource/name form must have a single resource and name\n",
                ));
            }
            Ok(Some(
                names
                    .iter()
                    .map(|name| (resources[0], name.to_string()))
                    .collect(),
            ))
        }
    }
}

fn scope(resource: Resource, namespace: &str) -> Option<&str> {
    resource.namespaced.then_some(namespace)
}

/// The object with its `kind` (and `apiVersion`) set, as a List's items are.
fn with_kind(resource: Resource, mut object: Value) -> Value {
    object["kind"] = json!(resource.kind);
    if object.get("apiVersion").is_none() {
        let version = match resource.group {
            "" => "v1".to_string(),
            "networking.istio.io" | "security.istio.io" => format!("{}/v1beta1", resource.group),
            group => format!("{group}/v1"),
        };
        object["apiVersion"] = json!(version);
    }
    object
}

fn list(items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "items": items, "kind": "List", "metadata": { "resourceVersion": "" } })
}

fn get(cluster: &Cluster, parsed: &Parsed, words: &[&str], namespace: &str) -> Reply {
    let all_namespaces = parsed.switch("-A");
    let ignore = parsed.switch("--ignore-not-found");
    let output = parsed.value("-o").unwrap_or("");
    let objects = match named(words) {
        Ok(objects) => objects,
        Err(reply) => return reply,
    };
    let (found, single) = match objects {
        None => {
            let resources = match resources(words[0]) {
                Ok(resources) => resources,
                Err(reply) => return reply,
            };
            let mut found = Vec::new();
            for resource in resources {
                let listed = match all_namespaces {
                    true => cluster.list(resource, None),
                    false => cluster.list(resource, scope(resource, namespace)),
                };
                found.extend(
                    listed
                        .into_iter()
                        .map(|o| (resource, with_kind(resource, o))),
                );
            }
            (found, false)
        }
        Some(objects) => {
            let single = objects.len() == 1;
            let mut found = Vec::new();
            let mut missing = String::new();
            for (resource, name) in objects {
                match cluster.get(resource, scope(resource, namespace), &name) {
                    Some(object) => found.push((resource, with_kind(resource, object))),
                    None if ignore => {}
                    None => missing.push_str(&not_found(resource, &name)),
                }
            }
            if !missing.is_empty() {
                let mut reply = print(found, false, output);
                reply.stderr = missing;
                reply.code = 1;
                return reply;
            }
            if single && found.is_empty() {
                return Reply::ok();
            }
            (found, single)
        }
    };
    if found.is_empty() && !output.starts_with("json") && output != "name" {
        let place = match all_namespaces {
            true => String::new(),
            false => format!(" in {namespace} namespace"),
        };
        return Reply::fail(0, format!("No resources found{place}.\n"));
    }
    print(found, single, output)
}

/// What a non-table printer prints: one object, or several as a List's
/// items (kubectl's `get`).
fn root(found: &[(Resource, Value)], single: bool) -> Value {
    match single {
        true => found.first().map(|(_, o)| o.clone()).unwrap_or(Value::Null),
        false => list(found.iter().map(|(_, o)| o.clone()).collect()),
    }
}

fn print(found: Vec<(Resource, Value)>, single: bool, output: &str) -> Reply {
    if output == "json" {
        return Reply::out(format!(
            "{}\n",
            serde_json::to_string_pretty(&root(&found, single)).unwrap()
        ));
    }
    if output == "name" {
        return Reply::out(
            found
                .iter()
                .map(|(r, o)| format!("{}/{}\n", r.qualified(), name_of(o)))
                .collect::<String>(),
        );
    }
    if let Some(template) = output.strip_prefix("jsonpath=") {
        return match super::jsonpath::render(&root(&found, single), template) {
            Ok(text) => Reply::out(text),
            Err(error) => Reply::fail(1, error),
        };
    }
    if !output.is_empty() && output != "wide" {
        return Reply::fail(
            1,
            format!(
                "error: unable to match a printer suitable for the output format \"{output}\", allowed formats are: json,jsonpath,name,wide\n"
            ),
        );
    }
    let mut text = String::from("NAME\n");
    for (resource, object) in &found {
        text.push_str(&format!("{}/{}\n", resource.qualified(), name_of(object)));
    }
    Reply::out(text)
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn apply(fake: &Fake, cluster: &Cluster, parsed: &Parsed, namespace: &str) -> Reply {
    if parsed.value("-f") != Some("-") {
        return Reply::fail(
            1,
            "error: this fake applies manifests from stdin only (-f -)\n",
        );
    }
    let server_side = parsed.switch("--server-side");
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&fake.stdin_text()) {
        match <Value as serde::Deserialize>::deserialize(document) {
            Ok(Value::Null) => {}
            Ok(object) if object["kind"] == "List" => {
                documents.extend(object["items"].as_array().cloned().unwrap_or_default())
            }
            Ok(object) => documents.push(object),
            Err(error) => {
                return Reply::fail(
                    1,
                    format!("error: error parsing STDIN: error converting YAML to JSON: {error}\n"),
                );
            }
        }
    }
    let mut reply = Reply::ok();
    for mut object in documents {
        let kind = object["kind"].as_str().unwrap_or("").to_string();
        let Some(resource) = Resource::of_kind(&kind) else {
            return Reply::fail(
                1,
                format!(
                    "error: resource mapping not found for name: \"{}\" namespace: \"\" from \"STDIN\": no matches for kind \"{kind}\"\nensure CRDs are installed first\n",
                    name_of(&object)
                ),
            );
        };
        if resource.namespaced && object["metadata"]["namespace"].is_null() {
            object["metadata"]["namespace"] = json!(namespace);
        }
        let existed = cluster
            .store
            .get(
                resource,
                object["metadata"]["namespace"].as_str(),
                name_of(&object),
            )
            .is_some();
        let changed = match cluster.store.put(&object) {
            Ok(changed) => changed,
            Err(error) => return Reply::fail(1, format!("error: {error}\n")),
        };
        let what = match (server_side, existed, changed) {
            (true, _, _) => "serverside-applied",
            (false, false, _) => "created",
            (false, true, true) => "configured",
            (false, true, false) => "unchanged",
        };
        reply.stdout.push_str(&format!(
            "{}/{} {what}\n",
            resource.qualified(),
            name_of(&object)
        ));
    }
    reply
}

fn delete(cluster: &Cluster, parsed: &Parsed, words: &[&str], namespace: &str) -> Reply {
    let objects = match named(words) {
        Ok(Some(objects)) => objects,
        Ok(None) => {
            return Reply::fail(
                1,
                "error: resource(s) were provided, but no name was specified\n",
            );
        }
        Err(reply) => return reply,
    };
    let mut reply = Reply::ok();
    for (resource, name) in objects {
        let scope = scope(resource, namespace);
        if resource.kind == "Node"
            && let Err(error) = super::members::may_delete(&cluster.store, &name)
        {
            reply.stderr.push_str(&format!(
                "Error from server (InternalError): nodes \"{name}\": {error}\n"
            ));
            reply.code = 1;
            continue;
        }
        if cluster.store.delete(resource, scope, &name) {
            if resource.kind == "Namespace" {
                cluster.store.delete_namespaced(&name);
            }
            reply
                .stdout
                .push_str(&format!("{} \"{name}\" deleted\n", resource.qualified()));
        } else if !parsed.switch("--ignore-not-found") {
            reply.stderr.push_str(&not_found(resource, &name));
            reply.code = 1;
        }
    }
    reply
}

fn logs(cluster: &Cluster, parsed: &Parsed, words: &[&str], namespace: &str) -> Reply {
    let [pod] = words else {
        return Reply::fail(
            1,
            "error: expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'.\n",
        );
    };
    let pod = match pod.strip_prefix("job/") {
        Some(job) => format!("{job}-fake0"),
        None => pod.strip_prefix("pod/").unwrap_or(pod).to_string(),
    };
    let Some(log) = cluster.log(namespace, &pod) else {
        return Reply::fail(
            1,
            format!("Error from server (NotFound): pods \"{pod}\" not found\n"),
        );
    };
    let text = match (log, parsed.switch("-p")) {
        (Some(text), _) => text,
        (None, true) => {
            let container = parsed.value("-c").unwrap_or("");
            return Reply::fail(
                1,
                format!(
                    "Error from server (BadRequest): previous terminated container \"{container}\" in pod \"{pod}\" not found\n"
                ),
            );
        }
        (None, false) => String::new(),
    };
    let tail: Option<usize> = parsed
        .value("--tail")
        .and_then(|n| n.parse().ok())
        .filter(|n: &usize| *n > 0);
    let lines: Vec<&str> = text.lines().collect();
    let shown = match tail {
        Some(n) => &lines[lines.len().saturating_sub(n)..],
        None => &lines[..],
    };
    Reply::out(
        shown
            .iter()
            .map(|line| format!("{line}\n"))
            .collect::<String>(),
    )
}

fn describe(fake: &Fake, cluster: &Cluster, words: &[&str], namespace: &str) -> Reply {
    let Some(types) = words.first() else {
        return Reply::fail(
            1,
            "error: You must specify the type of resource to describe.\n",
        );
    };
    if let Ok(text) = std::fs::read_to_string(fake.state.join("describe.txt")) {
        return Reply::out(text);
    }
    let resources = match resources(types) {
        Ok(resources) => resources,
        Err(reply) => return reply,
    };
    let mut text = String::new();
    for resource in resources {
        for object in cluster.list(resource, scope(resource, namespace)) {
            text.push_str(&format!("Name:         {}\n", name_of(&object)));
            if let Some(namespace) = object["metadata"]["namespace"].as_str() {
                text.push_str(&format!("Namespace:    {namespace}\n"));
            }
            text.push('\n');
        }
    }
    Reply::out(text)
}

fn rollout(cluster: &Cluster, words: &[&str], namespace: &str) -> Reply {
    let ["status", object] = words else {
        return Reply::fail(
            1,
            "error: this fake knows `rollout status TYPE/NAME` only\n",
        );
    };
    let Some((kind, name)) = object.split_once('/') else {
        return Reply::fail(1, "error: rollout status requires a TYPE/NAME argument\n");
    };
    let Some(resource) = Resource::named(kind) else {
        return no_resource_type(kind);
    };
    match cluster.get(resource, scope(resource, namespace), name) {
        None => Reply::fail(1, not_found(resource, name)),
        Some(object) if object["status"]["readyReplicas"].as_u64().unwrap_or(0) > 0 => {
            Reply::out(format!(
                "{} \"{name}\" successfully rolled out\n",
                resource.kind.to_ascii_lowercase()
            ))
        }
        Some(_) => Reply::fail(
            1,
            format!(
                "error: {} \"{name}\" exceeded its progress deadline\n",
                resource.kind.to_ascii_lowercase()
            ),
        ),
    }
}

fn wait(cluster: &Cluster, parsed: &Parsed, words: &[&str], namespace: &str) -> Reply {
    let Some(condition) = parsed.value("--for") else {
        return Reply::fail(1, "error: --for must be specified\n");
    };
    let objects = match named(words) {
        Ok(Some(objects)) => objects,
        Ok(None) => return Reply::fail(1, "error: resource name must be specified\n"),
        Err(reply) => return reply,
    };
    let mut reply = Reply::ok();
    for (resource, name) in objects {
        let object = cluster.get(resource, scope(resource, namespace), &name);
        let met = match (condition, &object) {
            ("delete", found) => found.is_none(),
            (_, None) => {
                return Reply::fail(1, not_found(resource, &name));
            }
            (condition, Some(object)) => {
                let wanted = condition.strip_prefix("condition=").unwrap_or(condition);
                let (kind, value) = wanted.split_once('=').unwrap_or((wanted, "True"));
                (object["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten())
                .any(|c| {
                    c["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(kind))
                        && c["status"]
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(value))
                })
            }
        };
        let shown = format!("{}/{name}", resource.qualified());
        if !met {
            return Reply::fail(
                1,
                format!("error: timed out waiting for the condition on {shown}\n"),
            );
        }
        reply.stdout.push_str(&format!("{shown} condition met\n"));
    }
    reply
}

fn version(fake: &Fake, cluster: &Cluster, parsed: &Parsed) -> Reply {
    let minor = fake.config.kubernetes_minor;
    let client = json!({ "major": "1", "minor": "29", "gitVersion": "v1.29.0+k3s1", "platform": "linux/amd64" });
    let server = json!({ "major": "1", "minor": minor.to_string(),
        "gitVersion": format!("v1.{minor}.0+k3s1"), "platform": "linux/amd64" });
    let json_output = parsed.value("-o") == Some("json");
    if parsed.switch("--client") {
        return Reply::out(match json_output {
            true => format!("{}\n", json!({ "clientVersion": client })),
            false => "Client Version: v1.29.0+k3s1\n".into(),
        });
    }
    if !cluster.up() {
        let mut reply = Reply::fail(1, REFUSED);
        reply.stdout = match json_output {
            true => format!("{}\n", json!({ "clientVersion": client })),
            false => "Client Version: v1.29.0+k3s1\n".into(),
        };
        return reply;
    }
    Reply::out(match json_output {
        true => format!(
            "{}\n",
            serde_json::to_string_pretty(
                &json!({ "clientVersion": client, "serverVersion": server })
            )
            .unwrap()
        ),
        false => format!("Client Version: v1.29.0+k3s1\nServer Version: v1.{minor}.0+k3s1\n"),
    })
}

/// `kubectl cordon NODE` (marks it unschedulable) and `kubectl drain NODE`
/// (cordons it, then evicts its pods: the fake's pods run on no node, so
/// there is nothing to evict; `pkg/drain`), refused for a node that is
/// not there.
fn cordon(cluster: &Cluster, verb: &str, words: &[&str]) -> Reply {
    let [name] = words else {
        return Reply::fail(1, format!("error: USAGE: {verb} NODE [flags]\n"));
    };
    let nodes = Resource::of_kind("Node").unwrap();
    let Some(mut node) = cluster.store.get(nodes, None, name) else {
        return Reply::fail(1, not_found(nodes, name));
    };
    let already = node["spec"]["unschedulable"] == true;
    node["spec"]["unschedulable"] = json!(true);
    if let Err(error) = cluster.store.put(&node) {
        return Reply::fail(1, format!("error: {error}\n"));
    }
    let mut text = match already {
        true => format!("node/{name} already cordoned\n"),
        false => format!("node/{name} cordoned\n"),
    };
    if verb == "drain" {
        text.push_str(&format!("node/{name} drained\n"));
    }
    Reply::out(text)
}

/// `kubectl create -f -` (one object from stdin, refused when it exists:
/// `AlreadyExists`, the API's answer to a create, which makes a create a
/// lock) and `kubectl create token SA [--duration D]` (a ServiceAccount
/// token, `kubectl create token`, Kubernetes 1.24+'s TokenRequest).
fn create(
    fake: &Fake,
    cluster: &Cluster,
    parsed: &Parsed,
    words: &[&str],
    namespace: &str,
) -> Reply {
    if let ["token", account] = words {
        if cluster
            .store
            .get(
                Resource::of_kind("ServiceAccount").unwrap(),
                Some(namespace),
                account,
            )
            .is_none()
        {
            return Reply::fail(
                1,
                format!("error: failed to create token: serviceaccounts \"{account}\" not found\n"),
            );
        }
        let token = super::members::issue_account_token(fake, namespace, account);
        return Reply::out(format!("{token}\n"));
    }
    if parsed.value("-f") != Some("-") {
        return Reply::fail(1, "error: this fake creates from stdin only (-f -)\n");
    }
    let object: Value = match serde_yaml_ng::from_str(&fake.stdin_text()) {
        Ok(object) => object,
        Err(error) => return Reply::fail(1, format!("error: error parsing STDIN: {error}\n")),
    };
    let kind = object["kind"].as_str().unwrap_or("");
    let Some(resource) = Resource::of_kind(kind) else {
        return Reply::fail(1, format!("error: no matches for kind \"{kind}\"\n"));
    };
    let mut object = object;
    if resource.namespaced && object["metadata"]["namespace"].is_null() {
        object["metadata"]["namespace"] = json!(namespace);
    }
    let name = name_of(&object).to_string();
    if cluster
        .store
        .get(resource, object["metadata"]["namespace"].as_str(), &name)
        .is_some()
    {
        return Reply::fail(
            1,
            format!(
                "Error from server (AlreadyExists): error when creating \"STDIN\": {} \"{name}\" already exists\n",
                resource.plural_qualified()
            ),
        );
    }
    if let Err(error) = cluster.store.put(&object) {
        return Reply::fail(1, format!("error: {error}\n"));
    }
    Reply::out(format!("{}/{name} created\n", resource.qualified()))
}
