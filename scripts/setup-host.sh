#!/usr/bin/env bash
# Prepare this Debian machine as a libvirt/QEMU hypervisor for the demo and the tests:
# system packages, the users libvirt's qemu driver needs, and running virtlogd + libvirtd.
# Idempotent and quick when everything is already there. Run as root.
set -euo pipefail

PACKAGES=(
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-config-nwfilter libvirt-clients
  libvirt-dev pkg-config gcc python3-dev python3-venv qemu-system-x86 qemu-utils ebtables iptables dnsmasq-base
  genisoimage busybox-static iproute2 curl cpio xz-utils git rsync
)
URI=qemu:///system

log() { printf '[setup-host] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host.sh must run as root (it installs packages and starts libvirtd)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirt's qemu driver looks these up even when qemu.conf runs guests as root.
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null || \
  useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
getent group libvirt >/dev/null || groupadd --system libvirt
getent group kvm >/dev/null || groupadd --system kvm
id -nG libvirt-qemu | grep -qw kvm || usermod -a -G kvm libvirt-qemu
# Debian's udev rule makes /dev/kvm root:kvm 0660; without udev it stays root-only, libvirt then
# finds KVM "gone" at every call and re-probes QEMU (seconds per capabilities call).
if [ -c /dev/kvm ] && [ "$(stat -c %G:%a /dev/kvm)" != "kvm:660" ]; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
mkdir -p /var/log/libvirt /var/run/libvirt /var/lib/libvirt/images /var/lib/libvirt/qemu/nvram

daemon_up() { virsh -c "$URI" -q version >/dev/null 2>&1; }

if ! daemon_up; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    log "starting virtlogd and libvirtd through systemd"
    systemctl start virtlogd.socket virtlogd.service libvirtd.service || true
  fi
fi
if ! daemon_up; then
  log "starting virtlogd and libvirtd as daemons"
  pgrep -x virtlogd >/dev/null || virtlogd --daemon
  pgrep -x libvirtd >/dev/null || libvirtd --daemon
  for _ in $(seq 1 50); do daemon_up && break; sleep 0.2; done
fi
if ! daemon_up; then
  echo "libvirtd did not come up at $URI; see /var/log/libvirt/libvirtd.log" >&2
  exit 1
fi
log "libvirtd answers at $URI ($(virsh -c "$URI" -q version --daemon | sed -n 's/^Running against daemon: //p'))"
