"""Guest lifecycle and the domain module's decision logic on libvirt's test:///default driver."""

from __future__ import annotations

import copy
import uuid as uuidlib

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain import (
    DomainRequest,
    converge,
    xml_differences,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    InvalidSpec,
    NotFound,
    OperationFailed,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_xml import parse_domain_xml
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host

TEST_URI = "test:///default"


def domain_xml(name: str, memory_mib: int = 128, disks: tuple[str, ...] = ("/tmp/hvl-unit.img",),
               mac: str | None = None, uuid: str | None = None, extra_devices: str = "") -> str:
    """A minimal test-driver domain, the way a user would write it (MiB, no addresses)."""
    disk_xml = "".join(
        "<disk type='file' device='disk'><source file='%s'/><target dev='hd%s'/></disk>" % (p, "abcd"[i])
        for i, p in enumerate(disks))
    mac_xml = "<mac address='%s'/>" % mac if mac else ""
    uuid_xml = "<uuid>%s</uuid>" % uuid if uuid else ""
    return ("<domain type='test'><name>%s</name>%s<memory unit='MiB'>%d</memory><vcpu>1</vcpu>"
            "<os><type arch='i686'>hvm</type></os><devices>%s"
            "<interface type='network'>%s<source network='default'/></interface>%s</devices></domain>"
            % (name, uuid_xml, memory_mib, disk_xml, mac_xml, extra_devices))


@pytest.fixture
def host():
    h = Host(TEST_URI)
    h.initialize()
    yield h
    h.close()


@pytest.fixture
def name(host):
    """A unique domain name, removed after the test whatever state it was left in."""
    n = "hvl-unit-%s" % uuidlib.uuid4().hex[:8]
    yield n
    try:
        g = host.get_guest(name=n)
    except NotFound:
        return
    if g.is_active():
        g.poweroff()
    g.delete_configuration()


def snapshot(host: Host, name: str) -> tuple:
    """Everything check mode must leave alone: inactive and live XML, state, autostart."""
    try:
        g = host.get_guest(name=name)
    except NotFound:
        return ("absent",)
    return (xmlutil.canonical(xmlutil.parse(g.get_xml_desc(inactive=True))),
            xmlutil.canonical(xmlutil.parse(g.get_xml_desc())), g.get_state(), g.get_autostart())


def run(host: Host, req: DomainRequest) -> dict:
    """Check mode first (it must predict and change nothing), then the real run."""
    name = req.name or xmlutil.parse(req.xml).findtext("name")
    before = snapshot(host, name)
    predicted = converge(host, req, check_mode=True)
    assert snapshot(host, name) == before, "check mode changed something"
    result = converge(host, req)
    for key in ("changed", "actions", "state", "pending_restart"):
        assert predicted[key] == result[key], (key, predicted, result)
    assert [d["path"] for d in predicted["differences"]] == [d["path"] for d in result["differences"]]
    return result


# ---------------------------------------------------------------------------------- Guest
def test_guest_lifecycle_and_autostart(host, name):
    guest = host.write_instance_config(domain_xml(name))
    assert guest.get_state() == "shutoff"
    guest.launch(pause=True)
    assert guest.get_state() == "paused"
    guest.resume()
    assert guest.get_state() == "running"
    guest.pause()
    assert guest.get_state() == "paused"
    guest.poweroff()
    assert guest.get_state() == "shutoff"
    guest.launch()
    guest.shutdown()
    assert host.wait_for_lifecycle(guest, ["shutoff"], 5) == "shutoff"
    assert guest.get_autostart() is False
    guest.set_autostart(True)
    assert guest.get_autostart() is True
    guest.delete_configuration(keep_nvram=True)
    with pytest.raises(NotFound):
        host.get_guest(name=name)


@pytest.fixture
def qemu_host():
    """The real libvirtd, for what the test driver lacks (device attach/detach); skipped without it."""
    h = Host("qemu:///system")
    try:
        h.get_connection()
    except Exception:  # noqa: BLE001 - any failure means: no daemon here
        pytest.skip("qemu:///system is not reachable")
    yield h
    h.close()


def test_guest_devices_and_interfaces(qemu_host):
    host = qemu_host
    name = "hvl-it-dom-unit-%s" % uuidlib.uuid4().hex[:6]
    xml = domain_xml(name, mac="52:54:00:aa:bb:01").replace("type='test'", "type='qemu'").replace(
        "arch='i686'", "arch='x86_64'").replace("network='default'", "network='hvl-it-dom-none'")
    guest = host.write_instance_config(xml)
    try:
        _devices(host, guest)
    finally:
        guest.delete_configuration()


def _devices(host, guest):
    nics = guest.get_interfaces(inactive=True)
    assert [(n["type"], n["mac"], n["source"]) for n in nics] == [("network", "52:54:00:aa:bb:01", "hvl-it-dom-none")]
    disk = "<disk type='file' device='disk'><source file='/tmp/hvl-unit-2.img'/><target dev='hdb'/></disk>"
    guest.attach_device(disk, persistent=True)
    targets = [t.get("dev") for t in xmlutil.parse(guest.get_xml_desc(inactive=True)).findall("devices/disk/target")]
    assert targets == ["hda", "hdb"]
    guest.detach_device(disk, persistent=True)
    targets = [t.get("dev") for t in xmlutil.parse(guest.get_xml_desc(inactive=True)).findall("devices/disk/target")]
    assert targets == ["hda"]


# ---------------------------------------------------------------------------------- XML rule
ADDED_BY_LIBVIRT = """<domain type='test'><name>x</name><uuid>0b4b6bc6-2b7a-4b1e-9d6c-3e1c0b1c4f00</uuid>
<memory unit='KiB'>131072</memory><currentMemory unit='KiB'>131072</currentMemory>
<vcpu placement='static'>1</vcpu><os><type arch='i686' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
<clock offset='utc'/><on_poweroff>destroy</on_poweroff><devices>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/a.img'/>
<target dev='hda' bus='ide'/><address type='drive' controller='0' bus='0' target='0' unit='0'/></disk>
<controller type='ide' index='0'/><interface type='network'><mac address='52:54:00:83:C4:A8'/>
<source network='default'/></interface><memballoon model='virtio'/></devices></domain>"""


@pytest.mark.parametrize("user_xml, paths", [
    # what libvirt added (uuid, units, addresses, controllers, machine expansion) is no change
    ("<domain type='test'><name>x</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
     "<os><type arch='i686' machine='pc'>hvm</type></os><devices>"
     "<disk type='file' device='disk'><source file='/a.img'/><target dev='hda'/></disk>"
     "<interface type='network'><mac address='52:54:00:83:c4:a8'/><source network='default'/></interface>"
     "</devices></domain>", []),
    # a changed value, in another unit
    ("<domain type='test'><name>x</name><memory unit='GiB'>1</memory><vcpu>1</vcpu>"
     "<os><type arch='i686'>hvm</type></os><devices>"
     "<disk type='file' device='disk'><source file='/a.img'/><target dev='hda'/></disk>"
     "<interface type='network'><source network='default'/></interface></devices></domain>", ["memory"]),
    # a removed disk is a change; a changed source names the attribute
    ("<domain type='test'><name>x</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
     "<os><type arch='i686'>hvm</type></os><devices>"
     "<interface type='network'><source network='other'/></interface></devices></domain>",
     ["devices/interface/source@network", "devices/disk"]),
    # an added element, and a domain attribute
    ("<domain type='kvm'><name>x</name><memory unit='MiB'>128</memory><vcpu>2</vcpu>"
     "<os><type arch='i686'>hvm</type></os><features><acpi/></features><devices>"
     "<disk type='file' device='disk'><source file='/a.img'/><target dev='hda'/></disk>"
     "<interface type='network'><source network='default'/></interface></devices></domain>",
     ["@type", "vcpu", "features"]),
])
def test_xml_differences(user_xml, paths):
    diffs = xml_differences(user_xml, ADDED_BY_LIBVIRT, {"pc": "pc-i440fx-7.2"})
    assert sorted(d["path"] for d in diffs) == sorted(paths)


def test_a_spice_port_of_minus_one_is_autoport_as_libvirt_keeps_it():
    """virt-install writes <graphics type='spice' port='-1' tlsPort='-1' autoport='yes'> (its default graphics);
    libvirt's definition keeps autoport alone. That is no change - but a fixed port still is."""
    def with_graphics(attrs):
        graphics = "<graphics type='spice' %s><image compression='off'/></graphics>" % attrs
        return ADDED_BY_LIBVIRT.replace("<memballoon", graphics + "<memballoon")
    have = with_graphics("autoport='yes'")
    assert xml_differences(with_graphics("port='-1' tlsPort='-1' autoport='yes'"), have) == []
    assert [d["path"] for d in xml_differences(with_graphics("port='5901' autoport='no'"), have)] == [
        "devices/graphics@port", "devices/graphics@autoport"]


# ---------------------------------------------------------------------------------- converge
STEPS = [
    # (state, expected actions, expected state) - each run twice: the second must change nothing
    ("present", ["define"], "shutoff"),
    ("running", ["start"], "running"),
    ("paused", ["pause"], "paused"),
    ("running", ["resume"], "running"),
    ("shutdown", ["shutdown"], "shutoff"),
    ("paused", ["start_paused"], "paused"),
    ("shutdown", ["resume", "shutdown"], "shutoff"),
    ("running", ["start"], "running"),
    ("destroyed", ["destroy"], "shutoff"),
    ("absent", ["undefine"], "absent"),
]


def test_lifecycle_table_idempotent_and_check_mode_exact(host, name):
    xml = domain_xml(name)
    for state, actions, final in STEPS:
        req = DomainRequest(name=name, xml=None if state == "absent" else xml, state=state)
        first = run(host, req)
        assert (first["actions"], first["state"], first["changed"]) == (actions, final, True), state
        again = run(host, req)
        assert (again["actions"], again["state"], again["changed"]) == ([], final, False), state
        assert snapshot(host, name)[2:3] == (() if final == "absent" else (final,))


def test_autostart_and_diff(host, name):
    r = run(host, DomainRequest(xml=domain_xml(name), state="present", autostart=True))
    assert r["actions"] == ["define", "autostart"]
    assert r["diff"]["before"] == "" and "<name>%s</name>" % name in r["diff"]["after"]
    r = run(host, DomainRequest(xml=domain_xml(name, memory_mib=256), state="present", autostart=True))
    assert r["actions"] == ["define"]
    assert [d["path"] for d in r["differences"]] == ["memory"]
    assert "262144" in r["diff"]["after"] and "131072" in r["diff"]["before"]
    assert host.get_guest(name=name).get_autostart() is True
    r = run(host, DomainRequest(name=name, state="present", autostart=False))
    assert r["actions"] == ["no_autostart"]


def test_redefinition_keeps_uuid_and_mac(host, name):
    first = run(host, DomainRequest(xml=domain_xml(name), state="present"))
    mac = host.get_guest(name=name).get_interfaces(inactive=True)[0]["mac"]
    second = run(host, DomainRequest(xml=domain_xml(name, memory_mib=256), state="present"))
    assert second["changed"] and second["uuid"] == first["uuid"]
    assert host.get_guest(name=name).get_interfaces(inactive=True)[0]["mac"] == mac


def test_running_domain_change_is_pending_until_restart_asked(host, name):
    run(host, DomainRequest(xml=domain_xml(name), state="running"))
    r = run(host, DomainRequest(xml=domain_xml(name, memory_mib=256), state="running"))
    assert (r["actions"], r["state"], r["pending_restart"]) == (["define"], "running", True)
    r = run(host, DomainRequest(xml=domain_xml(name, memory_mib=256), state="running"))
    assert (r["changed"], r["pending_restart"]) == (False, True)
    r = run(host, DomainRequest(xml=domain_xml(name, memory_mib=256), state="running", restart_on_change=True))
    assert (r["actions"], r["state"], r["pending_restart"]) == (["shutdown", "start"], "running", False)
    live = xmlutil.parse(host.get_guest(name=name).get_xml_desc())
    assert live.findtext("memory") == str(256 * 1024)


@pytest.mark.parametrize("make_req, path", [
    (lambda n: DomainRequest(name="other-name", xml=domain_xml(n)), "name"),
    (lambda n: DomainRequest(xml="<domain type='test'><name>%s</name><memory>x</memory></domain>" % n), "xml"),
    (lambda n: DomainRequest(xml="<domain><name>%s" % n), "xml"),
    (lambda n: DomainRequest(name=n, xml="<network><name>%s</name></network>" % n), "xml"),
])
def test_bad_input_is_an_error_and_touches_nothing(host, name, make_req, path):
    run(host, DomainRequest(xml=domain_xml(name), state="running"))
    before = snapshot(host, name)
    with pytest.raises(InvalidSpec) as err:
        converge(host, make_req(name))
    assert err.value.path == path
    assert snapshot(host, name) == before


def test_uuid_of_another_domain_is_refused(host, name):
    other = host.get_guest(name="test")   # the test driver's own domain
    with pytest.raises(InvalidSpec) as err:
        converge(host, DomainRequest(xml=domain_xml(name, uuid=other.uuid)))
    assert "belongs to domain 'test'" in str(err.value)
    assert not host.domain_exists(name)
    run(host, DomainRequest(xml=domain_xml(name)))
    before = snapshot(host, name)
    with pytest.raises(InvalidSpec):
        converge(host, DomainRequest(xml=domain_xml(name, uuid=str(uuidlib.uuid4()))))
    assert snapshot(host, name) == before


def test_absent_needs_force_for_a_running_domain(host, name):
    run(host, DomainRequest(xml=domain_xml(name), state="running"))
    with pytest.raises(OperationFailed) as err:
        converge(host, DomainRequest(name=name, state="absent"))
    assert "force" in str(err.value)
    assert host.get_guest(name=name).get_state() == "running"
    r = run(host, DomainRequest(name=name, state="absent", force=True))
    assert r["actions"] == ["destroy", "undefine"] and r["removed_storage"] == []


def test_missing_domain_without_definition(host, name):
    with pytest.raises(NotFound):
        converge(host, DomainRequest(name=name, state="running"))


def test_remove_storage_only_own_writable_files(host, name, tmp_path):
    own, shared, cd = (tmp_path / "own.img", tmp_path / "shared.img", tmp_path / "cd.iso")
    for f in (own, shared, cd):
        f.write_bytes(b"x" * 512)  # raw images: whole sectors
    cdrom = ("<disk type='file' device='cdrom'><source file='%s'/><target dev='hdc'/><readonly/></disk>" % cd)
    run(host, DomainRequest(xml=domain_xml(name, disks=(str(own), str(shared)), extra_devices=cdrom)))
    neighbour = name + "-n"
    host.write_instance_config(domain_xml(neighbour, disks=(str(shared),)))
    try:
        r = run(host, DomainRequest(name=name, state="absent", remove_storage=True))
        assert r["actions"] == ["undefine", "remove_storage"]
        assert r["removed_storage"] == [str(own)]
        assert not own.exists() and shared.exists() and cd.exists()
    finally:
        host.get_guest(name=neighbour).delete_configuration()


def test_concurrent_define_is_retried(host, name):
    """Another client defines the same name between our read and our write: we re-read and converge."""
    real = host.write_instance_config
    raced = []

    def racing_define(xml, validate=True):
        if not raced:
            raced.append(True)
            real(domain_xml(name))   # the other playbook wins, with its own UUID
        return real(xml, validate)
    host.write_instance_config = racing_define
    r = converge(host, DomainRequest(xml=domain_xml(name), state="running"))
    assert raced and r["state"] == "running"
    # the other client's definition already matched: only the start is ours
    assert r["actions"] == ["start"]


# ---------------------------------------------------------------- a partial spec keeps what it leaves out
FULL_SPEC = {
    "type": "test", "memory": 256, "vcpus": 2, "title": "web one", "description": "the first web server",
    "metadata": {"role": "web"},
    "cpu": {"topology": {"sockets": 1, "cores": 2, "threads": 1}},
    "sysinfo": {"system": {"manufacturer": "hvl", "serial": "S-1"}},
    "os": {"arch": "i686", "boot": ["hd", "network"]},
    "features": {"acpi": True, "apic": True},
    "clock": {"offset": "utc"},
    "on_crash": "restart",
    "disks": [{"source": "/tmp/hvl-a.img"}, {"source": "/tmp/hvl-b.img"}, {"source": "/tmp/hvl-c.img"}],
    "interfaces": [{"type": "network", "source": "default", "mac": "52:54:00:aa:00:01"},
                   {"type": "network", "source": "default", "mac": "52:54:00:aa:00:02"}],
    "graphics": [{"type": "vnc"}],
}


def _domain(host, name):
    return xmlutil.parse(host.get_guest(name=name).get_xml_desc(inactive=True))


def test_a_partial_spec_changes_only_what_it_names(host, name):
    converge(host, DomainRequest(name=name, spec=dict(FULL_SPEC), state="present"))
    before = _domain(host, name)
    partial = {"memory": 128, "disks": FULL_SPEC["disks"][:2], "interfaces": FULL_SPEC["interfaces"][:1]}
    res = converge(host, DomainRequest(name=name, spec=partial, state="present"))
    assert res["changed"] and res["actions"] == ["define"]
    assert {d["path"] for d in res["differences"]} == {"memory", "disks[2]", "interfaces[1]"}
    after = _domain(host, name)
    # what the spec named changed ...
    assert after.findtext("memory") == str(128 * 1024)
    assert [s.get("file") for s in after.findall("devices/disk/source")] == ["/tmp/hvl-a.img", "/tmp/hvl-b.img"]
    assert [m.get("address") for m in after.findall("devices/interface/mac")] == ["52:54:00:aa:00:01"]
    # ... and everything it left out is as libvirt held it
    for path in ("title", "description", "vcpu", "cpu", "sysinfo", "os", "features", "clock", "on_crash",
                 "devices/graphics", "metadata"):
        assert etree_text(after.find(path)) == etree_text(before.find(path)), path
    assert after.get("type") == "test" and after.findtext("uuid") == before.findtext("uuid")
    # the memory change took currentMemory (which mirrored the old size) along
    assert after.findtext("currentMemory") == str(128 * 1024)
    again = converge(host, DomainRequest(name=name, spec=dict(partial), state="present"))
    assert not again["changed"]


def test_check_mode_predicts_the_merged_definition(host, name):
    converge(host, DomainRequest(name=name, spec=dict(FULL_SPEC), state="present"))
    partial = {"memory": 128, "title": "web one, smaller"}
    predicted = converge(host, DomainRequest(name=name, spec=partial, state="present"), check_mode=True)
    assert predicted["changed"]
    real = converge(host, DomainRequest(name=name, spec=dict(partial), state="present"))
    predicted_dom, real_dom = xmlutil.parse(predicted["xml"]), xmlutil.parse(real["xml"])
    for path in ("title", "description", "sysinfo", "features", "devices/graphics", "metadata"):
        assert etree_text(predicted_dom.find(path)) == etree_text(real_dom.find(path)), path
    assert len(predicted_dom.findall("devices/disk")) == len(real_dom.findall("devices/disk")) == 3


def test_an_empty_list_removes_every_device_of_its_kind(host, name):
    converge(host, DomainRequest(name=name, spec=dict(FULL_SPEC), state="present"))
    res = converge(host, DomainRequest(name=name, spec={"memory": 256, "graphics": []}, state="present"))
    assert res["changed"]
    after = _domain(host, name)
    assert after.find("devices/graphics") is None
    assert len(after.findall("devices/disk")) == 3  # not named: kept
    assert not converge(host, DomainRequest(name=name, spec={"memory": 256, "graphics": []}))["changed"]


def etree_text(el):
    """An element as canonical text (None when missing), for comparing kept parts."""
    return None if el is None else xmlutil.to_string(el)


# ---------------------------------------------------------------- references and files, before the define
def test_a_missing_network_is_an_error_before_the_define(host, name):
    spec = {"type": "test", "memory": 128, "os": {"arch": "i686"},
            "interfaces": [{"type": "network", "source": "default"}, {"type": "network", "source": "hvl-no-such-net"}]}
    with pytest.raises(InvalidSpec) as err:
        converge(host, DomainRequest(name=name, spec=spec, state="present"))
    assert err.value.path == "spec.interfaces[1].source" and "hvl-no-such-net" in str(err.value)
    with pytest.raises(NotFound):
        host.get_guest(name=name)


def test_removed_storage_is_returned_when_already_absent(host, name):
    res = converge(host, DomainRequest(name=name, state="absent"))
    assert not res["changed"] and res["removed_storage"] == []


def test_a_missing_kernel_is_an_error_before_the_define_on_a_real_host(tmp_path):
    try:
        real = Host("qemu:///system")
        real.get_capabilities()
    except Exception:  # noqa: BLE001 - any failure means "not reachable here"
        pytest.skip("qemu:///system is not reachable")
    n = "hvl-unit-kernel-%s" % uuidlib.uuid4().hex[:8]
    spec = {"type": "qemu", "memory": 64, "os": {"kernel": str(tmp_path / "no-vmlinuz")}}
    with real:
        # only defining it (no start) is allowed: the file may come later
        _refused_to_run_but_definable(real, n, spec, "spec.os.kernel", "does not exist")


def _refused_to_run_but_definable(real, name, spec, path, words):
    """To run, the spec is an error naming path (with words in it) and nothing is defined; to be
    only defined, it is."""
    with pytest.raises(InvalidSpec) as err:
        converge(real, DomainRequest(name=name, spec=dict(spec), state="running"))
    assert err.value.path == path
    assert words in str(err.value)
    with pytest.raises(NotFound):
        real.get_guest(name=name)
    try:
        assert converge(real, DomainRequest(name=name, spec=dict(spec), state="present"))["changed"]
    finally:
        converge(real, DomainRequest(name=name, state="absent"))


def test_secure_boot_without_features_keeps_the_features_and_settles():
    # features the spec does not name are not compared whole against the smm secure boot implies
    from ansible_collections.hypervisor.libvirt.plugins.module_utils import domain as domain_mod
    from ansible_collections.hypervisor.libvirt.plugins.module_utils import domain_xml
    current = domain_xml.guest_config({"name": "sb", "type": "test", "memory": 64,
                                       "os": {"firmware": "efi", "secure_boot": True},
                                       "features": {"acpi": True, "apic": True}})
    req = DomainRequest(name="sb", spec={"name": "sb", "type": "test", "memory": 64,
                                         "os": {"firmware": "efi", "secure_boot": True}})
    desired = domain_mod._desired(None, req)
    conv = domain_mod._Converger(None, req, desired, check_mode=True)
    assert conv._differences(xmlutil.to_string(current)) == []
    merged = domain_xml.merge_definition(current, desired.element, desired.given)
    assert {f.tag for f in merged.find("features")} == {"acpi", "apic", "smm"}


class _HostLacking(Host):
    """The real daemon, seen as a hypervisor without some package: its domain capabilities with
    the values that package brings taken out (no swtpm: no TPM versions; no OVMF: no efi, no loader)."""

    def __init__(self, uri: str, lacking: list[str]) -> None:
        super().__init__(uri)
        self.lacking = lacking

    def get_domain_capabilities(self, *args, **kwargs):
        caps = copy.deepcopy(super().get_domain_capabilities(*args, **kwargs))
        for xpath in self.lacking:
            for el in caps.xpath(xpath):
                el.getparent().remove(el)
        return caps


def _real_host_or_skip() -> None:
    try:
        Host("qemu:///system").get_capabilities()
    except Exception:  # noqa: BLE001 - any failure means "not reachable here"
        pytest.skip("qemu:///system is not reachable")


def test_uefi_the_hypervisor_lacks_is_an_error_before_the_define():
    _real_host_or_skip()
    n = "hvl-unit-lack-%s" % uuidlib.uuid4().hex[:8]
    spec = {"type": "qemu", "memory": 64, "os": {"firmware": "efi"}, "features": ["acpi", "apic"]}
    lacking = ["os/enum[@name='firmware']/value[text()='efi']", "os/loader/value"]
    with _HostLacking("qemu:///system", lacking) as lacking_host:
        with pytest.raises(InvalidSpec) as err:
            converge(lacking_host, DomainRequest(name=n, spec=dict(spec), state="present"))
        assert err.value.path == "spec.os.firmware"
        assert "install ovmf" in str(err.value)
        with pytest.raises(NotFound):
            lacking_host.get_guest(name=n)
    # where the firmware is there (set-up installs ovmf), the same spec is defined
    with Host("qemu:///system") as real:
        try:
            assert converge(real, DomainRequest(name=n, spec=dict(spec), state="present"))["changed"]
        finally:
            converge(real, DomainRequest(name=n, state="absent"))


def test_a_tpm_without_swtpm_is_an_error_before_the_define(tmp_path, monkeypatch):
    _real_host_or_skip()
    n = "hvl-unit-lack-%s" % uuidlib.uuid4().hex[:8]
    spec = {"type": "qemu", "memory": 64, "tpm": {"type": "emulator", "model": "tpm-crb", "version": "2.0"}}
    with Host("qemu:///system") as real:
        with monkeypatch.context() as m:
            m.setenv("PATH", str(tmp_path))  # a machine without swtpm's programs
            # only defining it is allowed: swtpm is needed when the domain starts
            _refused_to_run_but_definable(real, n, spec, "spec.tpm", "swtpm")


def test_preserved_is_what_libvirt_holds(host, name):
    """The spec's preserved part is compared like every other key: an edit there is a change that is applied,
    check mode predicts it, and the run after it changes nothing."""
    converge(host, DomainRequest(xml=domain_xml(name, extra_devices="<panic model='isa'/>")))
    spec = parse_domain_xml(host.get_guest(name=name).get_xml_desc(inactive=True))
    assert "<panic model=\"isa\"" in spec["preserved"]
    converge(host, DomainRequest(name=name, spec=dict(spec)))  # the NIC's model (virtio) made explicit
    assert not converge(host, DomainRequest(name=name, spec=dict(spec)))["changed"]
    edited = dict(spec, preserved=spec["preserved"].replace("<panic model=\"isa\"", "<panic model=\"hyperv\""))
    predicted = converge(host, DomainRequest(name=name, spec=dict(edited)), check_mode=True)
    assert predicted["changed"] and [d["path"] for d in predicted["differences"]] == ["preserved/devices/panic@model"]
    assert _domain(host, name).find("devices/panic").get("model") == "isa"  # check mode touched nothing
    res = converge(host, DomainRequest(name=name, spec=dict(edited)))
    assert res["changed"] and res["actions"] == ["define"]
    assert _domain(host, name).find("devices/panic").get("model") == "hyperv"
    assert not converge(host, DomainRequest(name=name, spec=dict(edited)))["changed"]
