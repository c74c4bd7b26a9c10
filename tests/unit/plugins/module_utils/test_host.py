"""Host on libvirt's test:///default driver, plus one restart of the real libvirtd."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid as uuidlib

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import ConnectionFailed, NotFound, Timeout
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest import Guest
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import (
    ConnectionEvent,
    Host,
    LifecycleEvent,
    version_to_int,
    version_to_string,
)

TEST_URI = "test:///default"
# test:///default: one running domain "test", 2 vCPUs, 2 GiB; nodeinfo 16 CPUs, 3 GiB; type TEST 0.0.2
TEST_DOMAIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


@pytest.fixture
def inactive_domain(host):
    """A second, defined-only domain in the test driver's (per-process) state."""
    name = "hvl-unit-%s" % uuidlib.uuid4().hex[:8]
    xml = ("<domain type='test'><name>%s</name><memory unit='MiB'>128</memory><vcpu>3</vcpu>"
           "<os><type>hvm</type></os></domain>" % name)
    dom = host.call("define", lambda c: c.defineXML(xml))
    yield name
    try:
        dom.undefine()
    except libvirt.libvirtError:
        pass


def _test_domain(host):
    return host.call("lookup", lambda c: c.lookupByName("test"))


# ---------------------------------------------------------------- connection
def test_connects_lazily_and_reuses_one_connection():
    h = Host(TEST_URI)
    assert h._wrapped_conn is None  # nothing opened by the constructor
    conn = h.get_connection()
    assert conn.isAlive() == 1
    h.get_hypervisor_type()
    h.list_guests()
    assert h.get_connection() is conn
    h.close()
    assert h._wrapped_conn is None


def test_unknown_uri_is_connection_failed_naming_it():
    h = Host("test:///nonexistent/hvl-no-such-file.xml")  # lazy: constructing is fine
    with pytest.raises(ConnectionFailed) as err:
        h.get_hypervisor_type()
    assert "test:///nonexistent/hvl-no-such-file.xml" in str(err.value)
    assert err.value.uri == "test:///nonexistent/hvl-no-such-file.xml"
    assert "\n" not in str(err.value)


def test_unknown_driver_is_connection_failed():
    with pytest.raises(ConnectionFailed) as err:
        Host("nosuchdriver:///system").get_connection()
    assert "nosuchdriver:///system" in str(err.value)


def test_close_callback_marks_connection_dead_and_next_call_reconnects(host):
    events = []
    h = Host(TEST_URI, conn_event_handler=events.append)
    h.initialize()
    old = h.get_connection()
    h._close_callback(old, 0, None)  # what the native thread does when the socket drops
    new = h.get_connection()
    assert new is not old
    assert h.get_hypervisor_type() == "TEST"
    assert h.get_connection() is new
    deadline = time.monotonic() + 5
    while not any(isinstance(e, ConnectionEvent) and not e.up for e in events) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(not e.up and "closed" in e.reason for e in events)
    h.close()


def test_read_only_connection_reads_but_cannot_write():
    h = Host(TEST_URI, read_only=True)
    assert h.read_only
    assert h.get_hypervisor_type() == "TEST"
    with pytest.raises(Exception):
        h.write_instance_config("<domain type='test'><name>hvl-ro</name><memory>1024</memory>"
                                "<os><type>hvm</type></os></domain>")
    h.close()


# ---------------------------------------------------------------- versions
@pytest.mark.parametrize("value, expected", [
    ((9, 0, 0), 9000000), ("9.0.0", 9000000), ("9.1", 9001000), (9000000, 9000000), ([7, 2], 7002000), (None, None),
])
def test_version_to_int(value, expected):
    assert version_to_int(value) == expected


def test_version_to_string():
    assert version_to_string(7002022) == "7.2.22"


@pytest.mark.parametrize("kwargs, expected", [
    ({"lv_ver": (9, 0, 0)}, True),
    ({"lv_ver": "8.10"}, True),
    ({"lv_ver": 9000000}, True),
    ({"lv_ver": (99, 0, 0)}, False),
    ({"hv_ver": (0, 0, 2), "hv_type": "TEST"}, True),
    ({"hv_ver": "0.0.3", "hv_type": "test"}, False),
    ({"hv_ver": (0, 0, 1), "hv_type": "QEMU"}, False),  # another hypervisor: not satisfied
    ({"lv_ver": (1, 0, 0), "hv_ver": 1, "hv_type": "TEST"}, True),
    ({}, True),
])
def test_has_min_version(host, kwargs, expected):
    assert host.has_min_version(**kwargs) is expected


