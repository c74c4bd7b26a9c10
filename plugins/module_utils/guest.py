# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest: one libvirt domain, and the construction of its XML.

The blueprint's ``Guest`` class wraps one domain (lifecycle, devices, XML
read). It imports nothing from Ansible; a ``Host`` hands out Guests and
every libvirt call goes through ``Host.call`` so errors are translated and a
dropped connection is reopened in one place.
"""

from __future__ import annotations

import copy
import json as _json
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil as _xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import HypervisorError as _HypervisorError
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import (
    METADATA_NS,
    UNIT_BYTES,
    order_disks,
    validate_spec,
)
# host.py imports guest.py lazily (fact gathering never needs the XML construction), so this is no cycle.
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import STATE_NAMES


class Guest:
    """One libvirt domain, bound to the Host that found it."""

    def __init__(self, domain: Any, host: Any = None) -> None:
        self._domain = domain
        self._host = host
        self._name = domain.name()
        self._uuid = domain.UUIDString()

    def __repr__(self) -> str:
        return "<Guest %s %s>" % (self._name, self._uuid)

    @property
    def name(self) -> str:
        return self._name

    @property
    def uuid(self) -> str:
        return self._uuid

    @property
    def host(self) -> Any:
        return self._host

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(virDomain)`` through the Host; after a reconnect, look the domain up again."""
        def run(conn: Any) -> Any:
            if self._domain.connect() is not conn:
                self._domain = conn.lookupByUUIDString(self._uuid)
            return fn(self._domain)
        return self._host.call("%s domain '%s'" % (what, self._name), run)

    @property
    def domain(self) -> Any:
        """The virDomain (for bulk calls that take a list of domains)."""
        return self._domain

    def call_domain(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """``fn(virDomain)`` through the Host, for callers outside this class (Host's per-domain readers)."""
        return self._call(what, fn)

    @property
    def id(self) -> int | None:
        dom_id = self._call("reading the id of", lambda d: d.ID())
        return dom_id if dom_id >= 0 else None

    def get_state(self) -> str:
        """One of STATE_NAMES' values."""
        state, _reason = self._call("reading the state of", lambda d: d.state())
        return STATE_NAMES.get(state, "nostate")

    def get_state_reason(self) -> tuple[str, int]:
        """The state (STATE_NAMES' value) and libvirt's reason number for it."""
        state, reason = self._call("reading the state of", lambda d: d.state())
        return STATE_NAMES.get(state, "nostate"), reason

    def get_agent_state(self) -> str | None:
        """The guest agent channel's state in the live XML: connected, disconnected, or None without one."""
        root = etree.fromstring(self.get_xml_desc().encode("utf-8"))
        for target in root.findall("devices/channel/target"):
            if target.get("type") == "virtio" and target.get("name") == "org.qemu.guest_agent.0":
                return target.get("state") or "disconnected"
        return None

    def is_active(self) -> bool:
        return bool(self._call("reading", lambda d: d.isActive()))

    def is_persistent(self) -> bool:
        return bool(self._call("reading", lambda d: d.isPersistent()))

    def get_xml_desc(self, inactive: bool = False, secure: bool = False) -> str:
        """The domain XML; ``inactive`` gives the persistent definition of a running domain."""
        flags = 0
        if inactive:
            flags |= 2  # VIR_DOMAIN_XML_INACTIVE
        if secure:
            flags |= 1  # VIR_DOMAIN_XML_SECURE
        return self._call("reading the XML of", lambda d: d.XMLDesc(flags))

    def get_info(self) -> dict[str, Any]:
        """State, memory (KiB), vCPUs and CPU time of the domain."""
        state, max_mem, mem, vcpus, cpu_time = self._call("reading", lambda d: d.info())
        return {"state": STATE_NAMES.get(state, "nostate"), "max_memory_kib": max_mem,
                "memory_kib": mem, "vcpus": vcpus, "cpu_time_ns": cpu_time}

    # ------------------------------------------------------------------ lifecycle
    def launch(self, pause: bool = False) -> None:
        """Start the defined domain; ``pause`` leaves its vCPUs stopped (state paused).

        Drivers that cannot start paused (the test driver) are started and
        paused at once.
        """
        def run(d: Any) -> None:
            if not pause:
                d.createWithFlags(0)
                return
            try:
                d.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise
                d.createWithFlags(0)
                d.suspend()
        self._call("starting", run)

    def shutdown(self) -> None:
        """Ask the guest OS to power off by pressing the ACPI power button; returns at once.

        Waiting is the caller's business (``Host.wait_for_lifecycle``), so one
        event-driven wait serves every caller. Drivers without the ACPI flag
        (the test driver) get their plain shutdown.
        """
        def run(d: Any) -> None:
            try:
                d.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT,
                                                libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
                    raise
                d.shutdown()
        self._call("shutting down", run)

    def poweroff(self) -> None:
        """Pull the plug (virDomainDestroy): immediate, the guest OS is not asked."""
        self._call("powering off", lambda d: d.destroy())

    def pause(self) -> None:
        """Stop the vCPUs; memory and devices stay, ``resume`` continues."""
        self._call("pausing", lambda d: d.suspend())

    def resume(self) -> None:
        """Continue the vCPUs of a paused domain."""
        self._call("resuming", lambda d: d.resume())

    def has_managed_save(self) -> bool:
        """A managed save image exists (undefine refuses unless told to remove it)."""
        return bool(self._call("reading the managed save of", lambda d: d.hasManagedSaveImage(0)))

    def snapshot_count(self) -> int:
        """Snapshots libvirt keeps metadata for (undefine refuses unless told to remove it)."""
        return int(self._call("counting the snapshots of", lambda d: d.snapshotNum(0)))

    # ------------------------------------------------------------------ snapshots
    def list_snapshots(self) -> list[str]:
        """Names of the domain's snapshots, parents before children (one listAllSnapshots)."""
        flags = getattr(libvirt, "VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL", 0)
        return [s.getName() for s in self._call("listing the snapshots of", lambda d: d.listAllSnapshots(flags))]

    def current_snapshot(self) -> str | None:
        """The name of the current snapshot (the one a revert or the next snapshot builds on), or None."""
        def run(d: Any) -> str | None:
            if not d.hasCurrentSnapshot(0):
                return None
            return d.snapshotCurrent(0).getName()
        return self._call("reading the current snapshot of", run)

    def get_snapshot_xml(self, name: str) -> str:
        """The snapshot's XML (with the domain's XML at the snapshot); ``NotFound`` if there is none."""
        return self._call("reading snapshot '%s' of" % name, lambda d: d.snapshotLookupByName(name, 0).getXMLDesc(0))

    def snapshot_children(self, name: str) -> list[str]:
        """Names of the snapshot's descendants."""
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS
        return [c.getName() for c in self._call(
            "listing the children of snapshot '%s' of" % name,
            lambda d: d.snapshotLookupByName(name, 0).listAllChildren(flags))]

    def create_snapshot(self, xml: str, disk_only: bool = False, quiesce: bool = False, live: bool = False,
                        atomic: bool = True) -> str:
        """Take a snapshot from ``<domainsnapshot>`` XML; returns its name.

        ``disk_only`` makes external disk snapshots without memory; ``quiesce``
        freezes the guest's filesystems through its agent first; ``live`` keeps
        a running guest running while its memory is saved.
        """
        flags = 0
        if disk_only:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
        if quiesce:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
        if live:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE
        if atomic:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        if hasattr(libvirt, "VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE"):
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE
        return self._call("snapshotting", lambda d: d.snapshotCreateXML(xml, flags).getName())

    def revert_to_snapshot(self, name: str, state: str | None = None, force: bool = False) -> None:
        """Return the domain to snapshot ``name``; ``state`` running or paused overrides the snapshot's own."""
        flags = 0
        if state == "running":
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
        elif state == "paused":
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
        if force:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE
        self._call("reverting to snapshot '%s'" % name,
                   lambda d: d.revertToSnapshot(d.snapshotLookupByName(name, 0), flags))

    def delete_snapshot(self, name: str, children: bool = False, metadata_only: bool = False) -> None:
        """Delete snapshot ``name`` (and its descendants with ``children``); ``metadata_only`` keeps the data."""
        flags = 0
        if children:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN
        if metadata_only:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY
        self._call("deleting snapshot '%s' of" % name, lambda d: d.snapshotLookupByName(name, 0).delete(flags))

    def delete_configuration(self, keep_nvram: bool = True, remove_managed_save: bool = False,
                             remove_snapshots_metadata: bool = False) -> None:
        """Undefine the domain; NVRAM, managed save and snapshot metadata only go when asked.

        ``keep_nvram=False`` deletes the NVRAM file with the definition. Without
        ``remove_managed_save`` / ``remove_snapshots_metadata`` libvirt refuses to
        undefine a domain that has them, which is the safe answer.
        """
        flags = libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM if keep_nvram else libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        if remove_managed_save:
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        if remove_snapshots_metadata:
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA

        def run(d: Any) -> None:
            try:
                d.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                # drivers without NVRAM support reject the NVRAM flags: retry without them
                if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise
                d.undefineFlags(flags & ~(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM))
        self._call("undefining", run)

    # ------------------------------------------------------------------ devices
    @staticmethod
    def _affect(persistent: bool, live: bool) -> int:
        """virDomainModificationImpact flags; neither means "the current state" as libvirt defines it."""
        flags = 0
        if persistent:
            flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if live:
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        return flags

    def attach_device(self, xml: str, persistent: bool = False, live: bool = False) -> None:
        """Add a device (XML of one device) to the persistent config and/or the running guest."""
        flags = self._affect(persistent, live)
        self._call("attaching a device to", lambda d: d.attachDeviceFlags(xml, flags))

    def detach_device(self, xml: str, persistent: bool = False, live: bool = False) -> None:
        """Remove a device; for ``live`` the guest must release it (PCI unplug is asynchronous)."""
        flags = self._affect(persistent, live)
        self._call("detaching a device from", lambda d: d.detachDeviceFlags(xml, flags))

    def update_device(self, xml: str, persistent: bool = False, live: bool = False) -> None:
        """Change a device in place (media, link state, bandwidth, filter)."""
        flags = self._affect(persistent, live)
        self._call("updating a device of", lambda d: d.updateDeviceFlags(xml, flags))

    # ------------------------------------------------------------------ autostart
    def get_autostart(self) -> bool:
        return bool(self._call("reading the autostart flag of", lambda d: d.autostart()))

    def set_autostart(self, autostart: bool) -> None:
        """Start the domain (or not) when libvirtd starts."""
        self._call("setting autostart of", lambda d: d.setAutostart(1 if autostart else 0))

    # ------------------------------------------------------------------ interfaces
    def get_interfaces(self, inactive: bool = False) -> list[dict[str, Any]]:
        """The domain's NICs from its XML, in order, as plain dicts.

        Keys: ``type``, ``mac``, ``source`` (network, bridge or device name),
        ``source_mode`` (direct), ``model``, ``target`` (host tap device, live
        only), ``alias``, ``mtu``, ``filter`` ({name, parameters}) and
        ``link_state``; absent values are None.
        """
        root = etree.fromstring(self.get_xml_desc(inactive=inactive).encode("utf-8"))
        result = []
        for iface in root.findall("devices/interface"):
            source = iface.find("source")
            src_value = None
            if source is not None:
                for attr in ("network", "bridge", "dev", "path", "address", "name"):
                    if source.get(attr) is not None:
                        src_value = source.get(attr)
                        break
            ref = iface.find("filterref")
            flt = None
            if ref is not None:
                flt = {"name": ref.get("filter"),
                       "parameters": {p.get("name"): p.get("value") for p in ref.findall("parameter")}}
            mtu = iface.find("mtu")
            result.append({
                "type": iface.get("type"),
                "mac": iface.find("mac").get("address") if iface.find("mac") is not None else None,
                "source": src_value,
                "source_mode": source.get("mode") if source is not None else None,
                "model": iface.find("model").get("type") if iface.find("model") is not None else None,
                "target": iface.find("target").get("dev") if iface.find("target") is not None else None,
                "alias": iface.find("alias").get("name") if iface.find("alias") is not None else None,
                "mtu": int(mtu.get("size")) if mtu is not None and mtu.get("size") else None,
                "filter": flt,
                "link_state": iface.find("link").get("state") if iface.find("link") is not None else None,
            })
        return result


# ---------------------------------------------------------------------------
# Guest XML construction from a spec, and parsing back (the blueprint's
# _get_guest_*_config work items). Builders take a normalised sub-spec
# (guest_spec.validate_spec) and return lxml elements; they hold no policy
# beyond what the spec says, and host-dependent defaults come only from a Host.
# ---------------------------------------------------------------------------

_SYSINFO_TAGS = {"bios": "bios", "system": "system", "base_board": "baseBoard", "chassis": "chassis"}


_el = _xmlutil.element
_sub = _xmlutil.sub


def _onoff(value: bool) -> str:
    return "on" if value else "off"


# ---------------------------------------------------------------- CPU

def cpu_model_config(cpu: dict) -> Any:
    """<cpu> with mode, model, vendor and features (the blueprint's _get_guest_cpu_model_config)."""
    el = _el("cpu", {"mode": cpu.get("mode")})
    if "model" in cpu:
        _sub(el, "model", {"fallback": cpu.get("fallback")}, cpu["model"])
    if "vendor" in cpu:
        _sub(el, "vendor", None, cpu["vendor"])
    return el


def cpu_config(cpu: dict) -> Any:
    """The whole <cpu>: model config plus topology, features and NUMA cells."""
    el = cpu_model_config(cpu)
    topo = cpu.get("topology")
    if topo:
        _sub(el, "topology", {k: topo[k] for k in ("sockets", "dies", "cores", "threads")})
    for name, policy in cpu.get("features", {}).items():
        _sub(el, "feature", {"policy": policy, "name": name})
    if cpu.get("numa"):
        numa = _sub(el, "numa")
        for cell in cpu["numa"]:
            _sub(numa, "cell", {"id": cell["id"], "cpus": cell["cpus"], "memory": cell["memory"],
                                "unit": "MiB", "memAccess": cell.get("mem_access")})
    return el


def cputune_config(cputune: dict) -> Any:
    """<cputune>: vCPU and emulator pinning."""
    el = _el("cputune")
    for vcpu, cpuset in sorted(cputune.get("vcpupin", {}).items()):
        _sub(el, "vcpupin", {"vcpu": vcpu, "cpuset": cpuset})
    if "emulatorpin" in cputune:
        _sub(el, "emulatorpin", {"cpuset": cputune["emulatorpin"]})
    return el


def numatune_config(numatune: dict) -> Any:
    """<numatune>: host NUMA placement of guest memory."""
    el = _el("numatune")
    if "mode" in numatune or "nodeset" in numatune:
        _sub(el, "memory", {"mode": numatune.get("mode"), "nodeset": numatune.get("nodeset")})
    for node in numatune.get("memnodes", []):
        _sub(el, "memnode", {"cellid": node["cellid"], "mode": node.get("mode"), "nodeset": node["nodeset"]})
    return el


def memory_backing_config(backing: dict) -> Any:
    """<memoryBacking>: hugepages (all default-size, or per size and node set), locked, nosharepages."""
    el = _el("memoryBacking")
    pages = backing.get("hugepages")
    if pages:
        hp = _sub(el, "hugepages")
        if isinstance(pages, list):
            for page in pages:
                _sub(hp, "page", {"size": page["size"], "unit": "MiB", "nodeset": page.get("nodeset")})
    if backing.get("nosharepages"):
        _sub(el, "nosharepages")
    if backing.get("locked"):
        _sub(el, "locked")
    return el


# ---------------------------------------------------------------- storage

def disk_config(disk: dict) -> Any:
    """One <disk> (the blueprint's _get_guest_disk_config): file, block or network source."""
    el = _el("disk", {"type": disk["type"], "device": disk["device"]})
    if any(k in disk for k in ("format", "cache", "io", "discard")):
        _sub(el, "driver", {"name": "qemu", "type": disk.get("format"), "cache": disk.get("cache"),
                            "io": disk.get("io"), "discard": disk.get("discard")})
    src = disk.get("source")
    if src is not None:
        if disk["type"] == "network":
            s = _sub(el, "source", {"protocol": src["protocol"], "name": src.get("name")})
            for host in src.get("hosts", []):
                _sub(s, "host", {"name": host.get("name"), "port": host.get("port"),
                                 "transport": host.get("transport"), "socket": host.get("socket")})
            auth = src.get("auth")
            if auth:
                a = _sub(s, "auth", {"username": auth["username"]})
                _sub(a, "secret", {"type": auth.get("secret_type"), "uuid": auth.get("secret_uuid"),
                                   "usage": auth.get("secret_usage")})
        else:
            _sub(el, "source", {"file" if disk["type"] == "file" else "dev": src})
    _sub(el, "target", {"dev": disk["target"], "bus": disk["bus"]})
    if disk.get("readonly"):
        _sub(el, "readonly")
    if disk.get("shareable"):
        _sub(el, "shareable")
    if "serial" in disk:
        _sub(el, "serial", None, disk["serial"])
    if "boot_order" in disk:
        _sub(el, "boot", {"order": disk["boot_order"]})
    return el


def storage_config(disks: list[dict]) -> list[Any]:
    """Every <disk> in libvirt's order, with derived targets, plus the virtio-scsi controller if needed."""
    disks = order_disks([dict(d) for d in disks])
    out = [disk_config(d) for d in disks]
    if any(d["bus"] == "scsi" for d in disks):
        out.append(_el("controller", {"type": "scsi", "index": 0, "model": "virtio-scsi"}))
    return out


# ---------------------------------------------------------------- sysinfo, os, features, clock

def sysinfo_config(sysinfo: dict) -> Any:
    """<sysinfo type='smbios'> (the blueprint's _get_guest_config_sysinfo); <os> adds <smbios mode='sysinfo'/>."""
    el = _el("sysinfo", {"type": "smbios"})
    for key, tag in _SYSINFO_TAGS.items():
        if sysinfo.get(key):
            sec = _sub(el, tag)
            for name, value in sysinfo[key].items():
                _sub(sec, "entry", {"name": name}, value)
    if sysinfo.get("oem_strings"):
        oem = _sub(el, "oemStrings")
        for value in sysinfo["oem_strings"]:
            _sub(oem, "entry", None, value)
    return el


def os_config(os_spec: dict, smbios: bool = False, loader: str | None = None,
              arch: str | None = None, machine: str | None = None) -> Any:
    """<os>: type/arch/machine, firmware (libvirt's autoselection unless a loader path is given), boot."""
    firmware = os_spec.get("firmware")
    el = _el("os", {"firmware": firmware if firmware and not loader else None})
    _sub(el, "type", {"arch": os_spec.get("arch", arch), "machine": os_spec.get("machine", machine)}, "hvm")
    if firmware == "efi":
        secure = os_spec.get("secure_boot")
        if loader:
            _sub(el, "loader", {"readonly": True, "type": "pflash",
                                "secure": secure if secure is not None else None}, loader)
            template = _nvram_template(loader)
            if template:
                _sub(el, "nvram", {"template": template})
        elif secure is not None:
            fw = _sub(el, "firmware")
            _sub(fw, "feature", {"enabled": secure, "name": "secure-boot"})
            _sub(fw, "feature", {"enabled": secure, "name": "enrolled-keys"})
    for key in ("kernel", "initrd", "cmdline"):
        if key in os_spec:
            _sub(el, key, None, os_spec[key])
    for dev in os_spec.get("boot", []):
        _sub(el, "boot", {"dev": dev})
    if smbios:
        _sub(el, "smbios", {"mode": "sysinfo"})
    return el


def _nvram_template(loader: str) -> str | None:
    """The variables file shipped beside a loader (Debian/Fedora naming), if it is on this machine."""
    import os.path
    candidates = [loader.replace("_CODE", "_VARS").replace(".secboot", ".ms"),
                  loader.replace("_CODE", "_VARS").replace(".secboot", ""),
                  loader.replace("-code", "-vars")]
    for path in candidates:
        if path != loader and os.path.exists(path):
            return path
    return None


def features_config(features: dict) -> Any:
    """<features>: flags as empty elements, on/off features with state=."""
    el = _el("features")
    for name, on in features.items():
        if name in ("acpi", "apic", "pae", "viridian", "privnet"):
            _sub(el, name)
        else:
            _sub(el, name, {"state": _onoff(on)})
    return el


def clock_config(clock: dict) -> Any:
    """<clock> with its offset and timers."""
    el = _el("clock", {"offset": clock.get("offset", "utc"), "timezone": clock.get("timezone")})
    for timer in clock.get("timers", []):
        _sub(el, "timer", {"name": timer["name"], "tickpolicy": timer.get("tickpolicy"),
                           "present": timer.get("present")})
    return el


# ---------------------------------------------------------------- devices

def interface_config(iface: dict) -> Any:
    """One <interface>: source by type, MAC, model, MTU, VLANs, virtualport, bandwidth, filterref."""
    el = _el("interface", {"type": iface["type"]})
    if "mac" in iface:
        _sub(el, "mac", {"address": iface["mac"]})
    src = iface.get("source")
    if iface["type"] == "network":
        _sub(el, "source", {"network": src})
    elif iface["type"] == "bridge":
        _sub(el, "source", {"bridge": src})
    elif iface["type"] == "direct":
        _sub(el, "source", {"dev": src["dev"], "mode": src["mode"]})
    vport = iface.get("virtualport")
    if vport:
        vp = _sub(el, "virtualport", {"type": vport["type"]})
        if vport.get("parameters"):
            _sub(vp, "parameters", vport["parameters"])
    if "target" in iface:
        _sub(el, "target", {"dev": iface["target"]})
    _sub(el, "model", {"type": iface["model"]})
    if "queues" in iface:
        _sub(el, "driver", {"queues": iface["queues"]})
    if "mtu" in iface:
        _sub(el, "mtu", {"size": iface["mtu"]})
    if "link_state" in iface:
        _sub(el, "link", {"state": iface["link_state"]})
    vlan = iface.get("vlan")
    if vlan:
        v = _sub(el, "vlan", {"trunk": True if vlan["trunk"] else None})
        for tag in vlan["tags"]:
            _sub(v, "tag", {"id": tag})
    bw = iface.get("bandwidth")
    if bw:
        b = _sub(el, "bandwidth")
        for direction in ("inbound", "outbound"):
            if direction in bw:
                _sub(b, direction, bw[direction])
    flt = iface.get("filter")
    if flt:
        f = _sub(el, "filterref", {"filter": flt["name"]})
        for name, value in flt.get("parameters", {}).items():
            for v in (value if isinstance(value, list) else [value]):
                _sub(f, "parameter", {"name": name, "value": v})
    if "boot_order" in iface:
        _sub(el, "boot", {"order": iface["boot_order"]})
    return el


def pci_device_config(hostdev: dict | str) -> Any:
    """<hostdev type='pci'> from "0000:03:00.1" or {pci, managed, rom_bar} (the blueprint's _get_guest_pci_device)."""
    if isinstance(hostdev, str):
        hostdev = {"pci": hostdev, "managed": True}
    dom, bus, rest = hostdev["pci"].split(":")
    slot, func = rest.split(".")
    el = _el("hostdev", {"mode": "subsystem", "type": "pci", "managed": hostdev.get("managed", True)})
    src = _sub(el, "source")
    _sub(src, "address", {"domain": "0x" + dom, "bus": "0x" + bus, "slot": "0x" + slot, "function": "0x" + func})
    if "rom_bar" in hostdev:
        _sub(el, "rom", {"bar": _onoff(hostdev["rom_bar"])})
    return el


def graphics_config(graphics: dict) -> Any:
    """<graphics> (vnc or spice) with listen address, port or autoport, password."""
    el = _el("graphics", {"type": graphics["type"], "port": graphics.get("port"),
                          "autoport": graphics.get("autoport"), "passwd": graphics.get("password"),
                          "keymap": graphics.get("keymap")})
    if "listen" in graphics:
        _sub(el, "listen", {"type": "address", "address": graphics["listen"]})
    return el


def video_config(video: dict) -> Any:
    """<video><model/></video>."""
    el = _el("video")
    _sub(el, "model", {"type": video["model"], "vram": video.get("vram"), "heads": video.get("heads")})
    return el


def chardev_config(tag: str, dev: dict) -> Any:
    """A <serial>, <console> or <channel>: source by type, log, target."""
    el = _el(tag, {"type": dev["type"]})
    typ = dev["type"]
    if typ in ("file", "dev", "pipe"):
        _sub(el, "source", {"path": dev["path"]})
    elif typ == "unix":
        _sub(el, "source", {"mode": dev.get("mode", "bind"), "path": dev.get("path")})
    elif typ == "tcp":
        _sub(el, "source", {"mode": dev.get("mode", "bind"), "host": dev["host"], "service": dev["port"]})
    if "log" in dev:
        _sub(el, "log", {"file": dev["log"]})
    if tag == "channel":
        _sub(el, "target", {"type": dev["target_type"], "name": dev.get("name")})
    elif "target_type" in dev or "target_port" in dev:
        _sub(el, "target", {"type": dev.get("target_type"), "port": dev.get("target_port")})
    return el


def rng_config(rng: dict) -> Any:
    """<rng model='virtio'> with a random backend."""
    el = _el("rng", {"model": rng["model"]})
    _sub(el, "backend", {"model": "random"}, rng["backend"])
    return el


def tpm_config(tpm: dict) -> Any:
    """<tpm>: an emulated swtpm or a passed-through host TPM."""
    el = _el("tpm", {"model": tpm.get("model")})
    be = _sub(el, "backend", {"type": tpm["type"], "version": tpm.get("version")})
    if tpm["type"] == "passthrough":
        _sub(be, "device", {"path": tpm["path"]})
    return el


def watchdog_config(watchdog: dict) -> Any:
    """<watchdog> with its model and action."""
    return _el("watchdog", {"model": watchdog["model"], "action": watchdog.get("action")})


def memballoon_config(balloon: dict) -> Any:
    """<memballoon>, with a stats period when given."""
    el = _el("memballoon", {"model": balloon["model"]})
    if "period" in balloon:
        _sub(el, "stats", {"period": balloon["period"]})
    return el


def metadata_config(metadata: dict) -> Any:
    """<metadata> holding the spec's metadata dict as JSON in the collection's namespace."""
    el = _el("metadata")
    child = etree.SubElement(el, "{%s}metadata" % METADATA_NS, nsmap={"hvl": METADATA_NS})
    child.text = _json.dumps(metadata, sort_keys=True)
    return el


# ---------------------------------------------------------------- the whole domain

def _host_defaults(spec: dict, host: Any) -> dict[str, Any]:
    """Domain type, arch, machine, emulator and UEFI loader from the host's capabilities.

    Domain capabilities are preferred; drivers without them (the test driver)
    fall back to the host capabilities' <guest> entries.
    """
    os_spec = spec.get("os", {})
    caps = host.get_capabilities()
    arch = os_spec.get("arch") or caps.findtext("host/cpu/arch")
    offered = caps.xpath("guest[os_type='hvm'][arch/@name=$a]/arch/domain/@type", a=arch) if arch else []
    # kvm only where it really runs guests (a nested KVM that hangs is offered all the same)
    virt_type = spec.get("type") or (
        "kvm" if "kvm" in offered and host.kvm_usable(arch) is not False
        else "qemu" if "qemu" in offered or not offered else offered[0])
    out: dict[str, Any] = {"type": virt_type, "arch": arch, "machine": None, "emulator": None, "loader": None}
    try:
        dcaps = host.get_domain_capabilities(virt_type=virt_type, arch=arch, machine=os_spec.get("machine"))
    except _HypervisorError:
        guest_el = caps.xpath("guest[os_type='hvm'][arch/@name=$a]/arch", a=arch) if arch else []
        if guest_el:
            arch_el = guest_el[0]
            dom_el = arch_el.find("domain[@type='%s']" % virt_type)
            out["emulator"] = (dom_el.findtext("emulator") if dom_el is not None else None) or \
                arch_el.findtext("emulator")
            machines = (dom_el.findall("machine") if dom_el is not None else []) or arch_el.findall("machine")
            if machines:
                out["machine"] = machines[0].get("canonical") or machines[0].text
        return out
    out.update(arch=dcaps.findtext("arch") or arch, machine=dcaps.findtext("machine"),
               emulator=dcaps.findtext("path"))
    if os_spec.get("firmware") == "efi":
        paths = [v.text for v in dcaps.findall("os/loader/value") if v.text]
        secure = bool(os_spec.get("secure_boot"))
        fitting = [p for p in paths if ("secboot" in p or ".ms." in p) == secure]
        fitting.sort(key=lambda p: ("4M" not in p, p))
        # no loader of the right kind: keep libvirt's firmware autoselection
        out["loader"] = fitting[0] if fitting else None
    return out


def guest_config(spec: dict, host: Any = None) -> Any:
    """The whole <domain> for a spec (the blueprint's _get_guest_config).

    With a ``host``, the domain type (kvm when the host offers it and KVM really
    runs guests there, else qemu), arch, machine type, emulator and UEFI loader
    come from its capabilities; a ``type`` in the spec always wins. Without a
    host nothing host-specific is written and libvirt fills it in at define
    time (type defaults to kvm).
    """
    spec = validate_spec(spec)
    hd = _host_defaults(spec, host) if host is not None else {}
    dom = _el("domain", {"type": spec.get("type") or hd.get("type") or "kvm"})
    _sub(dom, "name", None, spec["name"])
    for key, tag in (("uuid", "uuid"), ("title", "title"), ("description", "description")):
        if key in spec:
            _sub(dom, tag, None, spec[key])
    if spec.get("metadata"):
        dom.append(metadata_config(spec["metadata"]))
    _sub(dom, "memory", {"unit": "MiB"}, spec["memory"])
    if "current_memory" in spec:
        _sub(dom, "currentMemory", {"unit": "MiB"}, spec["current_memory"])
    if spec.get("memory_backing"):
        dom.append(memory_backing_config(spec["memory_backing"]))
    if "vcpus" in spec:
        _sub(dom, "vcpu", None, spec["vcpus"])
    if spec.get("cputune"):
        dom.append(cputune_config(spec["cputune"]))
    if spec.get("numatune"):
        dom.append(numatune_config(spec["numatune"]))
    if spec.get("sysinfo"):
        dom.append(sysinfo_config(spec["sysinfo"]))
    dom.append(os_config(spec.get("os", {}), smbios=bool(spec.get("sysinfo")), loader=hd.get("loader"),
                         arch=hd.get("arch"), machine=hd.get("machine")))
    if spec.get("features"):
        dom.append(features_config(spec["features"]))
    if spec.get("cpu"):
        dom.append(cpu_config(spec["cpu"]))
    if spec.get("clock"):
        dom.append(clock_config(spec["clock"]))
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        if key in spec:
            _sub(dom, key, None, spec[key])
    devices = _sub(dom, "devices")
    if hd.get("emulator"):
        _sub(devices, "emulator", None, hd["emulator"])
    devices.extend(storage_config(spec.get("disks", [])))
    devices.extend(interface_config(i) for i in spec.get("interfaces", []))
    devices.extend(chardev_config("serial", s) for s in spec.get("serials", []))
    devices.extend(chardev_config("console", c) for c in spec.get("consoles", []))
    devices.extend(chardev_config("channel", c) for c in spec.get("channels", []))
    if "tpm" in spec:
        devices.append(tpm_config(spec["tpm"]))
    devices.extend(graphics_config(g) for g in spec.get("graphics", []))
    if "video" in spec:
        devices.append(video_config(spec["video"]))
    devices.extend(pci_device_config(h) for h in spec.get("hostdevs", []))
    if "watchdog" in spec:
        devices.append(watchdog_config(spec["watchdog"]))
    if "memballoon" in spec:
        devices.append(memballoon_config(spec["memballoon"]))
    if "rng" in spec:
        devices.append(rng_config(spec["rng"]))
    return dom


# Which children of <domain> and of <devices> each spec key writes. Redefining an existing domain
# from a spec replaces exactly the elements of the keys the user gave and keeps everything else
# libvirt holds (merge_definition): a key left out is not managed, never reset.
SPEC_TOP_ELEMENTS: dict[str, tuple[str, ...]] = {
    "uuid": ("uuid",), "title": ("title",), "description": ("description",), "memory": ("memory",),
    "current_memory": ("currentMemory",), "vcpus": ("vcpu", "vcpus"), "cpu": ("cpu",),
    "cputune": ("cputune",), "numatune": ("numatune",), "memory_backing": ("memoryBacking",),
    "os": ("os",), "features": ("features",), "clock": ("clock",), "sysinfo": ("sysinfo",),
    "on_poweroff": ("on_poweroff",), "on_reboot": ("on_reboot",), "on_crash": ("on_crash",),
}
SPEC_DEVICE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "disks": ("disk",), "interfaces": ("interface",), "hostdevs": ("hostdev",),
    "graphics": ("graphics",), "video": ("video",), "serials": ("serial",), "consoles": ("console",),
    "channels": ("channel",), "rng": ("rng",), "tpm": ("tpm",), "watchdog": ("watchdog",),
    "memballoon": ("memballoon",),
}


