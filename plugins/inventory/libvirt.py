# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: libvirt
short_description: libvirt guests of one or many hypervisors as inventory hosts
version_added: 1.1.0
description:
  - Every domain of every URI in O(uris) becomes a host, with its URI, UUID, state, addresses and the
    collection's metadata (the guest spec's C(metadata) key) as host variables, and C(ansible_host) set
    from its first address by O(address_preference).
  - Reads only bulk calls per URI - one C(getAllDomainStats), two short C(listAllDomains), one
    C(DHCPLeases) per network - plus each domain's XML (libvirt has no bulk call for it; several are
    in flight at once). For O(address_source=agent) or O(address_source=arp), one address query per
    running domain is added.
  - A URI that cannot be reached is a warning and the other URIs still give their hosts; with O(strict=true)
    it is an error.
  - Supports the C(constructed) options (O(compose), O(groups), O(keyed_groups), O(strict)) and
    Ansible's inventory cache.
  - The source file's name must end in C(libvirt.yml) or C(libvirt.yaml).
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - constructed
  - inventory_cache
requirements:
  - libvirt-python
  - lxml
options:
  plugin:
    description: The name of this plugin; it marks the file as this plugin's source.
    required: true
    type: str
    choices: [hypervisor.libvirt.libvirt]
  uris:
    description: libvirt URIs to read domains from (V(qemu:///system), V(qemu+ssh://root@hv1/system), V(test:///path/host.xml)).
    type: list
    elements: str
    default: [qemu:///system]
  read_only:
    description:
      - Open the connections read-only. libvirt refuses guest agent queries on a read-only connection.
    type: bool
    default: false
  inventory_hostname:
    description:
      - V(name) - the domain's name (a name already taken by a domain of another URI gets C(name@host) with
        the URI's host part, or the UUID when that is taken too).
      - V(uuid) - the domain's UUID.
    type: str
    choices: [name, uuid]
    default: name
  address_source:
    description:
      - Where addresses come from - V(lease) (libvirt's DHCP leases, read in bulk), V(agent) (QEMU guest agent),
        V(arp), V(any) (the first of those that answers for a domain) or V(none).
    type: str
    choices: [lease, agent, arp, any, none]
    default: lease
  address_preference:
    description:
      - Which address becomes C(ansible_host) - the first address matching the first entry that matches any,
        then the next entry.
      - An entry is an address family (V(ipv4), V(ipv6)), V(network:NAME) (an interface on libvirt network NAME)
        or a CIDR (V(192.168.122.0/24)).
      - A domain without a matching address gets no C(ansible_host).
    type: list
    elements: str
    default: [ipv4, ipv6]
  vars_prefix:
    description: Prefix of the host variables this plugin sets.
    type: str
    default: libvirt_
  filters:
    description:
      - Only domains matching every filter given become hosts.
      - C(state) - a state or list of states (V(running), V(shutoff), V(paused), ...).
      - C(name) - a shell pattern (V(web-*)) the name must match.
      - C(metadata) - a dict; each key must be in the domain's metadata with that value.
    type: dict
    default: {}
"""

EXAMPLES = r"""
# inventory/guests.libvirt.yml
plugin: hypervisor.libvirt.libvirt
uris:
  - qemu+ssh://root@hv1.example.com/system
  - qemu+ssh://root@hv2.example.com/system
filters:
  state: running
  metadata: {env: prod}
address_preference: [network:prod, ipv4]
keyed_groups:
  - key: libvirt_metadata.role | default('none')
    prefix: role
  - key: libvirt_uri | urlsplit('hostname')
    prefix: hv
groups:
  big: libvirt_vcpus >= 4
compose:
  ansible_user: "'debian'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /var/tmp/libvirt-inventory
cache_timeout: 600
"""

import fnmatch
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import LIBVIRT_IMPORT_ERROR, LXML_IMPORT_ERROR
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import HypervisorError

_HOST_VARS = ("name", "uuid", "state", "state_reason", "persistent", "autostart", "vcpus", "memory_mb",
              "title", "metadata", "addresses", "interfaces")


def read_uri(uri: str, read_only: bool, address_source: str) -> list[dict[str, Any]]:
    """The domains of one URI as plain dicts (what the cache holds)."""
    from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_info import describe
    from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host
    with Host(uri, read_only=read_only) as host:
        host.initialize()  # the close callback watches the connection: no test round trip before each call
        domains = describe(host, address_source=address_source, details=False)
    for d in domains:
        d["uri"] = uri
    return domains


def choose_address(addresses: list[dict[str, Any]], preference: list[str]) -> str | None:
    """The first address matching the earliest entry of ``preference`` that any address matches."""
    for entry in preference:
        for a in addresses:
            if _matches(a, entry):
                return a["address"]
    return None


def _matches(address: dict[str, Any], entry: str) -> bool:
    if entry in ("ipv4", "ipv6"):
        return address.get("family") == entry
    if entry.startswith("network:"):
        return address.get("network") == entry[len("network:"):]
    try:
        return ipaddress.ip_address(address["address"]) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def check_preference(preference: list[str]) -> None:
    for i, entry in enumerate(preference):
        if entry in ("ipv4", "ipv6") or (entry.startswith("network:") and len(entry) > len("network:")):
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise AnsibleParserError("address_preference[%d]: %r is not ipv4, ipv6, network:NAME or a CIDR"
                                     % (i, entry))


def check_filters(filters: dict[str, Any]) -> dict[str, Any]:
    unknown = set(filters) - {"state", "name", "metadata"}
    if unknown:
        raise AnsibleParserError("filters: unknown key(s) %s (state, name, metadata)" % ", ".join(sorted(unknown)))
    out = dict(filters)
    if "state" in out:
        out["state"] = [out["state"]] if isinstance(out["state"], str) else list(out["state"])
    if "metadata" in out and not isinstance(out["metadata"], dict):
        raise AnsibleParserError("filters.metadata: must be a dict of metadata keys and values")
    if "name" in out and not isinstance(out["name"], str):
        raise AnsibleParserError("filters.name: must be a shell pattern (a string)")
    return out


def selected(domain: dict[str, Any], filters: dict[str, Any]) -> bool:
    if "state" in filters and domain["state"] not in filters["state"]:
        return False
    if "name" in filters and not fnmatch.fnmatchcase(domain["name"], filters["name"]):
        return False
    meta = domain.get("metadata") or {}
    for key, value in (filters.get("metadata") or {}).items():
        if key not in meta or meta[key] != value:
            return False
    return True


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """libvirt domains of many URIs as hosts."""

    NAME = "hypervisor.libvirt.libvirt"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(("libvirt.yml", "libvirt.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        if LIBVIRT_IMPORT_ERROR or LXML_IMPORT_ERROR:
            raise AnsibleError("the hypervisor.libvirt.libvirt inventory needs libvirt-python and lxml on the "
                               "controller: %s" % (LIBVIRT_IMPORT_ERROR or LXML_IMPORT_ERROR).strip().splitlines()[-1])
        self._read_config_data(path)
        uris = self.get_option("uris") or []
        if not uris:
            raise AnsibleParserError("uris: give at least one libvirt URI")
        check_preference(self.get_option("address_preference") or [])
        filters = check_filters(self.get_option("filters") or {})

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        results: dict[str, Any] | None = None
        if use_cache:
            try:
                results = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if results is None:
            results = self._read_all(uris)
        if update_cache:
            self._cache[cache_key] = results
        self._populate(results, filters)

    def _read_all(self, uris: list[str]) -> dict[str, Any]:
        """URI -> its domains; a URI that fails is a warning (an error with strict) and left out."""
        results: dict[str, Any] = {"uris": {}, "failed": {}}
        for uri in uris:
            try:
                results["uris"][uri] = read_uri(uri, self.get_option("read_only"), self.get_option("address_source"))
            except HypervisorError as exc:
                if self.get_option("strict"):
                    raise AnsibleError("hypervisor.libvirt.libvirt: %s" % exc)
                self.display.warning("hypervisor.libvirt.libvirt: skipping %s: %s" % (uri, exc))
                results["failed"][uri] = str(exc)
        return results

    def _hostname(self, domain: dict[str, Any], taken: set[str]) -> str:
        if self.get_option("inventory_hostname") == "uuid":
            return domain["uuid"]
        name = domain["name"]
        if name not in taken:
            return name
        alt = "%s@%s" % (name, urlsplit(domain["uri"]).hostname or urlsplit(domain["uri"]).path or domain["uri"])
        return alt if alt not in taken else domain["uuid"]

    def _populate(self, results: dict[str, Any], filters: dict[str, Any]) -> None:
        prefix = self.get_option("vars_prefix")
        preference = self.get_option("address_preference") or []
        strict = self.get_option("strict")
        taken: set[str] = set()
        for uri, domains in results["uris"].items():
            for domain in domains:
                if not selected(domain, filters):
                    continue
                hostname = self._hostname(domain, taken)
                taken.add(hostname)
                self.inventory.add_host(hostname)
                self.inventory.set_variable(hostname, prefix + "uri", uri)
                for key in _HOST_VARS:
                    self.inventory.set_variable(hostname, prefix + key, domain.get(key))
                address = choose_address(domain.get("addresses") or [], preference)
                if address is not None:
                    self.inventory.set_variable(hostname, "ansible_host", address)
                hostvars = self.inventory.get_host(hostname).get_vars()
                self._set_composite_vars(self.get_option("compose"), hostvars, hostname, strict=strict)
                hostvars = self.inventory.get_host(hostname).get_vars()
                self._add_host_to_composed_groups(self.get_option("groups"), hostvars, hostname, strict=strict)
                self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, hostname, strict=strict)
