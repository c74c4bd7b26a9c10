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
import re
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree

_C_INT_RE = re.compile(r"^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")

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


def value_equal(want: str | None, have: str | None) -> bool:
    """Two attribute values that libvirt reads as the same: equal text, the same integer, or the same MAC."""
    if want == have:
        return True
    if want is None or have is None:
        return False
    a, b = c_int(want), c_int(have)
    if a is not None and b is not None:
        return a == b
    if _MAC_RE.match(want) and _MAC_RE.match(have):
        return want.lower() == have.lower()
    return False


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


def spec_differences(want: Any, have: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, have, want) for every value ``want`` sets that ``have`` does not hold; keys ``want``
    leaves out (None) are not compared, dicts are compared key by key, lists as a whole."""
    if isinstance(want, dict) and isinstance(have, dict):
        out = []
        for key in sorted(want):
            if want[key] is None:
                continue
            out.extend(spec_differences(want[key], have.get(key), "%s.%s" % (path, key) if path else key))
        return out
    if want is None or want == have:
        return []
    return [(path, have, want)]


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


__all__ = ["c_int", "value_equal", "unit_bytes", "scaled_bytes", "spec_differences", "residual", "overlay", "canonical",
           "to_text", "from_text", "IDENTITY", "ANCHOR", "NS"]