def _replace_children(parent: Any, new_parent: Any, tags: tuple[str, ...], before: str | None = None) -> None:
    """Put ``new_parent``'s children of ``tags`` where ``parent``'s were (or before ``before``, or last)."""
    old = [c for c in parent if isinstance(c.tag, str) and c.tag in tags]
    anchor = parent.find(before) if before else None
    index = list(parent).index(old[0]) if old else (list(parent).index(anchor) if anchor is not None
                                                    else len(parent))
    for c in old:
        parent.remove(c)
    for offset, c in enumerate(c for c in new_parent if isinstance(c.tag, str) and c.tag in tags):
        parent.insert(index + offset, copy.deepcopy(c))


def _device_key(el: Any) -> tuple | None:
    """What identifies a disk (target), an interface (MAC) or a host device (source) across a redefinition."""
    if el.tag == "disk" and el.find("target") is not None:
        return ("disk", el.find("target").get("dev"))
    if el.tag == "interface" and el.find("mac") is not None:
        return ("interface", (el.find("mac").get("address") or "").lower())
    if el.tag == "hostdev" and el.find("source/address") is not None:
        return ("hostdev",) + tuple(sorted(el.find("source/address").attrib.items()))
    return None


def merge_definition(current: Any, generated: Any, given: set[str] | frozenset[str]) -> Any:
    """The domain to redefine: libvirt's ``current`` definition with the elements of the spec keys in ``given``
    replaced by ``generated``'s (guest_config of the spec); what the user did not name is kept as libvirt holds it.

    Devices that stay (same disk target, interface MAC, host device) keep their PCI/drive addresses, so a
    redefinition does not move them. A memory change drops a currentMemory that only mirrored the old size.
    """
    out = copy.deepcopy(current)
    if "type" in given:
        out.set("type", generated.get("type"))
    if "memory" in given and "current_memory" not in given:
        cur_mem, old_mem, new_mem = out.find("currentMemory"), out.find("memory"), generated.find("memory")
        if cur_mem is not None and old_mem is not None and new_mem is not None:
            cur, old, new = _kib(cur_mem), _kib(old_mem), _kib(new_mem)
            if cur == old or cur > new:
                out.remove(cur_mem)  # libvirt sets it to the new memory
    for key in sorted(given & set(SPEC_TOP_ELEMENTS)):
        _replace_children(out, generated, SPEC_TOP_ELEMENTS[key], before="devices")
    if "metadata" in given:
        ours = "{%s}metadata" % METADATA_NS
        meta = out.find("metadata")
        if meta is not None:
            for c in meta.findall(ours):
                meta.remove(c)
        new = generated.find("metadata/" + ours)
        if new is not None:
            if meta is None:
                meta = etree.Element("metadata")
                name = out.find("name")
                out.insert(list(out).index(name) + 1 if name is not None else 0, meta)
            meta.append(copy.deepcopy(new))
        if meta is not None and not len(meta):
            out.remove(meta)
    os_el, gen_os = out.find("os"), generated.find("os")
    if os_el is not None and gen_os is not None and ("sysinfo" in given) != ("os" in given):
        # <os><smbios mode='sysinfo'/> belongs to sysinfo: follow the spec when only sysinfo was given,
        # keep libvirt's when only os was
        source = gen_os if "sysinfo" in given else current.find("os")
        for c in os_el.findall("smbios"):
            os_el.remove(c)
        if source is not None and source.find("smbios") is not None:
            os_el.append(copy.deepcopy(source.find("smbios")))
    if "features" not in given and generated.find("features/smm") is not None and out.find("features/smm") is None:
        features = out.find("features")
        if features is None:
            features = etree.Element("features")
            dev = out.find("devices")
            out.insert(list(out).index(dev) if dev is not None else len(out), features)
        features.append(copy.deepcopy(generated.find("features/smm")))
    devices, gen_devices = out.find("devices"), generated.find("devices")
    if devices is None:
        devices = etree.SubElement(out, "devices")
    if gen_devices is None:
        gen_devices = etree.Element("devices")
    old_type, new_type = current.find("os/type"), out.find("os/type")
    if old_type is not None and new_type is not None and any(
            new_type.get(a) and new_type.get(a) != old_type.get(a) for a in ("machine", "arch")):
        # another machine type or arch: the controllers and addresses libvirt laid out for the old one
        # do not fit (q35 needs pcie-root); libvirt lays them out again
        for c in devices.findall("controller"):
            devices.remove(c)
        for dev in devices:
            for addr in dev.findall("address") if isinstance(dev.tag, str) else []:
                dev.remove(addr)
    addresses = {}
    for el in devices:
        key = _device_key(el) if isinstance(el.tag, str) else None
        if key and el.find("address") is not None:
            addresses[key] = el.find("address")
    for key in sorted(given & set(SPEC_DEVICE_ELEMENTS)):
        _replace_children(devices, gen_devices, SPEC_DEVICE_ELEMENTS[key])
    for el in devices:
        key = _device_key(el) if isinstance(el.tag, str) else None
        if key in addresses and el.find("address") is None:
            el.append(copy.deepcopy(addresses[key]))
    if "disks" in given:
        # a controller the new disks need (virtio-scsi) joins the ones libvirt holds
        have = {(c.get("type"), c.get("model")) for c in devices.findall("controller")}
        for c in gen_devices.findall("controller"):
            if (c.get("type"), c.get("model")) not in have:
                devices.append(copy.deepcopy(c))
    if "serials" in given and "consoles" not in given:
        # the console libvirt mirrors from the first serial port is made again from the new one
        for c in devices.findall("console"):
            if c.find("target") is None or c.find("target").get("type") in (None, "serial"):
                devices.remove(c)
    return out


