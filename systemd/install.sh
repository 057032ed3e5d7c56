#!/usr/bin/env bash
# Install packcam's systemd units, users and folders on this machine (run as root).
# Walkthrough: docs/raspberry-pi.md. Safe to run again after an upgrade: it never touches an
# existing /etc/packcam/packcam.toml, data, keys or accounts, and it restarts nothing.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: sudo systemd/install.sh [--prefix DIR] [--no-enable] [--root DIR]

  --prefix DIR   where packcam is installed, with its venv in DIR/.venv (default /opt/packcam;
                 not under /home or /root, which the services cannot see)
  --no-enable    install only; do not enable the services (they are never started here)
  --root DIR     install into an image or test tree at DIR (no systemctl calls)

Creates the users packcam-station and packcam-web in group packcam (sysusers.d), the folders
/etc/packcam and /var/lib/packcam/{clips,proof,proof-public,export-requests,exports}
(tmpfiles.d), copies config/packcam.example.toml (with the Pi camera, backend = "picamera2")
to /etc/packcam/packcam.toml when there is none, installs packcam-station.service and packcam-web.service, reloads systemd and enables
both.
EOF
}

prefix=/opt/packcam
root=""
enable=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --no-enable) enable=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

# The units run with ProtectHome=yes (no /home, /root or /run/user) and systemd needs an
# absolute ExecStart=: units pointing elsewhere could never start.
case "$prefix" in
  /home|/home/*|/root|/root/*|/run/user|/run/user/*|[!/]*)
    echo "install.sh: --prefix $prefix: the services cannot run packcam from there (they see" \
         "no /home, /root or /run/user, and the path must be absolute); install it in" \
         "/opt/packcam (docs/raspberry-pi.md, 'Install packcam')" >&2
    exit 2 ;;
esac

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
root="${root%/}"

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo $0 $*)" >&2
  exit 1
fi
for tool in systemd-sysusers systemd-tmpfiles install; do
  command -v "$tool" >/dev/null || { echo "install.sh: $tool not found (apt install systemd)" >&2; exit 1; }
done
if [ -z "$root" ] && [ ! -x "$prefix/.venv/bin/packcam" ]; then
  echo "install.sh: $prefix/.venv/bin/packcam does not exist yet; the services will fail until" \
       "it does (see docs/raspberry-pi.md, 'Install packcam')" >&2
fi

# 1. users and group
install -D -m 0644 "$here/packcam.sysusers" "$root/etc/sysusers.d/packcam.conf"
systemd-sysusers ${root:+--root="$root"} "$root/etc/sysusers.d/packcam.conf"

# 2. folders (owners and modes; run again at every boot by systemd-tmpfiles-setup)
install -D -m 0644 "$here/packcam.tmpfiles" "$root/etc/tmpfiles.d/packcam.conf"
systemd-tmpfiles ${root:+--root="$root"} --create "$root/etc/tmpfiles.d/packcam.conf"

# 3. the config: root-owned, readable by both services, never overwritten. On the Pi's camera,
# not the example's synthetic demo scene: a station started before anyone edited its config
# would sign and index that scene's scripted orders as evidence.
gid="$(awk -F: '$1 == "packcam" { print $3 }' "$root/etc/group")"
config="$root/etc/packcam/packcam.toml"
if [ ! -e "$config" ]; then
  (umask 077 && sed -e 's/^backend = "synthetic"/backend = "picamera2"/' \
    "$repo/config/packcam.example.toml" > "$config.new")
  grep -q '^backend = "picamera2"' "$config.new" \
    || { rm -f "$config.new"; echo "install.sh: no [camera] backend line in the example config" >&2; exit 1; }
  chown "0:$gid" "$config.new"
  chmod 0640 "$config.new"
  mv -f "$config.new" "$config"
  echo "install.sh: wrote $config from config/packcam.example.toml (camera: picamera2):" \
       "edit it (camera, scanner)"
else
  echo "install.sh: kept the existing $config"
fi

# 4. the units, pointing at this prefix (replaced atomically: a drop-in keeps local changes)
mkdir -p "$root/etc/systemd/system"
for unit in packcam-station.service packcam-web.service; do
  dest="$root/etc/systemd/system/$unit"
  sed -e "s|/opt/packcam/|${prefix%/}/|g" "$here/$unit" > "$dest.new"
  chmod 0644 "$dest.new"
  mv -f "$dest.new" "$dest"
done

if [ -n "$root" ]; then
  echo "install.sh: installed into $root (no systemctl calls)"
  exit 0
fi
systemctl daemon-reload
if [ "$enable" = 1 ]; then
  systemctl enable packcam-station.service packcam-web.service
fi
cat <<EOF
install.sh: done. Next:
  sudoedit /etc/packcam/packcam.toml        # camera backend, scanner, station name, [web] host
  sudo -u packcam-web $prefix/.venv/bin/packcam user add NAME --role admin --config /etc/packcam/packcam.toml
  sudo systemctl start packcam-station packcam-web
  systemctl status packcam-station          # "recording ... fps" once the camera delivers
EOF
