# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figures of the benchmarks against their peer, drawn with matplotlib from their result files.

The benchmarks call these functions themselves and write each figure beside its table in
benchmarks/results/. From result files (a benchmark's own, or the recorded ones under
benchmarks/recorded/ that the docs site's performance page shows):

    .venv/bin/python benchmarks/plots.py --recorded --out DIR
    .venv/bin/python benchmarks/plots.py --host-facts SUMMARY.json --domain RUNS.json --inventory SUMMARY.json --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDED = os.path.join(HERE, "recorded")
OURS_COLOUR, PEER_COLOUR = "#1f6fb4", "#d1603d"


def _pyplot() -> Any:
    """matplotlib without a display (the benchmarks and the docs build run headless)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def load(path: str) -> dict[str, Any]:
    """One result file: a JSON object as the benchmark wrote it (summary.json, runs.json)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _domains_axes(axes: Any, sizes: list[int]) -> None:
    """Both panels of a figure against the number of domains on the host (log scale, one tick per size)."""
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("domains on the host")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)


def _save(plt: Any, fig: Any, path: str, title: str) -> str:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_host_facts(summary: dict[str, Any], path: str) -> str:
    """Time above the ping floor and libvirt RPC calls against domains on the host, ours vs the peer."""
    plt = _pyplot()
    rows = sorted(summary["rows"], key=lambda r: r["size"])
    sizes = [r["size"] for r in rows]
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax_t.plot(sizes, [r["ours_above_floor_s"] for r in rows], "o-", color=OURS_COLOUR,
              label="hypervisor.libvirt.host_facts")
    ax_t.plot(sizes, [r["peer_above_floor_s"] for r in rows], "s--", color=PEER_COLOUR,
              label="community.libvirt virt info + nodeinfo")
    ax_t.set_ylabel("seconds above the ping floor (median)")
    ax_t.set_title("Time per run")
    ax_r.plot(sizes, [r["ours_rpc"] for r in rows], "o-", color=OURS_COLOUR, label="host_facts")
    ax_r.plot(sizes, [r["peer_rpc"] for r in rows], "s--", color=PEER_COLOUR, label="virt info + nodeinfo")
    ax_r.set_yscale("log")
    ax_r.set_ylabel("libvirt RPC calls")
    ax_r.set_title("RPC calls per run")
    _domains_axes((ax_t, ax_r), sizes)
    return _save(plt, fig, path, "host_facts vs community.libvirt (%s)"
                 % summary.get("machine", summary.get("uri", "")))


def plot_inventory(summary: dict[str, Any], path: str) -> str:
    """ansible-inventory time above its floor and libvirt RPC calls against domains, ours vs the peer."""
    plt = _pyplot()
    rows = sorted(summary["rows"], key=lambda r: r["size"])
    sizes = [r["size"] for r in rows]
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(10, 4.2))
    for key, style, colour, label in (("ours", "o-", OURS_COLOUR, "hypervisor.libvirt.libvirt"),
                                      ("cached", "o:", OURS_COLOUR, "hypervisor.libvirt.libvirt from the cache"),
                                      ("peer", "s--", PEER_COLOUR, "community.libvirt.libvirt")):
        if not all(key in r["median"] for r in rows):
            continue  # a summary from before the cached row
        ax_t.plot(sizes, [r["median"][key] - r["median"]["floor"] for r in rows], style, color=colour, label=label)
        if key != "cached":  # no libvirt call at all: nothing to draw on a log scale
            ax_r.plot(sizes, [r["rpc"][key] for r in rows], style, color=colour, label=label)
    ax_t.set_ylabel("seconds above the ansible-inventory floor (median)")
    ax_t.set_title("ansible-inventory --list")
    ax_r.set_yscale("log")
    ax_r.set_ylabel("libvirt RPC calls")
    ax_r.set_title("RPC calls per listing")
    _domains_axes((ax_t, ax_r), sizes)
    return _save(plt, fig, path, "inventory vs community.libvirt %s" % summary.get("peer", ""))


