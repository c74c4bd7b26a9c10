#!/usr/bin/env bash
# Prepare this Debian machine as a libvirt/QEMU hypervisor for the demo and the tests:
# system packages, what libvirt's packaging creates, and running virtlogd + libvirtd.
# Idempotent and quick when everything is already there. Run as root.
#
# Why Debian's libvirt-daemon-system and not a hand-made list of users and directories:
# its maintainer scripts create the libvirt-qemu and libvirt-dnsmasq users, the libvirt
# group, /var/log/libvirt/qemu, /var/lib/libvirt/{images,qemu,dnsmasq,...} and the
# daemons' units (libvirt-daemon-system-systemd) or init scripts (-sysv), exactly as on
# any packaged hypervisor. A hand-made copy of that list drifted once already (no
# /var/log/libvirt/qemu: no guest could start). Where systemd is not PID 1 (containers,
# CI runners, debootstrap roots) the -sysv flavour adds init scripts, so the daemons
# start the same way there as anywhere else. What packaging leaves to udev (the kvm
# group, /dev/kvm's owner) is done here, because no udev runs in such places.
set -euo pipefail

PACKAGES=(
  # libvirt as Debian packages it, QEMU, and what guests of every supported spec need
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-daemon-config-nwfilter libvirt-clients
  qemu-system-x86 qemu-utils ovmf swtpm swtpm-tools ebtables iptables dnsmasq-base genisoimage
  lvm2  # libvirt's logical (LVM) storage pools run its tools
  # building libvirt-python into .venv
  libvirt-dev pkg-config gcc python3-dev python3-venv ca-certificates
  # the tests: the bootable test guest, its client namespace, process tools
  busybox-static iproute2 curl cpio xz-utils git rsync procps
  openssh-server  # the remote-URI test: an sshd on loopback for qemu+ssh://
  virtinst  # the corpus test: domain XML as virt-install writes it
  xorriso  # the guest role makes cloud-init seed ISOs where the play runs
  chromium  # the release checks render the docs site in headless Chromium
)
URI=qemu:///system

log() { printf '[setup-host] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host.sh must run as root (it installs packages and starts libvirtd)" >&2
  exit 1
fi

systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }
systemd_running || PACKAGES+=(libvirt-daemon-system-sysv)

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

# udev's part: the kvm group, libvirt-qemu in it, and /dev/kvm root:kvm 0660. Without udev the
# node stays root-only; libvirt then finds KVM "gone" at every call and re-probes QEMU.
getent group kvm >/dev/null || groupadd --system kvm
id -nG libvirt-qemu | grep -qw kvm || usermod -a -G kvm libvirt-qemu
if [ -c /dev/kvm ] && [ "$(stat -c %G:%a /dev/kvm)" != "kvm:660" ]; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

daemon_up() { virsh -c "$URI" -q version >/dev/null 2>&1; }

if ! daemon_up; then
  if systemd_running; then
    log "starting virtlogd and libvirtd through systemd"
    systemctl start virtlogd.socket virtlogd.service libvirtd.service
  else
    log "starting virtlogd and libvirtd through their init scripts"
    for d in virtlogd libvirtd; do
      pgrep -x "$d" >/dev/null || "/etc/init.d/$d" start >/dev/null
    done
  fi
  for _ in $(seq 1 50); do daemon_up && break; sleep 0.2; done
fi
if ! daemon_up; then
  echo "libvirtd did not come up at $URI; see /var/log/libvirt/libvirtd.log" >&2
  exit 1
fi
log "libvirtd answers at $URI ($(virsh -c "$URI" -q version --daemon | sed -n 's/^Running against daemon: //p'))"
