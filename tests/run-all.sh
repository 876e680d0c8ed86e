#!/usr/bin/env bash
# tests/run-all.sh: THE one command that runs every test of stackinstall.
#
# Meant for a fresh Debian 12 / Ubuntu machine, as root, without systemd
# (CI runs it on a clean clone, no services started, no stdin, CI=true).
# Re-running it on a machine where everything is already installed or running
# is fine: it reuses what it finds and only stops what it started itself.
#
# What it does, in order:
#   1. installs the Debian packages the tests need (mariadb-server,
#      rabbitmq-server, python3-venv, curl; `apt-get update` only if one is
#      missing) and a Python venv with moto[server], SecantusDB and pymongo in
#      $STACKINSTALL_TEST_CACHE/venv (reused when it is already complete);
#   2. starts, on 127.0.0.1 only and without systemd: MariaDB (3306, socket
#      /run/mysqld/mysqld.sock, root by unix_socket auth), RabbitMQ (5672, with
#      the management API on 15672), moto (ECR stand-in, 5055) and SecantusDB
#      (MongoDB wire protocol, 27017, --auth, with an `admin` root user whose
#      password is generated here);
#   3. exports the connection contract the Rust tests read:
#        STACKINSTALL_TEST_SERVICES=1
#        STACKINSTALL_TEST_MYSQL_SOCKET, STACKINSTALL_TEST_MYSQL_PORT
#        STACKINSTALL_TEST_RABBITMQ_PORT, STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT
#        STACKINSTALL_TEST_ECR_ENDPOINT
#        STACKINSTALL_TEST_MONGODB_PORT, STACKINSTALL_TEST_MONGODB_ADMIN_USER,
#        STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD
#   4. runs `cargo build --locked --workspace --all-targets` (the binary, the
#      fake programs of tests/fakes/, the one test binary tests/it/, the
#      benches), then `cargo test --locked --workspace --lib --bins --tests
#      -- --test-threads=N --skip boxes:: "$@"` (benches are built, never run);
#   5. runs the box tests (`tests/it/boxes.rs`: a Debian 12 host with systemd
#      as PID 1, harness in tests/it/boxes/) as a phase of their own, timed
#      apart: their roots (Debian 12 and 13) are built once per machine with
#      debootstrap (about 4 to 11 minutes on a cold cache), in the background
#      while step 4 runs, and cached in $STACKINSTALL_TEST_CACHE/box;
#      and exits non-zero when either cargo test failed.
#   An EXIT trap stops exactly the servers this script started (by pid, or
#   `rabbitmqctl stop` for a RabbitMQ node it started).
#
# Arguments are passed to the test binaries after `--`, e.g.
#   tests/run-all.sh databases::mysql --nocapture
# Each phase's time is printed at the end.
#
# Environment switches:
#   STACKINSTALL_TEST_CACHE=DIR        cache for the venv and logs
#                                      (default /var/cache/stackinstall-test)
#   STACKINSTALL_TEST_SKIP_CARGO=1     set everything up, check it, stop before
#                                      cargo (the trap still stops the servers
#                                      unless KEEP_SERVICES is set too)
#   STACKINSTALL_TEST_KEEP_SERVICES=1  leave the servers this run started
#                                      running at exit (for interactive work)
#   STACKINSTALL_TEST_ENV_FILE=FILE    also write the `export` lines of the
#                                      contract (incl. the MongoDB admin
#                                      password) to FILE, mode 0600
#   STACKINSTALL_TEST_THREADS=N        --test-threads for cargo test (default 2)
#   STACKINSTALL_TEST_BOX=0            leave the box tests out (default 1: run them)
#
# A SecantusDB already listening on 27017 is reused only if its admin password
# is known: from STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD in the environment or
# from $STACKINSTALL_TEST_CACHE/mongodb-admin-password (written by each run).

set -Eeuo pipefail

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C.UTF-8

