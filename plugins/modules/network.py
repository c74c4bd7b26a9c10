#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: network
short_description: Manage libvirt virtual networks, including changes to existing ones
version_added: 1.0.0
description:
  - Defines, starts, stops, changes and removes libvirt virtual networks - isolated, NAT,
    routed, open, or a bridge to an existing host bridge - with their IPs, DHCP ranges and
    static DHCP hosts, DNS and domain.
  - Unlike community.libvirt's C(virt_net), which ignores changes to a network that already
    exists, this module applies them. DHCP hosts and ranges are added, modified and deleted in
    place with C(virNetworkUpdate) on the running and the persistent config at once, so guests
    keep their connection. Other changes redefine the persistent config and return
    RV(pending_restart=true), or restart the network when O(restart_on_change=true).
  - The comparison is semantic; what libvirt generates (UUID, MAC, bridge name, STP and delay,
    NAT port range) is only a difference when you set it.
  - A network used by running guests is not stopped, restarted or removed without O(force=true).
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  name:
    description: The network's name.
    type: str
    required: true
  forward:
    description:
      - How the network reaches the outside, as a mode name or a dict with C(mode), C(dev)
        (restrict to this host interface) and, for V(nat), C(nat) with C(addresses) and C(ports)
        (each C({start, end})).
      - Modes are V(none) or V(isolated) (no forwarding, the default), V(nat), V(route), V(open)
        and V(bridge) (attach to an existing host bridge named in O(bridge)).
    type: raw
  bridge:
    description: The bridge device, as a name or a dict with C(name) (at most 15 characters;
      libvirt picks C(virbrN) when omitted), C(stp) (bool) and C(delay) (seconds).
    type: raw
  mtu:
    description: MTU of the network's bridge.
    type: int
  mac:
    description: MAC address of the network's bridge (libvirt generates one when omitted).
    type: str
  domain:
    description: DNS domain of the network, as a name or a dict with C(name) and C(local_only).
    type: raw
  dns:
    description: DNS settings - C(enable) (bool), C(forwarders) (list of addresses) and
      C(hosts) (list of C({ip, hostnames})).
    type: dict
  ips:
    description:
      - The network's addresses, each a dict with C(address), C(prefix) or C(netmask), C(family)
        (V(ipv4) or V(ipv6), guessed from the address) and C(dhcp) with C(ranges) (list of
        C({start, end})) and C(hosts) (list of C({mac, name, ip})).
    type: list
    elements: dict
  ip:
    description: A single entry of O(ips).
    type: dict
  xml:
    description:
      - The whole network as libvirt XML instead of the structured options.
      - It is compared through the same fields as the structured options, so settings those do not
        cover (port groups, routes, virtual ports) are defined on creation but are not compared.
    type: str
  state:
    description:
      - V(present) - defined, running or not as it is; V(active) - defined and running;
        V(inactive) - defined and stopped; V(absent) - stopped and undefined.
    type: str
    choices: [present, active, inactive, absent]
    default: present
  autostart:
    description: Start the network when libvirtd starts; unchanged when omitted.
    type: bool
  restart_on_change:
    description: Restart a running network whose running config differs after a change that
      cannot be applied live (refused while guests use it, unless O(force=true)).
    type: bool
    default: false
  force:
    description: Stop, restart or remove the network even though running guests use it.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description:
      - Reports exactly which actions would run and changes nothing.
      - The predicted XML is the one the real run leaves - libvirt's current XML with the DHCP steps
        applied, or the XML that would be defined, carrying what libvirt keeps (UUID, MAC, bridge name,
        STP and delay). Only the ids libvirt generates for a network that does not exist yet are unknown.
  diff_mode:
    support: full
    description: The persistent XML before and after; in check mode the same diff as the real run.
  idempotent:
    support: full
    description: A second identical run reports no change.
