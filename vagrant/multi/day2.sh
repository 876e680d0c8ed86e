#!/usr/bin/env bash
# Day 2 across nodes on real K3s (issue 27), what the tests' fakes cannot
# show, run from the host after `vagrant up` in this directory:
#   STACKINSTALL_HA=1 vagrant up && bash day2.sh upgrade v1.29.6+k3s2   # three servers
#   vagrant up && bash day2.sh upgrade v1.29.6+k3s2                     # one server, two agents
#   STACKINSTALL_HA=1 bash day2.sh restore                              # three servers
# `upgrade NEW`: the first server (`install`, backed up, holding the servers'
# Lease), then the other servers one at a time, then the agents (`join` with a
# new join file each), checking every node's kubelet version after each.
# `restore`: a backup on the first server, a restore there (cluster reset),
# then the other servers join again (their datastore set aside).
set -euo pipefail
cd "$(dirname "$0")"
ha=${STACKINSTALL_HA:-0}
domain=${STACKINSTALL_DOMAIN:-stackbill.local}
first_config=/etc/stackinstall/multi.toml
built=/var/tmp/stackinstall-target/release/stackinstall
join_dir=/stackinstall/vagrant/multi/.join
others=(second third)
role=agent; [ "$ha" = 1 ] && role=server

# Runs `script` as root on the VM `node`.
on() { vagrant ssh "$1" -c "sudo bash -euo pipefail -c $(printf '%q' "$2")"; }

versions() {
  on first "kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion} {end}'"
}

# A join file of `role` made on the first server, handed over through the
# shared folder (root's 0600 on both sides).
hand_over() {
  on first "STACKINSTALL_CONFIG=$first_config stackinstall join-command --role $1 --ttl 1h \
    && install -d -m 0700 $join_dir && install -m 0600 /etc/stackinstall/join-$1.toml $join_dir/join.toml"
}

# `join` on `node` as `role` with the join file, pinning K3s `version`.
join_with() {
  local node=$1 role=$2 version=$3
  on "$node" "install -d -m 0700 /etc/stackinstall \
    && printf '[versions]\nk3s = \"%s\"\n' $version > /etc/stackinstall/day2.toml \
    && $built join --config /etc/stackinstall/day2.toml --server https://192.168.56.10:6443 --role $role --token-file $join_dir/join.toml"
}

upgrade() {
  local new=$1
  echo "==> before: $(versions)"
  echo "==> the first server: planned (it names who follows), then upgraded"
  on first "STACKINSTALL_CONFIG=$first_config STACKINSTALL_VERSIONS__K3S=$new stackinstall install --domain $domain --self-signed --plan" \
    | tee /tmp/day2-plan
  grep -q "upgrade K3s .* → $new" /tmp/day2-plan
  on first "STACKINSTALL_CONFIG=$first_config STACKINSTALL_VERSIONS__K3S=$new stackinstall install --domain $domain --self-signed --yes"
  on first "ls /var/lib/stackinstall/backups/ | grep -q backup-before-k3s-$new"
  on first "! kubectl -n kube-system get lease stackinstall-server-join"
  if [ "$role" = agent ]; then
    echo "==> the agents follow (the servers all run $new)"
  fi
  for node in "${others[@]}"; do
    echo "==> $node ($role) joins again with $new"
    hand_over "$role"
    join_with "$node" "$role" "$new"
    echo "==> now: $(versions)"
  done
  rm -rf "$join_dir"
  versions | tr ' ' '\n' | grep -v "^$" | grep -vq "=$new" && { echo "a node is not on $new"; exit 1; }
  on first "stackinstall nodes"
  echo "==> every node runs $new"
}

restore() {
  [ "$ha" = 1 ] || { echo "restore across nodes needs the three servers (STACKINSTALL_HA=1)"; exit 2; }
  on first "STACKINSTALL_CONFIG=$first_config stackinstall backup --unencrypted --out /root/day2.tar.gz"
  echo "==> a joined server refuses the restore"
  ! on second "$built restore --yes /root/day2.tar.gz"
  on first "STACKINSTALL_CONFIG=$first_config stackinstall restore --yes /root/day2.tar.gz" 2>&1 | tee /tmp/day2-restore
  grep -q "must join it again" /tmp/day2-restore
  local current
  current=$(on first "k3s --version | head -1 | cut -d\" \" -f3")
  for node in "${others[@]}"; do
    echo "==> $node joins the restored cluster again"
    hand_over server
    join_with "$node" server "$current"
    on "$node" "ls -d /var/lib/rancher/k3s/server/db.before-rejoin-*"
  done
  rm -rf "$join_dir"
  on first "kubectl get nodes"
  on first "stackinstall doctor --domain $domain"
}

case "${1:-}" in
  upgrade) upgrade "${2:?the new K3s version, e.g. v1.29.6+k3s2}" ;;
  restore) restore ;;
  *) echo "usage: bash day2.sh upgrade NEW_K3S_VERSION | restore"; exit 2 ;;
esac