def guest_xml(spec: dict, host: Any = None, validate: bool = True) -> str:
    """The domain XML text for a spec, checked against libvirt's domain.rng when installed."""
    dom = guest_config(spec, host)
    if validate:
        _xmlutil.validate(dom, "domain", what="spec")
    return _xmlutil.to_string(dom)


# ---------------------------------------------------------------- parsing back

def _kib(el: Any, attr: str | None = None, unit_attr: str = "unit") -> float:
    """A libvirt size (element text or attribute, with its unit) in KiB."""
    value = el.get(attr) if attr else el.text
    unit = (el.get(unit_attr) or "KiB").lower()
    return float(value.strip()) * UNIT_BYTES.get(unit, 1024) / 1024


def _mib(el: Any, attr: str | None = None, unit_attr: str = "unit") -> int:
    return int(round(_kib(el, attr, unit_attr) / 1024))


def _yes(value: str | None) -> bool:
    return value in ("yes", "on")


def _put(out: dict, key: str, value: Any) -> None:
    if value is not None and value != {} and value != []:
        out[key] = value


def _parse_cpu(el: Any) -> dict:
    cpu: dict[str, Any] = {}
    _put(cpu, "mode", el.get("mode"))
    model = el.find("model")
    if model is not None and (model.text or "").strip():
        cpu["model"] = model.text.strip()
        _put(cpu, "fallback", model.get("fallback"))
    if el.findtext("vendor"):
        cpu["vendor"] = el.findtext("vendor")
    topo = el.find("topology")
    if topo is not None:
        cpu["topology"] = {k: int(topo.get(k, 1)) for k in ("sockets", "dies", "cores", "threads")}
    _put(cpu, "features", {f.get("name"): f.get("policy", "require") for f in el.findall("feature")})
    cells = []
    for cell in el.findall("numa/cell"):
        c = {"id": int(cell.get("id")), "cpus": cell.get("cpus"), "memory": _mib(cell, "memory")}
        _put(c, "mem_access", cell.get("memAccess"))
        cells.append(c)
    _put(cpu, "numa", cells)
    if cpu.get("mode") == "custom" and "model" not in cpu:
        del cpu["mode"]  # libvirt writes mode='custom' for a bare topology
    return cpu


