# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VIF driver: a guest's network interfaces, given a ``Host`` (not a driver callback).

This is the blueprint's ``LibvirtBaseVIFDriver`` taking a Host instance. It
builds an interface's XML from a spec (through guest.interface_config), finds
an interface on a domain (by MAC, else by source), and plugs, unplugs and
updates it in the live and/or persistent configuration. A property libvirt can
change in place (filterref, link state, bandwidth) is changed with
``updateDeviceFlags``; anything else on a running guest needs a detach and a
re-attach, which is only done when the caller allows it (``replug``) -
otherwise the persistent config is changed and ``pending_restart`` reported.

Desired and current are compared per child element with declared semantics
(``FIELDS``), never as text; every mutating libvirt call goes through one
method (``_mutate``) that honours check mode.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils import guest as guest_mod
from ansible_collections.hypervisor.libvirt.plugins.module_utils import guest_spec
from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    InvalidSpec,
    NotFound,
    OperationFailed,
    Timeout,
)

INTERFACE_TYPES = ("network", "bridge", "direct", "ethernet", "user")
DIRECT_MODES = ("vepa", "bridge", "private", "passthrough")

# How a child element of <interface> is compared (desired vs current):
#   "exact":  the same or both absent (absent on one side is a difference)
#   "subset": only compared when desired has it; desired's attributes and
#             children must be present in current (libvirt adds portid,
#             interfaceid, defaults, ...)
# and whether libvirt can change it on a running guest with updateDeviceFlags.
FIELDS: dict[str, tuple[str, bool]] = {
    "source": ("subset", False),
    "model": ("subset", False),
    "mtu": ("subset", False),
    "driver": ("subset", False),
    "target": ("subset", False),
    "boot": ("subset", False),
    "virtualport": ("subset", False),
    "vlan": ("exact", False),
    "link": ("exact", True),
    "bandwidth": ("exact", True),
    "filterref": ("exact", True),
}
# Parts libvirt owns; carried over from current into what is sent back.
_KEPT = ("mac", "address", "alias")

LIVE = "live"
CONFIG = "config"


def _affect(which: str) -> dict[str, bool]:
    return {"live": which == LIVE, "persistent": which == CONFIG}


# ---------------------------------------------------------------------- compare
def _norm(el: Any) -> tuple:
    """Canonical form where children are a multiset (filterref parameters have no order)."""
    return (el.tag, tuple(sorted(el.attrib.items())), (el.text or "").strip(),
            tuple(sorted(_norm(c) for c in el if isinstance(c.tag, str))))


def _contains(current: Any, desired: Any) -> bool:
    """Every attribute and child of ``desired`` is in ``current`` (libvirt's additions ignored)."""
    for key, value in desired.attrib.items():
        if current.get(key) != value:
            return False
    if (desired.text or "").strip() and (desired.text or "").strip() != (current.text or "").strip():
        return False
    pool = [c for c in current if isinstance(c.tag, str)]
    for child in desired:
        if not isinstance(child.tag, str):
            continue
        match = next((c for c in pool if c.tag == child.tag and _contains(c, child)), None)
        if match is None:
            return False
        pool.remove(match)
    return True


def _children(el: Any, tag: str) -> list[Any]:
    return [c for c in el if c.tag == tag] if el is not None else []


def _link_up(els: list[Any]) -> bool:
    return not els or all(e.get("state", "up") == "up" for e in els)


def field_differs(tag: str, desired: Any, current: Any) -> bool:
    """Does ``tag`` of the desired interface differ from the current one, by FIELDS' rule?"""
    want, have = _children(desired, tag), _children(current, tag)
    rule = FIELDS[tag][0]
    if tag == "link":
        # no <link> means the link is up
        if _link_up(want) and _link_up(have):
            return False
        return sorted(_norm(e) for e in want) != sorted(_norm(e) for e in have)
    if rule == "exact":
        return sorted(_norm(e) for e in want) != sorted(_norm(e) for e in have)
    if not want:
        return False
    pool = list(have)
    for w in want:
        match = next((h for h in pool if _contains(h, w)), None)
        if match is None:
            return True
        pool.remove(match)
    return False


