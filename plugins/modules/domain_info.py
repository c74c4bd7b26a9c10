#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: domain_info
short_description: Read libvirt domains - state, spec, disks, interfaces and addresses - and wait until a guest is reachable
version_added: 1.1.0
description:
  - Reports one domain, a list of domains, or all of them - state and the reason for it, persistence,
    autostart, vCPUs and memory, the normalised guest spec (the keys M(hypervisor.libvirt.domain) takes),
    disks with their storage volume, capacity and allocation, and interfaces with MAC, network or bridge,
    host tap device, filter and addresses.
  - Reads come from bulk calls - one domain listing, one C(getAllDomainStats) (or C(domainListGetStats)),
    two short persistence listings, the storage pools' volume lists and one C(DHCPLeases) per network - so
    the number of libvirt calls does not grow with the number of domains, except for each domain's XML
    (libvirt has no bulk call for it; they are sent several at a time) and, for O(address_source=agent)
    or O(address_source=arp), one address query per running domain.
  - With O(wait_for), the module first waits for the one domain named to have an address, a connected
    guest agent, or a line on its serial log, bounded by O(timeout), then reports.
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  name:
    description:
      - The domains to report, by name. All domains when not given.
      - A name that does not exist is an error naming it.
    type: list
    elements: str
    aliases: [names]
  address_source:
    description:
      - Where addresses come from.
      - V(lease) - the DHCP leases of libvirt's own networks (read in bulk, one call per network).
      - V(agent) - the QEMU guest agent inside the guest (needs its channel and a running agent).
      - V(arp) - the host's ARP table.
      - V(any) - the first of lease, agent and arp that gives the domain an address.
      - V(none) - no addresses.
      - Only running domains have addresses.
    type: str
    choices: [lease, agent, arp, any, none]
    default: lease
  wait_for:
    description:
      - Before reporting, wait until the one domain in O(name) (which must be running)...
      - V(address) - has an address from O(address_source) (of O(family), on O(network) when given). libvirt
        has no event for a new lease or address, so the domain is polled with a bounded back-off
        (50 ms, growing to at most 0.5 s).
      - V(agent) - has its guest agent connected - driven by libvirt's agent lifecycle event.
      - V(serial) - printed a line matching O(regex) on its serial log (a serial port or console of type
        C(file), or one with C(<log file=...>)); the file is read on the machine the module runs on, so
        the URI must name that machine.
      - On timeout the module fails, saying what it saw - the addresses it found, the agent channel's
        state, the last lines of the serial log.
    type: str
    choices: [address, agent, serial]
  family:
    description: With O(wait_for=address), the address family to wait for.
    type: str
    choices: [ipv4, ipv6]
  network:
    description: With O(wait_for=address), only an address of an interface on this libvirt network counts.
    type: str
  regex:
    description: With O(wait_for=serial), the regular expression (Python syntax) a line of the serial log must match.
    type: str
  timeout:
    description: Seconds O(wait_for) waits at most.
    type: float
    default: 120
attributes:
  check_mode:
    support: full
    description: Reads (and waits) the same in check mode; it never changes anything.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  idempotent:
    support: full
    description: Read-only.
notes:
  - A domain's spec and interfaces come from its live XML when it runs (so the tap device is there), else from
    its definition.
seealso:
  - module: hypervisor.libvirt.domain
  - module: hypervisor.libvirt.host_facts
"""

EXAMPLES = r"""
- name: Every domain, with lease addresses
  hypervisor.libvirt.domain_info:
  register: all_domains

- name: Names of the running ones
  ansible.builtin.debug:
    msg: "{{ all_domains.domains | selectattr('state', 'eq', 'running') | map(attribute='name') | list }}"

- name: Start a guest, then wait for its IPv4 lease on network default
  hypervisor.libvirt.domain_info:
    name: web1
    wait_for: address
    family: ipv4
    network: default
    timeout: 60
  register: web1

- name: Its address
  ansible.builtin.debug:
    msg: "{{ web1.wait.address.address }}"

- name: Wait until the guest printed its login prompt on the serial log
  hypervisor.libvirt.domain_info:
    name: web1
    wait_for: serial
    regex: "login:"

- name: Wait for the guest agent, then read addresses through it
  hypervisor.libvirt.domain_info:
    name: web1
    wait_for: agent
    address_source: agent
"""

RETURN = r"""
domains:
  description: The domains, sorted by name.
  type: list
  elements: dict
  returned: always
  contains:
    name: {description: The domain's name., type: str}
    uuid: {description: Its UUID., type: str}
    id: {description: 'Its id while it runs, else V(null).', type: int}
    state: {description: 'V(running), V(paused), V(shutoff), ... as libvirt names them.', type: str}
    state_reason: {description: 'Why it is in that state: V(booted), V(from_snapshot), V(shutdown), V(destroyed), ...', type: str}
    persistent: {description: It has a persistent definition., type: bool}
    autostart: {description: libvirtd starts it., type: bool}
    vcpus: {description: vCPUs., type: int}
    memory_mb: {description: Maximum memory in MiB., type: int}
    current_memory_mb: {description: Memory in MiB it has now (balloon)., type: int}
    spec: {description: The domain's XML read back into the guest spec's keys., type: dict}
    disks:
      description: Disks with C(target), C(bus), C(device), C(type), C(source), C(format), C(readonly),
        C(volume) (C(pool) and C(volume) when a storage pool holds it), C(capacity), C(allocation) and C(physical) (bytes,
        while the domain runs).
      type: list
      elements: dict
    interfaces:
      description: Interfaces with C(type), C(mac), C(source), C(network), C(bridge), C(target) (host tap device),
        C(model), C(filter), C(link_state) and C(addresses) (C(address), C(prefix), C(family), C(source)).
      type: list
      elements: dict
    addresses:
      description: Every address of every interface, with its C(mac) and C(network).
      type: list
      elements: dict
wait:
  description: What O(wait_for) waited for - C(what), C(seconds) (how long), C(at) (when it was seen, epoch seconds),
    and the C(address) found or the serial C(line) and C(path).
  type: dict
  returned: when O(wait_for) is given
  sample: {what: address, seconds: 7.31, address: {address: 192.168.122.57, prefix: 24, family: ipv4, mac: "52:54:00:12:34:56",
           network: default, source: lease}}
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_info import SOURCES, WAITS, describe, wait
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host


def main() -> None:
    module = libvirt_module(
        {
            "name": {"type": "list", "elements": "str", "aliases": ["names"]},
            "address_source": {"type": "str", "choices": list(SOURCES), "default": "lease"},
            "wait_for": {"type": "str", "choices": list(WAITS)},
            "family": {"type": "str", "choices": ["ipv4", "ipv6"]},
            "network": {"type": "str"},
            "regex": {"type": "str"},
            "timeout": {"type": "float", "default": 120},
        },
        required_if=[("wait_for", "serial", ["regex"])],
        supports_check_mode=True,
    )
    p = module.params

    def action() -> dict:
        result: dict = {"changed": False}
        with Host(p["uri"]) as host:
            # events (the agent wait) and the close callback, which spares a test round trip before each call
            host.initialize()
            if p["wait_for"]:
                if not p["name"] or len(p["name"]) != 1:
                    raise InvalidSpec("name", "wait_for waits for one domain: name exactly one")
                result["wait"] = wait(host, host.get_guest(name=p["name"][0]), p["wait_for"], p["timeout"],
                                      source=p["address_source"], family=p["family"], network=p["network"],
                                      regex=p["regex"])
            result["domains"] = describe(host, p["name"], p["address_source"])
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
