#!/usr/bin/env bash
# tests/it/boxes/box.sh: the Debian host in a box (issue 22), driven by
# tests/it/boxes.rs and tests/it/boxes/harness.rs. Three commands:
#
#   box.sh build RELEASE TARBALL   debootstrap RELEASE (bookworm, trixie) and
#       make it a configured host: a machine-id before its first boot, a
#       host name in /etc/hosts, a resolver that never answers (an
#       air-gapped host), udev and the units that would touch the machine
#       (kernel modules, sysctl, the console getty) masked, its Debian
#       packages served from a local mirror (`file:/srv/debian-mirror`,
#       every package the host lane installs, downloaded here with its
#       dependencies), and a stand-in `mongodb-org` repository
#       (`file:/srv/mongodb-repo`, signed with a test key). Written as one
#       tarball, the only thing the tests read.
#   box.sh boot ROOT CGROUP        boots ROOT with systemd as PID 1. Runs in a
#       network namespace of its own (the box's "LAN", made by the caller
#       with `unshare --net`): a veth pair whose `eth0` end goes into the
#       box (10.99.0.2/24, default route via 10.99.0.1, the LAN's end); the
#       box gets new mount, PID, network, UTS, IPC and cgroup namespaces, a
#       cgroup2 subtree CGROUP made by the caller, a minimal /dev (null,
#       zero, random, urandom, tty, console (bound to /dev/null), ptmx and
#       pts), /sys and /proc/sys read-only. Prints `box PID` (the box's
#       PID 1 seen from here) once the network is in place, then waits for
#       it: killing that PID is the power cut. Should the launcher die, the
#       box dies with it (the caller gives it a parent-death signal).
#   box.sh inner ROOT FIFO         (boot's child, inside the new namespaces)
#
# Nothing here touches the machine's own network, devices or services: the
# veth pair lives in namespaces that die with the box, nothing is routed
# out, and the mounts are private to the box's mount namespace.
set -Eeuo pipefail

BOX_ADDRESS=10.99.0.2
LAN_ADDRESS=10.99.0.1
# An address on the LAN where nothing answers: the box's resolver.
NAMESERVER=10.99.0.53
HOSTNAME_IN_BOX=box-host
# What the host lane installs (the Debian mirror holds these and everything
# they pull in on a fresh host) and what the stand-in mongod runs on.
SERVER_PACKAGES=(mariadb-server rabbitmq-server nfs-kernel-server python3)
SECANTUS=('SecantusDB==0.7.0b3' 'pymongo==4.20.0' 'PyYAML==6.0.2')
STANDIN_VERSION=7.0.99
STANDIN_PREFIX=/usr/lib/mongodb-org-standin

log() { echo "box.sh: $*" >&2; }

# What the build's chroot gets of this machine's way to reach PyPI: its
# proxy and index settings, and its CA bundle (the certificates pip trusts
# here), copied into the scratch root that is thrown away.
CHROOT_ENV=()
pypi_access() {
    local scratch=$1 variable bundle
    for variable in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
        PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT; do
        [[ -n ${!variable:-} ]] && CHROOT_ENV+=("$variable=${!variable}")
    done
    bundle=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
    if [[ -f $bundle ]]; then
        cp "$bundle" "$scratch/tmp/machine-ca.crt"
        CHROOT_ENV+=(PIP_CERT=/tmp/machine-ca.crt)
    fi
    if [[ -f /etc/pip.conf ]]; then
        grep -v '^ *cert *=' /etc/pip.conf >"$scratch/etc/pip.conf" || true
    fi
}

# ------------------------------------------------------------------ build --

# chroot_run ROOT COMMAND...: COMMAND inside ROOT with a minimal /dev and
# /proc (unmounted again by the caller's trap).
chroot_run() {
    local root=$1
    shift
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "${CHROOT_ENV[@]}" "$@"
}

mount_minimal() {
    local root=$1 node
    mount -t proc proc "$root/proc"
    mount -t tmpfs -o mode=755 tmpfs "$root/dev"
    for node in null:1:3 zero:1:5 random:1:8 urandom:1:9; do
        IFS=: read -r name major minor <<<"$node"
        mknod -m 666 "$root/dev/$name" c "$major" "$minor"
    done
}

unmount_under() {
    local dir=$1 mounted
    mounted=$(awk -v d="$dir" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r)
    for m in $mounted; do umount -l "$m" 2>/dev/null || true; done
}

