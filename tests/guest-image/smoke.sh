#!/usr/bin/env bash
# End-to-end proof of the hvl test guest with virsh only:
# isolated network -> boot (TCG) -> HTTP :80/:8080 + ping from a netns client
# -> NIC hot-plug / hot-unplug -> ACPI shutdown. Everything it creates is
# removed again by the EXIT trap, also on failure.
#
#   tests/guest-image/smoke.sh
#
# Environment (optional):
#   LIBVIRT_DEFAULT_URI    default qemu:///system
#   HVL_GUEST_IMAGE_DIR    where build.sh puts the image (default /var/tmp/hvl-guest-image)
#   HVL_SMOKE_KEEP_LOG=1   keep the work directory with console.log
#   HVL_SMOKE_BOOT_TIMEOUT / _LINK_TIMEOUT / _SHUTDOWN_TIMEOUT   seconds (120/60/30)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
URI=${LIBVIRT_DEFAULT_URI:-qemu:///system}
IMG=${HVL_GUEST_IMAGE_DIR:-/var/tmp/hvl-guest-image}
NET=hvl-smoke
BRIDGE=virbr-hvlsm
PREFIX=192.168.251
DOM=hvl-smoke-guest
NS=hvl-smoke-client
CLIENT_ADDR=$PREFIX.2/24
MAC1=52:54:00:fb:00:01
MAC2=52:54:00:fb:00:02
BOOT_TIMEOUT=${HVL_SMOKE_BOOT_TIMEOUT:-120}
LINK_TIMEOUT=${HVL_SMOKE_LINK_TIMEOUT:-60}
SHUTDOWN_TIMEOUT=${HVL_SMOKE_SHUTDOWN_TIMEOUT:-30}

log() { printf '%s smoke: %s\n' "$(date +%T)" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
vsh() { virsh -q -c "$URI" "$@"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

work=$(mktemp -d /var/tmp/hvl-smoke.XXXXXX)
chmod 0755 "$work"
console=$work/console.log

remove_all() {
    vsh destroy "$DOM" >/dev/null 2>&1 || true
    vsh undefine "$DOM" >/dev/null 2>&1 || true
    "$here/netns.sh" down "$NS" || true
    vsh net-destroy "$NET" >/dev/null 2>&1 || true
    vsh net-undefine "$NET" >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$?
    set +e
    if [ $rc -ne 0 ] && [ -f "$console" ]; then
        log "last console lines ($console):"
        tail -n 40 "$console" | tr -d '\r' | sed 's/^/    | /' >&2
    fi
    remove_all
    if [ "${HVL_SMOKE_KEEP_LOG:-0}" = 1 ] || [ $rc -ne 0 ]; then
        log "work directory kept: $work"
    else
        rm -rf "$work"
    fi
    [ $rc -eq 0 ] && log "PASS" || log "FAILED (rc=$rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for REGEX TIMEOUT [FROM_LINE] -> prints the first matching line
# (searching only lines after FROM_LINE), fails after TIMEOUT seconds.
wait_for() {
    local re=$1 timeout=$2 from=${3:-0} deadline line
    deadline=$(( $(date +%s) + timeout ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ -f "$console" ]; then
            line=$(tail -n +"$((from + 1))" "$console" | tr -d '\r' | grep -a -m1 -E "$re" || true)
            if [ -n "$line" ]; then echo "$line"; return 0; fi
        fi
        sleep 0.5
    done
    fail "no console line matching '$re' within ${timeout}s"
}
console_lines() { if [ -f "$console" ]; then wc -l < "$console"; else echo 0; fi; }

# --- image --------------------------------------------------------------------
"$here/build.sh" "$IMG"

# --- leftovers of an interrupted earlier run (same names, all ours) ----------
remove_all

# --- isolated network -----------------------------------------------------------
log "network $NET ($BRIDGE, $PREFIX.0/24, isolated)"
cat > "$work/net.xml" <<EOF
<network>
  <name>$NET</name>
  <bridge name='$BRIDGE' stp='off' delay='0'/>
  <ip address='$PREFIX.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='$PREFIX.100' end='$PREFIX.199'/>
    </dhcp>
  </ip>
</network>
EOF
vsh net-define "$work/net.xml" >/dev/null
# firewall setup can fail transiently while other tests change rules at the
# same moment: a few bounded attempts, each error shown
for attempt in 1 2 3; do
    vsh net-start "$NET" >/dev/null && break
    [ $attempt -lt 3 ] || fail "network $NET does not start"
    log "net-start $NET failed (attempt $attempt/3), retrying"
    sleep 2
done

# --- guest ----------------------------------------------------------------------
cat > "$work/dom.xml" <<EOF
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$IMG/vmlinuz</kernel>
    <initrd>$IMG/initrd.img</initrd>
    <cmdline>console=ttyS0 hvl.hostname=$DOM</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <interface type='network'>
      <source network='$NET'/>
      <mac address='$MAC1'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='$console'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='$console'/>
      <target type='serial' port='0'/>
    </console>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
vsh define "$work/dom.xml" >/dev/null
t0=$(now)
vsh start "$DOM" >/dev/null
log "guest $DOM started (TCG), waiting up to ${BOOT_TIMEOUT}s for the ready line"
ready=$(wait_for '^HVL-GUEST-READY ip=' "$BOOT_TIMEOUT")
t_ready=$(now)
ip=${ready#*ip=}; ip=${ip%% *}
boot_s=$(elapsed "$t0" "$t_ready")
log "ready after ${boot_s}s: $ready"
[[ $ip == "$PREFIX".* ]] || fail "guest address $ip is not on $PREFIX.0/24"

# --- client namespace, traffic only to the guest --------------------------------
"$here/netns.sh" up "$NS" "$BRIDGE" "$CLIENT_ADDR"
client() { "$here/netns.sh" exec "$NS" "$@"; }
for port in 80 8080; do
    body=$(client curl -sS -m 5 "http://$ip:$port/") || fail "curl $ip:$port failed"
    grep -q "HVL-GUEST hostname=$DOM ip=$ip port=$port" <<<"$body" ||
        fail "unexpected page from $ip:$port: $body"
    log "http $ip:$port ok"
done
client ping -c 2 -W 2 "$ip" >/dev/null || fail "ping $ip failed"
log "ping $ip ok"

# --- NIC hot-plug / unplug -------------------------------------------------------
from=$(console_lines)
vsh attach-interface "$DOM" network "$NET" --model virtio --mac "$MAC2" --live >/dev/null
up=$(wait_for "^HVL-LINK-UP [^ ]+ $MAC2\$" "$LINK_TIMEOUT" "$from")
ifname=$(awk '{print $2}' <<<"$up")
log "hot-plug seen: $up"
linkip=$(wait_for "^HVL-LINK-IP $ifname " "$LINK_TIMEOUT" "$from")
ip2=$(awk '{print $3}' <<<"$linkip")
log "hot-plugged $ifname got $ip2"
client ping -c 2 -W 2 "$ip2" >/dev/null || fail "ping $ip2 ($ifname) failed"
log "ping $ip2 ok"

from=$(console_lines)
vsh detach-interface "$DOM" network --mac "$MAC2" --live >/dev/null
wait_for "^HVL-LINK-GONE $ifname\$" "$LINK_TIMEOUT" "$from" >/dev/null
log "hot-unplug seen: $ifname gone"

# --- ACPI shutdown ---------------------------------------------------------------
t1=$(now)
vsh shutdown "$DOM" --mode acpi >/dev/null
state=
for _ in $(seq 1 $((SHUTDOWN_TIMEOUT * 2))); do
    state=$(vsh domstate "$DOM" 2>/dev/null || true)
    [ "$state" = "shut off" ] && break
    sleep 0.5
done
[ "$state" = "shut off" ] || fail "guest still '$state' ${SHUTDOWN_TIMEOUT}s after ACPI shutdown"
t2=$(now)
shutdown_s=$(elapsed "$t1" "$t2")
log "ACPI shutdown took ${shutdown_s}s"
echo "boot-to-ready: ${boot_s}s  acpi-shutdown: ${shutdown_s}s  guest-ip: $ip  hotplug-ip: $ip2"
