# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domain XML from a guest spec and back: the builders, the parser, the merge on redefine, the comparison.

Builders take a normalised spec (guest_spec.validate_spec) and return lxml
elements; they hold no policy beyond what the spec says, and host-dependent
defaults come only from a Host. ``parse_domain_xml`` reads a domain XML back
into the spec's terms, what the spec does not model under ``preserved``. No
Ansible import.
"""

from __future__ import annotations

import copy
from typing import Any

from ansible_collections.hypervisor.libvirt.plugins.module_utils import model as _model
from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil as _xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import HypervisorError as _HypervisorError, InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_model import (
    DEVICES,
    ELEMENTS,
    METADATA_NS,
    mib,
    put,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import SPEC, validate_spec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.schema import differences as schema_differences, scaled_kib


_el = _xmlutil.element
_sub = _xmlutil.sub


# ---------------------------------------------------------------- CPU


# ---------------------------------------------------------------- storage


# ---------------------------------------------------------------- sysinfo, os, features, clock


# ---------------------------------------------------------------- devices


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


def guest_config(spec: dict, host: Any = None, preserved: bool = True) -> Any:
    """The whole <domain> for a spec (the blueprint's _get_guest_config).

    With a ``host``, the domain type (kvm when the host offers it and KVM really
    runs guests there, else qemu), arch, machine type, emulator and UEFI loader
    come from its capabilities; a ``type`` in the spec always wins. Without a
    host nothing host-specific is written and libvirt fills it in at define
    time (type defaults to kvm). ``preserved=False`` leaves out what ``spec['preserved']`` holds (the spec's
    own elements only, for a merge into libvirt's definition); it still counts where the spec reads it (the
    memory devices that make up a NUMA guest's memory).
    """
    spec = validate_spec(spec)
    hd = _host_defaults(spec, host) if host is not None else {}
    dom = _el("domain", {"type": spec.get("type") or hd.get("type") or "kvm"})
    _sub(dom, "name", None, spec["name"])
    for kind in ELEMENTS:
        dom.extend(kind.build_all(spec, hd))
    devices = _sub(dom, "devices")
    if hd.get("emulator"):
        _sub(devices, "emulator", None, hd["emulator"])
    for kind in DEVICES:
        if kind.key in spec:
            devices.extend(kind.build_all(spec[kind.key]))
    if preserved and spec.get("preserved"):
        _model.overlay(dom, _model.from_text(spec["preserved"]))
        etree.cleanup_namespaces(dom)  # the residual's own namespace does not reach the domain
    return dom


# Which children of <domain> and of <devices> each spec key writes. Redefining an existing domain
# from a spec replaces exactly the elements of the keys the user gave and keeps everything else
# libvirt holds (merge_definition): a key left out is not managed, never reset.
SPEC_TOP_ELEMENTS: dict[str, tuple[str, ...]] = {kind.key: kind.tags for kind in ELEMENTS if kind.key != "metadata"}
SPEC_DEVICE_ELEMENTS: dict[str, tuple[str, ...]] = {kind.key: (kind.tag,) for kind in DEVICES}


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


def _identity(el: Any) -> tuple | None:
    """What identifies a device across a redefinition (a disk's target, a NIC's MAC, a host device's source)."""
    ident = _model.IDENTITY.get(el.tag) if isinstance(el.tag, str) else None
    value = ident(el) if ident is not None else None
    return (el.tag, value) if value is not None else None


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
            cur, old, new = scaled_kib(cur_mem), scaled_kib(old_mem), scaled_kib(new_mem)
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
        key = _identity(el)
        if key and el.find("address") is not None:
            addresses[key] = el.find("address")
    for key in sorted(given & set(SPEC_DEVICE_ELEMENTS)):
        _replace_children(devices, gen_devices, SPEC_DEVICE_ELEMENTS[key])
    for el in devices:
        key = _identity(el)
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


def parse_domain_xml(xml: Any) -> dict:
    """Read a domain XML (ours, or libvirt's XMLDesc with its additions) into the spec's terms.

    Only the fields the spec manages are read; what libvirt adds on its own
    (addresses, controllers, aliases, security labels) is left out, and what it
    fills in with defaults (MACs, UUID, memballoon) is read so that
    ``spec_differences`` can ignore it when the spec does not name it.
    """
    dom = _xmlutil.parse(xml, "domain XML") if isinstance(xml, (str, bytes)) else xml
    spec: dict[str, Any] = {"name": dom.findtext("name")}
    put(spec, "type", dom.get("type"))
    for kind in ELEMENTS:
        put(spec, kind.key, kind.parse(dom))
    if spec.get("cpu", {}).get("numa"):
        # with NUMA cells libvirt sets the memory from them and the memory devices, whatever <memory> says
        spec["memory"] = sum(c["memory"] for c in spec["cpu"]["numa"]) + sum(
            mib(size) for size in dom.findall("devices/memory/target/size"))
    if spec.get("current_memory", 0) > spec.get("memory", 0):
        spec["current_memory"] = spec["memory"]  # libvirt lowers a larger current memory to the memory
    devs = dom.find("devices")
    if devs is None:
        put(spec, "preserved", _preserved(dom, spec))
        return spec
    for kind in DEVICES:
        put(spec, kind.key, kind.parse_all(devs))
    put(spec, "preserved", _preserved(dom, spec))
    return spec


def _preserved(dom: Any, spec: dict) -> str | None:
    """What ``dom`` holds that building ``spec`` back does not give (``spec['preserved']``), as XML text."""
    numa = spec.get("cpu", {}).get("numa")
    if numa:
        # the memory devices that make up the rest of the memory are not known until this returns
        cells = sum(c["memory"] for c in numa)
        spec = dict(spec, memory=cells)
        if "current_memory" in spec:
            spec["current_memory"] = min(spec["current_memory"], cells)
    try:
        built = guest_config(spec)
    except InvalidSpec:
        return None
    res = _model.residual(dom, built)
    if res is not None:
        res.attrib.pop("id", None)  # a running domain's id: state, not definition
        if len(res) == 0 and set(res.attrib) <= {_model.ANCHOR}:
            return None
    return _model.to_text(res)


# ---------------------------------------------------------------- comparing


def spec_differences(desired: dict, current: dict) -> list[dict]:
    """Differences between a normalised desired spec and a parsed current one, over desired's keys only.

    By the guest spec's schema through ``schema.differences`` (the one spec comparison): dicts over the keys
    desired names (an interface without ``mac`` matches any MAC), maps whose keys the user chooses
    (``features``, ``cpu.features``, ``metadata``, ``vcpupin``, filter ``parameters``) as one value, lists of
    dicts item by item by identity, then position. An empty list means nothing to change.
    """
    consoles = desired.get("consoles")
    if consoles is not None and current.get("serials") and \
            not any(c.get("target_type", "serial") == "serial" for c in consoles):
        # libvirt always mirrors the first serial port as a serial console; asking for other
        # consoles (virtio) without serial ones does not ask that mirror away
        current = dict(current, consoles=[c for c in current.get("consoles", [])
                                          if c.get("target_type", "serial") != "serial"])
    # what the spec does not model is carried over from libvirt's definition on a redefine, not compared
    return schema_differences({k: v for k, v in desired.items() if k != "preserved"}, current, SPEC)