configure_host() {
    local root=$1 unit
    # A configured host: systemd's first boot (empty machine-id) would
    # apply the presets to every unit.
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
    echo >>"$root/etc/machine-id"
    echo "$HOSTNAME_IN_BOX" >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        "$HOSTNAME_IN_BOX" >"$root/etc/hosts"
    echo "nameserver $NAMESERVER" >"$root/etc/resolv.conf"
    : >"$root/etc/fstab"
    # udev would handle the machine's devices; modules and sysctl would
    # change the machine's kernel; the console is /dev/null here.
    for unit in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
        systemd-udev-trigger.service systemd-udev-settle.service systemd-modules-load.service \
        systemd-sysctl.service console-getty.service getty@tty1.service \
        apt-daily.timer apt-daily-upgrade.timer; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
}

# The stand-in mongodb-org: mongod is SecantusDB (a MongoDB wire-protocol
# server with SCRAM-SHA-256 users) behind /usr/bin/mongod, which reads
# /etc/mongod.conf. Maintainer scripts and unit after mongodb/mongo's
# debian/mongodb-org-server.postinst (make the mongodb user and group,
# /var/lib/mongodb and /var/log/mongodb owned by it, `systemctl
# daemon-reload`, and NOT enable or start mongod) and debian/mongod.service.
build_standin() {
    local scratch=$1 out=$2
    local pkg=$scratch/tmp/standin
    pypi_access "$scratch"
    chroot_run "$scratch" python3 -m venv "$STANDIN_PREFIX/venv"
    chroot_run "$scratch" "$STANDIN_PREFIX/venv/bin/pip" install -q --disable-pip-version-check \
        --no-compile "${SECANTUS[@]}"
    mkdir -p "$pkg/server/DEBIAN" "$pkg/server/usr/bin" "$pkg/server/lib/systemd/system" \
        "$pkg/server/etc" "$pkg/server$STANDIN_PREFIX" "$pkg/meta/DEBIAN"
    cp -a "$scratch$STANDIN_PREFIX/venv" "$pkg/server$STANDIN_PREFIX/"
    install -m 755 "$BOX_DIR/mongod-standin.py" "$pkg/server/usr/bin/mongod"
    cat >"$pkg/server/lib/systemd/system/mongod.service" <<UNIT
[Unit]
Description=MongoDB Database Server (stand-in: SecantusDB)
Documentation=https://docs.mongodb.org/manual
After=network-online.target
Wants=network-online.target

[Service]
User=mongodb
Group=mongodb
EnvironmentFile=-/etc/default/mongod
ExecStart=/usr/bin/mongod --config /etc/mongod.conf
RuntimeDirectory=mongodb
LimitNOFILE=64000

[Install]
WantedBy=multi-user.target
UNIT
    cat >"$pkg/server/etc/mongod.conf" <<'CONF'
# mongod.conf as the mongodb-org-server package ships it
storage:
  dbPath: /var/lib/mongodb
systemLog:
  destination: file
  logAppend: true
  path: /var/log/mongodb/mongod.log
net:
  port: 27017
  bindIp: 127.0.0.1
processManagement:
  timeZoneInfo: /usr/share/zoneinfo
CONF
    echo /etc/mongod.conf >"$pkg/server/DEBIAN/conffiles"
    cat >"$pkg/server/DEBIAN/control" <<CONTROL
Package: mongodb-org-server
Version: $STANDIN_VERSION
Architecture: amd64
Maintainer: stackinstall tests <box@test.invalid>
Depends: python3, adduser
Section: database
Priority: optional
Description: stand-in for MongoDB's mongod (SecantusDB), for stackinstall's box tests
CONTROL
    cat >"$pkg/server/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
case "$1" in
    configure)
        if ! getent passwd mongodb >/dev/null 2>&1; then
            adduser --system --no-create-home mongodb
            addgroup --system mongodb
            adduser mongodb mongodb
        fi
        if [ ! -d /var/lib/mongodb ]; then
            mkdir -p /var/lib/mongodb
            chown mongodb:mongodb /var/lib/mongodb
        fi
        if [ ! -d /var/log/mongodb ]; then
            mkdir -p /var/log/mongodb
            chown mongodb:mongodb /var/log/mongodb
        fi
        systemctl daemon-reload || true
    ;;
