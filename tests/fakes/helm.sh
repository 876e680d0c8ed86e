# Fake helm: each release's history in $STATE/helm/RELEASE.json; what the
# values file held, and its mode, in $STATE/helm/values-*. The body of a
# `World::fake`: `$STATE` and `$STDIN` are set.
mkdir -p "$STATE/helm"
args=("$@")
description=""; values=""
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --description) description="${args[$((i+1))]}" ;;
    --values) values="${args[$((i+1))]}" ;;
  esac
done
add_revision() { # status description
  local file="$STATE/helm/$release.json"
  [ -f "$file" ] || echo '[]' > "$file"
  jq --arg s "$1" --arg d "$2" 'map(if .status == "deployed" and $s == "deployed" then .status = "superseded" else . end)
     | . + [{revision: (length + 1), status: $s, description: $d, chart: "stackbill-1.0.0"}]' "$file" > "$file.new"
  mv "$file.new" "$file"
}
release="$2"
case "$1" in
  version) printf v3.14.2 ;;
  history)
    [ -f "$STATE/helm/$release.json" ] || { echo "Error: release: not found" >&2; exit 1; }
    cat "$STATE/helm/$release.json" ;;
  upgrade)
    release="$3"
    if [ -f "$STATE/helm/$release.json" ] && jq -e '.[-1].status | startswith("pending")' "$STATE/helm/$release.json" >/dev/null; then
      echo "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress" >&2; exit 1
    fi
    stat -c %a "$values" > "$STATE/helm/values-mode"
    cp "$values" "$STATE/helm/values-seen.yaml"
    [ -f "$STATE/helm-fails" ] && { echo "Error: INSTALLATION FAILED: chart not found" >&2; exit 1; }
    # Pending while it works, as Helm is: a run killed here leaves the
    # release pending-install or pending-upgrade.
    if [ -f "$STATE/helm/$release.json" ]; then pending=pending-upgrade; else pending=pending-install; fi
    add_revision "$pending" "$description"
    [ -f "$STATE/../delay" ] && sleep "$(cat "$STATE/../delay")"
    jq 'map(if .status == "deployed" then .status = "superseded" else . end) | .[-1].status = "deployed"' \
      "$STATE/helm/$release.json" > "$STATE/helm/$release.json.new"
    mv "$STATE/helm/$release.json.new" "$STATE/helm/$release.json"
    echo "Release \"$release\" has been upgraded. Happy Helming!" ;;
  rollback) add_revision deployed "Rollback to $3" ;;
  uninstall) rm -f "$STATE/helm/$release.json"; echo "release \"$release\" uninstalled" ;;
esac