def plot_domain(runs: dict[str, Any], path: str) -> str:
    """Wall time of converging N guests (first run and the unchanged second run) against N, ours vs the peer."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {("ours", 1): ("o-", OURS_COLOUR), ("ours", 2): ("o:", OURS_COLOUR),
              ("peer", 1): ("s-", PEER_COLOUR), ("peer", 2): ("s:", PEER_COLOUR)}
    names = {"ours": "hypervisor.libvirt.domain", "peer": "community.libvirt.virt"}
    for (tool, run), (style, colour) in styles.items():
        points = sorted((r["guests"], r["seconds"], r["changed"]) for r in runs["runs"]
                        if r["tool"] == tool and r["run"] == run)
        if not points:
            continue
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], style, color=colour,
                label="%s, %s run" % (names[tool], "first" if run == 1 else "second"))
        if run == 2:
            for x, y, changed in points:
                ax.annotate("%d changed" % changed, (x, y), textcoords="offset points", xytext=(4, -12),
                            fontsize=7, color=colour)
    guests = sorted({r["guests"] for r in runs["runs"]})
    ax.set_xticks(guests, [str(g) for g in guests])
    ax.set_xlim(0, max(guests) * 1.1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("guests converged (one playbook, one loop)")
    ax.set_ylabel("wall time of ansible-playbook (s)")
    ax.set_title("Converge time vs guests (%s)" % runs.get("machine", ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_storage(summary: dict[str, Any], path: str) -> str:
    """Median wall time of one upload of a sparse image, per image and method (ours, virsh, cp, the floor)."""
    plt = _pyplot()
    rows = summary["rows"]
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.42 * len(rows)))
    colours = [OURS_COLOUR if "storage_volume" in r["method"] else PEER_COLOUR if "virsh" in r["method"]
               else "#888888" for r in rows]
    bars = ax.barh([r["method"] for r in rows], [r["median_s"] for r in rows], color=colours)
    for rect, row in zip(bars, rows):
        ax.annotate("%.2f s" % row["median_s"], (rect.get_width(), rect.get_y() + rect.get_height() / 2),
                    textcoords="offset points", xytext=(4, -3), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("wall time, median of %d rounds (s)" % summary["rounds"])
    title = "Upload of a %s sparse image with %d MiB of data (%s)" % (summary["size"], summary["data_mib"],
                                                                      summary.get("machine", ""))
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_guest_disks(summary: dict[str, Any], path: str) -> str:
    """Wall time of N guests' copy-on-write disks, first run and identical re-run, per method."""
    plt = _pyplot()
    rows = summary["rows"]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ys = range(len(rows))
    colours = [PEER_COLOUR if "community" in r["method"] else OURS_COLOUR for r in rows]
    ax.barh([y - 0.2 for y in ys], [r["first_s"] for r in rows], height=0.4, color=colours, label="first run")
    ax.barh([y + 0.2 for y in ys], [r["second_s"] for r in rows], height=0.4, color=colours, alpha=0.5,
            label="second run (identical)")
    for y, row in zip(ys, rows):
        ax.annotate("%.1f s" % row["first_s"], (row["first_s"], y - 0.2), textcoords="offset points",
                    xytext=(4, -3), fontsize=8)
        ax.annotate("%.1f s" % row["second_s"], (row["second_s"], y + 0.2), textcoords="offset points",
                    xytext=(4, -3), fontsize=8)
    ax.set_yticks(list(ys), [r["method"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("wall time of one ansible-playbook run, median of %d rounds (s)" % summary["rounds"])
    ax.set_title("%d guests' copy-on-write disks over one base volume" % summary["guests"], fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--recorded", action="store_true", help="draw from benchmarks/recorded/ (the figures the docs show)")
    ap.add_argument("--host-facts", help="a host_facts summary.json")
    ap.add_argument("--domain", help="a domain benchmark runs.json")
    ap.add_argument("--inventory", help="an inventory benchmark summary.json")
    ap.add_argument("--out", required=True, help="directory to write the PNG files to")
    opts = ap.parse_args()
    host_facts, domain, inventory = opts.host_facts, opts.domain, opts.inventory
    if opts.recorded:
        host_facts = host_facts or os.path.join(RECORDED, "host_facts.json")
        domain = domain or os.path.join(RECORDED, "domain.json")
        if not inventory and os.path.exists(os.path.join(RECORDED, "inventory.json")):
            inventory = os.path.join(RECORDED, "inventory.json")
    if not host_facts and not domain and not inventory:
        ap.error("nothing to draw: give --recorded, --host-facts, --domain or --inventory")
    os.makedirs(opts.out, exist_ok=True)
    if host_facts:
        print(plot_host_facts(load(host_facts), os.path.join(opts.out, "host_facts.png")))
    if domain:
        print(plot_domain(load(domain), os.path.join(opts.out, "domain.png")))
    if inventory:
        print(plot_inventory(load(inventory), os.path.join(opts.out, "inventory.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
