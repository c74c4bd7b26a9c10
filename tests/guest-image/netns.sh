#!/usr/bin/env bash
# A network-namespace client on a libvirt bridge, so tests talk to their own
# guest from a host they made themselves (never from the machine's own stack).
#
#   netns.sh up   NAME BRIDGE ADDR/PREFIX   create namespace NAME with a veth
#                                           pair: host end enslaved to BRIDGE
#                                           (a bridge device or a libvirt
#                                           network name), ns end = ADDR
#   netns.sh down NAME                      remove it (idempotent, never fails)
#   netns.sh exec NAME [--] CMD [ARG...]    run CMD inside NAME (a CMD missing
#                                           on the host but provided by busybox,
#                                           like ping, runs as busybox CMD)
#
# Inside the namespace the interface is called "veth0" (and lo is up).
set -euo pipefail

prog=$(basename "$0")
die() { echo "$prog: error: $*" >&2; exit 1; }
usage() { die "usage: $prog up NAME BRIDGE ADDR/PREFIX | down NAME | exec NAME [--] CMD..."; }

[ $# -ge 2 ] || usage
action=$1 name=$2
shift 2
[[ $name =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad namespace name: $name"

# Host-side veth name: at most 15 characters, derived from NAME only.
host_if="hvn$(printf '%s' "$name" | sha256sum | cut -c1-10)"

# (no `| grep -q` under pipefail: an early exit of grep fails the pipeline)
ns_exists() { [ -e "/run/netns/$name" ] || [ -e "/var/run/netns/$name" ]; }

case "$action" in
up)
    [ $# -eq 2 ] || usage
    bridge=$1 addr=$2
    [[ $addr == */* ]] || die "ADDR must be ADDR/PREFIX, got: $addr"
    if [ ! -d "/sys/class/net/$bridge/bridge" ]; then
        # allow a libvirt network name instead of its bridge device
        br=$(virsh -q -c "${LIBVIRT_DEFAULT_URI:-qemu:///system}" net-info "$bridge" 2>/dev/null |
             awk '$1 == "Bridge:" { print $2 }' || true)
        [ -n "$br" ] && [ -d "/sys/class/net/$br/bridge" ] ||
            die "$bridge is neither a bridge device nor an active libvirt network"
        bridge=$br
    fi
    if ns_exists; then
        die "namespace $name already exists (run: $prog down $name)"
    fi
    ip link del "$host_if" 2>/dev/null || true
    ip netns add "$name"
    if ! {
        ip link add "$host_if" type veth peer name veth0 netns "$name" &&
        ip link set "$host_if" master "$bridge" &&
        ip link set "$host_if" up &&
        ip -n "$name" link set lo up &&
        ip -n "$name" addr add "$addr" dev veth0 &&
        ip -n "$name" link set veth0 up
    }; then
        ip netns del "$name" 2>/dev/null || true
        ip link del "$host_if" 2>/dev/null || true
        die "could not set up namespace $name on $bridge"
    fi
    ;;
down)
    ip netns del "$name" 2>/dev/null || true
    ip link del "$host_if" 2>/dev/null || true
    ;;
exec)
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || usage
    ns_exists || die "namespace $name does not exist"
    # e.g. ping is often not installed: fall back to the busybox applet
    if ! command -v "$1" >/dev/null && command -v busybox >/dev/null &&
       grep -qx -- "$1" <(busybox --list); then
        set -- busybox "$@"
    fi
    exec ip netns exec "$name" "$@"
    ;;
*)
    usage
    ;;
esac