def _parse_os(el: Any) -> dict:
    os_spec: dict[str, Any] = {}
    typ = el.find("type")
    if typ is not None:
        _put(os_spec, "arch", typ.get("arch"))
        _put(os_spec, "machine", typ.get("machine"))
    loader = el.find("loader")
    if el.get("firmware") == "efi" or (loader is not None and loader.get("type") == "pflash"):
        os_spec["firmware"] = "efi"
    elif el.get("firmware") == "bios":
        os_spec["firmware"] = "bios"
    for feat in el.findall("firmware/feature"):
        if feat.get("name") == "secure-boot":
            os_spec["secure_boot"] = _yes(feat.get("enabled"))
    if "secure_boot" not in os_spec and loader is not None and loader.get("secure"):
        os_spec["secure_boot"] = _yes(loader.get("secure"))
    for key in ("kernel", "initrd", "cmdline"):
        if el.find(key) is not None:
            os_spec[key] = el.findtext(key) or ""
    _put(os_spec, "boot", [b.get("dev") for b in el.findall("boot")])
    return os_spec


def _parse_disk(el: Any) -> dict | None:
    disk: dict[str, Any] = {"type": el.get("type", "file"), "device": el.get("device", "disk")}
    if disk["type"] not in ("file", "block", "network"):
        return None
    drv = el.find("driver")
    if drv is not None:
        for attr, key in (("type", "format"), ("cache", "cache"), ("io", "io"), ("discard", "discard")):
            _put(disk, key, drv.get(attr))
    src = el.find("source")
    if src is not None:
        if disk["type"] == "network":
            s: dict[str, Any] = {"protocol": src.get("protocol")}
            _put(s, "name", src.get("name"))
            hosts = []
            for h in src.findall("host"):
                host: dict[str, Any] = {}
                _put(host, "name", h.get("name"))
                if h.get("port"):
                    host["port"] = int(h.get("port"))
                _put(host, "transport", h.get("transport"))
                _put(host, "socket", h.get("socket"))
                hosts.append(host)
            _put(s, "hosts", hosts)
            auth = src.find("auth")
            if auth is None:
                auth = el.find("auth")
            if auth is not None:
                a = {"username": auth.get("username")}
                secret = auth.find("secret")
                if secret is not None:
                    _put(a, "secret_type", secret.get("type"))
                    _put(a, "secret_uuid", secret.get("uuid"))
                    _put(a, "secret_usage", secret.get("usage"))
                s["auth"] = a
            disk["source"] = s
        else:
            path = src.get("file") if disk["type"] == "file" else src.get("dev")
            _put(disk, "source", path)
    tgt = el.find("target")
    if tgt is not None:
        _put(disk, "target", tgt.get("dev"))
        _put(disk, "bus", tgt.get("bus"))
    for flag in ("readonly", "shareable"):
        if el.find(flag) is not None:
            disk[flag] = True
    if el.find("serial") is not None:
        disk["serial"] = el.findtext("serial") or ""
    boot = el.find("boot")
    if boot is not None:
        disk["boot_order"] = int(boot.get("order"))
    return disk


