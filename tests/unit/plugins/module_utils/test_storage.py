"""storage.py: pools and volumes on test:///default; streams, resize, clones across pools and secrets on the
real daemon (qemu:///system, under the shared lock), each with its own pools removed afterwards."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import schema, storage, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host

SYSTEM_URI = "qemu:///system"
PREFIX = "hvl-ust-"


def _pool(host, state_dir, check=False, **kw):
    return storage.PoolManager(host, check, str(state_dir)).ensure(**kw)


def _vol(host, state_dir, check=False, **kw):
    return storage.VolumeManager(host, check, str(state_dir)).ensure(**kw)


# ---------------------------------------------------------------------- values
@pytest.mark.parametrize("value, expected", [
    (1024, 1024), ("10G", 10 * 1024 ** 3), ("512MiB", 512 * 1024 ** 2), ("1KB", 1000), ("2 TiB", 2 * 1024 ** 4),
    ("7b", 7), ("3bytes", 3), ("1E", 1024 ** 6),
])
def test_sizes_as_libvirt_reads_them(value, expected):
    assert schema.Bytes().norm(value, "capacity") == expected


@pytest.mark.parametrize("value", ["10XB", "ten", "-1", "1.5G", True, None, [1], "10 G B"])
def test_a_bad_size_names_the_field(value):
    with pytest.raises(InvalidSpec) as err:
        schema.Bytes().norm(value, "capacity")
    assert str(err.value).startswith("capacity: ") and "\n" not in str(err.value)


def test_xml_sizes_with_units_are_bytes():
    vol = storage.parse_volume(xmlutil.parse("<volume><name>a</name><capacity unit='G'>5</capacity>"
                                             "<allocation unit='KiB'>4</allocation><target/></volume>"))
    assert vol["capacity"] == 5 * 1024 ** 3 and vol["allocation"] == 4096


# ---------------------------------------------------------------------- pool spec
@pytest.mark.parametrize("spec, field", [
    ({"type": "nosuch"}, "type"),
    ({"type": "dir", "source": {"name": "vg"}}, "source.name"),
    ({"type": "logical", "source": {"bogus": 1}}, "source.bogus"),
    ({"type": "rbd", "target": {"path": "/x"}}, "target"),
    ({"type": "dir", "target": {"path": "relative"}}, "target.path"),
    ({"type": "dir", "target": {"path": "/x", "permissions": {"mode": "999"}}}, "target.permissions.mode"),
    ({"type": "iscsi", "source": {"auth": {"type": "kerberos", "username": "u", "secret": {"usage": "x"}}}},
     "source.auth.type"),
    ({"type": "netfs", "source": {"hosts": [{"name": "nfs1", "port": "eighty"}]}}, "source.hosts[0].port"),
])
def test_bad_pool_spec_names_the_field(spec, field):
    with pytest.raises(InvalidSpec) as err:
        storage.POOL_SPEC.norm(dict(spec, name="p"), "")
    assert err.value.path == field


@pytest.mark.parametrize("spec, path, value", [
    ({"type": "netfs", "source": {"hosts": ["nfs.example.com"], "dir": "/export/images", "format": "nfs"},
      "target": {"path": "/mnt/images", "permissions": {"mode": 0o755, "owner": 0, "group": "0"}}},
     "target/permissions/mode", "0755"),
    ({"type": "iscsi", "source": {"hosts": [{"name": "iscsi.example.com", "port": 3260}], "devices": ["iqn.2013-06.com.example:pool"],
                                  "initiator": "iqn.2013-06.com.example:client",
                                  "auth": {"type": "chap", "username": "u", "secret": {"usage": "chap1"}}},
      "target": {"path": "/dev/disk/by-path"}}, "source/auth/secret/@usage", "chap1"),
    ({"type": "rbd", "source": {"name": "rbd", "hosts": ["mon1", {"name": "mon2", "port": 6789}],
                                "auth": {"type": "ceph", "username": "libvirt",
                                         "secret": {"uuid": "2ec115d73a883cebbc120ac909a6fd87"}}}},
     "source/auth/secret/@uuid", "2ec115d7-3a88-3ceb-bc12-0ac909a6fd87"),
    ({"type": "disk", "source": {"devices": [{"path": "/dev/sdz", "part_separator": True}], "format": "gpt"},
      "target": {"path": "/dev"}}, "source/device/@part_separator", "yes"),
    ({"type": "logical", "source": {"name": "vg0", "devices": ["/dev/sdy1"], "format": "lvm2"},
      "target": {"path": "/dev/vg0"}}, "source/name", "vg0"),
])
def test_pool_spec_builds_schema_valid_xml_and_parses_back(spec, path, value):
    spec = storage.POOL_SPEC.norm(dict(spec, name="p"), "")
    built = storage.pool_config(spec)
    assert xmlutil.validate(built, "storagepool")
    found = built.xpath(path) if "@" in path else [built.findtext(path)]
    assert [str(v) for v in found] == [value]
    assert storage.POOL_SPEC.norm(storage.parse_pool(xmlutil.parse(xmlutil.to_string(built))), "") == spec


def test_unmodelled_pool_xml_is_kept():
    xml = ("<pool type='netfs'><name>n</name><source><host name='h'/><dir path='/e'/><format type='nfs'/>"
           "<protocol ver='3'/></source><target><path>/mnt</path></target>"
           "<fs:mount_opts xmlns:fs='http://libvirt.org/schemas/storagepool/fs/1.0'><fs:option name='sync'/>"
           "</fs:mount_opts></pool>")
    spec = storage.parse_pool(xmlutil.parse(xml))
    assert "protocol" in spec["preserved"]
    built = storage.pool_config(spec)
    assert built.find("source/protocol").get("ver") == "3"
    assert built.find("{http://libvirt.org/schemas/storagepool/fs/1.0}mount_opts") is not None


# ---------------------------------------------------------------------- test:///default
@pytest.fixture
def state_dir(tmp_path, host):
    yield tmp_path / "state"
    # the test driver's state lives as long as the process: remove what the test made
    for p in host.get_connection().listAllStoragePools(0):
        if p.name().startswith(PREFIX):
            if p.isActive():
                for v in p.listAllVolumes(0):
                    v.delete(0)
                p.destroy()
            p.undefine()


def test_dir_pool_check_mode_predicts_then_converges(host, state_dir):
    want = dict(name="hvl-ust-p1", spec={"type": "dir", "target": {"path": "/hvl-ust-p1"}}, state="active",
                autostart=True)
    predicted = _pool(host, state_dir, check=True, **want)
    assert predicted["changed"] and predicted["actions"] == ["define", "build", "start", "autostart"]
    assert not host.call("", lambda c: "hvl-ust-p1" in c.listStoragePools() + c.listDefinedStoragePools())
    done = _pool(host, state_dir, **want)
    assert done["actions"] == predicted["actions"] and done["state"] == "active" and done["autostart"] is True
    assert done["capacity"] is not None
    again = _pool(host, state_dir, **want)
    assert not again["changed"] and again["differences"] == []
    assert not _pool(host, state_dir, check=True, **want)["changed"]


def test_pool_change_redefines_and_reports_the_field(host, state_dir):
    _pool(host, state_dir, name="hvl-ust-p2", spec={"type": "dir", "target": {"path": "/a"}}, state="active")
    res = _pool(host, state_dir, name="hvl-ust-p2", spec={"target": {"path": "/b"}})
    assert res["actions"] == ["redefine"] and res["pending_restart"] is True
    assert res["differences"] == [{"path": "target.path", "before": "/a", "after": "/b"}]
    _pool(host, state_dir, name="hvl-ust-p2", state="inactive")
    res = _pool(host, state_dir, name="hvl-ust-p2", spec={"target": {"path": "/c", "permissions": {"mode": "0750"}}})
    assert res["actions"] == ["redefine"] and res["pending_restart"] is False
    assert "<path>/c</path>" in res["after"] and "<mode>0750</mode>" in res["after"]


def test_a_pool_converges_once_when_libvirt_stores_its_values_another_way(host, state_dir):
    """Found by libvirt's own pool test XML defined on a daemon: a trailing or doubled '/' (libvirt sanitises
    paths) and an owner of -1 (libvirt's "not set") were redefined on every run."""
    spec = {"type": "netfs", "source": {"hosts": [{"name": "nfs1"}], "dir": "/export//images/", "format": "nfs"},
            "target": {"path": "/mnt//hvl-ust-p5/", "permissions": {"mode": "0700", "owner": -1, "group": 4294967295}}}
    first = _pool(host, state_dir, name="hvl-ust-p5", spec=spec, build=False)
    assert first["actions"] == ["define"]
    assert "<dir path='/export/images'/>" in first["after"] and "<path>/mnt/hvl-ust-p5</path>" in first["after"]
    assert "<owner>" not in first["after"]
    for check in (False, True):
        again = _pool(host, state_dir, check=check, name="hvl-ust-p5", spec=spec)
        assert not again["changed"] and again["differences"] == [], again["differences"]
    moved = dict(spec, target={"path": "/mnt/other/"})
    assert _pool(host, state_dir, name="hvl-ust-p5", spec=moved)["differences"] == [
        {"path": "target.path", "before": "/mnt/hvl-ust-p5", "after": "/mnt/other"}]
    # libvirt sets a volume group's target to /dev/VG whatever is given, and a SCSI adapter's default type
    for name, kw in (("hvl-ust-p7", {"spec": {"type": "logical", "source": {"devices": ["/dev/hvl-nosuch"]},
                                              "target": {"path": "/some/where"}}}),
                     ("hvl-ust-p8", {"xml": "<pool type='scsi'><name>hvl-ust-p8</name><source><adapter name='host0'/>"
                                            "</source><target><path>/dev/disk/by-path</path></target></pool>"})):
        first = _pool(host, state_dir, name=name, build=False, **kw)
        assert first["actions"] == ["define"], first
        for check in (False, True):
            again = _pool(host, state_dir, check=check, name=name, **kw)
            assert not again["changed"] and again["differences"] == [], (name, again["differences"])


def test_what_a_pool_spec_does_not_model_is_compared_when_given(host, state_dir):
    """``preserved`` (XML the model does not hold: here the NFS protocol version) counts only when the desired
    side has it; then a change to it is seen, by spec and by XML (the XML path used to drop it and report
    nothing), and a spec read back with it converges with no change. A disk pool's free extents are state."""
    def xml(ver):
        return ("<pool type='netfs'><name>hvl-ust-p6</name><source><host name='nfs1'/><dir path='/e'/>"
                "<format type='nfs'/><protocol ver='%d'/></source><target><path>/mnt/hvl-ust-p6</path></target>"
                "</pool>" % ver)
    assert _pool(host, state_dir, name="hvl-ust-p6", xml=xml(3), build=False)["actions"] == ["define"]
    read_back = storage.parse_pool(xmlutil.parse(xml(3)))
    assert "protocol" in read_back["preserved"]
    bare = {k: v for k, v in read_back.items() if k != "preserved"}
    for kw in ({"xml": xml(3)}, {"spec": read_back}, {"spec": bare}):
        for check in (False, True):
            res = _pool(host, state_dir, check=check, name="hvl-ust-p6", **kw)
            assert not res["changed"] and res["differences"] == [], (kw, res["differences"])
    v4 = storage.parse_pool(xmlutil.parse(xml(4)))
    for kw in ({"xml": xml(4)}, {"spec": v4}):
        res = _pool(host, state_dir, check=True, name="hvl-ust-p6", **kw)
        assert res["actions"] == ["redefine"] and [d["path"] for d in res["differences"]] == ["preserved"], kw
    res = _pool(host, state_dir, name="hvl-ust-p6", spec=v4)
    assert "<protocol ver='4'/>" in res["after"]
    # a spec without preserved keeps what is there
    assert "<protocol ver='4'/>" in _pool(host, state_dir, name="hvl-ust-p6",
                                          spec=dict(bare, target={"path": "/mnt/x"}))["after"]
    disk = storage.parse_pool(xmlutil.parse(
        "<pool type='disk'><name>d</name><source><device path='/dev/sdz'>"
        "<freeExtent start='0' end='1024'/></device><format type='gpt'/></source></pool>"))
    assert "preserved" not in disk


def test_removing_a_pool_keeps_its_volumes_unless_asked(host, state_dir):
    _pool(host, state_dir, name="hvl-ust-p3", spec={"type": "dir", "target": {"path": "/p3"}}, state="active")
    _vol(host, state_dir, pool="hvl-ust-p3", name="keep.img", capacity="1M")
    res = _pool(host, state_dir, name="hvl-ust-p3", state="absent")
    assert res["actions"] == ["stop", "undefine"]
    assert _pool(host, state_dir, name="hvl-ust-p3", state="absent")["changed"] is False


def test_removing_a_pool_with_delete_storage_deletes_volumes_first(host, state_dir):
    _pool(host, state_dir, name="hvl-ust-p4", spec={"type": "dir", "target": {"path": "/p4"}}, state="active")
    _vol(host, state_dir, pool="hvl-ust-p4", name="a.img", capacity="1M")
    check = _pool(host, state_dir, check=True, name="hvl-ust-p4", state="absent", delete_storage=True)
    assert check["actions"] == ["delete-volume a.img", "stop", "delete-storage", "undefine"]
    assert _pool(host, state_dir, name="hvl-ust-p4", state="absent", delete_storage=True)["actions"] == check["actions"]


def test_pool_errors_name_the_field_and_change_nothing(host, state_dir):
    for kw, field in ((dict(name="hvl-ust-bad", spec={"type": "foo"}), "type"),
                      (dict(name="a/b", spec={"type": "dir"}), "name"),
                      (dict(name="hvl-ust-bad",
                            xml="<pool type='dir'><name>other</name><target><path>/x</path></target></pool>"), "xml"),
                      (dict(name="hvl-ust-bad", xml="<pool type='dir'><name>hvl-ust-bad</name></pool>"), "xml")):
        with pytest.raises(InvalidSpec) as err:
            _pool(host, state_dir, **kw)
        assert err.value.path == field
    assert not [n for n in host.call("", lambda c: c.listDefinedStoragePools() + c.listStoragePools())
                if n.startswith("hvl-ust-bad") or n == "a/b"]


@pytest.fixture
def pool(host, state_dir):
    _pool(host, state_dir, name="hvl-ust-v", spec={"type": "dir", "target": {"path": "/hvl-ust-v"}}, state="active")
    return "hvl-ust-v"


def test_volume_create_check_mode_predicts_then_idempotent(host, state_dir, pool):
    predicted = _vol(host, state_dir, check=True, pool=pool, name="d.img", capacity="64MiB")
    assert predicted["actions"] == ["create"] and predicted["capacity"] == 64 * 1024 ** 2
    assert predicted["format"] == "raw"
    done = _vol(host, state_dir, pool=pool, name="d.img", capacity="64MiB")
    assert done["actions"] == ["create"] and done["capacity"] == predicted["capacity"]
    assert done["path"] == "/hvl-ust-v/d.img" and done["key"] and done["format"] == "raw"
    assert _vol(host, state_dir, pool=pool, name="d.img", capacity=64 * 1024 ** 2)["changed"] is False
    assert _vol(host, state_dir, check=True, pool=pool, name="d.img", capacity="64M")["changed"] is False


def test_copy_on_write_over_a_backing_volume(host, state_dir, pool):
    _vol(host, state_dir, pool=pool, name="base.img", capacity="32M")
    res = _vol(host, state_dir, pool=pool, name="ov.qcow2", backing={"name": "base.img"}, capacity="1G")
    assert res["format"] == "qcow2" and res["backing"] == {"path": "/hvl-ust-v/base.img", "format": "raw"}
    assert res["capacity"] == 1024 ** 3
    assert _vol(host, state_dir, pool=pool, name="ov.qcow2", backing={"name": "base.img"}, capacity="1G")["changed"] is False
    with pytest.raises(InvalidSpec) as err:
        _vol(host, state_dir, pool=pool, name="base.img", state="absent")
    assert "backing store of /hvl-ust-v/ov.qcow2" in str(err.value)


def test_volume_errors_name_the_field_and_create_nothing(host, state_dir, pool):
    cases = ((dict(name="x", capacity="10XB"), "capacity"),
             (dict(name="x", backing={"name": "missing.img"}), "backing.name"),
             (dict(name="x", backing={"pool": "hvl-ust-none", "name": "a"}), "backing.pool"),
             (dict(name="a/b", capacity="1M"), "name"),
             (dict(name="x"), "capacity"),
             (dict(name="x", capacity="1M", backing={"name": "a", "bogus": 1}), "backing.bogus"),
             (dict(name="x", clone_from={"name": "missing"}), "clone_from.name"))
    for kw, field in cases:
        with pytest.raises(InvalidSpec) as err:
            _vol(host, state_dir, pool=pool, **kw)
        assert err.value.path == field, err.value
        assert "\n" not in str(err.value)
    assert host.call("", lambda c: c.storagePoolLookupByName(pool).listVolumes()) == []


def test_shrinking_needs_allow_shrink(host, state_dir, pool):
    _vol(host, state_dir, pool=pool, name="s.img", capacity="8M")
    with pytest.raises(InvalidSpec) as err:
        _vol(host, state_dir, pool=pool, name="s.img", capacity="4M")
    assert err.value.path == "capacity"


def test_volume_in_use_by_a_defined_domain_needs_force(host, state_dir, pool):
    res = _vol(host, state_dir, pool=pool, name="disk.img", capacity="8M")
    xml = ("<domain type='test'><name>hvl-ust-dom</name><memory>1024</memory><os><type>hvm</type></os><devices>"
           "<disk type='file' device='disk'><source file='%s'/><target dev='vda'/></disk></devices></domain>"
           % res["path"])
    dom = host.call("", lambda c: c.defineXML(xml))
    try:
        with pytest.raises(InvalidSpec) as err:
            _vol(host, state_dir, pool=pool, name="disk.img", state="absent")
        assert err.value.path == "force" and "hvl-ust-dom" in str(err.value)
        assert _vol(host, state_dir, pool=pool, name="disk.img", state="absent", force=True)["actions"] == ["delete"]
    finally:
        dom.undefine()


def _running(host, disk_xml):
    xml = ("<domain type='test'><name>hvl-ust-run</name><memory>1024</memory><os><type>hvm</type></os>"
           "<devices>%s</devices></domain>" % disk_xml)
    return host.call("", lambda c: c.createXML(xml, 0))


def test_a_running_domains_disk_grows_through_the_domain_and_never_shrinks(host, state_dir, pool):
    res = _vol(host, state_dir, pool=pool, name="live.img", capacity="8M")
    dom = _running(host, "<disk type='file' device='disk'><source file='%s'/><target dev='vdb'/></disk>" % res["path"])
    try:
        grow = _vol(host, state_dir, check=True, pool=pool, name="live.img", capacity="16M")
        assert grow["actions"] == ["resize"] and grow["capacity"] == 16 * 1024 ** 2
        assert grow["resized_through"] == {"domain": "hvl-ust-run", "target": "vdb"}
        with pytest.raises(InvalidSpec) as err:
            _vol(host, state_dir, pool=pool, name="live.img", capacity="4M", allow_shrink=True)
        assert err.value.path == "capacity" and "running domain hvl-ust-run (vdb)" in str(err.value)
        assert _vol(host, state_dir, check=True, pool=pool, name="live.img")["capacity"] == 8 * 1024 ** 2
    finally:
        dom.destroy()
    # shut off, the volume API resizes it again
    assert "resized_through" not in _vol(host, state_dir, check=True, pool=pool, name="live.img", capacity="16M")


def test_a_backing_image_under_a_running_disk_is_not_resized(host, state_dir, pool):
    base = _vol(host, state_dir, pool=pool, name="base.img", capacity="8M")
    dom = _running(host, "<disk type='file' device='disk'><source file='/tmp/hvl-ust-overlay.qcow2'/>"
                         "<backingStore type='file'><format type='raw'/><source file='%s'/><backingStore/>"
                         "</backingStore><target dev='vda'/></disk>" % base["path"])
    try:
        with pytest.raises(InvalidSpec) as err:
            _vol(host, state_dir, pool=pool, name="base.img", capacity="16M")
        assert err.value.path == "capacity" and "backing chain" in str(err.value)
    finally:
        dom.destroy()


# ---------------------------------------------------------------------- markers
def test_markers_are_private_and_keyed(tmp_path):
    m = storage.Markers(str(tmp_path), "uploads")
    assert m.put(("h", "k"), {"sha256": "x"})
    assert m.get(("h", "k"))["sha256"] == "x" and m.get(("h", "other")) is None
    assert oct(os.stat(m.dir).st_mode & 0o777) == "0o700"
    assert all(oct(os.stat(os.path.join(m.dir, f)).st_mode & 0o777) == "0o600" for f in os.listdir(m.dir))
    m.drop(("h", "k"))
    assert m.get(("h", "k")) is None


# ---------------------------------------------------------------------- the real daemon
def _system_reachable() -> bool:
    if libvirt is None:
        return False
    try:
        libvirt.open(SYSTEM_URI).close()
    except libvirt.libvirtError:
        return False
    return True


daemon = pytest.mark.skipif(not _system_reachable(), reason="qemu:///system is not reachable")


@pytest.fixture
def system(tmp_path):
    h = Host(SYSTEM_URI)
    yield h
    conn = h.get_connection()
    for p in conn.listAllStoragePools(0):
        if p.name().startswith(PREFIX):
            if p.isActive():
                for v in p.listAllVolumes(0):
                    v.delete(0)
                p.destroy()
            p.undefine()
    for s in conn.listAllSecrets(0):
        if (s.usageID() or "").startswith(PREFIX):
            s.undefine()
    h.close()


@daemon
def test_delete_storage_if_empty_removes_only_an_empty_pools_directory(system, tmp_path):
    def make(name, fill=None):
        path = tmp_path / name
        _pool(system, tmp_path / "state", name=PREFIX + name, spec={"type": "dir", "target": {"path": str(path)}},
              state="active", build=True)
        if fill:
            fill(path)
            _pool(system, tmp_path / "state", name=PREFIX + name, state="active", refresh=True)
        return path

    def gone(name, check=False):
        return _pool(system, tmp_path / "state", check=check, name=PREFIX + name, state="absent",
                     delete_storage="if_empty")

    empty = make("empty")
    predicted = gone("empty", check=True)
    assert predicted["actions"] == ["stop", "delete-storage", "undefine"] and empty.is_dir()
    done = gone("empty")
    assert done["actions"] == predicted["actions"] and "storage_kept" not in done and not empty.exists()

    full = make("full", lambda p: (p / "notes.txt").write_text("someone's\n"))
    kept = gone("full")
    assert kept["actions"] == ["stop", "undefine"]
    assert kept["storage_kept"] == {"volumes": ["notes.txt"], "reason": "the pool holds volumes"}
    assert (full / "notes.txt").read_text() == "someone's\n"

    # libvirt lists no volume for a dangling symlink, and cannot remove the directory that holds one
    odd = make("odd", lambda p: (p / "link").symlink_to(p / "nowhere"))
    held = gone("odd")
    assert held["actions"] == ["stop", "delete-storage", "undefine"], held
    assert held["storage_kept"]["volumes"] == [] and "storage of pool" in held["storage_kept"]["reason"]
    assert (odd / "link").is_symlink()
    assert not [p for p in system.get_connection().listAllStoragePools(0) if p.name().startswith(PREFIX)]
    with pytest.raises(InvalidSpec) as err:
        _pool(system, tmp_path / "state", name=PREFIX + "x", state="absent", delete_storage="sometimes")
    assert err.value.path == "delete_storage"


def _sparse_qcow2(path: str, size: str = "256M") -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 1M 2M", "-c", "write -P 0x11 100M 1M", path], check=True,
                   stdout=subprocess.DEVNULL)