esac
exit 0
POSTINST
    cat >"$pkg/server/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -rf /var/log/mongodb
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
POSTRM
    chmod 755 "$pkg/server/DEBIAN/postinst" "$pkg/server/DEBIAN/postrm"
    cat >"$pkg/meta/DEBIAN/control" <<CONTROL
Package: mongodb-org
Version: $STANDIN_VERSION
Architecture: amd64
Maintainer: stackinstall tests <box@test.invalid>
Depends: mongodb-org-server (= $STANDIN_VERSION)
Section: database
Priority: optional
Description: stand-in for MongoDB's mongodb-org metapackage, for stackinstall's box tests
CONTROL
    local pool=$out/debian/pool/main
    mkdir -p "$pool"
    chroot_run "$scratch" dpkg-deb --root-owner-group -Zgzip --build /tmp/standin/server \
        "/tmp/mongodb-org-server_${STANDIN_VERSION}_amd64.deb" >/dev/null
    chroot_run "$scratch" dpkg-deb --root-owner-group -Zgzip --build /tmp/standin/meta \
        "/tmp/mongodb-org_${STANDIN_VERSION}_amd64.deb" >/dev/null
    mv "$scratch"/tmp/mongodb-org*.deb "$pool/"
    rm -rf "$pkg" "$scratch$STANDIN_PREFIX"
    CHROOT_ENV=()
}

# A repository laid out as MongoDB's (`debian CODENAME/mongodb-org/7.0
# main`), signed with a key made here; the armoured public key and its
# fingerprint beside it, for the tests to serve and pin.
sign_standin_repository() {
    local scratch=$1 codename=$2
    local gnupg=/tmp/gnupg suite="$codename/mongodb-org/7.0"
    mkdir -m 700 -p "$scratch$gnupg"
    chroot_run "$scratch" gpg --homedir "$gnupg" --batch --passphrase '' --quick-gen-key \
        'stackinstall box test key <box@test.invalid>' rsa3072 sign never 2>/dev/null
    chroot_run "$scratch" sh -ec "
        cd /srv/mongodb-repo/debian
        mkdir -p dists/$suite/main/binary-amd64
        apt-ftparchive packages pool > dists/$suite/main/binary-amd64/Packages
        gzip -9kn dists/$suite/main/binary-amd64/Packages
        apt-ftparchive -o APT::FTPArchive::Release::Origin=mongodb-standin \
            -o APT::FTPArchive::Release::Suite=$suite -o APT::FTPArchive::Release::Codename=$suite \
            -o APT::FTPArchive::Release::Components=main -o APT::FTPArchive::Release::Architectures=amd64 \
            release dists/$suite > /tmp/Release
        mv /tmp/Release dists/$suite/Release
        gpg --homedir $gnupg --batch --yes --clearsign -o dists/$suite/InRelease dists/$suite/Release
        gpg --homedir $gnupg --batch --yes -abs -o dists/$suite/Release.gpg dists/$suite/Release
        gpg --homedir $gnupg --armor --export > /srv/mongodb-repo/server-7.0.asc
        gpg --homedir $gnupg --with-colons --fingerprint | awk -F: '\$1 == \"fpr\" {print \$10; exit}' \
            > /srv/mongodb-repo/server-7.0.fingerprint
    "
    rm -rf "$scratch$gnupg"
}

