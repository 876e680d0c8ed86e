# Fake helm: each release's history in $STATE/helm/RELEASE.json; what the
# values file held, and its mode, in $STATE/helm/values-*. The body of a
# `World::fake`: `$STATE` and `$STDIN` are set.
#
# A release puts its objects into the fake cluster's store ($STATE/kube, see
# cluster.py) and `uninstall` takes them away: the NFS provisioner's chart
# (a `nfs-subdir-external-provisioner-*.tgz` file) makes its StorageClass
# (from `--set storageClass.*`) and an available Deployment; any other chart
# makes the objects of $STATE/chart/*.json (what the test's application chart
# holds) in the release's namespace.
#
# `pull REF [--version V] --destination DIR` writes DIR/NAME-V.tgz (V is
# 1.0.0, the "newest", without --version): the bytes of
# $STATE/registry/NAME-V.tgz when the test put a chart there, else a
# stand-in text; for an `oci://` reference it prints Helm's `Pulled:` and
# `Digest:` lines (the manifest digest: the SHA-256 of `manifest of ` and
# the file's SHA-256). `upgrade` of a chart file records its SHA-256 in
# $STATE/helm/RELEASE.chart-sha256 (a missing file is Helm's error).
#
# Arguments are read as Helm's cobra/pflag reads them: flags anywhere, the
# values of the flags that take one, `--` ending the flags (what follows is
# positional even if it starts with `-`). `--set-string KEY=VALUE` is read
# as helm's pkg/strvals/parser.go reads it: `\` takes the next character as
# it is and an unescaped `,` starts another KEY=VALUE.
mkdir -p "$STATE/helm"
args=("$@")
description=""; values=""; namespace=default; sets=(); version=""; destination=""; positional=()
split_set() { # one --set(-string) argument: each unescaped-comma part
  local text="$1" part="" c i
  for ((i = 0; i < ${#text}; i++)); do
    c="${text:i:1}"
    case "$c" in
      \\) i=$((i+1)); part+="${text:i:1}" ;;
      ,) sets+=("$part"); part="" ;;
      *) part+="$c" ;;
    esac
  done
  sets+=("$part")
}
i=0
while [ "$i" -lt "${#args[@]}" ]; do
  value="${args[$((i+1))]:-}"
  case "${args[$i]}" in
    --) positional+=("${args[@]:$((i+1))}"); break ;;
    --description) description="$value" ;;
    --values) values="$value" ;;
    --namespace|-n) namespace="$value" ;;
    --set|--set-string) split_set "$value" ;;
    --version) version="$value" ;;
    --destination) destination="$value" ;;
    --timeout|--max|--output|-o|--template) ;;
    -*) i=$((i+1)); continue ;;
    *) positional+=("${args[$i]}"); i=$((i+1)); continue ;;
  esac
  i=$((i+2))
