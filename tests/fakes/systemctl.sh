# Fake systemctl: enabled and active units as files in $STATE/systemd/.
# As systemctl(1): `enable UNIT` enables it (starts it only with --now),
# `disable` likewise stops it only with --now; `start`/`restart` make it
# active, `stop` inactive; `is-enabled` prints the state (`enabled` or
# `disabled`) and exits 0 only for an enabled one; `is-active` exits 0 only
# for an active one. The unit is the last argument.
mkdir -p "$STATE/systemd"
unit="${@: -1}"
now=0
for argument in "$@"; do [ "$argument" = --now ] && now=1; done
case "$1" in
  daemon-reload) date +%s%N >> "$STATE/systemd/reloads" ;;
  enable) touch "$STATE/systemd/$unit.enabled"; [ $now = 0 ] || touch "$STATE/systemd/$unit.active" ;;
  disable) rm -f "$STATE/systemd/$unit.enabled"; [ $now = 0 ] || rm -f "$STATE/systemd/$unit.active" ;;
  start|restart) touch "$STATE/systemd/$unit.active" ;;
  stop) rm -f "$STATE/systemd/$unit.active" ;;
  is-enabled) if [ -f "$STATE/systemd/$unit.enabled" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  is-active) [ -f "$STATE/systemd/$unit.active" ] ;;
esac