def _allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


@daemon
def test_upload_sparse_once_resize_download(system, tmp_path):
    state = tmp_path / "state"
    img = str(tmp_path / "base.qcow2")
    _sparse_qcow2(img)
    for n in ("a", "b"):
        _pool(system, state, name=PREFIX + n, spec={"type": "dir", "target": {"path": str(tmp_path / n)}},
              state="active")
    up = _vol(system, state, pool=PREFIX + "a", name="base.qcow2", src=img)
    assert up["actions"] == ["create", "upload %s" % img] and up["upload_recorded"] is True
    assert up["format"] == "qcow2" and up["capacity"] == 256 * 1024 ** 2
    # the same bytes, and holes stayed holes
    subprocess.run(["cmp", img, up["path"]], check=True)
    assert _allocated(up["path"]) <= _allocated(img) + 1024 * 1024
    again = _vol(system, state, pool=PREFIX + "a", name="base.qcow2", src=img)
    assert again["changed"] is False
    # resize from the base image: grows, never shrinks by default
    grown = _vol(system, state, pool=PREFIX + "a", name="base.qcow2", src=img, capacity="512M")
    assert grown["actions"] == ["resize"] and grown["capacity"] == 512 * 1024 ** 2
    assert subprocess.run(["qemu-img", "info", "--output=json", "-U", up["path"]], capture_output=True, text=True,
                          check=True).stdout.count('"virtual-size": %d' % (512 * 1024 ** 2)) == 1
    with pytest.raises(InvalidSpec):
        _vol(system, state, pool=PREFIX + "a", name="base.qcow2", capacity="256M")
    # a full clone into the other pool, then downloaded sparse
    clone = _vol(system, state, pool=PREFIX + "b", name="clone.qcow2",
                 clone_from={"pool": PREFIX + "a", "name": "base.qcow2"})
    assert clone["actions"][0].startswith("clone ") and clone["format"] == "qcow2"
    assert clone["capacity"] == 512 * 1024 ** 2 and clone["path"].startswith(str(tmp_path / "b"))
    dest = str(tmp_path / "out.qcow2")
    down = _vol(system, state, pool=PREFIX + "a", name="base.qcow2", dest=dest)
    assert down["actions"] == ["download %s" % dest]
    subprocess.run(["cmp", up["path"], dest], check=True)
    assert _allocated(dest) <= _allocated(up["path"]) + 1024 * 1024
    assert _vol(system, state, pool=PREFIX + "a", name="base.qcow2", dest=dest)["changed"] is False
    # a changed source is uploaded again (into a fresh volume: no stale data in the new holes)
    subprocess.run(["qemu-io", "-c", "write -P 0x77 50M 1M", img], check=True, stdout=subprocess.DEVNULL)
    predicted = _vol(system, state, check=True, pool=PREFIX + "a", name="base.qcow2", src=img)
    assert predicted["actions"] == ["delete (re-upload)", "create", "upload %s" % img]
    re = _vol(system, state, pool=PREFIX + "a", name="base.qcow2", src=img)
    assert re["actions"] == predicted["actions"]
    with open(img, "rb") as a, open(re["path"], "rb") as b:
        assert hashlib.sha256(a.read()).digest() == hashlib.sha256(b.read()).digest()


