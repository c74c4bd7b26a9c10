# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How libvirt reads the values in its XML, and what the spec does not model, kept verbatim.

Values: libvirt reads most numbers as C integer literals (``strtol`` with base
0: ``0x10`` is sixteen, ``010`` is eight, ``10`` is ten), sizes with a unit,
and MAC addresses in any case. ``value_equal`` compares two attribute values
the way libvirt would read them, so the comparison of a user's XML with
libvirt's does not see ``0x04`` and ``4`` as different.

Preservation: ``residual(original, built)`` is what a parsed document holds
that building its spec back does not produce - whole elements the spec has no
key for (``<panic>``, ``<emulator>``, controllers, …) and attributes or
children of modelled elements it does not know (``vcpu/@placement``, a disk's
``<address>``). It is an XML document of the same shape in which an element
that stands for a built one (an *anchor*) is marked with ``hvl:anchor``;
``overlay(built, residual)`` puts it back. Elements are matched by identity -
a disk by target, an interface by MAC, a host device by source address, other
elements by their position among siblings of the same tag. No policy, no
Ansible import.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree

_C_INT_RE = re.compile(r"^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}$")

NS = "https://hypervisor.libvirt/xmlns/residual"
ANCHOR = "{%s}anchor" % NS


def c_int(text: Any) -> int | None:
    """A C integer literal as libvirt's ``virStrToLong_*(…, 0, …)`` reads it; None when it is not one."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _C_INT_RE.match(text) if isinstance(text, str) else None
    if not m:
        return None
    digits = m.group(2)
    if digits[:2].lower() == "0x":
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    return -value if m.group(1) == "-" else value


def mac(text: Any) -> str | None:
    """A MAC address as libvirt formats it (``1:2:3:4:5:6`` and ``01:02:03:04:05:06`` alike, lower case); None when not one."""
    if not isinstance(text, str) or not _MAC_RE.match(text.strip()):
        return None
    return ":".join("%02x" % int(part, 16) for part in text.strip().split(":"))


def mask_prefix(text: Any) -> int | None:
    """The prefix length a netmask stands for (``255.255.255.0`` is 24, ``ffff:ffff::`` is 32), or a
    prefix given as a number; None when it is neither or the mask is not contiguous."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str):
        return None
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        value = int(ipaddress.ip_address(text))
    except ValueError:
        return None
    bits = 32 if "." in text else 128
    prefix = bin(value).count("1")
    return prefix if value == ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1) else None


def classful_prefix(address: str) -> int:
    """The prefix libvirt gives an IPv4 address that has none: its class (A /8, B /16, C /24); IPv6: 64."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        return 64
    first = int(ip) >> 24
    return 8 if first < 128 else 16 if first < 192 else 24


def value_equal(want: Any, have: Any) -> bool:
    """Two attribute values that libvirt reads as the same: equal text, the same integer, or the same MAC."""
    if want == have:
        return True
    if want is None or have is None or isinstance(want, bool) or isinstance(have, bool):
        return False
    a, b = c_int(want), c_int(have)
    if a is not None and b is not None:
        return a == b
    ma, mb = mac(want), mac(have)
    if ma is not None and mb is not None:
        return ma == mb
    return False


def same(want: Any, have: Any, unordered: bool = False) -> bool:
    """Two spec values that mean the same to libvirt: scalars by ``value_equal``, dicts key by key (a key
    set to None is one left out), lists item by item - in any order when ``unordered``."""
    if isinstance(want, dict) and isinstance(have, dict):
        keys = {k for k, v in want.items() if v is not None} | {k for k, v in have.items() if v is not None}
        return all(same(want.get(k), have.get(k), unordered) for k in keys)
    if isinstance(want, (list, tuple)) and isinstance(have, (list, tuple)):
        if len(want) != len(have):
            return False
        if not unordered:
            return all(same(a, b, unordered) for a, b in zip(want, have))
        return matched(list(want), list(have), lambda h, w: same(w, h, unordered))
    if isinstance(want, (dict, list, tuple)) or isinstance(have, (dict, list, tuple)):
        return False
    return value_equal(want, have)


# libvirt's scaled integers (virScaleInteger): a unit's first letter picks the power, "iB" or nothing
# after it means 1024, "B" means 1000; "b", "byte" and "bytes" are bytes.
_SCALE_POWER = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_SCALED_RE = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")


def unit_bytes(unit: str | None) -> int | None:
    """Bytes per ``unit`` as libvirt reads it (``K``/``KiB`` 1024, ``KB`` 1000); None when it is no unit."""
    u = (unit or "").lower()
    if u in ("", "b", "byte", "bytes"):
        return 1
    power = _SCALE_POWER.get(u[:1])
    if power is None or u[1:] not in ("", "ib", "b"):
        return None
    return (1000 if u[1:] == "b" else 1024) ** power


def scaled_bytes(value: Any, unit: str | None = None) -> int | None:
    """A size in bytes from an int, from ``'10G'``/``'512MiB'``, or from XML text and its ``unit``; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number, text_unit = value, ""
    elif isinstance(value, str):
        m = _SCALED_RE.match(value)
        if not m:
            return None
        number, text_unit = int(m.group(1)), m.group(2)
    else:
        return None
    if number < 0 or (text_unit and unit):
        return None
    scale = unit_bytes(text_unit or unit)
    return None if scale is None else number * scale


