#!/usr/bin/env bash
# Benchmark: converge N defined guests (R of them running) twice with hypervisor.libvirt.domain,
# then the same XML with community.libvirt.virt (command=define + state=running) from its own
# venv (benchmarks/.venv-peer, `ansible` from PyPI); then the ACPI power-off -> return latency.
# Everything it creates (hvl-bench-dom-* domains, the hvl-it-dom-bench network) is removed.
#   benchmarks/domain/run.sh [N[,N...]] [R]
# Several sizes (10,25,50) run one after the other; results/domain-*/runs.json holds every run
# and domain.png plots converge time against the number of guests (benchmarks/plots.py).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
SIZES=${1:-50}; R_MAX=${2:-5}
URI=qemu:///system
work=$(mktemp -d /var/tmp/hvl-bench-dom.XXXXXX); chmod 0755 "$work"
peer=$root/benchmarks/.venv-peer
results=$root/benchmarks/results/domain-$(date +%Y%m%d-%H%M%S); mkdir -p "$results"
runs=$results/runs.jsonl   # one line per playbook run; runs.json and domain.png are made from it

cleanup() {
    for d in $(virsh -q -c $URI list --all --name | grep '^hvl-bench-dom-'); do
        virsh -q -c $URI destroy "$d" >/dev/null 2>&1; virsh -q -c $URI undefine "$d" >/dev/null 2>&1
    done
}
trap 'cleanup; rm -rf "$work"' EXIT
cleanup

if [ ! -x "$peer/bin/ansible-playbook" ]; then
    python3 -m venv "$peer" && "$peer/bin/pip" install -q "ansible>=11,<13" libvirt-python lxml || exit 1
fi

run() {   # label python-venv-bin playbook out tool run-number
    local label=$1 bin=$2 pb=$3 out=$4 t0 t1
    t0=$(date +%s.%N)
    "$bin/ansible-playbook" -i localhost, -c local "$here/$pb" -e @"$work/vars.json" -e bench_out="$out" \
        > "$work/$label.log" 2>&1 || { echo "$label failed, see below"; tail -30 "$work/$label.log"; exit 1; }
    t1=$(date +%s.%N)
    printf '%-34s %7.1f s   changed %s\n' "$label" "$(echo "$t1 - $t0" | bc)" "$(cat "$out")"
    printf '{"guests": %d, "running": %d, "tool": "%s", "run": %d, "seconds": %.1f, "changed": %s}\n' \
        "$N" "$R" "$5" "$6" "$(echo "$t1 - $t0" | bc)" \
        "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["changed"])' "$out")" >> "$runs"
}

# One size after the other (the loop's body is not indented: it holds a here-document).
for N in ${SIZES//,/ }; do
R=$(( R_MAX < N ? R_MAX : N ))
names=(); running=()
for i in $(seq -w 1 "$N"); do
    n=hvl-bench-dom-$i; names+=("$n")
    [ "${#running[@]}" -lt "$R" ] && running+=("$n")
    # No kernel, no disk: SeaBIOS idles, which is all a running benchmark guest needs to do.
    cat > "$work/$n.xml" <<XML
<domain type='qemu'>
  <name>$n</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <devices>
    <interface type='network'><source network='default-hvl-bench-none'/><model type='virtio'/></interface>
    <memballoon model='none'/>
  </devices>
</domain>
XML
done
# the NIC's network does not exist: a running guest gets no NIC
for n in "${running[@]}"; do sed -i '/<interface/d' "$work/$n.xml"; done
to_json() { printf '%s\n' "$@" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split()))'; }
echo "{\"bench_dir\": \"$work\", \"bench_names\": $(to_json "${names[@]}"), \"bench_running\": $(to_json "${running[@]}")}" > "$work/vars.json"

echo "== $N defined guests, $R of them running; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
(
    export ANSIBLE_COLLECTIONS_PATH=$root/.build/collections ANSIBLE_CONFIG=$root/tests/ansible.cfg
    export ANSIBLE_PYTHON_INTERPRETER=$root/.venv/bin/python
    make -s -C "$root" collection
    run "hypervisor.libvirt.domain run 1" "$root/.venv/bin" ours.yml "$work/ours1.json" ours 1
    run "hypervisor.libvirt.domain run 2" "$root/.venv/bin" ours.yml "$work/ours2.json" ours 2
) || exit 1
cleanup
(
    unset ANSIBLE_COLLECTIONS_PATH
    export ANSIBLE_PYTHON_INTERPRETER=$peer/bin/python
    export ANSIBLE_CONFIG=$root/tests/ansible.cfg
    run "community.libvirt.virt run 1" "$peer/bin" peer.yml "$work/peer1.json" peer 1
    run "community.libvirt.virt run 2" "$peer/bin" peer.yml "$work/peer2.json" peer 2
) || exit 1
cleanup
done
python3 - "$runs" "$(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)" > "$results/runs.json" <<'PY'
import json, sys
print(json.dumps({"machine": sys.argv[2], "runs": [json.loads(line) for line in open(sys.argv[1])]}, indent=1))
PY
"$root/.venv/bin/python" "$root/benchmarks/plots.py" --domain "$results/runs.json" --out "$results"
[ "${ACPI_ROUNDS:-3}" -gt 0 ] || exit 0   # ACPI_ROUNDS=0: the converge runs only
echo "== ACPI power-off -> return"
"$root/.venv/bin/python" "$here/acpi_return.py" "${ACPI_ROUNDS:-3}"
