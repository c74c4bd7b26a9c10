"""facts.py: the gather_subset rules and the facts of libvirt's test driver."""

from __future__ import annotations

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.facts import SUBSETS, gather, resolve_subsets
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host

ALL = list(SUBSETS)


@pytest.mark.parametrize("given, expected", [
    (["all"], ALL),
    ([], ALL),
    (None, ALL),
    (["min"], ["min"]),
    (["domains"], ["min", "domains"]),                    # min is always there
    (["domains", "cpu"], ["min", "cpu", "domains"]),      # in SUBSETS order, not the order given
    (["!domains"], [s for s in ALL if s != "domains"]),   # only exclusions: start from all
    (["all", "!domains", "!capabilities"], [s for s in ALL if s not in ("domains", "capabilities")]),
    (["!all"], ["min"]),
    (["!min"], ALL),                                      # min cannot be excluded
    (["cpu", "!cpu"], ["min"]),                           # exclusion wins
    ([" memory "], ["min", "memory"]),
])
def test_resolve_subsets(given, expected):
    assert resolve_subsets(given) == expected


@pytest.mark.parametrize("given, path", [
    (["cpus"], "gather_subset[0]"),
    (["min", "!network"], "gather_subset[1]"),
    (["all", "domains", "bogus"], "gather_subset[2]"),
])
def test_unknown_subset_names_its_index(given, path):
    with pytest.raises(InvalidSpec) as err:
        resolve_subsets(given)
    assert err.value.path == path
    assert str(err.value).startswith(path + ": ")
    assert "domains" in str(err.value)  # lists the valid choices


def test_gather_all_on_the_test_driver(host):
    facts = gather(host)
    assert facts["gathered_subsets"] == ALL
    assert facts["uri"] == "test:///default"
    assert facts["hypervisor_type"] == "TEST"
    assert facts["hypervisor_version"] == "0.0.2"
    assert facts["libvirt_version"].count(".") == 2
    assert (facts["vcpu_total"], facts["vcpu_used"]) == (16, 2)
    assert (facts["memory_mb_total"], facts["memory_mb_used"]) == (3072, 2048)
    assert facts["cpu_info"]["arch"] == "i686"
    assert [c["id"] for c in facts["numa_cells"]] == [0, 1]
    # the test driver has no domain capabilities: the part from capabilities is still there
    dc = facts["domain_capabilities"]
    assert dc["arch"] == "i686" and dc["virt_types"] == ["test"] and not dc["kvm_available"]
    assert dc["machines"] == [] and dc["max_vcpus"] is None
    assert [d["name"] for d in facts["domains"]] == ["test"]


def test_gather_subset_leaves_the_rest_out(host):
    facts = gather(host, ["min", "domains"])
    assert facts["gathered_subsets"] == ["min", "domains"]
    assert "vcpu_total" not in facts and "domain_capabilities" not in facts
    assert "hypervisor_type" in facts and "domains" in facts


def test_gather_bad_subset_touches_nothing():
    h = Host("test:///nonexistent/hvl-missing.xml")  # would fail on connect
    with pytest.raises(InvalidSpec):
        gather(h, ["nope"])  # the input error comes first, before any connection


def test_gather_reads_bulk_domain_stats_once(host):
    """cpu, disk and domains share one getAllDomainStats: its cost must not be paid per subset."""
    whats: list[str] = []
    real_call = host.call

    def counting_call(what, fn):
        whats.append(what)
        return real_call(what, fn)

    host.call = counting_call
    gather(host)
    assert whats.count("reading domain statistics") == 1
    whats.clear()
    host.get_vcpu_used()  # outside gather nothing is cached: a fresh read
    host.get_vcpu_used()
    assert whats.count("reading domain statistics") == 2
