# Fake kubectl for tests/doctor.rs: answers read-only calls from a fixture
# directory of `kubectl get RESOURCE --all-namespaces -o json` lists
# (RESOURCE.json, the first word of a dotted resource name), each file
# looked for in the class's directory first, then in the healthy one.
# `logs/POD.txt` answers `kubectl logs`, `describe.txt` `kubectl describe`; a file `down` in the class's
# directory makes the API refuse every call.
# Each call's arguments are appended to LOG as one JSON line.
# Usage: doctor_kubectl.py FIXTURE HEALTHY LOG ARGS...
import json
import os
import re
import sys

fixture, healthy, log, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with open(log, "a") as handle:
    handle.write(json.dumps(args) + "\n")


def find(name):
    for folder in (fixture, healthy):
        file = os.path.join(folder, name)
        if os.path.exists(file):
            return file
    return None


def items(resource):
    file = find(resource.split(".")[0] + ".json")
    if file is None:
        return []
    with open(file) as handle:
        return json.load(handle)["items"]


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
        if index > 0 and args[index - 1] in ("-n", "-o", "-c", "--tail"):
            continue
        words.append(arg)
    return words


def field(obj, expression):
    value = obj
    for part in re.split(r"(?<!\\)\.", expression.lstrip(".")):
        value = value.get(part.replace("\\.", ".")) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def get(words):
    resource = words[1]
    if len(words) == 2 and "," in resource and option("-o") == "json":
        # Several kinds in one call: one List of them all.
        listed = [o for kind in resource.split(",") for o in items({"pvc": "persistentvolumeclaims"}.get(kind, kind))]
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": listed}))
        return
    if len(words) == 2:
        if option("-o") == "json":
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items(resource)}))
        else:
            for obj in items(resource):
                print("%s/%s" % (resource, obj["metadata"]["name"]))
        return
    namespace = option("-n") or "default"
    plural = {"secret": "secrets", "service": "services", "pod": "pods"}.get(resource, resource)
    found = [o for o in items(plural) if o["metadata"]["name"] == words[2] and o["metadata"].get("namespace", namespace) == namespace]
    if not found:
        if "--ignore-not-found" in args:
            return
        sys.stderr.write('Error from server (NotFound): %s "%s" not found\n' % (resource, words[2]))
        sys.exit(1)
    output = option("-o")
    if output.startswith("jsonpath="):
        sys.stdout.write(re.sub(r"\{([^}]*)\}", lambda m: field(found[0], m.group(1)), output[len("jsonpath="):]))
    else:
        print(json.dumps(found[0]))


def main():
    if os.path.exists(os.path.join(fixture, "down")):
        sys.stderr.write("The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?\n")
        sys.exit(1)
    words = positional()
    verb = words[0] if words else ""
    if verb == "get":
        get(words)
    elif verb == "logs":
        file = find(os.path.join("logs", words[1] + ".txt"))
        if file is None:
            sys.stderr.write('Error from server (BadRequest): previous terminated container not found\n')
            sys.exit(1)
        sys.stdout.write(open(file).read())
    elif verb == "describe":
        file = find("describe.txt")
        sys.stdout.write(open(file).read() if file else "Name: (described by the fake kubectl)\n")
    elif verb == "version":
        print(json.dumps({"clientVersion": {"gitVersion": "v1.29.0"}, "serverVersion": {"gitVersion": "v1.29.0+k3s1"}}))
    else:
        sys.stderr.write("fake kubectl (doctor): not a read-only call %r\n" % args)
        sys.exit(1)


main()
