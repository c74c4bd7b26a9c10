"""Guest XML construction, parsing back and spec comparison.

The corpus in guest_cases/*.yml holds spec -> expected <domain> pairs written from
libvirt's domain XML documentation; every case is compared structurally, validated
against libvirt's domain.rng and round-tripped (spec -> XML -> spec).
"""

from __future__ import annotations

import glob
import os

import pytest
import yaml

from ansible_collections.hypervisor.libvirt.plugins.module_utils import guest, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import validate_spec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host

HERE = os.path.dirname(os.path.abspath(__file__))
HAVE_SCHEMAS = xmlutil.schema_path("domain") is not None


def _cases():
    out = []
    for path in sorted(glob.glob(os.path.join(HERE, "guest_cases", "*.yml"))):
        for case in yaml.safe_load(open(path)):
            out.append(pytest.param(case, id="%s:%s" % (os.path.basename(path)[:-4], case["id"])))
    return out


CASES = _cases()


def test_corpus_is_big_enough():
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", CASES)
def test_spec_gives_expected_xml(case):
    generated = guest.guest_config(case["spec"])
    expected = xmlutil.parse(case["xml"])
    assert xmlutil.canonical(generated) == xmlutil.canonical(expected), xmlutil.unified_diff(
        xmlutil.to_string(expected), xmlutil.to_string(generated))


@pytest.mark.skipif(not HAVE_SCHEMAS, reason="libvirt's RelaxNG schemas are not installed")
@pytest.mark.parametrize("case", CASES)
def test_generated_and_expected_xml_validate(case):
    assert xmlutil.validate(xmlutil.parse(case["xml"]), "domain", case["id"])
    text = guest.guest_xml(case["spec"])  # validates, raising InvalidSpec if not
    assert xmlutil.validate(text, "domain")


@pytest.mark.parametrize("case", CASES)
def test_round_trip(case):
    normalised = validate_spec(case["spec"])
    assert validate_spec(normalised) == normalised  # normalising twice is a no-op
    parsed = guest.parse_domain_xml(guest.guest_xml(case["spec"], validate=False))
    assert validate_spec(parsed) == normalised
    assert guest.spec_differences(normalised, parsed) == []


# ---------------------------------------------------------------- bad input

BASE = {"name": "hvl-bad", "type": "qemu", "memory": 512}

ERRORS = [
    ({"disks": [{"source": "/a"}, {"source": "/b", "bus": "virtio2"}]},
     "disks[1].bus", "'virtio2' is not one of virtio, scsi, sata, ide, usb"),
    ({"colour": "red"}, "colour", "unknown key; known keys are channels"),
    ({"disks": [{"source": "/a", "cache": "fast"}]}, "disks[0].cache", "is not one of default, none,"),
    ({"disks": [{"source": "/a", "sizee": 1}]}, "disks[0].sizee", "unknown key"),
    ({"interfaces": [{"source": "default", "mac": "52:54:00:zz:00:01"}]}, "interfaces[0].mac", "is not a MAC"),
    ({"interfaces": [{"type": "bridge"}]}, "interfaces[0].source", "needs the bridge name"),
    ({"interfaces": [{"type": "direct", "source": {"dev": "eth0", "mode": "vpea"}}]},
     "interfaces[0].source.mode", "is not one of vepa, bridge, private, passthrough"),
    ({"cpu": {"topology": {"sockets": 2, "cores": 2}}, "vcpus": 3}, "cpu.topology", "= 4 but vcpus is 3"),
    ({"cpu": {"mode": "host-passthrough", "vendor": "Intel"}}, "cpu.vendor", "only applies to cpu.mode custom"),
    ({"cpu": {"model": "qemu64", "features": {"vmx": "yes"}}}, "cpu.features.vmx",
     "is not one of force, require, optional, disable, forbid"),
    ({"memory": "2 parsecs"}, "memory", "is not a size"),
    ({"memory": "3GB"}, "memory", "not a whole number of MiB"),
    ({"hostdevs": ["03:00"]}, "hostdevs[0].pci", "is not a PCI address"),
    ({"disks": [{"source": "/a", "target": "vda"}, {"source": "/b", "target": "vda"}]},
     "disks[1].target", "already used by disks[0]"),
    ({"disks": [{"device": "lun", "source": "/dev/sdb", "bus": "virtio"}]}, "disks[0].bus", "must be on bus scsi"),
    ({"disks": [{"source": "/a"}], "os": {"boot": ["hd"]}, "interfaces": [{"source": "n", "boot_order": 1}]},
     "interfaces[0].boot_order", "cannot be combined with os.boot"),
    ({"os": {"firmware": "bios", "secure_boot": True}}, "os.secure_boot", "needs os.firmware efi"),
    ({"os": {"initrd": "/boot/initrd"}}, "os.initrd", "needs os.kernel"),
    ({"features": {"acpi": False}}, "features.acpi", "false is only possible for hap"),
    ({"features": ["acpi", "warp"]}, "features.warp", "is not one of acpi, apic"),
    ({"cputune": {"vcpupin": {4: "0"}}, "vcpus": 2}, "cputune.vcpupin.4", "only 2 vCPUs"),
    ({"cputune": {"emulatorpin": "0-x"}}, "cputune.emulatorpin", "is not a CPU list"),
    ({"graphics": {"type": "rdp"}}, "graphics[0].type", "is not one of vnc, spice"),
    ({"serials": [{"type": "tcp", "host": "127.0.0.1"}]}, "serials[0].port", "is required with type tcp"),
    ({"channels": [{"type": "unix"}]}, "channels[0].name", "org.qemu.guest_agent.0"),
    ({"on_crash": "explode"}, "on_crash", "is not one of destroy, restart"),
    ({"uuid": "not-a-uuid"}, "uuid", "is not a UUID"),
    ({"current_memory": 1024}, "current_memory", "more than memory"),
    ({"cpu": {"numa": [{"id": 0, "cpus": "0", "memory": 256}]}}, "cpu.numa", "adds up to 256 MiB"),
    ({"sysinfo": {"system": {"uuid": "00000000-0000-0000-0000-000000000001"}},
      "uuid": "00000000-0000-0000-0000-000000000002"}, "sysinfo.system.uuid", "must match uuid"),
    ({"sysinfo": {"bios": {"colour": "x"}}}, "sysinfo.bios.colour", "known keys are date, release, vendor, version"),
    ({"disks": [{"type": "network", "source": "/a"}]}, "disks[0].source", "needs source.protocol"),
    ({"disks": [{"source": {"protocol": "rbd", "name": "p/i", "auth": {"username": "u", "secret_type": "x"}}}]},
     "disks[0].source.auth.secret_type", "is not one of ceph, iscsi"),
    ({"vcpus": True}, "vcpus", "expected an integer"),
    ({"memory_backing": {"hugepages": "yes please"}}, "memory_backing.hugepages", "expected true or a list"),
]


