"""libvirt's own test corpus (tests/qemuxml2*, networkxml2xml*, nwfilterxml2xml*, storage*, secretxml2xml*), the nwfilters
libvirt installs and the domain XML virt-install writes, against the collection.

Offline: every schema-valid file is parsed, validated, built back and compared
(``corpus.check``). On the real daemon (qemu:///system): a fixed sample is
defined (renamed, UUID removed) and converged again by ``xml:`` and by
``spec:``, and once more in check mode; nothing may change after the first run.
Pools are only defined (never built or started, their directories renamed to
paths that do not exist) and secrets, which the module takes by usage, not XML,
are converged by spec alone.
Each count may not exceed its ceiling in ``known_limits.json`` (the ceilings
only go down as the model learns more); the table is printed either way.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from typing import Any

import pytest
from lxml import etree

import corpus  # pylint: disable=import-error

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain import DomainRequest, converge
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import HypervisorError, InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.firewall import NWFilterFirewall, parse_filter
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_xml import parse_domain_xml
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host
from ansible_collections.hypervisor.libvirt.plugins.module_utils.network import NetworkManager, parse_network
from ansible_collections.hypervisor.libvirt.plugins.module_utils.storage import (
    SECRET_USAGE, PoolManager, SecretManager, parse_pool, parse_secret)

URI = os.environ.get("HVL_CORPUS_URI", "qemu:///system")
PREFIX = "hvl-corpus-"
SAMPLE = {"domain": 60, "network": 20, "nwfilter": 20, "pool": 1000, "secret": 1000,  # 1000: every one
          "virt-install": 1000, "shipped-nwfilter": 1000}
VI_NET = "hvl-vi-net"  # the isolated network virt_install.txt's domains are on (defined, never started)
LIMITS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "known_limits.json")
REPORT = os.path.join(corpus.HERE, "..", "..", ".build", "corpus", "report.md")

_RESULTS: dict[str, Any] = {"offline": {}, "daemon": {}}


@functools.lru_cache(maxsize=None)
def _base(kind: str) -> str:
    return corpus.fetch(kind)


def _limits() -> dict[str, dict[str, int]]:
    with open(LIMITS_FILE, encoding="utf-8") as f:
        return json.load(f)


def _over(section: str, kind: str, got: dict[str, int]) -> list[str]:
    ceiling = _limits()[section][kind]
    return ["%s: %d (at most %d)" % (k, v, ceiling.get(k, 0)) for k, v in got.items()
            if k != "defined" and v > ceiling.get(k, 0)]


def _write_report() -> None:
    text = corpus.table(_RESULTS["offline"], _RESULTS["daemon"])
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    with open(REPORT, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print("\n" + text)


@pytest.mark.parametrize("kind", sorted(corpus.KINDS))
def test_offline(kind: str) -> None:
    """Parse, validate, build back schema-valid and round-trip every schema-valid file of the corpus."""
    base = _base(kind)
    found = corpus.files(base, kind)
    assert found, "no %s files in %s" % (kind, base)
    outcomes = [corpus.check(kind, name, root) for name, root in found]
    got = corpus.counts(outcomes)
    _RESULTS["offline"][kind] = (len(found), got)
    _write_report()
    over = _over("offline", kind, got)
    examples = ["%s: %s" % (o.name, o.failed) for o in outcomes if o.failed][:5]
    assert not over, "%s corpus: %s; e.g. %s" % (kind, "; ".join(over), examples)


# ---------------------------------------------------------------------- the real daemon
def _sample(found: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """All files in a fixed order that spreads over the corpus (by a hash of the name, not alphabetically)."""
    return sorted(found, key=lambda f: hashlib.sha256(f[0].encode()).hexdigest())


def _renamed(root: Any, tag_or_attr: str, name: str) -> Any:
    root = copy.deepcopy(root)
    if tag_or_attr == "@name":
        root.set("name", name)
    else:
        root.find(tag_or_attr).text = name
    for uuid in root.findall("uuid"):
        root.remove(uuid)
    return root


def _cleanup_domains(host: Host) -> None:
    flags = (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
             | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    conn = host.get_connection()
    for dom in conn.listAllDomains():
        if dom.name().startswith(PREFIX):
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(flags)


def _stop_and_undefine_ours(objects: list[Any]) -> None:
    """This test's networks or pools (by name): stopped, then undefined (a pool's storage is never touched)."""
    for obj in objects:
        if obj.name().startswith(PREFIX):
            if obj.isActive():
                obj.destroy()
            obj.undefine()


def _cleanup_networks(host: Host) -> None:
    _stop_and_undefine_ours(host.get_connection().listAllNetworks())


def _cleanup_filters(host: Host) -> None:
    conn = host.get_connection()
    for _round in range(5):  # filters may reference each other: undefine the unreferenced first
        left = [f for f in conn.listAllNWFilters() if f.name().startswith(PREFIX)]
        for f in left:
            try:
                f.undefine()
            except libvirt.libvirtError:
                pass
        if not left:
            return


def _vi_network(host: Host, present: bool) -> None:
    """virt_install.txt's network: an isolated one of this test's own, defined and never started."""
    conn = host.get_connection()
    found = [n for n in conn.listAllNetworks() if n.name() == VI_NET]
    if present and not found:
        conn.networkDefineXML("<network><name>%s</name><bridge name='virbr-hvlvi'/></network>" % VI_NET)
    for net in found if not present else []:
        if net.isActive():
            net.destroy()
        net.undefine()


def _cleanup_pools(host: Host) -> None:
    _stop_and_undefine_ours(host.get_connection().listAllStoragePools())


def _secret_ident(root: Any) -> Any:
    """The element naming a secret's usage (``<name>``, ``<target>`` or ``<volume>``), or None."""
    usage = root.find("usage")
    key = SECRET_USAGE.get(usage.get("type")) if usage is not None else None
    return usage.find(key) if key else None


