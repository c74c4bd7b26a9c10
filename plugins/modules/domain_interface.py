#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: domain_interface
short_description: Plug, unplug and change a libvirt domain's network interface, live and persistent
version_added: 1.0.0
description:
  - Ensures one network interface of a domain is present with the given properties, or absent,
    in the running guest (live), in the persistent definition, or both.
  - The interface is identified by its MAC address; without one, by its type and source
    (network, bridge or host device). Two interfaces on the same source need a MAC.
  - A filter (nwfilter), the link state and bandwidth are changed in place on a running guest
    (libvirt's C(updateDeviceFlags)); the guest keeps its NIC. Any other change to a running
    guest's interface (model, source, MTU, VLAN, queues, ...) needs the NIC to be unplugged and
    plugged again; that happens only with O(replug=true). Otherwise only the persistent definition
    changes and RV(pending_restart) is V(true).
  - Before the domain is touched, the nwfilter and the network the interface refers to are
    checked to exist.
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  domain:
    description: Name of the domain.
    type: str
    required: true
  mac:
    description:
      - MAC address identifying the interface. Same as C(mac) in O(interface); when both are given they must agree.
      - Without a MAC, the interface is found by C(type) and C(source) in O(interface), and a new
        one gets the MAC libvirt generates (the same in the live and the persistent configuration).
    type: str
  interface:
    description:
      - The interface, with the keys of the guest spec's C(interfaces) entries (see M(hypervisor.libvirt.guest_xml)).
      - C(type) is V(network) (default), V(bridge), V(direct), V(ethernet) or V(user); C(source) is the
        network or bridge name, or for V(direct) C({dev, mode}) (macvtap modes vepa, bridge, private, passthrough).
      - >-
        Other keys are C(mac), C(model), C(mtu), C(queues), C(link_state) (up, down), C(vlan),
        C(virtualport) (for example C({type=openvswitch}), which needs type bridge), C(bandwidth)
        (C(inbound)/C(outbound) with C(average), C(peak), C(burst)), C(filter) (C({name, parameters})),
        C(target) and C(boot_order).
      - C(model) defaults to V(virtio), as in the guest spec. Other properties left out are left as they
        are, except C(filter), C(bandwidth), C(vlan) and C(link_state), which are part of the interface's
        state - leaving C(filter) out removes a filter, leaving C(link_state) out means up.
      - With O(state=absent), only C(mac) or C(type) + C(source) are used, to find the interface.
    type: dict
  state:
    description: Whether the interface should be there.
    type: str
    choices: [present, absent]
    default: present
  config:
    description:
      - Which configuration to change. V(both) changes the persistent definition and, when the domain
        runs, the live guest. V(live) changes only the running guest (the change is lost at the next
        restart). V(persistent) changes only the definition (seen at the next restart).
    type: str
    choices: [live, persistent, both]
    default: both
  replug:
    description:
      - Allow unplugging and re-plugging the live NIC when a property cannot be changed in place.
        The guest sees the link go away and come back.
    type: bool
    default: false
  detach_timeout:
    description: Seconds to wait for the guest to release a live NIC after a detach request.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
    description: Predicts the actions and the resulting interface; changes nothing.
  diff_mode:
    support: full
    description: The interface XML before and after, one diff per configuration changed (live, persistent).
  idempotent:
    support: full
    description: Compared per property, as libvirt stores it; a second identical run reports no change.
"""

EXAMPLES = r"""
- name: Give web1 a second NIC on the backend network, now and after restarts
  hypervisor.libvirt.domain_interface:
    domain: web1
    interface:
      type: network
      source: backend
      mac: "52:54:00:10:00:02"
      model: virtio

- name: Firewall that NIC in place (the guest keeps running, the NIC stays)
  hypervisor.libvirt.domain_interface:
    domain: web1
    interface:
      source: backend
      mac: "52:54:00:10:00:02"
      model: virtio
      filter:
        name: clean-traffic
        parameters:
          IP: 192.0.2.10

- name: Take the link down without unplugging
  hypervisor.libvirt.domain_interface:
    domain: web1
    interface:
      source: backend
      mac: "52:54:00:10:00:02"
      link_state: down

- name: Switch the model to e1000, replugging the live NIC
  hypervisor.libvirt.domain_interface:
    domain: web1
    interface:
      source: backend
      mac: "52:54:00:10:00:02"
      model: e1000
    replug: true

- name: Bridge with Open vSwitch, next boot only
  hypervisor.libvirt.domain_interface:
    domain: web1
    config: persistent
    interface:
      type: bridge
      source: ovsbr0
      virtualport:
        type: openvswitch
  register: ovs

- name: Say when a restart is due
  ansible.builtin.debug:
    msg: "web1 needs a restart for its NIC change"
  when: ovs.pending_restart

- name: Unplug the NIC
  hypervisor.libvirt.domain_interface:
    domain: web1
    mac: "52:54:00:10:00:02"
    state: absent
"""

RETURN = r"""
actions:
  description:
    - What was done (or, in check mode, would be done), in order - C(attach-live), C(attach-config),
      C(update-live), C(update-config), C(detach-live), C(detach-config). A replug is C(detach-live)
      followed by C(attach-live).
  type: list
  elements: str
  returned: always
  sample: [update-config, update-live]
pending_restart:
  description: The running guest's interface differs from the persistent one, which it gets at the next restart.
  type: bool
  returned: always
interface:
  description:
    - The resulting interface (persistent definition when it is in scope, else live), with C(type),
      C(mac), C(source), C(source_mode), C(model), C(target), C(mtu), C(filter) and C(link_state);
      V(null) when absent.
  type: dict
  returned: always
  sample: {type: network, mac: "52:54:00:10:00:02", source: backend, model: virtio, filter: null, link_state: null}
xml:
  description: The resulting interface XML, per configuration (C(live), C(config)); V(null) where absent.
  type: dict
  returned: always
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host
from ansible_collections.hypervisor.libvirt.plugins.module_utils.vif import LibvirtVIFDriver, module_result


def main() -> None:
    module = libvirt_module(
        {
            "domain": {"type": "str", "required": True},
            "mac": {"type": "str"},
            "interface": {"type": "dict"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "config": {"type": "str", "choices": ["live", "persistent", "both"], "default": "both"},
            "replug": {"type": "bool", "default": False},
            "detach_timeout": {"type": "int", "default": 30},
        },
        required_if=[("state", "present", ["interface"])],
        required_one_of=[("mac", "interface")],
        supports_check_mode=True,
    )
    p = module.params

    def action() -> dict:
        with Host(p["uri"]) as host:
            vif = LibvirtVIFDriver(host, check_mode=module.check_mode, detach_timeout=p["detach_timeout"])
            return module_result(vif, p["domain"], p["interface"], p["mac"], p["state"], p["config"],
                                 p["replug"], diff=module._diff)

    run_module(module, action)


if __name__ == "__main__":
    main()
