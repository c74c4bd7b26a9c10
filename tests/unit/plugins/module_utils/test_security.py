"""Deletion only of what a domain owns, secrets that never print, input refused with the field named.

Storage and secrets run on libvirt's test:///default driver with real files (qemu-img makes the
images); what only a real start shows runs on qemu:///system.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid as uuidlib

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import network, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain import (
    DomainRequest,
    converge,
    secret_values,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    HypervisorError,
    InvalidSpec,
    NotFound,
    OperationFailed,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.firewall import filter_xml
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import validate_spec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host


@pytest.fixture
def names(host):
    made: list[str] = []

    def make() -> str:
        made.append("hvl-sec-%s" % uuidlib.uuid4().hex[:8])
        return made[-1]
    yield make
    for n in made:
        try:
            g = host.get_guest(name=n)
        except NotFound:
            continue
        if g.is_active():
            g.poweroff()
        g.delete_configuration()


def disk_domain(name: str, *disks: str, fmt: str = "qcow2") -> str:
    devs = "".join("<disk type='file' device='disk'><driver name='qemu' type='%s'/><source file='%s'/>"
                   "<target dev='vd%s' bus='virtio'/></disk>" % (fmt, p, "abcdefgh"[i]) for i, p in enumerate(disks))
    return ("<domain type='test'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            "<os><type arch='i686'>hvm</type></os><devices>%s</devices></domain>" % (name, devs))


def qcow2(path, backing=None) -> str:
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing:
        argv += ["-b", str(backing), "-F", "qcow2"]
    subprocess.run(argv + ["--", str(path), "1M"], check=True)
    return str(path)


def remove(host: Host, name: str) -> dict:
    return converge(host, DomainRequest(name=name, state="absent", remove_storage=True, force=True))


# ------------------------------------------------------------------ remove_storage: the real file decides
def test_a_base_image_another_domains_overlay_is_backed_by_is_kept(host, names, tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    overlay = qcow2(tmp_path / "overlay.qcow2", backing=base)
    owner, other = names(), names()
    host.write_instance_config(disk_domain(owner, base))
    host.write_instance_config(disk_domain(other, overlay))
    r = remove(host, owner)
    assert r["removed_storage"] == []
    assert os.path.exists(base), "the base of another domain's overlay was deleted"


@pytest.mark.parametrize("how", ["symlink", "dot-slash", "double-slash"])
def test_the_same_file_by_another_path_is_kept(host, names, tmp_path, how):
    image = qcow2(tmp_path / "shared.qcow2")
    if how == "symlink":
        alias = str(tmp_path / "alias.qcow2")
        os.symlink(image, alias)
    elif how == "dot-slash":
        alias = str(tmp_path / "." / "shared.qcow2").replace("/shared", "/./shared")
    else:
        alias = image.replace("/shared", "//shared")
    owner, other = names(), names()
    host.write_instance_config(disk_domain(owner, image))
    host.write_instance_config(disk_domain(other, alias))
    assert remove(host, owner)["removed_storage"] == []
    assert os.path.exists(image)


def test_a_text_file_and_a_device_node_named_as_disks_are_not_unlinked(host, names, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("an operator's notes, not a disk image\n")
    node = str(tmp_path / "blk")
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(7, 200))
    fake_qcow2 = tmp_path / "fake.qcow2"
    fake_qcow2.write_bytes(b"x" * 4096)
    owner = names()
    host.write_instance_config(disk_domain(owner, str(text), node, fmt="raw"))
    other = names()
    host.write_instance_config(disk_domain(other, str(fake_qcow2)))
    assert remove(host, owner)["removed_storage"] == []
    assert remove(host, other)["removed_storage"] == []
    assert text.exists() and os.path.lexists(node) and fake_qcow2.exists()


def test_a_symlinked_disk_is_neither_unlinked_nor_followed(host, names, tmp_path):
    target = qcow2(tmp_path / "elsewhere.qcow2")
    link = str(tmp_path / "disk.qcow2")
    os.symlink(target, link)
    owner = names()
    host.write_instance_config(disk_domain(owner, link))
    assert remove(host, owner)["removed_storage"] == []
    assert os.path.lexists(link) and os.path.exists(target)


def test_own_unshared_images_are_still_removed(host, names, tmp_path):
    base = qcow2(tmp_path / "base.qcow2")
    mine = qcow2(tmp_path / "mine.qcow2", backing=base)
    owner, other = names(), names()
    host.write_instance_config(disk_domain(owner, mine))
    host.write_instance_config(disk_domain(other, qcow2(tmp_path / "theirs.qcow2", backing=base)))
    assert remove(host, owner)["removed_storage"] == [mine]
    assert not os.path.exists(mine) and os.path.exists(base)


def test_a_failed_removal_goes_on_with_the_others_and_says_what_was_done(host, names, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(ro)], check=True)
    try:
        stuck = qcow2(ro / "stuck.qcow2")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        free = qcow2(tmp_path / "free.qcow2")
        owner = names()
        host.write_instance_config(disk_domain(owner, stuck, free))
        with pytest.raises(OperationFailed) as err:
            remove(host, owner)
        msg = str(err.value)
        assert "was undefined" in msg and free in msg and stuck in msg and "\n" not in msg
        assert "already done before this failure: undefine" in msg
        assert not os.path.exists(free), "a failure on one disk leaked the others"
        with pytest.raises(NotFound):
            host.get_guest(name=owner)
    finally:
        subprocess.run(["umount", str(ro)], check=False)


# ------------------------------------------------------------------ graphics passwords
def vnc_spec(name: str, password: str) -> dict:
    return {"name": name, "type": "test", "memory": 64, "vcpus": 1, "os": {"arch": "i686"},
            "graphics": [{"type": "vnc", "password": password}]}


def test_a_graphics_password_settles_and_never_prints(host, names):
    name = names()
    secret = "s3cr3tPw"
    first = converge(host, DomainRequest(spec=vnc_spec(name, secret)))
    assert first["changed"]
    second = converge(host, DomainRequest(spec=vnc_spec(name, secret)))
    assert not second["changed"], second["differences"]
    # the password is really stored (secure XML) and kept by a redefinition of something else
    assert secret in host.get_guest(name=name).get_xml_desc(inactive=True, secure=True)
    converge(host, DomainRequest(name=name, spec={"name": name, "memory": 96}))
    assert secret in host.get_guest(name=name).get_xml_desc(inactive=True, secure=True)
    changed = converge(host, DomainRequest(spec=vnc_spec(name, "n3wPa55x")), check_mode=True)
    assert changed["changed"] and changed["differences"]
    for result in (first, second, changed):
        text = repr(result)
        assert secret not in text and "n3wPa55x" not in text
    assert "passwd=\"********\"" in changed["diff"]["after"] or "passwd='********'" in changed["diff"]["after"]


def test_secret_values_are_given_to_the_module_to_mask():
    assert secret_values({"graphics": {"type": "vnc", "password": "a1"}}, None) == {"a1"}
    assert secret_values(None, "<domain><devices><graphics type='vnc' passwd='b2'/></devices></domain>") == {"b2"}


# ------------------------------------------------------------------ one-line errors naming the field
BASE = {"name": "v", "memory": 64}


@pytest.mark.parametrize("extra,path", [
    ({"title": "a\x01b"}, "title"),
    ({"description": "line\x00"}, "description"),
    ({"os": {"kernel": "/k", "cmdline": "console=ttyS0\x1b[2J"}}, "os.cmdline"),
    ({"sysinfo": {"system": {"serial": "x\x07"}}}, "sysinfo.system.serial"),
    ({"interfaces": [{"type": "network", "source": "net\nwork"}]}, "interfaces[0].source"),
    ({"interfaces": [{"type": "bridge", "source": "a b;c"}]}, "interfaces[0].source"),
    ({"interfaces": [{"filter": {"name": "f", "parameters": {"IP": "1.2.3.4\x01"}}, "source": "default"}]},
     "interfaces[0].filter.parameters.IP"),
    ({"vcpus": 10 ** 20}, "vcpus"),
    ({"memory": 10 ** 20}, "memory"),
    ({"interfaces": [{"source": "default", "mac": "01:00:5e:00:00:01"}]}, "interfaces[0].mac"),
    ({"disks": [{"source": "relative/disk.qcow2"}]}, "disks[0].source"),
    ({"serials": [{"type": "file", "path": "console.log"}]}, "serials[0].path"),
    ({"graphics": [{"type": "vnc", "password": "longer-than-8"}]}, "graphics[0].password"),
])
def test_spec_input_only_the_schema_refused_names_the_field(extra, path):
    with pytest.raises(InvalidSpec) as err:
        validate_spec(dict(BASE, **extra))
    assert err.value.path == path and "\n" not in str(err.value)


@pytest.mark.parametrize("spec,path", [
    ({"name": "n\x01"}, "name"),
    ({"name": "n", "bridge": "a b;c"}, "bridge.name"),
    ({"name": "n", "bridge": "br\x01"}, "bridge.name"),
    ({"name": "n", "ip": {"address": "192.0.2.1", "dhcp": {"ranges": 5}}}, "ip.dhcp.ranges"),
    ({"name": "n", "ip": {"address": "192.0.2.1", "dhcp": {"hosts": [
        {"mac": "52:54:00:00:00:01", "name": "evil,ignore", "ip": "192.0.2.5"}]}}}, "ip.dhcp.hosts[0].name"),
    ({"name": "n", "ip": {"address": "192.0.2.1", "dhcp": {"hosts": [
        {"mac": "52:54:00:00:00:01", "name": "a\ndhcp-host=52:54:00:00:00:02,192.0.2.9", "ip": "192.0.2.5"}]}}},
     "ip.dhcp.hosts[0].name"),
    ({"name": "n", "dns": {"hosts": [{"ip": "192.0.2.7", "hostnames": ["ok", "bad name"]}]}},
     "dns.hosts[0].hostnames[1]"),
    ({"name": "n", "domain": "ex ample"}, "domain.name"),
])
def test_network_input_names_the_field(spec, path):
    with pytest.raises(InvalidSpec) as err:
        network.check_spec(spec)
    assert err.value.path == path and "\n" not in str(err.value)


def test_good_dhcp_host_names_still_pass():
    spec = network.check_spec({"name": "n", "ip": {"address": "192.0.2.1", "dhcp": {"hosts": [
        {"mac": "52:54:00:00:00:01", "name": "web-1.example", "ip": "192.0.2.5"}]}}})
    assert spec["ips"][0]["dhcp"]["hosts"][0]["name"] == "web-1.example"


@pytest.mark.parametrize("kwargs,path", [
    ({"rules": [{"action": "accept", "direction": "in", "tcp": {"comment": "x\x01y"}}]}, "rules[0].tcp.comment"),
    ({"chain": "ipv4\n"}, "chain"),
])
def test_nwfilter_control_characters_name_the_field(kwargs, path):
    with pytest.raises(InvalidSpec) as err:
        filter_xml("hvl-sec-f", **kwargs)
    assert err.value.path == path


def test_check_text_keeps_line_breaks_only_where_text_may_have_them():
    assert xmlutil.check_text("two\nlines\ttab", "description", multiline=True)
    with pytest.raises(InvalidSpec):
        xmlutil.check_text("two\nlines", "title")


# ------------------------------------------------------------------ what only a real start shows
@pytest.fixture
def qemu_host():
    h = Host("qemu:///system")
    try:
        h.get_connection()
    except HypervisorError:
        pytest.skip("qemu:///system is not reachable")
    yield h
    h.close()


def real_spec(name: str, tmp_path, **extra) -> dict:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\0" * 512)
    spec = {"name": name, "type": "qemu", "memory": 64, "vcpus": 1,
            "os": {"arch": "x86_64", "kernel": str(kernel)}}
    spec.update(extra)
    return spec


@pytest.mark.parametrize("extra,path", [
    ({"interfaces": [{"type": "bridge", "source": "hvlnobr0"}]}, "spec.interfaces[0].source"),
    ({"serials": [{"type": "file", "path": "/nonexistent-hvl-dir/console.log"}]}, "spec.serials[0]"),
])
def test_a_start_that_cannot_work_fails_before_the_define(qemu_host, tmp_path, extra, path):
    name = "hvl-sec-%s" % uuidlib.uuid4().hex[:8]
    try:
        with pytest.raises(InvalidSpec) as err:
            converge(qemu_host, DomainRequest(spec=real_spec(name, tmp_path, **extra), state="running",
                                              autostart=True))
        assert err.value.path == path
        with pytest.raises(NotFound):
            qemu_host.get_guest(name=name)
    finally:
        try:
            qemu_host.get_guest(name=name).delete_configuration()
        except NotFound:
            pass


def test_a_failed_start_after_the_define_says_what_it_changed(qemu_host, tmp_path):
    name = "hvl-sec-%s" % uuidlib.uuid4().hex[:8]
    bogus = tmp_path / "bogus.qcow2"
    bogus.write_bytes(b"not a qcow2 image" * 64)
    os.chmod(tmp_path, 0o755)
    spec = real_spec(name, tmp_path, disks=[{"source": str(bogus), "format": "qcow2"}])
    try:
        with pytest.raises(HypervisorError) as err:
            converge(qemu_host, DomainRequest(spec=spec, state="running", autostart=True))
        assert "already done before this failure: define, autostart" in str(err.value)
    finally:
        try:
            qemu_host.get_guest(name=name).delete_configuration()
        except NotFound:
            pass


# ------------------------------------------------------------------ remove_files: what a role recorded
def test_remove_files_takes_only_unused_regular_files_under_the_directory(host, names, tmp_path):
    guest_dir = tmp_path / "guest"
    guest_dir.mkdir()
    seed_dir = guest_dir / "cidata"
    seed_dir.mkdir()
    (seed_dir / "user-data").write_text("#cloud-config\n")
    mine = qcow2(guest_dir / "root.qcow2")
    shared = qcow2(guest_dir / "shared.qcow2")
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "keep").write_text("root's\n")
    link = guest_dir / "link"
    os.symlink(str(outside), str(link))
    owner, other = names(), names()
    host.write_instance_config(disk_domain(owner, mine, shared))
    host.write_instance_config(disk_domain(other, shared))
    files = [mine, shared, str(seed_dir / "user-data"), str(outside), str(link), str(link / "keep"),
             str(guest_dir / "../victim/keep"), str(seed_dir), str(guest_dir)]
    req = DomainRequest(name=owner, state="absent", force=True, remove_files=files, remove_files_under=str(guest_dir))
    predicted = converge(host, req, check_mode=True)
    result = converge(host, req)
    assert predicted["removed_storage"] == result["removed_storage"] == [mine, str(seed_dir / "user-data"),
                                                                         str(seed_dir)]
    assert result["actions"] == ["undefine", "remove_files"]
    assert (outside / "keep").exists() and os.path.exists(shared) and os.path.islink(str(link))
    # the domain is gone: a re-run still finishes the job, and then changes nothing
    os.unlink(str(link))
    again = converge(host, DomainRequest(name=owner, state="absent", remove_files=files,
                                         remove_files_under=str(guest_dir)))
    assert again["removed_storage"] == []  # shared is still another domain's disk, so the directory stays
    host.get_guest(name=other).delete_configuration()
    last = converge(host, DomainRequest(name=owner, state="absent", remove_files=files,
                                        remove_files_under=str(guest_dir)))
    assert last["removed_storage"] == [shared, str(guest_dir)] and not guest_dir.exists()


def test_remove_files_needs_absolute_paths_and_state_absent():
    with pytest.raises(InvalidSpec) as err:
        DomainRequest(name="x", state="absent", remove_files=["rel/path"])
    assert err.value.path == "remove_files[0]"
    with pytest.raises(InvalidSpec):
        DomainRequest(name="x", state="present", remove_files=["/a"])


def test_a_password_in_raw_xml_settles_and_never_prints(host, names):
    name = names()
    xml = ("<domain type='test'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
           "<os><type arch='i686'>hvm</type></os><devices><graphics type='vnc' passwd='%s'/></devices></domain>")
    first = converge(host, DomainRequest(xml=xml % (name, "Xml8Pass")))
    second = converge(host, DomainRequest(xml=xml % (name, "Xml8Pass")))
    third = converge(host, DomainRequest(xml=xml % (name, "Xml9Pass")), check_mode=True)
    assert first["changed"] and not second["changed"] and third["changed"]
    assert [d["path"] for d in third["differences"]] == ["devices/graphics@passwd"]
    for result in (first, second, third):
        assert "Xml8Pass" not in repr(result) and "Xml9Pass" not in repr(result)