def _cleanup_secrets(host: Host) -> None:
    for sec in host.get_connection().listAllSecrets():
        ident = _secret_ident(etree.fromstring(sec.XMLDesc(0)))
        if ident is not None and (ident.text or "").lstrip("/").startswith(PREFIX):
            sec.undefine()


_CLEANUPS = (_cleanup_domains, _cleanup_networks, _cleanup_filters, _cleanup_pools, _cleanup_secrets)


@pytest.fixture(scope="module")
def host():
    h = Host(URI)
    h.initialize()
    for clean in _CLEANUPS:
        clean(h)
    try:
        yield h
    finally:
        for clean in _CLEANUPS:
            clean(h)
        _vi_network(h, False)
        h.close()


def _converge_twice(run: Any, tally: dict[str, int], how: str, name: str, notes: list[str]) -> bool:
    """``run(check_mode)`` once; then again and in check mode it must report no change. False if refused."""
    try:
        run(False)
    except (HypervisorError, InvalidSpec) as exc:
        tally["%s_refused" % how] += 1
        notes.append("%s %s refused: %s" % (name, how, str(exc)[:160]))
        return False
    for label, check_mode in (("second_run_changed", False), ("check_mode_changed", True)):
        if run(check_mode):
            tally["%s_%s" % (how, label)] += 1
            notes.append("%s %s: %s" % (name, how, label))
    return True


def _domain_changed(host: Host, check_mode: bool, **kw: Any) -> bool:
    return bool(converge(host, DomainRequest(state="present", **kw), check_mode=check_mode)["changed"])


def _network_changed(host: Host, check_mode: bool, **kw: Any) -> bool:
    return bool(NetworkManager(host, check_mode=check_mode).ensure(state="present", **kw)["changed"])


def _filter_changed(host: Host, check_mode: bool, xml: str | None = None, spec: dict[str, Any] | None = None) -> bool:
    fw = NWFilterFirewall(host, check_mode=check_mode)
    if xml is not None:
        return fw.define_filter(None, xml=xml)[0]
    return fw.define_filter(spec["name"], spec["rules"], spec["filterrefs"], spec["chain"], spec["priority"])[0]


def _pool_changed(host: Host, check_mode: bool, xml: str | None = None, spec: dict[str, Any] | None = None) -> bool:
    name = etree.fromstring(xml).findtext("name") if xml is not None else spec["name"]
    # defined only: never built (no mkfs, vgcreate or directory) and never started
    return bool(PoolManager(host, check_mode=check_mode).ensure(name, spec=spec, xml=xml, build=False)["changed"])


def _pool_renamed(root: Any, name: str, i: int) -> Any:
    if root.find("name") is None:  # a pool named only by its source (pool-logical-noname.xml)
        root = copy.deepcopy(root)
        root.insert(0, etree.Element("name"))
    el = _renamed(root, "name", name)
    path = el.find("target/path")
    if path is not None and el.get("type") in ("dir", "fs", "netfs"):
        path.text = "/nonexistent/%s" % name  # libvirt refuses a second pool over one directory
    return el


def _secret_changed(host: Host, check_mode: bool, spec: dict[str, Any]) -> bool:
    keys = ("usage", "description", "ephemeral", "private")
    return bool(SecretManager(host, check_mode=check_mode).ensure(**{k: spec.get(k) for k in keys})["changed"])