@pytest.mark.parametrize("extra,path,words", ERRORS, ids=[e[1] for e in ERRORS])
def test_bad_input_names_path_and_allowed_values(extra, path, words):
    spec = dict(BASE, **extra)
    with pytest.raises(InvalidSpec) as err:
        guest.guest_xml(spec)
    assert err.value.path == path
    assert str(err.value).startswith(path + ": ")
    assert words in str(err.value)


def test_name_and_memory_are_required():
    with pytest.raises(InvalidSpec, match="^name: is required"):
        validate_spec({"memory": 1})
    with pytest.raises(InvalidSpec, match="^memory: is required"):
        validate_spec({"name": "x"})


@pytest.mark.parametrize("text,mib", [(2048, 2048), ("2GiB", 2048), ("512M", 512), ("1 TiB", 1048576),
                                      ("1048576 KiB", 1024), ("1.5G", 1536), ("2097152k", 2048)])
def test_sizes(text, mib):
    assert validate_spec(dict(BASE, memory=text))["memory"] == mib


def test_markup_in_values_is_escaped_and_survives():
    nasty = "a<b>&c\"d'e"
    spec = dict(BASE, name="hvl-" + nasty, title=nasty, disks=[{"source": "/srv/" + nasty}],
                sysinfo={"system": {"product": nasty}}, metadata={"k": nasty})
    text = guest.guest_xml(spec)
    assert "<b>" not in text and "&c" not in text
    back = guest.parse_domain_xml(text)
    assert back["name"] == "hvl-" + nasty
    assert back["disks"][0]["source"] == "/srv/" + nasty
    assert back["sysinfo"]["system"]["product"] == nasty
    assert back["metadata"] == {"k": nasty}


# ---------------------------------------------------------------- spec_differences

def test_differences_ignore_what_libvirt_adds():
    desired = validate_spec(dict(BASE, interfaces=[{"source": "default"}], disks=[{"source": "/a"}]))
    current = guest.parse_domain_xml("""
      <domain type='qemu'><name>hvl-bad</name><uuid>0d8f1a3c-07a0-4f25-9a5a-3bb1e3b2d111</uuid>
        <memory unit='KiB'>524288</memory><currentMemory unit='KiB'>524288</currentMemory><vcpu placement='static'>1</vcpu>
        <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
        <clock offset='utc'/><on_poweroff>destroy</on_poweroff>
        <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
          <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/a'/><target dev='vda' bus='virtio'/>
            <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>
          <controller type='usb' index='0' model='piix3-uhci'/><controller type='pci' index='0' model='pci-root'/>
          <interface type='network'><mac address='52:54:00:9d:12:34'/><source network='default'/><model type='virtio'/>
            <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>
          <input type='mouse' bus='ps2'/><audio id='1' type='none'/>
          <memballoon model='virtio'/>
        </devices></domain>""")
    assert guest.spec_differences(desired, current) == []


