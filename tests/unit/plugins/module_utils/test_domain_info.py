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
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_model import METADATA_NS
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
    assert found["via"] == "event"


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


def test_select_leaves_domains_out_before_their_xml_is_read(tmp_path):
    """The inventory's state and name filters are decided on the bulk records: no XML read for the others."""
    doms = "".join("<domain type='test'><name>hvl-unit-sel-%s-%02d</name><memory>131072</memory><vcpu>1</vcpu>"
                   "<os><type>hvm</type></os></domain>" % ("web" if i < 3 else "db", i) for i in range(20))
    path = tmp_path / "node.xml"
    path.write_text("<node><cpu><mhz>2000</mhz></cpu><memory>4194304</memory>%s</node>" % doms)
    h = CountingHost("test://%s" % path)
    try:
        found = domain_info.describe(h, details=False, select=lambda r: "-web-" in r["name"])
        assert [d["name"] for d in found] == ["hvl-unit-sel-web-00", "hvl-unit-sel-web-01", "hvl-unit-sel-web-02"]
        assert len([c for c in h.calls if c.startswith("reading the XML of")]) == 3
    finally:
        h.close()


def test_a_redefine_shows_at_once_although_the_bulk_stats_do_not_change(host):
    """Why the XML is read every time: a redefine of metadata and MAC leaves every bulk statistic as it was."""
    name = "hvl-unit-redef-%s" % uuidlib.uuid4().hex[:8]

    def xml(role, mac):
        return ("<domain type='test'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>256</memory><vcpu>1</vcpu>"
                "<os><type>hvm</type></os><metadata><hvl:metadata xmlns:hvl='%s'>{\"role\": \"%s\"}</hvl:metadata>"
                "</metadata><devices><interface type='network'><mac address='%s'/><source network='default'/>"
                "</interface></devices></domain>" % (name, uid, METADATA_NS, role, mac))
    uid = str(uuidlib.uuid4())
    dom = host.call("define", lambda c: c.defineXML(xml("web", "52:54:00:aa:bb:10")))
    try:
        [before] = domain_info.describe(host, [name], details=False)
        [stats_before] = [r["stats"] for r in host.domain_records() if r["name"] == name]
        host.call("redefine", lambda c: c.defineXML(xml("db", "52:54:00:aa:bb:11")))
        [stats_after] = [r["stats"] for r in host.domain_records() if r["name"] == name]
        [after] = domain_info.describe(host, [name], details=False)
        assert stats_after == stats_before  # nothing in them could tell that the XML changed
        assert before["metadata"] == {"role": "web"} and before["interfaces"][0]["mac"] == "52:54:00:aa:bb:10"
        assert after["metadata"] == {"role": "db"} and after["interfaces"][0]["mac"] == "52:54:00:aa:bb:11"
    finally:
        dom.undefine()


# ---------------------------------------------------------------------- ARP where libvirt cannot read it
def test_arp_from_the_neighbour_table_where_libvirt_fails(host, extra_domain, tmp_path, monkeypatch):
    """libvirt 9.0 on Linux 6.x: "wrong nlmsg len"; a local URI reads /proc/net/arp's complete entries by MAC."""
    from ansible_collections.hypervisor.libvirt.plugins.module_utils import host as host_mod
    from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import OperationFailed
    table = tmp_path / "arp"
    table.write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "192.168.122.40   0x1         0x2         52:54:00:AA:BB:01     *        virbr0\n"
        "192.168.122.41   0x1         0x0         52:54:00:aa:bb:01     *        virbr0\n"
        "192.168.122.42   0x1         0x2         52:54:00:aa:bb:99     *        virbr0\n")
    monkeypatch.setattr(host_mod, "PROC_ARP", str(table))
    failure = OperationFailed("reading the arp addresses of domain failed: internal error: wrong nlmsg len")
    found = host._arp_from_proc(host.get_guest(name=extra_domain), failure)
    # the complete entry of the domain's MAC only: not the incomplete one, not another machine's
    assert found == {"52:54:00:aa:bb:01": [{"address": "192.168.122.40", "prefix": 0, "family": "ipv4",
                                            "interface": "testnet0"}]}


def test_arp_on_a_remote_uri_says_why_libvirt_cannot(monkeypatch):
    from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import OperationFailed
    remote = Host("qemu+ssh://root@hv1.example.com/system")
    failure = OperationFailed("reading the arp addresses of domain failed: internal error: wrong nlmsg len")
    with pytest.raises(OperationFailed, match="cannot read its ARP table .*wrong nlmsg len.*use address_source lease "
                                              "or agent"):
        remote._arp_from_proc(None, failure)