@pytest.mark.parametrize("kwargs, expected", [
    ({"lv_ver": (9, 0, 0)}, True),
    ({"lv_ver": "9.0.1"}, False),
    ({"lv_ver": (8, 0, 0)}, False),
    ({"hv_ver": "0.0.2", "hv_type": "TEST"}, True),
    ({"hv_ver": 2, "hv_type": "TEST"}, True),
    ({"hv_ver": (0, 0, 2), "hv_type": "QEMU"}, False),
])
def test_has_version(host, kwargs, expected):
    if version_to_string(host.get_libversion()) != "9.0.0" and "lv_ver" in kwargs:
        pytest.skip("expectations written for libvirt 9.0.0")
    assert host.has_version(**kwargs) is expected


# ---------------------------------------------------------------- domains
def test_list_guests_all_and_only_running(host, inactive_domain):
    every = {g.name for g in host.list_guests()}
    running = {g.name for g in host.list_guests(only_running=True)}
    assert {"test", inactive_domain} <= every
    assert "test" in running and inactive_domain not in running
    assert all(isinstance(g, Guest) for g in host.list_guests())
    # the nova name defaults to running domains only and returns virDomain objects
    assert {d.name() for d in host.list_instance_domains()} == running
    assert {d.name() for d in host.list_instance_domains(only_running=False)} == every


def test_get_guest_by_name_and_uuid(host):
    by_name = host.get_guest(name="test")
    by_uuid = host.get_guest(uuid=TEST_DOMAIN_UUID)
    assert by_name.uuid == TEST_DOMAIN_UUID
    assert by_uuid.name == "test"
    assert by_name.get_state() == "running"
    assert host.domain_exists("test")


def test_get_guest_not_found(host):
    with pytest.raises(NotFound) as err:
        host.get_guest(name="hvl-absent")
    assert "hvl-absent" in str(err.value)
    with pytest.raises(NotFound):
        host.get_guest(uuid="00000000-0000-0000-0000-00000000beef")
    assert not host.domain_exists("hvl-absent")


def test_get_domain_info_fields(host, inactive_domain):
    info = {d["name"]: d for d in host.get_domain_info()}
    assert info["test"] == {"name": "test", "uuid": TEST_DOMAIN_UUID, "id": 1, "state": "running",
                            "persistent": True, "autostart": False, "vcpus": 2, "memory_mb": 2048}
    new = info[inactive_domain]
    assert (new["state"], new["id"], new["vcpus"], new["memory_mb"], new["persistent"]) == \
        ("shutoff", None, 3, 128, True)
    names = [d["name"] for d in host.get_domain_info()]
    assert names == sorted(names)


# ---------------------------------------------------------------- metrics
def test_host_metrics(host, inactive_domain):
    assert host.get_vcpu_total() == 16
    assert host.get_memory_mb_total() == 3072
    assert host.get_vcpu_used() == 2  # only the running domain counts, not the 3 vCPUs of the new one
    assert host.get_memory_mb_used() == 2048
    assert host.get_hypervisor_type() == "TEST"
    assert host.get_hypervisor_version() == 2
    assert host.get_hypervisor_hostname() == host.get_connection().getHostname()
    cpu = host.get_cpu_info()
    assert cpu["arch"] == "i686"
    assert set(cpu) == {"arch", "model", "vendor", "topology", "features"}
    cells = host.get_numa_cells()
    assert [c["id"] for c in cells] == [0, 1]
    assert cells[0]["cpus"] == list(range(8)) and cells[1]["cpus"] == list(range(8, 16))
    assert cells[0]["memory_mb"] == 2048
    assert host.get_capabilities() is host.get_capabilities()  # read once


def test_disk_available_least(host, tmp_path):
    gib = host.get_disk_available_least(str(tmp_path))
    vfs = os.statvfs(str(tmp_path))
    assert gib == vfs.f_bavail * vfs.f_frsize // 1024 ** 3  # the test domain has no disk files
    assert host.get_disk_available_least(str(tmp_path / "missing")) is None


# ---------------------------------------------------------------- events
def test_lifecycle_events_reach_the_handler():
    seen: list[LifecycleEvent] = []
    got = threading.Event()

    def handler(event: LifecycleEvent) -> None:
        seen.append(event)
        if event.event_name == "resumed":
            got.set()

    h = Host(TEST_URI, lifecycle_event_handler=handler)
    h.initialize()
    dom = _test_domain(h)
    try:
        dom.suspend()
        dom.resume()
        assert got.wait(10), "no resumed event within 10s: %r" % seen
    finally:
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        h.close()
    ours = [e for e in seen if e.name == "test"]
    names = [e.event_name for e in ours]
    assert names.index("suspended") < names.index("resumed")
    assert ours[names.index("suspended")].state == "paused"
    assert all(e.uuid == TEST_DOMAIN_UUID for e in ours)


