#!/usr/bin/env bash
# Run integration targets (tests/integration/targets/NAME/tasks/main.yml) against the real
# libvirtd at qemu:///system, one playbook run each. Usage: run.sh [NAME...]
# Targets whose aliases file says "disabled" are skipped unless named.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  for d in targets/*/; do
    name=$(basename "$d")
    grep -qx disabled "$d/aliases" 2>/dev/null && continue
    targets+=("$name")
  done
fi
failed=()
passed=0
for t in "${targets[@]}"; do
  echo "=== integration target: $t"
  start=$(date +%s)
  if ansible-playbook -i localhost, -c local run-target.yml -e "target=$t"; then
    passed=$((passed + 1))
    echo "=== $t passed in $(( $(date +%s) - start ))s"
  else
    failed+=("$t")
    echo "=== $t FAILED in $(( $(date +%s) - start ))s"
  fi
done
echo "integration: ${passed} passed, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ] || { echo "failed targets: ${failed[*]}"; exit 1; }