def _secret_renamed(root: Any, name: str, i: int) -> Any:
    el = copy.deepcopy(root)
    for uuid in el.findall("uuid"):
        el.remove(uuid)
    ident = _secret_ident(el)
    if ident is not None:  # the usage is the secret's identity: one of this test's own
        ident.text = "/%s" % name if ident.tag == "volume" else name
    return el


def _network_renamed(root: Any, name: str, i: int) -> Any:
    el = _renamed(root, "name", name)
    for br in el.findall("bridge"):
        if br.get("name") and el.find("forward[@mode='bridge']") is None:
            br.set("name", "hvlc%d" % i)  # a bridge of this test's own, not one of the host's
    return el


# kind -> (prefix of the names, renamed copy of a file, spec of the renamed XML, converge, clean up); a kind
# whose module takes no XML (secrets) is converged by spec alone, the first run defining it
DAEMON = {
    "domain": ("", lambda root, name, i: _renamed(root, "name", name), parse_domain_xml,
               _domain_changed, _cleanup_domains),
    "network": ("n", _network_renamed, lambda xml: parse_network(xml)["spec"], _network_changed, _cleanup_networks),
    "nwfilter": ("f", lambda root, name, i: _renamed(root, "@name", name), lambda xml: parse_filter(etree.fromstring(xml)),
                 _filter_changed, _cleanup_filters),
    "pool": ("p", _pool_renamed, lambda xml: parse_pool(etree.fromstring(xml)), _pool_changed, _cleanup_pools),
    "secret": ("k", _secret_renamed, lambda xml: parse_secret(etree.fromstring(xml)), _secret_changed,
               _cleanup_secrets),
}
SPEC_ONLY = ("secret",)
# pools are undefined after each file: the in and out copies of one test file claim the same storage source,
# which libvirt refuses to see defined twice
ONE_AT_A_TIME = ("pool",)
# the other sources go as the kinds they hold, under a prefix of their own; the shipped filters' copies keep
# their filterrefs to the shipped filters, which every libvirt host has
DAEMON["virt-install"] = ("v",) + DAEMON["domain"][1:]
DAEMON["shipped-nwfilter"] = ("s",) + DAEMON["nwfilter"][1:]


@pytest.mark.parametrize("kind", sorted(DAEMON))
def test_daemon(host: Host, kind: str) -> None:
    """A sample of the corpus defined on the real daemon (networks not started) converges by xml and by spec,
    and again in check mode, with no change after the first run; virt-install's domains, every one."""
    prefix, rename, spec_of, changed, cleanup = DAEMON[kind]
    if kind == "virt-install":
        # making the documents left nothing behind (virt-install defines a pool over a new disk's directory)
        leaked = [p.name() for p in host.get_connection().listAllStoragePools() if p.name().startswith("hvl-vi.")]
        assert not leaked, "virt_install.sh left storage pools: %s" % leaked
        _vi_network(host, True)
    found = [(n, r) for n, r in corpus.files(_base(kind), kind)
             if not corpus.check(kind, n, r).failed.keys() & {"parse_raises", "spec_refused", "libvirt_refuses"}]
    tally: dict[str, int] = {k: 0 for k in ("defined", "xml_refused", "spec_refused", "xml_second_run_changed",
                                            "xml_check_mode_changed", "spec_second_run_changed",
                                            "spec_check_mode_changed")}
    notes: list[str] = []
    try:
        for i, (fname, root) in enumerate(_sample(found)):
            if tally["defined"] >= SAMPLE[kind]:
                break
            xml = xmlutil.to_string(rename(root, "%s%s%03d" % (PREFIX, prefix, i), i))
            if kind in SPEC_ONLY:
                if _converge_twice(functools.partial(changed, host, spec=spec_of(xml)), tally, "spec", fname, notes):
                    tally["defined"] += 1
                continue
            if not _converge_twice(functools.partial(changed, host, xml=xml), tally, "xml", fname, notes):
                continue
            tally["defined"] += 1
            _converge_twice(functools.partial(changed, host, spec=spec_of(xml)), tally, "spec", fname, notes)
            if kind in ONE_AT_A_TIME:
                cleanup(host)
    finally:
        cleanup(host)
    _RESULTS["daemon"][kind] = tally
    _write_report()
    print("\n".join(notes))
    if kind == "domain":
        assert tally["defined"] >= SAMPLE[kind], "only %d domains defined: %s" % (tally["defined"], notes[:10])
    if kind in ("virt-install", "shipped-nwfilter", "secret"):
        assert tally["defined"] == len(found), "only %d of %d defined: %s" % (tally["defined"], len(found), notes[:10])
    over = _over("daemon", kind, tally)
    assert not over, "%s sample: %s; %s" % (kind, "; ".join(over), notes[:10])
