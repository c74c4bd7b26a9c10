"""The XML model's values and preservation: numbers as libvirt reads them, and nothing the spec does not model lost."""

from __future__ import annotations

import pytest
from lxml import etree

from ansible_collections.hypervisor.libvirt.plugins.module_utils import model, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain import preserved_differences, xml_differences
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_xml import guest_xml, parse_domain_xml
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import validate_spec


@pytest.mark.parametrize("text, value", [
    ("10", 10), ("0x10", 16), ("0X1f", 31), ("010", 8), ("0", 0), ("00", 0), ("-3", -3), (" 7 ", 7),
    ("08", None), ("0x", None), ("ten", None), ("", None), (None, None), ("1.5", None),
])
def test_c_int_reads_numbers_as_libvirt_does(text, value):
    assert model.c_int(text) == value


@pytest.mark.parametrize("want, have, equal", [
    ("0x04", "4", True), ("0644", "420", True), ("644", "0644", False), ("52:54:00:AA:bb:01", "52:54:00:aa:BB:01", True),
    ("vda", "vda", True), ("vda", "vdb", False), ("1", None, False),
])
def test_value_equal(want, have, equal):
    assert model.value_equal(want, have) is equal


BASE = ("<domain type='kvm'><name>m</name><memory unit='KiB'>262144</memory><vcpu placement='static'>2</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>%s</devices></domain>")


def _paths(root):
    out = set()
    for el in root.iter():
        if isinstance(el.tag, str):
            path = "/".join(etree.QName(a).localname for a in reversed(list(el.iterancestors()))) + "/" + el.tag
            out.add(path)
            out.update("%s/@%s" % (path, a) for a in el.attrib)
    return out


def test_what_the_spec_does_not_model_comes_back():
    """A panic device, an emulator, controllers, a disk address and vcpu placement survive XML -> spec -> XML."""
    xml = BASE % ("<emulator>/usr/bin/qemu-system-x86_64</emulator>"
                  "<disk type='file' device='disk'><source file='/var/lib/a.img'/><target dev='vda' bus='virtio'/>"
                  "<address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>"
                  "<controller type='usb' index='0' model='piix3-uhci'/><panic model='isa'/>"
                  "<video><model type='vga'/></video><video><model type='virtio'/></video>")
    spec = parse_domain_xml(xml)
    assert xmlutil.parse(spec["preserved"]).find("devices/panic").get("model") == "isa"
    rebuilt = xmlutil.parse(guest_xml(validate_spec(spec)))
    assert _paths(xmlutil.parse(xml)) <= _paths(rebuilt)
    assert rebuilt.find("vcpu").get("placement") == "static"
    assert rebuilt.find("devices/disk/address").get("slot") == "0x04"
    assert len(rebuilt.findall("devices/video")) == 2
    # and the rebuilt domain holds what the original said, by the xml: comparison
    assert xml_differences(xml, rebuilt) == []


def test_an_element_the_builder_writes_itself_is_not_doubled():
    """The emulator a host build writes and the one preserved from the XML end up as one element."""
    xml = BASE % "<emulator>/usr/bin/qemu-system-x86_64</emulator><panic model='isa'/>"
    spec = parse_domain_xml(xml)
    built = xmlutil.parse(guest_xml(validate_spec(spec)))
    dom = xmlutil.parse(guest_xml({k: v for k, v in spec.items() if k != "preserved"}))
    etree.SubElement(dom.find("devices"), "emulator").text = "/usr/bin/kvm"
    model.overlay(dom, model.from_text(spec["preserved"]))
    assert [e.text for e in dom.findall("devices/emulator")] == ["/usr/bin/kvm"]
    assert len(built.findall("devices/emulator")) == 1 and dom.find("devices/panic") is not None


def test_preserved_is_dropped_with_the_device_it_belongs_to():
    """A disk removed from the spec does not come back through the address preserved for it."""
    xml = BASE % ("<disk type='file' device='disk'><source file='/var/lib/a.img'/><target dev='vda' bus='virtio'/>"
                  "<address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>")
    spec = parse_domain_xml(xml)
    spec["disks"] = []
    rebuilt = xmlutil.parse(guest_xml(validate_spec(spec)))
    assert rebuilt.findall("devices/disk") == [] and rebuilt.find("devices/address") is None


