# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters on interfaces: 20 guests through domain_interface, and one live filterref change two ways.

Run from the repository root with the project's venv:

    .venv/bin/python benchmarks/nwfilter/run.py [--guests 20] [--rules 20] [--reps 5]

Part 1 (Ansible): defines a filter of ``--rules`` rules and ``--guests`` shut-off
guests ``hvl-bench-nwf-NN`` with one NIC each, then ONE ansible-playbook runs
``hypervisor.libvirt.domain_interface`` over all guests (persistent config,
filter set) twice: the first run changes every guest, the re-run none. Wall
time of each loop and the changed counts are reported, next to the floor: the
same loop of ``ansible.builtin.ping`` (what starting a module per guest costs).

Part 2 (Python, the VIF driver): boots the test guest (tests/guest-image, TCG)
and changes its NIC's filterref live, alternating the two ways side by side in
one run, ``--reps`` times each: ``update`` (updateDeviceFlags, the NIC stays)
and ``detach+attach`` (detach, wait until the guest released the NIC, attach
again). The median latency of each is reported.

Everything created is named hvl-bench-nwf* and removed at the end, also on
failure or Ctrl-C. The running guest sits on an isolated network on
192.168.247.0/24 (bridge virbr-hvlbn), apart from the firewall_traffic
target's 192.168.246.0/24. The filters are defined through NWFilterFirewall
(the nwfilter module's code). Raw results: benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import COLLECTIONS, RESULTS, ROOT, VENV_BIN, ensure_collection, log  # noqa: E402
IMAGE_DIR = os.environ.get("HVL_GUEST_IMAGE_DIR", "/var/tmp/hvl-guest-image")
URI = "qemu:///system"
PREFIX = "hvl-bench-nwf"
NET = PREFIX
BRIDGE = "virbr-hvlbn"
SUBNET = "192.168.247"
FILTER_A = PREFIX + "-rules"
FILTER_B = PREFIX + "-rules-b"
LIVE_DOM = PREFIX + "-live"
LIVE_MAC = "52:54:00:f6:0b:01"

ensure_collection()
import libvirt  # noqa: E402
from lxml import etree  # noqa: E402

from ansible_collections.hypervisor.libvirt.plugins.module_utils import vif, xmlutil  # noqa: E402
from ansible_collections.hypervisor.libvirt.plugins.module_utils.firewall import NWFilterFirewall  # noqa: E402
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host  # noqa: E402


def filter_rules(rules: int, base_port: int) -> list[dict]:
    """``rules`` rules: drop inbound TCP to ports base_port.. (ports nobody uses on the test guest)."""
    return [{"action": "drop", "direction": "in", "priority": 100 + i, "tcp": {"dstportstart": base_port + i}}
            for i in range(rules)]


def binding_filter(conn: libvirt.virConnect, mac: str) -> str | None:
    """The filter libvirt's nwfilter binding for this MAC instantiates (None: no binding)."""
    for binding in conn.listAllNWFilterBindings(0):
        doc = etree.fromstring(binding.XMLDesc(0))
        if (doc.find("mac").get("address") or "").lower() == mac.lower():
            return doc.find("filterref").get("filter")
    return None


def domain_xml(name: str, mac: str, console: str | None = None) -> str:
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = "192" if console else "32"
    etree.SubElement(dom, "vcpu").text = "1"
    os_ = etree.SubElement(dom, "os")
    etree.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    if console:
        etree.SubElement(os_, "kernel").text = os.path.join(IMAGE_DIR, "vmlinuz")
        etree.SubElement(os_, "initrd").text = os.path.join(IMAGE_DIR, "initrd.img")
        etree.SubElement(os_, "cmdline").text = "console=ttyS0 quiet hvl.hostname=%s" % name
    feats = etree.SubElement(dom, "features")
    etree.SubElement(feats, "acpi")
    etree.SubElement(feats, "apic")
    devs = etree.SubElement(dom, "devices")
    nic = etree.SubElement(devs, "interface", type="network")
    etree.SubElement(nic, "source", network=NET)
    etree.SubElement(nic, "mac", address=mac)
    etree.SubElement(nic, "model", type="virtio")
    if console:
        serial = etree.SubElement(devs, "serial", type="file")
        etree.SubElement(serial, "source", path=console)
        etree.SubElement(serial, "target", port="0")
    etree.SubElement(devs, "controller", type="usb", model="none")
    etree.SubElement(devs, "memballoon", model="none")
    return etree.tostring(dom, encoding="unicode")


def network_xml() -> str:
    """The isolated network (no <forward>) the guests' NICs are on, with DHCP for the running guest."""
    net = etree.Element("network")
    etree.SubElement(net, "name").text = NET
    etree.SubElement(net, "bridge", name=BRIDGE, stp="off", delay="0")
    ip = etree.SubElement(net, "ip", address=SUBNET + ".1", netmask="255.255.255.0")
    etree.SubElement(etree.SubElement(ip, "dhcp"), "range", start=SUBNET + ".100", end=SUBNET + ".199")
    return etree.tostring(net, encoding="unicode")


def cleanup(conn: libvirt.virConnect) -> None:
    """Remove every hvl-bench-nwf* domain, the network and the filters (ours only)."""
    for dom in conn.listAllDomains():
        if dom.name().startswith(PREFIX):
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError as exc:
                log("cleanup: %s: %s" % (dom.name(), exc))
    for name in (FILTER_A, FILTER_B):
        try:
            conn.nwfilterLookupByName(name).undefine()
        except libvirt.libvirtError:
            pass
    try:
        net = conn.networkLookupByName(NET)
        if net.isActive():
            net.destroy()
        net.undefine()
    except libvirt.libvirtError:
        pass


# ------------------------------------------------------------------ part 1
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    guests: {guests}
  tasks:
    - set_fact: {{tf: "{{{{ now().timestamp() }}}}"}}
    - name: floor (a module run per guest that does nothing)
      ansible.builtin.ping:
      loop: "{{{{ guests }}}}"
    - set_fact: {{t0: "{{{{ now().timestamp() }}}}"}}
    - name: apply
      hypervisor.libvirt.domain_interface:
        domain: "{{{{ item }}}}"
        config: persistent
        interface: {{type: network, source: {net}, model: virtio, filter: {{name: {flt}}}}}
      loop: "{{{{ guests }}}}"
      register: first
    - set_fact: {{t1: "{{{{ now().timestamp() }}}}"}}
    - name: re-apply
      hypervisor.libvirt.domain_interface:
        domain: "{{{{ item }}}}"
        config: persistent
        interface: {{type: network, source: {net}, model: virtio, filter: {{name: {flt}}}}}
      loop: "{{{{ guests }}}}"
      register: second
    - set_fact: {{t2: "{{{{ now().timestamp() }}}}"}}
    - copy:
        dest: {out}
        content: "{{{{ {{'floor_s': t0|float - tf|float, 'apply_s': t1|float - t0|float, 'reapply_s': t2|float - t1|float,
                     'apply_changed': first.results | select('changed') | list | length,
                     'reapply_changed': second.results | select('changed') | list | length}} | to_json }}}}"
