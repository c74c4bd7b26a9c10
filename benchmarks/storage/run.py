# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Upload of a 2 GiB sparse qcow2 image: storage_volume vs virsh vol-upload --sparse vs cp --sparse=always.

Run from the repository root with the project's venv (as root, a running libvirtd):

    .venv/bin/python benchmarks/storage/run.py [--size 2G] [--data-mib 96] [--rounds 3]

Makes a qcow2 image of ``--size`` with qemu-img and writes ``--data-mib`` MiB of data into it
(qemu-io, in 8 MiB pieces spread over the image), then, interleaved in each round:

- ``storage_volume`` - one ansible-playbook run of ``hypervisor.libvirt.storage_volume`` with
  ``src`` (the volume and its upload record removed before, so it really uploads), and the same
  task again (``unchanged``: the source is hashed and found uploaded already);
- ``storage_volume (library)`` - the same upload through ``VolumeManager`` in this process (no Ansible);
- ``virsh`` - ``virsh vol-create-as`` + ``virsh vol-upload --sparse``;
- ``cp`` - ``cp --sparse=always`` into the pool's directory (the local limit: no libvirt, no stream);
- ``ping`` - an ansible-playbook run of ``ansible.builtin.ping`` (what starting a playbook costs).

Each result is checked: the volume holds the same bytes as the image (``cmp``), and its allocation
is reported. Everything is named hvl-bench-st* and removed at the end, also on failure.
Raw results, the table and the figure go to benchmarks/results/storage-<time>/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import COLLECTIONS, RESULTS, ROOT, VENV_BIN, ensure_collection, log  # noqa: E402

ensure_collection()
from ansible_collections.hypervisor.libvirt.plugins.module_utils import storage  # noqa: E402
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host  # noqa: E402
import plots  # noqa: E402

URI = "qemu:///system"
PREFIX = "hvl-bench-st"
WORK = "/var/tmp/" + PREFIX
POOL = PREFIX
POOL_DIR = os.path.join(WORK, "pool")
IMAGE = os.path.join(WORK, "source.qcow2")
METHODS = ("cp", "virsh", "storage_volume (library)", "storage_volume", "storage_volume unchanged", "ping")


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def make_image(size: str, data_mib: int) -> None:
    sh("qemu-img", "create", "-q", "-f", "qcow2", IMAGE, size)
    total = int(sh("qemu-img", "info", "--output=json", IMAGE).stdout.split('"virtual-size": ')[1].split(",")[0])
    pieces = max(1, data_mib // 8)
    args = []
    for i in range(pieces):
        offset = (total // pieces) * i
        args += ["-c", "write -P 0x%02x %d 8M" % (0x11 + i % 200, offset)]
    sh("qemu-io", *args, IMAGE)


def allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


def playbook(path: str, task: dict) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}], f)
    return path


def ansible(play: str) -> float:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_CONFIG=os.path.join(ROOT, "tests", "ansible.cfg"),
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(VENV_BIN, "python"))
    start = time.monotonic()
    subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", play],
                   check=True, capture_output=True, env=env)
    return time.monotonic() - start


def clean_volume(host: Host, name: str) -> None:
    mgr = storage.VolumeManager(host, False)
    mgr.ensure(POOL, name, state="absent", force=True)
    if os.path.exists(os.path.join(POOL_DIR, name)):
        os.unlink(os.path.join(POOL_DIR, name))


