# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest spec: its schema, validation and normalisation.

One dict describes a guest in libvirt's own vocabulary (snake_case). The same
normalised form is produced from a user's spec (``validate_spec``) and from a
domain XML read back (``domain_xml.parse_domain_xml`` then ``validate_spec``), so the
two can be compared field by field. Errors name the path (``disks[1].bus``).
"""

from __future__ import annotations

from typing import Any

from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_model import (
    DEVICE_KINDS,
    DEVICES,
    TARGET_PREFIX,
    disk_index,
    disk_name,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
# The schema types (and IFNAME_RE) are schema.py's; network.py still imports them from here.
from ansible_collections.hypervisor.libvirt.plugins.module_utils.schema import (  # noqa: F401
    ABS_PATH_RE,
    IFNAME_RE,
    UUID_RE,
    Bool,
    CpuSet,
    Dict,
    Either,
    Enum,
    Field,
    Free,
    Int,
    List,
    Map,
    Size,
    Str,
    scaled_kib,
    typename,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.xmlutil import parse as parse_xml

__all__ = ["validate_spec", "validate_interface", "METADATA_NS", "order_disks", "derive_disk_targets", "SPEC"]

# Namespace of the element that carries the spec's ``metadata`` dict inside <metadata>.
METADATA_NS = "https://hypervisor.libvirt/xmlns/1.0"


# ---------------------------------------------------------------- post-processing per section

def _post_topology(t: dict, path: str) -> dict:
    for key in ("sockets", "dies", "cores", "threads"):
        t.setdefault(key, 1)
    return t


def _post_cpu(c: dict, path: str) -> dict:
    if "mode" not in c and ("model" in c or "vendor" in c or "fallback" in c):
        c["mode"] = "custom"
    if c.get("mode") not in ("custom", None) and "vendor" in c:
        raise InvalidSpec("%s.vendor" % path, "only applies to cpu.mode custom, not %s" % c["mode"])
    if c.get("mode") not in ("custom", "host-model", None) and "fallback" in c:
        raise InvalidSpec("%s.fallback" % path, "only applies to cpu.mode custom and host-model, not %s" % c["mode"])
    if c.get("mode") == "custom" and "model" not in c:
        raise InvalidSpec("%s.model" % path, "is required with cpu.mode custom")
    ids = [cell["id"] for cell in c.get("numa", [])]
    if len(set(ids)) != len(ids):
        raise InvalidSpec("%s.numa" % path, "cell ids must be unique, got %s" % ids)
    if "numa" in c:
        c["numa"].sort(key=lambda cell: cell["id"])  # libvirt holds the cells in the order of their ids
    return c


def _pre_features(value: Any, path: str) -> Any:
    if isinstance(value, list):
        out = {}
        for i, name in enumerate(value):
            if not isinstance(name, str):
                raise InvalidSpec("%s[%d]" % (path, i), "expected a feature name, got %s" % typename(name))
            out[name] = True
        return out
    return value


_STATE_FEATURES = ("hap", "pvspinlock", "pmu", "vmport", "smm", "vmcoreinfo", "htm", "ps2")
_FLAG_FEATURES = ("acpi", "apic", "pae", "viridian", "privnet")
FEATURES = tuple(sorted(_FLAG_FEATURES + _STATE_FEATURES))


def _post_features(f: dict, path: str) -> dict:
    for name, on in f.items():
        if not on and name in _FLAG_FEATURES:
            raise InvalidSpec("%s.%s" % (path, name), "false is only possible for %s; leave %s out to turn "
                              "it off" % (", ".join(_STATE_FEATURES), name))
    return f


_SYSINFO_SECTIONS = {
    "bios": ("vendor", "version", "date", "release"),
    "system": ("manufacturer", "product", "version", "serial", "uuid", "sku", "family"),
    "base_board": ("manufacturer", "product", "version", "serial", "asset", "location"),
    "chassis": ("manufacturer", "version", "serial", "asset", "sku"),
}

_SYSINFO = Dict(dict(
    {sec: Dict({k: Str() for k in keys}) for sec, keys in _SYSINFO_SECTIONS.items()},
    oem_strings=List(Str()),
))

_BOOT_DEVS = ("hd", "cdrom", "network", "fd")
_LIFECYCLE = ("destroy", "restart", "preserve", "rename-restart")


class _Preserved(Field):
    """The ``preserved`` key: what the spec does not model, as the XML ``parse_domain_xml`` kept it."""

    def norm(self, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise InvalidSpec(path, "expected the XML text parse_domain_xml returned, got %s" % typename(value))
        root = parse_xml(value, path)
        if root.tag != "domain":
            raise InvalidSpec(path, "the root element must be <domain>, not <%s>" % root.tag)
        return value


_CPU = Dict({
    "mode": Enum("host-passthrough", "host-model", "custom", "maximum"),
    "model": Str(),
    "fallback": Enum("allow", "forbid"),
    "vendor": Str(),
    "features": Map(Str(), Enum("force", "require", "optional", "disable", "forbid")),
    "topology": Dict({k: Int(1) for k in ("sockets", "dies", "cores", "threads")}, post=_post_topology),
    "numa": List(Dict({"id": Int(), "cpus": CpuSet(), "memory": Size(), "mem_access": Enum("shared", "private")},
                      required=("id", "memory"))),
}, post=_post_cpu)

_OS = Dict({
    "arch": Str(),
    "machine": Str(),
    "firmware": Enum("bios", "efi"),
    "secure_boot": Bool(),
    "boot": List(Enum(*_BOOT_DEVS)),
    "kernel": Str(ABS_PATH_RE, "an absolute path"),
    "initrd": Str(ABS_PATH_RE, "an absolute path"),
    "cmdline": Str(),
})

_TIMER = Dict({"name": Enum("platform", "pit", "rtc", "hpet", "tsc", "kvmclock", "hypervclock", "armvtimer"),
               "present": Bool(),
               "tickpolicy": Enum("delay", "catchup", "merge", "discard")}, required=("name",))


SPEC = Dict({
    "name": Str(),
    "uuid": Str(UUID_RE, "a UUID", lower=True),
    "type": Enum("kvm", "qemu", "xen", "lxc", "hvf", "test"),
    "title": Str(),
    "description": Str(nonempty=False, multiline=True),
    "metadata": Map(Str(), Free()),
    "memory": Size(),
    "current_memory": Size(),
    "vcpus": Int(1, 65535),
    "cpu": _CPU,
    "cputune": Dict({"vcpupin": Map(Int(), CpuSet()), "emulatorpin": CpuSet()}),
    "numatune": Dict({
        "mode": Enum("strict", "preferred", "interleave", "restrictive"),
        "nodeset": CpuSet(),
        "memnodes": List(Dict({"cellid": Int(), "mode": Enum("strict", "preferred", "interleave", "restrictive"),
                               "nodeset": CpuSet()}, required=("cellid", "mode", "nodeset"))),
    }),
    "memory_backing": Dict({
        "hugepages": Either(Bool(), List(Dict({"size": Size(), "nodeset": CpuSet()}, required=("size",))),
                            what="true or a list of {size, nodeset}"),
        "locked": Bool(),
        "nosharepages": Bool(),
    }),
    "os": _OS,
    "features": Map(Enum(*FEATURES), Bool(), pre=_pre_features, post=_post_features),
    "clock": Dict({"offset": Enum("utc", "localtime", "timezone", "variable", "absolute"), "timezone": Str(),
                   "timers": List(_TIMER)}),
    "sysinfo": _SYSINFO,
    "on_poweroff": Enum(*_LIFECYCLE),
    "on_reboot": Enum(*_LIFECYCLE),
    "on_crash": Enum(*(_LIFECYCLE + ("coredump-destroy", "coredump-restart"))),
    "preserved": _Preserved(),
    # every device kind's schema, from its one declaration (domain_model.DEVICES)
    **{kind.key: kind.field() for kind in DEVICES},
}, required=("name",))


def _staged(disks: list[dict]) -> list[dict]:
    """Disks and luns first, then cdroms and floppies, each group in the spec's order."""
    return [d for d in disks if d["device"] in ("disk", "lun")] + \
        [d for d in disks if d["device"] not in ("disk", "lun")]


