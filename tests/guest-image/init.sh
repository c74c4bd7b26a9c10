#!/bin/sh
# /init of the hvl test guest (PID 1 inside a busybox-static initramfs).
#
# Markers printed on the serial console (one per line, stable for tests):
#   HVL-GUEST-READY ip=<addr>            eth0 has its DHCP address, httpd runs
#   HVL-LINK-UP <ifname> <mac>           a NIC appeared after boot (hot-plug)
#   HVL-LINK-IP <ifname> <addr>          a NIC got (or changed) its address
#   HVL-LINK-GONE <ifname>               a NIC disappeared (hot-unplug)
#   HVL-GUEST-POWEROFF                   ACPI power button seen, powering off
#   HVL-DISK <name> bytes=<size>         a virtio disk is there (at boot, hot-plugged or resized)
#   HVL-AGENT-UP <device>                the guest agent channel was opened (a minimal agent answers)
#
# HTTP on port 80 also runs /cgi-bin/ scripts (see write_cgi):
#   /cgi-bin/marker?write=WORD[&disk=vdX]  writes "HVL-MARKER WORD" to the disk's first sector (fsync)
#   /cgi-bin/marker[?disk=vdX]             prints the marker the disk holds
#   /cgi-bin/uptime                        /proc/uptime (seconds since boot, idle), then the boot id
#   /cgi-bin/disks                         "<name> <bytes>" per virtio disk
#
# Kernel command line options read here (all optional):
#   hvl.hostname=NAME   hostname (default: DHCP-provided name, else hvl-guest)
#   hvl.debug=1         keep kernel messages and daemon output on the console
#
# PID 1 must never exit: nothing below uses `set -e`, every failure is logged
# and the script ends in an endless monitor loop.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
umask 022

mkdir -p /proc /sys /dev /run /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /run/hvl /var/log
ln -sf /run /var/run 2>/dev/null
[ -c /dev/console ] && exec </dev/null >/dev/console 2>&1

S=/run/hvl                       # state: <if>.ip, <if>.pid, <if>.seen-ip, <if>.ifindex
HOSTNAME_ARG=
DEBUG=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        hvl.hostname=*) HOSTNAME_ARG=${arg#hvl.hostname=} ;;
        hvl.debug=*) DEBUG=${arg#hvl.debug=} ;;
    esac
done

say() { echo "$*"; }
note() { echo "hvl-init: $*"; }

if [ "$DEBUG" = 1 ]; then
    DAEMON_OUT=/dev/console
else
    DAEMON_OUT=/dev/null
    # keep the console readable: only emergencies from the kernel from now on
    dmesg -n 1 2>/dev/null
fi

if [ -n "$HOSTNAME_ARG" ]; then
    hostname "$HOSTNAME_ARG"
    : > "$S/hostname-fixed"
else
    hostname hvl-guest
fi

# --- modules, in dependency order (written by build.sh) ---------------------
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m.ko" 2>/dev/null || {
        grep -q "^$m " /proc/modules || note "insmod $m failed"
    }
done

# --- web pages --------------------------------------------------------------
write_pages() {
    ip_now=$(cat "$S/eth0.ip" 2>/dev/null)
    for port in 80 8080; do
        mkdir -p "/www/$port"
        {
            echo "<html><head><title>hvl-guest</title></head><body><pre>"
            echo "HVL-GUEST hostname=$(hostname) ip=${ip_now:-none} port=$port"
            echo "</pre></body></html>"
        } > "/www/$port/index.html.tmp"
        mv "/www/$port/index.html.tmp" "/www/$port/index.html"
    done
}
# CGI helpers of port 80: a marker on a raw virtio disk, uptime, disk sizes
write_cgi() {
    mkdir -p /www/80/cgi-bin
    cat > /www/80/cgi-bin/marker <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
disk=vda word=
for kv in $(echo "$QUERY_STRING" | tr '&' ' '); do
    case "$kv" in
        disk=vd[a-z]) disk=${kv#disk=} ;;
        write=*) word=${kv#write=} ;;
    esac
done
[ -b "/dev/$disk" ] || { echo "HVL-MARKER-ERROR no disk $disk"; exit 0; }
case "$word" in
    *[!A-Za-z0-9_.-]*) echo "HVL-MARKER-ERROR bad word"; exit 0 ;;
