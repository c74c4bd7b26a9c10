#!/bin/sh
# /init of the hvl test guest (PID 1 inside a busybox-static initramfs).
#
# Markers printed on the serial console (one per line, stable for tests):
#   HVL-GUEST-READY ip=<addr>            eth0 has its DHCP address, httpd runs
#   HVL-LINK-UP <ifname> <mac>           a NIC appeared after boot (hot-plug)
#   HVL-LINK-IP <ifname> <addr>          a NIC got (or changed) its address
#   HVL-LINK-GONE <ifname>               a NIC disappeared (hot-unplug)
#   HVL-GUEST-POWEROFF                   ACPI power button seen, powering off
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
write_pages
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
    check_ready
    if [ $acpid_restarts -lt 5 ] && ! kill -0 "$acpid_pid" 2>/dev/null; then
        acpid_restarts=$((acpid_restarts + 1))
        note "acpid exited, restarting it ($acpid_restarts/5)"
        start_acpid
    fi
    sleep 1
done
