#!/usr/bin/env bash
# Runs inside each VM of vagrant/multi as root (see its Vagrantfile).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
join_dir=/stackinstall/vagrant/multi/.join
config=/etc/stackinstall/multi.toml

if [ "$NODE_ROLE" = "first" ]; then
  install -d -m 0700 /etc/stackinstall
  # The export serves the other VMs; the registration address is this VM's.
  others=$(printf '"%s",' ${OTHERS//,/ }); others="[${others%,}]"
  printf '[nfs]\nnode_addresses = %s\n' "$others" > "$config"
  STACKINSTALL_CONFIG="$config" bash /stackinstall/vagrant/provision.sh
  export STACKINSTALL_CONFIG="$config"
  if [ "$HA" = "1" ]; then
    stackinstall ha enable
    [ -d /var/lib/rancher/k3s/server/db/etcd ]
    role=server
  else
    role=agent
  fi
  stackinstall join-command --role "$role" --ttl 2h
  [ "$(stat -c '%a %U' /etc/stackinstall/join-$role.toml)" = "600 root" ]
  install -d -m 0700 "$join_dir"
  install -m 0600 "/etc/stackinstall/join-$role.toml" "$join_dir/join.toml"
  exit 0
fi

echo "==> build tools and stackinstall"
apt-get update -q
apt-get install -y -q build-essential curl ca-certificates pkg-config
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=/var/tmp/stackinstall-target
(cd /stackinstall && cargo build --release --locked)
built="$CARGO_TARGET_DIR/release/stackinstall"
if [ -n "${AWS_ACCESS_KEY_ID:-}" ] && [ ! -f /root/.aws/credentials ]; then
  install -d -m 0700 /root/.aws
  umask 077
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > /root/.aws/credentials
  umask 022
fi

echo "==> join as $NODE_ROLE (one at a time: vagrant provisions the VMs in order)"
"$built" join --server "https://$FIRST:6443" --role "$NODE_ROLE" --token-file "$join_dir/join.toml"
[ "$(stat -c '%a %U' /etc/stackinstall/k3s-join-token)" = "600 root" ]
unit=k3s; [ "$NODE_ROLE" = agent ] && unit=k3s-agent
systemctl is-active "$unit"
! pgrep -a k3s | grep -q -- '--token '     # the token is in no argv
echo "==> a second join changes nothing"
"$built" join --server "https://$FIRST:6443" --role "$NODE_ROLE" --token-file "$join_dir/join.toml" | tee /tmp/again
if [ "$(hostname)" = third ]; then rm -rf "$join_dir"; fi
