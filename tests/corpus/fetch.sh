#!/usr/bin/env bash
# Fetch libvirt's own test data (Debian's source package for the installed libvirt) into
# .build/corpus/libvirt-<version>/ and print that directory. Cached: a second call only prints.
# The apt state used is private (sources list, lists, cache, etc. under .build/corpus/apt), so the
# system's apt configuration and package lists are untouched.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BASE="$ROOT/.build/corpus"
VERSION="$(dpkg-query -W -f '${Version}' libvirt0)"
UPSTREAM="${VERSION%%-*}"
UPSTREAM="${UPSTREAM#*:}"
DEST="$BASE/libvirt-$UPSTREAM"
# The directories unpacked; a cache made with another list is unpacked again.
DIRS=(qemuxml2argvdata qemuxml2xmloutdata networkxml2xmlin networkxml2xmlout nwfilterxml2xmlin nwfilterxml2xmlout
      storagepoolxml2xmlin storagepoolxml2xmlout storagevolxml2xmlin storagevolxml2xmlout secretxml2xmlin)
if [ -f "$DEST/.complete" ] && [ "$(cat "$DEST/.complete")" = "${DIRS[*]}" ]; then
  echo "$DEST"
  exit 0
fi
APT="$BASE/apt"
mkdir -p "$APT/etc/sources.list.d" "$APT/etc/preferences.d" "$APT/lists/partial" "$APT/cache/archives/partial" "$BASE/src"
cat > "$APT/etc/sources.list" <<LIST
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
LIST
OPTS=(-o "Dir::Etc=$APT/etc" -o "Dir::Etc::sourcelist=$APT/etc/sources.list"
      -o "Dir::Etc::sourceparts=$APT/etc/sources.list.d" -o "Dir::Etc::preferencesparts=$APT/etc/preferences.d"
      -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Dir::Cache::Archives=$APT/cache/archives"
      -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get -qq "${OPTS[@]}" update >&2
cd "$BASE/src"
# The exact Debian version if the archive still has it, else the newest bookworm one.
apt-get -qq "${OPTS[@]}" source --download-only "libvirt=$VERSION" >&2 2>/dev/null \
  || apt-get -qq "${OPTS[@]}" source --download-only libvirt >&2
ORIG="$(ls -1 libvirt_"$UPSTREAM".orig.tar.* | head -n1)"
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
PATTERNS=()
for d in "${DIRS[@]}"; do PATTERNS+=("*/tests/$d/*.xml"); done
tar -xf "$ORIG" -C "$DEST.tmp" --strip-components=1 --wildcards "${PATTERNS[@]}"
echo "${DIRS[*]}" > "$DEST.tmp/.complete"
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
echo "$DEST"
