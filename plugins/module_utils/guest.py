# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest: one libvirt domain, and the construction of its XML.

The blueprint's ``Guest`` class wraps one domain (lifecycle, devices, XML
read). It imports nothing from Ansible; a ``Host`` hands out Guests and
every libvirt call goes through ``Host.call`` so errors are translated and a
dropped connection is reopened in one place.
"""

from __future__ import annotations

from typing import Any, Callable

# virDomainState -> name used in facts, module results and wait_for_lifecycle
STATE_NAMES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}


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
    def id(self) -> int | None:
        dom_id = self._call("reading the id of", lambda d: d.ID())
        return dom_id if dom_id >= 0 else None

    def get_state(self) -> str:
        """One of STATE_NAMES' values."""
        state, _reason = self._call("reading the state of", lambda d: d.state())
        return STATE_NAMES.get(state, "nostate")

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
