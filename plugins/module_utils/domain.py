# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decision logic of the ``domain`` module: desired vs current, a plan, then act.

No Ansible import: ``converge(host, request)`` takes plain values and returns
the module's result dict, so unit tests drive it against ``test:///default``.
Check mode is honoured at the lowest mutating call (``plan.Plan.act``, shared
with the other changing modules): every action is recorded the same way, and
only executed when not checking.

Idempotency is semantic, never textual:

* spec path: ``guest.spec_differences(spec, guest.parse_domain_xml(inactive))``,
  over the fields the user gave.
* xml path (``xml_differences``): every element, attribute and text the user
  wrote must be in libvirt's inactive XML with the same value (memory units
  scaled, machine aliases such as ``pc`` resolved, MACs case-insensitive);
  what libvirt adds inside an element the user wrote is a default, not a
  change. At the two list levels (children of ``<domain>`` and of
  ``<devices>``) anything libvirt holds that the user did not write is a
  change (a removed disk), except what libvirt adds on its own:
  ``LIBVIRT_ADDED_TOP`` and ``LIBVIRT_ADDED_DEVICES``. The order of devices
  of one kind is not compared.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils import guest as guest_mod
from ansible_collections.hypervisor.libvirt.plugins.module_utils import vif as vif_mod
from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import validate_spec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.plan import Plan, difference
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    HypervisorError,
    InvalidSpec,
    NotFound,
    OperationFailed,
    Timeout,
)

STATES = ("present", "running", "paused", "shutdown", "destroyed", "absent")

# Children of <domain> libvirt writes itself when the user did not.
LIBVIRT_ADDED_TOP = frozenset({
    "uuid", "currentMemory", "cpu", "clock", "on_poweroff", "on_reboot", "on_crash", "pm",
    "resource", "seclabel", "keywrap", "genid", "vcpus",
})
# Children of <devices> libvirt adds on its own (implicit controllers, inputs, the
# console that mirrors a serial port, balloon, audio and video that go with graphics).
LIBVIRT_ADDED_DEVICES = frozenset({
    "emulator", "controller", "input", "audio", "memballoon", "console", "video",
})

_UNITS = {
    "b": 1, "bytes": 1, "kb": 1000, "k": 1024, "kib": 1024, "mb": 1000 ** 2, "m": 1024 ** 2,
    "mib": 1024 ** 2, "gb": 1000 ** 3, "g": 1024 ** 3, "gib": 1024 ** 3, "tb": 1000 ** 4,
    "t": 1024 ** 4, "tib": 1024 ** 4,
}
# Elements whose text is a scaled integer (libvirt's default unit: KiB).
_SCALED = frozenset({"memory", "currentMemory", "maxMemory", "size", "requested", "current",
                     "hard_limit", "soft_limit", "swap_hard_limit", "min_guarantee"})


class DomainRequest:
    """What the user asked for, as plain values (the module's parameters)."""

    def __init__(self, name: str | None = None, spec: dict[str, Any] | None = None, xml: str | None = None,
                 state: str = "present", autostart: bool | None = None, shutdown_timeout: float = 120,
                 force: bool = False, restart_on_change: bool = False, remove_storage: bool = False,
                 keep_nvram: bool = True, remove_managed_save: bool = False,
                 remove_snapshots_metadata: bool = False, remove_files: list[str] | None = None,
                 remove_files_under: str | None = None) -> None:
        if state not in STATES:
            raise InvalidSpec("state", "must be one of %s, got %r" % (", ".join(STATES), state))
        if spec is not None and xml is not None:
            raise InvalidSpec("spec", "give spec or xml, not both")
        self.name = name
        self.spec = spec
        self.xml = xml
        self.state = state
        self.autostart = autostart
        self.shutdown_timeout = shutdown_timeout
        self.force = force
        self.restart_on_change = restart_on_change
        self.remove_storage = remove_storage
        self.keep_nvram = keep_nvram
        self.remove_managed_save = remove_managed_save
        self.remove_snapshots_metadata = remove_snapshots_metadata
        self.remove_files = list(remove_files or [])
        self.remove_files_under = remove_files_under
        for i, path in enumerate(self.remove_files):
            if not isinstance(path, str) or not os.path.isabs(path):
                raise InvalidSpec("remove_files[%d]" % i, "%r is not an absolute path" % (path,))
        if remove_files_under is not None and not os.path.isabs(remove_files_under):
            raise InvalidSpec("remove_files_under", "%r is not an absolute path" % (remove_files_under,))
        if self.remove_files and state != "absent":
            raise InvalidSpec("remove_files", "only applies to state absent")


# ---------------------------------------------------------------------- XML comparison
def _scaled(text: str | None, unit: str | None) -> int | None:
    try:
        return int(text.strip()) * _UNITS[(unit or "KiB").lower()]  # type: ignore[union-attr]
    except (AttributeError, KeyError, ValueError):
        return None