def test_preserved_must_be_domain_xml():
    with pytest.raises(InvalidSpec, match="^preserved"):
        validate_spec({"name": "m", "memory": 128, "preserved": "<network/>"})
    with pytest.raises(InvalidSpec, match="^preserved"):
        validate_spec({"name": "m", "memory": 128, "preserved": 5})


def test_hostdev_pci_address_is_read_with_its_base():
    """bus='10' is decimal ten to libvirt, bus='0x10' sixteen: both read back as the device libvirt means."""
    dev = "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='%s' slot='0x1f' function='1'/>" \
          "</source></hostdev>"
    assert parse_domain_xml(BASE % (dev % "10"))["hostdevs"][0]["pci"] == "0000:0a:1f.1"
    assert parse_domain_xml(BASE % (dev % "0x10"))["hostdevs"][0]["pci"] == "0000:10:1f.1"


def test_writable_floppy_stays_writable():
    disk = "<disk type='file' device='floppy'><source file='/var/lib/f.img'/><target dev='fda' bus='fdc'/>%s</disk>"
    assert validate_spec(parse_domain_xml(BASE % (disk % "")))["disks"][0]["readonly"] is False
    assert validate_spec(parse_domain_xml(BASE % (disk % "<readonly/>")))["disks"][0]["readonly"] is True


def test_numa_cell_without_id_parses():
    xml = BASE.replace("<os>", "<cpu><numa><cell cpus='0-1' memory='262144' unit='KiB'/></numa></cpu><os>") % ""
    assert parse_domain_xml(xml)["cpu"]["numa"] == [{"id": 0, "cpus": "0-1", "memory": 256}]


def test_xml_comparison_reads_numbers_and_ignores_the_domain_id():
    """0x04 written by the user and 4 stored by libvirt are the same slot; <domain id> is runtime state."""
    want = BASE.replace("<domain ", "<domain id='7' ") % (
        "<disk type='file' device='disk'><source file='/a.img'/><target dev='vda' bus='virtio'/>"
        "<address type='pci' domain='0' bus='0' slot='4' function='0'/></disk>")
    have = BASE % ("<disk type='file' device='disk'><source file='/a.img'/><target dev='vda' bus='virtio'/>"
                   "<address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>")
    assert xml_differences(want, have) == []
    assert [d["path"] for d in xml_differences(want.replace("slot='4'", "slot='5'"), have)] == ["devices/disk/address@slot"]


def test_graphics_other_than_vnc_and_spice_are_taken_and_kept():
    xml = BASE % "<graphics type='sdl' display=':0.1' xauth='/root/.Xauthority'/><graphics type='egl-headless'/>"
    spec = validate_spec(parse_domain_xml(xml))
    assert [g["type"] for g in spec["graphics"]] == ["sdl", "egl-headless"]
    rebuilt = xmlutil.parse(guest_xml(spec))
    assert rebuilt.find("devices/graphics").attrib == {"type": "sdl", "display": ":0.1", "xauth": "/root/.Xauthority"}
    with pytest.raises(InvalidSpec, match=r"^graphics\[0\]\.port: only applies to vnc and spice"):
        validate_spec({"name": "m", "memory": 128, "graphics": {"type": "sdl", "port": 5900}})


def test_xml_comparison_ignores_runtime_state_libvirt_does_not_keep():
    """XML copied from a running domain (block-job indexes, a made guest agent socket, a skipped label) is
    the definition libvirt holds without them; a real difference there still counts."""
    want = BASE % (
        "<disk type='file' device='disk'><source file='/a.img' index='2'>"
        "<seclabel model='selinux' labelskip='yes'/></source>"
        "<backingStore type='file' index='1'><format type='raw'/><source file='/b.img'/></backingStore>"
        "<target dev='vda' bus='virtio'/></disk>"
        "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-m/"
        "org.qemu.guest_agent.0'/><target type='virtio' name='org.qemu.guest_agent.0' state='connected'/></channel>")
    have = BASE % (
        "<disk type='file' device='disk'><source file='/a.img'/>"
        "<backingStore type='file'><format type='raw'/><source file='/b.img'/></backingStore>"
        "<target dev='vda' bus='virtio'/></disk>"
        "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>")
    assert xml_differences(want, have) == []
    assert [d["path"] for d in xml_differences(want.replace("/b.img", "/c.img"), have)] == \
        ["devices/disk/backingStore/source@file"]
    # a socket of the user's own is kept by libvirt: its absence is a difference
    mine = want.replace("/var/lib/libvirt/qemu/channel/target/domain-3-m/org.qemu.guest_agent.0", "/run/ga.sock")
    assert [d["path"] for d in xml_differences(mine, have)] == ["devices/channel/source"]