done
setting() { for s in "${sets[@]}"; do [ "${s%%=*}" = "$1" ] && printf %s "${s#*=}"; done; }
put() { # kind namespace name json: one object of the release
  mkdir -p "$STATE/kube/$1/$2"
  printf %s "$4" > "$STATE/kube/$1/$2/$3.json"
  grep -qxF "$STATE/kube/$1/$2/$3.json" "$STATE/helm/$release.objects" 2>/dev/null \
    || echo "$STATE/kube/$1/$2/$3.json" >> "$STATE/helm/$release.objects"
}
pull() { # reference
  local name="${1##*/}" file
  [ -n "$version" ] || version=1.0.0
  [ -d "$destination" ] || { echo "Error: failed to untar: mkdir $destination: no such file or directory" >&2; exit 1; }
  file="$destination/$name-$version.tgz"
  if [ -f "$STATE/registry/$name-$version.tgz" ]; then cp "$STATE/registry/$name-$version.tgz" "$file"
  else printf 'a stand-in for the chart %s %s\n' "$name" "$version" > "$file"; fi
  case "$1" in oci://*)
    echo "Pulled: ${1#oci://}:$version"
    echo "Digest: sha256:$(printf 'manifest of %s' "$(sha256sum "$file" | cut -d' ' -f1)" | sha256sum | cut -d' ' -f1)" ;;
  esac
}
provisioner_objects() {
  class=$(setting storageClass.name)
  put storageclass _ "$class" "$(jq -cn --arg n "$class" --arg a "$(setting storageClass.archiveOnDelete)" \
    '{kind: "StorageClass", apiVersion: "storage.k8s.io/v1", metadata: {name: $n},
      provisioner: "cluster.local/nfs-subdir-external-provisioner", parameters: {archiveOnDelete: $a}, reclaimPolicy: "Delete"}')"
  put deployment "$namespace" "$release" "$(jq -cn --arg n "$release" --arg ns "$namespace" \
    --arg server "$(setting nfs.server)" --arg path "$(setting nfs.path)" \
    '{kind: "Deployment", metadata: {name: $n, namespace: $ns},
      spec: {template: {spec: {containers: [{name: "nfs-subdir-external-provisioner",
        env: [{name: "NFS_SERVER", value: $server}, {name: "NFS_PATH", value: $path}]}]}}},
      status: {replicas: 1, availableReplicas: 1}}')"
}
chart_objects() {
  for file in "$STATE"/chart/*.json; do
    [ -f "$file" ] || continue
    put "$(jq -r '.kind | ascii_downcase' "$file")" "$namespace" "$(jq -r .metadata.name "$file")" \
      "$(jq -c --arg ns "$namespace" '.metadata.namespace = $ns' "$file")"
  done
}
add_revision() { # status description
  local file="$STATE/helm/$release.json"
  [ -f "$file" ] || echo '[]' > "$file"
  jq --arg s "$1" --arg d "$2" 'map(if .status == "deployed" and $s == "deployed" then .status = "superseded" else . end)
     | . + [{revision: (length + 1), status: $s, description: $d, chart: "stackbill-1.0.0"}]' "$file" > "$file.new"
  mv "$file.new" "$file"
}
release="${positional[1]:-}"
case "${positional[0]:-}" in
  version) printf v3.14.2 ;;
  pull) pull "${positional[1]}" ;;
  history)
    [ -f "$STATE/helm/$release.json" ] || { echo "Error: release: not found" >&2; exit 1; }
    cat "$STATE/helm/$release.json" ;;
  upgrade)
    if [ -f "$STATE/helm/$release.json" ] && jq -e '.[-1].status | startswith("pending")' "$STATE/helm/$release.json" >/dev/null; then
      echo "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress" >&2; exit 1
    fi
    chart="${positional[2]}"
    if [ -n "$values" ]; then
      stat -c %a "$values" > "$STATE/helm/values-mode"
      cp "$values" "$STATE/helm/values-seen.yaml"
    fi
    [ -f "$STATE/helm-fails" ] && { echo "Error: INSTALLATION FAILED: chart not found" >&2; exit 1; }
    case "$chart" in
      /*) [ -f "$chart" ] || { echo "Error: path \"$chart\" not found" >&2; exit 1; }
          sha256sum "$chart" | cut -d' ' -f1 > "$STATE/helm/$release.chart-sha256" ;;
    esac
    # Pending while it works, as Helm is: a run killed here leaves the
    # release pending-install or pending-upgrade.
    if [ -f "$STATE/helm/$release.json" ]; then pending=pending-upgrade; else pending=pending-install; fi
    add_revision "$pending" "$description"
    [ -f "$STATE/../delay" ] && sleep "$(cat "$STATE/../delay")"
    case "$chart" in
      *nfs-subdir-external-provisioner-*.tgz) provisioner_objects ;;
      *) chart_objects ;;
    esac
    jq 'map(if .status == "deployed" then .status = "superseded" else . end) | .[-1].status = "deployed"' \
      "$STATE/helm/$release.json" > "$STATE/helm/$release.json.new"
    mv "$STATE/helm/$release.json.new" "$STATE/helm/$release.json"
    echo "Release \"$release\" has been upgraded. Happy Helming!" ;;
  rollback) add_revision deployed "Rollback to ${positional[2]}" ;;
  uninstall)
    [ -f "$STATE/helm/$release.objects" ] && xargs rm -f < "$STATE/helm/$release.objects"
    rm -f "$STATE/helm/$release.json" "$STATE/helm/$release.objects"
    echo "release \"$release\" uninstalled" ;;
esac
