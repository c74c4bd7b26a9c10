"""The VIF driver's desired-vs-current rules, on XML as libvirt really returns it."""

from __future__ import annotations

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import vif, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec

# an interface as `virsh dumpxml` of a running qemu guest shows it
LIVE = """
<interface type='network'>
  <mac address='52:54:00:aa:00:01'/>
  <source network='hvl-net' portid='0f3c1e9a-1111-2222-3333-444455556666' bridge='virbr-hvl'/>
  <target dev='vnet7'/>
  <model type='virtio'/>
  <filterref filter='clean-traffic'>
    <parameter name='IP' value='192.0.2.10'/>
    <parameter name='IP' value='192.0.2.11'/>
  </filterref>
  <alias name='net0'/>
  <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
</interface>
"""


def el(xml: str):
    return xmlutil.parse(xml)


def desired(extra: str = "", itype: str = "network", source: str = "<source network='hvl-net'/>") -> object:
    return el("<interface type='%s'><mac address='52:54:00:AA:00:01'/>%s<model type='virtio'/>%s</interface>"
              % (itype, source, extra))


FILTER = "<filterref filter='clean-traffic'><parameter name='IP' value='192.0.2.11'/>" \
         "<parameter name='IP' value='192.0.2.10'/></filterref>"


@pytest.mark.parametrize("extra, source, itype, want", [
    # what libvirt adds (portid, bridge, target, alias, address) is no difference;
    # parameter order in a filterref is none either
    (FILTER, "<source network='hvl-net'/>", "network", []),
    # leaving the filter out removes it
    ("", "<source network='hvl-net'/>", "network", ["filterref"]),
    # another parameter value
    ("<filterref filter='clean-traffic'><parameter name='IP' value='192.0.2.10'/></filterref>",
     "<source network='hvl-net'/>", "network", ["filterref"]),
    # link down is a change, link up is the default
    (FILTER + "<link state='down'/>", "<source network='hvl-net'/>", "network", ["link"]),
    (FILTER + "<link state='up'/>", "<source network='hvl-net'/>", "network", []),
    (FILTER + "<bandwidth><inbound average='1000'/></bandwidth>", "<source network='hvl-net'/>", "network",
     ["bandwidth"]),
    (FILTER + "<mtu size='9000'/>", "<source network='hvl-net'/>", "network", ["mtu"]),
    (FILTER + "<vlan><tag id='42'/></vlan>", "<source network='hvl-net'/>", "network", ["vlan"]),
    (FILTER, "<source network='other'/>", "network", ["source"]),
    (FILTER, "<source bridge='br0'/>", "bridge", ["type", "source"]),
])
def test_differences(extra, source, itype, want):
    assert vif.differences(desired(extra, itype, source), el(LIVE)) == want


def test_model_left_out_is_no_difference_but_another_model_is():
    bare = el("<interface type='network'><source network='hvl-net'/>%s</interface>" % FILTER)
    assert vif.differences(bare, el(LIVE)) == []
    e1000 = el("<interface type='network'><source network='hvl-net'/><model type='e1000'/>%s</interface>" % FILTER)
    assert vif.differences(e1000, el(LIVE)) == ["model"]


def test_only_filter_link_bandwidth_are_live_updatable():
    assert vif.live_updatable(["filterref", "link", "bandwidth"])
    for field in ("source", "model", "mtu", "vlan", "driver", "virtualport", "type", "boot"):
        assert not vif.live_updatable(["filterref", field]), field


def test_merge_keeps_libvirts_parts_and_replaces_the_changed_fields():
    new = vif.merge(desired("<link state='down'/>"), el(LIVE), ["filterref", "link"])
    assert new.find("filterref") is None
    assert new.find("link").get("state") == "down"
    # what libvirt needs to find the live device is still there
    assert new.find("alias").get("name") == "net0"
    assert new.find("address").get("slot") == "0x03"
    assert new.find("target").get("dev") == "vnet7"
    assert new.find("source").get("portid")
    # and the result compares equal to what was asked
    assert vif.differences(desired("<link state='down'/>"), new) == []


def test_merge_on_type_change_starts_from_desired_with_the_same_mac_and_slot():
    want = el("<interface type='bridge'><source bridge='br0'/><model type='virtio'/></interface>")
    new = vif.merge(want, el(LIVE), ["type", "source"])
    assert new.get("type") == "bridge"
    assert new.find("source").attrib == {"bridge": "br0"}
    assert new.find("mac").get("address") == "52:54:00:aa:00:01"
    assert new.find("address").get("slot") == "0x03"
    assert new.find("filterref") is None


@pytest.mark.parametrize("which, fields_xml, replug, action, pending", [
    ("live", FILTER, False, "none", False),
    ("live", "", False, "update", False),                  # drop the filter in place
    ("live", FILTER + "<link state='down'/>", False, "update", False),
    ("live", FILTER + "<mtu size='9000'/>", False, "pending", True),  # not without consent
    ("live", FILTER + "<mtu size='9000'/>", True, "replug", False),
    ("config", FILTER + "<mtu size='9000'/>", False, "update", False),  # the definition just changes
])
def test_plan(which, fields_xml, replug, action, pending):
    got_action, new, got_pending = vif.LibvirtVIFDriver._plan(desired(fields_xml), el(LIVE), which, replug)
    assert (got_action, got_pending) == (action, pending)
    if action in ("update", "replug"):
        assert vif.differences(desired(fields_xml), new) == []


def test_plan_attach_when_missing():
    action, new, pending = vif.LibvirtVIFDriver._plan(desired(), None, "config", False)
    assert action == "attach" and not pending
    assert xmlutil.xml_equal(new, desired())


DOMAIN = """
<domain type='qemu'><name>x</name><devices>
  <interface type='network'><mac address='52:54:00:00:00:01'/><source network='a'/></interface>
  <interface type='network'><mac address='52:54:00:00:00:02'/><source network='b'/></interface>
  <interface type='network'><mac address='52:54:00:00:00:03'/><source network='b'/></interface>
  <interface type='bridge'><mac address='52:54:00:00:00:04'/><source bridge='a'/></interface>
</devices></domain>
"""


def test_find_by_mac_case_insensitive():
    assert vif.find_interface(DOMAIN, mac="52:54:00:00:00:02").find("source").get("network") == "b"
    assert vif.find_interface(DOMAIN, mac="52:54:00:00:00:04".upper()).get("type") == "bridge"
    assert vif.find_interface(DOMAIN, mac="52:54:00:00:00:09") is None


def test_find_by_source_and_type():
    assert vif.find_interface(DOMAIN, itype="network", source="a").find("mac").get("address") == "52:54:00:00:00:01"
    assert vif.find_interface(DOMAIN, itype="bridge", source="a").find("mac").get("address") == "52:54:00:00:00:04"
    assert vif.find_interface(DOMAIN, itype="network", source="c") is None


def test_find_by_source_refuses_to_guess_between_two():
    with pytest.raises(InvalidSpec) as err:
        vif.find_interface(DOMAIN, itype="network", source="b")
    assert err.value.path == "interface"
    assert "mac" in str(err.value)


def test_describe():
    d = vif.describe(LIVE)
    assert d["type"] == "network" and d["source"] == "hvl-net" and d["mac"] == "52:54:00:aa:00:01"
    assert d["filter"]["name"] == "clean-traffic"
    assert d["model"] == "virtio" and d["target"] == "vnet7" and d["link_state"] is None
    assert vif.describe(None) is None
