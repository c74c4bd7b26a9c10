#!/usr/bin/env bash
# Build the collection's HTML docs site with antsibull-docs and Sphinx, offline:
#   docs/build.sh [DEST]        (make docs; default DEST .build/docs, site in DEST/build/html)
# Every module, role and guide (docs/docsite/) of the checkout, as docs.ansible.com lays them
# out; the performance page's figures are drawn from benchmarks/recorded/. Needs the
# Makefile's environment (.venv on PATH, the collection linked under ANSIBLE_COLLECTIONS_PATH).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.build/docs}
rm -rf "$dest"
mkdir -p "$dest"
antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error \
  --project hypervisor.libvirt --copyright "hypervisor.libvirt contributors" \
  --title "hypervisor.libvirt" --dest-dir "$dest" hypervisor.libvirt >/dev/null
# No intersphinx inventories: they would be downloaded from the internet at every build. So
# references into docs.ansible.com (ansible.builtin modules, common return values) stay plain
# text here; references inside the collection are checked by lint-collection-docs (make test).
cat >> "$dest/conf.py" <<'CONF'
intersphinx_mapping = {}
suppress_warnings = ['ref.ref']
CONF
cd "$dest"
chmod og-w rst
antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything --use-current \
  --squash-hierarchy --fail-on-error --dest-dir rst hypervisor.libvirt
# The performance guide's figures (its image paths are relative to rst/).
python "$root/benchmarks/plots.py" --recorded --out rst/images
sphinx-build -M html rst build -c . -q -W --keep-going
echo "docs: $dest/build/html/index.html"
