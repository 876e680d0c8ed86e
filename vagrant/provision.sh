#!/usr/bin/env bash
# Runs inside the VM as root: builds stackinstall from /stackinstall and runs
# the real install, then checks that a second run changes nothing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
domain="${STACKINSTALL_DOMAIN:-stackbill.local}"

echo "==> build tools"
apt-get update -q
apt-get install -y -q build-essential curl ca-certificates pkg-config
if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
export PATH="$HOME/.cargo/bin:$PATH"

echo "==> build stackinstall (release)"
export CARGO_TARGET_DIR=/var/tmp/stackinstall-target
(cd /stackinstall && cargo build --release --locked)
# Run from the build directory: the install copies itself to
# /usr/local/bin/stackinstall (root:root 0755), which the timer runs.
built="$CARGO_TARGET_DIR/release/stackinstall"

# The kubelet's credential provider and the renewal timer run without this
# shell: they find the AWS key in root's shared credentials file, as an
# operator's `aws configure` would write it (never in this repository).
if [ -n "${AWS_ACCESS_KEY_ID:-}" ] && [ ! -f /root/.aws/credentials ]; then
  echo "==> AWS key from the environment into /root/.aws/credentials (0600)"
  install -d -m 0700 /root/.aws
  umask 077
  {
    echo "[default]"
    echo "aws_access_key_id = $AWS_ACCESS_KEY_ID"
    echo "aws_secret_access_key = $AWS_SECRET_ACCESS_KEY"
    if [ -n "${AWS_SESSION_TOKEN:-}" ]; then echo "aws_session_token = $AWS_SESSION_TOKEN"; fi
  } > /root/.aws/credentials
  umask 022
fi

echo "==> plan (the bare form is the install)"
plan=$("$built" --domain "$domain" --self-signed --plan)
printf '%s\n' "$plan"
# Helm's archive is pinned in the profile: the real download must match it.
printf '%s\n' "$plan" | grep -q "helm-v3.14.2-linux-amd64.tar.gz (checked against pinned SHA-256"
# So is the provisioner's chart ([downloads.pins] too); the application
# chart is pulled into a root-only directory and installed from that file.
printf '%s\n' "$plan" | grep -q "nfs-subdir-external-provisioner-4.0.18.tgz (checked against pinned SHA-256"
printf '%s\n' "$plan" | grep -q "helm pull oci://"

echo "==> install, in the bare form as operators type it"
"$built" --domain "$domain" --self-signed --yes

echo "==> security: kubeconfig for root only, the timer runs the root-owned copy"
[ ! -e /var/lib/stackinstall/downloads/chart-stackbill ]   # the pulled chart is gone
[ "$(stat -c '%a %U' /etc/rancher/k3s/k3s.yaml)" = "600 root" ]
[ "$(stat -c '%a %U' /root/.kube/config)" = "600 root" ]
[ "$(stat -c '%a %U' /root/.kube)" = "700 root" ]
[ "$(stat -c '%a %U:%G' /usr/local/bin/stackinstall)" = "755 root:root" ]
cmp "$built" /usr/local/bin/stackinstall
grep -qx 'ExecStart=/usr/local/bin/stackinstall ecr-refresh --config /etc/stackinstall/ecr-refresh.toml' \
  /etc/systemd/system/stackinstall-ecr-refresh.service
(unset KUBECONFIG; kubectl get nodes)
if sudo -u nobody cat /etc/rancher/k3s/k3s.yaml >/dev/null 2>&1; then
  echo "another user can read the kubeconfig" >&2
  exit 1
fi

echo "==> mongodb: the key file and the localhost exception closed behind the first user"
[ "$(stat -c '%a %U' /var/lib/mongodb/encryption)" = "600 mongodb" ]
if mongosh --quiet --eval 'db.getSiblingDB("admin").runCommand({usersInfo: 1}).ok' | grep -qx 1; then
  echo "mongod answers usersInfo without a login: authorization is off" >&2
  exit 1
fi

export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
nfs_path=/data/stackbill

echo "==> storage: the StorageClass nfs-client, its provisioner, and a PVC that binds"
kubectl get storageclass nfs-client -o jsonpath='{.provisioner}' | grep -q nfs-subdir-external-provisioner
kubectl -n kube-system rollout status deployment/nfs-subdir-external-provisioner --timeout=180s
probe=stackinstall-probe
kubectl apply -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: $probe
  namespace: default