# ---------------------------------------------------------------------- identity within a list
def _attr_of(path: str, attr: str) -> Callable[[Any], Any]:
    def key(el: Any) -> Any:
        child = el.find(path)
        return child.get(attr) if child is not None else None
    return key


def _mac_of(el: Any) -> Any:
    mac = el.find("mac")
    return (mac.get("address") or "").lower() if mac is not None else None


def _source_address(el: Any) -> Any:
    addr = el.find("source/address")
    if addr is None:
        return None
    return tuple(sorted((k, c_int(v) if c_int(v) is not None else v) for k, v in addr.attrib.items()))


# tag -> what identifies one element among its siblings of that tag (else: its position)
IDENTITY: dict[str, Callable[[Any], Any]] = {
    "disk": _attr_of("target", "dev"),
    "interface": _mac_of,
    "hostdev": _source_address,
}


def _elements(parent: Any) -> list[Any]:
    return [c for c in parent if isinstance(c.tag, str)]


def _keys(children: list[Any]) -> list[tuple]:
    """One key per child: (tag, identity) where the tag has one and it is set and unique among the
    siblings of that tag (two interfaces of a failover pair share a MAC), else (tag, '#', position)."""
    idents = [IDENTITY[c.tag](c) if c.tag in IDENTITY else None for c in children]
    clash = {c.tag for c, i in zip(children, idents)
             if i is not None and sum(1 for d, j in zip(children, idents) if d.tag == c.tag and j == i) > 1}
    seen: dict[str, int] = {}
    out = []
    for c, ident in zip(children, idents):
        n = seen.get(c.tag, 0)
        seen[c.tag] = n + 1
        out.append((c.tag, ident) if ident is not None and c.tag not in clash else (c.tag, "#", n))
    return out


def _match(children: list[Any], key: tuple) -> Any:
    for c, k in zip(children, _keys(children)):
        if k == key:
            return c
    return None


# ---------------------------------------------------------------------- preserve what the model does not know
_ID = "{%s}id" % NS
_POS = "{%s}n" % NS


