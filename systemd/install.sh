#!/usr/bin/env bash
# Install or update DeskPulse as a systemd service on Raspberry Pi OS (Bookworm or
# Trixie, 64-bit) or Debian. Run from a checkout or an unpacked release bundle, as root:
#
#   sudo systemd/install.sh kiosk --provision hotel-berlin.front-desk.provision.toml
#   sudo systemd/install.sh kiosk --site hotel-berlin --device front-desk --broker mqtts://mqtt.example:8883
#   sudo systemd/install.sh central --broker mqtt://127.0.0.1:1883
#   sudo systemd/install.sh kiosk --rollback
#
# From a release bundle (make bundle; bundle.json next to systemd/), it installs the
# bundle's wheels with no PyPI and no git into /opt/deskpulse/releases/VERSION and makes
# that release current; --rollback makes the release before it current again.
#
# Running it again updates the software; it changes exactly the configuration keys
# its options name (and says so), keeps every other key, and never touches
# /var/lib/deskpulse once it exists. Secrets never go on the command line: with
# --username the MQTT password is read from standard input (or asked for); with
# --provision it comes from the file. Both end in /etc/deskpulse/mqtt-password (0640).
set -euo pipefail

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'USAGE'

options:
  --provision FILE   (kiosk) site, device, broker URL, user, password and CA from
                     'deskpulse-central device add' (docs/security.md)
  --site SLUG        site slug (kiosk; a-z, 0-9, '-')
  --device SLUG      device slug (kiosk)
  --broker URL       mqtt://host:port or mqtts://host:port (a new file: default mqtt://127.0.0.1:1883)
  --username NAME    MQTT user; the password is read from stdin
  --ca-file PATH     CA certificate for mqtts:// (a path on the target)
  --user NAME        the service's user (default deskpulse; its primary group reads the config)
  --root DIR         install into DIR as the target's root filesystem: files are written under
                     DIR; apt-get, useradd, usermod, the venv, pip, the config check and
                     systemctl are recorded in DIR/var/log/deskpulse-install.log, not run
  --rollback         make the release installed before the current one current again
                     (bundle installs), restart the service, change nothing else
  --no-start         install and enable, but do not (re)start the service
  --dry-run          print what would be done, change nothing
  -h, --help         this text

Configuration: /etc/deskpulse/ROLE.toml and mqtt-password are 0640 root:GROUP (the
service's group). Exit status: 0 done, 1 a step failed, 2 a bad option or file.
USAGE
}

ROLE="${1:-}"
case "$ROLE" in
  kiosk|central) shift ;;
  -h|--help) usage; exit 0 ;;
  *) echo "install.sh: first argument must be 'kiosk' or 'central' (see --help)" >&2; exit 2 ;;
esac

# The Debian packages every role needs, and those a kiosk adds: the libraries pygame-ce's
# KMSDRM driver loads, with Mesa's DRI drivers (without them SDL says "EGL not initialized").
# gpiozero's lgpio comes from the wheels (Debian has no python3-lgpio; Raspberry Pi OS's
# is used when it is installed). dev/pivm.py reads these two lines.
PACKAGES="python3-venv python3-pip"
KIOSK_PACKAGES="libdrm2 libgbm1 libegl1 libgles2 libgl1-mesa-dri fonts-dejavu-core"

SITE="" DEVICE="" BROKER="" USERNAME="" CA_FILE="" PROVISION="" START=1 DRY=0 ROOT="" SVC_USER=deskpulse ROLLBACK=0
need() { [ $# -ge 2 ] || { echo "install.sh: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --site) need "$@"; SITE="$2"; shift 2 ;;
    --device) need "$@"; DEVICE="$2"; shift 2 ;;
    --broker) need "$@"; BROKER="$2"; shift 2 ;;
    --username) need "$@"; USERNAME="$2"; shift 2 ;;
    --ca-file) need "$@"; CA_FILE="$2"; shift 2 ;;
    --provision) need "$@"; PROVISION="$2"; shift 2 ;;
    --user) need "$@"; SVC_USER="$2"; shift 2 ;;
    --root) need "$@"; ROOT="$2"; shift 2 ;;
    --rollback) ROLLBACK=1; shift ;;
    --no-start) START=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

