# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the ``domain_info`` module and the inventory read about running guests, and waiting for them.

``describe(host, names)`` returns one plain dict per domain from bulk calls:
one domain listing, one ``getAllDomainStats`` / ``domainListGetStats``, the
two short persistence listings, the storage pools' volume lists, and the DHCP
leases of each network; per domain only its XML (libvirt has no bulk call for
it) and, for the agent and ARP sources, ``virDomainInterfaceAddresses``.
``wait_for_address`` / ``wait_for_serial`` wait on what libvirt has no event
for with a bounded back-off poll; the agent wait is ``Host.wait_for_agent``
(event-driven). No Ansible import.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    HypervisorError,
    InvalidSpec,
    NotFound,
    OperationFailed,
    Timeout,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest import parse_domain_xml
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import METADATA_NS
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import ADDRESS_SOURCES

SOURCES = ADDRESS_SOURCES + ("any", "none")
WAITS = ("address", "agent", "serial")
FAMILIES = ("ipv4", "ipv6")

# virDomain*Reason, by state: the reason libvirt gives for the state a domain is in.
REASONS = {
    "running": ("unknown", "booted", "migrated", "restored", "from_snapshot", "unpaused", "migration_canceled",
                "save_canceled", "wakeup", "crashed", "postcopy", "postcopy_failed"),
    "blocked": ("unknown",),
    "paused": ("unknown", "user", "migration", "save", "dump", "ioerror", "watchdog", "from_snapshot",
               "shutting_down", "snapshot", "api_error", "starting_up", "postcopy", "postcopy_failed"),
    "shutdown": ("unknown", "user"),
    "shutoff": ("unknown", "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from_snapshot",
                "daemon"),
    "crashed": ("unknown", "panicked"),
    "pmsuspended": ("unknown",),
}
_ACTIVE = ("running", "blocked", "paused", "shutdown", "crashed", "pmsuspended")

# The back-off of polls where libvirt has no event: first interval, growth, ceiling (seconds).
POLL_FIRST, POLL_GROWTH, POLL_MAX = 0.05, 1.5, 0.5


def reason_name(state: str, reason: int) -> str:
    names = REASONS.get(state, ())
    return names[reason] if 0 <= reason < len(names) else str(reason)


# ---------------------------------------------------------------------- storage
def volume_index(host: Any) -> dict[str, dict[str, str]]:
    """Path -> {pool, volume} for every volume of the active pools.

    One pool listing, then per pool its XML (the target directory) and one
    volume listing; a volume's path is the pool's target path plus its name
    (dir, fs, netfs, logical), or its key where that is a path.
    """
    try:
        pools = host.call("listing storage pools",
                          lambda c: c.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE))
    except OperationFailed:
        return {}  # a driver without storage
    index: dict[str, dict[str, str]] = {}
    for pool in pools:
        try:
            root = xmlutil.parse(host.call("reading storage pool '%s'" % pool.name(), lambda _c, p=pool: p.XMLDesc(0)))
            vols = host.call("listing the volumes of pool '%s'" % pool.name(), lambda _c, p=pool: p.listAllVolumes(0))
        except (NotFound, OperationFailed):
            continue
        target = (root.findtext("target/path") or "").rstrip("/")
        for vol in vols:
            entry = {"pool": pool.name(), "volume": vol.name()}
            key = vol.key()
            if key.startswith("/"):
                index[key] = entry
            if target:
                index.setdefault("%s/%s" % (target, vol.name()), entry)
    return index