def _residual(orig: Any, built: Any | None) -> Any | None:
    """What ``orig`` holds beyond ``built`` (its counterpart, or None: then all of it); None when nothing."""
    if built is None:
        return _tidy(copy.deepcopy(orig))
    out = etree.Element(orig.tag)
    for k, v in orig.attrib.items():
        if k not in built.attrib:
            out.set(k, v)
    built_children = _elements(built)
    orig_children = _elements(orig)
    subs = []
    for child, key in zip(orig_children, _keys(orig_children)):
        counterpart = _match(built_children, key)
        sub = _residual(child, counterpart)
        if counterpart is not None:
            # an anchor; an empty one only marks the place for an element that follows it
            sub = sub if sub is not None else etree.Element(child.tag, {ANCHOR: "1"})
        if sub is not None:
            sub.set(_ID if len(key) == 2 else _POS, str(key[-1]))
        subs.append(sub)
    if any(s is not None and ANCHOR not in s.attrib for s in subs):
        out.extend(subs)
    else:
        out.extend(s for s in subs if s is not None and (len(s) or set(s.attrib) - {ANCHOR, _ID, _POS}))
    if not len(out.attrib) and not len(out):
        return None
    out.set(ANCHOR, "1")
    return out


def _tidy(el: Any) -> Any:
    """Without the indentation of the document it came from (text that is only white space)."""
    for node in el.iter():
        if node.text is not None and not node.text.strip() and len(node):
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    el.tail = None
    return el


def residual(original: Any, built: Any) -> Any | None:
    """The part of ``original`` that ``built`` (its spec built back) does not reproduce, or None."""
    out = _residual(original, built)
    if out is None:
        return None
    root = etree.Element(out.tag, nsmap={"hvl": NS})  # one declaration of the namespace, at the top
    root.attrib.update(out.attrib)
    root.extend(list(out))
    return root


def _strip(el: Any) -> Any:
    for node in el.iter():
        if isinstance(node.tag, str):
            for k in (ANCHOR, _ID, _POS):
                node.attrib.pop(k, None)
    return el


def _counterpart(built: Any, anchor: Any) -> Any:
    same = [c for c in _elements(built) if c.tag == anchor.tag]
    if anchor.get(_ID) is not None:
        ident = IDENTITY.get(anchor.tag)
        for c in same:
            if ident is not None and str(ident(c)) == anchor.get(_ID):
                return c
        return None
    n = int(anchor.get(_POS, "0"))
    return same[n] if n < len(same) else None


def overlay(built: Any, res: Any) -> Any:
    """Put ``res`` (a ``residual``) back into ``built``, in place; returns ``built``.

    An anchored element is merged into its counterpart (missing attributes added,
    children recursed); an anchor whose counterpart is gone (the spec dropped that
    disk) is dropped with it. A whole element is inserted after what it followed
    in the original, or appended.
    """
    for k, v in res.attrib.items():
        if k not in (ANCHOR, _ID, _POS) and k not in built.attrib:
            built.set(k, v)
    previous: Any = None
    for child in _elements(res):
        if ANCHOR in child.attrib:
            target = _counterpart(built, child)
            if target is not None:
                overlay(target, child)
                previous = target
            continue
        target = _counterpart(built, child)
        if target is not None:
            # the builder now writes this element itself (an emulator or loader from the host's
            # capabilities): what it writes wins, the rest is added
            overlay(target, child)
            previous = target
            continue
        whole = _strip(copy.deepcopy(child))
        if previous is not None:
            previous.addnext(whole)
        else:
            built.insert(0, whole)
        previous = whole
    return built


def canonical(res: Any) -> tuple:
    """A residual in a form where the order of siblings does not count (two residuals that put back the same)."""
    if isinstance(res, str):
        res = from_text(res)
    return (res.tag, tuple(sorted(res.attrib.items())), (res.text or "").strip(),
            tuple(sorted(canonical(c) for c in _elements(res) if not _marker(c))))


def _marker(el: Any) -> bool:
    """An empty anchor: it only marks a place, it carries nothing."""
    return ANCHOR in el.attrib and not set(el.attrib) - {ANCHOR, _ID, _POS} and not any(
        not _marker(c) for c in _elements(el))


def to_text(res: Any | None) -> str | None:
    """The residual as the text the spec holds."""
    if res is None:
        return None
    return etree.tostring(res, encoding="unicode")