def same(path: str) -> bool:
    return subprocess.run(["cmp", "-s", IMAGE, path], check=False).returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--size", default="2G")
    ap.add_argument("--data-mib", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    out = os.path.join(RESULTS, "storage-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    host = Host(URI)
    tmp = tempfile.mkdtemp(prefix=PREFIX)
    runs: list[dict] = []
    try:
        make_image(opts.size, opts.data_mib)
        log("image %s: %d bytes, %d allocated" % (IMAGE, os.path.getsize(IMAGE), allocated(IMAGE)))
        storage.PoolManager(host, False).ensure(POOL, spec={"type": "dir", "target": {"path": POOL_DIR}}, state="active")
        upload = playbook(os.path.join(tmp, "upload.json"), {
            "hypervisor.libvirt.storage_volume": {"uri": URI, "pool": POOL, "name": "ours.qcow2", "src": IMAGE}})
        ping = playbook(os.path.join(tmp, "ping.json"), {"ansible.builtin.ping": {}})
        for rnd in range(1, opts.rounds + 1):
            t = time.monotonic()
            sh("cp", "--sparse=always", IMAGE, os.path.join(POOL_DIR, "cp.qcow2"))
            runs.append({"round": rnd, "method": "cp", "seconds": time.monotonic() - t,
                         "path": os.path.join(POOL_DIR, "cp.qcow2")})

            t = time.monotonic()
            sh("virsh", "-q", "-c", URI, "vol-create-as", POOL, "virsh.qcow2", str(os.path.getsize(IMAGE)),
               "--format", "raw")
            sh("virsh", "-q", "-c", URI, "vol-upload", "--sparse", "virsh.qcow2", IMAGE, "--pool", POOL)
            runs.append({"round": rnd, "method": "virsh", "seconds": time.monotonic() - t,
                         "path": os.path.join(POOL_DIR, "virsh.qcow2")})

            t = time.monotonic()
            res = storage.VolumeManager(host, False).ensure(POOL, "lib.qcow2", src=IMAGE)
            runs.append({"round": rnd, "method": "storage_volume (library)", "seconds": time.monotonic() - t,
                         "path": res["path"]})

            runs.append({"round": rnd, "method": "storage_volume", "seconds": ansible(upload),
                         "path": os.path.join(POOL_DIR, "ours.qcow2")})
            runs.append({"round": rnd, "method": "storage_volume unchanged", "seconds": ansible(upload),
                         "path": os.path.join(POOL_DIR, "ours.qcow2")})
            runs.append({"round": rnd, "method": "ping", "seconds": ansible(ping), "path": None})
            for r in runs[-6:]:
                if r["path"]:
                    r["same_bytes"] = same(r["path"])
                    r["allocated"] = allocated(r["path"])
                log("round %d %-26s %7.2f s%s" % (rnd, r["method"], r["seconds"],
                                                   "" if not r["path"] else "  same=%s allocated=%d MiB" % (
                                                       r["same_bytes"], r["allocated"] // 2 ** 20)))
            for name in ("cp.qcow2", "virsh.qcow2", "lib.qcow2", "ours.qcow2"):
                clean_volume(host, name)
            storage.PoolManager(host, False).ensure(POOL, state="active", refresh=True)
    finally:
        try:
            storage.PoolManager(host, False).ensure(POOL, state="absent", delete_storage=True, force=True)
        except Exception as exc:  # pylint: disable=broad-except
            log("cleanup: %s" % exc)
        shutil.rmtree(WORK, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        host.close()
    summary = {"machine": "%d CPUs, libvirt %s" % (os.cpu_count() or 0, sh("virsh", "-c", URI, "version").stdout.split(
        "library: libvirt ")[1].split()[0] if True else ""),
        "size": opts.size, "data_mib": opts.data_mib, "rounds": opts.rounds, "rows": []}
    for m in METHODS:
        times = [r["seconds"] for r in runs if r["method"] == m]
        sample = next((r for r in runs if r["method"] == m), {})
        summary["rows"].append({"method": m, "median_s": statistics.median(times), "min_s": min(times),
                                "max_s": max(times), "same_bytes": all(r.get("same_bytes", True) for r in runs
                                                                      if r["method"] == m),
                                "allocated_mib": (sample.get("allocated") or 0) // 2 ** 20 if sample.get("path") else None})
    with open(os.path.join(out, "runs.json"), "w", encoding="utf-8") as f:
        json.dump({"runs": runs, "summary": summary}, f, indent=1)
    lines = ["| method | median | min | max | same bytes | allocated |", "|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append("| %s | %.2f s | %.2f s | %.2f s | %s | %s |" % (
            row["method"], row["median_s"], row["min_s"], row["max_s"],
            "yes" if row["same_bytes"] else "NO", "-" if row["allocated_mib"] is None else "%d MiB" % row["allocated_mib"]))
    table = "\n".join(lines)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    print(table)
    print(plots.plot_storage(summary, os.path.join(out, "storage.png")))
    return 0 if all(r["same_bytes"] for r in summary["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