def _parse_interface(el: Any) -> dict | None:
    typ = el.get("type")
    if typ not in ("network", "bridge", "direct", "ethernet", "user"):
        return None
    iface: dict[str, Any] = {"type": typ}
    src = el.find("source")
    if src is not None:
        if typ == "network":
            _put(iface, "source", src.get("network"))
        elif typ == "bridge":
            _put(iface, "source", src.get("bridge"))
        elif typ == "direct":
            iface["source"] = {"dev": src.get("dev"), "mode": src.get("mode", "vepa")}
    mac = el.find("mac")
    if mac is not None:
        iface["mac"] = mac.get("address").lower()
    model = el.find("model")
    if model is not None:
        iface["model"] = model.get("type")
    drv = el.find("driver")
    if drv is not None and drv.get("queues"):
        iface["queues"] = int(drv.get("queues"))
    mtu = el.find("mtu")
    if mtu is not None:
        iface["mtu"] = int(mtu.get("size"))
    link = el.find("link")
    if link is not None:
        iface["link_state"] = link.get("state")
    vlan = el.find("vlan")
    if vlan is not None:
        iface["vlan"] = {"tags": [int(t.get("id")) for t in vlan.findall("tag")], "trunk": _yes(vlan.get("trunk"))}
    vp = el.find("virtualport")
    if vp is not None:
        v: dict[str, Any] = {"type": vp.get("type")}
        params = vp.find("parameters")
        if params is not None and len(params.attrib):
            v["parameters"] = dict(params.attrib)
        iface["virtualport"] = v
    bw = el.find("bandwidth")
    if bw is not None:
        b = {}
        for direction in ("inbound", "outbound"):
            d = bw.find(direction)
            if d is not None:
                b[direction] = {k: int(v) for k, v in d.attrib.items()}
        _put(iface, "bandwidth", b)
    fr = el.find("filterref")
    if fr is not None:
        params: dict[str, Any] = {}
        for p in fr.findall("parameter"):
            name, value = p.get("name"), p.get("value")
            if name in params:
                prev = params[name]
                params[name] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                params[name] = value
        f: dict[str, Any] = {"name": fr.get("filter")}
        _put(f, "parameters", params)
        iface["filter"] = f
    tgt = el.find("target")
    if tgt is not None and tgt.get("dev"):
        iface["target"] = tgt.get("dev")
    boot = el.find("boot")
    if boot is not None:
        iface["boot_order"] = int(boot.get("order"))
    return iface


