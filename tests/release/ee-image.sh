#!/usr/bin/env bash
# Build the execution environment of tests/release/ee/execution-environment.yml with podman and
# run hypervisor.libvirt.host_facts against test:///default inside it (make ee-image, as root).
#
# No registry of container images is reachable here, so the base image is made from Debian's
# packages: debootstrap bookworm (python3 in a venv at /opt/ee, which ansible-builder's pip
# bootstrap needs: Debian's system python refuses ensurepip), plus a dnf-style front end for
# apt-get, which ansible-builder's scripts call. The image build then installs from Debian and
# PyPI (host network). Containers run with runc (crun refuses this machine's hybrid cgroups)
# and get lower rlimits than this machine's: raising them is not permitted here.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$root/.build/release
base=localhost/hvl-ee-base:bookworm
image=localhost/hvl-libvirt-ee:latest
limits=(--ulimit nofile=1024:4096 --ulimit nproc=4096:8192)
log() { printf '[ee-image] %s\n' "$*"; }

need=()
command -v podman >/dev/null || need+=(podman fuse-overlayfs)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! podman image exists "$base"; then
  rootfs=$(mktemp -d /var/tmp/hvl-ee-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap bookworm into $rootfs (minutes)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" >/dev/null
  chroot "$rootfs" python3 -m venv --system-site-packages /opt/ee
  # The image trusts what this machine trusts (where HTTPS goes through a proxy with its own CA,
  # pip in the image needs that CA as much as pip here does).
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then  # kept by update-ca-certificates
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  cat > "$rootfs/usr/local/bin/apt-as-dnf" <<'SH'
#!/bin/sh
# "dnf install -y PKG..." and "dnf clean all" for ansible-builder's scripts, done with apt-get.
set -e
cmd=$1; shift
case "$cmd" in
  install)
    [ "${1:-}" = -y ] && shift
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" ;;
  clean) apt-get clean; rm -rf /var/lib/apt/lists/* ;;
  *) echo "apt-as-dnf: $cmd is not supported" >&2; exit 1 ;;
esac
SH
  chmod 0755 "$rootfs/usr/local/bin/apt-as-dnf"
  tar -C "$rootfs" -c . | podman import --change 'ENV PATH=/opt/ee/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$base" >/dev/null
  log "base image $base"
fi

log "building the collection tarball"
mkdir -p "$work/dist" "$work/ee-files"
rm -f "$work"/dist/*.tar.gz
"$root/.venv/bin/ansible-galaxy" collection build --output-path "$work/dist" "$root" >/dev/null
cp "$work"/dist/hypervisor-libvirt-*.tar.gz "$work/ee-files/hypervisor-libvirt.tar.gz"

log "ansible-builder build -> $image"
"$root/.venv/bin/ansible-builder" build -f "$root/tests/release/ee/execution-environment.yml" \
  -c "$work/ee-image-context" -t "$image" --container-runtime podman \
  --extra-build-cli-args "--runtime runc --network host ${limits[*]}" -v 2 > "$work/ee-image-build.log" 2>&1 \
  || { tail -40 "$work/ee-image-build.log"; exit 1; }

log "inside $image:"
in_ee() { podman --runtime runc run --rm --network none "${limits[@]}" "$image" "$@"; }
in_ee ansible-galaxy collection list hypervisor.libvirt
in_ee python3 -c 'import libvirt, lxml; print("libvirt-python", libvirt.getVersion(), "lxml", lxml.__version__)'
daemons=$(in_ee sh -c "dpkg-query -W -f='\${Package}\n' | grep -E '^(libvirt-daemon|qemu-system)' || true")
[ -z "$daemons" ] || { echo "the EE holds hypervisor packages: $daemons" >&2; exit 1; }
out=$(in_ee ansible localhost -c local -m hypervisor.libvirt.host_facts -a uri=test:///default)
grep -q '"hypervisor_type": "TEST"' <<<"$out" || { echo "$out" >&2; echo "host_facts did not report the test driver" >&2; exit 1; }
grep -E '"(hypervisor_type|libvirt_version|vcpu_total)"' <<<"$out"
log "host_facts ran against test:///default in $image; no libvirtd or QEMU in it"
