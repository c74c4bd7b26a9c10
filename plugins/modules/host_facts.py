#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_facts
short_description: Gather facts about a libvirt hypervisor
version_added: 1.0.0
description:
  - Returns the hypervisor's facts in C(ansible_facts.libvirt), named as the libvirt driver
    names them - type and version, CPUs and memory (total and used), CPU model and topology,
    free disk at the instances path, NUMA cells, what guests it can run, and every domain.
  - Domain data comes from bulk calls (one C(getAllDomainStats), two short C(listAllDomains)),
    so the number of libvirt calls does not grow with the number of domains; this matters
    for remote URIs, where every call is a round trip.
  - Works as an entry of C(FACTS_MODULES), so plain fact gathering collects it across a fleet,
    for example C(ANSIBLE_FACTS_MODULES=smart,hypervisor.libvirt.host_facts).
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  gather_subset:
    description:
      - Which facts to gather, in the style of M(ansible.builtin.setup).
      - V(all) gathers everything; a name prefixed with V(!) is left out; V(min)
        (type, versions, hostname, URI) is always gathered.
      - Subsets are V(min), V(cpu), V(memory), V(disk), V(numa), V(capabilities) and V(domains).
    type: list
    elements: str
    default: [all]
  read_only:
    description:
      - Open the connection read-only (libvirt's read-only socket), for monitoring accounts
        that may not change anything.
      - libvirt refuses domain capabilities on a read-only connection, so
        RV(ansible_facts.libvirt.domain_capabilities) then holds only what the host
        capabilities say (no emulator, machine default, vCPU limit or firmware).
    type: bool
    default: false
  instances_path:
    description:
      - Directory holding the guests' disk images, for RV(ansible_facts.libvirt.disk_available_least).
      - Only read when the URI names the machine the module runs on.
    type: path
    default: /var/lib/libvirt/images
attributes:
  check_mode:
    support: full
    description: Gathers facts in check mode too; it never changes anything.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  facts:
    support: full
    description: Sets C(ansible_facts.libvirt).
  idempotent:
    support: full
    description: Read-only.
notes:
  - With C(FACTS_MODULES), set O(uri) and the other options through C(module_defaults)
    on the module or on C(group/hypervisor.libvirt.libvirt).
"""

EXAMPLES = r"""
- name: Gather the local hypervisor's facts
  hypervisor.libvirt.host_facts:

- name: Only versions and the domain list of a remote hypervisor
  hypervisor.libvirt.host_facts:
    uri: qemu+ssh://root@hv1.example.com/system
    gather_subset: [min, domains]

- name: Everything but the domains
  hypervisor.libvirt.host_facts:
    gather_subset: ["!domains"]

- name: Show free capacity
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.libvirt.vcpu_total - ansible_facts.libvirt.vcpu_used }} vCPUs and
      {{ ansible_facts.libvirt.memory_mb_total - ansible_facts.libvirt.memory_mb_used }} MiB free

# As part of plain fact gathering (ansible.cfg: facts_modules = smart, hypervisor.libvirt.host_facts)
- name: Gather facts on every hypervisor
  hosts: hypervisors
  module_defaults:
    hypervisor.libvirt.host_facts:
      gather_subset: [all]
  tasks:
    - name: Print the hypervisor version
      ansible.builtin.debug:
        var: ansible_facts.libvirt.hypervisor_version
"""

RETURN = r"""
ansible_facts:
  description: Facts about the hypervisor.
  returned: always
  type: dict
  contains:
    libvirt:
      description: The hypervisor's facts; which keys are present depends on O(gather_subset).
      returned: always
      type: dict
      contains:
        uri: {description: The URI the facts were read from., type: str, returned: always, sample: "qemu:///system"}
        gathered_subsets: {description: The subsets gathered., type: list, elements: str, returned: always}
        hypervisor_type: {description: libvirt's driver name., type: str, returned: always, sample: QEMU}
        hypervisor_version: {description: Hypervisor version., type: str, returned: always, sample: "7.2.22"}
        hypervisor_hostname: {description: The host's name as libvirt reports it., type: str, returned: always}
        libvirt_version: {description: Version of the libvirt daemon behind the URI., type: str, returned: always, sample: "9.0.0"}
        vcpu_total: {description: Logical CPUs of the host., type: int, returned: when cpu is gathered, sample: 16}
        vcpu_used: {description: vCPUs of running domains., type: int, returned: when cpu is gathered, sample: 6}
        cpu_info:
          description: Host CPU from the capabilities - C(arch), C(model), C(vendor),
            C(topology) (sockets, dies, cores, threads) and C(features).
          type: dict
          returned: when cpu is gathered
        memory_mb_total: {description: Host memory in MiB., type: int, returned: when memory is gathered}
        memory_mb_used: {description: 'Host memory in use in MiB: total less free, buffers and cache.', type: int, returned: when memory is gathered}
        instances_path: {description: The path O(instances_path) measured., type: str, returned: when disk is gathered}
        disk_available_least:
          description:
            - GiB free at O(instances_path) less what the domains' sparse disks on that filesystem may still grow into.
            - V(null) for remote URIs or a missing path.
          type: int
          returned: when disk is gathered
        numa_cells:
          description: NUMA cells with C(id), C(memory_mb) and C(cpus).
          type: list
          elements: dict
          returned: when numa is gathered
        domain_capabilities:
          description:
            - What guests the host can run - C(arch), C(virt_types), C(kvm_available), C(kvm_usable),
              C(kvm_device), C(emulator), C(machine), C(machines), C(max_vcpus), C(firmware),
              C(loaders), C(secure_boot).
            - C(kvm_available) only says libvirt offers the kvm type; nested KVM may still hang.
              C(kvm_usable) says whether KVM really runs guest code - a probe firmware is booted
              under KVM (once per boot; a hang costs 3 seconds the first time); C(null) when it
              cannot be told (remote URI, non-x86 host).
          type: dict
          returned: when capabilities is gathered
        domains:
          description: Every domain with C(name), C(uuid), C(id), C(state), C(persistent),
            C(autostart), C(vcpus) and C(memory_mb), sorted by name.
          type: list
          elements: dict
          returned: when domains is gathered
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.facts import DEFAULT_INSTANCES_PATH, gather
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host


def main() -> None:
    module = libvirt_module(
        {
            "gather_subset": {"type": "list", "elements": "str", "default": ["all"]},
            "instances_path": {"type": "path", "default": DEFAULT_INSTANCES_PATH},
            "read_only": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )

    def action() -> dict:
        with Host(module.params["uri"], read_only=module.params["read_only"]) as host:
            host.initialize()
            facts = gather(host, module.params["gather_subset"], module.params["instances_path"])
        return {"changed": False, "ansible_facts": {"libvirt": facts}}

    run_module(module, action)


if __name__ == "__main__":
    main()