def _parse_chardev(el: Any, tag: str) -> dict:
    dev: dict[str, Any] = {"type": el.get("type", "pty")}
    src = el.find("source")
    typ = dev["type"]
    if src is None and typ == "unix":
        dev["mode"] = "bind"  # libvirt drops a path-less <source mode='bind'/> and makes the socket itself
    if src is not None:
        if typ in ("file", "dev", "pipe", "unix"):
            _put(dev, "path", src.get("path"))
        if typ in ("unix", "tcp"):
            _put(dev, "mode", src.get("mode"))
        if typ == "tcp":
            _put(dev, "host", src.get("host"))
            if src.get("service"):
                dev["port"] = int(src.get("service"))
    log = el.find("log")
    if log is not None:
        dev["log"] = log.get("file")
    tgt = el.find("target")
    if tgt is not None:
        if tag == "channel":
            _put(dev, "target_type", tgt.get("type"))
            _put(dev, "name", tgt.get("name"))
        else:
            if tag == "console":
                _put(dev, "target_type", tgt.get("type"))
            if tgt.get("port") is not None:
                dev["target_port"] = int(tgt.get("port"))
    return dev


def _parse_hostdev(el: Any) -> dict | None:
    if el.get("mode", "subsystem") != "subsystem" or el.get("type") != "pci":
        return None
    addr = el.find("source/address")
    if addr is None:
        return None
    pci = "%04x:%02x:%02x.%x" % tuple(int(addr.get(k, "0"), 16) for k in ("domain", "bus", "slot", "function"))
    h: dict[str, Any] = {"pci": pci, "managed": _yes(el.get("managed"))}
    rom = el.find("rom")
    if rom is not None and rom.get("bar"):
        h["rom_bar"] = _yes(rom.get("bar"))
    return h