build() {
    local release=$1 tarball=$2
    local mirror=${STACKINSTALL_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    local work
    work=$(mktemp -d "$(dirname "$tarball")/build-$release.XXXXXX")
    # shellcheck disable=SC2064
    trap "unmount_under '$work'; rm -rf '$work'" EXIT
    local base=$work/base scratch=$work/scratch
    log "debootstrap $release from $mirror"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus "$release" "$base" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
    unmount_under "$base"
    rm -rf "$base/var/cache/apt/archives/"*.deb
    configure_host "$base"
    local codename
    codename=$(. "$base/etc/os-release" && echo "$VERSION_CODENAME")

    log "downloading the host lane's packages and their dependencies"
    cp -a "$base" "$scratch"
    cp /etc/resolv.conf "$scratch/etc/resolv.conf"
    mount_minimal "$scratch"
    chroot_run "$scratch" apt-get -q update >/dev/null
    chroot_run "$scratch" apt-get -q -y --download-only install "${SERVER_PACKAGES[@]}" >/dev/null
    mkdir -p "$base/srv/debian-mirror"
    mv "$scratch"/var/cache/apt/archives/*.deb "$base/srv/debian-mirror/"

    log "building the stand-in mongodb-org (SecantusDB) and its signed repository"
    chroot_run "$scratch" apt-get -q -y --no-install-recommends install python3-venv apt-utils gnupg >/dev/null
    mkdir -p "$scratch/srv/mongodb-repo"
    build_standin "$scratch" "$scratch/srv/mongodb-repo"
    sign_standin_repository "$scratch" "$codename"
    cp -a "$scratch/srv/mongodb-repo" "$base/srv/"
    mkdir -p "$scratch/srv/debian-mirror"
    mount --bind "$base/srv/debian-mirror" "$scratch/srv/debian-mirror"
    chroot_run "$scratch" sh -ec '
        cd /srv/debian-mirror
        apt-ftparchive packages . > Packages
        apt-ftparchive -o APT::FTPArchive::Release::Origin=box-mirror release . > Release'
    umount "$scratch/srv/debian-mirror"
    unmount_under "$scratch"

    # The box's Debian archive is the local mirror (an air-gapped host).
    rm -f "$base/etc/apt/sources.list"
    echo 'deb [trusted=yes] file:/srv/debian-mirror ./' >"$base/etc/apt/sources.list.d/box-mirror.list"
    rm -rf "$base/var/lib/apt/lists/"*
    mkdir -p "$base/var/lib/apt/lists/partial"
    mount_minimal "$base"
    chroot_run "$base" apt-get -q update >/dev/null
    unmount_under "$base"
    log "writing $tarball"
    tar -C "$base" --numeric-owner --xattrs -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
}

# ------------------------------------------------------------------- boot --

boot() {
    local root=$1 cgroup=$2
    local fifo
    ip link set lo up
    ip link add gw0 type veth peer name eth0
    ip addr add "$LAN_ADDRESS/24" dev gw0
    ip link set gw0 up
    fifo=$(mktemp -u /tmp/stackinstall-box.XXXXXX)
    mkfifo -m 600 "$fifo"
    echo $$ >"$cgroup/cgroup.procs"
    # Should this launcher die (the test process was killed), its unshare
    # gets SIGKILL, and with it the box's PID 1 (--kill-child).
    setpriv --pdeathsig KILL unshare --pid --fork --kill-child=SIGKILL --mount --net --uts --ipc \
        --cgroup --propagation private "$BOX_DIR/box.sh" inner "$root" "$fifo" </dev/null &
    local launcher=$! box=""
    for _ in $(seq 200); do
        box=$(cat "/proc/$launcher/task/$launcher/children" 2>/dev/null | awk '{print $1}')
        [[ -n $box ]] && break
        sleep 0.05
    done
    [[ -n $box ]] || { log "the box's PID 1 did not appear"; exit 1; }
    ip link set eth0 netns "$box"
    nsenter -t "$box" -n sh -ec "ip link set lo up; ip addr add $BOX_ADDRESS/24 dev eth0;
        ip link set eth0 up; ip route add default via $LAN_ADDRESS"
    echo "box $box"
    echo go >"$fifo"
    rm -f "$fifo"
    wait "$launcher" || true
}

inner() {
    local root=$1 fifo=$2 node
    read -r _ <"$fifo"
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --bind "$root/proc/sys" "$root/proc/sys"
    mount -o remount,bind,ro "$root/proc/sys"
    if [[ -e $root/proc/sysrq-trigger ]]; then
        mount --bind /dev/null "$root/proc/sysrq-trigger"
    fi
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
    mount -t tmpfs -o mode=755,nosuid tmpfs "$root/dev"
    for node in null:1:3 zero:1:5 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<<"$node"
        mknod -m 666 "$root/dev/$name" c "$major" "$minor"
    done
    touch "$root/dev/console"
    mount --bind /dev/null "$root/dev/console"
    mkdir "$root/dev/pts" "$root/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
    ln -s pts/ptmx "$root/dev/ptmx"
    exec chroot "$root" /usr/bin/env -i container=other /lib/systemd/systemd
}

BOX_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command=${1:-}
shift || true
case $command in
build) build "$@" ;;
boot) boot "$@" ;;
inner) inner "$@" ;;
*)
    echo "usage: box.sh build RELEASE TARBALL | boot ROOT CGROUP" >&2
    exit 2
    ;;
esac
