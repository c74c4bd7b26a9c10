# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domain XML generation: guest_xml vs a plain Jinja2 template vs virt-install, side by side.

Run from the repository root with the project's venv:

    .venv/bin/python benchmarks/guest_xml/bench.py [--seconds 2] [--virt-install-runs 5]

One typical guest (2 disks, 2 NICs, sysinfo, CPU topology, serial, VNC graphics)
is produced, in one process on one core, by:

  guest_xml (no validation)   validate_spec + builders + serialise, escaped by lxml
  guest_xml + RelaxNG         the same plus validation against libvirt's domain.rng
  guest_config (normalised)   builders only, from an already normalised spec
  jinja2 template             a hand-written template of the same XML (autoescape on)
  virt-install                `virt-install --print-xml --dry-run --connect test:///default`
                              for the same guest, one process per domain

The in-process variants run interleaved, 0.1 s slices in turn, about --seconds each,
after a warm-up; rates are the median domains per second of the slices (higher is
better), so a burst of load on this shared machine hits all variants alike. Every variant's output is checked once to be the same
domain (structurally, for the in-process ones) before timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ensure_collection  # noqa: E402
ensure_collection()

import jinja2  # noqa: E402

from ansible_collections.hypervisor.libvirt.plugins.module_utils import guest, xmlutil  # noqa: E402
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import validate_spec  # noqa: E402

SPEC = {
    "name": "hvl-bench",
    "type": "qemu",
    "memory": "2GiB",
    "vcpus": 4,
    "cpu": {"mode": "host-model", "topology": {"sockets": 1, "cores": 2, "threads": 2}},
    "os": {"arch": "x86_64", "machine": "pc", "boot": ["hd"]},
    "features": ["acpi", "apic"],
    "sysinfo": {"system": {"manufacturer": "hypervisor.libvirt", "product": "bench", "serial": "HVL-0001"}},
    "disks": [
        {"source": "/var/lib/libvirt/images/hvl-bench.qcow2", "format": "qcow2", "cache": "none"},
        {"source": "/var/lib/libvirt/images/hvl-bench-data.raw", "format": "raw"},
    ],
    "interfaces": [
        {"source": "default", "mac": "52:54:00:00:00:01"},
        {"type": "bridge", "source": "br0", "mac": "52:54:00:00:00:02"},
    ],
    "serials": [{}],
    "graphics": {"type": "vnc", "listen": "127.0.0.1"},
}

TEMPLATE = """<domain type="{{ s.type }}">
  <name>{{ s.name }}</name>
  <memory unit="MiB">{{ s.memory }}</memory>
  <vcpu>{{ s.vcpus }}</vcpu>
  <sysinfo type="smbios">
    <system>
{%- for k, v in s.sysinfo.system.items() %}
      <entry name="{{ k }}">{{ v }}</entry>
{%- endfor %}
    </system>
  </sysinfo>
  <os>
    <type arch="{{ s.os.arch }}" machine="{{ s.os.machine }}">hvm</type>
{%- for dev in s.os.boot %}
    <boot dev="{{ dev }}"/>
{%- endfor %}
    <smbios mode="sysinfo"/>
  </os>
  <features>
{%- for f in s.features %}
    <{{ f }}/>
{%- endfor %}
  </features>
  <cpu mode="{{ s.cpu.mode }}">
    <topology sockets="{{ s.cpu.topology.sockets }}" dies="1" cores="{{ s.cpu.topology.cores }}" threads="{{ s.cpu.topology.threads }}"/>
  </cpu>
  <devices>
{%- for d in s.disks %}
    <disk type="file" device="disk">
      <driver name="qemu" type="{{ d.format }}"{% if d.cache %} cache="{{ d.cache }}"{% endif %}/>
      <source file="{{ d.source }}"/>
      <target dev="vd{{ 'abcdefghijklmnopqrstuvwxyz'[loop.index0] }}" bus="virtio"/>
    </disk>
{%- endfor %}
{%- for n in s.interfaces %}
    <interface type="{{ n.type | default('network') }}">
      <mac address="{{ n.mac }}"/>
      <source {{ 'bridge' if n.type == 'bridge' else 'network' }}="{{ n.source }}"/>
      <model type="virtio"/>
    </interface>
{%- endfor %}
    <serial type="pty"/>
    <graphics type="{{ s.graphics.type }}" autoport="yes">
      <listen type="address" address="{{ s.graphics.listen }}"/>
    </graphics>
  </devices>
</domain>
"""

