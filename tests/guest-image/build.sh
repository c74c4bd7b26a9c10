#!/usr/bin/env bash
# Build the hvl test guest: OUTDIR/vmlinuz + OUTDIR/initrd.img.
#
#   tests/guest-image/build.sh OUTDIR
#
# The kernel is Debian's cloud kernel (the package behind the meta-package
# linux-image-cloud-amd64, fetched with `apt-get download`, never installed);
# the initramfs is busybox-static (must be installed: /bin/busybox) plus the
# virtio/ACPI modules and tests/guest-image/init.sh as /init.
#
# Idempotent: OUTDIR/.stamp holds a hash of every input (this script, init.sh,
# udhcpc.script, the busybox binary, the kernel package name and version);
# when it matches, nothing is done.
#
# Environment (optional):
#   HVL_KERNEL_META  meta-package to resolve (default linux-image-cloud-amd64)
#   HVL_KERNEL_DEB   use this already downloaded kernel .deb instead
#   HVL_FORCE=1      rebuild even when the stamp matches
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=$(basename "$0")
die() { echo "$prog: error: $*" >&2; exit 1; }
info() { echo "$prog: $*" >&2; }

[ $# -eq 1 ] || die "usage: $prog OUTDIR"
outdir=$1

# Modules the guest loads; their dependencies are added from modules.dep.
MODULES=(virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev
         virtio_pci failover net_failover virtio_net evdev button
         virtio_blk virtio_console)

busybox=/bin/busybox
[ -x "$busybox" ] ||
    die "$busybox missing: install the Debian package busybox-static (apt-get install busybox-static)"
if LC_ALL=C ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked: install busybox-static (not busybox)"
fi
for tool in apt-get apt-cache dpkg dpkg-deb gzip sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found (a Debian host is required)"
done

# --- which kernel -------------------------------------------------------------
if [ -n "${HVL_KERNEL_DEB:-}" ]; then
    [ -f "$HVL_KERNEL_DEB" ] || die "HVL_KERNEL_DEB=$HVL_KERNEL_DEB does not exist"
    kpkg=$(dpkg-deb -f "$HVL_KERNEL_DEB" Package)
    kver=$(dpkg-deb -f "$HVL_KERNEL_DEB" Version)
else
    meta=${HVL_KERNEL_META:-linux-image-cloud-amd64}
    kpkg=$(apt-cache depends "$meta" 2>/dev/null |
           awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ && !n++ { print $2 }')
    [ -n "$kpkg" ] || die "cannot resolve the kernel package behind $meta (apt-get update?)"
    kver=$(apt-cache policy "$kpkg" | awk '$1 == "Candidate:" && !n++ { print $2 }')
    [ -n "$kver" ] && [ "$kver" != "(none)" ] || die "no installable version of $kpkg"
fi

inputs_hash=$(
    {
        sha256sum "$here/build.sh" "$here/init.sh" "$here/udhcpc.script" "$busybox" | awk '{print $1}'
        echo "$kpkg=$kver"
        printf '%s\n' "${MODULES[@]}"
    } | sha256sum | awk '{print $1}'
)
if [ "${HVL_FORCE:-0}" != 1 ] && [ -s "$outdir/vmlinuz" ] && [ -s "$outdir/initrd.img" ] &&
   [ "$(cat "$outdir/.stamp" 2>/dev/null)" = "$inputs_hash" ]; then
    info "up to date: $outdir ($kpkg $kver)"
    exit 0
fi

# --- fetch and unpack the kernel ---------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hvl-guest-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if [ -n "${HVL_KERNEL_DEB:-}" ]; then
    deb=$HVL_KERNEL_DEB
else
    info "downloading $kpkg $kver"
    # apt's _apt sandbox user needs to write the download directory
    chmod 0777 "$tmp"
    (cd "$tmp" && apt-get download -q "$kpkg=$kver" >&2) || die "apt-get download $kpkg=$kver failed"
    deb=$(ls "$tmp"/*.deb)
    chmod 0700 "$tmp"
fi
dpkg -x "$deb" "$tmp/k"
kdir=$(ls -d "$tmp"/k/lib/modules/* 2>/dev/null | sed -n 1p)
[ -n "$kdir" ] || die "no /lib/modules in $deb"
krel=$(basename "$kdir")
vmlinuz="$tmp/k/boot/vmlinuz-$krel"
[ -f "$vmlinuz" ] || die "no /boot/vmlinuz-$krel in $deb"

# --- modules and their load order --------------------------------------------
# Debian ships no modules.dep in the package (depmod runs at install time):
# generate it for the unpacked tree. Fall back to each module's own
# "depends=" field when depmod is unavailable.
moddep="$kdir/modules.dep"
if command -v depmod >/dev/null; then
    depmod -b "$tmp/k" "$krel" || die "depmod failed on the unpacked kernel"
fi

declare -A modpath=()   # module name -> path relative to $kdir
while IFS= read -r rel; do
    b=${rel##*/}; b=${b%%.ko*}; modpath[${b//-/_}]=$rel
done < <(cd "$kdir" && find kernel -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')

root="$tmp/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib/modules,etc/acpi/PWRF,proc,sys,dev,run,tmp,var,www,root}

declare -A loaded=()
order=()
copy_module() {   # $1 = module name; copies it (decompressed) into the image
    local name=$1 rel=${modpath[$1]:-}
    [ -n "$rel" ] || die "module $name not found in $krel (built in? then drop it from MODULES)"
    local dst="$root/lib/modules/$name.ko"
    case "$rel" in
        *.ko.xz) xz -dc "$kdir/$rel" > "$dst" ;;
        *.ko.zst) zstd -qdc "$kdir/$rel" > "$dst" ;;
        *.ko.gz) gzip -dc "$kdir/$rel" > "$dst" ;;
        *) cp "$kdir/$rel" "$dst" ;;
    esac
}
deps_of() {       # $1 = module name; prints direct+indirect deps, load order
    local rel=${modpath[$1]} line d out=()
    if [ -s "$moddep" ]; then
        line=$(grep -m1 "^$rel:" "$moddep" || true)
        line=${line#*:}
        # modules.dep lists deps so that loading them in reverse order works
        for d in $line; do out=("${d##*/}" "${out[@]}"); done
        for d in "${out[@]}"; do d=${d%%.ko*}; echo "${d//-/_}"; done
    else
        copy_module "$1"
        d=$("$busybox" strings "$root/lib/modules/$1.ko" | sed -n 's/^depends=//p' | sed -n 1p)
        for d in ${d//,/ }; do deps_of "${d//-/_}"; echo "${d//-/_}"; done
    fi
}
add_module() {
    local m
    for m in $(deps_of "$1") "$1"; do
        [ -n "${loaded[$m]:-}" ] && continue
        loaded[$m]=1
        order+=("$m")
        copy_module "$m"
    done
}
for m in "${MODULES[@]}"; do add_module "$m"; done
printf '%s\n' "${order[@]}" > "$root/lib/modules/load-order"
info "modules ($krel): ${order[*]}"

# --- busybox and its applets ------------------------------------------------
cp "$busybox" "$root/bin/busybox"
while IFS= read -r applet; do
    case "$applet" in linuxrc|init|sbin/init|bin/busybox) continue ;; esac
    mkdir -p "$root/$(dirname "$applet")"
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
ln -sf /bin/busybox "$root/sbin/init"   # harmless; /init is what runs

# --- configuration files ------------------------------------------------------
install -m 0755 "$here/init.sh" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc.script"
# busybox acpid: map the power-button key to the event "PWRF", the event to
# the action PWRF/00000080, which is run as /etc/acpi/PWRF/00000080.
cat > "$root/etc/acpi.map" <<'EOF'
# type  type#  code       code#  value  description
EV_KEY  01     KEY_POWER  116    1      button/power PWRF 00000080
EOF
cat > "$root/etc/acpid.conf" <<'EOF'
PWRF PWRF/00000080
EOF
cat > "$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "HVL-GUEST-POWEROFF" > /dev/console
sync
poweroff -f
EOF
chmod 0755 "$root/etc/acpi/PWRF/00000080"
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"
echo "$krel" > "$root/etc/hvl-kernel-release"

# --- pack ---------------------------------------------------------------------
mkdir -p "$outdir"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
    "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 -n > "$tmp/initrd.img"
install -m 0644 "$vmlinuz" "$outdir/vmlinuz.new"
install -m 0644 "$tmp/initrd.img" "$outdir/initrd.img.new"
mv -f "$outdir/vmlinuz.new" "$outdir/vmlinuz"
mv -f "$outdir/initrd.img.new" "$outdir/initrd.img"
echo "$kpkg $kver $krel" > "$outdir/kernel-version"
echo "$inputs_hash" > "$outdir/.stamp"
info "built $outdir/vmlinuz ($(du -h "$outdir/vmlinuz" | cut -f1)) and $outdir/initrd.img ($(du -h "$outdir/initrd.img" | cut -f1))"
