#!/usr/bin/env bash
# Domain XML as virt-install writes it: each line of virt_install.txt run through
# `virt-install --print-xml --dry-run` against qemu:///system (nothing is defined or created), each document
# it prints kept as .build/corpus/virt-install-<version>/tests/virt-install/NAME.xml (NAME-1, NAME-2 for an
# install's two), laid out as libvirt's corpus is.
# Prints that directory. Cached: made again only when the list or virt-install's version changes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LIST="$HERE/virt_install.txt"
URI=qemu:///system
NET=hvl-vi-net
command -v virt-install >/dev/null || { echo "virt_install.sh: virt-install is missing (Debian: virtinst; make setup installs it)" >&2; exit 1; }
VERSION="$(virt-install --version)"
DEST="$ROOT/.build/corpus/virt-install-$VERSION"
STAMP="$(sha256sum "$LIST" | cut -d' ' -f1)"
if [ -f "$DEST/.complete" ] && [ "$(cat "$DEST/.complete")" = "$STAMP" ]; then
  echo "$DEST"
  exit 0
fi
# What the options name: a directory and an empty ISO of this run's own, and an isolated network that is
# defined (never started) only while virt-install looks it up.
WORK="$(mktemp -d /tmp/hvl-vi.XXXXXX)"
made_net=false
cleanup() {
  if $made_net; then virsh -q -c "$URI" net-undefine "$NET" >/dev/null 2>&1 || true; fi
  # virt-install defines a storage pool over a new disk's directory, even with --dry-run: it goes with it
  local pool
  for pool in $(virsh -q -c "$URI" pool-list --all --name 2>/dev/null); do
    if [ "$(virsh -q -c "$URI" pool-dumpxml "$pool" 2>/dev/null | sed -n 's:.*<path>\(.*\)</path>.*:\1:p' | head -n 1)" = "$WORK" ]; then
      virsh -q -c "$URI" pool-destroy "$pool" >/dev/null 2>&1 || true
      virsh -q -c "$URI" pool-undefine "$pool" >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
: > "$WORK/empty.iso"
if ! virsh -q -c "$URI" net-info "$NET" >/dev/null 2>&1; then
  printf '<network><name>%s</name><bridge name="virbr-hvlvi"/></network>\n' "$NET" > "$WORK/net.xml"
  virsh -q -c "$URI" net-define "$WORK/net.xml" >/dev/null
  made_net=true
fi
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp/tests/virt-install"
while IFS='|' read -r name opts; do
  case "$name" in ''|'#'*) continue ;; esac
  opts="${opts//@DIR@/$WORK}"; opts="${opts//@ISO@/$WORK/empty.iso}"; opts="${opts//@NET@/$NET}"
  # shellcheck disable=SC2086  # the options are words
  if ! virt-install --connect "$URI" --print-xml --dry-run --noautoconsole --name "hvl-vi-$name" $opts \
      > "$WORK/out.xml" 2> "$WORK/err"; then
    echo "virt_install.sh: virt-install failed for '$name': $(tail -n 1 "$WORK/err")" >&2
    exit 1
  fi
  # one file a document; the temporary directory's name gives way to a fixed one, so the files stay the same
  python3 - "$WORK/out.xml" "$DEST.tmp/tests/virt-install/$name" "$WORK" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read().replace(sys.argv[3], "/var/lib/libvirt/images/hvl-vi")
docs = [d for d in re.split(r"(?=<domain[ >])", text) if d.strip()]
for i, doc in enumerate(docs, 1):
    with open(sys.argv[2] + ("-%d" % i if len(docs) > 1 else "") + ".xml", "w", encoding="utf-8") as f:
        f.write(doc)
PY
done < "$LIST"
echo "$STAMP" > "$DEST.tmp/.complete"
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
echo "$DEST"