notes:
  - DHCP hosts are identified by MAC address (by name when they have none). Every host needs an
    C(ip) inside its network, and no two hosts may share a MAC, a name or an IP (nor two ranges be
    alike, nor two addresses of one family serve DHCP). Such input fails naming the field
    (C(ip.dhcp.hosts[1].ip)) before anything is changed.
  - DHCP changes run as single C(virNetworkUpdate) steps (deletes, modifies, then adds) in an order
    libvirt accepts, worked out and checked against libvirt's rules before the first step is sent;
    a host whose new address or name another host still holds is deleted and re-added. If a step
    still fails (say the connection drops), the steps applied before it are rolled back and the
    error says so; if that is not possible the error lists the steps applied and those not applied,
    and running the task again converges from there. When the running network's DHCP differs from
    its persistent config, only the persistent config is updated and RV(pending_restart) is set.
  - A change that redefines the network keeps what the request leaves to libvirt (UUID, MAC, bridge
    name, STP, delay, MTU, forward dev, NAT ranges) as they are. C(dhcp) with no ranges and no hosts
    is the same as no C(dhcp).
  - With none of the network's settings (O(forward) ... O(ip), O(xml)) only O(state) and
    O(autostart) of an existing network are managed; give O(forward=none) for a bare isolated network.
"""

EXAMPLES = r"""
- name: An isolated network with DHCP and a static lease, running and started at boot
  hypervisor.libvirt.network:
    name: hvl-example-isolated
    bridge: virbr-hvlex0
    ip:
      address: 192.168.240.1
      prefix: 24
      dhcp:
        ranges: [{start: 192.168.240.100, end: 192.168.240.199}]
        hosts: [{mac: "52:54:00:12:34:56", name: web1, ip: 192.168.240.10}]
    state: active
    autostart: true

- name: A NAT network (libvirt chooses the bridge)
  hypervisor.libvirt.network:
    name: hvl-example-nat
    forward: nat
    domain: example.test
    ips:
      - {address: 192.168.241.1, netmask: 255.255.255.0, dhcp: {ranges: [{start: 192.168.241.2, end: 192.168.241.254}]}}
    state: active

- name: A routed network; an MTU change is applied by restarting it if no guest uses it
  hypervisor.libvirt.network:
    name: hvl-example-routed
    forward: route
    mtu: 1400
    ip: {address: 192.168.242.1, prefix: 24}
    state: active
    restart_on_change: true

- name: Remove them
  hypervisor.libvirt.network:
    name: "{{ item }}"
    state: absent
  loop: [hvl-example-isolated, hvl-example-nat, hvl-example-routed]
"""

RETURN = r"""
name:
  description: The network's name.
  returned: always
  type: str
actions:
  description: What was done (or would be, in check mode), in order, for example
    V(define), V(start), V(dhcp-host-add 52:54:00:12:34:56), V(autostart).
  returned: always
  type: list
  elements: str
differences:
  description: Fields of the persistent config that differed from the request.
  returned: when the network existed
  type: list
  elements: str
pending_restart:
  description: The running network still differs from the request; restart it to apply.
  returned: always
  type: bool
xml:
  description: The persistent XML after the task (predicted in check mode); null when absent.
  returned: always
  type: str
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host
from ansible_collections.hypervisor.libvirt.plugins.module_utils.network import NetworkManager

_SPEC_OPTIONS = ("forward", "bridge", "mtu", "mac", "domain", "dns", "ips", "ip")


def main() -> None:
    module = libvirt_module(
        {
            "name": {"type": "str", "required": True},
            "forward": {"type": "raw"},
            "bridge": {"type": "raw"},
            "mtu": {"type": "int"},
            "mac": {"type": "str"},
            "domain": {"type": "raw"},
            "dns": {"type": "dict"},
            "ips": {"type": "list", "elements": "dict"},
            "ip": {"type": "dict"},
            "xml": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "active", "inactive", "absent"], "default": "present"},
            "autostart": {"type": "bool"},
            "restart_on_change": {"type": "bool", "default": False},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
        mutually_exclusive=[("ip", "ips")] + [("xml", o) for o in _SPEC_OPTIONS],
    )
    p = module.params

    def action() -> dict:
        spec = None
        if p["xml"] is None and p["state"] != "absent" and any(p[k] is not None for k in _SPEC_OPTIONS):
            spec = {k: p[k] for k in ("name",) + _SPEC_OPTIONS if p[k] is not None}
        with Host(p["uri"]) as host:
            res = NetworkManager(host, check_mode=module.check_mode).ensure(
                spec, p["xml"], p["state"], p["autostart"], p["restart_on_change"], p["force"], name=p["name"])
        before, after = res.pop("before"), res.pop("after")
        res["xml"] = after
        if module._diff:
            res["diff"] = xmlutil.diff_result(before, after, "network %s" % p["name"])
        return res

    run_module(module, action)


if __name__ == "__main__":
    main()