def _libvirt_order(disks: list[dict]) -> list[dict]:
    """The order libvirt's virDomainDiskInsert gives: one bus's disks together, sorted by target.

    Emitting disks in that order means a domain dumped back lists them as the spec does.
    """
    out: list[dict] = []
    for disk in disks:
        insert_at = -1
        for idx in range(len(out) - 1, -1, -1):
            if out[idx]["bus"] != disk["bus"]:
                continue
            if disk_index(out[idx]["target"]) > disk_index(disk["target"]):
                insert_at = idx
            elif insert_at == -1:
                insert_at = idx + 1
        if insert_at == -1:
            out.append(disk)
        else:
            out.insert(insert_at, disk)
    return out


def derive_disk_targets(disks: list[dict], path: str = "disks") -> list[dict]:
    """Give every disk without a target the next free name of its bus (vda…, sda…, hda…)."""
    used: dict[str, int] = {}
    for i, d in enumerate(disks):
        if "target" in d:
            if d["target"] in used:
                raise InvalidSpec("%s[%d].target" % (path, i), "%r is already used by %s[%d]" %
                                  (d["target"], path, used[d["target"]]))
            used[d["target"]] = i
    names = set(used)
    for d in _staged(disks):
        if "target" not in d:
            prefix = TARGET_PREFIX[d["bus"]]
            n = 0
            while disk_name(prefix, n) in names:
                n += 1
            d["target"] = disk_name(prefix, n)
            names.add(d["target"])
    return disks


def order_disks(disks: list[dict]) -> list[dict]:
    """Targets derived where missing, disks before cdroms, then libvirt's bus/target order."""
    return _libvirt_order(_staged(derive_disk_targets(disks)))