def test_differences_report_each_changed_field():
    desired = validate_spec(dict(BASE, vcpus=2, disks=[{"source": "/a", "cache": "none"}],
                                 interfaces=[{"source": "default"}, {"source": "other"}]))
    current = validate_spec(dict(BASE, memory=1024, vcpus=2, disks=[{"source": "/a", "cache": "writeback"}],
                                 interfaces=[{"source": "default"}]))
    diffs = guest.spec_differences(desired, current)
    assert {"path": "memory", "before": 1024, "after": 512} in diffs
    assert {"path": "disks[0].cache", "before": "writeback", "after": "none"} in diffs
    assert {"path": "interfaces[1]", "before": None,
            "after": {"type": "network", "source": "other", "model": "virtio"}} in diffs
    assert len(diffs) == 3


def test_differences_extra_current_device():
    desired = validate_spec(dict(BASE, disks=[{"source": "/a"}]))
    current = validate_spec(dict(BASE, disks=[{"source": "/a"}, {"source": "/b"}]))
    assert [d["path"] for d in guest.spec_differences(desired, current)] == ["disks[1]"]


def test_differences_given_mac_and_target_do_count():
    desired = validate_spec(dict(BASE, interfaces=[{"source": "default", "mac": "52:54:00:00:00:01"}],
                                 disks=[{"source": "/a", "target": "vdb"}]))
    current = validate_spec(dict(BASE, interfaces=[{"source": "default", "mac": "52:54:00:00:00:02"}],
                                 disks=[{"source": "/a"}]))
    assert sorted(d["path"] for d in guest.spec_differences(desired, current)) == \
        ["disks[0].target", "interfaces[0].mac"]


@pytest.mark.parametrize("before,after,path", [
    ({"features": ["acpi", "apic"]}, {"features": ["acpi"]}, "features"),
    ({"cpu": {"mode": "custom", "model": "qemu64", "features": {"svm": "require", "x2apic": "disable"}}},
     {"cpu": {"mode": "custom", "model": "qemu64", "features": {"svm": "require"}}}, "cpu.features"),
    ({"metadata": {"owner": "ops", "tier": "web"}}, {"metadata": {"owner": "ops"}}, "metadata"),
    ({"vcpus": 2, "cputune": {"vcpupin": {0: "0", 1: "1"}}}, {"vcpus": 2, "cputune": {"vcpupin": {0: "0"}}},
     "cputune.vcpupin"),
])
def test_differences_a_name_dropped_from_a_map_counts(before, after, path):
    """features, cpu features, metadata and pins are one value each: removing an entry is a change."""
    current = guest.parse_domain_xml(guest.guest_xml(dict(BASE, **before)))
    desired = validate_spec(dict(BASE, **after))
    diffs = guest.spec_differences(desired, current)
    assert [d["path"] for d in diffs] == [path]
    assert guest.spec_differences(validate_spec(dict(BASE, **before)), current) == []


# ---------------------------------------------------------------- with a Host

def test_with_test_driver_host():
    with Host("test:///default") as host:
        text = guest.guest_xml(dict(name="hvl-t", memory=64), host=host)
        dom = xmlutil.parse(text)
        assert dom.get("type") == "test"  # the only type the test driver offers
        assert dom.findtext("devices/emulator") == "/usr/bin/test-hv"
        # the test driver accepts the generated domain, and reading it back shows no difference
        g = host.write_instance_config(text, validate=False)
        try:
            desired = validate_spec(dict(name="hvl-t", memory=64))
            assert guest.spec_differences(desired, guest.parse_domain_xml(g.get_xml_desc())) == []
        finally:
            host.call("undefine", lambda c: c.lookupByName("hvl-t").undefine())


def _system_host():
    try:
        host = Host("qemu:///system")
        host.get_capabilities()
        return host
    except Exception:  # noqa: BLE001 - any failure means "not reachable here"
        return None


def test_with_qemu_system_host():
    host = _system_host()
    if host is None:
        pytest.skip("qemu:///system is not reachable")
    with host:
        text = guest.guest_xml(dict(name="hvl-q", memory=64, type="qemu", os={"firmware": "efi"}), host=host)
        dom = xmlutil.parse(text)
        assert dom.get("type") == "qemu"  # the user's type wins over kvm_available()
        dcaps = host.get_domain_capabilities(virt_type="qemu")
        assert dom.find("os/type").get("machine") == dcaps.findtext("machine")
        assert dom.findtext("devices/emulator") == dcaps.findtext("path")
        loaders = [v.text for v in dcaps.findall("os/loader/value")]
        if loaders:
            assert dom.findtext("os/loader") in loaders
        # without a type: kvm only where the host offers it and the probe saw it run guest code
        for usable, expected in ((False, "qemu"), (None, "kvm"), (True, "kvm")):
            host._kvm_usable = {host.get_cpu_info()["arch"]: usable}
            auto = xmlutil.parse(guest.guest_xml(dict(name="hvl-q", memory=64), host=host))
            assert auto.get("type") == (expected if host.kvm_available() else "qemu")


def test_without_host_nothing_host_specific():
    dom = guest.guest_config(dict(name="hvl-n", memory=64))
    assert dom.find("devices/emulator") is None
    assert dom.find("os/type").get("machine") is None and dom.find("os/type").get("arch") is None