def machine_aliases(host: Any) -> dict[str, str]:
    """Alias -> canonical machine type from the host's capabilities (``pc`` -> ``pc-i440fx-7.2``)."""
    try:
        caps = host.get_capabilities()
    except HypervisorError:
        return {}
    aliases = {}
    for m in caps.iter("machine"):
        if m.get("canonical") and m.text:
            aliases[m.text.strip()] = m.get("canonical")
    return aliases


def _attr_equal(tag: str, key: str, want: str, have: str | None, aliases: dict[str, str]) -> bool:
    if have is None:
        return False
    if want == have:
        return True
    if key == "machine" and aliases.get(want) == have:
        return True
    if tag == "mac" and key == "address":
        return want.lower() == have.lower()
    return False


def _children(el: Any) -> list[Any]:
    return [c for c in el if isinstance(c.tag, str)]


_diff = difference


_SECRET_KEY_RE = re.compile(r"passw(or)?d", re.I)
_SECRET_ATTR_RE = re.compile(r"(passwd=)\S+")


def _redact_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: xmlutil.REDACTED if _SECRET_KEY_RE.search(str(k)) and v is not None else _redact_value(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    if isinstance(value, str):
        return _SECRET_ATTR_RE.sub(r"\g<1>" + xmlutil.REDACTED, value)
    return value


def secret_values(spec: Any = None, xml: str | None = None) -> set[str]:
    """The secrets a request carries (graphics passwords), for the module to mask in everything it logs."""
    out: set[str] = set()
    graphics = spec.get("graphics") if isinstance(spec, dict) else None
    for g in [graphics] if isinstance(graphics, dict) else graphics if isinstance(graphics, list) else []:
        if isinstance(g, dict) and g.get("password") not in (None, ""):
            out.add(str(g["password"]))
    if isinstance(xml, str) and "passwd" in xml:
        try:
            root = xmlutil.parse(xml)
        except InvalidSpec:
            return out
        out.update(n.get(a) for n in root.iter() if isinstance(n.tag, str)
                   for a in xmlutil.SECRET_ATTRIBUTES if n.get(a))
    return out


def redact_difference(record: dict[str, Any]) -> dict[str, Any]:
    """A difference record safe to print: passwords (``graphics[0].password``, ``@passwd``) masked."""
    if _SECRET_KEY_RE.search(record.get("path", "")):
        return dict(record, before=None if record["before"] is None else xmlutil.REDACTED,
                    after=None if record["after"] is None else xmlutil.REDACTED)
    return dict(record, before=_redact_value(record["before"]), after=_redact_value(record["after"]))


def _brief(el: Any) -> str:
    """One line naming an element for a difference record (``<disk type=file> vda``)."""
    target = el.find("target")
    source = el.find("source")
    bits = [el.tag] + ["%s=%s" % kv for kv in sorted(el.attrib.items())]
    if target is not None and target.get("dev"):
        bits.append("target=%s" % target.get("dev"))
    if source is not None and source.attrib:
        bits.append("source=%s" % ",".join(sorted(source.attrib.values())))
    return " ".join(bits)


def _compare(want: Any, have: Any, path: str, aliases: dict[str, str], extras: frozenset | None,
             out: list[dict[str, Any]]) -> None:
    """Record how ``have`` fails to hold what ``want`` says; ``extras`` (when not None) are tags
    libvirt may add at this level, every other unmatched child of ``have`` is a difference."""
    scaled = want.tag in _SCALED and (want.text or "").strip()
    for key, value in want.attrib.items():
        if key == "unit" and scaled:
            continue
        if not _attr_equal(want.tag, key, value, have.get(key), aliases):
            out.append(_diff("%s@%s" % (path, key), have.get(key), value))
    wtext = (want.text or "").strip()
    if wtext:
        htext = (have.text or "").strip()
        if scaled:
            if _scaled(wtext, want.get("unit")) != _scaled(htext, have.get("unit")):
                out.append(_diff(path, "%s %s" % (htext, have.get("unit", "KiB")),
                                 "%s %s" % (wtext, want.get("unit", "KiB"))))
        elif wtext != htext:
            out.append(_diff(path, htext or None, wtext))
    have_children = _children(have)
    used: set[int] = set()
    pending: list[tuple[str, Any]] = []
    counts: dict[str, int] = {}
    totals: dict[str, int] = {}
    for wc in _children(want):
        totals[wc.tag] = totals.get(wc.tag, 0) + 1
    # first pass: a child of have that holds everything the wanted child says
    for wc in _children(want):
        counts[wc.tag] = counts.get(wc.tag, 0) + 1
        step = "%s[%d]" % (wc.tag, counts[wc.tag]) if totals[wc.tag] > 1 else wc.tag
        cpath = "%s/%s" % (path, step) if path else step
        for i, hc in enumerate(have_children):
            if i not in used and hc.tag == wc.tag and not _subdiff(wc, hc, aliases):
                used.add(i)
                break
        else:
            pending.append((cpath, wc))
    # second pass: pair what is left with the next unused child of the same tag, report why it differs
    for cpath, wc in pending:
        for i, hc in enumerate(have_children):
            if i not in used and hc.tag == wc.tag:
                used.add(i)
                _compare(wc, hc, cpath, aliases, None, out)
                break
        else:
            out.append(_diff(cpath, None, _brief(wc)))
    if extras is not None:
        for i, hc in enumerate(have_children):
            if i not in used and hc.tag not in extras and (hc.tag != "devices"):
                out.append(_diff("%s/%s" % (path, hc.tag) if path else hc.tag, _brief(hc), None))


def _subdiff(want: Any, have: Any, aliases: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    _compare(want, have, "", aliases, None, out)
    return out


def xml_differences(desired: Any, current: Any, aliases: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Differences between the user's domain XML and libvirt's, by the rule in this file's docstring."""
    desired = xmlutil.parse(desired) if isinstance(desired, (str, bytes)) else desired
    current = xmlutil.parse(current) if isinstance(current, (str, bytes)) else current
    aliases = aliases or {}
    out: list[dict[str, Any]] = []
    # top level: domain attributes, text children, and the list semantics
    top_want = etree.Element(desired.tag, dict(desired.attrib))
    top_want.extend([etree.fromstring(etree.tostring(c)) for c in _children(desired) if c.tag != "devices"])
    _compare(top_want, current, "", aliases, LIBVIRT_ADDED_TOP, out)
    want_dev = desired.find("devices")
    have_dev = current.find("devices")
    if want_dev is None:
        want_dev = etree.Element("devices")
    if have_dev is None:
        have_dev = etree.Element("devices")
    _compare(want_dev, have_dev, "devices", aliases, LIBVIRT_ADDED_DEVICES, out)
    return out


# ---------------------------------------------------------------------- desired definition
class _Desired:
    """The definition the user wants: an XML element, and the spec when given as one."""

    def __init__(self, name: str, element: Any, spec: dict[str, Any] | None,
                 given: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.element = element
        self.spec = spec
        self.given = given  # the spec keys the user named: a redefinition replaces only these

    @property
    def uuid(self) -> str | None:
        text = self.element.findtext("uuid")
        return text.strip().lower() if text else None


def _desired(host: Any, req: DomainRequest) -> _Desired | None:
    """Validate the user's spec or XML before anything is touched; None when neither was given."""
    if req.spec is not None:
        spec = dict(req.spec)
        if spec.get("name") is None:
            if not req.name:
                raise InvalidSpec("name", "give name, or spec.name")
            spec["name"] = req.name
        elif req.name and spec["name"] != req.name:
            raise InvalidSpec("spec.name", "is %r but name is %r; they must agree" % (spec["name"], req.name))
        spec = validate_spec(spec)
        machine = spec.get("os", {}).get("machine")
        if machine:
            # libvirt stores the canonical machine (pc -> pc-i440fx-7.2): compare against that
            canonical = machine_aliases(host).get(machine)
            if canonical:
                spec = dict(spec, os=dict(spec["os"], machine=canonical))
        element = guest_mod.guest_config(spec, host)
        xmlutil.validate(element, "domain", "spec")
        given = set(req.spec) | {"name"}
        if spec.get("cpu", {}).get("topology"):
            given.add("vcpus")  # derived from the topology when not given
        return _Desired(spec["name"], element, spec, frozenset(given))
    if req.xml is not None:
        element = xmlutil.parse(req.xml, "xml")
        if element.tag != "domain":
            raise InvalidSpec("xml", "the root element must be <domain>, not <%s>" % element.tag)
        name = (element.findtext("name") or "").strip()
        if not name:
            if not req.name:
                raise InvalidSpec("xml", "has no <name> and no name was given")
            el = etree.Element("name")
            el.text = req.name
            element.insert(0, el)
            name = req.name
        elif req.name and name != req.name:
            raise InvalidSpec("name", "is %r but the XML's <name> is %r; they must agree" % (req.name, name))
        xmlutil.validate(element, "domain", "xml")
        return _Desired(name, element, None)
    return None


def _carry_identity(element: Any, current: Any) -> None:
    """Keep the existing domain's UUID and its NICs' MACs in a redefinition the user left them out of."""
    if element.find("uuid") is None and current.find("uuid") is not None:
        el = etree.Element("uuid")
        el.text = current.findtext("uuid")
        name = element.find("name")
        element.insert(list(element).index(name) + 1 if name is not None else 0, el)
    have = current.findall("devices/interface")
    used: set[int] = set()
    for iface in element.findall("devices/interface"):
        mac = iface.find("mac")
        if mac is not None and mac.get("address"):
            for i, h in enumerate(have):
                if h.find("mac") is not None and h.find("mac").get("address", "").lower() == \
                        mac.get("address").lower():
                    used.add(i)
    for iface in element.findall("devices/interface"):
        if iface.find("mac") is not None:
            continue
        for i, h in enumerate(have):
            if i in used or h.get("type") != iface.get("type") or h.find("mac") is None:
                continue
            src_w, src_h = iface.find("source"), h.find("source")
            if (src_w is None) != (src_h is None) or (
                    src_w is not None and any(src_h.get(k) != v for k, v in src_w.attrib.items())):
                continue
            used.add(i)
            mac = etree.Element("mac", address=h.find("mac").get("address"))
            iface.insert(0, mac)
            break


# ---------------------------------------------------------------------- the plan
class _Conflict(Exception):
    """Someone else defined the same domain between our read and our write: start over."""


_Plan = Plan  # the shared recorder (plan.py): act unless in check mode


_ACTIVE = ("running", "blocked", "paused", "pmsuspended", "crashed", "shutdown", "nostate")


def _run_state(state: str) -> str:
    """Collapse libvirt's states into what ``state:`` speaks of."""
    if state in ("running", "blocked"):
        return "running"
    if state in ("paused", "pmsuspended"):
        return "paused"
    if state in ("shutoff",):
        return "shutoff"
    return state


class _Converger:
    """One converge attempt; re-created from scratch after a conflict."""

    def __init__(self, host: Any, req: DomainRequest, desired: _Desired | None, check_mode: bool) -> None:
        self.host = host
        self.req = req
        self.desired = desired
        self.name = desired.name if desired else req.name
        self.plan = _Plan(host, check_mode)
        self.check_mode = check_mode
        self.guest: Any = None
        self.state = "absent"          # predicted (check mode) or real state, in _run_state terms
        self.aliases: dict[str, str] | None = None

    # -- reading
    def _lookup(self) -> Any:
        try:
            return self.host.get_guest(name=self.name)
        except NotFound:
            return None

    def _aliases(self) -> dict[str, str]:
        if self.aliases is None:
            self.aliases = machine_aliases(self.host)
        return self.aliases

    def _differences(self, xml: str) -> list[dict[str, Any]]:
        """What the user asked for that ``xml`` (libvirt's) does not hold."""
        if self.desired is None:
            raise HypervisorError("no desired definition to compare with")
        if self.desired.spec is not None:
            # over the keys the user named (and vcpus derived from a topology); a key validation adds
            # on its own (features.smm for secure boot) is ensured by merge_definition, not compared whole
            wanted = {k: v for k, v in self.desired.spec.items() if k in self.desired.given}
            diffs = guest_mod.spec_differences(wanted, guest_mod.parse_domain_xml(xml))
            # an empty list or dict asked for is what libvirt has when it has none of them
            return [d for d in diffs if not (d["before"] in (None, [], {}) and d["after"] in (None, [], {}))]
        return xml_differences(self.desired.element, xmlutil.parse(xml), self._aliases())

    def _real_state(self) -> str:
        try:
            return _run_state(self.guest.get_state()) if self.guest is not None else "absent"
        except NotFound:
            return "absent"

    def _settled(self, *states: str) -> Callable[[], bool]:
        return lambda: self._real_state() in states

    # -- the steps
    def run(self) -> dict[str, Any]:
        req = self.req
        if not self.name:
            raise InvalidSpec("name", "give name (or a spec/xml that names the domain)")
        self.guest = self._lookup()
        self._check_uuid()
        # secure XML: graphics passwords are compared and kept by a redefinition (outputs are redacted below)
        before_xml = self.guest.get_xml_desc(inactive=True, secure=True) if self.guest is not None else None
        self.state = self._real_state()
        result: dict[str, Any] = {"differences": [], "pending_restart": False}
        if req.state == "absent":
            self._absent(result)
            after_xml = None
        else:
            if self.guest is None and self.desired is None:
                raise NotFound("domain '%s' does not exist on %s; give spec or xml to define it"
                               % (self.name, self.host.uri), uri=self.host.uri)
            after_xml = self._define(before_xml, result)
            self._autostart()
            self._lifecycle(result)
            if not self.check_mode and self.guest is not None:
                after_xml = self.guest.get_xml_desc(inactive=True, secure=True)
                self.state = self._real_state()
        changed = bool(self.plan.actions)
        before_xml, after_xml = xmlutil.redact(before_xml), xmlutil.redact(after_xml)
        result["differences"] = [redact_difference(d) for d in result["differences"]]
        result.update({
            "changed": changed,
            "actions": list(self.plan.actions),
            "state": self.state,
            "xml": after_xml or "",
            "uuid": self.guest.uuid if self.guest is not None and self.state != "absent"
            else (self.desired.uuid if self.desired and self.state != "absent" else None),
            "diff": xmlutil.diff_result(before_xml, after_xml, "%s.xml" % self.name),
        })
        return result

    def _check_uuid(self) -> None:
        """A UUID in the definition must not belong to another domain, nor replace this one's."""
        if self.desired is None or self.desired.uuid is None:
            return
        if self.guest is not None:
            if self.guest.uuid.lower() != self.desired.uuid:
                raise InvalidSpec("uuid", "domain '%s' exists with UUID %s, not %s; a domain's UUID cannot "
                                  "change (remove the domain first)" % (self.name, self.guest.uuid, self.desired.uuid))
            return
        try:
            other = self.host.get_guest(uuid=self.desired.uuid)
        except NotFound:
            return
        raise InvalidSpec("uuid", "%s belongs to domain '%s' on %s, not to '%s'"
                          % (self.desired.uuid, other.name, self.host.uri, self.name))

    def _define(self, before_xml: str | None, result: dict[str, Any]) -> str | None:
        """Define or redefine when the definition differs; returns the predicted inactive XML."""
        if self.desired is None:
            return before_xml
        element = etree.fromstring(etree.tostring(self.desired.element))
        if before_xml is not None:
            differences = self._differences(before_xml)
            if not differences:
                return before_xml
            current = xmlutil.parse(before_xml)
            if self.desired.spec is not None:
                # keys the spec leaves out keep what libvirt holds; raw XML is the whole definition
                element = guest_mod.merge_definition(current, element, self.desired.given)
            _carry_identity(element, current)
        else:
            differences = [_diff("", None, "defined")]
        result["differences"] = differences
        self._check_references(element)
        xml = xmlutil.to_string(element)

        def define() -> None:
            try:
                self.guest = self.host.write_instance_config(xml)
            except OperationFailed as exc:
                # another client defined the same name (with its own UUID) since we looked
                if "already exists" in str(exc) or "already defined" in str(exc):
                    raise _Conflict(str(exc))
                raise
        self.plan.act("define", define)
        if self.state == "absent":
            self.state = "shutoff"
        return xml

    def _check_references(self, element: Any) -> None:
        """Before a (re)definition: the networks and nwfilters it names exist, and, when the domain is to
        run on this machine, the files it boots from - so a start cannot fail half-way after the define."""
        spec = self.desired.spec if self.desired is not None else None
        self._check_host_support(element, "spec" if spec is not None else "xml")
        if spec is None:
            return
        vif = vif_mod.LibvirtVIFDriver(self.host)
        for i, iface in enumerate(spec.get("interfaces", [])):
            vif.check_references(iface, "spec.interfaces[%d]" % i)
        if self.req.state not in ("running", "paused") or not self.host.is_local() or self.host.uri.startswith("test:"):
            return  # the test driver never opens a file
        user_disks = (self.req.spec or {}).get("disks", [])
        for key in ("kernel", "initrd", "dtb"):
            path = element.findtext("os/" + key)
            if path and not os.path.exists(path):
                raise InvalidSpec("spec.os.%s" % key, "%s does not exist, so the domain could not start" % path)
        for i, iface in enumerate(spec.get("interfaces", [])):
            bridge = iface.get("source") if iface.get("type") == "bridge" else None
            if isinstance(bridge, str) and not os.path.isdir(os.path.join("/sys/class/net", bridge)):
                raise InvalidSpec("spec.interfaces[%d].source" % i, "bridge %s does not exist on this host, so the "
                                  "domain could not start" % bridge)
        for kind in ("serial", "console", "parallel", "channel"):
            for j, dev in enumerate(element.findall("devices/" + kind)):
                paths = [dev.find("log").get("file")] if dev.find("log") is not None and dev.find("log").get("file") else []
                if dev.get("type") == "file" and dev.find("source") is not None and dev.find("source").get("path"):
                    paths.append(dev.find("source").get("path"))
                for path in paths:
                    if not os.path.isdir(os.path.dirname(path) or "/"):
                        raise InvalidSpec("spec.%ss[%d]" % (kind, j), "the directory of %s does not exist, so the "
                                          "domain could not start" % path)
        for disk in element.findall("devices/disk[@type='file']/source[@file]"):
            path = disk.get("file")
            if not os.path.exists(path):
                index = next((i for i, d in enumerate(user_disks) if isinstance(d, dict) and d.get("source") == path),
                             None)
                where = "spec.disks[%d].source" % index if index is not None else "spec.disks"
                raise InvalidSpec(where, "%s does not exist, so the domain could not start" % path)

    def _check_host_support(self, element: Any, where: str) -> None:
        """The hypervisor has what the definition needs of it that a package brings, so a missing one is
        an error naming the key before the define, not a libvirt error when the domain starts. UEFI
        firmware is read from libvirt's domain capabilities (also over a remote URI); swtpm, which
        libvirt 9.0 looks for only when a domain starts, is looked for on a local URI when the domain
        is to run."""
        wants_tpm = element.find("devices/tpm/backend[@type='emulator']") is not None
        wants_efi = element.find("os[@firmware='efi']") is not None
        if not (wants_tpm or wants_efi) or self.host.uri.startswith("test:"):
            return
        if wants_efi:
            os_type = element.find("os/type")
            caps = self.host.get_domain_capabilities(element.get("type"),
                                                     os_type.get("arch") if os_type is not None else None)
            if not caps.xpath("os[@supported='yes']/enum[@name='firmware']/value[text()='efi']"):
                raise InvalidSpec(where + ".os.firmware", "this hypervisor has no UEFI firmware for efi (install ovmf "
                                  "there, as the hypervisor role does)")
        if wants_tpm and self.req.state in ("running", "paused") and self.host.is_local():
            missing = [tool for tool in ("swtpm", "swtpm_setup") if shutil.which(tool) is None]
            if missing:
                raise InvalidSpec(where + ".tpm", "an emulated TPM needs swtpm, and %s is not installed here, so the "
                                  "domain could not start (install swtpm and swtpm-tools, as the hypervisor role does)"
                                  % " and ".join(missing))

    def _autostart(self) -> None:
        want = self.req.autostart
        if want is None:
            return
        have = self.guest.get_autostart() if self.guest is not None else False
        if have != want:
            self.plan.act("autostart" if want else "no_autostart", lambda: self.guest.set_autostart(want))

    def _pending_restart(self) -> bool:
        """The running domain's live config differs from what the user asked for."""
        if self.desired is None or self.guest is None or self.state not in ("running", "paused"):
            return False
        return bool(self._differences(self.guest.get_xml_desc(inactive=False, secure=True)))

    def _lifecycle(self, result: dict[str, Any]) -> None:
        want = self.req.state
        if self.state in _ACTIVE and self.state not in ("running", "paused"):
            self.state = _run_state(self.state)
        pending = self._pending_restart()
        if pending and self.req.restart_on_change and want in ("present", "running", "paused"):
            was = self.state
            self._shutdown()
            self._start(paused=(want == "paused" or (want == "present" and was == "paused")))
            pending = False
        if want == "running":
            if self.state == "shutoff":
                self._start(paused=False)
            elif self.state == "paused":
                self.plan.act("resume", lambda: self.guest.resume(), self._settled("running"))  # pylint: disable=unnecessary-lambda
                self.state = "running"
        elif want == "paused":
            if self.state == "shutoff":
                self._start(paused=True)
            elif self.state == "running":
                self.plan.act("pause", lambda: self.guest.pause(), self._settled("paused"))  # pylint: disable=unnecessary-lambda
                self.state = "paused"
        elif want == "shutdown":
            if self.state in ("running", "paused"):
                self._shutdown()
        elif want == "destroyed":
            if self.state not in ("shutoff", "absent"):
                self.plan.act("destroy", lambda: self.guest.poweroff(), self._settled("shutoff"))  # pylint: disable=unnecessary-lambda
                self.state = "shutoff"
        if not self.check_mode and self.state in ("running", "paused"):
            pending = self._pending_restart()
        result["pending_restart"] = pending

    def _start(self, paused: bool) -> None:
        self.plan.act("start_paused" if paused else "start", lambda: self.guest.launch(pause=paused),
                      self._settled("paused" if paused else "running"))
        self.state = "paused" if paused else "running"

    def _shutdown(self) -> None:
        """ACPI shutdown, wait for the stopped event; power off after the timeout only with force."""
        if self.state == "paused":
            # a paused guest cannot see the power button
            self.plan.act("resume", lambda: self.guest.resume(), self._settled("running"))  # pylint: disable=unnecessary-lambda
        timeout = self.req.shutdown_timeout

        def shutdown() -> None:
            self.guest.shutdown()
            try:
                self.host.wait_for_lifecycle(self.guest, ["shutoff", "undefined"], timeout)
            except Timeout:
                if not self.req.force:
                    raise Timeout("domain '%s' on %s did not shut down within %gs after the ACPI power button; "
                                  "raise shutdown_timeout, check the guest handles ACPI, or set force: true to "
                                  "power it off" % (self.name, self.host.uri, timeout), uri=self.host.uri)
                self.plan.actions.append("destroy")
                try:
                    self.guest.poweroff()
                except OperationFailed:
                    if self._real_state() != "shutoff":
                        raise
        self.plan.act("shutdown", shutdown, self._settled("shutoff"))
        self.state = "shutoff"

    def _absent(self, result: dict[str, Any]) -> None:
        result["removed_storage"] = []
        if self.guest is None:
            self._remove_files(result, [])
            return
        req = self.req
        storage = self._storage_to_remove() if req.remove_storage else []
        if self.state not in ("shutoff", "absent"):
            if not req.force:
                raise OperationFailed("domain '%s' on %s is %s; it is removed only with force: true (or stop it "
                                      "first with state: shutdown)" % (self.name, self.host.uri, self.state),
                                      uri=self.host.uri)
            self.plan.act("destroy", lambda: self.guest.poweroff(), self._settled("shutoff", "absent"))  # pylint: disable=unnecessary-lambda
        if not req.remove_managed_save and self.guest.has_managed_save():
            raise OperationFailed("domain '%s' on %s has a managed save image; set remove_managed_save: true to "
                                  "remove it with the domain" % (self.name, self.host.uri), uri=self.host.uri)
        if not req.remove_snapshots_metadata and self.guest.snapshot_count():
            raise OperationFailed("domain '%s' on %s has snapshots; set remove_snapshots_metadata: true to remove "
                                  "their metadata with the domain" % (self.name, self.host.uri), uri=self.host.uri)
        self.plan.act("undefine", lambda: self.guest.delete_configuration(
            keep_nvram=req.keep_nvram, remove_managed_save=req.remove_managed_save,
            remove_snapshots_metadata=req.remove_snapshots_metadata), self._settled("absent"))
        self.state = "absent"
        removed, failed = [], []
        for path in storage:
            try:
                self.plan.act("remove_storage", lambda p=path: _remove_file(self.host, p))
                removed.append(path)
            except HypervisorError as exc:
                failed.append(str(exc))  # carry on: the other files go all the same
        if "remove_storage" in self.plan.actions:
            # one entry per domain, however many files
            self.plan.actions = [a for a in self.plan.actions if a != "remove_storage"] + ["remove_storage"]
        result["removed_storage"] = removed
        self._remove_files(result, failed)
        if failed:
            raise OperationFailed("domain '%s' on %s was undefined%s, but %s" % (
                self.name, self.host.uri, " and %s removed" % ", ".join(removed) if removed else "",
                "; ".join(failed)), uri=self.host.uri)

    def _remove_files(self, result: dict[str, Any], failed: list[str]) -> None:
        """``remove_files``: the regular files among them (under ``remove_files_under``) that no domain
        uses, then the directories among them that are empty by then; anything else stays."""
        req = self.req
        if not req.remove_files:
            return
        if not self.host.is_local():
            raise InvalidSpec("remove_files", "only applies to a local URI, not %s" % self.host.uri)
        under = os.path.realpath(req.remove_files_under) if req.remove_files_under else None
        users = _StorageUse(self.host)
        for g in self.host.list_guests():
            if self.guest is not None and g.uuid == self.guest.uuid:
                continue  # being removed (still listed in check mode)
            try:
                users.add_domain(g)
            except NotFound:
                continue
        files, dirs = [], []
        for path in req.remove_files:
            real_parent = os.path.realpath(os.path.dirname(path))
            if under is not None and not (real_parent == under or real_parent.startswith(under + os.sep)
                                          or os.path.realpath(path) == under):
                continue  # outside the directory named: never removed
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and not users.uses(path):
                files.append(path)
            elif stat.S_ISDIR(st.st_mode):
                dirs.append(path)
        removed = result["removed_storage"]
        for path in files:
            try:
                self.plan.act("remove_files", lambda p=path: _remove_file(self.host, p))
                removed.append(path)
            except HypervisorError as exc:
                failed.append(str(exc))
        gone = set(files)
        for path in sorted(dirs, key=len, reverse=True):  # the deepest first
            try:
                left = [e for e in os.listdir(path) if os.path.join(path, e) not in gone]
            except OSError:
                continue
            if left:
                continue
            try:
                self.plan.act("remove_files", lambda p=path: _rmdir(p))
                removed.append(path)
                gone.add(path)
            except HypervisorError as exc:
                failed.append(str(exc))
        if "remove_files" in self.plan.actions:
            self.plan.actions = [a for a in self.plan.actions if a != "remove_files"] + ["remove_files"]
        if failed and self.guest is None:
            raise OperationFailed("; ".join(failed), uri=self.host.uri)

    def _storage_to_remove(self) -> list[str]:
        """This domain's writable file disks that exist and that no other domain uses, as a disk or
        in a disk's backing chain (decided on the real file: device and inode, on a local URI)."""
        mine = _writable_file_disks(xmlutil.parse(self.guest.get_xml_desc(inactive=True)))
        if not mine:
            return []
        if self.host.is_local():
            mine = [(p, f) for p, f in mine if _is_image(p, f)]
        others = _StorageUse(self.host)
        for g in self.host.list_guests():
            if g.uuid == self.guest.uuid:
                continue
            try:
                others.add_domain(g)
            except NotFound:
                continue
        return [p for p, _f in mine if not others.uses(p) and _file_exists(self.host, p)]


def _writable_file_disks(root: Any) -> list[tuple[str, str | None]]:
    """(file, driver type) of a domain's writable, unshared ``type='file'`` disks (no cdrom, no floppy)."""
    mine = []
    for disk in root.findall("devices/disk"):
        src = disk.find("source")
        if (disk.get("type") != "file" or disk.get("device", "disk") != "disk" or src is None
                or not src.get("file") or disk.find("readonly") is not None
                or disk.find("shareable") is not None):
            continue
        driver = disk.find("driver")
        mine.append((src.get("file"), driver.get("type") if driver is not None else None))
    return mine


def _is_image(path: str, fmt: str | None) -> bool:
    """A regular file that is a disk image of the disk's format (qemu-img's probe), not some other file
    named as a disk: a qcow2 disk must hold a qcow2 image, a raw one whole 512-byte sectors."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    info = _qemu_img_info(path)
    found = info.get("format") if isinstance(info, dict) else None
    want = fmt or "raw"
    if found != want:
        return False
    return want != "raw" or st.st_size % 512 == 0


def file_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the real file behind ``path`` (symlinks and ``/./`` resolved); None if absent."""
    try:
        st = os.stat(os.path.realpath(path))
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _qemu_img_info(path: str, backing_chain: bool = False) -> Any:
    """``qemu-img info`` as JSON (an argv list, ``--`` before the path); None when it cannot tell."""
    argv = ["qemu-img", "info", "-U", "--output=json"] + (["--backing-chain"] if backing_chain else []) + ["--", path]
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def backing_chain(path: str) -> list[str]:
    """The files an image is backed by (``qemu-img info --backing-chain``), nearest first."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISBLK(st.st_mode):
        return []
    chain = _qemu_img_info(path, backing_chain=True)
    out = []
    for image in chain[1:] if isinstance(chain, list) else []:
        name = image.get("filename") if isinstance(image, dict) else None
        if isinstance(name, str) and name:
            out.append(name)
    return out


class _StorageUse:
    """Every file the domains added so far use: their disks' sources and the backing chains under them."""

    def __init__(self, host: Any) -> None:
        self.local = host.is_local()
        self.paths: set[str] = set()
        self.identities: set[tuple[int, int]] = set()

    def add_path(self, path: str) -> None:
        self.paths.add(path)
        self.paths.add(os.path.normpath(path))
        if not self.local:
            return
        ident = file_identity(path)
        if ident is None or ident in self.identities:
            return
        self.identities.add(ident)
        for below in backing_chain(path):
            self.add_path(below)

    def add_domain(self, guest: Any) -> None:
        xmls = [guest.get_xml_desc(inactive=True)]
        if guest.is_active():
            xmls.append(guest.get_xml_desc(inactive=False))  # its <backingStore> chains, as QEMU opened them
        for xml in xmls:
            for src in xmlutil.parse(xml).iterfind("devices/disk//source"):  # a disk's, and its <backingStore>s'
                for key in ("file", "dev"):
                    if src.get(key):
                        self.add_path(src.get(key))

    def uses(self, path: str) -> bool:
        if path in self.paths or os.path.normpath(path) in self.paths:
            return True
        if not self.local:
            return False
        ident = file_identity(path)
        return ident is not None and ident in self.identities


def _file_exists(host: Any, path: str) -> bool:
    """The path is one to remove: (local URI) a regular file, not a symlink nor a device; else a pool volume."""
    if host.is_local():
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except OSError:
            return False
    return _volume(host, path) is not None


def _remove_file(host: Any, path: str) -> None:
    """Delete through libvirt's storage pools when a pool holds the file, else (local URI) unlink
    it - only a regular file, never what a symlink or a device node points at."""
    if host.is_local():
        parent = os.path.dirname(path) or "."
        try:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OperationFailed("removing %s failed: %s" % (path, exc))
        try:
            try:
                st = os.lstat(os.path.basename(path), dir_fd=fd)
            except FileNotFoundError:
                return
            if not stat.S_ISREG(st.st_mode):
                raise OperationFailed("%s is not a regular file; it was not removed" % path)
            vol = _volume(host, path)
            if vol is not None:
                host.call("deleting volume %s" % path, lambda _c: vol.delete(0))
                return
            os.unlink(os.path.basename(path), dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OperationFailed("removing %s failed: %s" % (path, exc))
        finally:
            os.close(fd)
        return
    vol = _volume(host, path)
    if vol is None:
        raise OperationFailed("%s is in no storage pool of %s, so it cannot be removed remotely" % (path, host.uri))
    host.call("deleting volume %s" % path, lambda _c: vol.delete(0))


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OperationFailed("removing %s failed: %s" % (path, exc))


def _volume(host: Any, path: str) -> Any:
    try:
        return host.call("looking up volume %s" % path, lambda c: c.storageVolLookupByPath(path))
    except (NotFound, OperationFailed):
        return None


def converge(host: Any, req: DomainRequest, check_mode: bool = False) -> dict[str, Any]:
    """Bring the domain to what ``req`` asks; the module's result (changed, state, actions, diff…)."""
    desired = _desired(host, req)
    for attempt in (0, 1, 2):
        converger = _Converger(host, req, desired, check_mode)
        try:
            return converger.run()
        except HypervisorError as exc:
            done = converger.plan.done()
            if done:
                # say what was changed before the failure: the next run must not be read as "nothing happened"
                exc.msg = "%s (already done before this failure: %s)" % (exc, ", ".join(done))
                exc.args = (exc.msg,)
            raise
        except _Conflict as exc:
            if attempt == 2:
                raise OperationFailed("domain '%s' on %s kept changing under us: %s" % (
                    desired.name if desired else req.name, host.uri, exc), uri=host.uri)
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["DomainRequest", "converge", "secret_values", "redact_difference", "xml_differences", "machine_aliases", "STATES",
           "LIBVIRT_ADDED_TOP", "LIBVIRT_ADDED_DEVICES", "libvirt"]
