#!/usr/bin/env bash
# make fresh-check: prove the README's commands on Debian 12 roots made from nothing.
#
# The machine this runs on keeps whatever earlier work installed, so a green `make test` here
# says nothing about a new machine. This script bootstraps a minimal Debian 12 root
# (debootstrap --variant=minbase; the bootstrapped base alone is cached under
# /var/cache/hypervisor-libvirt), copies the checkout into it and runs, as a new user would:
#
#   sysv     no service manager (a container, a CI runner): make demo, make unit and the
#            integration targets that boot a guest (domain, firewall_traffic)
#   systemd  systemd as PID 1, as on an ordinary Debian server: make demo, whose hypervisor
#            role then runs virtlogd and libvirtd as systemd services
#
# Each root runs in its own mount, PID, UTS and network namespaces: its libvirtd, bridges,
# dnsmasq and iptables rules never touch this machine's. It gets a /dev of its own (device
# nodes made afresh in a tmpfs, so its set-up cannot chgrp this machine's /dev/kvm) and
# reaches the package registries through a veth pair NATed by this machine, which forwards
# nothing to private ranges but its DNS server. Of this machine it carries in only what any
# user's machine would have: pip's configuration (files, PIP_* variables and the local
# wheel/index directories they name, read-only) and the extra CA certificates in
# /usr/local/share/ca-certificates. Everything is removed afterwards, also on failure.
#
# Usage: scripts/fresh-check.sh [sysv] [systemd]      (as root; default: both)
# Environment: HVL_FRESH_REFRESH=1 bootstraps the cached base again;
#              HVL_FRESH_TIMEOUT  minutes per root (default 45).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
CACHE=/var/cache/hypervisor-libvirt
BASE=$CACHE/bookworm-minbase.tar
MIRROR=http://deb.debian.org/debian
INSIDE=/srv/hypervisor.libvirt
LOGDIR=$SRC/.build/fresh-check
TIMEOUT_MIN=${HVL_FRESH_TIMEOUT:-45}
variants=("$@")
[ "${#variants[@]}" -gt 0 ] || variants=(sysv systemd)

log() { printf '[fresh-check] %s\n' "$*"; }
die() { printf '[fresh-check] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, namespaces, NAT)"
for v in "${variants[@]}"; do
  case $v in sysv|systemd) ;; *) die "unknown variant '$v' (sysv, systemd)" ;; esac
done

need=()
for t in debootstrap:debootstrap ip:iproute2 iptables:iptables unshare:util-linux nsenter:util-linux; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]} on this machine"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -n 9 || { log "another fresh-check runs; waiting for it"; flock 9; }

# --- the cached base: what debootstrap produced, nothing else -----------------------------
if [ ! -s "$BASE" ] || [ "${HVL_FRESH_REFRESH:-0}" = 1 ]; then
  log "bootstrapping Debian 12 (minbase) into the cache $BASE"
  mkdir -p "$CACHE"
  tmpbase=$(mktemp -d "$CACHE/.bootstrap.XXXXXX")
  start=$SECONDS
  debootstrap --variant=minbase bookworm "$tmpbase" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { rm -rf --one-file-system "$tmpbase"; die "debootstrap failed, see $CACHE/debootstrap.log"; }
  chmod 0755 "$tmpbase"
  tar -C "$tmpbase" --numeric-owner -cpf "$BASE.tmp" .
  mv "$BASE.tmp" "$BASE"
  rm -rf --one-file-system "$tmpbase"
  log "base bootstrapped in $((SECONDS - start)) s"
fi

# --- state to undo ---------------------------------------------------------------------------
WORK=$(mktemp -d /var/tmp/hvl-fresh.XXXXXX)
tag=$(basename "$WORK" | tr -dc 'a-zA-Z0-9' | tail -c 6)
NETNS=hvl-fresh-$tag
VETH_HOST=hvlf${tag}h
VETH_NS=hvlf${tag}n
CHAIN=HVL-FRESH-$tag
forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
ns_pid=""
CGROUP=hvl-fresh-$tag
# Every cgroup hierarchy of this machine (v1 controllers and/or the unified v2 one): a booted
# systemd makes its slices inside a cgroup of ours, removed afterwards, not beside this machine's.
cgroup_roots=$(awk '$9 == "cgroup" || $9 == "cgroup2" { print $5 }' /proc/self/mountinfo)

