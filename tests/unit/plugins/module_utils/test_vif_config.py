"""Every interface type and option -> XML that libvirt's domain.rng accepts, with the values asked for."""

from __future__ import annotations

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.vif import LibvirtVIFDriver

pytestmark = pytest.mark.skipif(xmlutil.schema_path("domain") is None, reason="libvirt's RelaxNG schemas missing")


def config(spec):
    # get_config validates the <interface> against domain.rng inside a <domain> wrapper
    return LibvirtVIFDriver(host=None).get_config(spec)


def one(el, xpath):
    found = el.xpath(xpath)
    assert len(found) == 1, (xpath, xmlutil.to_string(el))
    return found[0]


@pytest.mark.parametrize("spec, checks", [
    ({"type": "network", "source": "default"},
     {"@type": "network", "source/@network": "default", "model/@type": "virtio"}),
    ({"type": "bridge", "source": "br0", "model": "e1000"},
     {"@type": "bridge", "source/@bridge": "br0", "model/@type": "e1000"}),
    ({"type": "direct", "source": {"dev": "eth0", "mode": "bridge"}},
     {"@type": "direct", "source/@dev": "eth0", "source/@mode": "bridge"}),
    ({"type": "direct", "source": {"dev": "eth0", "mode": "passthrough"}},
     {"source/@mode": "passthrough"}),
    ({"type": "direct", "source": {"dev": "eth1", "mode": "private"}}, {"source/@mode": "private"}),
    ({"type": "direct", "source": {"dev": "eth1", "mode": "vepa"}}, {"source/@mode": "vepa"}),
    ({"type": "ethernet", "target": "hvltap0"}, {"@type": "ethernet", "target/@dev": "hvltap0"}),
    ({"type": "user"}, {"@type": "user"}),
    ({"type": "bridge", "source": "ovsbr0", "virtualport": {"type": "openvswitch"}},
     {"virtualport/@type": "openvswitch"}),
    ({"type": "bridge", "source": "ovsbr0",
      "virtualport": {"type": "openvswitch", "parameters": {"interfaceid": "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"}}},
     {"virtualport/parameters/@interfaceid": "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f"}),
    ({"type": "network", "source": "default", "mac": "52:54:00:AB:CD:EF"},
     {"mac/@address": "52:54:00:ab:cd:ef"}),
    ({"type": "network", "source": "default", "mtu": 9000}, {"mtu/@size": "9000"}),
    ({"type": "network", "source": "default", "queues": 4}, {"driver/@queues": "4"}),
    ({"type": "network", "source": "default", "link_state": "down"}, {"link/@state": "down"}),
    ({"type": "network", "source": "default", "boot_order": 2}, {"boot/@order": "2"}),
    ({"type": "network", "source": "default", "vlan": 42}, {"vlan/tag/@id": "42"}),
    ({"type": "bridge", "source": "ovsbr0", "virtualport": {"type": "openvswitch"}, "vlan": {"tags": [10, 20]}},
     {"vlan/@trunk": "yes", "count(vlan/tag)": 2.0}),
    ({"type": "network", "source": "default",
      "bandwidth": {"inbound": {"average": 1000, "peak": 5000, "burst": 1024}, "outbound": {"average": 128}}},
     {"bandwidth/inbound/@average": "1000", "bandwidth/inbound/@peak": "5000",
      "bandwidth/inbound/@burst": "1024", "bandwidth/outbound/@average": "128"}),
    ({"type": "network", "source": "default", "filter": {"name": "clean-traffic"}},
     {"filterref/@filter": "clean-traffic", "count(filterref/parameter)": 0.0}),
    ({"type": "network", "source": "default",
      "filter": {"name": "clean-traffic", "parameters": {"IP": ["192.0.2.10", "192.0.2.11"], "CTRL_IP_LEARNING": "none"}}},
     {"count(filterref/parameter[@name='IP'])": 2.0,
      "filterref/parameter[@name='CTRL_IP_LEARNING']/@value": "none"}),
])
def test_config_validates_and_says_what_was_asked(spec, checks):
    el = config(spec)
    assert el.tag == "interface"
    for xpath, want in checks.items():
        got = el.xpath(xpath)
        if isinstance(got, list):
            assert len(got) == 1, (xpath, xmlutil.to_string(el))
            got = got[0]
        assert got == want, (xpath, xmlutil.to_string(el))


@pytest.mark.parametrize("spec, path", [
    ({"type": "direct"}, "interface.source"),
    ({"type": "direct", "source": {"mode": "bridge"}}, "interface.source.dev"),
    ({"type": "direct", "source": {"dev": "eth0", "mode": "loose"}}, "interface.source.mode"),
    ({"type": "network"}, "interface.source"),
    ({"type": "bridge"}, "interface.source"),
    ({"type": "ethernet", "source": "br0"}, "interface.source"),
    ({"type": "ether", "source": "br0"}, "interface.type"),
    ({"type": "direct", "source": {"dev": "eth0"}, "virtualport": {"type": "openvswitch"}},
     "interface.virtualport.type"),
    ({"type": "bridge", "source": "br0", "virtualport": {"type": "802.1Qbh"}}, "interface.virtualport.type"),
    ({"type": "network", "source": "default", "model": "e1000", "queues": 2}, "interface.queues"),
    ({"type": "network", "source": "default", "mac": "52:54:00"}, "interface.mac"),
    ({"type": "network", "source": "default", "link_state": "sideways"}, "interface.link_state"),
    ({"type": "network", "source": "default", "speed": 10}, "interface.speed"),
])
def test_bad_specs_name_the_path(spec, path):
    with pytest.raises(InvalidSpec) as err:
        config(spec)
    assert err.value.path == path, str(err.value)


def test_validate_interface_normalises_as_the_guest_spec_does():
    from ansible_collections.hypervisor.libvirt.plugins.module_utils import guest_spec
    nic = {"source": "default", "mac": "52:54:00:AB:CD:EF", "filter": {"name": "clean-traffic"}}
    alone = guest_spec.validate_interface(nic)
    in_guest = guest_spec.validate_spec({"name": "hvl-x", "memory": 64, "interfaces": [nic]})["interfaces"][0]
    assert alone == in_guest
    assert alone["type"] == "network" and alone["model"] == "virtio" and alone["mac"] == "52:54:00:ab:cd:ef"
    with pytest.raises(InvalidSpec) as err:
        guest_spec.validate_interface({"source": "default", "speed": 10}, "nics[2]")
    assert err.value.path == "nics[2].speed"
    with pytest.raises(InvalidSpec) as err:
        guest_spec.validate_interface("default", "nics[0]")
    assert err.value.path == "nics[0]"