REPO_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${STACKINSTALL_TEST_CACHE:-/var/cache/stackinstall-test}
VENV=$CACHE/venv
LOGDIR=$CACHE/logs
SKIP_CARGO=${STACKINSTALL_TEST_SKIP_CARGO:-0}
KEEP_SERVICES=${STACKINSTALL_TEST_KEEP_SERVICES:-0}
ENV_FILE=${STACKINSTALL_TEST_ENV_FILE:-}
TEST_THREADS=${STACKINSTALL_TEST_THREADS:-2}
RUN_BOX=${STACKINSTALL_TEST_BOX:-1}

# debootstrap, iproute2 (ip) and util-linux (unshare, nsenter): the box tests.
APT_PACKAGES=(mariadb-server rabbitmq-server python3-venv curl debootstrap iproute2 util-linux)
PIP_PACKAGES=('moto[server]==5.2.5' 'SecantusDB==0.7.0b3' 'pymongo==4.20.0')

MYSQL_SOCKET=/run/mysqld/mysqld.sock
MYSQL_PORT=3306
RABBITMQ_PORT=5672
RABBITMQ_MANAGEMENT_PORT=15672
MOTO_PORT=5055
MONGODB_PORT=27017
MONGODB_ADMIN_USER="admin"

# ---------------------------------------------------------------- helpers --

T0=$SECONDS
PHASE=""
PHASE_T0=$SECONDS
PHASE_TIMES=()

section() {
    finish_phase
    PHASE=$1
    PHASE_T0=$SECONDS
    echo
    echo "==> $1 [t=$((SECONDS - T0))s]"
}

finish_phase() {
    if [[ -n $PHASE ]]; then
        PHASE_TIMES+=("$(printf '%5ss  %s' "$((SECONDS - PHASE_T0))" "$PHASE")")
        PHASE=""
    fi
}

info() { echo "    $*"; }

die() {
    echo >&2
    echo "!!! run-all.sh: $*" >&2
    exit 1
}

# die with the last lines of one or more log files.
die_with_log() {
    local msg=$1
    shift
    local f
    {
        echo
        echo "!!! run-all.sh: $msg"
        for f in "$@"; do
            if [[ -f $f ]]; then
                echo "--- last 40 lines of $f ---"
                tail -n 40 "$f" || true
            fi
        done
        echo "---"
    } >&2
    exit 1
}

# Something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# An HTTP server answers (any status) on 127.0.0.1:$1.
http_answers() {
    local code
    code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$1/" || true)
    [[ -n $code && $code != 000 ]]
}

# wait_for SECONDS PID_OR_EMPTY DESCRIPTION LOGFILE... -- COMMAND...
# Polls COMMAND every second until it succeeds. Fails with the logs' tails on
# timeout, or at once if PID is given and that process has died.
wait_for() {
    local limit=$1 pid=$2 what=$3
    shift 3
    local logs=()
    while [[ $1 != -- ]]; do
        logs+=("$1")
        shift
    done
    shift
    local start=$SECONDS
    until ("$@") >/dev/null 2>&1; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            die_with_log "$what: the server process (pid $pid) exited before it was ready" "${logs[@]}"
        fi
        if ((SECONDS - start >= limit)); then
            die_with_log "$what: not ready after ${limit}s" "${logs[@]}"
        fi
        sleep 1
    done
    info "$what: ready after $((SECONDS - start))s"
}

# Send SIGTERM to a pid we started and wait (bounded) for it to go.
stop_pid() {
    local pid=$1 what=$2 limit=${3:-60} start=$SECONDS
    kill -0 "$pid" 2>/dev/null || return 0
    echo "    stopping $what (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS - start >= limit)); then
            echo "    $what (pid $pid) still running after ${limit}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.5
    done
    wait "$pid" 2>/dev/null || true
}

random_password() {
    "$VENV/bin/python" -c 'import secrets, string; a = string.ascii_letters + string.digits; print("".join(secrets.choice(a) for _ in range(32)))'
}

# --------------------------------------------------------------- cleanup --

