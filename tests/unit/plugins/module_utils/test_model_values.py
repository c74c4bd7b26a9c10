"""model.py's value rules that networks, filters and interfaces compare by: MACs, masks, classes, nested values."""

from __future__ import annotations

import pytest
from lxml import etree

from ansible_collections.hypervisor.libvirt.plugins.module_utils import model


@pytest.mark.parametrize("text, want", [
    ("1:2:3:4:5:6", "01:02:03:04:05:06"), ("52:54:00:AA:bb:01", "52:54:00:aa:bb:01"),
    ("52:54:00:aa:bb", None), ("1:2:3:4:5:6:7", None), ("zz:2:3:4:5:6", None), (None, None),
])
def test_mac_is_read_as_libvirt_formats_it(text, want):
    assert model.mac(text) == want


@pytest.mark.parametrize("text, prefix", [
    ("255.255.255.255", 32), ("255.255.255.0", 24), ("255.255.0.0", 16), ("0.0.0.0", 0), ("255.0.255.0", None),
    ("ffff:ffff:ffff:ffff::", 64), ("24", 24), (24, 24), ("mask", None), (None, None),
])
def test_mask_prefix(text, prefix):
    assert model.mask_prefix(text) == prefix


@pytest.mark.parametrize("address, prefix", [
    ("10.24.10.1", 8), ("127.0.0.1", 8), ("172.16.0.1", 16), ("191.255.0.1", 16), ("192.168.1.1", 24),
    ("223.1.1.1", 24), ("fd00::1", 64),
])
def test_classful_prefix_is_libvirts_meaning_of_an_address_without_one(address, prefix):
    assert model.classful_prefix(address) == prefix


def test_same_compares_nested_values_as_libvirt_reads_them():
    assert model.same({"mac": "1:2:3:4:5:6", "n": "0x10", "gone": None}, {"mac": "01:02:03:04:05:06", "n": 16})
    assert not model.same({"n": 1}, {"n": 1, "extra": 2})
    assert model.same([{"a": 1}, {"a": 2}], [{"a": "2"}, {"a": "1"}], unordered=True)
    assert not model.same([{"a": 1}, {"a": 2}], [{"a": "2"}, {"a": "1"}])
    assert not model.same([1, 1], [1, 2], unordered=True)
    assert not model.same(True, "yes") and model.same(True, True)
    assert not model.same({"a": 1}, [1])


def test_residual_text_leaves_out_runtime_attributes_and_compares_without_order():
    original = etree.fromstring("<network connections='2'><name>n</name><route address='10.0.0.0' prefix='8'/>"
                                "<portgroup name='a'/></network>")
    built = etree.fromstring("<network><name>n</name></network>")
    text = model.residual_text(original, built, ("connections",))
    assert "connections" not in text and "route" in text and "portgroup" in text
    reordered = etree.fromstring("<network><name>n</name><portgroup name='a'/><route address='10.0.0.0' prefix='8'/>"
                                 "</network>")
    assert model.same_residual(text, model.residual_text(reordered, built))
    assert not model.same_residual(text, None) and model.same_residual(None, "")
    assert model.residual_text(etree.fromstring("<network connections='1'><name>n</name></network>"), built,
                               ("connections",)) is None


def test_elements_compare_by_value_and_children_in_any_order():
    a = etree.fromstring("<forward><address type='pci' bus='0x03' slot='0x00'/><pf dev='eth0'/></forward>")
    b = etree.fromstring("<forward><pf dev='eth0'/><address slot='0' type='pci' bus='3'/></forward>")
    assert model.same_element(a, b) and model.contains(a, etree.fromstring("<forward><pf dev='eth0'/></forward>"))
    assert not model.same_element(a, etree.fromstring("<forward><pf dev='eth0'/></forward>"))
    assert not model.contains(a, etree.fromstring("<forward><pf dev='eth1'/></forward>"))
    built = etree.fromstring("<network><name>n</name></network>")
    one = model.residual_text(etree.fromstring("<network><name>n</name>%s</network>" % etree.tostring(a).decode()), built)
    two = model.residual_text(etree.fromstring("<network><name>n</name>%s</network>" % etree.tostring(b).decode()), built)
    assert model.same_residual(one, two)


@pytest.mark.parametrize("given, stored", [
    ("/var/lib/libvirt/images/", "/var/lib/libvirt/images"), ("/mnt//x/./y/", "/mnt/x/./y"), ("/", "/"),
    ("///", "/"), ("///srv", "/srv"), ("//srv//a/", "//srv/a"), ("//", "//"),
    ("gluster://host//vol/", "gluster://host//vol/"),
])
def test_pool_paths_as_libvirt_stores_them(given, stored):
    """libvirt's sanitising of a pool's target path and source directory (the rules of virFileSanitizePath)."""
    assert model.libvirt_path(given) == stored