def test_xml_comparison_knows_what_libvirt_drops_or_adds():
    """Defaults libvirt does not write (smartcard protocol raw, a path-less bind socket), the serial port libvirt
    adds for a lone serial console, file modes in octal and an iSCSI name without its LUN."""
    want = BASE % ("<smartcard mode='passthrough' type='unix'><source mode='bind' path='/tmp/sc.sock'/>"
                   "<protocol type='raw'/></smartcard>"
                   "<console type='pty'><target type='serial' port='0'/></console>"
                   "<filesystem type='mount' fmode='0644'><source dir='/srv'/><target dir='srv'/></filesystem>"
                   "<hostdev mode='subsystem' type='scsi'><source protocol='iscsi' name='iqn.2020-01.x:t'>"
                   "<host name='10.0.0.1'/></source></hostdev>")
    have = BASE % ("<smartcard mode='passthrough' type='unix'><source mode='bind' path='/tmp/sc.sock'/></smartcard>"
                   "<serial type='pty'><target type='isa-serial' port='0'/></serial>"
                   "<console type='pty'><target type='serial' port='0'/></console>"
                   "<filesystem type='mount' fmode='644'><source dir='/srv'/><target dir='srv'/></filesystem>"
                   "<hostdev mode='subsystem' type='scsi'><source protocol='iscsi' name='iqn.2020-01.x:t/0'>"
                   "<host name='10.0.0.1'/></source></hostdev>")
    assert xml_differences(want, have) == []
    assert [d["path"] for d in xml_differences(want.replace("0644", "0640"), have)] == ["devices/filesystem@fmode"]
    assert [d["path"] for d in xml_differences(want.replace("type='raw'", "type='tcp'"), have)] == \
        ["devices/smartcard/protocol"]


def test_spice_without_a_port_reads_back_as_libvirt_holds_it():
    """<graphics type='spice'/> and autoport='no' without a port are what libvirt stores as listen type none."""
    for xml in (BASE % "<graphics type='spice'/>", BASE % "<graphics type='spice' autoport='no'/>"):
        spec = validate_spec(parse_domain_xml(xml))
        assert spec["graphics"] == [{"type": "spice", "autoport": False}]
    stored = parse_domain_xml(BASE % "<graphics type='spice'><listen type='none'/></graphics>")
    assert stored["graphics"] == [{"type": "spice", "autoport": False}]


def test_guest_agent_socket_libvirt_made_is_not_the_specs():
    """libvirt drops a guest agent socket path in its own channel directory from the definition; the spec
    read from XML that names it leaves it to libvirt, a path of the user's own stays."""
    chan = ("<channel type='unix'><source mode='bind' path='%s'/>"
            "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>")
    made = parse_domain_xml(BASE % (chan % "/var/lib/libvirt/qemu/channel/target/gentoo.org.qemu.guest_agent.0"))
    assert "path" not in made["channels"][0]
    own = parse_domain_xml(BASE % (chan % "/run/hvl/ga.sock"))
    assert own["channels"][0]["path"] == "/run/hvl/ga.sock"


def test_preserved_comparison_leaves_the_builders_own_to_the_builder():
    """A preserved emulator (from XML written for another host) gives way to the host's, which the builder
    writes; the rest of preserved must be in libvirt's definition, compared as the XML path compares."""
    res = ("<domain xmlns:hvl='https://hypervisor.libvirt/xmlns/residual' hvl:anchor='1'>"
           "<devices hvl:anchor='1' hvl:n='0'><emulator hvl:n='0'>/usr/bin/qemu-system-x86_64</emulator>"
           "<panic model='isa' hvl:n='0'/></devices></domain>")
    built = xmlutil.parse("<domain><devices><emulator>/bin/qemu-system-x86_64</emulator></devices></domain>")
    held = xmlutil.parse("<domain><devices><emulator>/bin/qemu-system-x86_64</emulator><panic model='isa'/>"
                         "<controller type='usb'/></devices></domain>")
    assert preserved_differences(res, held, None, built) == []
    assert [d["path"] for d in preserved_differences(res.replace("isa", "hyperv"), held, None, built)] == \
        ["preserved/devices/panic@model"]
