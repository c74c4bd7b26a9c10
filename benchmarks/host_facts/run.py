# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_facts vs community.libvirt's virt info + nodeinfo vs ping, at 10/200/1000 domains.

Run from the repository root with the project's venv:

    .venv/bin/python benchmarks/host_facts/run.py [--sizes 10,200,1000] [--rounds 7]

For each size it defines tiny ``type='qemu'`` domains named ``hvl-bench-NNNN`` on
qemu:///system (no disks, never started; all undefined at the end, also on
failure or Ctrl-C), then runs ONE ansible-playbook in which every round runs
``ansible.builtin.ping``, ``hypervisor.libvirt.host_facts`` and
``community.libvirt.virt`` (command=info, then command=nodeinfo), in an order
that rotates from round to round. A callback plugin records each task's wall
time. "Above the floor" is a module's time minus ping's time in the same round
(the peer runs two modules, so two pings are subtracted); the table shows the
median over the rounds.

A second playbook runs each module once with client-side libvirt logging
(LIBVIRT_LOG_FILTERS=1:rpc.netclient) and counts the RPC calls the module
made: the log lines ``RPC_CLIENT_MSG_TX_QUEUE ... type=0`` (type 0 is a call;
replies, events and streams have other types). Connecting and closing count
too, the same for every module.

community.libvirt comes from the ``ansible`` package on PyPI, installed into
benchmarks/.venv-peer (created on first run); the playbook itself runs with the
project's ansible-core and all modules run with the project's Python, so only
the modules differ. Raw results go to benchmarks/results/ (gitignored): summary.json,
table.md and host_facts.png (time and RPC calls against domains, benchmarks/plots.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import COLLECTIONS, RESULTS, ROOT, VENV_BIN, ensure_collection, log  # noqa: E402
from plots import plot_host_facts  # noqa: E402
HERE = os.path.dirname(os.path.abspath(__file__))
PEER_VENV = os.path.join(ROOT, "benchmarks", ".venv-peer")
PEER_ANSIBLE = "ansible==12.3.0"  # ships community.libvirt 2.0.0; needs Python >= 3.11
URI = "qemu:///system"
PREFIX = "hvl-bench-"
# exactly hvl-bench-NNNN: other benchmarks use hvl-bench-<area>-… and must not be touched
OURS = re.compile(r"^hvl-bench-\d{4}$")

import libvirt  # noqa: E402  (the project's venv has it; the benchmark needs it to define domains)

MODULES = ("ping", "ours", "peer_info", "peer_nodeinfo")


# ---------------------------------------------------------------- set-up

def peer_site_packages() -> str:
    ver = "python%d.%d" % sys.version_info[:2]
    return os.path.join(PEER_VENV, "lib", ver, "site-packages")


def ensure_peer_venv() -> None:
    """benchmarks/.venv-peer with the `ansible` package (for community.libvirt only)."""
    marker = os.path.join(peer_site_packages(), "ansible_collections", "community", "libvirt", "MANIFEST.json")
    if os.path.exists(marker):
        return
    log("creating %s with %s (once)" % (PEER_VENV, PEER_ANSIBLE))
    subprocess.run([sys.executable, "-m", "venv", PEER_VENV], check=True)
    subprocess.run([os.path.join(PEER_VENV, "bin", "pip"), "install", "-q", PEER_ANSIBLE], check=True)


def peer_version() -> str:
    with open(os.path.join(peer_site_packages(), "ansible_collections", "community", "libvirt", "MANIFEST.json")) as f:
        return json.load(f)["collection_info"]["version"]


# ---------------------------------------------------------------- domains
def domain_xml(name: str) -> str:
    from lxml import etree
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = "32"
    etree.SubElement(dom, "vcpu").text = "1"
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type", arch="x86_64").text = "hvm"
    return etree.tostring(dom, encoding="unicode")


def our_domains(conn: Any) -> list[Any]:
    return [d for d in conn.listAllDomains(0) if OURS.match(d.name())]


def define_up_to(conn: Any, count: int) -> None:
    have = {d.name() for d in our_domains(conn)}
    start = time.monotonic()
    for i in range(1, count + 1):
        name = "%s%04d" % (PREFIX, i)
        if name not in have:
            conn.defineXML(domain_xml(name))
    log("%d %sNNNN domains defined (%.1fs)" % (count, PREFIX, time.monotonic() - start))


def undefine_all(conn: Any) -> None:
    doms = our_domains(conn)
    for d in doms:
        try:
            if d.isActive():
                d.destroy()
            d.undefine()
        except libvirt.libvirtError as exc:
            log("could not undefine %s: %s" % (d.name(), exc))
    if doms:
        log("undefined %d %sNNNN domains" % (len(doms), PREFIX))


# ---------------------------------------------------------------- playbooks
def task(name: str, module: str, **args: Any) -> dict[str, Any]:
    return {"name": name, module: args}


MODULE_TASKS = {
    "ping": ("ansible.builtin.ping", {}),
    "ours": ("hypervisor.libvirt.host_facts", {"uri": URI}),
    "peer_info": ("community.libvirt.virt", {"command": "info", "uri": URI}),
    "peer_nodeinfo": ("community.libvirt.virt", {"command": "nodeinfo", "uri": URI}),
}


def timing_playbook(rounds: int) -> list[dict[str, Any]]:
    """Round 0 warms caches (not counted); the order rotates so no module always goes first."""
    groups = [["ping"], ["ours"], ["peer_info", "peer_nodeinfo"]]
    tasks = []
    for r in range(rounds + 1):
        order = groups[r % 3:] + groups[:r % 3]
        for group in order:
            for key in group:
                module, args = MODULE_TASKS[key]
                t = task("r%d:%s" % (r, key), module, **args)
                # other engineers' domains come and go on the shared daemon; community.libvirt's
                # info fails when one vanishes between its listing and its lookup: drop that round
                t["ignore_errors"] = True
                tasks.append(t)
    return [{"name": "host_facts benchmark (timing)", "hosts": "localhost", "gather_facts": False,
             "tasks": tasks}]


def rpc_playbook(logdir: str, size: int) -> list[dict[str, Any]]:
    """Each module once with client-side RPC logging; asserts every module saw every domain."""
    tasks = []
    for key in ("ours", "peer_info", "peer_nodeinfo"):
        module, args = MODULE_TASKS[key]
        t = task("rpc:%s" % key, module, **args)
        t["environment"] = {"LIBVIRT_LOG_FILTERS": "1:rpc.netclient",
                            "LIBVIRT_LOG_OUTPUTS": "1:file:%s/%s.log" % (logdir, key)}
        t["register"] = key
        tasks.append(t)
    tasks.append({"name": "Both saw all benchmark domains", "ansible.builtin.assert": {"that": [
        "ours.ansible_facts.libvirt.domains | map(attribute='name') | select('match', '%s') | list | length == %d"
        % (OURS.pattern, size),
        "peer_info.keys() | select('match', '%s') | list | length == %d" % (OURS.pattern, size),
    ]}})
    return [{"name": "host_facts benchmark (RPC count)", "hosts": "localhost", "gather_facts": False,
             "tasks": tasks}]


def ansible_env(times_path: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": "%s:%s" % (COLLECTIONS, peer_site_packages()),
        "ANSIBLE_CONFIG": os.path.join(ROOT, "tests", "ansible.cfg"),
        "ANSIBLE_PYTHON_INTERPRETER": os.path.join(VENV_BIN, "python"),
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "hvl_bench_timer",
        "HVL_BENCH_TIMES": times_path,
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
    })
    for k in ("LIBVIRT_LOG_FILTERS", "LIBVIRT_LOG_OUTPUTS"):
        env.pop(k, None)
    return env