@pytest.mark.parametrize("initialize", [True, False], ids=["events", "polling"])
def test_wait_for_lifecycle_reached(initialize):
    h = Host(TEST_URI)
    if initialize:
        h.initialize()
    dom = _test_domain(h)
    timer = threading.Timer(0.3, dom.suspend)
    timer.start()
    try:
        assert h.wait_for_lifecycle("test", ["paused"], timeout=10) == "paused"
        assert h.wait_for_lifecycle(TEST_DOMAIN_UUID, ["paused", "running"], timeout=1) == "paused"
    finally:
        timer.join()
        if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        h.close()


def test_wait_for_lifecycle_timeout(host):
    host.initialize()
    start = time.monotonic()
    with pytest.raises(Timeout) as err:
        host.wait_for_lifecycle(host.get_guest(name="test"), ["shutoff"], timeout=0.5)
    assert 0.4 < time.monotonic() - start < 5
    assert "test" in str(err.value) and "shutoff" in str(err.value) and "running" in str(err.value)


def test_wait_for_lifecycle_rejects_unknown_state(host):
    with pytest.raises(Exception) as err:
        host.wait_for_lifecycle("test", ["stopped-ish"], timeout=1)
    assert "stopped-ish" in str(err.value)


# ---------------------------------------------------------------- the real daemon
SYSTEM_URI = "qemu:///system"


def _system_reachable() -> bool:
    try:
        conn = libvirt.open(SYSTEM_URI)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def _virsh_answers() -> bool:
    return subprocess.run(["virsh", "-c", SYSTEM_URI, "version"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=10, check=False).returncode == 0


def _restart_libvirtd() -> None:
    """Stop libvirtd and start it again, keeping the window short (others share the daemon)."""
    if os.path.isdir("/run/systemd/system") and shutil.which("systemctl"):
        subprocess.run(["systemctl", "restart", "libvirtd"], check=True, timeout=60)
    elif os.path.exists("/etc/init.d/libvirtd"):
        # the way set-up started it, so its init script keeps knowing the daemon afterwards
        subprocess.run(["/etc/init.d/libvirtd", "restart"], check=True, timeout=60,
                       stdout=subprocess.DEVNULL)
    else:
        with open("/run/libvirtd.pid") as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("libvirtd (pid %d) did not stop within 20s" % pid)
        subprocess.run(["libvirtd", "--daemon"], check=True, timeout=30)
    deadline = time.monotonic() + 30
    while not _virsh_answers():
        if time.monotonic() > deadline:
            raise AssertionError("libvirtd did not answer within 30s of the restart")
        time.sleep(0.2)


@pytest.mark.daemon_restart
@pytest.mark.skipif(libvirt is None or not _system_reachable(), reason="qemu:///system is not reachable")
def test_same_host_survives_libvirtd_restart():
    plain = Host(SYSTEM_URI)
    conn_events: list[ConnectionEvent] = []
    evented = Host(SYSTEM_URI, conn_event_handler=conn_events.append)
    evented.initialize()
    before = {h: (h.get_connection(), h.get_libversion()) for h in (plain, evented)}

    _restart_libvirtd()

    for h in (plain, evented):
        old_conn, version = before[h]
        assert h.get_libversion() == version  # same Host object, answers again
        assert h.get_hypervisor_type() == "QEMU"
        assert isinstance(h.get_domain_info(), list)
        assert h.get_connection() is not old_conn
    assert any(not e.up for e in conn_events), "the close callback did not report the drop"
    plain.close()
    evented.close()


def test_state_names_match_guest_and_facts_do_not_import_guest():
    """guest.py uses host.py's state table, and importing host.py (fact gathering) skips guest.py."""
    import subprocess as sp
    import sys

    from ansible_collections.hypervisor.libvirt.plugins.module_utils import guest, host as host_mod
    assert host_mod.STATE_NAMES == guest.STATE_NAMES
    code = ("import sys; import ansible_collections.hypervisor.libvirt.plugins.module_utils.facts; "
            "print(any(m.endswith('module_utils.guest') for m in sys.modules))")
    out = sp.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                 capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
