# Fake systemctl: enabled and active units as files in $STATE/systemd/.
mkdir -p "$STATE/systemd"
case "$1" in
  daemon-reload) date +%s%N >> "$STATE/systemd/reloads" ;;
  enable) touch "$STATE/systemd/$3.enabled" "$STATE/systemd/$3.active" ;;
  disable) rm -f "$STATE/systemd/$3.enabled" "$STATE/systemd/$3.active" ;;
  is-enabled) [ -f "$STATE/systemd/$3.enabled" ] ;;
  is-active) [ -f "$STATE/systemd/$3.active" ] ;;
esac