def _parse_graphics(el: Any) -> dict:
    g: dict[str, Any] = {"type": el.get("type")}
    listen = el.find("listen")
    address = listen.get("address") if listen is not None else None
    _put(g, "listen", address or el.get("listen"))
    port = el.get("port")
    autoport = el.get("autoport")
    if autoport is not None:
        g["autoport"] = _yes(autoport)
    elif port in (None, "-1"):
        g["autoport"] = True
    if port not in (None, "-1") and not g.get("autoport"):
        g["port"] = int(port)
    _put(g, "password", el.get("passwd"))
    _put(g, "keymap", el.get("keymap"))
    return g


def parse_domain_xml(xml: Any) -> dict:
    """Read a domain XML (ours, or libvirt's XMLDesc with its additions) into the spec's terms.

    Only the fields the spec manages are read; what libvirt adds on its own
    (addresses, controllers, aliases, security labels) is left out, and what it
    fills in with defaults (MACs, UUID, memballoon) is read so that
    ``spec_differences`` can ignore it when the spec does not name it.
    """
    dom = _xmlutil.parse(xml, "domain XML") if isinstance(xml, (str, bytes)) else xml
    spec: dict[str, Any] = {"name": dom.findtext("name")}
    _put(spec, "uuid", (dom.findtext("uuid") or "").lower() or None)
    _put(spec, "type", dom.get("type"))
    if dom.find("title") is not None:
        spec["title"] = dom.findtext("title") or ""
    if dom.find("description") is not None:
        spec["description"] = dom.findtext("description") or ""
    meta = dom.find("metadata/{%s}metadata" % METADATA_NS)
    if meta is not None and meta.text:
        try:
            spec["metadata"] = _json.loads(meta.text)
        except ValueError:
            pass
    mem = dom.find("memory")
    if mem is not None:
        spec["memory"] = _mib(mem)
    cur = dom.find("currentMemory")
    if cur is not None:
        spec["current_memory"] = _mib(cur)
    mb = dom.find("memoryBacking")
    if mb is not None:
        backing: dict[str, Any] = {}
        hp = mb.find("hugepages")
        if hp is not None:
            pages = []
            for page in hp.findall("page"):
                p: dict[str, Any] = {"size": _mib(page, "size")}
                _put(p, "nodeset", page.get("nodeset"))
                pages.append(p)
            backing["hugepages"] = pages or True
        for flag in ("locked", "nosharepages"):
            if mb.find(flag) is not None:
                backing[flag] = True
        _put(spec, "memory_backing", backing)
    vcpu = dom.find("vcpu")
    if vcpu is not None:
        spec["vcpus"] = int(vcpu.text)
    ct = dom.find("cputune")
    if ct is not None:
        cputune: dict[str, Any] = {}
        _put(cputune, "vcpupin", {int(p.get("vcpu")): p.get("cpuset") for p in ct.findall("vcpupin")})
        ep = ct.find("emulatorpin")
        if ep is not None:
            cputune["emulatorpin"] = ep.get("cpuset")
        _put(spec, "cputune", cputune)
    nt = dom.find("numatune")
    if nt is not None:
        numatune: dict[str, Any] = {}
        m = nt.find("memory")
        if m is not None:
            _put(numatune, "mode", m.get("mode"))
            _put(numatune, "nodeset", m.get("nodeset"))
        nodes = []
        for n in nt.findall("memnode"):
            node: dict[str, Any] = {"cellid": int(n.get("cellid")), "nodeset": n.get("nodeset")}
            _put(node, "mode", n.get("mode"))
            nodes.append(node)
        _put(numatune, "memnodes", nodes)
        _put(spec, "numatune", numatune)
    si = dom.find("sysinfo")
    if si is not None and si.get("type", "smbios") == "smbios":
        sysinfo: dict[str, Any] = {}
        for key, tag in _SYSINFO_TAGS.items():
            sec = si.find(tag)
            if sec is not None:
                _put(sysinfo, key, {e.get("name"): e.text or "" for e in sec.findall("entry")})
        oem = si.find("oemStrings")
        if oem is not None:
            _put(sysinfo, "oem_strings", [e.text or "" for e in oem.findall("entry")])
        _put(spec, "sysinfo", sysinfo)
    os_el = dom.find("os")
    if os_el is not None:
        _put(spec, "os", _parse_os(os_el))
    feats = dom.find("features")
    if feats is not None:
        features = {}
        for f in feats:
            if not isinstance(f.tag, str):
                continue
            name = f.tag
            if name in ("acpi", "apic", "pae", "viridian", "privnet"):
                features[name] = True
            elif name in ("hap", "pvspinlock", "pmu", "vmport", "smm", "vmcoreinfo", "htm", "ps2"):
                features[name] = f.get("state", "on") == "on"
        _put(spec, "features", features)
    cpu_el = dom.find("cpu")
    if cpu_el is not None:
        _put(spec, "cpu", _parse_cpu(cpu_el))
    clk = dom.find("clock")
    if clk is not None:
        clock: dict[str, Any] = {"offset": clk.get("offset", "utc")}
        _put(clock, "timezone", clk.get("timezone"))
        timers = []
        for t in clk.findall("timer"):
            timer: dict[str, Any] = {"name": t.get("name")}
            _put(timer, "tickpolicy", t.get("tickpolicy"))
            if t.get("present"):
                timer["present"] = _yes(t.get("present"))
            timers.append(timer)
        _put(clock, "timers", timers)
        spec["clock"] = clock
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        if dom.findtext(key):
            spec[key] = dom.findtext(key)
    devs = dom.find("devices")
    if devs is None:
        return spec
    _put(spec, "disks", [d for d in (_parse_disk(e) for e in devs.findall("disk")) if d is not None])
    _put(spec, "interfaces", [i for i in (_parse_interface(e) for e in devs.findall("interface")) if i is not None])
    _put(spec, "hostdevs", [h for h in (_parse_hostdev(e) for e in devs.findall("hostdev")) if h is not None])
    _put(spec, "graphics", [_parse_graphics(e) for e in devs.findall("graphics")])
    video = devs.find("video/model")
    if video is not None:
        v: dict[str, Any] = {"model": video.get("type")}
        for attr in ("vram", "heads"):
            if video.get(attr):
                v[attr] = int(video.get(attr))
        spec["video"] = v
    _put(spec, "serials", [_parse_chardev(e, "serial") for e in devs.findall("serial")])
    _put(spec, "consoles", [_parse_chardev(e, "console") for e in devs.findall("console")])
    _put(spec, "channels", [_parse_chardev(e, "channel") for e in devs.findall("channel")])
    rng = devs.find("rng")
    if rng is not None:
        backend = rng.find("backend")
        spec["rng"] = {"model": rng.get("model"),
                       "backend": (backend.text or "/dev/urandom") if backend is not None else "/dev/urandom"}
    tpm = devs.find("tpm")
    if tpm is not None:
        t: dict[str, Any] = {}
        _put(t, "model", tpm.get("model"))
        be = tpm.find("backend")
        if be is not None:
            t["type"] = be.get("type")
            _put(t, "version", be.get("version"))
            if be.find("device") is not None:
                t["path"] = be.find("device").get("path")
        spec["tpm"] = t
    wd = devs.find("watchdog")
    if wd is not None:
        w: dict[str, Any] = {"model": wd.get("model")}
        _put(w, "action", wd.get("action"))
        spec["watchdog"] = w
    mbal = devs.find("memballoon")
    if mbal is not None:
        b: dict[str, Any] = {"model": mbal.get("model")}
        stats = mbal.find("stats")
        if stats is not None:
            b["period"] = int(stats.get("period"))
        spec["memballoon"] = b
    return spec