def _disks(root: Any, stats: dict[str, Any], volumes: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    by_target: dict[str, dict[str, Any]] = {}
    for i in range(stats.get("block.count", 0)):
        name = stats.get("block.%d.name" % i)
        if name:
            by_target[name] = {k: stats.get("block.%d.%s" % (i, k)) for k in ("capacity", "allocation", "physical")}
    disks = []
    for el in root.findall("devices/disk"):
        src = el.find("source")
        tgt = el.find("target")
        drv = el.find("driver")
        typ = el.get("type", "file")
        source = None
        volume = None
        if src is not None:
            if typ == "volume":
                volume = {"pool": src.get("pool"), "volume": src.get("volume")}
                source = "%s/%s" % (src.get("pool"), src.get("volume"))
            elif typ == "network":
                source = "%s:%s" % (src.get("protocol"), src.get("name"))
            else:
                source = src.get("file") or src.get("dev") or src.get("dir")
        if volume is None and source in volumes:
            volume = dict(volumes[source])
        target = tgt.get("dev") if tgt is not None else None
        sizes = by_target.get(target or "", {})
        disks.append({
            "target": target,
            "bus": tgt.get("bus") if tgt is not None else None,
            "device": el.get("device", "disk"),
            "type": typ,
            "source": source,
            "format": drv.get("type") if drv is not None else None,
            "readonly": el.find("readonly") is not None,
            "volume": volume,
            "capacity": sizes.get("capacity"),
            "allocation": sizes.get("allocation"),
            "physical": sizes.get("physical"),
        })
    return disks


# ---------------------------------------------------------------------- interfaces and addresses
def _interfaces(root: Any) -> list[dict[str, Any]]:
    out = []
    for el in root.findall("devices/interface"):
        src = el.find("source")
        mac = el.find("mac")
        tgt = el.find("target")
        model = el.find("model")
        ref = el.find("filterref")
        link = el.find("link")
        network = src.get("network") if src is not None else None
        bridge = src.get("bridge") if src is not None else None
        source = None
        if src is not None:
            source = next((src.get(a) for a in ("network", "bridge", "dev", "path", "address", "name")
                           if src.get(a) is not None), None)
        tap = tgt.get("dev") if tgt is not None else None
        out.append({
            "type": el.get("type"),
            "mac": mac.get("address").lower() if mac is not None and mac.get("address") else None,
            "source": source,
            "network": network,
            "bridge": bridge,
            "target": tap,
            "model": model.get("type") if model is not None else None,
            "filter": {"name": ref.get("filter"),
                       "parameters": {p.get("name"): p.get("value") for p in ref.findall("parameter")}}
            if ref is not None else None,
            "link_state": link.get("state") if link is not None else None,
            "addresses": [],
        })
    return out


def _agent_or_arp(host: Any, guest: Any, source: str) -> dict[str, list[dict[str, Any]]] | None:
    """The domain's addresses from the agent or ARP, or None when that source cannot answer now."""
    try:
        return host.interface_addresses(guest, source)
    except (OperationFailed, NotFound):
        return None


def _attach_addresses(interfaces: list[dict[str, Any]], by_mac: dict[str, list[dict[str, Any]]],
                      source: str) -> None:
    for iface in interfaces:
        for a in by_mac.get(iface["mac"] or "", []):
            entry = {"address": a["address"], "prefix": a.get("prefix"), "family": a["family"], "source": source}
            if entry not in iface["addresses"]:
                iface["addresses"].append(entry)


def _flat(interfaces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for iface in interfaces:
        for a in iface["addresses"]:
            out.append(dict(a, mac=iface["mac"], network=iface["network"]))
    return out


def _lease_map(host: Any, records: list[dict[str, Any]],
               guests: dict[str, Any]) -> Callable[[str], dict[str, list[dict[str, Any]]]]:
    """uuid -> MAC -> lease addresses: networks' leases in bulk, or per domain where the driver keeps none."""
    leases = host.network_leases()
    if leases is not None:
        return lambda _uuid: leases
    per_domain: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        if r["state"] in _ACTIVE:
            try:
                per_domain[r["uuid"]] = host.interface_addresses(guests[r["uuid"]], "lease")
            except (OperationFailed, NotFound):
                per_domain[r["uuid"]] = {}
    return lambda uuid: per_domain.get(uuid, {})


def describe(host: Any, names: list[str] | None = None, address_source: str = "lease",
             workers: int = 8, details: bool = True) -> list[dict[str, Any]]:
    """One dict per domain (all, or those named; a missing name is ``NotFound``), sorted by name.

    ``details=False`` (the inventory) leaves out the spec and the disks, and
    so the storage pools' calls, and adds ``title`` and ``metadata`` instead.
    """
    if address_source not in SOURCES:
        raise InvalidSpec("address_source", "must be one of %s, got %r" % (", ".join(SOURCES), address_source))
    from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest import Guest
    if names:
        wanted = list(dict.fromkeys(names))
        doms = [d for d in host.call("listing domains", lambda c: c.listAllDomains(0)) if d.name() in wanted]
        missing = sorted(set(wanted) - {d.name() for d in doms})
        if missing:
            raise NotFound("no domain named %s on %s" % (", ".join("'%s'" % m for m in missing), host.uri),
                           uri=host.uri)
        records = host.domain_records([Guest(d, host=host) for d in doms])
    else:
        records = host.domain_records()
    guests = {r["uuid"]: Guest(r["domain"], host=host) for r in records}
    xmls = host.xml_descs([r["domain"] for r in records], workers=workers)
    volumes = volume_index(host) if records and details else {}
    lease_of = _lease_map(host, records, guests) if records and address_source in ("lease", "any") else None
    result = []
    for r in records:
        xml = xmls.get(r["uuid"])
        if xml is None:
            continue  # undefined since the listing
        root = xmlutil.parse(xml, "domain XML")
        st = r["stats"]
        interfaces = _interfaces(root)
        active = r["state"] in _ACTIVE
        if active and address_source != "none":
            sources = ADDRESS_SOURCES if address_source == "any" else (address_source,)
            for source in sources:
                if source == "lease":
                    by_mac = lease_of(r["uuid"]) if lease_of is not None else {}
                else:
                    by_mac = _agent_or_arp(host, guests[r["uuid"]], source) or {}
                _attach_addresses(interfaces, by_mac, source)
                if address_source == "any" and any(i["addresses"] for i in interfaces):
                    break
        vcpu = root.findtext("vcpu")
        cur = root.find("currentMemory")
        mem = root.find("memory")
        entry = {
            "name": r["name"],
            "uuid": r["uuid"],
            "id": r["id"],
            "state": r["state"],
            "state_reason": reason_name(r["state"], r["state_reason"]),
            "persistent": r["persistent"],
            "autostart": r["autostart"],
            "vcpus": st.get("vcpu.current", int(vcpu) if vcpu else None),
            "memory_mb": (st.get("balloon.maximum") or _kib(mem) or 0) // 1024,
            "current_memory_mb": (st.get("balloon.current") or _kib(cur) or _kib(mem) or 0) // 1024,
            "interfaces": interfaces,
            "addresses": _flat(interfaces),
        }
        if details:
            entry["spec"] = parse_domain_xml(root)
            entry["disks"] = _disks(root, st, volumes)
        else:
            entry["title"] = root.findtext("title")
            entry["metadata"] = _metadata(root)
        result.append(entry)
    result.sort(key=lambda d: d["name"])
    return result


def _metadata(root: Any) -> dict[str, Any]:
    """The collection's metadata (the spec's ``metadata`` key) stored in the domain XML, or {}."""
    meta = root.find("metadata/{%s}metadata" % METADATA_NS)
    if meta is None or not meta.text:
        return {}
    try:
        value = json.loads(meta.text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _kib(el: Any) -> int | None:
    if el is None or not (el.text or "").strip():
        return None
    factor = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "m": 1024, "mib": 1024, "g": 1024 ** 2,
              "gib": 1024 ** 2}.get((el.get("unit") or "KiB").lower(), 1)
    return int(int(el.text.strip()) * factor)


# ---------------------------------------------------------------------- waiting
def _backoff(timeout: float, probe: Callable[[], Any]) -> tuple[Any, float]:
    """Call ``probe`` until it returns something truthy, polling with a bounded back-off; (result, seconds)."""
    start = time.monotonic()
    deadline = start + timeout
    interval = POLL_FIRST
    while True:
        found = probe()
        now = time.monotonic()
        if found:
            return found, now - start
        if now >= deadline:
            return None, now - start
        time.sleep(min(interval, max(deadline - now, 0)))
        interval = min(interval * POLL_GROWTH, POLL_MAX)


def wait_for_address(host: Any, guest: Any, source: str = "lease", family: str | None = None,
                     network: str | None = None, timeout: float = 120) -> dict[str, Any]:
    """Wait until the domain has an address (of ``family``, on an interface of ``network``) from ``source``.

    libvirt has no event for a new lease or a guest's address, so this polls
    the one domain with a bounded back-off (50 ms growing to 0.5 s).
    """
    if source not in ADDRESS_SOURCES + ("any",):
        raise InvalidSpec("address_source", "waiting for an address needs lease, agent, arp or any, not %r" % source)
    if family is not None and family not in FAMILIES:
        raise InvalidSpec("family", "must be ipv4 or ipv6, got %r" % family)
    root = xmlutil.parse(guest.get_xml_desc(), "domain XML")
    macs = {}
    for el in root.findall("devices/interface"):
        mac = el.find("mac")
        src = el.find("source")
        if mac is not None and mac.get("address"):
            macs[mac.get("address").lower()] = src.get("network") if src is not None else None
    if network is not None and network not in macs.values():
        raise InvalidSpec("network", "domain '%s' has no interface on network '%s' (it has %s)" % (
            guest.name, network, ", ".join(sorted({n for n in macs.values() if n})) or "none"))
    sources = ADDRESS_SOURCES if source == "any" else (source,)
    seen: dict[str, Any] = {"addresses": [], "errors": {}}

    def probe() -> dict[str, Any] | None:
        seen["addresses"] = []
        for src in sources:
            try:
                by_mac = host.interface_addresses(guest, src)
            except (OperationFailed, NotFound) as exc:
                seen["errors"][src] = str(exc).rsplit(" failed: ", maxsplit=1)[-1]
                continue
            seen["errors"].pop(src, None)
            for mac, addrs in by_mac.items():
                for a in addrs:
                    seen["addresses"].append(a["address"])
                    if mac in macs and (network is None or macs[mac] == network) and \
                            (family is None or a["family"] == family):
                        return dict(a, mac=mac, network=macs[mac], source=src)
        return None
    found, seconds = _backoff(timeout, probe)
    if found is None:
        what = "%s address" % (family or "an")
        where = " on network '%s'" % network if network else ""
        detail = "addresses seen: %s" % ", ".join(seen["addresses"]) if seen["addresses"] else "no address at all"
        if seen["errors"]:
            detail += "; " + "; ".join("%s: %s" % kv for kv in sorted(seen["errors"].items()))
        raise Timeout("domain '%s' on %s had no %s%s from %s within %gs (%s)" % (
            guest.name, host.uri, what, where, "/".join(sources), timeout, detail), uri=host.uri)
    return {"what": "address", "seconds": round(seconds, 3), "address": found}


def serial_log_path(root: Any) -> str | None:
    """The file a domain's first serial port (or console) writes to: a file chardev, or its ``<log file>``."""
    for tag in ("serial", "console"):
        for el in root.findall("devices/%s" % tag):
            src = el.find("source")
            if el.get("type") == "file" and src is not None and src.get("path"):
                return src.get("path")
            log = el.find("log")
            if log is not None and log.get("file"):
                return log.get("file")
    return None


def wait_for_serial(host: Any, guest: Any, regex: str, timeout: float = 120) -> dict[str, Any]:
    """Wait until a line of the domain's serial log matches ``regex``; returns the line.

    The log is a file libvirt writes (a ``file`` serial, or a serial's ``<log
    file=...>``) on the hypervisor, so only URIs naming this machine can read
    it. Reads grow with the file, polled with a bounded back-off.
    """
    try:
        pattern = re.compile(regex)
    except (re.error, TypeError) as exc:
        raise InvalidSpec("regex", "not a valid regular expression: %s" % exc)
    root = xmlutil.parse(guest.get_xml_desc(), "domain XML")
    path = serial_log_path(root)
    if path is None:
        raise InvalidSpec("wait_for", "domain '%s' has no serial port writing to a file (a serial of type file, or a "
                          "<log file=...> on it) to wait on" % guest.name)
    if not host.is_local() or host.uri.startswith("test:"):
        if host.uri.startswith("test:"):
            raise InvalidSpec("wait_for", "the test driver runs no guest, so %s is never written" % path)
        raise InvalidSpec("wait_for", "the serial log %s is on the hypervisor; waiting on it needs a URI naming this "
                          "machine (run the module there)" % path)
    state = {"offset": 0, "tail": "", "lines": [], "exists": False}

    def probe() -> str | None:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < state["offset"]:  # truncated (the domain was started again): read from the top
                    state["offset"], state["tail"] = 0, ""
                f.seek(state["offset"])
                data = f.read()
        except FileNotFoundError:
            return None
        state["exists"] = True
        state["offset"] += len(data)
        text = state["tail"] + data.decode("utf-8", "replace")
        parts = text.replace("\r", "").split("\n")
        state["tail"] = parts.pop()  # an unfinished line waits for its end
        for line in parts:
            if line.strip():
                state["lines"] = (state["lines"] + [line])[-3:]
            if pattern.search(line):
                return line
        return None
    found, seconds = _backoff(timeout, probe)
    if found is None:
        if not state["exists"]:
            detail = "%s does not exist" % path
        elif not state["lines"] and not state["tail"].strip():
            detail = "%s stayed empty" % path
        else:
            detail = "last lines of %s: %s" % (path, " | ".join(state["lines"] + ([state["tail"]] if state["tail"].strip() else [])))
        raise Timeout("domain '%s' on %s printed no line matching %r within %gs (%s)" % (
            guest.name, host.uri, regex, timeout, detail), uri=host.uri)
    return {"what": "serial", "seconds": round(seconds, 3), "line": found, "path": path}


def wait_for_agent(host: Any, guest: Any, timeout: float = 120) -> dict[str, Any]:
    """Wait for libvirt's agent lifecycle event (or the live XML) to say the guest agent connected."""
    if guest.get_agent_state() is None:
        raise InvalidSpec("wait_for", "domain '%s' has no guest agent channel (a virtio channel named "
                          "org.qemu.guest_agent.0) to wait on" % guest.name)
    seconds = host.wait_for_agent(guest, timeout)
    return {"what": "agent", "seconds": round(seconds, 3)}


def wait(host: Any, guest: Any, what: str, timeout: float, source: str = "lease", family: str | None = None,
         network: str | None = None, regex: str | None = None) -> dict[str, Any]:
    """Wait for ``what`` (address, agent or serial) of a running domain."""
    if what not in WAITS:
        raise InvalidSpec("wait_for", "must be one of %s, got %r" % (", ".join(WAITS), what))
    if timeout is None or timeout < 0:
        raise InvalidSpec("timeout", "must be zero or more seconds")
    if what == "serial" and not regex:
        raise InvalidSpec("regex", "wait_for: serial needs a regex to match a line against")
    state = guest.get_state()
    if state not in _ACTIVE:
        raise OperationFailed("domain '%s' on %s is %s; there is nothing to wait for until it runs"
                              % (guest.name, host.uri, state), uri=host.uri)
    if what == "address":
        result = wait_for_address(host, guest, source if source != "none" else "lease", family, network, timeout)
    elif what == "serial":
        result = wait_for_serial(host, guest, regex or "", timeout)
    else:
        result = wait_for_agent(host, guest, timeout)
    result["at"] = time.time()  # when it was seen (epoch seconds), to set against other clocks' records
    return result


__all__ = ["describe", "wait", "wait_for_address", "wait_for_serial", "wait_for_agent", "volume_index",
           "serial_log_path", "reason_name", "SOURCES", "WAITS", "FAMILIES", "HypervisorError"]
