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
    ELEMENTS,
    TARGET_PREFIX,
    disk_index,
    disk_name,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.schema import Dict, Enum, Field, Str, scaled_kib, typename
from ansible_collections.hypervisor.libvirt.plugins.module_utils.xmlutil import parse as parse_xml

__all__ = ["validate_spec", "validate_interface", "order_disks", "derive_disk_targets", "SPEC"]


class _Preserved(Field):
    """The ``preserved`` key: what the spec does not model, as the XML ``parse_domain_xml`` kept it."""

    def norm(self, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise InvalidSpec(path, "expected the XML text parse_domain_xml returned, got %s" % typename(value))
        root = parse_xml(value, path)
        if root.tag != "domain":
            raise InvalidSpec(path, "the root element must be <domain>, not <%s>" % root.tag)
        return value


SPEC = Dict({
    "name": Str(),
    "type": Enum("kvm", "qemu", "xen", "lxc", "hvf", "test"),
    # every other key's schema, from its one declaration (domain_model.ELEMENTS and DEVICES)
    **{kind.key: kind.schema for kind in ELEMENTS},
    "preserved": _Preserved(),
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