VIRT_INSTALL = [
    "virt-install", "--connect", "test:///default", "--print-xml", "--dry-run",
    "--name", "hvl-bench", "--virt-type", "test", "--memory", "2048", "--vcpus", "4,sockets=1,cores=2,threads=2",
    "--cpu", "host-model", "--boot", "hd", "--osinfo", "detect=off,require=off",
    "--sysinfo", "system.manufacturer=hypervisor.libvirt,system.product=bench,system.serial=HVL-0001",
    "--disk", "path=/var/lib/libvirt/images/hvl-bench.qcow2,format=qcow2,cache=none,bus=virtio,size=1",
    "--disk", "path=/var/lib/libvirt/images/hvl-bench-data.raw,format=raw,bus=virtio,size=1",
    "--network", "network=default,mac=52:54:00:00:00:01,model=virtio",
    "--network", "bridge=br0,mac=52:54:00:00:00:02,model=virtio",
    "--serial", "pty", "--graphics", "vnc,listen=127.0.0.1", "--noautoconsole",
]


def rates(variants: list[tuple[str, Any]], seconds: float, slice_s: float = 0.1) -> list[tuple[str, float, int]]:
    """Median calls/second of each variant, measured in interleaved slices.

    The machine is shared and noisy: instead of timing each variant in one
    block (where a burst of load hits one variant only), every round runs
    each variant for ``slice_s`` in turn, for about ``seconds`` per variant in
    all, and the median of a variant's slice rates is reported.
    """
    for _name, fn in variants:  # warm-up
        for _round in range(50):
            fn()
    samples: dict[str, list[float]] = {name: [] for name, _fn in variants}
    counts = {name: 0 for name, _fn in variants}
    for _slice in range(max(1, int(seconds / slice_s))):
        for name, fn in variants:
            n = 0
            start = time.perf_counter()
            while True:
                for _round in range(10):
                    fn()
                n += 10
                elapsed = time.perf_counter() - start
                if elapsed >= slice_s:
                    break
            samples[name].append(n / elapsed)
            counts[name] += n
    return [(name, statistics.median(samples[name]), counts[name]) for name, _fn in variants]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--virt-install-runs", type=int, default=5)
    args = ap.parse_args()

    normalised = validate_spec(SPEC)
    template = jinja2.Environment(autoescape=True).from_string(TEMPLATE)
    tmpl_spec = dict(SPEC, memory=normalised["memory"])

    # same document from each in-process variant
    ours = guest.guest_xml(SPEC)
    theirs = template.render(s=tmpl_spec)
    assert xmlutil.xml_equal(ours, theirs), xmlutil.unified_diff(theirs, ours)
    assert xmlutil.validate(theirs, "domain")

    rows = rates([
        ("guest_xml (no validation)", lambda: guest.guest_xml(SPEC, validate=False)),
        ("guest_xml + RelaxNG validation", lambda: guest.guest_xml(SPEC)),
        ("guest_config, normalised spec, serialised", lambda: xmlutil.to_string(guest.guest_config(normalised))),
        ("jinja2 template (autoescape)", lambda: template.render(s=tmpl_spec)),
        ("jinja2 template + RelaxNG validation", lambda: xmlutil.validate(template.render(s=tmpl_spec), "domain")),
    ], args.seconds)

    if shutil.which("virt-install"):
        out = subprocess.run(VIRT_INSTALL, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print("virt-install failed: %s" % out.stderr.strip(), file=sys.stderr)
        else:
            start = time.perf_counter()
            for _round in range(args.virt_install_runs):
                subprocess.run(VIRT_INSTALL, capture_output=True, check=True)
            elapsed = time.perf_counter() - start
            rows.append(("virt-install --print-xml --dry-run",
                         args.virt_install_runs / elapsed, args.virt_install_runs))
    else:
        print("virt-install not installed; skipped", file=sys.stderr)

    template_rate = rows[3][1]
    print("%-44s %12s %9s %10s" % ("variant", "domains/s", "runs", "vs jinja2"))
    for name, r, n in rows:
        print("%-44s %12.1f %9d %9.2fx" % (name, r, n, template_rate / r))
    gen, val = rows[0][1], rows[1][1]
    print()
    print("goal: generation within 3x of the template: %s (%.2fx)" %
          ("met" if template_rate / gen <= 3 else "NOT met", template_rate / gen))
    print("goal: generation + validation >= 1000 domains/s: %s (%.0f/s)" % ("met" if val >= 1000 else "NOT met", val))
    return 0


if __name__ == "__main__":
    sys.exit(main())
