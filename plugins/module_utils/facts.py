# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host facts: which subset yields which facts, and collecting them from a Host."""

from __future__ import annotations

import os
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec, OperationFailed
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host, version_to_string

DEFAULT_INSTANCES_PATH = "/var/lib/libvirt/images"


def _min(host: Host, _path: str) -> dict[str, Any]:
    return {
        "uri": host.uri,
        "hypervisor_type": host.get_hypervisor_type(),
        "hypervisor_version": version_to_string(host.get_hypervisor_version()),
        "hypervisor_hostname": host.get_hypervisor_hostname(),
        "libvirt_version": version_to_string(host.get_libversion()),
    }


def _cpu(host: Host, _path: str) -> dict[str, Any]:
    return {"vcpu_total": host.get_vcpu_total(), "vcpu_used": host.get_vcpu_used(),
            "cpu_info": host.get_cpu_info()}


def _memory(host: Host, _path: str) -> dict[str, Any]:
    return {"memory_mb_total": host.get_memory_mb_total(), "memory_mb_used": host.get_memory_mb_used()}


def _disk(host: Host, path: str) -> dict[str, Any]:
    return {"instances_path": path, "disk_available_least": host.get_disk_available_least(path)}


def _numa(host: Host, _path: str) -> dict[str, Any]:
    return {"numa_cells": host.get_numa_cells()}


def _capabilities(host: Host, _path: str) -> dict[str, Any]:
    return {"domain_capabilities": domain_capabilities(host)}


def _domains(host: Host, _path: str) -> dict[str, Any]:
    return {"domains": host.get_domain_info()}


# subset name -> collector; "min" is always gathered, as ansible.builtin.setup does.
SUBSETS: dict[str, Callable[[Host, str], dict[str, Any]]] = {
    "min": _min,
    "cpu": _cpu,
    "memory": _memory,
    "disk": _disk,
    "numa": _numa,
    "capabilities": _capabilities,
    "domains": _domains,
}


def resolve_subsets(gather_subset: list[str]) -> list[str]:
    """``['all', '!domains']`` -> the subsets to gather, in SUBSETS order (setup's rules)."""
    choices = set(SUBSETS) | {"all"}
    wanted: set[str] = set()
    excluded: set[str] = set()
    for i, raw in enumerate(gather_subset or ["all"]):
        item = raw.strip()
        negate = item.startswith("!")
        name = item.lstrip("!")
        if name not in choices:
            raise InvalidSpec("gather_subset[%d]" % i, "'%s' is not one of %s (optionally prefixed with !)"
                              % (name, ", ".join(sorted(choices))))
        target = excluded if negate else wanted
        target.update(SUBSETS if name == "all" else {name})
    if not wanted:  # only exclusions given: start from all, like setup
        wanted = set(SUBSETS)
    wanted = (wanted - excluded) | {"min"}
    return [name for name in SUBSETS if name in wanted]


def domain_capabilities(host: Host) -> dict[str, Any]:
    """What guests this host can run: virt types, machines, vCPU limit, firmware."""
    caps = host.get_capabilities()
    arch = caps.findtext("host/cpu/arch")
    guest = caps.xpath("guest[os_type='hvm' and arch/@name=$a]", a=arch)
    virt_types = sorted({d.get("type") for d in guest[0].findall("arch/domain")}) if guest else []
    machines = sorted({m.text for m in guest[0].findall("arch/machine")}) if guest else []
    try:
        dc = host.get_domain_capabilities(arch=arch)
    except OperationFailed as exc:
        # drivers without domain capabilities (the test driver), or a read-only connection:
        # report what the host capabilities say
        if libvirt is None or exc.code not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_DENIED):
            raise
        dc = etree.Element("domainCapabilities")
    loaders = [v.text for v in dc.findall("os/loader/value")]
    firmware = [v.text for v in dc.findall("os/enum[@name='firmware']/value")]
    secure = [v.text for v in dc.findall("os/loader/enum[@name='secure']/value")]
    max_vcpus = dc.find("vcpu")
    return {
        "arch": arch,
        "virt_types": virt_types,
        "virt_type": dc.findtext("domain"),
        "kvm_available": "kvm" in virt_types,
        "kvm_usable": host.kvm_usable(arch),
        "kvm_device": os.path.exists("/dev/kvm") if host.is_local() else None,
        "emulator": dc.findtext("path"),
        "machine": dc.findtext("machine"),
        "machines": machines,
        "max_vcpus": int(max_vcpus.get("max")) if max_vcpus is not None else None,
        "firmware": firmware,
        "loaders": loaders,
        "secure_boot": "yes" in secure,
    }


def gather(host: Host, gather_subset: list[str] | None = None,
           instances_path: str = DEFAULT_INSTANCES_PATH) -> dict[str, Any]:
    """The ``ansible_facts.libvirt`` dictionary for the requested subsets."""
    subsets = resolve_subsets(gather_subset or ["all"])
    facts: dict[str, Any] = {"gathered_subsets": subsets}
    with host.domain_stats_snapshot():  # one bulk stats call for all subsets
        for name in subsets:
            facts.update(SUBSETS[name](host, instances_path))
    return facts
