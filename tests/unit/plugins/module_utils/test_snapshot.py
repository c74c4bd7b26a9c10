"""The snapshot module's decisions, through the shared plan, on libvirt's test driver."""

from __future__ import annotations

import uuid as uuidlib

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec, NotFound
from ansible_collections.hypervisor.libvirt.plugins.module_utils.plan import Plan
from ansible_collections.hypervisor.libvirt.plugins.module_utils.snapshot import (
    SnapshotRequest,
    converge,
    snapshot_xml,
)


@pytest.fixture
def dom(host):
    """A running test-driver domain of its own (test:///default's state is shared within the process)."""
    name = "hvl-unit-snap-%s" % uuidlib.uuid4().hex[:8]
    xml = ("<domain type='test'><name>%s</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
           "<os><type>hvm</type></os><devices><disk type='file' device='disk'><source file='/guest/%s.img'/>"
           "<target dev='vda' bus='virtio'/></disk></devices></domain>" % (name, name))
    d = host.call("define", lambda c: c.defineXML(xml))
    d.create()
    yield name
    try:
        d.destroy()
    except libvirt.libvirtError:
        pass
    d.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def run(host, check=False, **kw):
    return converge(host, SnapshotRequest(**kw), check_mode=check)


def names(host, dom):
    return host.get_guest(name=dom).list_snapshots()


def test_create_check_mode_records_and_changes_nothing(host, dom):
    r = run(host, True, domain=dom, name="s1", description="one")
    assert r["changed"] and r["actions"] == ["create"] and r["current"] == "s1"
    assert [s["name"] for s in r["snapshots"]] == ["s1"]
    assert r["diff"]["before"] == "" and "<name>s1</name>" in r["diff"]["after"]
    assert names(host, dom) == []


def test_create_then_idempotent_by_name(host, dom):
    r = run(host, domain=dom, name="s1", description="one")
    assert r["changed"] and r["snapshot"]["description"] == "one" and r["snapshot"]["state"] == "running"
    assert "<name>%s</name>" % dom in r["domain_xml"] and r["current"] == "s1"
    assert names(host, dom) == ["s1"]
    for check in (False, True):
        again = run(host, check, domain=dom, name="s1", description="one")
        assert not again["changed"] and again["actions"] == []
    assert not run(host, domain=dom, name="s1")["changed"]  # naming less is no difference


def test_changing_what_a_snapshot_holds_is_an_error_naming_the_field(host, dom):
    run(host, domain=dom, name="s1", description="one")
    with pytest.raises(InvalidSpec, match="^description: .*cannot change"):
        run(host, domain=dom, name="s1", description="two")
    with pytest.raises(InvalidSpec, match="^disks\\[0\\]"):
        run(host, domain=dom, name="s1", disks=[{"target": "vdz"}])
    assert names(host, dom) == ["s1"]


def test_revert_honours_revert_state_and_check_mode(host, dom):
    run(host, domain=dom, name="s1")
    guest = host.get_guest(name=dom)
    guest.pause()
    r = run(host, True, domain=dom, name="s1", state="reverted")
    assert r["changed"] and r["actions"] == ["revert"] and r["domain_state"] == "running"
    assert guest.get_state() == "paused"
    r = run(host, domain=dom, name="s1", state="reverted", revert_state="paused")
    assert r["domain_state"] == "paused" and guest.get_state() == "paused"
    r = run(host, domain=dom, name="s1", state="reverted")
    assert r["domain_state"] == "running" and r["current"] == "s1"


def test_revert_to_a_missing_snapshot_names_those_there_are(host, dom):
    run(host, domain=dom, name="s1")
    with pytest.raises(NotFound, match="no snapshot 'nope' .*it has s1"):
        run(host, domain=dom, name="nope", state="reverted")