esac
if [ -n "$word" ]; then
    printf 'HVL-MARKER %s\n' "$word" | dd of="/dev/$disk" bs=512 count=1 conv=sync,fsync 2>/dev/null
fi
dd if="/dev/$disk" bs=512 count=1 2>/dev/null | tr -d '\000' | sed -n '1p'
CGI
    cat > /www/80/cgi-bin/uptime <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
cat /proc/uptime /proc/sys/kernel/random/boot_id
CGI
    cat > /www/80/cgi-bin/disks <<'CGI'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
for d in /sys/block/vd*; do
    [ -e "$d/size" ] && echo "${d##*/} $(( $(cat "$d/size") * 512 ))"
done
CGI
    chmod 0755 /www/80/cgi-bin/*
}

# report each virtio disk once, and again when its size changes
report_disks() {
    for d in /sys/block/vd*; do
        [ -e "$d/size" ] || continue
        n=${d##*/}
        bytes=$(( $(cat "$d/size") * 512 ))
        if [ "$(cat "$S/$n.disk" 2>/dev/null)" != "$bytes" ]; then
            echo "$bytes" > "$S/$n.disk"
            say "HVL-DISK $n bytes=$bytes"
        fi
    done
}

# A minimal guest agent on the org.qemu.guest_agent.0 port: it answers the QEMU guest agent
# protocol's commands libvirt uses for a sync, a ping and the interfaces' addresses.
agent_ifaces() {
    first=1
    for n in lo $(list_ifs); do
        mac=$(cat "/sys/class/net/$n/address" 2>/dev/null)
        addrs=$(ip -o addr show dev "$n" 2>/dev/null | awk '
            $3 == "inet" || $3 == "inet6" {
                split($4, a, "/"); t = ($3 == "inet") ? "ipv4" : "ipv6";
                printf "%s{\"ip-address-type\": \"%s\", \"ip-address\": \"%s\", \"prefix\": %s}", sep, t, a[1], a[2]; sep = ", "
            }')
        [ $first = 1 ] || printf ', '
        first=0
        printf '{"name": "%s", "hardware-address": "%s", "ip-addresses": [%s]}' "$n" "$mac" "$addrs"
    done
}

run_agent() {      # $1 = the port's device node
    exec 3<>"$1" || { note "cannot open $1"; return; }
    say "HVL-AGENT-UP $1"
    # until libvirt connects to the host side, a read returns end-of-file at once: keep the port
    # open (closing it tells libvirt the agent went away) and try again shortly
    while :; do
        line=
        if ! IFS= read -r line <&3 && [ -z "$line" ]; then
            sleep 0.2
            continue
        fi
        case "$line" in
            *'"guest-sync'*)
                id=$(echo "$line" | sed -n 's/.*"id": *\([0-9-]*\).*/\1/p')
                printf '{"return": %s}\n' "${id:-0}" >&3 ;;
            *'"guest-ping"'*) printf '{"return": {}}\n' >&3 ;;
            *'"guest-network-get-interfaces"'*) printf '{"return": [%s]}\n' "$(agent_ifaces)" >&3 ;;
            *'"guest-info"'*) printf '{"return": {"version": "hvl-test-agent", "supported_commands": []}}\n' >&3 ;;
            *) printf '{"error": {"class": "CommandNotFound", "desc": "not supported by the test guest agent"}}\n' >&3 ;;
        esac
    done
}