@daemon
def test_secret_value_compared_without_reading_a_private_value(system, tmp_path):
    state = tmp_path / "state"
    usage = {"type": "ceph", "name": PREFIX + "client.admin"}

    def mgr(check=False):
        return storage.SecretManager(system, check, str(state))
    first = mgr(True).ensure(usage=usage, private=True, value="s3cr3t-one")
    assert first["actions"] == ["define", "set-value"]
    made = mgr().ensure(usage=usage, private=True, value="s3cr3t-one")
    assert made["actions"] == first["actions"] and made["uuid"]
    assert "s3cr3t-one" not in repr(made)
    assert mgr().ensure(usage=usage, private=True, value="s3cr3t-one")["changed"] is False
    changed = mgr().ensure(usage=usage, value="s3cr3t-two")
    assert changed["actions"] == ["set-value"]
    assert changed["differences"] == [{"path": "value", "before": "********", "after": "********"}]
    assert mgr().ensure(usage=usage, value="s3cr3t-three", update_value="on_create")["changed"] is False
    with pytest.raises(InvalidSpec) as err:
        mgr().ensure(usage=usage, private=False)
    assert err.value.path == "private"
    # a readable secret is compared with libvirt's copy of the value
    readable = {"type": "iscsi", "target": PREFIX + "iqn.2026-01.test:t1"}
    assert mgr().ensure(usage=readable, value="chap")["actions"] == ["define", "set-value"]
    assert mgr().ensure(usage=readable, value="chap")["changed"] is False
    assert mgr().ensure(usage=readable, value="Y2hhcA==", value_encoding="base64")["changed"] is False
    gone = mgr().ensure(usage=readable, state="absent")
    assert gone["actions"] == ["undefine"] and gone["xml"] is None if "xml" in gone else True
    with pytest.raises(InvalidSpec) as err:
        mgr().ensure(usage={"type": "ceph", "target": "x"})
    assert err.value.path == "usage.target"