def memory_devices_mib(preserved: str | None) -> int:
    """The size of the memory devices (DIMMs, NVDIMMs, virtio-mem) ``preserved`` holds, in MiB: libvirt counts
    them into the domain's memory."""
    if not preserved:
        return 0
    total = 0
    for size in parse_xml(preserved, "preserved").findall("devices/memory/target/size"):
        total += int(round(scaled_kib(size) / 1024))
    return total


def validate_interface(spec: dict, path: str = "interface") -> dict:
    """Check one interface spec alone, as in ``interfaces[n]``, so a NIC can be managed without a whole guest."""
    if not isinstance(spec, dict):
        raise InvalidSpec(path, "expected a dict, got %s" % typename(spec))
    return DEVICE_KINDS["interfaces"].schema.norm(spec, path)


def validate_spec(spec: dict) -> dict:
    """Check a whole guest spec and return its normalised copy (idempotent).

    Sizes become MiB ints, CPU lists libvirt's canonical text, PCI addresses
    0000:03:00.1, disks get their type, device, bus and target and libvirt's
    order; other defaults are filled in only where the XML must say something
    (interface model virtio, rng backend, topology dies/threads, firmware efi
    for secure boot).
    """
    if not isinstance(spec, dict):
        raise InvalidSpec("spec", "expected a dict, got %s" % typename(spec))
    out = SPEC.norm(spec, "")
    if "disks" in out:
        out["disks"] = order_disks(out["disks"])
    cpu = out.get("cpu", {})
    topo = cpu.get("topology")
    if topo:
        product = topo["sockets"] * topo["dies"] * topo["cores"] * topo["threads"]
        out.setdefault("vcpus", product)
        if product != out["vcpus"]:
            raise InvalidSpec("cpu.topology", "sockets*dies*cores*threads = %d but vcpus is %d" %
                              (product, out["vcpus"]))
    vcpus = out.get("vcpus")
    for vcpu in out.get("cputune", {}).get("vcpupin", {}):
        if vcpus is not None and vcpu >= vcpus:
            raise InvalidSpec("cputune.vcpupin.%d" % vcpu, "there are only %d vCPUs (0-%d)" % (vcpus, vcpus - 1))
    numa = cpu.get("numa")
    if numa:
        # libvirt sets the memory from the cells (and the memory devices): memory may be left out
        total = sum(c["memory"] for c in numa) + memory_devices_mib(out.get("preserved"))
        out.setdefault("memory", total)
        if out["memory"] != total:
            raise InvalidSpec("cpu.numa", "the cells'%s memory adds up to %d MiB, memory is %d MiB" %
                              (" and the memory devices'" if total != sum(c["memory"] for c in numa) else "",
                               total, out["memory"]))
    if "memory" not in out:
        raise InvalidSpec("memory", "is required (unless cpu.numa gives it per cell)")
    if "current_memory" in out and out["current_memory"] > out["memory"]:
        raise InvalidSpec("current_memory", "%d MiB is more than memory (%d MiB)" %
                          (out["current_memory"], out["memory"]))
    os_ = out.get("os", {})
    if os_.get("secure_boot"):
        if os_.get("firmware", "efi") != "efi":
            raise InvalidSpec("os.secure_boot", "needs os.firmware efi, not %s" % os_["firmware"])
        os_["firmware"] = "efi"
        features = out.setdefault("features", {})
        if features.get("smm") is False:
            raise InvalidSpec("features.smm", "secure boot needs smm; it cannot be false")
        features["smm"] = True
    if "secure_boot" in os_ and os_.get("firmware") != "efi":
        raise InvalidSpec("os.secure_boot", "only applies to os.firmware efi")
    for key in ("initrd", "cmdline"):
        if key in os_ and "kernel" not in os_:
            raise InvalidSpec("os.%s" % key, "needs os.kernel (direct kernel boot)")
    if os_.get("boot"):
        for section in ("disks", "interfaces"):
            for i, dev in enumerate(out.get(section, [])):
                if "boot_order" in dev:
                    raise InvalidSpec("%s[%d].boot_order" % (section, i),
                                      "cannot be combined with os.boot; use one or the other")
    orders: dict[int, str] = {}
    for section in ("disks", "interfaces"):
        for i, dev in enumerate(out.get(section, [])):
            if "boot_order" in dev:
                where = "%s[%d]" % (section, i)
                if dev["boot_order"] in orders:
                    raise InvalidSpec(where + ".boot_order", "%d is already used by %s" %
                                      (dev["boot_order"], orders[dev["boot_order"]]))
                orders[dev["boot_order"]] = where
    sys_uuid = out.get("sysinfo", {}).get("system", {}).get("uuid")
    if sys_uuid and "uuid" in out and sys_uuid.lower().replace("-", "") != out["uuid"].replace("-", ""):
        raise InvalidSpec("sysinfo.system.uuid", "must match uuid (%s)" % out["uuid"])
    if "uuid" in out and "-" not in out["uuid"]:
        u = out["uuid"]
        out["uuid"] = "%s-%s-%s-%s-%s" % (u[:8], u[8:12], u[12:16], u[16:20], u[20:])
    return out
