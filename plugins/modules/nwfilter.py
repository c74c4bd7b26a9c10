#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nwfilter
short_description: Manage libvirt network filters (nwfilters) declaratively
version_added: 1.0.0
description:
  - Defines, changes and removes libvirt network filters from structured rules or raw XML.
  - Rules are checked against libvirt's C(nwfilter.rng) before anything changes; an unknown
    protocol or attribute is an error naming the rule, for example C(rules[3].tcp.dstprt).
  - An existing filter keeps its UUID and is only redefined when it differs semantically
    (libvirt's defaults such as rule priority 500, case of MAC addresses, hex or decimal
    numbers and symbolic protocol names are not differences).
  - A filter used by another filter, by a running guest's binding or by a defined guest's
    interface is not removed unless O(force=true).
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  name:
    description: The filter's name (letters, digits, C(_), C(-), C(.)).
    type: str
    required: true
  rules:
    description:
      - The filter's rules, in order. Each is a dict with C(action) (V(drop), V(reject), V(accept),
        V(return), V(continue)), C(direction) (V(in), V(out), V(inout)), optional C(priority)
        (an integer -1000..1000, libvirt's default 500) and C(statematch) (a boolean, V(false), V(no)
        or V(0) turn connection tracking off; V(true), V(yes), V(1) or leaving it out keep libvirt's
        default, on), and at most one protocol key holding that protocol's match attributes.
      - A bad C(action), C(direction), C(priority) or C(statematch) is an error naming the rule,
        for example C(rules[0].statematch), before anything changes.
      - Protocols are V(mac), V(vlan), V(stp), V(arp), V(rarp), V(ip), V(ipv6), V(tcp), V(udp),
        V(sctp), V(icmp), V(igmp), V(esp), V(ah), V(udplite), V(all) and the IPv6 variants
        V(tcp-ipv6), V(udp-ipv6), V(sctp-ipv6), V(icmpv6), V(all-ipv6), V(esp-ipv6), V(ah-ipv6),
        V(udplite-ipv6).
      - Attribute names are libvirt's (C(srcmacaddr), C(srcipaddr), C(dstipaddr), C(srcportstart),
        C(dstportstart), C(dstportend), C(protocolid), C(state), C(comment), ...); hyphenated ones
        may be written with C(_) (C(connlimit_above)). Values may be variables such as C($IP)
        where libvirt allows them.
    type: list
    elements: dict
  filterrefs:
    description:
      - Other filters this one includes, each a name or a dict with C(filter) and C(parameters)
        (a dict of parameter name to one value or a list of values, for example C(IP) to two addresses).
      - Every referenced filter must exist; this is checked before anything changes.
    type: list
    elements: raw
  chain:
    description:
      - The chain the filter's rules go to, V(root) (default) or V(mac), V(stp), V(vlan),
        V(arp), V(rarp), V(ipv4), V(ipv6) with an optional suffix.
      - Like every option of a present filter, leaving it out means its default, not "keep what is
        there" - a filter defined on another chain is moved back to V(root), just as omitted
        O(rules) and O(filterrefs) mean none and an omitted O(priority) means the chain's default.
      - libvirt moves an existing filter to another chain in place (its UUID kept), also while
        guests use it.
    type: str
  priority:
    description: The filter's priority in its chain (-1000..1000); libvirt's default depends on the chain.
    type: int
  xml:
    description:
      - The whole filter as libvirt XML instead of O(rules), O(filterrefs), O(chain) and O(priority).
      - It is compared semantically like structured input; its C(name) must equal O(name).
    type: str
  state:
    description: Whether the filter exists.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - With O(state=absent), remove the filter although other filters or defined guests refer to it.
      - libvirt still refuses while a running guest uses it.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports exactly what would change and changes nothing.
  diff_mode:
    support: full
    description: The filter's XML before and after.
  idempotent:
    support: full
    description: A second identical run reports no change; the comparison is semantic, not textual.
notes:
  - The stock filters (package C(libvirt-daemon-config-nwfilter)) such as C(clean-traffic),
    C(allow-dhcp) and C(no-ip-spoofing) can be referenced in O(filterrefs).
  - A guest interface uses a filter through C(<filterref filter='NAME'/>); see
    M(hypervisor.libvirt.domain_interface).
seealso:
  - name: libvirt network filters
    description: The rule and attribute reference.
    link: https://libvirt.org/formatnwfilter.html
"""

EXAMPLES = r"""
- name: A web server filter - stock anti-spoofing, DHCP, SSH and HTTP in, the rest dropped
  hypervisor.libvirt.nwfilter:
    name: hvl-example-web
    filterrefs:
      - filter: clean-traffic
        parameters:
          IP: 192.168.240.10
      - allow-dhcp
    rules:
      - {action: accept, direction: in, priority: 400, tcp: {dstportstart: 22}}
      - {action: accept, direction: in, priority: 400, tcp: {dstportstart: 80, dstportend: 81}}
      - {action: accept, direction: inout, priority: 450, icmp: {}}
      - {action: drop, direction: in, priority: 900, all: {}}

- name: The same from raw XML
  hypervisor.libvirt.nwfilter:
    name: hvl-example-raw
    xml: |
      <filter name='hvl-example-raw' chain='ipv4'>
        <rule action='drop' direction='in'><ip protocol='tcp' dstportstart='25'/></rule>
      </filter>

- name: Remove the filters (refused while anything uses them)
  hypervisor.libvirt.nwfilter:
    name: "{{ item }}"
    state: absent
  loop: [hvl-example-web, hvl-example-raw]
"""

RETURN = r"""
name:
  description: The filter's name.
  returned: always
  type: str
uuid:
  description: The filter's UUID (kept across changes); null when absent.
  returned: always
  type: str
xml:
  description: The filter's XML after the task (predicted in check mode); null when absent.
  returned: always
  type: str
used_by:
  description: What uses the filter (filled when O(state=absent)).
  returned: when state is absent
  type: list
  elements: str
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.firewall import NWFilterFirewall, parse_filter
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host


def main() -> None:
    module = libvirt_module(
        {
            "name": {"type": "str", "required": True},
            "rules": {"type": "list", "elements": "dict"},
            "filterrefs": {"type": "list", "elements": "raw"},
            "chain": {"type": "str"},
            "priority": {"type": "int"},
            "xml": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
        mutually_exclusive=[("xml", "rules"), ("xml", "filterrefs"), ("xml", "chain"), ("xml", "priority")],
    )
    p = module.params

    def action() -> dict:
        with Host(p["uri"]) as host:
            firewall = NWFilterFirewall(host)
            result = {"name": p["name"]}
            if p["state"] == "absent":
                result["used_by"] = firewall.filter_in_use(p["name"]) if firewall.filter_exists(p["name"]) else []
                changed, before = firewall.undefine_filter(p["name"], p["force"], module.check_mode)
                after = None
            else:
                changed, before, after = firewall.define_filter(
                    p["name"], p["rules"], p["filterrefs"], p["chain"], p["priority"], p["xml"],
                    check_mode=module.check_mode)
                for warning in firewall.warnings:
                    module.warn(warning)
        result.update(changed=changed, xml=after, uuid=parse_filter(after)["uuid"] if after else None)
        if module._diff:
            result["diff"] = xmlutil.diff_result(before, after, "nwfilter %s" % p["name"])
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
