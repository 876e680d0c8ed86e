#!/usr/lib/mongodb-org-standin/venv/bin/python3
"""`mongod` of the stand-in mongodb-org package of stackinstall's box tests.

It reads mongod's own settings file as mongod does (`mongod --config
/etc/mongod.conf`: storage.dbPath, net.port, net.bindIp,
security.authorization, systemLog.path; MongoDB's "Configuration File
Options" page) and runs SecantusDB, a MongoDB wire-protocol server with
SCRAM-SHA-256 users, with them.

SecantusDB has no localhost exception ("Provision users by connecting once
without auth and running createUser, then restart with --auth", its
`--auth` help). mongod has one: with authorization enabled and no user yet,
a connection from localhost may create the first user, and once one exists
every client must authenticate (MongoDB's "Localhost Exception" page). This
wrapper gives the same: while the data directory has no user it listens on
127.0.0.1 only without auth; as soon as a user exists it restarts SecantusDB
with --auth on the configured addresses, and marks the data directory so
that every later start is with --auth. Unlike mongod, an unauthenticated
localhost client may do more than create the first user during that window.
"""

import os
import signal
import subprocess
import sys
import time

import pymongo
import yaml

SECANTUSD = "/usr/lib/mongodb-org-standin/venv/bin/secantusd-py"
MARKER = ".standin-has-users"


def settings(path):
    with open(path) as f:
        conf = yaml.safe_load(f) or {}
    net = conf.get("net") or {}
    storage = conf.get("storage") or {}
    security = conf.get("security") or {}
    log = conf.get("systemLog") or {}
    return {
        "port": int(net.get("port", 27017)),
        "bind": str(net.get("bindIp", "127.0.0.1")).split(",")[0].strip(),
        "db": storage.get("dbPath", "/var/lib/mongodb"),
        "auth": security.get("authorization") == "enabled",
        "log": log.get("path") if log.get("destination") == "file" else None,
    }


def start(s, host, auth):
    runtime = os.environ.get("RUNTIME_DIRECTORY", "/tmp")
    config = os.path.join(runtime, "secantusd.toml")
    # The server's process is called `mongod`, as the real one is (the
    # kernel names a process after the file it executes).
    program = os.path.join(runtime, "mongod")
    if not os.path.islink(program):
        os.symlink(SECANTUSD, program)
    with open(config, "w") as f:
        f.write('[server]\nhost = "%s"\n' % host)
    args = [program, "--config", config, "--host", host, "--port", str(s["port"]),
            "--storage-path", s["db"]]
    if auth:
        args.append("--auth")
    out = open(s["log"], "a") if s["log"] else None
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            cwd=s["db"])


def has_users(port):
    try:
        client = pymongo.MongoClient("127.0.0.1", port, directConnection=True,
                                     serverSelectionTimeoutMS=500)
        users = client.admin.command("usersInfo").get("users", [])
        client.close()
        return bool(users)
    except Exception:
        return False


def main():
    argv = sys.argv[1:]
    path = "/etc/mongod.conf"
    for flag in ("--config", "-f"):
        if flag in argv:
            path = argv[argv.index(flag) + 1]
    s = settings(path)
    marker = os.path.join(s["db"], MARKER)
    child = None

    def stop(signum, _frame):
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if s["auth"] and not os.path.exists(marker):
        child = start(s, "127.0.0.1", auth=False)
        while child.poll() is None and not has_users(s["port"]):
            time.sleep(0.3)
        if child.poll() is not None:
            sys.exit(child.returncode)
        open(marker, "w").close()
        print("stand-in: the first user exists; restarting with --auth on %s" % s["bind"],
              file=sys.stderr, flush=True)
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            # A SecantusDB slow to stop must not end this wrapper (the
            # unit would stop with nothing listening): stop it for good.
            print("stand-in: SecantusDB did not stop in 30 s; killing it", file=sys.stderr,
                  flush=True)
            child.kill()
            child.wait()
    child = start(s, s["bind"], auth=s["auth"])
    sys.exit(child.wait())


if __name__ == "__main__":
    main()
