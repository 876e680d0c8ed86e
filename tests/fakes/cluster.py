# Fake kubectl and istioctl for tests/cluster.rs. Objects live as JSON files
# under $STATE/kube/<kind>/<namespace or _>/<name>.json, so a second run sees
# what the first applied. Usage: cluster.py STATE (kubectl|istioctl) ARGS...
#
# What the cluster does is computed when it is read:
# - a PVC is Bound when its StorageClass exists, else Pending for ever;
# - a pod of $STATE/pods.json that mounts a PVC that is not Bound is
#   Pending, unschedulable, as the scheduler leaves it;
# - a Job runs one pod whose container exits with the Job's annotation
#   `fake.stackinstall/exit-code` (0 by default) and prints
#   `fake.stackinstall/log`. In a namespace with sidecar injection,
#   istio-proxy is a native sidecar when istiod's environment has
#   ENABLE_NATIVE_SIDECARS=true (the pod finishes, the Job is Complete or
#   Failed), else an ordinary container that keeps the pod Running and the
#   Job active for ever.
import json
import os
import re
import sys

import yaml

state, program, args = sys.argv[1], sys.argv[2], sys.argv[3:]
store = os.path.join(state, "kube")
CLUSTER_SCOPED = {"namespace", "node", "storageclass"}
ALIASES = {"pvc": "persistentvolumeclaim", "jobs": "job", "pods": "pod", "storageclasses": "storageclass"}
KINDS = {"pod": "Pod", "job": "Job", "persistentvolumeclaim": "PersistentVolumeClaim"}
EXIT_CODE = "fake.stackinstall/exit-code"
LOG = "fake.stackinstall/log"


def path(kind, namespace, name):
    kind = ALIASES.get(kind, kind)
    scope = "_" if kind in CLUSTER_SCOPED else (namespace or "default")
    return os.path.join(store, kind, scope, name + ".json")


def load(kind, namespace, name):
    file = path(kind, namespace, name)
    if not os.path.exists(file):
        return None
    with open(file) as handle:
        return json.load(handle)


