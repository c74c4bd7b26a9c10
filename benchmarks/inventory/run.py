# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Inventory and domain_info vs community.libvirt, at 10/200/1000 domains on qemu:///system.

    .venv/bin/python benchmarks/inventory/run.py [--sizes 10,200,1000] [--rounds 5] [--info-size 200] [--ssh]

For each size, tiny ``type='qemu'`` domains ``hvl-bench-inv-NNNN`` are defined (never started; all
undefined at the end, also on failure). Part 1 times ``ansible-inventory --list`` with
hypervisor.libvirt.libvirt and with community.libvirt.libvirt (both over every domain of
qemu:///system), interleaved, plus the floor (``ansible-inventory`` over an empty YAML
inventory) and ours from Ansible's inventory cache (``cache: true``, filled by the uncounted first
round, one cache directory per size): the same hosts and variables with no libvirt call at all, so
what Ansible itself costs for them; median over the rounds; then each once with client-side RPC logging
(``LIBVIRT_LOG_FILTERS=1:rpc.netclient``), counting ``RPC_CLIENT_MSG_TX_QUEUE ... type=0`` lines
as host_facts/run.py does. Part 2, at ``--info-size`` domains: one ``domain_info`` task for all
domains vs community.libvirt's ``virt`` - ``command=info`` once plus ``command=get_xml`` looped over
the benchmark domains - as one playbook each, wall time. community.libvirt comes from
benchmarks/.venv-peer (host_facts/run.py creates it).

With ``--ssh`` both inventory plugins read the same daemon through ``qemu+ssh://root@127.0.0.1:PORT/system``
(a loopback sshd with keys made for the run, stopped afterwards), as an inventory of remote hypervisors
does; the domains are still defined over qemu:///system. Part 2 is then left out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import COLLECTIONS, RESULTS, ROOT, VENV_BIN, ensure_collection, log, loopback_sshd  # noqa: E402
from plots import plot_inventory  # noqa: E402

import libvirt  # noqa: E402

_spec = importlib.util.spec_from_file_location("hf", os.path.join(ROOT, "benchmarks", "host_facts", "run.py"))
hf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hf)  # type: ignore[union-attr]

URI = "qemu:///system"
PREFIX = "hvl-bench-inv-"
OURS = re.compile(r"^hvl-bench-inv-\d{4}$")


def our_domains(conn: Any) -> list[Any]:
    return [d for d in conn.listAllDomains(0) if OURS.match(d.name())]


def define_up_to(conn: Any, count: int) -> None:
    have = {d.name() for d in our_domains(conn)}
    for i in range(1, count + 1):
        name = "%s%04d" % (PREFIX, i)
        if name not in have:
            conn.defineXML(hf.domain_xml(name))
    log("%d %sNNNN domains defined" % (count, PREFIX))


def undefine_all(conn: Any) -> None:
    doms = our_domains(conn)
    for d in doms:
        try:
            d.undefine()
        except libvirt.libvirtError as exc:
            log("could not undefine %s: %s" % (d.name(), exc))
    if doms:
        log("undefined %d %sNNNN domains" % (len(doms), PREFIX))


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = dict(os.environ)
    e.update({
        "ANSIBLE_COLLECTIONS_PATH": "%s:%s" % (COLLECTIONS, hf.peer_site_packages()),
        "ANSIBLE_CONFIG": os.path.join(ROOT, "tests", "ansible.cfg"),
        "ANSIBLE_PYTHON_INTERPRETER": os.path.join(VENV_BIN, "python"),
        "PATH": VENV_BIN + os.pathsep + e.get("PATH", ""),
    })
    for k in ("LIBVIRT_LOG_FILTERS", "LIBVIRT_LOG_OUTPUTS"):
        e.pop(k, None)
    e.update(extra or {})
    return e


def inventory_once(source: str, extra: dict[str, str] | None = None) -> tuple[float, int]:
    start = time.perf_counter()
    out = subprocess.run([os.path.join(VENV_BIN, "ansible-inventory"), "-i", source, "--list"], env=env(extra),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError("ansible-inventory -i %s failed: %s" % (source, out.stderr.decode()[-500:]))
    hosts = len(json.loads(out.stdout).get("_meta", {}).get("hostvars", {}))
    return seconds, hosts


def playbook_time(play: list[dict[str, Any]], path: str) -> float:
    with open(path, "w") as f:
        json.dump(play, f, indent=1)
    start = time.perf_counter()
    with open(path + ".out", "w") as out:
        rc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", path],
                            env=env(), stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise RuntimeError("ansible-playbook failed (rc %d), see %s.out" % (rc, path))
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="10,200,1000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--info-size", type=int, default=200)
    ap.add_argument("--ssh", action="store_true", help="the plugins read through a loopback qemu+ssh:// URI")
    opts = ap.parse_args()
    with contextlib.ExitStack() as stack:
        uri = URI
        if opts.ssh:
            uri = stack.enter_context(loopback_sshd(stack.enter_context(tempfile.TemporaryDirectory())))
            opts.info_size = 0
        return run(opts, uri)