start_agent() {
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] || continue
        dev=/dev/${p##*/}
        i=0
        while [ ! -c "$dev" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        [ -c "$dev" ] && ( run_agent "$dev" ) </dev/null &
    done
}

write_pages
write_cgi
httpd -p 80 -h /www/80 || note "httpd :80 failed"
httpd -p 8080 -h /www/8080 || note "httpd :8080 failed"

# --- ACPI power button -> poweroff ------------------------------------------
i=0
while [ ! -e /dev/input/event0 ] && [ $i -lt 50 ]; do
    sleep 0.1; i=$((i + 1))
done
start_acpid() {
    acpid -f -d -c /etc/acpi -a /etc/acpid.conf -M /etc/acpi.map \
        >"$DAEMON_OUT" 2>&1 </dev/null &
    acpid_pid=$!
}
start_acpid
acpid_restarts=0

# --- network ----------------------------------------------------------------
ip link set lo up

start_dhcp() {   # $1 = ifname
    ip link set "$1" up 2>/dev/null
    udhcpc -f -i "$1" -s /etc/udhcpc.script -t 5 -T 2 -A 3 \
        >"$DAEMON_OUT" 2>&1 </dev/null &
    echo $! > "$S/$1.pid"
}

stop_dhcp() {    # $1 = ifname
    [ -f "$S/$1.pid" ] && kill "$(cat "$S/$1.pid")" 2>/dev/null
    rm -f "$S/$1.pid" "$S/$1.ip" "$S/$1.seen-ip"
}

list_ifs() {       # NICs backed by a device (skips lo, tunnels, bridges)
    for d in /sys/class/net/*; do
        [ -e "$d/device" ] && echo "${d##*/}"
    done
}

# report a new/changed address of $1 (once per change)
report_ip() {
    new=$(cat "$S/$1.ip" 2>/dev/null)
    old=$(cat "$S/$1.seen-ip" 2>/dev/null)
    if [ -n "$new" ] && [ "$new" != "$old" ]; then
        echo "$new" > "$S/$1.seen-ip"
        say "HVL-LINK-IP $1 $new"
        [ "$1" = eth0 ] && write_pages
    fi
}

known=$(list_ifs)
for n in $known; do start_dhcp "$n"; done
report_disks
start_agent

ready=0
check_ready() {
    [ $ready = 1 ] && return 0
    [ -s "$S/eth0.ip" ] || return 1
    write_pages
    say "HVL-GUEST-READY ip=$(cat "$S/eth0.ip")"
    ready=1
}

# wait up to ~60 s for the first lease, then carry on regardless: the
# monitor loop prints the ready line whenever the address arrives.
i=0
while [ $i -lt 600 ] && ! [ -s "$S/eth0.ip" ]; do
    sleep 0.1; i=$((i + 1))
done
for n in $known; do report_ip "$n"; done
check_ready || note "no DHCP lease on eth0 yet (still trying)"

# --- monitor loop (never exits) ---------------------------------------------
while :; do
    now=$(list_ifs)
    for n in $now; do
        # a NIC unplugged and plugged again between two polls keeps its name
        # but not its ifindex: report it as gone and back
        idx=$(cat "/sys/class/net/$n/ifindex" 2>/dev/null)
        [ -n "$idx" ] || continue    # vanished since list_ifs: decide next round
        old_idx=$(cat "$S/$n.ifindex" 2>/dev/null)
        echo "$idx" > "$S/$n.ifindex"
        case " $(echo $known) " in
            *" $n "*)
                if [ -n "$old_idx" ] && [ "$idx" != "$old_idx" ]; then
                    stop_dhcp "$n"
                    say "HVL-LINK-GONE $n"
                    say "HVL-LINK-UP $n $(cat "/sys/class/net/$n/address" 2>/dev/null)"
                    start_dhcp "$n"
                fi
                ;;
            *)
                mac=$(cat "/sys/class/net/$n/address" 2>/dev/null)
                say "HVL-LINK-UP $n $mac"
                start_dhcp "$n"
                ;;
        esac
        report_ip "$n"
    done
    for n in $known; do
        case " $(echo $now) " in
            *" $n "*) ;;
            *)
                stop_dhcp "$n"
                rm -f "$S/$n.ifindex"
                say "HVL-LINK-GONE $n"
                ;;
        esac
    done
    known=$now
    report_disks
    check_ready
    if [ $acpid_restarts -lt 5 ] && ! kill -0 "$acpid_pid" 2>/dev/null; then
        acpid_restarts=$((acpid_restarts + 1))
        note "acpid exited, restarting it ($acpid_restarts/5)"
        start_acpid
    fi
    sleep 1
done