def save(obj):
    kind = obj["kind"].lower()
    file = path(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
    os.makedirs(os.path.dirname(file), exist_ok=True)
    before = load(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
    with open(file, "w") as handle:
        json.dump(obj, handle)
    return "unchanged" if before == obj else "configured"


def option(flag):
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def positional():
    words = []
    for index, arg in enumerate(args):
        if arg.startswith("-"):
            continue
        if index > 0 and args[index - 1] in ("-n", "-o", "-f"):
            continue
        words.append(arg)
    return words


def stored(kind, namespace):
    folder = os.path.dirname(path(kind, namespace, "x"))
    names = sorted(n[:-5] for n in os.listdir(folder)) if os.path.isdir(folder) else []
    return [load(kind, namespace, name) for name in names]


def claim_status(claim):
    class_name = claim.get("spec", {}).get("storageClassName")
    bound = bool(class_name) and load("storageclass", None, class_name) is not None
    claim["status"] = {"phase": "Bound" if bound else "Pending"}
    return claim


def native_sidecars():
    istiod = load("deployment", "istio-system", "istiod") or {}
    containers = istiod.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    return any(v.get("name") == "ENABLE_NATIVE_SIDECARS" and v.get("value") == "true"
               for c in containers for v in c.get("env", []))


def injected(namespace):
    labels = (load("namespace", None, namespace) or {}).get("metadata", {}).get("labels", {})
    return labels.get("istio-injection") == "enabled"


def job_run(job):
    """The Job with its status, and its one pod."""
    name, namespace = job["metadata"]["name"], job["metadata"].get("namespace", "default")
    code = int(job["metadata"].get("annotations", {}).get(EXIT_CODE, "0"))
    app = {"name": name, "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}}
    finished = not injected(namespace) or native_sidecars()
    status = {"containerStatuses": [app]}
    if injected(namespace) and finished:
        status["initContainerStatuses"] = [{"name": "istio-proxy", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
    elif injected(namespace):
        status["containerStatuses"].append({"name": "istio-proxy", "state": {"running": {}}})
    status["phase"] = ("Succeeded" if code == 0 else "Failed") if finished else "Running"
    status["conditions"] = [{"type": "Ready", "status": "False"}]
    metadata = {"name": name + "-fake0", "namespace": namespace, "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"job-name": name}, "ownerReferences": [{"kind": "Job", "name": name}]}
    pod = {"kind": "Pod", "metadata": metadata, "status": status}
    if not finished:
        job["status"] = {"active": 1}
    elif code == 0:
        job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    else:
        job["status"] = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                      "message": "Job has reached the specified backoff limit"}]}
    return job, pod


def pods(namespace):
    file = os.path.join(state, "pods.json")
    listed = json.load(open(file))["items"] if os.path.exists(file) else []
    for pod in listed:
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod.get("spec", {}).get("volumes", [])
                  if "persistentVolumeClaim" in v]
        unbound = [c for c in claims
                   if load("persistentvolumeclaim", namespace, c) is None
                   or claim_status(load("persistentvolumeclaim", namespace, c))["status"]["phase"] != "Bound"]
        if unbound:
            message = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
            pod["status"] = {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}
    return listed + [job_run(job)[1] for job in stored("job", namespace)]


def listing(kind, namespace):
    if kind == "pod":
        return pods(namespace)
    if kind == "job":
        return [job_run(job)[0] for job in stored("job", namespace)]
    if kind == "persistentvolumeclaim":
        return [claim_status(claim) for claim in stored(kind, namespace)]
    return stored(kind, namespace)


def cluster_up():
    return os.path.exists(os.path.join(state, "k3s-running"))


def refuse():
    sys.stderr.write("The connection to the server 127.0.0.1:6443 was refused\n")
    sys.exit(1)


def field(obj, expression):
    value = obj
    for part in re.split(r"(?<!\\)\.", expression.lstrip(".")):
        part = part.replace("\\.", ".")
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def jsonpath(obj, template):
    # Each {.a.b} replaced by its value; the text between is kept.
    return re.sub(r"\{([^}]*)\}", lambda m: field(obj, m.group(1)), template)


def kubectl():
    words = positional()
    verb = words[0]
    if verb == "version":
        minor_file = os.path.join(state, "k8s-minor")
        minor = open(minor_file).read().strip() if os.path.exists(minor_file) else "29"
        if not cluster_up():
            refuse()
        print(json.dumps({"serverVersion": {"major": "1", "minor": minor, "gitVersion": "v1.%s.0+k3s1" % minor}}))
    elif not cluster_up():
        refuse()
    elif verb == "get" and words[1] == "nodes":
        ready = {"type": "Ready", "status": "True"}
        print(json.dumps({"items": [{"metadata": {"name": "node1"}, "status": {"conditions": [ready]}}]}))
    elif verb == "get" and len(words) == 2 and "," in words[1] and option("-o") == "json":
        # Several kinds at once: one List, each item with its kind.
        items = []
        for asked in words[1].split(","):
            kind = ALIASES.get(asked, asked)
            for obj in listing(kind, option("-n") or "default"):
                items.append(dict(obj, kind=obj.get("kind", KINDS.get(kind, kind))))
        print(json.dumps({"kind": "List", "items": items}))
    elif verb == "get" and len(words) == 2 and option("-o") == "json":
        kind = ALIASES.get(words[1], words[1])
        print(json.dumps({"items": listing(kind, option("-n") or "default")}))
    elif verb == "get" and "/" in words[1]:
        # KIND/NAME ...: the ones found, as one List (kubectl prints a List
        # for several names even when one or none is found).
        items = []
        for asked in words[1:]:
            kind, name = asked.split("/", 1)
            obj = load(kind, option("-n"), name)
            if obj is None and "--ignore-not-found" not in args:
                sys.stderr.write('Error from server (NotFound): "%s" not found\n' % name)
                sys.exit(1)
            if obj is not None:
                items.append(obj)
        print(json.dumps({"kind": "List", "items": items}))
    elif verb == "logs":
        job = load("job", option("-n"), words[1][:-len("-fake0")]) if words[1].endswith("-fake0") else None
        if job is None:
            sys.stderr.write('Error from server (NotFound): pods "%s" not found\n' % words[1])
            sys.exit(1)
        print(job["metadata"].get("annotations", {}).get(LOG, ""))
    elif verb == "get" and len(words) == 2:
        kind = ALIASES.get(words[1], words[1])
        folder = os.path.dirname(path(kind, option("-n"), "x"))
        names = sorted(n[:-5] for n in os.listdir(folder)) if os.path.isdir(folder) else []
        for name in names:
            print("%s/%s" % (kind, name))
    elif verb == "get":
        obj = load(words[1], option("-n"), words[2])
        if obj is not None and ALIASES.get(words[1], words[1]) == "persistentvolumeclaim":
            obj = claim_status(obj)
        if obj is None:
            if "--ignore-not-found" in args:
                return
            sys.stderr.write('Error from server (NotFound): "%s" not found\n' % words[2])
            sys.exit(1)
        output = option("-o")
        if output == "json":
            print(json.dumps(obj))
        elif output.startswith("jsonpath="):
            sys.stdout.write(jsonpath(obj, output[len("jsonpath="):]))
    elif verb == "apply":
        for document in yaml.safe_load_all(sys.stdin.read()):
            if document:
                print("%s/%s %s" % (document["kind"].lower(), document["metadata"]["name"], save(document)))
    elif verb == "rollout":
        print('deployment "istiod" successfully rolled out')
    elif verb == "delete":
        if os.path.exists(os.path.join(state, "fail-delete-" + words[1])):
            sys.stderr.write('Error from server (Forbidden): %s "%s" is forbidden\n' % (words[1], words[2]))
            sys.exit(1)
        file = path(words[1], option("-n"), words[2])
        if os.path.exists(file):
            os.remove(file)
        # The API server goes down right after this delete (a test marker).
        down = os.path.join(state, "down-after-delete")
        if os.path.exists(down):
            os.remove(down)
            os.remove(os.path.join(state, "k3s-running"))
    else:
        sys.stderr.write("fake kubectl: unknown call %r\n" % args)
        sys.exit(1)


def istioctl():
    if args[0] == "version":
        print("1.20.3")
    elif args[0] == "install":
        if not cluster_up():
            refuse()
        with open(option("-f")) as handle:
            overlay = yaml.safe_load(handle)
        gateway = overlay["spec"]["components"]["ingressGateways"][0]["k8s"]["service"]
        metadata = {"name": "istiod", "namespace": "istio-system"}
        pilot_env = ((overlay["spec"].get("values") or {}).get("pilot") or {}).get("env") or {}
        env = [{"name": name, "value": str(value)} for name, value in sorted(pilot_env.items())]
        template = {"spec": {"containers": [{"name": "discovery", "env": env}]}}
        save({"kind": "Deployment", "metadata": metadata, "spec": {"template": template}, "status": {"readyReplicas": 1}})
        metadata = {"name": "istio-ingressgateway", "namespace": "istio-system"}
        save({"kind": "Service", "metadata": metadata, "spec": {"type": gateway["type"], "ports": gateway["ports"]}})
        print("Installation complete")
    elif args[0] == "uninstall":
        for kind in ("deployment", "service"):
            folder = os.path.join(store, kind, "istio-system")
            for name in os.listdir(folder) if os.path.isdir(folder) else []:
                os.remove(os.path.join(folder, name))
        print("Istio uninstalled")
    else:
        sys.stderr.write("fake istioctl: unknown call %r\n" % args)
        sys.exit(1)


kubectl() if program == "kubectl" else istioctl()