def differences(desired: Any, current: Any) -> list[str]:
    """Names of what differs (``type`` and FIELDS' tags), in a stable order."""
    diff = []
    if desired.get("type") != current.get("type"):
        diff.append("type")
    mac = desired.find("mac")
    if mac is not None and _mac(current) != mac.get("address", "").lower():
        diff.append("mac")
    diff.extend(tag for tag in FIELDS if field_differs(tag, desired, current))
    return diff


def merge(desired: Any, current: Any, fields: list[str]) -> Any:
    """Current's XML with ``fields`` taken from desired (libvirt's MAC, address, alias kept)."""
    if "type" in fields:
        new = copy.deepcopy(desired)
        for tag in _KEPT:
            if new.find(tag) is None:
                for el in _children(current, tag):
                    new.append(copy.deepcopy(el))
        return new
    new = copy.deepcopy(current)
    for tag in fields:
        if tag not in FIELDS:
            continue
        for el in _children(new, tag):
            new.remove(el)
        for el in _children(desired, tag):
            new.append(copy.deepcopy(el))
    return new


def live_updatable(fields: list[str]) -> bool:
    """libvirt can change all of these on a running guest without unplugging the NIC."""
    return all(f in FIELDS and FIELDS[f][1] for f in fields)


# ---------------------------------------------------------------------- find
def _mac(iface: Any) -> str:
    mac = iface.find("mac")
    return (mac.get("address") or "").lower() if mac is not None else ""


def source_name(iface: Any) -> str | None:
    """The name an interface is attached to: network, bridge, or direct's host device."""
    src = iface.find("source")
    if src is None:
        return None
    return src.get("network") or src.get("bridge") or src.get("dev")


def find_interface(domain_xml: Any, mac: str | None = None, itype: str | None = None,
                   source: str | None = None, path: str = "interface") -> Any | None:
    """The domain's <interface> with this MAC, or with this type and source when no MAC is given."""
    if isinstance(domain_xml, (str, bytes)):
        domain_xml = xmlutil.parse(domain_xml, "domain XML")
    ifaces = domain_xml.findall("devices/interface")
    if mac:
        found = [i for i in ifaces if _mac(i) == mac.lower()]
    else:
        found = [i for i in ifaces if (itype is None or i.get("type") == itype)
                 and (source is None or source_name(i) == source)]
        if len(found) > 1:
            raise InvalidSpec(path, "%d interfaces of type %s on source %s: give interface.mac to say which one"
                              % (len(found), itype, source))
    return found[0] if found else None