def test_spec_differences_ignore_what_is_not_asked():
    assert schema.differences({"a": None, "b": {"c": 1}}, {"a": 5, "b": {"c": 1, "d": 2}}) == []
    assert schema.differences({"b": {"c": 2}}, {"b": {"c": 1}}) == [{"path": "b.c", "before": 1, "after": 2}]


def test_spec_differences_follow_the_schema():
    """One comparison for every spec: a Map whole, a keyed List by identity, values as libvirt reads them."""
    field = schema.Dict({"features": schema.Map(schema.Str(), schema.Str()),
                         "hosts": schema.List(schema.Dict({"name": schema.Str(), "port": schema.Int()}), key="name")})
    have = {"features": {"a": "on", "b": "on"}, "hosts": [{"name": "x", "port": 1}, {"name": "y", "port": 2}]}
    assert schema.differences({"features": {"a": "on"}}, have, field) == [
        {"path": "features", "before": {"a": "on", "b": "on"}, "after": {"a": "on"}}]
    assert schema.differences({"hosts": [{"name": "y", "port": "0x2"}, {"name": "x", "port": 1}]}, have, field) == []
    assert schema.differences({"hosts": [{"name": "y", "port": 3}]}, have, field) == [
        {"path": "hosts[0].port", "before": 2, "after": 3}, {"path": "hosts[0]", "before": {"name": "x", "port": 1},
                                                             "after": None}]


@daemon
def test_an_overlay_over_an_image_outside_any_pool_takes_the_images_size(system, tmp_path):
    """A base given by path that no pool holds: on a local URI its size comes from the image itself."""
    state = tmp_path / "state"
    outside = tmp_path / "outside"
    outside.mkdir()
    base = str(outside / "base.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "96M"], check=True)
    _pool(system, state, name=PREFIX + "ov", spec={"type": "dir", "target": {"path": str(tmp_path / "ov")}},
          state="active")
    made = _vol(system, state, pool=PREFIX + "ov", name="disk.qcow2", backing={"path": base, "format": "qcow2"})
    assert made["changed"] is True and made["capacity"] == 96 * 1024 ** 2
    assert made["backing"]["path"] == base
    with pytest.raises(InvalidSpec) as err:
        _vol(system, state, pool=PREFIX + "ov", name="small.qcow2", capacity="64M",
             backing={"path": base, "format": "qcow2"})
    assert err.value.path == "capacity"
