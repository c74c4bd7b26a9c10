"""Plug, update and unplug against the real libvirtd.

libvirt's test:///default driver has no attach/update/detach-device nor
nwfilters, so these tests use qemu:///system with objects of their own
(``hvl-ut-vif-*``): a defined (shut-off) domain for the persistent
configuration, and a running diskless TCG domain for in-place live updates.
Everything is removed afterwards.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import vif, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    HypervisorError,
    InvalidSpec,
    OperationFailed,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host

URI = "qemu:///system"
TAG = "hvl-ut-vif-%d" % os.getpid()
NET = TAG
MAC = "52:54:00:5e:00:01"


def _daemon_up() -> bool:
    try:
        Host(URI).get_libversion()
        return True
    except HypervisorError:
        return False


pytestmark = pytest.mark.skipif(not _daemon_up(), reason="no libvirtd at qemu:///system")


def _virsh(*args: str) -> None:
    subprocess.run(["virsh", "-q", "-c", URI] + list(args), capture_output=True, check=False)


@pytest.fixture(scope="module")
def host():
    h = Host(URI)
    conn = h.get_connection()
    # an isolated network without addresses: nothing on it can reach anything
    net = conn.networkDefineXML("<network><name>%s</name><bridge name='hvlut%d' stp='off'/></network>"
                                % (NET, os.getpid() % 100000))
    net.create()
    yield h
    for dom in conn.listAllDomains():
        if dom.name().startswith(TAG):
            _virsh("destroy", dom.name())
            _virsh("undefine", dom.name())
    net.destroy()
    net.undefine()
    h.close()


def _domain_xml(name: str, nic: bool = True) -> str:
    nic_xml = ("<interface type='network'><source network='%s'/><mac address='%s'/>"
               "<model type='virtio'/></interface>" % (NET, MAC)) if nic else ""
    return ("<domain type='qemu'><name>%s</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os><features><acpi/><apic/></features>"
            "<devices>%s<controller type='usb' model='none'/><memballoon model='none'/></devices></domain>"
            % (name, nic_xml))


@pytest.fixture
def defined(host, request):
    name = "%s-%s" % (TAG, request.node.name[:20].replace("[", "-").replace("]", ""))
    guest = host.write_instance_config(_domain_xml(name))
    yield guest
    _virsh("destroy", name)
    _virsh("undefine", name)


@pytest.fixture(scope="module")
def running(host):
    name = TAG + "-run"
    guest = host.write_instance_config(_domain_xml(name))
    guest.launch()
    yield guest
    _virsh("destroy", name)
    _virsh("undefine", name)


def nic(**kw):
    spec = {"type": "network", "source": NET, "mac": MAC, "model": "virtio"}
    spec.update(kw)
    return spec


def iface(guest, inactive=True, mac=MAC):
    return vif.find_interface(guest.get_xml_desc(inactive=inactive), mac=mac)


def test_check_mode_predicts_and_changes_nothing(host, defined):
    before = defined.get_xml_desc(inactive=True)
    drv = vif.LibvirtVIFDriver(host, check_mode=True)
    res = drv.plug(defined, nic(mtu=9000), live=False, persistent=True)
    assert res["changed"] and res["actions"] == ["update-config"]
    assert "9000" in res["after"]["config"]
    assert xmlutil.xml_equal(before, defined.get_xml_desc(inactive=True))


def test_update_config_then_idempotent(host, defined):
    res = vif.LibvirtVIFDriver(host).plug(defined, nic(mtu=9000, link_state="down"), live=False, persistent=True)
    assert res["actions"] == ["update-config"]
    el = iface(defined)
    assert el.find("mtu").get("size") == "9000" and el.find("link").get("state") == "down"
    again = vif.LibvirtVIFDriver(host).plug(defined, nic(mtu=9000, link_state="down"), live=False, persistent=True)
    assert not again["changed"] and again["actions"] == []
    # the libvirt-assigned PCI address was kept
    assert el.find("address") is not None


def test_filter_on_and_off(host, defined):
    spec = nic(filter={"name": "clean-traffic", "parameters": {"IP": "192.0.2.10"}})
    assert vif.LibvirtVIFDriver(host).plug(defined, spec, live=False, persistent=True)["changed"]
    ref = iface(defined).find("filterref")
    assert ref.get("filter") == "clean-traffic"
    assert [(p.get("name"), p.get("value")) for p in ref] == [("IP", "192.0.2.10")]
    assert not vif.LibvirtVIFDriver(host).plug(defined, spec, live=False, persistent=True)["changed"]
    res = vif.LibvirtVIFDriver(host).plug(defined, nic(), live=False, persistent=True)
    assert res["actions"] == ["update-config"]
    assert iface(defined).find("filterref") is None


def test_missing_filter_or_network_is_caught_before_the_domain_is_touched(host, defined):
    before = defined.get_xml_desc(inactive=True)
    with pytest.raises(InvalidSpec) as err:
        vif.LibvirtVIFDriver(host).plug(defined, nic(filter={"name": "hvl-ut-no-such-filter"}),
                                        live=False, persistent=True)
    assert err.value.path == "interface.filter.name"
    with pytest.raises(InvalidSpec) as err:
        vif.LibvirtVIFDriver(host).plug(defined, nic(source="hvl-ut-no-such-net", mac="52:54:00:5e:00:09"),
                                        live=False, persistent=True)
    assert err.value.path == "interface.source"
    assert xmlutil.xml_equal(before, defined.get_xml_desc(inactive=True))


def test_plug_without_mac_then_found_by_source(host, defined):
    _virsh("detach-interface", defined.name, "network", "--mac", MAC, "--config")
    spec = {"type": "network", "source": NET, "model": "e1000"}
    res = vif.LibvirtVIFDriver(host).plug(defined, spec, live=False, persistent=True)
    assert res["actions"] == ["attach-config"]
    el = vif.find_interface(defined.get_xml_desc(inactive=True), itype="network", source=NET)
    assert el.find("model").get("type") == "e1000" and el.find("mac") is not None
    assert not vif.LibvirtVIFDriver(host).plug(defined, spec, live=False, persistent=True)["changed"]


def test_unplug_then_idempotent(host, defined):
    res = vif.LibvirtVIFDriver(host).unplug(defined, {"mac": MAC}, live=False, persistent=True)
    assert res["actions"] == ["detach-config"] and res["after"]["config"] is None
    assert iface(defined) is None
    assert not vif.LibvirtVIFDriver(host).unplug(defined, {"mac": MAC}, live=False, persistent=True)["changed"]


def test_live_scope_needs_a_running_domain(host, defined):
    with pytest.raises(OperationFailed):
        vif.LibvirtVIFDriver.scope(defined, "live")
    assert vif.LibvirtVIFDriver.scope(defined, "both") == (False, True)


def test_module_result_diff(host, defined):
    res = vif.module_result(vif.LibvirtVIFDriver(host, check_mode=True), defined.name,
                            nic(link_state="down"), None, diff=True)
    assert res["changed"] and res["actions"] == ["update-config"]
    assert res["interface"]["link_state"] == "down"
    assert len(res["diff"]) == 1 and "state=\"down\"" in res["diff"][0]["after"]
    assert "state=\"down\"" not in res["diff"][0]["before"]
    with pytest.raises(InvalidSpec) as err:
        vif.module_result(vif.LibvirtVIFDriver(host), defined.name, nic(), "52:54:00:00:00:99")
    assert err.value.path == "mac"


# ------------------------------------------------------------------ running guest
def test_live_in_place_updates(host, running):
    def tap():
        return iface(running, inactive=False).find("target").get("dev")
    dev = tap()
    spec = nic(filter={"name": "clean-traffic", "parameters": {"IP": "192.0.2.10"}}, link_state="down")
    res = vif.LibvirtVIFDriver(host).plug(running, spec, live=True, persistent=True)
    assert res["actions"] == ["update-config", "update-live"] and not res["pending_restart"]
    live = iface(running, inactive=False)
    assert live.find("filterref").get("filter") == "clean-traffic"
    assert live.find("link").get("state") == "down"
    assert tap() == dev  # the same NIC: updated in place, not replugged
    conn = host.get_connection()
    binding = conn.nwfilterBindingLookupByPortDev(dev)
    assert xmlutil.parse(binding.XMLDesc()).find("filterref").get("filter") == "clean-traffic"
    again = vif.LibvirtVIFDriver(host).plug(running, spec, live=True, persistent=True)
    assert not again["changed"] and not again["pending_restart"]
    # and off again
    res = vif.LibvirtVIFDriver(host).plug(running, nic(), live=True, persistent=True)
    assert res["actions"] == ["update-config", "update-live"]
    assert iface(running, inactive=False).find("filterref") is None
    with pytest.raises(libvirt.libvirtError):
        conn.nwfilterBindingLookupByPortDev(dev)


def test_live_change_needing_replug_is_left_pending_without_consent(host, running):
    res = vif.LibvirtVIFDriver(host).plug(running, nic(mtu=1400), live=True, persistent=True)
    assert res["actions"] == ["update-config"] and res["pending_restart"]
    assert iface(running, inactive=False).find("mtu") is None
    assert iface(running).find("mtu").get("size") == "1400"
    # a second run: nothing more to do, still pending
    again = vif.LibvirtVIFDriver(host).plug(running, nic(mtu=1400), live=True, persistent=True)
    assert not again["changed"] and again["pending_restart"]


def test_hot_plug_gets_one_mac_in_both_configs(host, running):
    spec = {"type": "network", "source": NET, "model": "virtio", "link_state": "down"}
    mac2 = "52:54:00:5e:00:02"
    res = vif.LibvirtVIFDriver(host).plug(running, dict(spec, mac=mac2), live=True, persistent=True)
    assert res["actions"] == ["attach-config", "attach-live"]
    assert iface(running, inactive=False, mac=mac2) is not None and iface(running, mac=mac2) is not None
    assert not vif.LibvirtVIFDriver(host).plug(running, dict(spec, mac=mac2), live=True, persistent=True)["changed"]
    # the persistent copy goes; the live NIC of a guest without an OS cannot be unplugged, so leave it
    res = vif.LibvirtVIFDriver(host).unplug(running, {"mac": mac2}, live=False, persistent=True)
    assert res["actions"] == ["detach-config"] and res["pending_restart"]