# ---------------------------------------------------------------------- driver
class LibvirtVIFDriver:
    """Interfaces of guests on one Host: config from a spec, plug, unplug, update."""

    def __init__(self, host: Any, check_mode: bool = False, detach_timeout: float = 30.0) -> None:
        self._host = host
        self.check_mode = check_mode
        self.detach_timeout = detach_timeout
        self.actions: list[str] = []

    @property
    def host(self) -> Any:
        return self._host

    # -------------------------------------------------------------- config
    def get_config(self, spec: dict[str, Any], path: str = "interface") -> Any:
        """The <interface> element for a spec, checked per type and against domain.rng."""
        spec = self.normalise(spec, path)
        el = guest_mod.interface_config(spec)
        wrapper = etree.Element("domain", type="qemu")
        xmlutil.sub(wrapper, "name", text="hvl-vif-check")
        xmlutil.sub(wrapper, "memory", text="1")
        xmlutil.sub(xmlutil.sub(wrapper, "os"), "type", text="hvm")
        etree.SubElement(wrapper, "devices").append(copy.deepcopy(el))
        xmlutil.validate(wrapper, "domain", path)
        return el

    @classmethod
    def normalise(cls, spec: dict[str, Any], path: str = "interface") -> dict[str, Any]:
        """The spec checked and normalised as the guest spec's interfaces are, plus the VIF rules."""
        if not isinstance(spec, dict):
            raise InvalidSpec(path, "must be a dict")
        cls._check_spec(spec, path)
        return guest_spec.validate_interface(spec, path)

    @staticmethod
    def _check_spec(spec: dict[str, Any], path: str) -> None:
        """Rules libvirt's schema cannot say: which source and virtualport go with which type."""
        itype = spec.get("type", "network")
        if itype not in INTERFACE_TYPES:
            raise InvalidSpec(path + ".type", "must be one of %s, got %r" % (", ".join(INTERFACE_TYPES), itype))
        source = spec.get("source")
        if itype in ("network", "bridge", "direct") and not source:
            what = {"network": "a network name", "bridge": "a bridge name",
                    "direct": "a host device (source: {dev: eth0, mode: bridge})"}[itype]
            raise InvalidSpec(path + ".source", "type %s needs %s" % (itype, what))
        if itype == "direct":
            dev = source.get("dev") if isinstance(source, dict) else source
            if not dev:
                raise InvalidSpec(path + ".source.dev", "type direct needs the host device (dev)")
            mode = source.get("mode") if isinstance(source, dict) else spec.get("mode")
            if mode is not None and mode not in DIRECT_MODES:
                raise InvalidSpec(path + ".source.mode", "must be one of %s, got %r"
                                  % (", ".join(DIRECT_MODES), mode))
        if itype in ("ethernet", "user") and source:
            raise InvalidSpec(path + ".source", "type %s takes no source" % itype)
        vport = spec.get("virtualport")
        if vport:
            vtype = vport.get("type") if isinstance(vport, dict) else vport
            if vtype == "openvswitch" and itype not in ("bridge", "network"):
                raise InvalidSpec(path + ".virtualport.type", "openvswitch needs type bridge (or a network), not %s"
                                  % itype)
            if vtype in ("802.1Qbg", "802.1Qbh") and itype not in ("direct", "network"):
                raise InvalidSpec(path + ".virtualport.type", "%s needs type direct, not %s" % (vtype, itype))
        if spec.get("queues") is not None and spec.get("model") not in (None, "virtio"):
            raise InvalidSpec(path + ".queues", "multiqueue needs model virtio, not %s" % spec.get("model"))

    def check_references(self, spec: dict[str, Any], path: str = "interface") -> None:
        """The nwfilter and network the spec names exist, before the domain is touched.

        A driver without nwfilters or networks (libvirt's test driver has no nwfilters) cannot be asked,
        and is not.
        """
        flt = spec.get("filter")
        if flt:
            name = flt.get("name") if isinstance(flt, dict) else flt
            if not self._exists("nwfilter '%s'" % name, lambda c: c.nwfilterLookupByName(name)):
                raise InvalidSpec(path + ".filter.name", "nwfilter '%s' does not exist on %s (define it first)"
                                  % (name, self._host.uri))
        if spec.get("type", "network") == "network" and spec.get("source"):
            net = spec["source"] if isinstance(spec["source"], str) else spec["source"].get("network")
            if not self._exists("network '%s'" % net, lambda c: c.networkLookupByName(net)):
                raise InvalidSpec(path + ".source", "network '%s' does not exist on %s" % (net, self._host.uri))

    def _exists(self, what: str, lookup: Callable[[Any], Any]) -> bool:
        try:
            self._host.call("looking up " + what, lookup)
        except NotFound:
            return False
        except OperationFailed as exc:
            if libvirt is None or exc.code != libvirt.VIR_ERR_NO_SUPPORT:
                raise
        return True

    # -------------------------------------------------------------- mutations
    def _mutate(self, action: str, fn: Callable[[], Any]) -> None:
        """The one place that changes a domain: record the action; act unless in check mode."""
        self.actions.append(action)
        if not self.check_mode:
            fn()

    def wait_detached(self, guest: Any, mac: str) -> None:
        """A live detach completes when the guest releases the device: wait for it, bounded."""
        deadline = time.monotonic() + self.detach_timeout
        while True:
            if find_interface(guest.get_xml_desc(), mac=mac) is None:
                return
            if time.monotonic() >= deadline:
                raise Timeout("interface %s of domain '%s' still present %gs after the detach request "
                              "(does the guest handle PCI hot-unplug? it needs ACPI)"
                              % (mac, guest.name, self.detach_timeout), uri=self._host.uri)
            time.sleep(0.2)

    def _attach(self, guest: Any, xml: str, which: str) -> None:
        self._mutate("attach-" + which, lambda: guest.attach_device(xml, **_affect(which)))

    def _detach(self, guest: Any, el: Any, which: str) -> None:
        xml = xmlutil.to_string(copy.deepcopy(el))

        def run() -> None:
            guest.detach_device(xml, **_affect(which))
            if which == LIVE:
                self.wait_detached(guest, _mac(el))
        self._mutate("detach-" + which, run)

    def _update(self, guest: Any, xml: str, which: str) -> None:
        self._mutate("update-" + which, lambda: guest.update_device(xml, **_affect(which)))

    # -------------------------------------------------------------- state
    def current(self, guest: Any, live: bool, persistent: bool) -> dict[str, Any]:
        """The domain XML per configuration in scope: {'live': el, 'config': el}."""
        docs = {}
        if live:
            docs[LIVE] = xmlutil.parse(guest.get_xml_desc(), "domain XML")
        if persistent:
            docs[CONFIG] = xmlutil.parse(guest.get_xml_desc(inactive=True), "domain XML")
        return docs

    @staticmethod
    def scope(guest: Any, config: str = "both") -> tuple[bool, bool]:
        """(live, persistent) for a ``config`` choice of live|persistent|both on this domain."""
        active, persistent = guest.is_active(), guest.is_persistent()
        if config == "live":
            if not active:
                raise OperationFailed("domain '%s' is not running: there is no live configuration to change "
                                      "(use config: persistent or both)" % guest.name, uri=guest.host.uri)
            return True, False
        if config == "persistent":
            if not persistent:
                raise OperationFailed("domain '%s' is transient: it has no persistent configuration" % guest.name,
                                      uri=guest.host.uri)
            return False, True
        if config != "both":
            raise InvalidSpec("config", "must be live, persistent or both, got %r" % config)
        return active, persistent

    # -------------------------------------------------------------- plug / update / unplug
    def plug(self, guest: Any, spec: dict[str, Any], live: bool = True, persistent: bool = True,
             replug: bool = False, path: str = "interface") -> dict[str, Any]:
        """Ensure the interface is present and as specified; attach, update in place or replug."""
        desired = self.get_config(spec, path)
        docs = self.current(guest, live, persistent)
        found = {w: find_interface(d, mac=spec.get("mac"), itype=desired.get("type"),
                                   source=source_name(desired), path=path) for w, d in docs.items()}
        # one MAC for both configurations: take libvirt's when the user gave none
        if desired.find("mac") is None:
            known = next((_mac(el) for el in found.values() if el is not None), None)
            if known:
                xmlutil.sub(desired, "mac", {"address": known})
        plans = {w: self._plan(desired, found[w], w, replug) for w in docs}
        if any(p[0] != "none" for p in plans.values()):
            self.check_references(spec, path)
        result = self._result(docs, found)
        # attach to both in one call so libvirt gives both the same generated MAC
        if all(p[0] == "attach" for p in plans.values()) and len(plans) == 2:
            xml = xmlutil.to_string(copy.deepcopy(desired))
            self.actions.append("attach-config")
            self._mutate("attach-live", lambda: guest.attach_device(xml, live=True, persistent=True))
        else:
            for which in (CONFIG, LIVE):
                if which in plans:
                    self._apply(guest, which, plans[which], found[which])
        result["after"] = {w: p[1] for w, p in plans.items()}
        result["pending"] = {w: p[2] for w, p in plans.items()}
        return self._finish(guest, result, live, persistent, mac=_mac(desired) or None,
                            itype=desired.get("type"), source=source_name(desired))

    def update(self, guest: Any, spec: dict[str, Any], live: bool = True, persistent: bool = True,
               replug: bool = False, path: str = "interface") -> dict[str, Any]:
        """Like plug, but the interface must already exist (``NotFound`` otherwise)."""
        desired = self.get_config(spec, path)
        docs = self.current(guest, live, persistent)
        for which, doc in docs.items():
            if find_interface(doc, mac=spec.get("mac"), itype=desired.get("type"),
                              source=source_name(desired), path=path) is None:
                raise NotFound("domain '%s' has no such interface in its %s configuration"
                               % (guest.name, which), uri=self._host.uri)
        return self.plug(guest, spec, live, persistent, replug, path)

    def unplug(self, guest: Any, match: dict[str, Any], live: bool = True, persistent: bool = True,
               path: str = "interface") -> dict[str, Any]:
        """Ensure no interface matches (``mac``, else ``type`` + ``source``): detach where present."""
        itype = match.get("type")
        source = match.get("source")
        if isinstance(source, dict):
            source = source.get("network") or source.get("bridge") or source.get("dev")
        if not match.get("mac") and not source and itype not in ("ethernet", "user"):
            raise InvalidSpec(path, "to remove an interface, give its mac, or its type and source")
        docs = self.current(guest, live, persistent)
        found = {w: find_interface(d, mac=match.get("mac"), itype=itype if not match.get("mac") else None,
                                   source=source, path=path) for w, d in docs.items()}
        result = self._result(docs, found)
        for which in (CONFIG, LIVE):
            if found.get(which) is not None:
                self._detach(guest, found[which], which)
        result["after"] = {w: None for w in docs}
        result["pending"] = {w: False for w in docs}
        return self._finish(guest, result, live, persistent, mac=match.get("mac"), itype=itype, source=source)

    # -------------------------------------------------------------- internals
    @staticmethod
    def _plan(desired: Any, current: Any, which: str, replug: bool) -> tuple[str, Any, bool]:
        """(action, resulting element, change left pending) for one configuration."""
        if current is None:
            return "attach", copy.deepcopy(desired), False
        fields = differences(desired, current)
        if not fields:
            return "none", current, False
        if "mac" in fields:  # cannot happen when found by MAC; by source it means another NIC
            fields.remove("mac")
        new = merge(desired, current, fields)
        if which == CONFIG or live_updatable(fields):
            return "update", new, False
        if replug:
            return "replug", new, False
        return "pending", current, True

    def _apply(self, guest: Any, which: str, plan: tuple[str, Any, bool], current: Any) -> None:
        action, new, _pending = plan
        xml = xmlutil.to_string(copy.deepcopy(new)) if new is not None else None
        if action == "attach":
            self._attach(guest, xml, which)
        elif action == "update":
            self._update(guest, xml, which)
        elif action == "replug":
            self._detach(guest, current, which)
            # libvirt re-assigns alias and, if needed, the slot
            fresh = copy.deepcopy(new)
            for el in _children(fresh, "alias") + _children(fresh, "target"):
                if el.tag == "alias" or (el.get("dev") or "").startswith(("vnet", "macvtap")):
                    fresh.remove(el)
            self._attach(guest, xmlutil.to_string(fresh), which)

    @staticmethod
    def _result(docs: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
        return {"before": {w: found[w] for w in docs}}

    def _finish(self, guest: Any, result: dict[str, Any], live: bool, persistent: bool,
                mac: str | None, itype: str | None, source: str | None) -> dict[str, Any]:
        """Read back what libvirt made (or, in check mode, keep the prediction) and summarise."""
        after = result["after"]
        if not self.check_mode and self.actions:
            docs = self.current(guest, live, persistent)
            after = {w: find_interface(d, mac=mac, itype=itype if not mac else None, source=source)
                     for w, d in docs.items()}
        pending = any(result["pending"].values())
        if not pending and guest.is_active() and persistent and not live:
            # the persistent config changed or differs while the running guest keeps the old one
            live_el = find_interface(guest.get_xml_desc(), mac=mac, itype=itype if not mac else None, source=source)
            cfg = after.get(CONFIG)
            if (live_el is None) != (cfg is None):
                pending = True
            elif cfg is not None and differences(_strip_live(cfg), live_el):
                pending = True
        return {
            "changed": bool(self.actions),
            "actions": list(self.actions),
            "pending_restart": pending,
            "before": {w: _xml(e) for w, e in result["before"].items()},
            "after": {w: _xml(e) for w, e in after.items()},
        }


def _strip_live(el: Any) -> Any:
    """A persistent interface, as the comparison with the live one should see it."""
    el = copy.deepcopy(el)
    for child in _children(el, "address"):
        el.remove(child)
    return el


def _xml(el: Any) -> str | None:
    return xmlutil.to_string(copy.deepcopy(el)) if el is not None else None


def describe(xml: str | None) -> dict[str, Any] | None:
    """An interface as plain values, with the keys of Guest.get_interfaces."""
    if not xml:
        return None
    el = xmlutil.parse(xml, "interface XML")

    def attr(tag: str, name: str) -> str | None:
        child = el.find(tag)
        return child.get(name) if child is not None else None
    ref = el.find("filterref")
    mtu = attr("mtu", "size")
    return {
        "type": el.get("type"),
        "mac": attr("mac", "address"),
        "source": source_name(el),
        "source_mode": attr("source", "mode"),
        "model": attr("model", "type"),
        "target": attr("target", "dev"),
        "mtu": int(mtu) if mtu else None,
        "filter": {"name": ref.get("filter"),
                   "parameters": {p.get("name"): p.get("value") for p in ref.findall("parameter")}}
        if ref is not None else None,
        "link_state": attr("link", "state"),
    }


def module_result(vif: LibvirtVIFDriver, domain: str, interface: dict[str, Any] | None, mac: str | None,
                  state: str = "present", config: str = "both", replug: bool = False,
                  diff: bool = False) -> dict[str, Any]:
    """What the domain_interface module does with its parameters, as plain values in and out."""
    spec = dict(interface or {})
    if mac:
        if spec.get("mac") and spec["mac"].lower() != mac.lower():
            raise InvalidSpec("mac", "%s differs from interface.mac %s" % (mac, spec["mac"]))
        spec["mac"] = mac
    guest = vif.host.get_guest(name=domain)
    live, persistent = vif.scope(guest, config)
    if state == "absent":
        res = vif.unplug(guest, spec, live=live, persistent=persistent)
    else:
        res = vif.plug(guest, spec, live=live, persistent=persistent, replug=replug)
    main = CONFIG if CONFIG in res["after"] else LIVE
    result = {
        "changed": res["changed"],
        "actions": res["actions"],
        "pending_restart": res["pending_restart"],
        "interface": describe(res["after"].get(main)),
        "xml": {LIVE: res["after"].get(LIVE), CONFIG: res["after"].get(CONFIG)},
    }
    if diff:
        result["diff"] = [xmlutil.diff_result(res["before"][w], res["after"][w],
                                              "%s interface (%s)" % (domain, "persistent" if w == CONFIG else w))
                          for w in (CONFIG, LIVE) if w in res["after"]]
    return result


# the blueprint's name for it
LibvirtBaseVIFDriver = LibvirtVIFDriver