cgroup_remove() {
  local m d i
  for m in $cgroup_roots; do
    [ -d "$m/$CGROUP" ] || continue
    for i in $(seq 1 50); do
      [ -z "$(find "$m/$CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && break
      sleep 0.2
    done
    find "$m/$CGROUP" -depth -type d 2>/dev/null | while read -r d; do rmdir "$d" 2>/dev/null; done
  done
}

cleanup() {
  set +e
  [ -n "$ns_pid" ] && kill -KILL "$ns_pid" 2>/dev/null && wait "$ns_pid" 2>/dev/null
  cgroup_remove
  net_down
  echo "$forward_before" >/proc/sys/net/ipv4/ip_forward
  # The roots' mounts live in their own mount namespaces and went with them; refuse to
  # delete through anything still mounted all the same.
  if findmnt -rn -o TARGET | grep -q "^$WORK"; then
    echo "[fresh-check] something is still mounted under $WORK; left in place" >&2
  else
    rm -rf --one-file-system "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the network: a namespace per root that reaches the registries through NAT, nothing private
net_up() {
  ip netns add "$NETNS"
  ip link add "$VETH_HOST" type veth peer name "$VETH_NS"
  ip link set "$VETH_NS" netns "$NETNS"
  ip addr add 100.127.253.1/30 dev "$VETH_HOST"
  ip link set "$VETH_HOST" up
  ip -n "$NETNS" addr add 100.127.253.2/30 dev "$VETH_NS"
  ip -n "$NETNS" link set "$VETH_NS" up
  ip -n "$NETNS" link set lo up
  ip -n "$NETNS" route add default via 100.127.253.1
  echo 1 >/proc/sys/net/ipv4/ip_forward
  iptables -N "$CHAIN"
  iptables -I FORWARD 1 -j "$CHAIN"
  iptables -A "$CHAIN" -o "$VETH_HOST" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  iptables -A "$CHAIN" -o "$VETH_HOST" -j DROP
  for ns in $(awk '$1 == "nameserver" && $2 ~ /^[0-9.]+$/ { print $2 }' /etc/resolv.conf); do
    iptables -A "$CHAIN" -i "$VETH_HOST" -d "$ns" -p udp --dport 53 -j ACCEPT
    iptables -A "$CHAIN" -i "$VETH_HOST" -d "$ns" -p tcp --dport 53 -j ACCEPT
  done
  for net in 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 169.254.0.0/16 100.64.0.0/10 127.0.0.0/8 \
             $(ip -4 -o addr show scope global | awk '{ print $4 }'); do
    iptables -A "$CHAIN" -i "$VETH_HOST" -d "$net" -j DROP
  done
  iptables -A "$CHAIN" -i "$VETH_HOST" -j ACCEPT
  iptables -t nat -A POSTROUTING -s 100.127.253.0/30 ! -o "$VETH_HOST" -j MASQUERADE
}

net_down() {
  iptables -D FORWARD -j "$CHAIN" 2>/dev/null
  iptables -F "$CHAIN" 2>/dev/null; iptables -X "$CHAIN" 2>/dev/null
  iptables -t nat -D POSTROUTING -s 100.127.253.0/30 ! -o "$VETH_HOST" -j MASQUERADE 2>/dev/null
  ip link del "$VETH_HOST" 2>/dev/null
  ip netns del "$NETNS" 2>/dev/null
  return 0
}

# --- what a user's machine would have of this one: pip's configuration and extra CAs --------
PIP_ENV=()
while IFS= read -r line; do PIP_ENV+=("$line"); done < <(env | grep '^PIP_' || true)
pip_files=()
pip_paths=()
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  while IFS= read -r f; do pip_files+=("$f"); done < <(
    python3 -m pip config debug 2>/dev/null | sed -n 's/^ *\(\/[^,]*\), exists: True$/\1/p')
  # Local directories and files the configuration names (find-links, file:// indexes with the
  # files their pages link to beside simple/, constraints); the CA bundle it names is the
  # root's own, made from its CA store.
  while IFS= read -r p; do pip_paths+=("$p"); done < <(
    { python3 -m pip config list 2>/dev/null | sed 's/^[^=]*=//; s/^'"'"'//; s/'"'"'$//'
      printf '%s\n' "${PIP_ENV[@]}" | sed 's/^[^=]*=//'; } |
    tr ' ' '\n' | sed -n 's#^file://##; s#/simple/*$##; /^\//p' | grep -v '^/etc/ssl/' | sort -u)
fi

# --- one root ----------------------------------------------------------------------------------
# Runs inside the new namespaces (as their PID 1): mounts the root's own /proc, /sys, /dev,
# /run, /tmp and the carried-in pip paths, then either runs the commands or boots systemd.
make_inner() {
  cat <<'EOF'
set -euo pipefail
R=$1; mode=$2; carry=$3; shift 3
cmd=("$@")
# The root is a mount point of its own, as / is on any machine (libvirt's per-domain mount
# namespace makes / a slave mount, which a plain directory cannot be).
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t tmpfs -o mode=0755,size=64m devtmp "$R/dev"
# No /dev/kvm: with a node of its own made here, the root's libvirtd starting a guest still
# changed the group of this machine's /dev/kvm (seen by a watcher, at the moment of the start),
# after which this machine's libvirt probes QEMU anew at every call. The roots are machines
# without KVM; KVM detection is proven on this machine by make test.
for spec in "null c 1 3" "zero c 1 5" "full c 1 7" "random c 1 8" "urandom c 1 9" "tty c 5 0" \
            "net/tun c 10 200" "vhost-net c 10 238" "fuse c 10 229"; do
  set -- $spec
  host=/dev/$1
  [ -c "$host" ] || continue
  mkdir -p "$(dirname "$R/dev/$1")"
  mknod -m 0666 "$R/dev/$1" c "$3" "$4"
done
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777 shm "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=0755 run "$R/run"
mount -t tmpfs -o mode=1777 tmp "$R/tmp"
while read -r p; do
  [ -n "$p" ] || continue
  mkdir -p "$R$p"
  mount --bind "$p" "$R$p"
  mount -o remount,bind,ro "$R$p"
done <"$carry"
hostname hvl-fresh
if [ "$mode" = boot ]; then
  exec chroot "$R" /usr/bin/env -i container=hvl-fresh-check /lib/systemd/systemd --system
fi
exec chroot "$R" "${cmd[@]}"
EOF
}

prepare_root() {  # prepare_root DIR: the cached base, Debian's usual sources, the checkout, carry-ins
  local r=$1 f p
  mkdir -p "$r"
  tar -C "$r" --numeric-owner -xpf "$BASE"
  chmod 0755 "$r"
  cat >"$r/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  mkdir -p "$r$INSIDE" "$r/usr/local/share/ca-certificates"
  tar -C "$SRC" --exclude=./.venv --exclude=./.build --exclude=./tests/output -cf - . | tar -C "$r$INSIDE" -xf -
  cp -a /usr/local/share/ca-certificates/. "$r/usr/local/share/ca-certificates/" 2>/dev/null || true
  for f in "${pip_files[@]}"; do mkdir -p "$r$(dirname "$f")"; cp "$f" "$r$f"; done
  : >"$WORK/carry"
  for p in "${pip_paths[@]}"; do
    if [ -d "$p" ]; then echo "$p" >>"$WORK/carry"
    elif [ -f "$p" ]; then mkdir -p "$r$(dirname "$p")"; cp "$p" "$r$p"
    fi
  done
}

inside_env() {  # the environment a root user's login shell would have, plus pip's variables
  printf '%s\n' HOME=/root LANG=C.UTF-8 TERM=dumb "CI=${CI:-}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${PIP_ENV[@]}"
}

# What a failed step leaves to read: who QEMU runs as, the modes on the way to the guests' files,
# libvirt's QEMU settings and the end of the newest domains' logs.
DIAGNOSE='diagnose() {
  echo "=== fresh-check diagnostics"
  id libvirt-qemu 2>&1 || true
  getent group kvm libvirt libvirt-qemu || true
  grep -h "^[a-z_]* *=" /etc/libvirt/qemu.conf 2>/dev/null || true
  ls -ld /var/lib/libvirt /var/lib/libvirt/images /var/lib/libvirt/images/* /var/lib/libvirt/boot/* 2>&1 || true
  for f in $(ls -t /var/log/libvirt/qemu/*.log 2>/dev/null | head -n 3); do echo "--- $f"; tail -n 15 "$f"; done
  return 0
}
trap '"'"'rc=$?; [ "$rc" -eq 0 ] || diagnose; exit "$rc"'"'"' EXIT
'
# The README's prerequisite (make is not in a minimal Debian), then the README's commands.
STEPS_SYSV=$DIAGNOSE'set -euo pipefail
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null
step() { local s=$SECONDS; echo "=== fresh-check step: $*"; "$@"; echo "=== fresh-check step passed in $((SECONDS - s)) s: $*"; }
cd '"$INSIDE"'
step make demo
step make demo
step make unit
step make integration TARGETS="domain firewall_traffic"'
STEPS_SYSTEMD=$DIAGNOSE'set -euo pipefail
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null
step() { local s=$SECONDS; echo "=== fresh-check step: $*"; "$@"; echo "=== fresh-check step passed in $((SECONDS - s)) s: $*"; }
cd '"$INSIDE"'
step make demo
state=$(systemctl is-active virtlogd.service libvirtd.service | tr "\n" " ")
echo "=== services through systemd: $state"
[ "$state" = "active active " ]
step make demo'

host_kvm() { [ -c /dev/kvm ] && stat -c '%u %g %a' /dev/kvm; }

# Should this machine's /dev/kvm still change while a root runs, say so and put it back:
# libvirt here would probe QEMU anew at every call otherwise.
kvm_guard() {  # kvm_guard VARIANT "UID GID MODE"
  local now
  now=$(host_kvm || true)
  [ "$now" = "$2" ] && return 0
  log "warning: this machine's /dev/kvm changed from '$2' to '$now' during $1; restored"
  set -- $2
  chown "$1:$2" /dev/kvm && chmod "$3" /dev/kvm
}

run_variant() {
  local v=$1 r=$WORK/$v logf=$LOGDIR/$v.log start=$SECONDS rc=0 envs=() kvm_before
  kvm_before=$(host_kvm || true)
  mkdir -p "$LOGDIR"
  log "$v: preparing a root from the cached base"
  net_down
  net_up
  prepare_root "$r"
  make_inner >"$WORK/inner.sh"
  while IFS= read -r e; do envs+=("$e"); done < <(inside_env)
  if [ "$v" = systemd ]; then
    log "$v: installing systemd into the root and booting it as PID 1"
    nsenter --net="/run/netns/$NETNS" unshare --mount --pid --uts --fork --kill-child \
      bash "$WORK/inner.sh" "$r" run "$WORK/carry" /usr/bin/env -i "${envs[@]}" bash -c \
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd systemd-sysv dbus >/dev/null' \
      >"$logf" 2>&1 || { log "$v: installing systemd failed, see $logf"; return 1; }
    # shellcheck disable=SC2016
    bash -c 'for m in $1; do mkdir -p "$m/$2" && echo $$ >"$m/$2/cgroup.procs"; done; shift 2; exec "$@"' \
      cgroups "$cgroup_roots" "$CGROUP" \
      nsenter --net="/run/netns/$NETNS" unshare --mount --pid --uts --cgroup --fork --kill-child \
      bash "$WORK/inner.sh" "$r" boot "$WORK/carry" >>"$logf" 2>&1 &
    ns_pid=$!
    local pid1="" i
    for i in $(seq 1 100); do
      pid1=$(ps -o pid= --ppid "$ns_pid" | tr -d ' ' | head -n 1)
      [ -n "$pid1" ] && [ "$(cat "/proc/$pid1/comm" 2>/dev/null)" = systemd ] && break
      sleep 0.2
    done
    [ -n "$pid1" ] || { log "$v: systemd did not start"; return 1; }
    local state=""
    # until systemd answers on its bus (it opens it a moment after it starts), at most 2 minutes
    for i in $(seq 1 120); do
      state=$(timeout 120 nsenter -t "$pid1" -m -u -n -p -r -w /usr/bin/env -i "${envs[@]}" \
                systemctl is-system-running --wait 2>&1 || true)
      case $state in *"Failed to connect"*|"") sleep 1 ;; *) break ;; esac
    done
    log "$v: systemd is $state ($(nsenter -t "$pid1" -m -p -r systemctl --failed --plain --no-legend 2>/dev/null | awk '{print $1}' | tr '\n' ' '))"
    timeout "${TIMEOUT_MIN}m" nsenter -t "$pid1" -m -u -n -p -r -w /usr/bin/env -i "${envs[@]}" \
      bash -c "$STEPS_SYSTEMD" >>"$logf" 2>&1 || rc=$?
    kill -KILL "$ns_pid" "$pid1" 2>/dev/null; wait "$ns_pid" 2>/dev/null || true
    ns_pid=""
    cgroup_remove
  else
    timeout "${TIMEOUT_MIN}m" nsenter --net="/run/netns/$NETNS" unshare --mount --pid --uts --fork --kill-child \
      bash "$WORK/inner.sh" "$r" run "$WORK/carry" /usr/bin/env -i "${envs[@]}" bash -c "$STEPS_SYSV" >"$logf" 2>&1 || rc=$?
  fi
  [ -z "$kvm_before" ] || kvm_guard "$v" "$kvm_before"
  grep '^=== fresh-check step\|^=== services' "$logf" | sed "s/^/[fresh-check] $v: /" || true
  if [ "$rc" -ne 0 ]; then
    log "$v: FAILED (exit $rc) after $((SECONDS - start)) s; the end of $logf:"
    tail -n 40 "$logf" | sed 's/^/    /'
    return 1
  fi
  log "$v: passed in $((SECONDS - start)) s (log: $logf)"
  rm -rf --one-file-system "$r"
}

failed=()
for v in "${variants[@]}"; do
  run_variant "$v" || failed+=("$v")
done
if [ "${#failed[@]}" -gt 0 ]; then
  log "failed: ${failed[*]}"
  exit 1
fi
log "all passed: ${variants[*]}"
