# A quick `rabbitmqctl` for the kill tests: the commands the rabbitmq step
# uses, done through the management API of the real RabbitMQ the test
# command runs (as `guest`, which may log in from loopback), so the
# passwords land in the real server without starting an Erlang VM per call.
# Usage: rabbitmqctl.py MANAGEMENT_PORT ARGS... (a password or definitions
# on stdin).
import base64
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

port, args = sys.argv[1], [a for a in sys.argv[2:] if a not in ("--silent", "--quiet", "-q")]
if "--formatter" in args:
    index = args.index("--formatter")
    del args[index:index + 2]


def api(method, path, body=None):
    request = urllib.request.Request(
        "http://127.0.0.1:%s/api/%s" % (port, path),
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json",
                 "authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        sys.stderr.write("Error: %s %s: %s\n" % (method, path, error.read().decode()))
        sys.exit(70)


def quoted(name):
    return urllib.parse.quote(name, safe="")


def tags(user):
    value = user.get("tags", [])
    return value if isinstance(value, list) else [t for t in value.split(",") if t]


def password():
    return sys.stdin.read().rstrip("\n")


command = args[0]
if command == "await_startup":
    api("GET", "overview")
elif command == "list_users":
    print(json.dumps([{"user": u["name"], "tags": tags(u)} for u in api("GET", "users")]))
elif command == "list_vhosts":
    print(json.dumps([{"name": v["name"]} for v in api("GET", "vhosts")]))
elif command == "list_user_permissions":
    found = api("GET", "users/%s/permissions" % quoted(args[1])) or []
    print(json.dumps([{k: p[k] for k in ("vhost", "configure", "write", "read")} for p in found]))
elif command == "add_user":
    if api("GET", "users/" + quoted(args[1])) is not None:
        sys.stderr.write("Error: user '%s' already exists\n" % args[1])
        sys.exit(70)
    api("PUT", "users/" + quoted(args[1]), {"password": password(), "tags": ""})
elif command in ("change_password", "authenticate_user", "set_user_tags", "delete_user"):
    user = api("GET", "users/" + quoted(args[1]))
    if user is None:
        sys.stderr.write("Error: user '%s' does not exist\n" % args[1])
        sys.exit(70)
    if command == "delete_user":
        api("DELETE", "users/" + quoted(args[1]))
    elif command == "authenticate_user":
        # rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)).
        stored = base64.b64decode(user["password_hash"])
        salt, digest = stored[:4], stored[4:]
        if hashlib.sha256(salt + password().encode()).digest() != digest:
            sys.stderr.write("Error: failed to authenticate user \"%s\"\n" % args[1])
            sys.exit(65)
    elif command == "change_password":
        api("PUT", "users/" + quoted(args[1]), {"password": password(), "tags": ",".join(tags(user))})
    else:
        api("PUT", "users/" + quoted(args[1]), {
            "password_hash": user["password_hash"],
            "hashing_algorithm": user["hashing_algorithm"],
            "tags": ",".join(args[2:]),
        })
elif command == "set_permissions":
    vhost = args[args.index("-p") + 1] if "-p" in args else "/"
    rest = [a for i, a in enumerate(args[1:], 1) if a != "-p" and args[i - 1] != "-p"]
    user, configure, write, read = rest
    api("PUT", "permissions/%s/%s" % (quoted(vhost), quoted(user)),
        {"configure": configure, "write": write, "read": read})
elif command == "export_definitions":
    print(json.dumps(api("GET", "definitions")))
elif command == "import_definitions":
    api("POST", "definitions", json.loads(sys.stdin.read()))
elif command == "add_vhost":
    api("PUT", "vhosts/" + quoted(args[1]))
else:
    sys.stderr.write("fake rabbitmqctl: unknown call %r\n" % args)
    sys.exit(64)
