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
import json as _json
from typing import Any

from ansible_collections.hypervisor.libvirt.plugins.module_utils import model as _model
from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil as _xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import HypervisorError as _HypervisorError, InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_model import DEVICES, onoff, put, yes
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import METADATA_NS, SPEC, validate_spec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.plan import difference
from ansible_collections.hypervisor.libvirt.plugins.module_utils.schema import Dict, Either, List, Map, scaled_kib

_SYSINFO_TAGS = {"bios": "bios", "system": "system", "base_board": "baseBoard", "chassis": "chassis"}


_el = _xmlutil.element
_sub = _xmlutil.sub


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
            _sub(numa, "cell", {"id": cell["id"], "cpus": cell.get("cpus"), "memory": cell["memory"],
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
            _sub(el, name, {"state": onoff(on)})
    return el


def clock_config(clock: dict) -> Any:
    """<clock> with its offset and timers."""
    el = _el("clock", {"offset": clock.get("offset", "utc"), "timezone": clock.get("timezone")})
    for timer in clock.get("timers", []):
        _sub(el, "timer", {"name": timer["name"], "tickpolicy": timer.get("tickpolicy"),
                           "present": timer.get("present")})
    return el


# ---------------------------------------------------------------- devices


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
    for kind in DEVICES:
        if kind.key in spec:
            devices.extend(kind.build_all(spec[kind.key]))
    if spec.get("preserved"):
        _model.overlay(dom, _model.from_text(spec["preserved"]))
        etree.cleanup_namespaces(dom)  # the residual's own namespace does not reach the domain
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

def _mib(el: Any, attr: str | None = None, unit_attr: str = "unit") -> int:
    return int(round(scaled_kib(el, attr, unit_attr) / 1024))


def _parse_cpu(el: Any) -> dict:
    cpu: dict[str, Any] = {}
    put(cpu, "mode", el.get("mode"))
    model = el.find("model")
    if model is not None and (model.text or "").strip():
        cpu["model"] = model.text.strip()
        put(cpu, "fallback", model.get("fallback"))
    if el.findtext("vendor"):
        cpu["vendor"] = el.findtext("vendor")
    topo = el.find("topology")
    if topo is not None:
        cpu["topology"] = {k: int(topo.get(k, 1)) for k in ("sockets", "dies", "cores", "threads")}
    put(cpu, "features", {f.get("name"): f.get("policy", "require") for f in el.findall("feature")})
    cells = []
    for index, cell in enumerate(el.findall("numa/cell")):
        c = {"memory": _mib(cell, "memory")}
        put(c, "cpus", cell.get("cpus"))
        # a cell without id is numbered by its place, as libvirt numbers it
        c["id"] = _model.c_int(cell.get("id")) if cell.get("id") is not None else index
        put(c, "mem_access", cell.get("memAccess"))
        cells.append(c)
    put(cpu, "numa", cells)
    if cpu.get("mode") == "custom" and "model" not in cpu:
        del cpu["mode"]  # libvirt writes mode='custom' for a bare topology
    return cpu


def _parse_os(el: Any) -> dict:
    os_spec: dict[str, Any] = {}
    typ = el.find("type")
    if typ is not None:
        put(os_spec, "arch", typ.get("arch"))
        put(os_spec, "machine", typ.get("machine"))
    loader = el.find("loader")
    if el.get("firmware") == "efi" or (loader is not None and loader.get("type") == "pflash"):
        os_spec["firmware"] = "efi"
    elif el.get("firmware") == "bios":
        os_spec["firmware"] = "bios"
    for feat in el.findall("firmware/feature"):
        if feat.get("name") == "secure-boot":
            os_spec["secure_boot"] = yes(feat.get("enabled"))
    if "secure_boot" not in os_spec and loader is not None and loader.get("secure"):
        os_spec["secure_boot"] = yes(loader.get("secure"))
    for key in ("kernel", "initrd", "cmdline"):
        if el.find(key) is not None:
            os_spec[key] = el.findtext(key) or ""
    put(os_spec, "boot", [b.get("dev") for b in el.findall("boot")])
    return os_spec


def parse_domain_xml(xml: Any) -> dict:
    """Read a domain XML (ours, or libvirt's XMLDesc with its additions) into the spec's terms.

    Only the fields the spec manages are read; what libvirt adds on its own
    (addresses, controllers, aliases, security labels) is left out, and what it
    fills in with defaults (MACs, UUID, memballoon) is read so that
    ``spec_differences`` can ignore it when the spec does not name it.
    """
    dom = _xmlutil.parse(xml, "domain XML") if isinstance(xml, (str, bytes)) else xml
    spec: dict[str, Any] = {"name": dom.findtext("name")}
    put(spec, "uuid", (dom.findtext("uuid") or "").lower() or None)
    put(spec, "type", dom.get("type"))
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
                put(p, "nodeset", page.get("nodeset"))
                pages.append(p)
            backing["hugepages"] = pages or True
        for flag in ("locked", "nosharepages"):
            if mb.find(flag) is not None:
                backing[flag] = True
        put(spec, "memory_backing", backing)
    vcpu = dom.find("vcpu")
    if vcpu is not None:
        spec["vcpus"] = int(vcpu.text)
    ct = dom.find("cputune")
    if ct is not None:
        cputune: dict[str, Any] = {}
        put(cputune, "vcpupin", {int(p.get("vcpu")): p.get("cpuset") for p in ct.findall("vcpupin")})
        ep = ct.find("emulatorpin")
        if ep is not None:
            cputune["emulatorpin"] = ep.get("cpuset")
        put(spec, "cputune", cputune)
    nt = dom.find("numatune")
    if nt is not None:
        numatune: dict[str, Any] = {}
        m = nt.find("memory")
        if m is not None:
            put(numatune, "mode", m.get("mode"))
            put(numatune, "nodeset", m.get("nodeset"))
        nodes = []
        for n in nt.findall("memnode"):
            node: dict[str, Any] = {"cellid": int(n.get("cellid")), "nodeset": n.get("nodeset")}
            put(node, "mode", n.get("mode"))
            nodes.append(node)
        put(numatune, "memnodes", nodes)
        put(spec, "numatune", numatune)
    si = dom.find("sysinfo")
    if si is not None and si.get("type", "smbios") == "smbios":
        sysinfo: dict[str, Any] = {}
        for key, tag in _SYSINFO_TAGS.items():
            sec = si.find(tag)
            if sec is not None:
                put(sysinfo, key, {e.get("name"): e.text or "" for e in sec.findall("entry")})
        oem = si.find("oemStrings")
        if oem is not None:
            put(sysinfo, "oem_strings", [e.text or "" for e in oem.findall("entry")])
        put(spec, "sysinfo", sysinfo)
    os_el = dom.find("os")
    if os_el is not None:
        put(spec, "os", _parse_os(os_el))
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
        put(spec, "features", features)
    cpu_el = dom.find("cpu")
    if cpu_el is not None:
        put(spec, "cpu", _parse_cpu(cpu_el))
    if spec.get("cpu", {}).get("numa"):
        # with NUMA cells libvirt sets the memory from them and the memory devices, whatever <memory> says
        spec["memory"] = sum(c["memory"] for c in spec["cpu"]["numa"]) + sum(
            _mib(size) for size in dom.findall("devices/memory/target/size"))
    if spec.get("current_memory", 0) > spec.get("memory", 0):
        spec["current_memory"] = spec["memory"]  # libvirt lowers a larger current memory to the memory
    clk = dom.find("clock")
    if clk is not None:
        clock: dict[str, Any] = {"offset": clk.get("offset", "utc")}
        put(clock, "timezone", clk.get("timezone"))
        timers = []
        for t in clk.findall("timer"):
            timer: dict[str, Any] = {"name": t.get("name")}
            put(timer, "tickpolicy", t.get("tickpolicy"))
            if t.get("present"):
                timer["present"] = yes(t.get("present"))
            timers.append(timer)
        put(clock, "timers", timers)
        spec["clock"] = clock
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        if dom.findtext(key):
            spec[key] = dom.findtext(key)
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

    Dicts compare only the keys desired names (an interface without ``mac``
    matches any MAC), except maps whose keys the user chooses (the schema's
    ``Map``: ``features``, ``cpu.features``, ``metadata``, ``vcpupin``, filter
    ``parameters``): those are one value, so a feature dropped from the spec is a difference. Lists
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
    # what the spec does not model is carried over from libvirt's definition on a redefine, not compared
    _diff({k: v for k, v in desired.items() if k != "preserved"}, current, "", diffs, SPEC)
    return diffs


def _choice(field: Any, value: Any) -> Any:
    """The schema node that describes ``value``: the matching form of an ``Either``, else the node."""
    if isinstance(field, Either):
        for choice in field.choices:
            if isinstance(choice, (Dict, Map)) == isinstance(value, dict) and \
                    isinstance(choice, List) == isinstance(value, list):
                return choice
        return None
    return field


def _pairs(want: list, have: list, key: str | None) -> list[tuple[int | None, int | None]]:
    """(index in want, index in have) of the items to compare: first those of the same identity (``key``),
    the rest by position among the unpaired; None where one side has no item."""
    pairs: list[tuple[int | None, int | None]] = []
    free = list(range(len(have)))
    unpaired = []
    for i, w in enumerate(want):
        ident = w.get(key) if key and isinstance(w, dict) else None
        j = next((j for j in free if ident is not None and isinstance(have[j], dict) and have[j].get(key) == ident),
                 None)
        if j is None:
            unpaired.append(i)
        else:
            free.remove(j)
            pairs.append((i, j))
    for i in unpaired:
        pairs.append((i, free.pop(0) if free else None))
    pairs.extend((None, j) for j in free)
    return sorted(pairs, key=lambda p: (p[0] is None, p[0] if p[0] is not None else p[1]))


def _diff(want: Any, have: Any, path: str, out: list[dict], field: Any = None) -> None:
    """Compare by the schema's value types: a Dict key by key (desired's keys only), a List of dicts item by
    item, a Map (user-chosen keys: features, metadata, vcpupin) and every other value as one value.
    Where the schema says nothing (a source whose form depends on the type), dicts and lists are walked."""
    field = _choice(field, want)
    if isinstance(field, Map):
        if want != have:
            out.append(difference(path, have, want))
    elif isinstance(want, dict) and isinstance(have, dict):
        fields = field.fields if isinstance(field, Dict) else {}
        for key, value in want.items():
            sub = "%s.%s" % (path, key) if path else str(key)
            if key not in have:
                out.append(difference(sub, None, value))
            else:
                _diff(value, have[key], sub, out, fields.get(key))
    elif isinstance(want, list) and isinstance(have, list) and \
            any(isinstance(v, dict) for v in want + have):
        item = field.item if isinstance(field, List) else None
        for i, j in _pairs(want, have, field.key if isinstance(field, List) else None):
            if i is None:
                out.append(difference("%s[%d]" % (path, j), have[j], None))
            elif j is None:
                out.append(difference("%s[%d]" % (path, i), None, want[i]))
            else:
                _diff(want[i], have[j], "%s[%d]" % (path, i), out, item)
    elif want != have:
        out.append(difference(path, have, want))
