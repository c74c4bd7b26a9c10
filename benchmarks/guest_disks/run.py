# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""20 guests' copy-on-write disks: the guest role vs storage_volume vs community.libvirt virt_volume.

Run from the repository root with the project's venv, under the shared libvirt lock:

    .venv/bin/python benchmarks/guest_disks/run.py [--guests 20] [--rounds 2]

One base volume (a 1 GiB qcow2) in a pool of its own; then, side by side in one run and in a
rotating order, one `ansible-playbook` each (wall time, first run and an identical second run):

- the guest role over N guests (each a copy-on-write disk over the base volume in a shared pool,
  and the guest's domain defined - the role's whole job for a guest with one disk);
- `hypervisor.libvirt.storage_volume` looped over N overlays (`backing: {pool, name}`) - the same
  volumes without the domains;
- community.libvirt `virt_volume` looped over N overlays (`command: create` with a volume XML that
  has a `<backingStore>`; `ansible==12.3.0` in benchmarks/.venv-peer, as benchmarks/host_facts
  sets it up).

Every overlay is checked to have the base as its backing store. Objects are named hvl-bench-gd-*
and removed at the end, also on failure. Writes benchmarks/results/guest_disks-*/summary.json,
a table (summary.md) and a figure (guest_disks.png, benchmarks/plots.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import COLLECTIONS, RESULTS, ROOT, VENV_BIN, ensure_collection, log  # noqa: E402

import libvirt  # noqa: E402

URI = "qemu:///system"
PREFIX = "hvl-bench-gd-"
BASE_POOL, BASE_VOL = PREFIX + "base", "base.qcow2"
WORK = "/var/lib/libvirt/" + PREFIX.rstrip("-")
POOLS = {"role": PREFIX + "role", "volume": PREFIX + "vol", "peer": PREFIX + "peer"}
LABELS = {"role": "guest role (disk + domain)", "volume": "storage_volume loop",
          "peer": "community.libvirt virt_volume loop"}
PEER_VENV = os.path.join(ROOT, "benchmarks", ".venv-peer")


def peer_site_packages() -> str:
    ver = "python%d.%d" % sys.version_info[:2]
    return os.path.join(PEER_VENV, "lib", ver, "site-packages")


def pool_xml(name: str) -> str:
    return ("<pool type='dir'><name>%s</name><target><path>%s/%s</path></target></pool>"
            % (name, WORK, name[len(PREFIX):]))


def setup(conn: Any) -> str:
    """The base volume and the three empty pools; the base's path."""
    cleanup(conn)
    os.makedirs(WORK, exist_ok=True)
    for name in [BASE_POOL] + list(POOLS.values()):
        pool = conn.storagePoolDefineXML(pool_xml(name), 0)
        pool.build(0)
        pool.create(0)
    base = conn.storagePoolLookupByName(BASE_POOL).createXML(
        "<volume><name>%s</name><capacity unit='GiB'>1</capacity><target><format type='qcow2'/></target></volume>"
        % BASE_VOL, 0)
    return base.path()


def cleanup(conn: Any) -> None:
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(PREFIX):
            if dom.isActive():
                dom.destroy()
            dom.undefine()
    for pool in conn.listAllStoragePools(0):
        if pool.name().startswith(PREFIX):
            if pool.isActive():
                pool.refresh(0)
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()
            pool.undefine()
    shutil.rmtree(WORK, ignore_errors=True)


def names(n: int) -> list[str]:
    return ["%sg%02d" % (PREFIX, i) for i in range(n)]


def playbook(kind: str, n: int, base_path: str) -> list[dict[str, Any]]:
    pool = POOLS[kind]
    if kind == "role":
        guests = [{"name": g, "state": "present", "pool": pool,
                   "disks": [{"name": g + ".qcow2", "base_volume": {"pool": BASE_POOL, "name": BASE_VOL}}],
                   "spec": {"type": "qemu", "memory": 32, "vcpus": 1, "os": {"arch": "x86_64"}}} for g in names(n)]
        tasks = [{"name": "guest role", "ansible.builtin.include_role": {"name": "hypervisor.libvirt.guest"},
                  "vars": {"guest_uri": URI, "guest_list": guests}}]
    elif kind == "volume":
        tasks = [{"name": "storage_volume", "hypervisor.libvirt.storage_volume": {
            "uri": URI, "pool": pool, "name": "{{ item }}.qcow2", "backing": {"pool": BASE_POOL, "name": BASE_VOL}},
            "loop": names(n), "register": "out"}]
    else:
        xml = ("<volume><name>{{ item }}.qcow2</name><capacity unit='GiB'>1</capacity>"
               "<target><format type='qcow2'/></target><backingStore><path>%s</path><format type='qcow2'/>"
               "</backingStore></volume>" % base_path)
        tasks = [{"name": "virt_volume", "community.libvirt.virt_volume": {
            "uri": URI, "pool": pool, "name": "{{ item }}.qcow2", "state": "present", "xml": xml},
            "loop": names(n), "register": "out"}]
    if kind != "role":
        tasks.append({"name": "count changes", "ansible.builtin.debug": {
            "msg": "HVL-CHANGED {{ out.results | select('changed') | list | length }}"}})
    else:  # the role's register holds the last guest's disks only: report that guest (1 disk)
        tasks.append({"name": "count changes", "ansible.builtin.debug": {
            "msg": "HVL-CHANGED {{ __guest_disk_create.results | default([]) | select('changed') | list | length }} (last guest)"}})
    return [{"name": "guest_disks benchmark: %s" % kind, "hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def run(kind: str, n: int, base_path: str, outdir: str, tag: str) -> tuple[float, str]:
    path = os.path.join(outdir, "%s-%s.json" % (kind, tag))
    with open(path, "w") as f:
        json.dump(playbook(kind, n, base_path), f, indent=1)  # JSON is YAML
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH="%s:%s" % (COLLECTIONS, peer_site_packages()),
               ANSIBLE_CONFIG=os.path.join(ROOT, "tests", "ansible.cfg"),
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(VENV_BIN, "python"),
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    start = time.monotonic()
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", path],
                          env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    with open(path + ".out", "w") as f:
        f.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError("%s %s failed (rc %d), see %s.out" % (kind, tag, proc.returncode, path))
    changed = [line.split("HVL-CHANGED ")[1].strip(' "') for line in proc.stdout.splitlines() if "HVL-CHANGED " in line]
    return took, changed[0] if changed else "?"


def check(conn: Any, kind: str, n: int, base_path: str) -> None:
    pool = conn.storagePoolLookupByName(POOLS[kind])
    pool.refresh(0)
    from lxml import etree
    for g in names(n):
        xml = etree.fromstring(pool.storageVolLookupByName(g + ".qcow2").XMLDesc(0))
        if xml.findtext("backingStore/path") != base_path:
            raise RuntimeError("%s: %s is not an overlay over %s" % (kind, g, base_path))


def empty(conn: Any, kind: str) -> None:
    """Between rounds: the pool empty again, the role's domains gone."""
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(PREFIX):
            dom.undefine()
    pool = conn.storagePoolLookupByName(POOLS[kind])
    pool.refresh(0)
    for vol in pool.listAllVolumes(0):
        vol.delete(0)


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--guests", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    opts = ap.parse_args()
    ensure_collection()
    if not os.path.isdir(os.path.join(peer_site_packages(), "ansible_collections", "community", "libvirt")):
        log("no community.libvirt in %s: run benchmarks/host_facts/run.py once (it creates it)" % PEER_VENV)
        return 2
    outdir = os.path.join(RESULTS, "guest_disks-%s" % time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(outdir, exist_ok=True)
    conn = libvirt.open(URI)
    rows: dict[str, dict[str, list[Any]]] = {k: {"first": [], "second": [], "changed": []} for k in POOLS}
    try:
        base_path = setup(conn)
        kinds = list(POOLS)
        for r in range(opts.rounds):
            for kind in kinds[r % 3:] + kinds[:r % 3]:
                first, changed1 = run(kind, opts.guests, base_path, outdir, "r%d-first" % r)
                check(conn, kind, opts.guests, base_path)
                second, changed2 = run(kind, opts.guests, base_path, outdir, "r%d-second" % r)
                log("round %d %-7s first %.2fs (changed %s), second %.2fs (changed %s)"
                    % (r, kind, first, changed1, second, changed2))
                rows[kind]["first"].append(first)
                rows[kind]["second"].append(second)
                rows[kind]["changed"].append([changed1, changed2])
                empty(conn, kind)
    finally:
        cleanup(conn)
        conn.close()
    summary = {"guests": opts.guests, "rounds": opts.rounds, "rows": [
        {"method": LABELS[k], "first_s": median(v["first"]), "second_s": median(v["second"]),
         "changed": v["changed"][0]} for k, v in rows.items()]}
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    lines = ["| method | first run | changed | second run | changed |", "|---|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append("| %s | %.2f s | %s/%d | %.2f s | %s/%d |" % (
            row["method"], row["first_s"], row["changed"][0], opts.guests, row["second_s"], row["changed"][1],
            opts.guests))
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    from plots import plot_guest_disks  # pylint: disable=import-outside-toplevel
    print(plot_guest_disks(summary, os.path.join(outdir, "guest_disks.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
