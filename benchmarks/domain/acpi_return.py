"""Time from the test guest's ACPI power-off to the domain module's return.

Boots the test guest (tests/guest-image) on an isolated network, waits for its
ready line, then runs the domain module's logic (``converge`` with
``state: shutdown``) in this process while a watcher thread polls the serial
console file every 2 ms for the guest's ``HVL-GUEST-POWEROFF`` line (printed by
its acpid action just before ``poweroff -f``). Reported: return time minus the
time that line appeared, event-driven (Host.initialize()) and, side by side,
with the 0.1 s polling fallback. Everything created is removed.

    .venv/bin/python benchmarks/domain/acpi_return.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import ROOT, ensure_collection  # noqa: E402
ensure_collection()

from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain import DomainRequest, converge  # noqa: E402
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host  # noqa: E402

IMAGE = "/var/lib/libvirt/images/hvl-testguest"
NET, BRIDGE, PREFIX = "hvl-it-dom-bench", "virbr-hvldom2", "192.168.245"
NAME = "hvl-bench-dom-acpi"
WORK = "/var/tmp/hvl-bench-dom-acpi"
CONSOLE = os.path.join(WORK, "console.log")


def virsh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(["virsh", "-q", "-c", "qemu:///system", *args], input=stdin, text=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def wait_line(marker: str, offset: int, timeout: float, poll: float) -> float | None:
    """Monotonic time at which ``marker`` appeared in the console after ``offset``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(CONSOLE, "rb") as f:
                f.seek(offset)
                if marker.encode() in f.read():
                    return time.monotonic()
        except FileNotFoundError:
            pass
        time.sleep(poll)
    return None


def console_size() -> int:
    try:
        return os.path.getsize(CONSOLE)
    except FileNotFoundError:
        return 0


def one_round(events: bool) -> tuple[float, float | None, float | None]:
    """(line -> return, SHUTDOWN -> STOPPED event, STOPPED event -> return) for one shutdown."""
    shutdown_events: list[float] = []

    def on_event(ev) -> None:  # runs on the Host's dispatch thread
        if ev.name == NAME and ev.event in (5, 6):   # SHUTDOWN (guest powered off) or STOPPED
            shutdown_events.append(ev.timestamp)
    host = Host("qemu:///system", lifecycle_event_handler=on_event)
    if events:
        host.initialize()
    spec = {"name": NAME, "type": "qemu", "memory": 192, "vcpus": 1,
            "os": {"kernel": IMAGE + "/vmlinuz", "initrd": IMAGE + "/initrd.img",
                   "cmdline": "console=ttyS0 hvl.hostname=" + NAME},
            "features": ["acpi", "apic"], "on_reboot": "destroy", "memballoon": "none",
            "interfaces": [{"type": "network", "source": NET, "model": "virtio"}],
            "serials": [{"type": "file", "path": CONSOLE}]}
    if os.path.exists(CONSOLE):
        os.unlink(CONSOLE)   # libvirt truncates the file on start anyway; start from an empty one
    offset = 0
    converge(host, DomainRequest(spec=spec, state="running"))
    if wait_line("HVL-GUEST-READY", offset, 180, 0.2) is None:
        raise SystemExit("the guest did not print its ready line within 180 s")
    offset = console_size()
    seen: list[float] = []
    watcher = threading.Thread(target=lambda: seen.append(wait_line("HVL-GUEST-POWEROFF", offset, 120, 0.002) or 0))
    watcher.start()
    result = converge(host, DomainRequest(name=NAME, state="shutdown", shutdown_timeout=120))
    returned = time.monotonic()
    watcher.join()
    host.close()
    assert result["actions"] == ["shutdown"], result
    if not seen or not seen[0]:
        raise SystemExit("no HVL-GUEST-POWEROFF line: the guest did not act on the power button")
    stopped = max(shutdown_events) if shutdown_events else None
    return (returned - seen[0],
            (stopped - min(shutdown_events)) if stopped is not None else None,
            (returned - stopped) if stopped is not None else None)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    subprocess.run([os.path.join(ROOT, "tests/guest-image/build.sh"), IMAGE], check=True,
                   stderr=subprocess.DEVNULL)
    os.makedirs(WORK, exist_ok=True)
    os.chmod(WORK, 0o755)
    virsh("net-define", "/dev/stdin", stdin=(
        "<network><name>%s</name><bridge name='%s' stp='off' delay='0'/><ip address='%s.1' netmask='255.255.255.0'>"
        "<dhcp><range start='%s.100' end='%s.199'/></dhcp></ip></network>" % (NET, BRIDGE, PREFIX, PREFIX, PREFIX)))
    virsh("net-start", NET)
    try:
        for events in (True, False):
            runs = [one_round(events) for _round in range(rounds)]
            mode = "events" if events else "0.1 s polling"
            labels = ("guest's power-off line -> return", "libvirt SHUTDOWN -> STOPPED event",
                      "STOPPED event -> module return")
            for i, label in enumerate(labels):
                lat = [r[i] for r in runs if r[i] is not None]
                if lat:
                    print("%-52s median %.3f s  (min %.3f, max %.3f, %d rounds)" % (
                        "%s, %s" % (label, mode), statistics.median(lat), min(lat), max(lat), len(lat)))
    finally:
        virsh("destroy", NAME)
        virsh("undefine", NAME)
        virsh("net-destroy", NET)
        virsh("net-undefine", NET)
        subprocess.run(["rm", "-rf", WORK], check=False)


if __name__ == "__main__":
    main()