def test_delete_with_children_and_idempotent(host, dom):
    for n in ("s1", "s2", "s3"):
        run(host, domain=dom, name=n)
    assert names(host, dom) == ["s1", "s2", "s3"]
    r = run(host, True, domain=dom, name="s2", state="absent", children=True)
    assert r["changed"] and r["removed"] == ["s2", "s3"] and [s["name"] for s in r["snapshots"]] == ["s1"]
    assert names(host, dom) == ["s1", "s2", "s3"]
    r = run(host, domain=dom, name="s2", state="absent", children=True)
    assert r["changed"] and r["removed"] == ["s2", "s3"] and names(host, dom) == ["s1"]
    r = run(host, domain=dom, name="s2", state="absent")
    assert not r["changed"] and r["removed"] == []


def test_delete_without_children_keeps_them(host, dom):
    for n in ("s1", "s2"):
        run(host, domain=dom, name=n)
    r = run(host, domain=dom, name="s1", state="absent")
    assert r["removed"] == ["s1"] and names(host, dom) == ["s2"]
    assert r["snapshots"][0]["parent"] is None


def test_list_only(host, dom):
    run(host, domain=dom, name="s1")
    r = run(host, domain=dom)
    assert not r["changed"] and r["snapshot"] is None and r["current"] == "s1"
    assert [s["name"] for s in r["snapshots"]] == ["s1"] and "domain_xml" not in r["snapshots"][0]


def test_domain_absent_keeps_refusing_while_snapshots_exist(host, dom):
    from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain import DomainRequest, converge as dconv
    run(host, domain=dom, name="s1")
    with pytest.raises(Exception, match="remove_snapshots_metadata"):
        dconv(host, DomainRequest(name=dom, state="absent", force=True))


@pytest.mark.parametrize("kw,path", [
    ({"state": "reverted"}, "name"),
    ({"name": "x", "location": "elsewhere"}, "location"),
    ({"name": "x", "memory_file": "/m"}, "memory_file"),
    ({"name": "x", "location": "external", "memory": True}, "memory_file"),
    ({"name": "x", "quiesce": True}, "quiesce"),
    ({"name": "x", "disks": [{"bus": "virtio"}]}, "disks[0].target"),
    ({"name": "x", "disks": [{"target": "vda", "size": 1}]}, "disks[0]"),
    ({"name": "x", "disks": [{"target": "vda", "file": "/f"}]}, "disks[0].file"),
    ({"name": "x", "revert_state": "shutoff"}, "revert_state"),
])
def test_bad_input_names_the_field(kw, path):
    with pytest.raises(InvalidSpec) as exc:
        SnapshotRequest(domain="d", **kw)
    assert exc.value.path == path


def test_snapshot_xml_says_only_what_was_asked():
    el = xmlutil.parse(snapshot_xml(SnapshotRequest(domain="d", name="n")))
    assert [c.tag for c in el] == ["name"]
    el = xmlutil.parse(snapshot_xml(SnapshotRequest(domain="d", name="n", location="external", description="x",
                                                    disks=[{"target": "vda", "file": "/o.qcow2"}])))
    assert el.find("memory").get("snapshot") == "no"
    assert el.find("disks/disk").get("snapshot") == "external"
    assert el.find("disks/disk/source").get("file") == "/o.qcow2"
    el = xmlutil.parse(snapshot_xml(SnapshotRequest(domain="d", name="n", location="external", memory=True,
                                                    memory_file="/m.save")))
    assert el.find("memory").attrib == {"snapshot": "external", "file": "/m.save"}


def test_plan_is_the_domain_modules_recorder():
    from ansible_collections.hypervisor.libvirt.plugins.module_utils import domain
    assert domain._Plan is Plan
    ran = []
    p = Plan(None, check_mode=True)
    p.act("x", lambda: ran.append(1))
    assert p.actions == ["x"] and p.changed and ran == []
    p = Plan(None, check_mode=False)
    assert p.act("y", lambda: 42) == 42 and p.actions == ["y"]
