"""domain_info's reads and waits, and Host's bulk calls, on libvirt's test driver."""

from __future__ import annotations

import os
import threading
import time
import uuid as uuidlib

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import domain_info
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec, NotFound, Timeout
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import METADATA_NS
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host

TEST_URI = "test:///default"


def _define(host, name, extra="", running=False):
    xml = ("<domain type='test'><name>%s</name><memory unit='MiB'>256</memory><vcpu>2</vcpu>"
           "<os><type>hvm</type></os>%s</domain>" % (name, extra))
    dom = host.call("define", lambda c: c.defineXML(xml))
    if running:
        dom.create()
    return dom


@pytest.fixture
def extra_domain(host):
    name = "hvl-unit-info-%s" % uuidlib.uuid4().hex[:8]
    meta = ("<metadata><hvl:metadata xmlns:hvl='%s'>{\"role\": \"db\"}</hvl:metadata></metadata>" % METADATA_NS)
    dom = _define(host, name, meta + "<title>a title</title><devices><interface type='network'>"
                  "<mac address='52:54:00:aa:bb:01'/><source network='default'/></interface>"
                  "<serial type='file'><source path='/nonexistent/%s.log'/><target port='0'/></serial>"
                  "<channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/>"
                  "</channel></devices>" % name, running=True)
    yield name
    try:
        dom.destroy()
    except libvirt.libvirtError:
        pass
    dom.undefine()


class CountingHost(Host):
    """A Host that counts the libvirt calls it makes, by what they were for."""

    def __init__(self, uri):
        super().__init__(uri)
        self.calls = []

    def call(self, what, fn):
        self.calls.append(what)
        return super().call(what, fn)


def test_describe_all_reports_state_spec_interfaces_and_lease_addresses(host):
    [test] = [d for d in domain_info.describe(host) if d["name"] == "test"]
    assert test["state"] == "running" and test["id"] == 1 and test["persistent"] and not test["autostart"]
    assert test["vcpus"] == 2 and test["memory_mb"] == 8192 and test["current_memory_mb"] == 2048
    assert test["spec"]["name"] == "test" and test["spec"]["disks"][0]["source"] == "/guest/diskimage1"
    assert test["disks"][0]["target"] == "vda" and test["disks"][0]["bus"] == "virtio"
    iface = test["interfaces"][0]
    assert iface["mac"] == "aa:bb:cc:dd:ee:ff" and iface["network"] == "default" and iface["target"] == "testnet0"
    # the test driver keeps no network leases, so the per-domain lease query answers
    assert iface["addresses"] == [{"address": "192.168.122.3", "prefix": 24, "family": "ipv4", "source": "lease"}]
    assert test["addresses"][0]["mac"] == "aa:bb:cc:dd:ee:ff" and test["addresses"][0]["network"] == "default"


@pytest.mark.parametrize("source", ["lease", "agent", "arp", "any"])
def test_every_address_source_is_tagged_with_where_it_came_from(host, source):
    [test] = domain_info.describe(host, ["test"], source)
    assert [a["source"] for a in test["addresses"]] == ["lease" if source == "any" else source]


def test_source_none_reads_no_addresses(host):
    assert domain_info.describe(host, ["test"], "none")[0]["addresses"] == []


def test_named_domains_missing_one_is_not_found_naming_it(host):
    with pytest.raises(NotFound, match="'hvl-unit-nosuch'"):
        domain_info.describe(host, ["test", "hvl-unit-nosuch"])


def test_bad_address_source_names_the_field(host):
    with pytest.raises(InvalidSpec, match="^address_source: "):
        domain_info.describe(host, address_source="dhcp")


def test_inventory_form_has_metadata_and_title_not_spec(host, extra_domain):
    [d] = domain_info.describe(host, [extra_domain], details=False)
    assert d["metadata"] == {"role": "db"} and d["title"] == "a title"
    assert "spec" not in d and "disks" not in d


def test_shut_off_domain_has_no_addresses_and_a_reason(host, extra_domain):
    host.get_guest(name=extra_domain).poweroff()
    [d] = domain_info.describe(host, [extra_domain])
    assert d["state"] == "shutoff" and d["state_reason"] == "destroyed" and d["id"] is None
    assert d["addresses"] == []


def test_calls_do_not_grow_with_domains_except_each_xml(tmp_path):
    """Bulk listing, stats, persistence and leases are flat; only one XML read per domain is added."""
    def node(n):
        doms = "".join("<domain type='test'><name>hvl-unit-flat-%03d</name><memory>131072</memory><vcpu>1</vcpu>"
                       "<os><type>hvm</type></os></domain>" % i for i in range(n))
        path = tmp_path / ("node%d.xml" % n)
        path.write_text("<node><cpu><mhz>2000</mhz></cpu><memory>4194304</memory>%s</node>" % doms)
        return "test://%s" % path
    counts = {}
    for n in (3, 30):
        h = CountingHost(node(n))
        assert len(domain_info.describe(h, details=False)) == n
        xml_reads = [c for c in h.calls if c.startswith("reading the XML of")]
        counts[n] = len(h.calls) - len(xml_reads)
        assert len(xml_reads) == n
        h.close()
    assert counts[3] == counts[30]


