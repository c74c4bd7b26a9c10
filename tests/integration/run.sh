#!/usr/bin/env bash
# Run integration targets (tests/integration/targets/NAME/tasks/main.yml) against the real
# libvirtd at qemu:///system, one playbook run each.
#
#   run.sh [--list] [--exclude-destructive] [NAME | ALIAS/ ...]
#
# Every target has an aliases file in ansible-test's vocabulary (one alias a line, # comments),
# and this runner honours it as ansible-test would:
#   disabled, unsupported, unstable   not run unless the target is named
#   destructive                       changes the system's libvirtd (qemu:///system); not run
#                                     with --exclude-destructive (what is left needs no daemon)
#   needs/root                        reported as skipped when not run as root
#   shippable/posix/groupN            the CI group, which is also its time class here: group1
#                                     targets take under a minute, group2 ones boot guests (minutes)
# An argument ending in "/" selects every target with an alias starting with it
# (run.sh shippable/posix/group1/ runs the quick ones). --list prints what would run.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

list=false
exclude_destructive=false
args=()
for a in "$@"; do
  case "$a" in
    --list) list=true ;;
    --exclude-destructive) exclude_destructive=true ;;
    -*) echo "run.sh: unknown option $a" >&2; exit 2 ;;
    *) args+=("$a") ;;
  esac
done

aliases_of() {  # NAME -> its aliases, one a line; a target without an aliases file is an error
  local f="targets/$1/aliases"
  [ -f "$f" ] || { echo "run.sh: targets/$1 has no aliases file" >&2; return 1; }
  sed -e 's/[[:space:]]*#.*//' -e '/^[[:space:]]*$/d' "$f"
}

# Targets named outright run whatever their aliases say (except what this machine cannot do);
# the others are chosen by alias.
selected=()
named=()
for d in targets/*/; do
  name=$(basename "$d")
  al=$(aliases_of "$name") || exit 2
  pick=false
  if [ "${#args[@]}" -eq 0 ]; then
    pick=true
  else
    for a in "${args[@]}"; do
      if [ "$a" = "$name" ]; then
        pick=true; named+=("$name")
      elif [[ "$a" == */ ]] && sed 's|$|/|' <<<"$al" | grep -q "^${a}"; then  # alias prefix, as ansible-test
        pick=true
      fi
    done
  fi
  $pick || continue
  if ! printf '%s\n' "${named[@]}" | grep -qx "$name"; then
    grep -qxE 'disabled|unsupported|unstable' <<<"$al" && continue
  fi
  if $exclude_destructive && grep -qx destructive <<<"$al"; then
    continue
  fi
  selected+=("$name")
done
for a in "${args[@]}"; do
  [[ "$a" == */ ]] || [ -d "targets/$a" ] || { echo "run.sh: no target $a" >&2; exit 2; }
done

if $list; then
  for t in "${selected[@]}"; do echo "$t: $(aliases_of "$t" | paste -sd' ')"; done
  exit 0
fi

failed=()
skipped=()
passed=0
for t in "${selected[@]}"; do
  if grep -qx needs/root <<<"$(aliases_of "$t")" && [ "$(id -u)" -ne 0 ]; then
    echo "=== $t skipped: needs/root and this is uid $(id -u)"
    skipped+=("$t")
    continue
  fi
  echo "=== integration target: $t ($(aliases_of "$t" | paste -sd' '))"
  start=$(date +%s)
  if ansible-playbook -i localhost, -c local run-target.yml -e "target=$t"; then
    passed=$((passed + 1))
    echo "=== $t passed in $(( $(date +%s) - start ))s"
  else
    failed+=("$t")
    echo "=== $t FAILED in $(( $(date +%s) - start ))s"
  fi
done
echo "integration: ${passed} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
[ "${#failed[@]}" -eq 0 ] || { echo "failed targets: ${failed[*]}"; exit 1; }
