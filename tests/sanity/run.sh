#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection laid out as ansible_collections/hypervisor/libvirt
# (ansible-test requires that path). Usage: run.sh [ansible-test sanity options, e.g. --test pep8]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest="${SANITY_ROOT:-/tmp/hvl-sanity}/ansible_collections/hypervisor/libvirt"
rm -rf "$dest"  # a fresh copy: nothing stale (venvs, deleted files) reaches the checks
bootstrap="$HOME/.ansible/test/cache/get_pip_24_2.py"
# The bootstrap ansible-test would download; served from this repository instead.
if ! cmp -s "$root/tests/sanity/get_pip_offline.py" "$bootstrap"; then
  mkdir -p "$(dirname "$bootstrap")"
  cp "$root/tests/sanity/get_pip_offline.py" "$bootstrap"
fi
mkdir -p "$dest"
# The files git knows of (committed or not yet), nothing ignored.
(cd "$root" && git ls-files -co --exclude-standard -z) | \
  rsync -a --from0 --ignore-missing-args --files-from=- "$root/" "$dest/"
cd "$dest"
python_version=$("$root/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
exec "$root/.venv/bin/ansible-test" sanity --venv --python "$python_version" --color no "$@"