def run(opts: argparse.Namespace, plugin_uri: str) -> int:
    sizes = sorted(int(s) for s in opts.sizes.split(","))
    ensure_collection()
    hf.ensure_peer_venv()
    outdir = os.path.join(RESULTS, "inventory-%s" % datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(outdir, exist_ok=True)
    sources = {"floor": os.path.join(outdir, "empty.yml"), "ours": os.path.join(outdir, "ours.libvirt.yml"),
               "cached": os.path.join(outdir, "cached.libvirt.yml"), "peer": os.path.join(outdir, "peer.yml")}
    with open(sources["floor"], "w") as f:
        f.write("all: {}\n")
    with open(sources["ours"], "w") as f:
        f.write("plugin: hypervisor.libvirt.libvirt\nuris: [%s]\n" % json.dumps(plugin_uri))
    with open(sources["peer"], "w") as f:
        f.write("plugin: community.libvirt.libvirt\nuri: %s\n" % json.dumps(plugin_uri))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(URI)
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    try:
        undefine_all(conn)
        for size in sizes:
            define_up_to(conn, size)
            on_host = len(conn.listAllDomains(0))
            with open(sources["cached"], "w") as f:
                f.write("plugin: hypervisor.libvirt.libvirt\nuris: [%s]\ncache: true\ncache_plugin: ansible.builtin.jsonfile\n"
                        "cache_connection: %s\ncache_timeout: 86400\n"
                        % (json.dumps(plugin_uri), json.dumps(os.path.join(outdir, "cache-%d" % size))))
            times: dict[str, list[float]] = {k: [] for k in sources}
            hosts: dict[str, int] = {}
            for r in range(opts.rounds + 1):  # round 0 warms caches (and fills the inventory cache), not counted
                order = list(sources)[r % len(sources):] + list(sources)[:r % len(sources)]
                for key in order:
                    seconds, n = inventory_once(sources[key])
                    hosts[key] = n
                    if r:
                        times[key].append(seconds)
            rpc = {}
            for key in ("ours", "cached", "peer"):
                logf = os.path.join(outdir, "rpc-%d-%s.log" % (size, key))
                inventory_once(sources[key], {"LIBVIRT_LOG_FILTERS": "1:rpc.netclient",
                                              "LIBVIRT_LOG_OUTPUTS": "1:file:%s" % logf})
                rpc[key] = hf.count_rpc(logf)[0] if os.path.exists(logf) else 0  # no log: libvirt never connected
            row = {"size": size, "on_host": on_host, "hosts": hosts, "rpc": rpc, "raw": times,
                   "median": {k: statistics.median(v) for k, v in times.items()}}
            rows.append(row)
            if rpc["cached"]:
                raise RuntimeError("the cached listing made %d libvirt calls: it did not come from the cache"
                                   % rpc["cached"])
            if len(set(hosts.values()) - {0}) != 1:
                raise RuntimeError("the listings disagree on the number of hosts: %s" % hosts)
            log("size %d: floor %.2fs, ours %.2fs (%d RPC), from the cache %.2fs, peer %.2fs (%d RPC)" % (
                size, row["median"]["floor"], row["median"]["ours"], rpc["ours"], row["median"]["cached"],
                row["median"]["peer"], rpc["peer"]))
            if size == opts.info_size:
                names = ["%s%04d" % (PREFIX, i) for i in range(1, size + 1)]
                ours = [{"name": "hosts", "hosts": "localhost", "gather_facts": False, "tasks": [
                    {"name": "all domains", "hypervisor.libvirt.domain_info": {"uri": URI}, "register": "r"},
                    {"name": "saw them", "ansible.builtin.assert": {"that": [
                        "r.domains | map(attribute='name') | select('match', '%s') | list | length == %d"
                        % (OURS.pattern, size)]}}]}]
                peer = [{"name": "peer", "hosts": "localhost", "gather_facts": False, "tasks": [
                    {"name": "info", "community.libvirt.virt": {"command": "info", "uri": URI}},
                    {"name": "get_xml", "loop": names,
                     "community.libvirt.virt": {"command": "get_xml", "name": "{{ item }}", "uri": URI}}]}]
                info = {"size": size, "ours_s": playbook_time(ours, os.path.join(outdir, "info-ours.yml")),
                        "peer_s": playbook_time(peer, os.path.join(outdir, "info-peer.yml"))}
                log("domain_info at %d: ours %.1fs, peer loop %.1fs" % (size, info["ours_s"], info["peer_s"]))
    finally:
        undefine_all(conn)
        conn.close()
    lines = ["| domains (ours / all on host) | ansible-inventory floor | hypervisor.libvirt.libvirt | above floor "
             "| RPC calls | ours from the cache, above floor | community.libvirt.libvirt | above floor | RPC calls "
             "| ours/peer above floor | cached/peer above floor |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["median"]
        o, c, p = m["ours"] - m["floor"], m["cached"] - m["floor"], m["peer"] - m["floor"]
        lines.append("| %d / %d | %.2f s | %.2f s | **%.2f s** | %d | %.2f s | %.2f s | **%.2f s** | %d | %.2f | %.2f |" % (
            r["size"], r["on_host"], m["floor"], m["ours"], o, r["rpc"]["ours"], c, m["peer"], p, r["rpc"]["peer"],
            o / p if p > 0 else float("nan"), c / p if p > 0 else float("nan")))
    if info:
        lines.append("")
        lines.append("domain_info for all domains at %d: %.1f s; community.libvirt virt info + get_xml loop: %.1f s"
                     % (info["size"], info["ours_s"], info["peer_s"]))
    md = "\n".join(lines)
    summary = {"rows": rows, "info": info, "peer": hf.peer_version(),
               "transport": "qemu+ssh (loopback sshd)" if plugin_uri != URI else URI}
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(md + "\n")
    if rows:
        plot_inventory(summary, os.path.join(outdir, "inventory.png"))
    print("plugins read %s" % summary["transport"])
    print(md)
    print("raw results: %s" % outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
