"""network.py: spec checking, XML against network.rng, and convergence on libvirt's test driver."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import network as nw
from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec, OperationFailed
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host

NAT = {"name": "hvl-ut-net", "forward": "nat", "bridge": {"name": "virbr-hvlut0"},
       "ip": {"address": "192.168.240.1", "netmask": "255.255.255.0",
              "dhcp": {"ranges": [{"start": "192.168.240.10", "end": "192.168.240.50"}]}}}


@pytest.fixture
def host():
    with Host("test:///default") as h:  # fresh state per connection
        yield h


def xml_of(host, name, flags=0):
    return host.call("read", lambda c: c.networkLookupByName(name).XMLDesc(flags))


@pytest.mark.parametrize("spec,expected", [
    ({"name": "n1"}, "<network><name>n1</name></network>"),
    ({"name": "n2", "forward": {"mode": "route", "dev": "eth0"}, "mtu": 9000, "domain": {"name": "lab", "local_only": True},
      "ips": [{"address": "192.168.241.1", "prefix": 24}, {"address": "fd00::1", "prefix": 64}]},
     "<network><name>n2</name><forward mode='route' dev='eth0'/><mtu size='9000'/>"
     "<domain name='lab' localOnly='yes'/><ip address='192.168.241.1' prefix='24'/>"
     "<ip family='ipv6' address='fd00::1' prefix='64'/></network>"),
    ({"name": "n3", "forward": {"mode": "bridge"}, "bridge": "br0"},
     "<network><name>n3</name><forward mode='bridge'/><bridge name='br0'/></network>"),
    ({"name": "n4", "forward": {"mode": "nat", "nat": {"ports": {"start": 1024, "end": 2048}}},
      "bridge": {"stp": False, "delay": 2},
      "dns": {"forwarders": ["192.168.242.53"], "hosts": [{"ip": "192.168.242.5", "hostnames": ["a", "b"]}]},
      "ip": {"address": "192.168.242.1", "dhcp": {"hosts": [{"mac": "52:54:00:AA:00:01", "ip": "192.168.242.5"}]}}},
     "<network><name>n4</name><forward mode='nat'><nat><port start='1024' end='2048'/></nat></forward>"
     "<bridge stp='off' delay='2'/><dns><forwarder addr='192.168.242.53'/><host ip='192.168.242.5'>"
     "<hostname>a</hostname><hostname>b</hostname></host></dns><ip address='192.168.242.1' prefix='24'><dhcp>"
     "<host mac='52:54:00:aa:00:01' ip='192.168.242.5'/></dhcp></ip></network>"),
])
def test_spec_to_xml_is_valid_and_as_expected(spec, expected):
    el = nw.network_config(nw.check_spec(spec))
    assert xmlutil.validate(el, "network")
    assert xmlutil.xml_equal(el, expected)
    # and back: parsing our XML gives the same checked spec
    assert nw.differences(nw.check_spec(spec), nw.check_spec(nw.parse_network(el)["spec"])) == []


@pytest.mark.parametrize("spec,path", [
    ({"name": "x", "forward": "tunnel"}, "forward.mode"),
    ({"name": "x", "bridge": {"name": "virbr-much-too-long"}}, "bridge.name"),
    ({"name": "x", "ip": {"address": "192.168.240.1", "dhcp": {"ranges": [{"start": "192.168.241.2",
                                                                           "end": "192.168.241.9"}]}}},
     "ip.dhcp.ranges[0].start"),
    ({"name": "x", "ips": [{"address": "192.168.240.1", "dhcp": {"hosts": [{"ip": "192.168.240.3"}]}}]},
     "ips[0].dhcp.hosts[0]"),
    ({"name": "x", "ips": [{"address": "192.168.240.1", "dhcp": {"hosts": [{"mac": "nope"}]}}]},
     "ips[0].dhcp.hosts[0].mac"),
    ({"name": "x", "ip": {"address": "192.168.240.300"}}, "ip.address"),
    ({"name": "x", "forward": "bridge"}, "bridge.name"),
    ({"name": "x", "colour": "red"}, ".colour"),
])
def test_bad_specs_name_the_path(spec, path):
    with pytest.raises(InvalidSpec) as err:
        nw.check_spec(spec)
    assert err.value.path == path


def test_libvirts_additions_are_not_differences():
    ours = nw.check_spec({"name": "n", "forward": "nat", "ip": {"address": "192.168.240.1", "prefix": 24}})
    libvirts = nw.check_spec(nw.parse_network("""
      <network><name>n</name><uuid>8f49eb78-01e6-4678-81ef-8729729835c1</uuid>
        <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
        <bridge name='virbr7' stp='on' delay='0'/><mac address='52:54:00:12:34:56'/>
        <ip address='192.168.240.1' netmask='255.255.255.0'/></network>""")["spec"])
    assert nw.differences(ours, libvirts) == []
    ours["bridge"]["name"] = "virbr8"
    ours["mtu"] = 1400
    assert nw.differences(ours, libvirts) == ["bridge.name", "mtu"]


def test_create_idempotent_check_mode_and_dhcp_updates_in_place(host):
    spec = copy.deepcopy(NAT)
    check = nw.NetworkManager(host, check_mode=True).ensure(spec, state="active", autostart=True)
    assert check["changed"] and check["actions"] == ["define", "start", "autostart"]
    assert host.call("list", lambda c: [n.name() for n in c.listAllNetworks()]) == ["default"]

    mgr = nw.NetworkManager(host)
    res = mgr.ensure(spec, state="active", autostart=True)
    assert res["changed"] and res["actions"] == ["define", "start", "autostart"]
    assert xmlutil.parse(res["after"]).find("bridge").get("name") == "virbr-hvlut0"
    assert mgr.ensure(spec, state="active", autostart=True)["changed"] is False

    spec["ip"]["dhcp"]["hosts"] = [{"mac": "52:54:00:00:00:01", "name": "a", "ip": "192.168.240.5"}]
    assert nw.NetworkManager(host, check_mode=True).ensure(spec, state="active")["actions"] == \
        ["dhcp-host-add 52:54:00:00:00:01"]
    assert xmlutil.parse(xml_of(host, "hvl-ut-net")).find("ip/dhcp/host") is None
    res = mgr.ensure(spec, state="active")
    assert res["actions"] == ["dhcp-host-add 52:54:00:00:00:01"] and res["pending_restart"] is False
    assert xmlutil.parse(xml_of(host, "hvl-ut-net")).find("ip/dhcp/host").get("ip") == "192.168.240.5"

    spec["ip"]["dhcp"]["hosts"][0]["ip"] = "192.168.240.6"
    spec["ip"]["dhcp"]["ranges"] = [{"start": "192.168.240.100", "end": "192.168.240.150"}]
    res = mgr.ensure(spec, state="active")
    assert res["actions"] == ["dhcp-host-modify 52:54:00:00:00:01", "dhcp-range-delete 192.168.240.10-192.168.240.50",
                              "dhcp-range-add 192.168.240.100-192.168.240.150"]
    dhcp = xmlutil.parse(xml_of(host, "hvl-ut-net")).find("ip/dhcp")
    assert dhcp.find("host").get("ip") == "192.168.240.6"
    assert [(r.get("start"), r.get("end")) for r in dhcp.findall("range")] == [("192.168.240.100", "192.168.240.150")]
    spec["ip"]["dhcp"]["hosts"] = []
    assert mgr.ensure(spec, state="active")["actions"] == ["dhcp-host-delete 52:54:00:00:00:01"]
    assert mgr.ensure(spec, state="active")["changed"] is False


def test_other_changes_redefine_and_keep_libvirts_ids(host):
    mgr = nw.NetworkManager(host)
    spec = {"name": "hvl-ut-net2", "ip": {"address": "192.168.241.1"}}
    first = xmlutil.parse(mgr.ensure(spec, state="inactive")["after"])
    spec["mtu"] = 1400
    spec["domain"] = "hvl.test"
    res = mgr.ensure(spec, state="inactive")
    assert res["actions"] == ["define"] and res["differences"] == ["mtu", "domain"]
    after = xmlutil.parse(xml_of(host, "hvl-ut-net2"))
    assert after.findtext("uuid") == first.findtext("uuid")
    assert after.find("mtu").get("size") == "1400" and after.find("domain").get("name") == "hvl.test"
    assert mgr.ensure(spec, state="inactive")["changed"] is False
    res = mgr.ensure(spec, state="absent")
    assert res["actions"] == ["undefine"] and res["after"] is None
    assert mgr.ensure(spec, state="absent")["changed"] is False


def test_in_use_network_is_not_stopped_without_force(host):
    mgr = nw.NetworkManager(host)
    mgr.ensure({"name": "hvl-ut-net3", "ip": {"address": "192.168.242.1"}}, state="active")
    host.call("define", lambda c: c.defineXML(
        "<domain type='test'><name>hvl-ut-user</name><memory>65536</memory><os><type>hvm</type></os>"
        "<devices><interface type='network'><source network='hvl-ut-net3'/></interface></devices></domain>").create())
    assert mgr.network_users("hvl-ut-net3") == ["hvl-ut-user"]
    with pytest.raises(OperationFailed) as err:
        mgr.ensure(name="hvl-ut-net3", state="absent")
    assert "hvl-ut-user" in str(err.value)
    assert mgr.ensure(name="hvl-ut-net3", state="absent", force=True)["actions"] == ["destroy", "undefine"]


def test_raw_xml_is_compared_semantically(host):
    mgr = nw.NetworkManager(host)
    xml = "<network><name>hvl-ut-net4</name><ip address='192.168.243.1' netmask='255.255.255.0'/></network>"
    assert mgr.ensure(xml=xml)["changed"] is True
    same = "<network><name>hvl-ut-net4</name><ip prefix='24' address='192.168.243.1'/></network>"
    assert mgr.ensure(xml=same)["changed"] is False
