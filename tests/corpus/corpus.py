"""libvirt's own test data as an oracle: the checks over every schema-valid file, and the counts table.

The files come from Debian's libvirt source package for the installed version
(``fetch.sh``, cached under ``.build/corpus``), and, as domain XML another project
writes, from the installed virt-install (``virt_install.sh``); the nwfilters libvirt installs are read where
they are. Each check is named after what a
user would see go wrong: the parser raises, the collection refuses what its own
parser produced, the generated XML is invalid, the round trip changes the spec,
or an element or attribute of the input is missing from what is built back.
"""

from __future__ import annotations

import collections
import copy
import glob
import os
import subprocess
from typing import Any, Callable

from lxml import etree

from ansible_collections.hypervisor.libvirt.plugins.module_utils import model, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.firewall import filter_config, parse_filter, canonical_filter
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain_xml import guest_config, parse_domain_xml
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import validate_spec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.network import check_spec, network_config, parse_network
from ansible_collections.hypervisor.libvirt.plugins.module_utils.storage import (
    POOL_SPEC, USAGE, parse_pool, parse_secret, parse_volume, pool_config, secret_config, volume_config)

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = "/usr/share/libvirt/schemas"
SHIPPED_NWFILTERS = "/usr/share/libvirt/nwfilter"

# object kind -> (schema, corpus directories)
KINDS = {
    "domain": ("domain", ("qemuxml2argvdata", "qemuxml2xmloutdata")),
    "network": ("network", ("networkxml2xmlin", "networkxml2xmlout")),
    "nwfilter": ("nwfilter", ("nwfilterxml2xmlin", "nwfilterxml2xmlout")),
    "pool": ("storagepool", ("storagepoolxml2xmlin", "storagepoolxml2xmlout")),
    "volume": ("storagevol", ("storagevolxml2xmlin", "storagevolxml2xmlout")),
    "secret": ("secret", ("secretxml2xmlin",)),
    # domain XML written by another project: virt-install (virt_install.sh), checked as domains are
    "virt-install": ("domain", ("virt-install",)),
    # the filters libvirt installs (libvirt-daemon-config-nwfilter), checked as nwfilters are
    "shipped-nwfilter": ("nwfilter", (SHIPPED_NWFILTERS,)),
}
CHECKS = ("parse_raises", "spec_refused", "build_invalid", "round_trip_differs", "loses_something",
          "accepts_what_libvirt_refuses")

# Schema-valid files that libvirt 9.0 itself refuses to define (its own negative tests; each seen refused by
# qemu:///system with the message given): the collection must refuse them too, before anything is defined,
# with an error naming the field. They are not counted as spec_refused; accepting one is a failure.
LIBVIRT_REFUSES = {
    "qemuxml2argvdata/boot-dev+order.xml": "per-device boot elements cannot be used together with os/boot elements",
    "qemuxml2argvdata/disk-same-targets.xml": "target 'sda' duplicated for disk sources",
    "qemuxml2argvdata/fd-memory-numa-topology2.xml": "CPU topology doesn't match maximum vcpu count",
    "qemuxml2argvdata/fd-memory-numa-topology3.xml": "CPU topology doesn't match maximum vcpu count",
    "qemuxml2argvdata/minimal-no-memory.xml": "Memory size must be specified via <memory> or in the <numa> configuration",
    "qemuxml2argvdata/numatune-memory-invalid-nodeset.xml": "Invalid value of 'nodeset': 0,^0",
    "qemuxml2argvdata/smbios-uuid-match.xml": "UUID mismatch between <uuid> and <sysinfo>",
}

# What an XML holds that is runtime state or a libvirt default, not part of the definition.
IGNORED_PATHS = frozenset({
    "domain/@id",  # the id of a running domain
    # a pool's sizes are its state, read from the storage; libvirt ignores them in a definition
    "pool/capacity", "pool/capacity/@unit", "pool/allocation", "pool/allocation/@unit",
    "pool/available", "pool/available/@unit",
    # a disk pool's free extents: read from the disk, not defined
    "pool/source/device/freeExtent", "pool/source/device/freeExtent/@start", "pool/source/device/freeExtent/@end",
})


# Elements whose value is libvirt's "not set": it stores none, so a definition built back has none either.
UNSET_VALUES = frozenset({("%s/permissions/%s" % (where, who), value) for where in ("pool/target", "volume/target")
                          for who in ("owner", "group") for value in ("-1", "4294967295")})