# ---------------------------------------------------------------- comparing

def spec_differences(desired: dict, current: dict) -> list[dict]:
    """Differences between a normalised desired spec and a parsed current one, over desired's keys only.

    Dicts compare only the keys desired names (an interface without ``mac``
    matches any MAC), except maps whose keys the user chooses (``features``,
    ``cpu.features``, ``metadata``, ``vcpupin``, filter ``parameters``): those
    are one value, so a feature dropped from the spec is a difference. Lists
    of dicts compare element by element by position, and a missing or extra
    element is a difference; other values compare whole. An empty list means
    nothing to change.
    """
    consoles = desired.get("consoles")
    if consoles is not None and current.get("serials") and \
            not any(c.get("target_type", "serial") == "serial" for c in consoles):
        # libvirt always mirrors the first serial port as a serial console; asking for other
        # consoles (virtio) without serial ones does not ask that mirror away
        current = dict(current, consoles=[c for c in current.get("consoles", [])
                                          if c.get("target_type", "serial") != "serial"])
    diffs: list[dict] = []
    _diff(desired, current, "", diffs)
    return diffs


# Spec keys holding a map of user-chosen names (guest_spec.Map): compared as a whole.
_WHOLE_MAPS = frozenset(("features", "metadata", "vcpupin", "parameters"))


def _diff(want: Any, have: Any, path: str, out: list[dict]) -> None:
    if isinstance(want, dict) and isinstance(have, dict) and path.rsplit(".", 1)[-1] not in _WHOLE_MAPS:
        for key, value in want.items():
            sub = "%s.%s" % (path, key) if path else str(key)
            if key not in have:
                out.append({"path": sub, "before": None, "after": value})
            else:
                _diff(value, have[key], sub, out)
    elif isinstance(want, list) and isinstance(have, list) and \
            any(isinstance(v, dict) for v in want + have):
        for i in range(max(len(want), len(have))):
            sub = "%s[%d]" % (path, i)
            if i >= len(want):
                out.append({"path": sub, "before": have[i], "after": None})
            elif i >= len(have):
                out.append({"path": sub, "before": None, "after": want[i]})
            else:
                _diff(want[i], have[i], sub, out)
    elif want != have:
        out.append({"path": path, "before": have, "after": want})