# ---------------------------------------------------------------------- waits
def test_wait_for_address_returns_the_first_matching_address(host):
    guest = host.get_guest(name="test")
    found = domain_info.wait(host, guest, "address", 5, network="default", family="ipv4")
    assert found["what"] == "address" and found["address"]["address"] == "192.168.122.3"
    assert found["address"]["network"] == "default" and found["seconds"] < 1 and found["at"] <= time.time()


def test_wait_for_address_timeout_says_what_was_seen(host):
    guest = host.get_guest(name="test")
    start = time.monotonic()
    with pytest.raises(Timeout, match=r"no ipv6 address from lease within 0.4s \(addresses seen: 192.168.122.3\)"):
        domain_info.wait(host, guest, "address", 0.4, family="ipv6")
    assert time.monotonic() - start < 1.5  # the back-off is bounded by the timeout


def test_wait_for_address_on_a_network_the_domain_is_not_on(host):
    with pytest.raises(InvalidSpec, match="^network: .*no interface on network 'elsewhere' .*default"):
        domain_info.wait(host, host.get_guest(name="test"), "address", 1, network="elsewhere")


def test_waiting_on_a_stopped_domain_is_refused(host, extra_domain):
    guest = host.get_guest(name=extra_domain)
    guest.poweroff()
    with pytest.raises(domain_info.OperationFailed, match="is shutoff"):
        domain_info.wait(host, guest, "address", 1)


def test_wait_for_agent_without_a_channel_is_refused(host):
    with pytest.raises(InvalidSpec, match="no guest agent channel"):
        domain_info.wait(host, host.get_guest(name="test"), "agent", 1)


def test_wait_for_agent_timeout_says_the_channel_state(host, extra_domain):
    host.initialize()  # event-driven: registers the agent lifecycle callback
    guest = host.get_guest(name=extra_domain)
    start = time.monotonic()
    with pytest.raises(Timeout, match="org.qemu.guest_agent.0 channel was disconnected"):
        domain_info.wait(host, guest, "agent", 0.5)
    assert 0.45 < time.monotonic() - start < 2


def test_wait_for_agent_returns_on_the_agent_event(host, extra_domain):
    """The event path: an agent lifecycle event queued for the domain ends the wait at once."""
    from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import AgentEvent
    host.initialize()
    guest = host.get_guest(name=extra_domain)
    timer = threading.Timer(0.3, lambda: host._queue_event(AgentEvent(guest.uuid, guest.name, 1, 1)))
    timer.start()
    found = domain_info.wait(host, guest, "agent", 10)
    timer.join()
    assert found["what"] == "agent" and 0.25 < found["seconds"] < 2


def test_serial_wait_on_the_test_driver_says_why_not(host, extra_domain):
    with pytest.raises(InvalidSpec, match="test driver runs no guest"):
        domain_info.wait(host, host.get_guest(name=extra_domain), "serial", 1, regex="READY")


def test_serial_wait_needs_a_file_serial(host):
    with pytest.raises(InvalidSpec, match="no serial port writing to a file"):
        domain_info.wait(host, host.get_guest(name="test"), "serial", 1, regex="READY")


def test_bad_regex_names_the_field(host, extra_domain):
    with pytest.raises(InvalidSpec, match="^regex: "):
        domain_info.wait(host, host.get_guest(name=extra_domain), "serial", 1, regex="(")


# the serial reader itself, on a real file written while it waits (what a local URI's guest does)
class _LocalHost:
    uri = "qemu:///system"

    @staticmethod
    def is_local():
        return True


class _FileGuest:
    name = "file-guest"

    def __init__(self, path):
        self._xml = ("<domain><devices><serial type='file'><source path='%s'/></serial></devices></domain>" % path)

    def get_xml_desc(self):
        return self._xml


def test_serial_wait_sees_a_line_written_later_across_partial_writes(tmp_path):
    log = tmp_path / "console.log"

    def write():
        time.sleep(0.2)
        with open(log, "ab") as f:
            f.write(b"boot\r\nHVL-GUEST-REA")
            f.flush()
            time.sleep(0.3)
            f.write(b"DY ip=192.0.2.5\r\n")
    t = threading.Thread(target=write)
    t.start()
    found = domain_info.wait_for_serial(_LocalHost(), _FileGuest(str(log)), r"HVL-GUEST-READY ip=\S+", 5)
    t.join()
    assert found["line"] == "HVL-GUEST-READY ip=192.0.2.5" and 0.4 < found["seconds"] < 2


def test_serial_timeout_quotes_the_last_lines(tmp_path):
    log = tmp_path / "console.log"
    log.write_bytes(b"one\r\ntwo\r\nthree\r\nfour\r\n")
    with pytest.raises(Timeout, match=r"last lines of .*: two \| three \| four"):
        domain_info.wait_for_serial(_LocalHost(), _FileGuest(str(log)), "READY", 0.3)


def test_serial_timeout_on_a_missing_file(tmp_path):
    path = os.path.join(str(tmp_path), "never.log")
    with pytest.raises(Timeout, match="does not exist"):
        domain_info.wait_for_serial(_LocalHost(), _FileGuest(path), "READY", 0.2)


def test_reason_names():
    assert domain_info.reason_name("running", 1) == "booted"
    assert domain_info.reason_name("running", 4) == "from_snapshot"
    assert domain_info.reason_name("shutoff", 2) == "destroyed"
    assert domain_info.reason_name("shutoff", 99) == "99"