def fetch(kind: str = "domain") -> str:
    """The corpus directory of ``kind``: libvirt's test data (fetched once, then cached), or for
    ``virt-install`` the domains virt-install writes (made once by virt_install.sh, then cached)."""
    if kind == "shipped-nwfilter":
        return "/"  # installed files: their directory is absolute
    script = "virt_install.sh" if kind == "virt-install" else "fetch.sh"
    out = subprocess.run([os.path.join(HERE, script)], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


_RNG: dict[str, Any] = {}


def schema_valid(root: Any, schema: str) -> bool:
    """Valid against the installed libvirt schema (loaded by path)."""
    if schema not in _RNG:
        _RNG[schema] = etree.RelaxNG(etree.parse(os.path.join(SCHEMAS, schema + ".rng")))
    return bool(_RNG[schema].validate(root))


def files(base: str, kind: str) -> list[tuple[str, Any]]:
    """(relative name, parsed root) of every file of ``kind`` valid against the installed schema."""
    schema, dirs = KINDS[kind]
    out = []
    seen: set[str] = set()
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d if os.path.isabs(d) else os.path.join(base, "tests", d), "*.xml"))):
            real = os.path.realpath(path)
            if real in seen or not os.path.exists(real):
                continue  # a link to a file already counted, or a dangling one
            seen.add(real)
            try:
                root = etree.parse(path).getroot()
            except etree.XMLSyntaxError:
                continue
            if schema_valid(root, schema):
                out.append(("%s/%s" % (os.path.basename(d), os.path.basename(path)), root))
    return out


def paths(root: Any) -> set[str]:
    """Every element and attribute of a document as a path of tag names (``domain/devices/disk/@type``)."""
    out: set[str] = set()

    def walk(el: Any, prefix: str) -> None:
        if not isinstance(el.tag, str):
            return
        here = "%s/%s" % (prefix, etree.QName(el).localname) if prefix else etree.QName(el).localname
        if (here, (el.text or "").strip()) in UNSET_VALUES:
            return
        out.add(here)
        for attr in el.attrib:
            out.add("%s/@%s" % (here, etree.QName(attr).localname))
        for child in el:
            walk(child, here)

    walk(root, "")
    return out - IGNORED_PATHS


