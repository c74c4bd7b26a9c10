# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest: one libvirt domain.

The blueprint's ``Guest`` class wraps one domain (lifecycle, devices, XML
read). It imports nothing from Ansible; a ``Host`` hands out Guests and
every libvirt call goes through ``Host.call`` so errors are translated and a
dropped connection is reopened in one place. Building and reading domain XML
is domain_xml.py's.
"""

from __future__ import annotations

from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt


class Guest:
    """One libvirt domain, bound to the Host that found it."""

    # virDomainState -> the name used in facts, module results and Host.wait_for_lifecycle
    STATE_NAMES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
                   6: "crashed", 7: "pmsuspended"}

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
        return self.STATE_NAMES.get(state, "nostate")

    def get_state_reason(self) -> tuple[str, int]:
        """The state (STATE_NAMES' value) and libvirt's reason number for it."""
        state, reason = self._call("reading the state of", lambda d: d.state())
        return self.STATE_NAMES.get(state, "nostate"), reason

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
        return {"state": self.STATE_NAMES.get(state, "nostate"), "max_memory_kib": max_mem,
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


__all__ = ["Guest"]