spec:
  storageClassName: nfs-client
  accessModes: [ReadWriteMany]
  resources:
    requests:
      storage: 1Mi
EOF
phase=""
for _ in $(seq 90); do
  phase=$(kubectl get pvc "$probe" -n default -o jsonpath='{.status.phase}')
  [ "$phase" = Bound ] && break
  sleep 2
done
if [ "$phase" != Bound ]; then
  kubectl describe pvc "$probe" -n default >&2
  echo "the probe PVC on nfs-client did not bind (phase: ${phase:-none})" >&2
  exit 1
fi
# The provisioner makes ${namespace}-${pvc}-${pv} on the export and, with
# archiveOnDelete (the profile's default), renames it archived-* on delete.
ls -d "$nfs_path/default-$probe-"* >/dev/null
kubectl delete pvc "$probe" -n default --wait=true
archived=""
for _ in $(seq 30); do
  archived=$(ls -d "$nfs_path/archived-default-$probe-"* 2>/dev/null || true)
  [ -n "$archived" ] && break
  sleep 2
done
if [ -z "$archived" ]; then
  echo "the deleted probe PVC's directory was not archived under $nfs_path" >&2
  exit 1
fi
rm -rf -- "$archived"

echo "==> jobs: istiod injects native sidecars, so a Job in the injected namespace completes"
kubectl -n istio-system get deployment istiod -o jsonpath='{.spec.template.spec.containers[0].env}' \
  | grep -q '"name":"ENABLE_NATIVE_SIDECARS","value":"true"'
kubectl -n sb-apps delete job stackinstall-probe-job --ignore-not-found
kubectl -n sb-apps create job stackinstall-probe-job --image=busybox:1.36 -- true
if ! kubectl -n sb-apps wait --for=condition=complete job/stackinstall-probe-job --timeout=300s; then
  kubectl -n sb-apps describe job stackinstall-probe-job >&2
  echo "a Job in the injected namespace did not complete" >&2
  exit 1
fi
kubectl -n sb-apps delete job stackinstall-probe-job --wait=true

echo "==> second run: every step must already be done"
second=$(stackinstall install --domain "$domain" --self-signed --yes --output json)
echo "$second"
if echo "$second" | grep -q '"result": "changed"'; then
  echo "a second install changed something" >&2
  exit 1
fi

echo "==> --skip-db takes the existing passwords from the credentials file"
stackinstall --domain "$domain" --self-signed --skip-db --yes

echo "==> status"
stackinstall status

echo "==> doctor: no error on a fresh install, and a support bundle"
stackinstall doctor --domain "$domain" --bundle /var/tmp/stackinstall-support.tar.gz
tar -tzf /var/tmp/stackinstall-support.tar.gz

if [ -n "${AWS_ACCESS_KEY_ID:-}" ]; then
  echo "==> credential provider: the plugin answers as the kubelet asks it"
  server=$(sed -n 's/^server = "\(.*\)"$/\1/p' /etc/stackinstall/ecr-refresh.toml | head -n1)
  image=$(kubectl get pods -n sb-apps -o jsonpath='{range .items[*]}{range .spec.containers[*]}{.image}{"\n"}{end}{end}' \
    | grep -m1 "^$server/")
  printf '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"%s"}' "$image" \
    | env -i PATH=/usr/bin:/bin HOME=/root /var/lib/rancher/credentialprovider/bin/stackinstall \
        ecr-credential-provider --config /etc/stackinstall/ecr-refresh.toml \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); sys.exit(0 if list(r["auth"]) == [sys.argv[1]] else 1)' "$server"

  echo "==> a pod pulls $image with the awscred Secret deleted and no imagePullSecrets"
  kubectl delete secret awscred -n sb-apps
  k3s crictl rmi "$image" >/dev/null 2>&1 || true
  kubectl create namespace provider-pull-test
  kubectl run provider-pull -n provider-pull-test --image="$image" --restart=Never --command -- sleep 30
  pulled=""
  for _ in $(seq 1 90); do
    pulled=$(kubectl get pod provider-pull -n provider-pull-test -o jsonpath='{.status.containerStatuses[0].imageID}')
    [ -n "$pulled" ] && break
    sleep 2
  done
  kubectl describe pod provider-pull -n provider-pull-test | tail -n 15
  kubectl delete namespace provider-pull-test --wait=false
  stackinstall ecr-refresh
  if [ -z "$pulled" ]; then
    echo "the kubelet could not pull $image through the credential provider" >&2
    exit 1
  fi
fi