class Outcome:
    """What happened to one file: the first failing check (or None) and what it lost."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failed: dict[str, str] = {}
        self.lost: set[str] = set()

    def fail(self, check: str, detail: Any) -> None:
        self.failed.setdefault(check, str(detail)[:300])


def _domain(root: Any, out: Outcome) -> None:
    spec = parse_domain_xml(copy.deepcopy(root))
    try:
        norm = validate_spec(copy.deepcopy(spec))
    except Exception as exc:  # pylint: disable=broad-except
        out.fail("libvirt_refuses" if out.name in LIBVIRT_REFUSES else "spec_refused", exc)
        return
    if out.name in LIBVIRT_REFUSES:
        out.fail("accepts_what_libvirt_refuses", LIBVIRT_REFUSES[out.name])
    built = guest_config(copy.deepcopy(norm))
    if not schema_valid(built, "domain"):
        out.fail("build_invalid", _RNG["domain"].error_log.last_error)
    again = parse_domain_xml(etree.fromstring(xmlutil.to_string(built)))
    try:
        again_norm = validate_spec(copy.deepcopy(again))
    except Exception as exc:  # pylint: disable=broad-except
        out.fail("round_trip_differs", "the rebuilt spec is refused: %s" % exc)
        again_norm = again
    if "preserved" in again_norm and "preserved" in norm \
            and model.canonical(again_norm["preserved"]) == model.canonical(norm["preserved"]):
        again_norm["preserved"] = norm["preserved"]  # the same content, siblings in another order
    if again_norm != norm:
        keys = sorted(k for k in set(norm) | set(again_norm) if norm.get(k) != again_norm.get(k))
        out.fail("round_trip_differs", ", ".join(keys))
    out.lost = paths(root) - paths(built)


def _network(root: Any, out: Outcome) -> None:
    parsed = parse_network(copy.deepcopy(root))
    try:
        norm = check_spec(copy.deepcopy(parsed["spec"]))
    except Exception as exc:  # pylint: disable=broad-except
        out.fail("spec_refused", exc)
        return
    try:
        built = network_config(copy.deepcopy(norm), uuid=parsed.get("uuid"))
    except Exception as exc:  # pylint: disable=broad-except
        out.fail("build_invalid", exc)
        return
    if not schema_valid(built, "network"):
        out.fail("build_invalid", _RNG["network"].error_log.last_error)
    again = check_spec(parse_network(etree.fromstring(xmlutil.to_string(built)))["spec"])
    if model.same_residual(again["preserved"], norm["preserved"]):
        again["preserved"] = norm["preserved"]  # the same content, siblings in another order
    if again != norm:
        out.fail("round_trip_differs", sorted(k for k in set(again) | set(norm) if again.get(k) != norm.get(k)))
    out.lost = paths(root) - paths(built)


def _nwfilter(root: Any, out: Outcome) -> None:
    spec = parse_filter(copy.deepcopy(root))
    try:
        built = filter_config(spec["name"], spec["rules"], spec["filterrefs"], spec["chain"], spec["priority"],
                              uuid=spec["uuid"])
    except Exception as exc:  # pylint: disable=broad-except
        out.fail("spec_refused", exc)
        return
    if not schema_valid(built, "nwfilter"):
        out.fail("build_invalid", _RNG["nwfilter"].error_log.last_error)
    again = parse_filter(etree.fromstring(xmlutil.to_string(built)))
    if canonical_filter(again) != canonical_filter(spec):
        out.fail("round_trip_differs", "rules or references differ")
    out.lost = paths(root) - paths(built)


def _storage(root: Any, out: Outcome, kind: str) -> None:
    """Pools, volumes and secrets: parse, (pools, a secret's usage) check the spec as user input, build,
    validate, parse again."""
    parse, build, schema = {"pool": (parse_pool, pool_config, "storagepool"),
                            "volume": (parse_volume, volume_config, "storagevol"),
                            "secret": (parse_secret, secret_config, "secret")}[kind]
    spec = parse(copy.deepcopy(root))
    try:
        if kind == "pool":
            spec = POOL_SPEC.norm(copy.deepcopy(spec), "")
        if kind == "secret" and spec.get("usage") is not None:
            spec["usage"] = USAGE.norm(copy.deepcopy(spec["usage"]), "usage")
    except Exception as exc:  # pylint: disable=broad-except
        out.fail("spec_refused", exc)
        return
    built = build(copy.deepcopy(spec))
    if not schema_valid(built, schema):
        out.fail("build_invalid", _RNG[schema].error_log.last_error)
    again = parse(etree.fromstring(xmlutil.to_string(built)))
    if kind == "pool":
        again = POOL_SPEC.norm(again, "")
    if "preserved" in again and "preserved" in spec \
            and model.canonical(again["preserved"]) == model.canonical(spec["preserved"]):
        again["preserved"] = spec["preserved"]
    if again != spec:
        out.fail("round_trip_differs", sorted(k for k in set(again) | set(spec) if again.get(k) != spec.get(k)))
    out.lost = paths(root) - paths(built)


_CHECKERS: dict[str, Callable[[Any, Outcome], None]] = {
    "domain": _domain, "network": _network, "nwfilter": _nwfilter,
    "pool": lambda root, out: _storage(root, out, "pool"), "volume": lambda root, out: _storage(root, out, "volume"),
    "secret": lambda root, out: _storage(root, out, "secret"),
    "virt-install": _domain, "shipped-nwfilter": _nwfilter,
}


def check(kind: str, name: str, root: Any) -> Outcome:
    """Run the offline checks on one file."""
    out = Outcome(name)
    try:
        _CHECKERS[kind](root, out)
    except Exception as exc:  # pylint: disable=broad-except
        out.fail("parse_raises", "%s: %s" % (type(exc).__name__, exc))
    if out.lost:
        out.fail("loses_something", ", ".join(sorted(out.lost)[:8]))
    return out


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    """Files failing each check."""
    return {c: sum(1 for o in outcomes if c in o.failed) for c in CHECKS}


def lost_summary(outcomes: list[Outcome], most: int = 25) -> list[tuple[str, int]]:
    """The element/attribute paths lost most often, with how many files lose each."""
    tally: collections.Counter = collections.Counter()
    for o in outcomes:
        tally.update(o.lost)
    return tally.most_common(most)


def table(rows: dict[str, tuple[int, dict[str, int]]], daemon: dict[str, dict[str, int]] | None = None) -> str:
    """The counts table: one row per object kind, files checked and files failing each check."""
    cols = ("files",) + CHECKS
    lines = ["| kind | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for kind, (n, c) in rows.items():
        lines.append("| %s | %d | %s |" % (kind, n, " | ".join(str(c[k]) for k in CHECKS)))
    if daemon:
        keys = sorted({k for d in daemon.values() for k in d})
        lines += ["", "| daemon sample | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for kind, d in daemon.items():
            lines.append("| %s | %s |" % (kind, " | ".join(str(d.get(k, 0)) for k in keys)))
    return "\n".join(lines)
