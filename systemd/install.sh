#!/usr/bin/env bash
# Install or update DeskPulse as a systemd service on Raspberry Pi OS (Bookworm or
# Trixie, 64-bit) or Debian. Run from a checkout, as root:
#
#   sudo systemd/install.sh kiosk --site hotel-berlin --device front-desk --broker mqtts://mqtt.example:8883
#   sudo systemd/install.sh central --broker mqtt://127.0.0.1:1883
#
# Running it again updates the software and keeps /etc/deskpulse and /var/lib/deskpulse.
# Secrets never go on the command line: with --username the MQTT password is read
# from standard input (or asked for) and written to /etc/deskpulse/mqtt-password (0640).
set -euo pipefail

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'USAGE'

options:
  --site SLUG        site slug (kiosk; a-z, 0-9, '-')
  --device SLUG      device slug (kiosk)
  --broker URL       mqtt://host:port or mqtts://host:port (default mqtt://127.0.0.1:1883)
  --username NAME    MQTT user; the password is read from stdin
  --ca-file PATH     CA certificate for mqtts://
  --no-start         install and enable, but do not (re)start the service
  --dry-run          print what would be done, change nothing
  -h, --help         this text
USAGE
}

ROLE="${1:-}"
case "$ROLE" in
  kiosk|central) shift ;;
  -h|--help) usage; exit 0 ;;
  *) echo "install.sh: first argument must be 'kiosk' or 'central' (see --help)" >&2; exit 2 ;;
esac

SITE="" DEVICE="" BROKER="mqtt://127.0.0.1:1883" USERNAME="" CA_FILE="" START=1 DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --site) SITE="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --broker) BROKER="$2"; shift 2 ;;
    --username) USERNAME="$2"; shift 2 ;;
    --ca-file) CA_FILE="$2"; shift 2 ;;
    --no-start) START=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

slug='^[a-z0-9-]{1,64}$'
if [ "$ROLE" = kiosk ]; then
  [[ "$SITE" =~ $slug ]] || { echo "install.sh: --site must be a slug like hotel-berlin" >&2; exit 2; }
  [[ "$DEVICE" =~ $slug ]] || { echo "install.sh: --device must be a slug like front-desk" >&2; exit 2; }
fi
[[ "$BROKER" =~ ^mqtts?:// ]] || { echo "install.sh: --broker must start with mqtt:// or mqtts://" >&2; exit 2; }

run() { echo "+ $*"; [ "$DRY" = 1 ] || "$@"; }
if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or with --dry-run to see the steps" >&2; exit 2
fi

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/deskpulse ETC=/etc/deskpulse

echo "== system packages"
PKGS="python3-venv python3-pip"
if [ "$ROLE" = kiosk ]; then
  # lgpio for gpiozero; the libraries pygame-ce's KMSDRM driver loads.
  PKGS="$PKGS python3-lgpio libdrm2 libgbm1 libegl1 libgles2 fonts-dejavu-core"
fi
run apt-get update -q
run apt-get install -y -q --no-install-recommends $PKGS

echo "== user and directories"
if ! id deskpulse >/dev/null 2>&1; then
  run useradd --system --home-dir /var/lib/deskpulse --shell /usr/sbin/nologin deskpulse
fi
if [ "$ROLE" = kiosk ]; then
  for g in video render input gpio; do
    if getent group "$g" >/dev/null; then run usermod -aG "$g" deskpulse; fi
  done
fi
run install -d -m 0755 "$PREFIX" "$ETC"
run install -d -m 0750 -o deskpulse -g deskpulse /var/lib/deskpulse

echo "== software (venv with system site packages, for apt's lgpio)"
run rm -rf "$PREFIX/src"
run install -d -m 0755 "$PREFIX/src"
echo "+ copy $SRC to $PREFIX/src (without .git, .venv, .demo)"
[ "$DRY" = 1 ] || tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./.demo \
  --exclude=__pycache__ -cf - . | tar -C "$PREFIX/src" -xf -
[ -d "$PREFIX/venv" ] || run python3 -m venv --system-site-packages "$PREFIX/venv"
if [ "$ROLE" = central ]; then extra="[central,postgres]"; else extra=""; fi
run "$PREFIX/venv/bin/pip" install -q --upgrade "$PREFIX/src$extra"

echo "== configuration in $ETC (kept if present)"
CONF="$ETC/$ROLE.toml"
tls_lines=""
[ -n "$CA_FILE" ] && tls_lines="ca_file = \"$CA_FILE\""
user_lines=""
if [ -n "$USERNAME" ]; then
  user_lines="username = \"$USERNAME\"
password_file = \"$ETC/mqtt-password\""
  if [ "$DRY" = 0 ]; then
    if [ -t 0 ]; then read -r -s -p "MQTT password for $USERNAME: " PASSWORD; echo; else read -r PASSWORD; fi
    umask 027
    printf '%s\n' "$PASSWORD" > "$ETC/mqtt-password"
    chgrp deskpulse "$ETC/mqtt-password"
    chmod 0640 "$ETC/mqtt-password"
    unset PASSWORD
  fi
fi
if [ -e "$CONF" ]; then
  echo "$CONF exists: kept"
elif [ "$ROLE" = kiosk ]; then
  body="[device]
site = \"$SITE\"
name = \"$DEVICE\"
data_dir = \"/var/lib/deskpulse\"

[broker]
url = \"$BROKER\"
$user_lines
$tls_lines
"
  echo "+ write $CONF"; [ "$DRY" = 1 ] || printf '%s' "$body" > "$CONF"
else
  body="[broker]
url = \"$BROKER\"
$user_lines
$tls_lines

[database]
url = \"sqlite:////var/lib/deskpulse/central.sqlite3\"

[web]
bind = \"127.0.0.1:8080\"
"
  echo "+ write $CONF"; [ "$DRY" = 1 ] || printf '%s' "$body" > "$CONF"
fi
if [ "$ROLE" = kiosk ]; then
  run "$PREFIX/venv/bin/deskpulse-kiosk" check-config --config "$CONF"
else
  run "$PREFIX/venv/bin/deskpulse-central" check-config --config "$CONF"
fi

echo "== systemd"
run install -m 0644 "$SRC/systemd/deskpulse-$ROLE.service" /etc/systemd/system/
run systemctl daemon-reload
run systemctl enable "deskpulse-$ROLE.service"
if [ "$START" = 1 ]; then run systemctl restart "deskpulse-$ROLE.service"; fi
echo "done: journalctl -u deskpulse-$ROLE -f shows its log"
