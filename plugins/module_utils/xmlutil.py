# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""XML helpers shared by every builder: parse, serialise, compare, diff, schema-validate."""

from __future__ import annotations

import difflib
import os
import re
import threading
from typing import Any

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec

SCHEMA_DIRS = ("/usr/share/libvirt/schemas", "/usr/local/share/libvirt/schemas")

_schemas: dict[str, Any] = {}
_schemas_lock = threading.Lock()


def parse(xml: str | bytes, what: str = "xml") -> Any:
    """Parse XML text into an lxml element; malformed input is an ``InvalidSpec`` naming ``what``."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    try:
        return etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidSpec(what, "not well-formed XML: %s" % exc)


# Characters XML cannot hold at all, and (for one-line values) line breaks and tabs as well.
_NOT_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")
_NOT_LINE_RE = re.compile("[\x00-\x1f\x7f\ufffe\uffff\ud800-\udfff]")


def check_text(value: str, path: str, multiline: bool = False) -> str:
    """A string bound for XML: no control characters (line breaks and tabs only in multi-line text)."""
    bad = (_NOT_XML_RE if multiline else _NOT_LINE_RE).search(value)
    if bad:
        raise InvalidSpec(path, "contains the control character %r at position %d; it cannot go into libvirt's XML"
                          % (bad.group(), bad.start()))
    return value


def to_string(element: Any, pretty: bool = True) -> str:
    """Serialise an element as libvirt does (2-space indent, no XML declaration)."""
    if pretty:
        etree.indent(element, space="  ")
    return etree.tostring(element, encoding="unicode")


def _attrs(attrib: dict[str, Any]) -> dict[str, str]:
    """Attribute values as libvirt writes them; the builders' hot path, so no helper calls."""
    out = {}
    for key, value in attrib.items():
        if value is None:
            continue
        if value is True:
            out[key] = "yes"
        elif value is False:
            out[key] = "no"
        else:
            out[key] = value if isinstance(value, str) else str(value)
    return out


def element(tag: str, attrib: dict[str, Any] | None = None, text: Any = None) -> Any:
    """A new element; attributes whose value is None are left out, booleans become yes/no."""
    el = etree.Element(tag, _attrs(attrib)) if attrib else etree.Element(tag)
    if text is not None:
        el.text = _text(text)
    return el


def sub(parent: Any, tag: str, attrib: dict[str, Any] | None = None, text: Any = None) -> Any:
    """Append a child; attributes whose value is None are left out, booleans become yes/no."""
    el = etree.SubElement(parent, tag, _attrs(attrib)) if attrib else etree.SubElement(parent, tag)
    if text is not None:
        el.text = _text(text)
    return el


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def canonical(element: Any) -> tuple:
    """A hashable, order-insensitive-for-attributes form of an element tree.

    Attribute order and whitespace-only text do not matter; child order does.
    """
    text = (element.text or "").strip()
    return (
        element.tag,
        tuple(sorted(element.attrib.items())),
        text,
        tuple(canonical(c) for c in element if isinstance(c.tag, str)),
    )


def xml_equal(a: Any, b: Any) -> bool:
    """Structural equality of two documents (strings or elements)."""
    if isinstance(a, (str, bytes)):
        a = parse(a)
    if isinstance(b, (str, bytes)):
        b = parse(b)
    return canonical(a) == canonical(b)


def normalise(xml: str | Any) -> str:
    """Pretty, stable text for diffs: attributes sorted, blank text dropped."""
    el = parse(xml) if isinstance(xml, (str, bytes)) else etree.fromstring(etree.tostring(xml))
    for node in el.iter():
        if not isinstance(node.tag, str):
            continue
        items = sorted(node.attrib.items())
        node.attrib.clear()
        for k, v in items:
            node.set(k, v)
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    return to_string(el) + "\n"


def unified_diff(before: str | None, after: str | None, name: str = "xml") -> str:
    """A unified diff of two XML documents after normalising both."""
    a = normalise(before).splitlines(True) if before else []
    b = normalise(after).splitlines(True) if after else []
    return "".join(difflib.unified_diff(a, b, "before/%s" % name, "after/%s" % name))


def diff_result(before: str | None, after: str | None, name: str = "xml") -> dict[str, str]:
    """Ansible's ``diff`` dict (before/after text) for a document, normalised."""
    return {
        "before": normalise(before) if before else "",
        "after": normalise(after) if after else "",
        "before_header": name,
        "after_header": name,
    }


# Attributes that hold a secret in libvirt's XML (read with VIR_DOMAIN_XML_SECURE); masked in every output.
SECRET_ATTRIBUTES = ("passwd",)
REDACTED = "********"


def redact(xml: str | None) -> str | None:
    """The document with every secret attribute masked, for results, diffs and logs."""
    if not xml or not any(("%s=" % a) in xml for a in SECRET_ATTRIBUTES):
        return xml
    el = parse(xml)
    for node in el.iter():
        if isinstance(node.tag, str):
            for attr in SECRET_ATTRIBUTES:
                if node.get(attr) is not None:
                    node.set(attr, REDACTED)
    return to_string(el)


def schema_path(name: str) -> str | None:
    """Path of libvirt's RelaxNG schema ``name`` (``domain``, ``nwfilter``, …) if installed."""
    for d in SCHEMA_DIRS:
        path = os.path.join(d, "%s.rng" % name)
        if os.path.exists(path):
            return path
    return None


def _schema(name: str) -> Any | None:
    with _schemas_lock:
        if name not in _schemas:
            path = schema_path(name)
            _schemas[name] = etree.RelaxNG(etree.parse(path)) if path else None
        return _schemas[name]


def validate(element: Any, schema: str, what: str | None = None) -> bool:
    """Validate against libvirt's ``schema``.rng; ``InvalidSpec`` with libvirt's complaint if invalid.

    Returns False when the schemas are not installed (nothing to check against),
    True when the document is valid.
    """
    rng = _schema(schema)
    if rng is None:
        return False
    if isinstance(element, (str, bytes)):
        element = parse(element)
    if not rng.validate(element):
        err = rng.error_log.last_error
        detail = "%s (line %s)" % (err.message, err.line) if err is not None else "invalid"
        raise InvalidSpec(what or schema, "does not validate against libvirt's %s.rng: %s" % (schema, detail))
    return True
