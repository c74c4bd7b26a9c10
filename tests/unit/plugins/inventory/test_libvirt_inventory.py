"""The inventory plugin through Ansible's own InventoryManager, over libvirt test-driver URIs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.hypervisor.libvirt.plugins.inventory.libvirt import choose_address, selected

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def test_choose_address_by_preference():
    addrs = [{"address": "fe80::1", "family": "ipv6", "network": "a"},
             {"address": "10.0.0.5", "family": "ipv4", "network": "b"},
             {"address": "192.168.1.9", "family": "ipv4", "network": "c"}]
    assert choose_address(addrs, ["ipv4", "ipv6"]) == "10.0.0.5"
    assert choose_address(addrs, ["network:c", "ipv4"]) == "192.168.1.9"
    assert choose_address(addrs, ["192.168.0.0/16"]) == "192.168.1.9"
    assert choose_address(addrs, ["ipv6"]) == "fe80::1"
    assert choose_address(addrs, ["network:nope"]) is None
    assert choose_address([], ["ipv4"]) is None


def test_filters():
    d = {"name": "web-1", "state": "running", "metadata": {"role": "web"}}
    assert selected(d, {})
    assert selected(d, {"state": ["running"], "name": "web-*", "metadata": {"role": "web"}})
    assert not selected(d, {"state": ["shutoff"]})
    assert not selected(d, {"name": "db-*"})
    assert not selected(d, {"metadata": {"role": "db"}})


def _run(tmp_path, body):
    """ansible-inventory --list over a source with ``body``: (rc, hostvars, groups, stderr)."""
    import json
    src = tmp_path / "t.libvirt.yml"
    src.write_text("plugin: hypervisor.libvirt.libvirt\n" + body)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".build", "collections"),
               ANSIBLE_INVENTORY_ENABLED="hypervisor.libvirt.libvirt", ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", str(src), "--list"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    if out.returncode:
        return out.returncode, {}, {}, out.stderr
    data = json.loads(out.stdout, object_hook=lambda d: d["__ansible_unsafe"] if list(d) == ["__ansible_unsafe"] else d)
    return 0, data["_meta"]["hostvars"], data, out.stderr


@pytest.fixture
def fleet(tmp_path):
    subprocess.run([sys.executable, os.path.join(ROOT, "playbooks", "inventories", "make_simulated_fleet.py"),
                    "--hosts", "4", "--dir", str(tmp_path / "fleet")], check=True, stdout=subprocess.DEVNULL)
    return tmp_path / "fleet" / "hosts"


def test_hosts_groups_compose_and_a_dead_uri(tmp_path, fleet):
    rc, hosts, groups, err = _run(tmp_path, (
        "uris: [test:///default, test://%s/hvl-sim-hv03.xml, test:///nonexistent/hvl.xml]\n"
        "keyed_groups: [{key: libvirt_state, prefix: state}]\n"
        "groups: {multi: libvirt_vcpus > 1}\n"
        "compose: {hv: libvirt_uri}\n") % fleet)
    assert rc == 0 and "skipping test:///nonexistent/hvl.xml" in err and "Traceback" not in err
    assert sorted(hosts) == ["hvl-fleet-hv03-vm0", "hvl-fleet-hv03-vm1", "hvl-fleet-hv03-vm2", "test"]
    test = hosts["test"]
    assert test["ansible_host"] == "192.168.122.3" and test["libvirt_uri"] == "test:///default"
    assert test["hv"] == "test:///default" and test["libvirt_state"] == "running"
    assert groups["state_shutoff"]["hosts"] == ["hvl-fleet-hv03-vm1"]
    assert "test" in groups["multi"]["hosts"]


def test_filters_by_state_and_name(tmp_path, fleet):
    rc, hosts, _groups, _err = _run(tmp_path, ("uris: [test:///default, test://%s/hvl-sim-hv03.xml]\n"
                                               "filters: {state: running, name: 'hvl-*'}\n") % fleet)
    assert rc == 0 and sorted(hosts) == ["hvl-fleet-hv03-vm0", "hvl-fleet-hv03-vm2"]


def test_strict_makes_a_dead_uri_an_error(tmp_path):
    rc, _hosts, _groups, err = _run(tmp_path, "uris: [test:///default, test:///nonexistent/hvl.xml]\nstrict: true\n")
    assert rc != 0 and "cannot connect" in err


def test_bad_preference_is_a_parse_error(tmp_path):
    rc, _hosts, _groups, err = _run(tmp_path, "uris: [test:///default]\naddress_preference: [nonsense]\n")
    assert rc != 0 and "address_preference[0]" in err