def run_playbook(play: list[dict[str, Any]], path: str, times_path: str) -> list[dict[str, Any]]:
    with open(path, "w") as f:
        json.dump(play, f, indent=1)  # JSON is YAML
    with open(path + ".out", "w") as out:
        rc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", path],
                            env=ansible_env(times_path), stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise RuntimeError("ansible-playbook failed (rc %d), see %s.out" % (rc, path))
    with open(times_path) as f:
        return [json.loads(line) for line in f]


RPC_LINE = re.compile(r"RPC_CLIENT_MSG_TX_QUEUE: .* proc=(\d+) type=0 ")


def count_rpc(path: str) -> tuple[int, dict[str, int]]:
    """Calls the client sent: RPC_CLIENT_MSG_TX_QUEUE lines with type=0 (call)."""
    procs: Counter = Counter()
    with open(path) as f:
        for line in f:
            m = RPC_LINE.search(line)
            if m:
                procs[m.group(1)] += 1
    return sum(procs.values()), dict(procs.most_common())


# ---------------------------------------------------------------- analysis
def analyse(times: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    by_round: dict[int, dict[str, float]] = {}
    failed_rounds: set[int] = set()
    for t in times:
        r, key = t["task"].split(":", 1)
        by_round.setdefault(int(r[1:]), {})[key] = t["seconds"]
        if not t["ok"]:
            failed_rounds.add(int(r[1:]))
    measured = [by_round[r] for r in range(1, rounds + 1) if r not in failed_rounds]
    if not measured:
        raise RuntimeError("every round had a failed task")
    ours = [m["ours"] - m["ping"] for m in measured]
    peer = [m["peer_info"] + m["peer_nodeinfo"] - 2 * m["ping"] for m in measured]
    return {
        "ping_median_s": statistics.median(m["ping"] for m in measured),
        "ours_median_s": statistics.median(m["ours"] for m in measured),
        "peer_median_s": statistics.median(m["peer_info"] + m["peer_nodeinfo"] for m in measured),
        "ours_above_floor_s": statistics.median(ours),
        "peer_above_floor_s": statistics.median(peer),
        "ours_above_floor_all": ours,
        "peer_above_floor_all": peer,
        "rounds_dropped": sorted(failed_rounds),
        "raw": measured,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| domains (ours / all on host) | ping (floor) | host_facts | above floor | RPC calls "
        "| virt info+nodeinfo | above floor | RPC calls | ours/peer above floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append("| %d / %d | %.3f s | %.3f s | **%.3f s** | %d | %.3f s | **%.3f s** | %d | %.2f |" % (
            r["size"], r["domains_on_host"], r["ping_median_s"], r["ours_median_s"], r["ours_above_floor_s"],
            r["ours_rpc"], r["peer_median_s"], r["peer_above_floor_s"], r["peer_rpc"],
            r["ours_above_floor_s"] / r["peer_above_floor_s"] if r["peer_above_floor_s"] > 0 else float("nan")))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="10,200,1000", help="comma-separated domain counts, ascending")
    ap.add_argument("--rounds", type=int, default=7, help="measured rounds per size (one warm-up round extra)")
    opts = ap.parse_args()
    sizes = sorted(int(s) for s in opts.sizes.split(","))

    ensure_collection()
    ensure_peer_venv()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(RESULTS, "host_facts-%s" % stamp)
    os.makedirs(outdir, exist_ok=True)

    # SIGTERM too goes through the finally below, so the domains are undefined
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    libvirt.registerErrorHandler(lambda *_: None, None)
    conn = libvirt.open(URI)
    rows = []
    try:
        undefine_all(conn)  # leftovers of an interrupted earlier run (only our prefix)
        for size in sizes:
            define_up_to(conn, size)
            on_host = len(conn.listAllDomains(0))
            log("size %d: timing %d rounds (+1 warm-up) of ping / host_facts / virt info+nodeinfo"
                % (size, opts.rounds))
            times_path = os.path.join(outdir, "times-%d.jsonl" % size)
            times = run_playbook(timing_playbook(opts.rounds), os.path.join(outdir, "timing-%d.yml" % size),
                                 times_path)
            row = {"size": size, "domains_on_host": on_host}
            row.update(analyse(times, opts.rounds))
            logdir = os.path.join(outdir, "rpc-%d" % size)
            os.makedirs(logdir, exist_ok=True)
            for attempt in (1, 2, 3):  # the peer can trip over others' domains vanishing: try again
                for name in os.listdir(logdir):
                    os.unlink(os.path.join(logdir, name))
                try:
                    run_playbook(rpc_playbook(logdir, size), os.path.join(outdir, "rpc-%d.yml" % size),
                                 os.path.join(outdir, "rpc-times-%d-%d.jsonl" % (size, attempt)))
                    break
                except RuntimeError:
                    if attempt == 3:
                        raise
                    log("RPC count run failed, trying again")
            row["ours_rpc"], row["ours_rpc_procs"] = count_rpc(os.path.join(logdir, "ours.log"))
            info_n, info_p = count_rpc(os.path.join(logdir, "peer_info.log"))
            node_n, node_p = count_rpc(os.path.join(logdir, "peer_nodeinfo.log"))
            row["peer_rpc"] = info_n + node_n
            row["peer_rpc_procs"] = {"info": info_p, "nodeinfo": node_p}
            rows.append(row)
            log("size %d: ours %.3fs above floor, %d RPC calls; peer %.3fs above floor, %d RPC calls"
                % (size, row["ours_above_floor_s"], row["ours_rpc"], row["peer_above_floor_s"], row["peer_rpc"]))
    finally:
        undefine_all(conn)
        conn.close()

    summary = {
        "when": stamp, "uri": URI, "rounds": opts.rounds, "peer": "community.libvirt %s (%s)"
        % (peer_version(), PEER_ANSIBLE), "rpc_count": "RPC_CLIENT_MSG_TX_QUEUE lines with type=0",
        "rows": rows,
    }
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    md = table(rows)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(md + "\n")
    plot_host_facts(summary, os.path.join(outdir, "host_facts.png"))
    print()
    print("host_facts benchmark, %s, median of %d interleaved rounds, peer %s" % (URI, opts.rounds, summary["peer"]))
    print(md)
    by_size = {r["size"]: r for r in rows}
    if 200 in by_size:
        r = by_size[200]
        print("goal at 200 domains: ours/peer above floor = %.2f (goal <= 0.25)"
              % (r["ours_above_floor_s"] / r["peer_above_floor_s"]))
    if len(rows) > 1:
        print("flatness: ours above floor %s s; RPC calls %s"
              % (" -> ".join("%.3f" % r["ours_above_floor_s"] for r in rows),
                 " -> ".join(str(r["ours_rpc"]) for r in rows)))
    print("raw results: %s" % outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