STARTED_MARIADB_PID=""
STARTED_RABBITMQ=0
RABBITMQ_OS_PID=""
RABBIT_NODE=""
STARTED_MOTO_PID=""
STARTED_SECANTUS_PID=""
SECANTUS_TMP=""
POLICY_RC_D_CREATED=0

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if ((POLICY_RC_D_CREATED)); then
        rm -f /usr/sbin/policy-rc.d
    fi
    finish_phase
    # A root half built has mounts in its chroot: let the build end itself.
    if [[ -n ${PREBUILD_PID:-} ]] && kill -0 "$PREBUILD_PID" 2>/dev/null; then
        echo
        echo "==> waiting for the box roots' background build (pid $PREBUILD_PID) to end"
        wait "$PREBUILD_PID"
    fi
    if [[ $KEEP_SERVICES == 1 ]]; then
        if [[ -n $STARTED_MARIADB_PID$STARTED_MOTO_PID$STARTED_SECANTUS_PID ]] || ((STARTED_RABBITMQ)); then
            echo
            echo "==> leaving the servers running (STACKINSTALL_TEST_KEEP_SERVICES=1)"
            [[ -n $STARTED_MARIADB_PID ]] && info "MariaDB pid $STARTED_MARIADB_PID"
            ((STARTED_RABBITMQ)) && info "RabbitMQ node $RABBIT_NODE, beam pid ${RABBITMQ_OS_PID:-?} (stop: rabbitmqctl stop)"
            [[ -n $STARTED_MOTO_PID ]] && info "moto pid $STARTED_MOTO_PID"
            [[ -n $STARTED_SECANTUS_PID ]] && info "SecantusDB pid $STARTED_SECANTUS_PID (storage $SECANTUS_TMP)"
        fi
    else
        if [[ -n $STARTED_MARIADB_PID$STARTED_MOTO_PID$STARTED_SECANTUS_PID ]] || ((STARTED_RABBITMQ)); then
            echo
            echo "==> stopping the servers this run started [t=$((SECONDS - T0))s]"
        fi
        [[ -n $STARTED_SECANTUS_PID ]] && stop_pid "$STARTED_SECANTUS_PID" SecantusDB 30
        [[ -n $SECANTUS_TMP ]] && rm -rf "$SECANTUS_TMP"
        [[ -n $STARTED_MOTO_PID ]] && stop_pid "$STARTED_MOTO_PID" moto 30
        if ((STARTED_RABBITMQ)); then
            echo "    stopping RabbitMQ node $RABBIT_NODE (rabbitmqctl stop)"
            if ! timeout 90 rabbitmqctl stop >/dev/null 2>&1; then
                echo "    rabbitmqctl stop failed"
                [[ -n $RABBITMQ_OS_PID ]] && kill -TERM "$RABBITMQ_OS_PID" 2>/dev/null
            fi
            # rabbitmqctl stop returns before the Erlang VM has exited.
            if [[ -n $RABBITMQ_OS_PID ]]; then
                for _ in $(seq 60); do
                    kill -0 "$RABBITMQ_OS_PID" 2>/dev/null || break
                    sleep 0.5
                done
            fi
        fi
        [[ -n $STARTED_MARIADB_PID ]] && stop_pid "$STARTED_MARIADB_PID" MariaDB 60
    fi
    if ((${#PHASE_TIMES[@]})); then
        echo
        echo "==> time per phase (total $((SECONDS - T0))s)"
        printf '    %s\n' "${PHASE_TIMES[@]}"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ preflight --

[[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts MariaDB/RabbitMQ)"
if [[ -d ${HOME:-/root}/.cargo/bin ]]; then
    PATH=${HOME:-/root}/.cargo/bin:$PATH
fi
export PATH
mkdir -p "$CACHE" "$LOGDIR"
# The rabbitmq user must read its config file in here.
chmod 755 "$CACHE" "$LOGDIR"

# ------------------------------------------------------------- packages --

section "installing packages"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true) != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    info "missing: ${missing[*]}"
    # Keep the packages' maintainer scripts from starting the services (with
    # their default, non-loopback settings): this script starts them itself.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_D_CREATED=1
    fi
    apt-get update -q >"$LOGDIR/apt-update.log" 2>&1 ||
        die_with_log "apt-get update failed" "$LOGDIR/apt-update.log"
    apt-get install -y -q "${missing[@]}" </dev/null >"$LOGDIR/apt-install.log" 2>&1 ||
        die_with_log "apt-get install ${missing[*]} failed" "$LOGDIR/apt-install.log"
    if ((POLICY_RC_D_CREATED)); then
        rm -f /usr/sbin/policy-rc.d
        POLICY_RC_D_CREATED=0
    fi
    info "installed: ${missing[*]}"
else
    info "already installed: ${APT_PACKAGES[*]}"
fi

section "preparing the Python venv ($VENV)"
VENV_STAMP=$VENV/.stackinstall-requirements
venv_ok() {
    [[ -x $VENV/bin/python && -x $VENV/bin/moto_server && -x $VENV/bin/secantusd-py ]] &&
        [[ -f $VENV_STAMP && $(cat "$VENV_STAMP") == "${PIP_PACKAGES[*]}" ]] &&
        "$VENV/bin/python" -c 'import moto, pymongo, secantus' >/dev/null 2>&1
}
if venv_ok; then
    info "reusing the venv"
else
    rm -rf "$VENV"
    python3 -m venv "$VENV" >"$LOGDIR/venv.log" 2>&1 ||
        die_with_log "python3 -m venv $VENV failed" "$LOGDIR/venv.log"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" >>"$LOGDIR/venv.log" 2>&1 ||
        die_with_log "pip install ${PIP_PACKAGES[*]} failed" "$LOGDIR/venv.log"
    printf '%s' "${PIP_PACKAGES[*]}" >"$VENV_STAMP"
    venv_ok || die "the venv at $VENV is incomplete after pip install"
    info "created with ${PIP_PACKAGES[*]}"
fi

# -------------------------------------------------------------- MariaDB --

section "starting MariaDB"
mariadb_ping() {
    mariadb-admin --socket="$MYSQL_SOCKET" --connect-timeout=2 ping
}
if (mariadb_ping) >/dev/null 2>&1; then
    info "a server already answers on $MYSQL_SOCKET: reusing it"
else
    if port_open "$MYSQL_PORT"; then
        die "port $MYSQL_PORT is taken but nothing answers on $MYSQL_SOCKET; stop whatever holds it"
    fi
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        info "initialising /var/lib/mysql"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOGDIR/mariadb-install-db.log" 2>&1 ||
            die_with_log "mariadb-install-db failed" "$LOGDIR/mariadb-install-db.log"
    fi
    mariadbd --user=mysql --bind-address=127.0.0.1 --port="$MYSQL_PORT" --socket="$MYSQL_SOCKET" \
        </dev/null >"$LOGDIR/mariadb.log" 2>&1 &
    STARTED_MARIADB_PID=$!
    info "mariadbd pid $STARTED_MARIADB_PID, log $LOGDIR/mariadb.log"
    wait_for 60 "$STARTED_MARIADB_PID" MariaDB "$LOGDIR/mariadb.log" -- mariadb_ping
fi
mariadb --socket="$MYSQL_SOCKET" -N -e 'SELECT 1' >/dev/null 2>&1 ||
    die "root cannot log in to MariaDB over $MYSQL_SOCKET (the tests need unix_socket auth for root)"
info "$(mariadb --socket="$MYSQL_SOCKET" -N -e 'SELECT CONCAT(VERSION(), ", bind_address=", @@bind_address, ", port=", @@port)')"

# ------------------------------------------------------------- RabbitMQ --

section "starting RabbitMQ"
# Everything on loopback: AMQP, management, epmd and Erlang distribution.
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$RABBITMQ_PORT
export ERL_EPMD_ADDRESS=127.0.0.1
# Erlang distribution listens where the node's host name resolves; bind it to
# that address when it is a loopback one, otherwise use rabbit@localhost.
short_host=$(hostname -s 2>/dev/null || hostname)
host_ip=$(getent ahostsv4 "$short_host" 2>/dev/null | awk 'NR == 1 { print $1 }' || true)
if [[ -z ${RABBITMQ_NODENAME:-} ]]; then
    if [[ $host_ip == 127.* ]]; then
        dist_ip=$host_ip
    else
        export RABBITMQ_NODENAME=rabbit@localhost
        dist_ip=127.0.0.1
    fi
else
    dist_ip=127.0.0.1
fi
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {${dist_ip//./,}}"
RABBITMQ_CONF_DIR=$CACHE/rabbitmq
mkdir -p "$RABBITMQ_CONF_DIR"
chmod 755 "$RABBITMQ_CONF_DIR"
cat >"$RABBITMQ_CONF_DIR/rabbitmq.conf" <<EOF
# written by tests/run-all.sh
listeners.tcp.default = 127.0.0.1:$RABBITMQ_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $RABBITMQ_MANAGEMENT_PORT
loopback_users.guest = true
EOF
chmod 644 "$RABBITMQ_CONF_DIR/rabbitmq.conf"
export RABBITMQ_CONFIG_FILE=$RABBITMQ_CONF_DIR/rabbitmq.conf
runuser -u rabbitmq -- test -r "$RABBITMQ_CONFIG_FILE" ||
    die "the rabbitmq user cannot read $RABBITMQ_CONFIG_FILE: set STACKINSTALL_TEST_CACHE to a directory every user can traverse"
RABBITMQ_LOGS_TO_SHOW=(/var/log/rabbitmq/startup_err /var/log/rabbitmq/startup_log)
rabbit_log_files() {
    local f
    for f in /var/log/rabbitmq/"$RABBIT_NODE".log "${RABBITMQ_LOGS_TO_SHOW[@]}"; do
        echo "$f"
    done
}
RABBIT_NODE=${RABBITMQ_NODENAME:-rabbit@$short_host}
mapfile -t RABBIT_LOGS < <(rabbit_log_files)

if timeout 30 rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    info "node $RABBIT_NODE already running: reusing it"
    timeout 60 rabbitmq-plugins enable rabbitmq_management >"$LOGDIR/rabbitmq-plugins.log" 2>&1 ||
        die_with_log "rabbitmq-plugins enable rabbitmq_management failed" "$LOGDIR/rabbitmq-plugins.log"
else
    if port_open "$RABBITMQ_PORT"; then
        die "port $RABBITMQ_PORT is taken but no RabbitMQ node $RABBIT_NODE answers rabbitmqctl; stop whatever holds it"
    fi
    timeout 60 rabbitmq-plugins enable --offline rabbitmq_management >"$LOGDIR/rabbitmq-plugins.log" 2>&1 ||
        die_with_log "rabbitmq-plugins enable --offline rabbitmq_management failed" "$LOGDIR/rabbitmq-plugins.log"
    info "node $RABBIT_NODE, config $RABBITMQ_CONFIG_FILE"
    rabbitmq-server -detached </dev/null >"$LOGDIR/rabbitmq-server.log" 2>&1 ||
        die_with_log "rabbitmq-server -detached failed" "$LOGDIR/rabbitmq-server.log" "${RABBIT_LOGS[@]}"
    STARTED_RABBITMQ=1
    # await_startup exits 69 until the node is registered, then blocks until
    # the broker has booted.
    wait_for 90 "" "RabbitMQ" "${RABBIT_LOGS[@]}" -- timeout 60 rabbitmqctl await_startup --timeout 30
    RABBITMQ_OS_PID=$(timeout 30 rabbitmqctl -q eval 'os:getpid().' 2>/dev/null | tr -dc 0-9 || true)
    info "beam pid ${RABBITMQ_OS_PID:-unknown}"
fi
wait_for 60 "" "RabbitMQ management API" "${RABBIT_LOGS[@]}" -- \
    curl -fsS -m 5 -u guest:guest "http://127.0.0.1:$RABBITMQ_MANAGEMENT_PORT/api/overview"
port_open "$RABBITMQ_PORT" || die_with_log "RabbitMQ is up but nothing listens on 127.0.0.1:$RABBITMQ_PORT" "${RABBIT_LOGS[@]}"
info "$(curl -fsS -m 5 -u guest:guest "http://127.0.0.1:$RABBITMQ_MANAGEMENT_PORT/api/overview" |
    "$VENV/bin/python" -c 'import json, sys; o = json.load(sys.stdin); print("RabbitMQ", o["rabbitmq_version"], "Erlang", o["erlang_version"], "node", o["node"])')"

# ----------------------------------------------------------------- moto --

section "starting moto (ECR stand-in)"
if http_answers "$MOTO_PORT"; then
    info "an HTTP server already answers on 127.0.0.1:$MOTO_PORT: reusing it"
else
    if port_open "$MOTO_PORT"; then
        die "port $MOTO_PORT is taken by something that does not speak HTTP"
    fi
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null >"$LOGDIR/moto.log" 2>&1 &
    STARTED_MOTO_PID=$!
    info "moto_server pid $STARTED_MOTO_PID, log $LOGDIR/moto.log"
    wait_for 60 "$STARTED_MOTO_PID" moto "$LOGDIR/moto.log" -- http_answers "$MOTO_PORT"
fi

# ----------------------------------------------------------- SecantusDB --

section "starting SecantusDB (MongoDB stand-in)"
MONGO_PW_FILE=$CACHE/mongodb-admin-password

# mongo_py SCRIPT: run a pymongo snippet; MONGO_USER/MONGO_PASSWORD from env.
mongo_py() {
    MONGO_PORT=$MONGODB_PORT "$VENV/bin/python" -c "$1"
}
MONGO_PING_NOAUTH='
import os, pymongo
c = pymongo.MongoClient("127.0.0.1", int(os.environ["MONGO_PORT"]), directConnection=True, serverSelectionTimeoutMS=2000)
c.admin.command("ping")
'
MONGO_PING_AUTH='
import os, pymongo
c = pymongo.MongoClient("127.0.0.1", int(os.environ["MONGO_PORT"]), directConnection=True,
    serverSelectionTimeoutMS=2000, username=os.environ["MONGO_USER"], password=os.environ["MONGO_PASSWORD"],
    authSource="admin", authMechanism="SCRAM-SHA-256")
c.admin.command("ping")
c.admin.command("listDatabases")
'
MONGO_CREATE_ADMIN='
import os, pymongo
c = pymongo.MongoClient("127.0.0.1", int(os.environ["MONGO_PORT"]), directConnection=True, serverSelectionTimeoutMS=5000)
c.admin.command("createUser", os.environ["MONGO_USER"], pwd=os.environ["MONGO_PASSWORD"], roles=[{"role": "root", "db": "admin"}])
'
mongo_auth_ping() {
    MONGO_USER=$MONGODB_ADMIN_USER MONGO_PASSWORD=$1 mongo_py "$MONGO_PING_AUTH"
}

MONGODB_ADMIN_PASSWORD=""
if port_open "$MONGODB_PORT"; then
    for candidate in "${STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD:-}" "$(cat "$MONGO_PW_FILE" 2>/dev/null || true)"; do
        if [[ -n $candidate ]] && (mongo_auth_ping "$candidate") >/dev/null 2>&1; then
            MONGODB_ADMIN_PASSWORD=$candidate
            break
        fi
    done
    [[ -n $MONGODB_ADMIN_PASSWORD ]] ||
        die "port $MONGODB_PORT is taken and the $MONGODB_ADMIN_USER password that would log in to it is unknown (neither STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD nor $MONGO_PW_FILE works); stop whatever holds it"
    info "a server already answers on 127.0.0.1:$MONGODB_PORT and $MONGODB_ADMIN_USER logs in: reusing it"
else
    SECANTUS_TMP=$(mktemp -d /tmp/stackinstall-secantus.XXXXXX)
    SECANTUS_LOG=$LOGDIR/secantus.log
    # An explicit --config turns off the auto-discovery of ./secantusd.toml,
    # ~/.secantus/secantusd.toml and /etc/secantus/secantusd.toml.
    printf '# written by tests/run-all.sh\n[server]\nhost = "127.0.0.1"\n' >"$SECANTUS_TMP/secantusd.toml"
    secantus_start() {
        (cd "$SECANTUS_TMP" && exec "$VENV/bin/secantusd-py" --config "$SECANTUS_TMP/secantusd.toml" \
            --host 127.0.0.1 --port "$MONGODB_PORT" --storage-path "$SECANTUS_TMP/data" "$@" \
            </dev/null >>"$SECANTUS_LOG" 2>&1) &
        STARTED_SECANTUS_PID=$!
    }
    : >"$SECANTUS_LOG"
    # SecantusDB has no localhost exception: the first user is created with
    # auth off, then the server is restarted with --auth on the same storage.
    secantus_start
    info "pass 1 (no auth) pid $STARTED_SECANTUS_PID, storage $SECANTUS_TMP/data, log $SECANTUS_LOG"
    wait_for 60 "$STARTED_SECANTUS_PID" "SecantusDB (no auth)" "$SECANTUS_LOG" -- mongo_py "$MONGO_PING_NOAUTH"
    MONGODB_ADMIN_PASSWORD=$(random_password)
    MONGO_USER=$MONGODB_ADMIN_USER MONGO_PASSWORD=$MONGODB_ADMIN_PASSWORD mongo_py "$MONGO_CREATE_ADMIN" ||
        die_with_log "creating the SecantusDB admin user failed" "$SECANTUS_LOG"
    info "created user $MONGODB_ADMIN_USER (roles root on admin)"
    stop_pid "$STARTED_SECANTUS_PID" "SecantusDB (no auth)" 30
    STARTED_SECANTUS_PID=""
    wait_for 30 "" "port $MONGODB_PORT released" "$SECANTUS_LOG" -- bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$MONGODB_PORT)"
    secantus_start --auth
    info "pass 2 (--auth) pid $STARTED_SECANTUS_PID"
    wait_for 60 "$STARTED_SECANTUS_PID" "SecantusDB (--auth)" "$SECANTUS_LOG" -- mongo_auth_ping "$MONGODB_ADMIN_PASSWORD"
    # Check auth is really on: an unauthenticated listDatabases must fail.
    if (mongo_py "$MONGO_PING_NOAUTH"'
c.admin.command("listDatabases")') >/dev/null 2>&1; then
        die_with_log "SecantusDB was started with --auth but accepts unauthenticated commands" "$SECANTUS_LOG"
    fi
    (umask 077 && printf '%s\n' "$MONGODB_ADMIN_PASSWORD" >"$MONGO_PW_FILE")
fi

# ------------------------------------------------------------- contract --

section "exporting the test environment"
export STACKINSTALL_TEST_SERVICES=1
export STACKINSTALL_TEST_MYSQL_SOCKET=$MYSQL_SOCKET
export STACKINSTALL_TEST_MYSQL_PORT=$MYSQL_PORT
export STACKINSTALL_TEST_RABBITMQ_PORT=$RABBITMQ_PORT
export STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT=$RABBITMQ_MANAGEMENT_PORT
export STACKINSTALL_TEST_ECR_ENDPOINT=http://127.0.0.1:$MOTO_PORT
export STACKINSTALL_TEST_MONGODB_PORT=$MONGODB_PORT
export STACKINSTALL_TEST_MONGODB_ADMIN_USER=$MONGODB_ADMIN_USER
export STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD=$MONGODB_ADMIN_PASSWORD
for v in STACKINSTALL_TEST_SERVICES STACKINSTALL_TEST_MYSQL_SOCKET STACKINSTALL_TEST_MYSQL_PORT \
    STACKINSTALL_TEST_RABBITMQ_PORT STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT STACKINSTALL_TEST_ECR_ENDPOINT \
    STACKINSTALL_TEST_MONGODB_PORT STACKINSTALL_TEST_MONGODB_ADMIN_USER; do
    info "$v=${!v}"
done
info "STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD=(${#MONGODB_ADMIN_PASSWORD} characters, in $MONGO_PW_FILE)"
if [[ -n $ENV_FILE ]]; then
    (
        umask 077
        {
            echo "# written by tests/run-all.sh; source it to run the tests against these servers"
            for v in STACKINSTALL_TEST_SERVICES STACKINSTALL_TEST_MYSQL_SOCKET STACKINSTALL_TEST_MYSQL_PORT \
                STACKINSTALL_TEST_RABBITMQ_PORT STACKINSTALL_TEST_RABBITMQ_MANAGEMENT_PORT \
                STACKINSTALL_TEST_ECR_ENDPOINT STACKINSTALL_TEST_MONGODB_PORT \
                STACKINSTALL_TEST_MONGODB_ADMIN_USER STACKINSTALL_TEST_MONGODB_ADMIN_PASSWORD \
                RABBITMQ_NODENAME; do
                if [[ -n ${!v:-} ]]; then
                    printf 'export %s=%q\n' "$v" "${!v}"
                fi
            done
        } >"$ENV_FILE"
    )
    info "wrote $ENV_FILE"
fi

# ---------------------------------------------------------------- cargo --

if [[ $SKIP_CARGO == 1 ]]; then
    section "skipping cargo (STACKINSTALL_TEST_SKIP_CARGO=1)"
    exit 0
fi

cd "$REPO_TOP"
command -v cargo >/dev/null || die "cargo not found on PATH (nor in \$HOME/.cargo/bin)"

# The box roots are built while cargo builds and the other tests run: most
# of a cold build waits on downloads and dpkg, not on the CPU. The name of
# a root is the harness's (tests/it/boxes/harness.rs, `root_tarball`): the
# SHA-256 of box.sh's build part and the stand-in mongod. The harness takes
# the same lock, so a box test waits for a root being built here, and
# builds it itself should this have failed.
PREBUILD_PID=""
if [[ $RUN_BOX == 1 ]]; then
    section "building the box roots in the background (Debian 12 and 13)"
    BOX_CACHE=$CACHE/box
    mkdir -p "$BOX_CACHE"
    BOX_VERSION=$(python3 - "$REPO_TOP/tests/it/boxes" <<'PY'
import hashlib, sys
box = sys.argv[1]
script = open(f"{box}/box.sh", "rb").read()
marker = b"# ------------------------------------------------------------------- boot --"
digest = hashlib.sha256(script.split(marker)[0])
digest.update(open(f"{box}/mongod-standin.py", "rb").read())
print(digest.hexdigest()[:12])
PY
)
    (
        for pair in "bookworm debian-12" "trixie debian-13"; do
            read -r codename name <<<"$pair"
            tarball=$BOX_CACHE/$name-$BOX_VERSION.tar
            (
                flock 9
                if [[ -e $tarball ]]; then
                    echo "box: $name root already built: $tarball"
                else
                    started=$SECONDS
                    echo "box: building the $name root: $tarball"
                    bash "$REPO_TOP/tests/it/boxes/box.sh" build "$codename" "$tarball" </dev/null
                    echo "box: built the $name root in $((SECONDS - started)) s"
                fi
            ) 9>"$BOX_CACHE/build.lock"
        done
    ) >"$LOGDIR/box-prebuild.log" 2>&1 &
    PREBUILD_PID=$!
    info "pid $PREBUILD_PID, log $LOGDIR/box-prebuild.log"
fi

section "cargo build --locked --workspace --all-targets"
cargo --version
cargo build --locked --workspace --all-targets

section "cargo test --locked --workspace --lib --bins --tests (all but the box tests)"
set +e
cargo test --locked --workspace --lib --bins --tests -- --test-threads="$TEST_THREADS" --skip boxes:: "$@"
test_rc=$?
set -e

box_rc=0
if [[ $RUN_BOX == 1 ]]; then
    section "box tests: a Debian host with systemd as PID 1 (tests/it/boxes.rs)"
    set +e
    if [[ -n $PREBUILD_PID ]]; then
        wait "$PREBUILD_PID"
        prebuild_rc=$?
        info "the roots' background build ended with status $prebuild_rc ($LOGDIR/box-prebuild.log):"
        sed 's/^/    /' "$LOGDIR/box-prebuild.log" | tail -20
    fi
    cargo test --locked --test it boxes:: -- --test-threads="$TEST_THREADS" "$@"
    box_rc=$?
    set -e
else
    info "left out (STACKINSTALL_TEST_BOX=0): the box tests"
fi
finish_phase
echo
echo "==> cargo test exited with status $test_rc, the box tests with $box_rc [t=$((SECONDS - T0))s]"
if ((test_rc != 0)); then
    exit "$test_rc"
fi
exit "$box_rc"
