# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wall time of gathering a simulated fleet's facts with forks 1, 5 and 10.

    .venv/bin/python benchmarks/fleet/run.py [--hosts 32] [--forks 1,5,10] [--repeats 2]

Generates --hosts simulated hypervisors (libvirt test-driver host files, each a
different shape; playbooks/inventories/make_simulated_fleet.py) in a temporary
directory, then runs playbooks/fleet_facts.yml over them with ansible-playbook,
timing each whole run:

- ``facts_modules``: ANSIBLE_FACTS_MODULES=hypervisor.libvirt.host_facts, a fresh
  jsonfile fact cache, gathering=smart (facts come from fact gathering);
- ``cached``: the same again with the now-warm cache (no module runs at all);
- ``uri_task``: gathering=explicit, the playbook's host_facts task with ``uri``
  from each host's ``libvirt_uri`` through module_defaults.

Ansible is the only distribution engine (``-f FORKS``); the order of forks
rotates between repeats. Every run must gather every host (the JSON report is
checked). Raw results go to benchmarks/results/ (gitignored); the temporary
fleet is removed at the end.
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
from benchlib import COLLECTIONS, RESULTS, ROOT, VENV_BIN, ensure_collection  # noqa: E402
from benchlib import log as _log  # noqa: E402
PLAYBOOK = os.path.join(ROOT, "playbooks", "fleet_facts.yml")
GENERATOR = os.path.join(ROOT, "playbooks", "inventories", "make_simulated_fleet.py")


def log(msg: str) -> None:
    _log(msg, "fleet")


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("ANSIBLE_") or k.startswith("LIBVIRT_LOG"):
            del env[k]
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
        "ANSIBLE_CONFIG": os.path.join(ROOT, "tests", "ansible.cfg"),
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
    })
    return env


def run(fleet: str, outdir: str, label: str, forks: int, extra_env: dict[str, str], hosts: int) -> float:
    """One ansible-playbook run over the fleet; returns its wall time, checks its report."""
    report = os.path.join(outdir, "%s-f%d-%d.json" % (label, forks, time.monotonic_ns()))
    env = base_env()
    env.update(extra_env)
    cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", os.path.join(fleet, "inventory.yml"),
           "-f", str(forks), PLAYBOOK, "-e", "fleet_report_path=%s" % report]
    start = time.perf_counter()
    with open(report + ".out", "w") as out:
        rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.perf_counter() - start
    if rc != 0:
        raise RuntimeError("%s with forks %d failed (rc %d), see %s.out" % (label, forks, rc, report))
    with open(report) as f:
        got = json.load(f)
    if len(got) != hosts or any("vcpu_total" not in v for v in got.values()):
        raise RuntimeError("%s with forks %d: report lacks hosts or facts (%s)" % (label, forks, report))
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description="Fleet fact gathering wall times for several forks values.")
    ap.add_argument("--hosts", type=int, default=32)
    ap.add_argument("--forks", default="1,5,10")
    ap.add_argument("--repeats", type=int, default=2)
    opts = ap.parse_args()
    forks_list = [int(f) for f in opts.forks.split(",")]
    ensure_collection()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(RESULTS, "fleet-%s" % stamp)
    os.makedirs(outdir, exist_ok=True)
    fleet = tempfile.mkdtemp(prefix="hvl-fleet-bench.")
    times: dict[str, dict[int, list[float]]] = {"facts_modules": {}, "cached": {}, "uri_task": {}}
    try:
        subprocess.run([sys.executable, GENERATOR, "--hosts", str(opts.hosts), "--dir", fleet], check=True,
                       stdout=subprocess.DEVNULL)
        log("%d simulated hypervisors in %s; %s CPUs here" % (opts.hosts, fleet, os.cpu_count()))
        for rep in range(opts.repeats):
            order = forks_list[rep % len(forks_list):] + forks_list[:rep % len(forks_list)]
            for forks in order:
                cache = os.path.join(fleet, "cache-%d-%d" % (rep, forks))
                cache_env = {"ANSIBLE_FACTS_MODULES": "hypervisor.libvirt.host_facts", "ANSIBLE_GATHERING": "smart",
                             "ANSIBLE_CACHE_PLUGIN": "jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": cache}
                for label, env in (("facts_modules", cache_env), ("cached", cache_env),
                                   ("uri_task", {"ANSIBLE_GATHERING": "explicit"})):
                    s = run(fleet, outdir, label, forks, env, opts.hosts)
                    times[label].setdefault(forks, []).append(s)
                    log("repeat %d forks %2d %-13s %.1fs" % (rep + 1, forks, label, s))
    finally:
        shutil.rmtree(fleet, ignore_errors=True)

    lines = ["| forks | FACTS_MODULES (cold cache) | from the jsonfile cache | URI pattern (host_facts task) |",
             "|---|---|---|---|"]
    for forks in forks_list:
        lines.append("| %d | %.1f s | %.1f s | %.1f s |" % (
            forks, statistics.median(times["facts_modules"][forks]), statistics.median(times["cached"][forks]),
            statistics.median(times["uri_task"][forks])))
    md = "\n".join(lines)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump({"hosts": opts.hosts, "cpus": os.cpu_count(), "repeats": opts.repeats,
                   "times": {k: {str(f): v for f, v in d.items()} for k, d in times.items()}}, f, indent=1)
    with open(os.path.join(outdir, "table.md"), "w") as f:
        f.write(md + "\n")
    print()
    print("fleet facts: %d simulated hypervisors, wall time of one ansible-playbook run, median of %d, %s CPUs"
          % (opts.hosts, opts.repeats, os.cpu_count()))
    print(md)
    print("raw results: %s" % outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