slug='^[a-z0-9-]{1,64}$'
[ -z "$SITE" ] || [[ "$SITE" =~ $slug ]] || { echo "install.sh: --site must be a slug like hotel-berlin" >&2; exit 2; }
[ -z "$DEVICE" ] || [[ "$DEVICE" =~ $slug ]] || { echo "install.sh: --device must be a slug like front-desk" >&2; exit 2; }
[ -z "$BROKER" ] || [[ "$BROKER" =~ ^mqtts?:// ]] || { echo "install.sh: --broker must start with mqtt:// or mqtts://" >&2; exit 2; }
[[ "$SVC_USER" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || { echo "install.sh: --user must be a user name like deskpulse" >&2; exit 2; }
if [ -n "$PROVISION" ]; then
  [ "$ROLE" = kiosk ] || { echo "install.sh: --provision is for a kiosk" >&2; exit 2; }
  [ -r "$PROVISION" ] || { echo "install.sh: --provision $PROVISION: no such readable file" >&2; exit 2; }
  [ -z "$USERNAME" ] || { echo "install.sh: --provision gives the MQTT user: leave --username out" >&2; exit 2; }
  PROVISION="$(cd "$(dirname "$PROVISION")" && pwd)/$(basename "$PROVISION")"
fi
if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || { echo "install.sh: --root $ROOT is not a directory" >&2; exit 2; }
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" != / ] || ROOT=""
fi

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX="$ROOT/opt/deskpulse" ETC="$ROOT/etc/deskpulse" DATA="$ROOT/var/lib/deskpulse"
UNITDIR="$ROOT/etc/systemd/system" RECORD="$ROOT/var/log/deskpulse-install.log"
CONF="$ETC/$ROLE.toml"

if [ "$ROLLBACK" = 0 ] && [ "$ROLE" = kiosk ] && [ ! -e "$CONF" ] && [ -z "$PROVISION" ] && { [ -z "$SITE" ] || [ -z "$DEVICE" ]; }; then
  echo "install.sh: a new kiosk needs --provision FILE, or --site and --device" >&2; exit 2
fi
if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ] && [ -z "$ROOT" ]; then
  echo "install.sh: run as root (sudo), or with --dry-run to see the steps, or --root DIR" >&2; exit 2
fi

# Under --root the steps on the running system are recorded as they would run there.
SYSTEMD_UP=1
[ -n "$ROOT" ] || [ -d /run/systemd/system ] || SYSTEMD_UP=0

# run: a step on the target's files (done under --root too). sys: a step on the running
# system (packages, users, services): recorded, not run, under --root.
run() { echo "+ $*"; [ "$DRY" = 1 ] || "$@"; }
sys() {
  if [ -n "$ROOT" ]; then
    echo "+ (recorded) $*"
    [ "$DRY" = 1 ] || { mkdir -p "$(dirname "$RECORD")"; printf '%s\n' "$*" >> "$RECORD"; }
  else
    run "$@"
  fi
}

# A release (make bundle) or a checkout: the release's wheels, or the source tree.
BUNDLE=0 VERSION="" HELPER_PATH="$SRC"
if [ -f "$SRC/bundle.json" ]; then
  BUNDLE=1
  field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$SRC/bundle.json" "$1"; }
  VERSION="$(field version)"
  [ "$(field role)" = "$ROLE" ] || { echo "install.sh: this bundle ($(field target)) is for a $(field role), not a $ROLE" >&2; exit 2; }
  python3 - "$SRC" <<'VERIFY' || exit 2
import hashlib, json, pathlib, sys
top = pathlib.Path(sys.argv[1])
files = json.loads((top / "bundle.json").read_text())["files"]
bad = [n for n, h in files.items() if not (top / n).is_file() or hashlib.sha256((top / n).read_bytes()).hexdigest() != h]
if bad:
    sys.exit(f"install.sh: the bundle is damaged: {', '.join(bad[:5])} missing or changed (download it again)")
print(f"bundle.json: {len(files)} files verified")
VERIFY
  HELPER_PATH="$(ls "$SRC"/wheels/deskpulse-"$VERSION"-*.whl)"  # the helpers are pure Python: run from the wheel
fi

# Which release /opt/deskpulse/venv points at ("" when it is not a release's).
current_release() {
  local link
  link="$(readlink "$PREFIX/venv" 2>/dev/null)" || { echo ""; return; }
  case "$link" in releases/*/venv) link="${link#releases/}"; echo "${link%/venv}" ;; *) echo "" ;; esac
}
# Point /opt/deskpulse/venv at a release atomically; remember the one before.
switch_to() {
  local was
  was="$(current_release)"
  if [ "$was" = "$1" ]; then echo "release $1 is current already"; return; fi
  if [ -d "$PREFIX/venv" ] && [ ! -L "$PREFIX/venv" ]; then
    run rm -rf "$PREFIX/venv"  # a checkout install's venv: releases replace it
  fi
  run ln -sfn "releases/$1/venv" "$PREFIX/venv.new"
  run mv -T "$PREFIX/venv.new" "$PREFIX/venv"
  if [ -n "$was" ]; then echo "+ remember $was as the release before"; [ "$DRY" = 1 ] || echo "$was" > "$PREFIX/previous-release"; fi
  echo "release $1 is current (was ${was:-none})"
}

if [ "$ROLLBACK" = 1 ]; then
  echo "== rollback"
  prev="$(cat "$PREFIX/previous-release" 2>/dev/null || true)"
  [ -n "$prev" ] || { echo "install.sh: --rollback: no release before the current one is recorded in $PREFIX/previous-release" >&2; exit 2; }
  [ -d "$PREFIX/releases/$prev" ] || { echo "install.sh: --rollback: release $prev is gone from $PREFIX/releases" >&2; exit 2; }
  switch_to "$prev"
  if [ "$ROLE" = central ]; then
    echo "note: a database migrated by the newer release stays migrated; if central does not start, see docs/operations.md (Release bundles)"
  fi
  if [ "$START" = 1 ] && [ "$SYSTEMD_UP" = 1 ]; then sys systemctl restart "deskpulse-$ROLE.service"; fi
  echo "done: release $prev runs; the configuration and data are as they were"
  exit 0
fi

echo "== system packages"
PKGS="$PACKAGES"
[ "$ROLE" != kiosk ] || PKGS="$PKGS $KIOSK_PACKAGES"
# apt only for what is missing: an offline install (a bundle on a prepared image) needs no network.
MISSING=""
for p in $PKGS; do
  if [ -n "$ROOT" ]; then admin=(--admindir "$ROOT/var/lib/dpkg"); else admin=(); fi
  state="$(dpkg-query "${admin[@]}" -W -f '${db:Status-Status}' "$p" 2>/dev/null || true)"
  [ "$state" = installed ] || MISSING="$MISSING $p"
done
if [ -z "$MISSING" ]; then
  echo "installed already: $PKGS (no apt needed)"
else
  sys apt-get update -q
  sys apt-get install -y -q --no-install-recommends $MISSING
fi

echo "== user and directories"
if id "$SVC_USER" >/dev/null 2>&1; then
  GROUP="$(id -gn "$SVC_USER")"
  echo "user $SVC_USER exists (group $GROUP)"
else
  GROUP="$SVC_USER"
  sys useradd --system --user-group --home-dir /var/lib/deskpulse --shell /usr/sbin/nologin "$SVC_USER"
fi
if [ "$ROLE" = kiosk ]; then
  # The unit's SupplementaryGroups: systemd refuses to start it (status=216/GROUP) when one is
  # missing, as gpio is on plain Debian (and render, input without udev): create those.
  for g in video render input gpio; do
    # Under --root, the target's groups count (all four exist when it has no /etc/group yet).
    if [ -n "$ROOT" ]; then
      if [ -f "$ROOT/etc/group" ] && ! grep -q "^$g:" "$ROOT/etc/group"; then sys groupadd --system "$g"; fi
    elif ! getent group "$g" >/dev/null; then
      echo "group $g is missing: created (the unit asks for it)"
      sys groupadd --system "$g"
    fi
    sys usermod -aG "$g" "$SVC_USER"
  done
fi
run install -d -m 0755 "$PREFIX" "$ETC" "$UNITDIR"
if [ -d "$DATA" ]; then
  echo "$DATA exists: not touched"
elif id "$SVC_USER" >/dev/null 2>&1; then
  run install -d -m 0750 -o "$SVC_USER" -g "$GROUP" "$DATA"
else
  run install -d -m 0750 "$DATA"
  sys chown "$SVC_USER:$GROUP" /var/lib/deskpulse
fi

echo "== software (a venv that also sees the system's packages, such as Raspberry Pi OS's own)"
# gpiozero's lgpio is a wheel ([pi]): Debian has no python3-lgpio, Raspberry Pi OS's is older.
if [ "$ROLE" = central ]; then extra="[central,postgres]"; else extra="[pi]"; fi
if [ "$BUNDLE" = 1 ]; then
  extras="$(field extras)"
  extra="${extras:+[$extras]}"
  REL="/opt/deskpulse/releases/$VERSION"
  run install -d -m 0755 "$ROOT$REL"
  run rm -rf "$ROOT$REL/wheels"
  run cp -r "$SRC/wheels" "$ROOT$REL/wheels"
  [ -d "$ROOT$REL/venv" ] || sys python3 -m venv --system-site-packages "$REL/venv"
  sys "$REL/venv/bin/pip" install -q --no-index --find-links "$REL/wheels" "deskpulse$extra==$VERSION"
  switch_to "$VERSION"
else
  run rm -rf "$PREFIX/src"
  run install -d -m 0755 "$PREFIX/src"
  echo "+ copy $SRC to $PREFIX/src (without .git, .venv, .demo)"
  [ "$DRY" = 1 ] || tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./.demo \
    --exclude=__pycache__ --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache -cf - . \
    | tar -C "$PREFIX/src" -xf -
  [ -d "$PREFIX/venv" ] || sys python3 -m venv --system-site-packages /opt/deskpulse/venv
  sys /opt/deskpulse/venv/bin/pip install -q --upgrade "/opt/deskpulse/src$extra"
fi

echo "== configuration in $ETC"
args=("$ROLE" --group "$GROUP")
[ -z "$ROOT" ] || args+=(--root "$ROOT")
if [ "$ROLE" = kiosk ]; then
  args+=(--default device.data_dir=/var/lib/deskpulse --default broker.url=mqtt://127.0.0.1:1883)
  [ -z "$SITE" ] || args+=(--set "device.site=$SITE")
  [ -z "$DEVICE" ] || args+=(--set "device.name=$DEVICE")
else
  args+=(--default broker.url=mqtt://127.0.0.1:1883
         --default database.url=sqlite:////var/lib/deskpulse/central.sqlite3 --default web.bind=127.0.0.1:8080)
fi
[ -z "$PROVISION" ] || args+=(--provision "$PROVISION")
[ -z "$BROKER" ] || args+=(--set "broker.url=$BROKER")
[ -z "$CA_FILE" ] || args+=(--set "broker.ca_file=$CA_FILE")
configure() { PYTHONPATH="$HELPER_PATH" python3 -m sync.installconf "$@"; }
if [ "$DRY" = 1 ]; then
  echo "+ python3 -m sync.installconf ${args[*]}${USERNAME:+ --set broker.username=$USERNAME --password-stdin}"
elif [ -n "$USERNAME" ]; then
  args+=(--set "broker.username=$USERNAME" --password-stdin)
  if [ -t 0 ]; then read -r -s -p "MQTT password for $USERNAME: " PASSWORD; echo; else read -r PASSWORD || true; fi
  printf '%s\n' "$PASSWORD" | configure "${args[@]}"
  unset PASSWORD
else
  configure "${args[@]}" </dev/null
fi
# Checked as the service's user: it proves that user can read the file and its secrets.
sys runuser -u "$SVC_USER" -- "/opt/deskpulse/venv/bin/deskpulse-$ROLE" check-config --config "/etc/deskpulse/$ROLE.toml"

echo "== systemd"
UNIT="deskpulse-$ROLE.service"
RELOAD=0
new_unit="$(sed -e "s/^User=deskpulse\$/User=$SVC_USER/" -e "s/^Group=deskpulse\$/Group=$GROUP/" "$SRC/systemd/$UNIT")"
if [ -f "$UNITDIR/$UNIT" ] && [ "$(cat "$UNITDIR/$UNIT")" = "$new_unit" ]; then
  echo "$UNITDIR/$UNIT unchanged"
else
  echo "+ write $UNITDIR/$UNIT ($([ -f "$UNITDIR/$UNIT" ] && echo "it differed" || echo new))"
  [ "$DRY" = 1 ] || { printf '%s\n' "$new_unit" > "$UNITDIR/$UNIT"; chmod 0644 "$UNITDIR/$UNIT"; }
  RELOAD=1
fi
if [ "$SYSTEMD_UP" = 0 ]; then
  # A chroot or an image being built: systemctl can enable, but there is nothing to reload or start.
  echo "systemd is not running here (no /run/systemd/system: a chroot or an image being built): the unit" \
       "is enabled and starts at the next boot"
  RELOAD=0 START=0
fi
[ "$RELOAD" = 0 ] || sys systemctl daemon-reload
sys systemctl enable "$UNIT"
if [ "$START" = 1 ]; then sys systemctl restart "$UNIT"; fi
echo "done: journalctl -u deskpulse-$ROLE -f shows its log"