"""


def part1(conn: libvirt.virConnect, guests: int, work: str) -> dict:
    names = ["%s-%02d" % (PREFIX, i) for i in range(guests)]
    for i, name in enumerate(names):
        conn.defineXML(domain_xml(name, "52:54:00:f6:0a:%02x" % i))
    out = os.path.join(work, "part1.json")
    book = os.path.join(work, "part1.yml")
    with open(book, "w") as f:
        f.write(PLAYBOOK.format(guests=json.dumps(names), net=NET, flt=FILTER_A, out=out))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
               ANSIBLE_CONFIG=os.path.join(ROOT, "tests", "ansible.cfg"),
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(VENV_BIN, "python"),
               PATH=VENV_BIN + os.pathsep + os.environ["PATH"])
    log("part 1: domain_interface over %d defined guests, twice, in one playbook" % guests)
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", book],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        raise RuntimeError("the part 1 playbook failed (rc %d)" % proc.returncode)
    with open(out) as f:
        res = json.load(f)
    # the filter really is on every guest's persistent NIC
    for name in names:
        el = vif.find_interface(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
                                itype="network", source=NET)
        assert el.find("filterref").get("filter") == FILTER_A, name
    return res


# ------------------------------------------------------------------ part 2
def wait_console(path: str, marker: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, errors="replace") as f:
                if marker in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.5)
    raise RuntimeError("no %r on the guest console within %gs" % (marker, timeout))


def part2(host: Host, reps: int, work: str) -> dict:
    console = os.path.join(work, "console.log")
    conn = host.get_connection()
    dom = conn.defineXML(domain_xml(LIVE_DOM, LIVE_MAC, console))
    dom.create()
    log("part 2: booting the test guest (TCG)")
    wait_console(console, "HVL-GUEST-READY", 120)
    guest = host.get_guest(name=LIVE_DOM)
    drv = vif.LibvirtVIFDriver(host)
    spec = {"type": "network", "source": NET, "mac": LIVE_MAC, "model": "virtio"}
    times: dict[str, list[float]] = {"update": [], "detach+attach": []}
    flt = [FILTER_A, FILTER_B]
    for rep in range(reps):
        for way in ("update", "detach+attach"):
            name = flt[len(times["update"] + times["detach+attach"]) % 2]
            cur = vif.find_interface(guest.get_xml_desc(), mac=LIVE_MAC)
            new = vif.merge(drv.get_config(dict(spec, filter={"name": name})), cur, ["filterref"])
            t0 = time.perf_counter()
            if way == "update":
                guest.update_device(xmlutil.to_string(new), live=True)
            else:
                guest.detach_device(xmlutil.to_string(cur), live=True)
                drv.wait_detached(guest, LIVE_MAC)
                for tag in ("alias", "target"):
                    for el in new.findall(tag):
                        new.remove(el)
                guest.attach_device(xmlutil.to_string(new), live=True)
            times[way].append(time.perf_counter() - t0)
            after = vif.find_interface(guest.get_xml_desc(), mac=LIVE_MAC)
            assert after.find("filterref").get("filter") == name, way
            # and the running guest's traffic really goes through it
            assert binding_filter(conn, LIVE_MAC) == name, way
    return {way: {"median_ms": round(statistics.median(v) * 1000, 1),
                  "min_ms": round(min(v) * 1000, 1), "max_ms": round(max(v) * 1000, 1), "n": len(v),
                  "samples_ms": [round(x * 1000, 1) for x in v]}
            for way, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    ap.add_argument("--guests", type=int, default=20)
    ap.add_argument("--rules", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    ensure_collection()
    subprocess.run([os.path.join(ROOT, "tests", "guest-image", "build.sh"), IMAGE_DIR], check=True)
    host = Host(URI)
    conn = host.get_connection()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="hvl-bench-nwf.", dir="/var/tmp")
    os.chmod(work, 0o755)
    cleanup(conn)
    try:
        firewall = NWFilterFirewall(host)
        firewall.define_filter(FILTER_A, rules=filter_rules(args.rules, 10000), chain="root")
        firewall.define_filter(FILTER_B, rules=filter_rules(args.rules, 20000), chain="root")
        net = conn.networkDefineXML(network_xml())
        net.create()
        result = {"guests": args.guests, "rules": args.rules, "reps": args.reps,
                  "libvirt": conn.getLibVersion(), "ansible_loop": part1(conn, args.guests, work),
                  "live_filterref_change": part2(host, args.reps, work)}
    finally:
        cleanup(conn)
        subprocess.run(["rm", "-rf", work], check=False)
        host.close()
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "nwfilter-%s.json" % datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    p1, p2 = result["ansible_loop"], result["live_filterref_change"]
    print("\n%d-rule filter on %d defined guests (domain_interface, persistent, one playbook):"
          % (args.rules, args.guests))
    print("  floor     : %6.2f s  (ansible.builtin.ping over the same loop)" % p1["floor_s"])
    print("  first run : %6.2f s  changed %d/%d" % (p1["apply_s"], p1["apply_changed"], args.guests))
    print("  re-run    : %6.2f s  changed %d/%d" % (p1["reapply_s"], p1["reapply_changed"], args.guests))
    print("live filterref change on a running guest (%d reps each, interleaved):" % args.reps)
    for way, r in p2.items():
        print("  %-14s median %7.1f ms  (min %.1f, max %.1f)" % (way, r["median_ms"], r["min_ms"], r["max_ms"]))
    print("load average during the run: %.1f (on %d CPUs)" % (os.getloadavg()[0], os.cpu_count() or 0))
    print("raw: %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