def from_text(text: str) -> Any:
    """The residual element back from the spec's text."""
    return etree.fromstring(text)


def residual_text(original: Any, built: Any, runtime: tuple[str, ...] = ()) -> str | None:
    """``residual`` as the text a spec's ``preserved`` key holds, without the ``runtime`` attributes (state,
    not definition) anywhere in it; None when the spec reproduces everything."""
    res = residual(original, built)
    if res is None:
        return None
    for node in res.iter():
        if isinstance(node.tag, str):
            for attr in runtime:
                node.attrib.pop(attr, None)
    if len(res) == 0 and set(res.attrib) <= {ANCHOR}:
        return None
    return to_text(res)


def matched(want: list[Any], have: list[Any], match: Callable[[Any, Any], bool]) -> bool:
    """Each of ``want`` paired by ``match(have_item, want_item)`` with one of ``have`` of its own, in any order."""
    pool = list(have)
    for item in want:
        found = next((i for i, other in enumerate(pool) if match(other, item)), None)
        if found is None:
            return False
        del pool[found]
    return True


def contains(have: Any, want: Any) -> bool:
    """Every attribute of ``want`` in ``have`` with a value libvirt reads the same (``value_equal``), its
    text, and each of its child elements in one child of ``have`` of its own (in any order)."""
    if have.tag != want.tag or any(not value_equal(v, have.get(k)) for k, v in want.attrib.items()):
        return False
    text = (want.text or "").strip()
    if text and text != (have.text or "").strip():
        return False
    return matched(_elements(want), _elements(have), contains)


def same_element(a: Any, b: Any) -> bool:
    """Two elements libvirt reads the same: tag, attribute values, text, and children in any order."""
    return len(a.attrib) == len(b.attrib) and len(_elements(a)) == len(_elements(b)) and contains(a, b) and contains(b, a)


def _unmarked(res: Any) -> Any:
    """A residual without its empty anchors (they carry nothing)."""
    res = copy.deepcopy(res)
    for node in list(res.iter()):
        if node is not res and isinstance(node.tag, str) and _marker(node) and node.getparent() is not None:
            node.getparent().remove(node)
    return res


def holds_residual(have: str | None, want: str | None) -> bool:
    """``have`` (a ``preserved`` text read back) puts back all that ``want`` asks, and maybe defaults libvirt adds
    (a SCSI pool's ``<adapter>`` given without a type is stored with ``type='scsi_host'``)."""
    if not want:
        return True
    return bool(have) and contains(_unmarked(from_text(have)), _unmarked(from_text(want)))


def libvirt_path(path: str) -> str:
    """A path as libvirt stores it (its virFileSanitizePath, applied to a pool's target path and source
    directory): runs of '/' are one and there is no trailing '/' ('/' itself aside); a leading '//' is kept,
    as POSIX allows; a URI (``scheme://`` before the first '/') is left alone."""
    scheme = path.find("://")
    if 0 <= scheme < path.find("/"):
        return path
    lead, rest = ("//", path[2:]) if path.startswith("//") and not path.startswith("///") else ("", path)
    rest = re.sub("/+", "/", rest)
    if len(lead + rest) > 1 and rest.endswith("/"):
        rest = rest[:-1]
    return lead + rest


def same_residual(a: str | None, b: str | None) -> bool:
    """Two ``preserved`` texts that put back the same (sibling order aside, values as libvirt reads them)."""
    if not a or not b:
        return not a and not b
    return same_element(_unmarked(from_text(a)), _unmarked(from_text(b)))


__all__ = ["c_int", "mac", "libvirt_path", "mask_prefix", "classful_prefix", "value_equal", "same", "residual_text",
           "same_residual", "holds_residual", "matched", "contains", "same_element", "unit_bytes", "scaled_bytes",
           "residual", "overlay", "canonical", "to_text", "from_text", "IDENTITY", "ANCHOR", "NS"]
