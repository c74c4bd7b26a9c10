# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schema machinery: value types that check one value and return its normalised form.

A spec is checked against a tree of these (``Dict`` of known keys, ``Map`` of
user-chosen keys, ``List``, ``Str``, ``Int``, ``Size`` …); errors name the path
(``disks[1].bus``). The type also says how a value compares: a ``Map`` is one
value, a ``Dict`` is compared key by key, a ``List`` of dicts item by item.
No Ansible import.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.model import c_int, same, scaled_bytes, unit_bytes
from ansible_collections.hypervisor.libvirt.plugins.module_utils.plan import difference
from ansible_collections.hypervisor.libvirt.plugins.module_utils.xmlutil import check_text

# Bytes per size unit; a bare number in the spec is MiB.
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
MAC_RE = re.compile(r"^[0-9a-f][02468ace](:[0-9a-f]{2}){5}$")  # unicast: the first octet's low bit is 0
ABS_PATH_RE = re.compile(r"^/.+")
# A Linux interface name as libvirt's schema allows it (deviceName without '/' and '\\'), at most 15 characters.
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
# Largest memory libvirt takes: VIR_DOMAIN_MEMORY_PARAM_UNLIMITED KiB, in MiB.
MAX_MEMORY_MIB = (2 ** 53 - 1) // 1024
MAX_UINT = 2 ** 32 - 1
PCI_RE = re.compile(r"^(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$")
_CPUSET_PART = re.compile(r"^(\^)?(\d+)(?:-(\d+))?$")
TARGET_RE = re.compile(r"^(vd|sd|hd|fd|xvd)([a-z]+)$")


class Field:
    """A schema node: ``norm`` checks one value and returns its normalised form."""

    def norm(self, value: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


def typename(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list",
            dict: "a dict", float: "a number"}.get(type(value), type(value).__name__)


class Str(Field):
    """A string; ``canonical`` maps it to the form libvirt stores (``model.libvirt_path``) once it is checked."""

    def __init__(self, pattern: "re.Pattern[str] | None" = None, what: str = "", lower: bool = False,
                 nonempty: bool = True, multiline: bool = False, canonical: Callable[[str], str] | None = None) -> None:
        self.pattern, self.what, self.lower, self.nonempty, self.multiline = pattern, what, lower, nonempty, multiline
        self.canonical = canonical

    def norm(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidSpec(path, "expected a string, got %s" % typename(value))
        value = str(value)
        if self.lower:
            value = value.lower()
        if self.nonempty and not value:
            raise InvalidSpec(path, "must not be empty")
        check_text(value, path, self.multiline)
        if self.pattern is not None and not self.pattern.match(value):
            raise InvalidSpec(path, "%r is not %s" % (value, self.what))
        return self.canonical(value) if self.canonical is not None else value


class Int(Field):
    """An integer; ``c_literal``: a string is read as libvirt reads a C literal ('0x10', '010' octal)."""

    def __init__(self, minimum: int | None = 0, maximum: int | None = MAX_UINT, c_literal: bool = False) -> None:
        self.minimum, self.maximum, self.c_literal = minimum, maximum, c_literal

    def norm(self, value: Any, path: str) -> Any:
        if isinstance(value, str) and self.c_literal and c_int(value) is not None:
            value = c_int(value)
        elif isinstance(value, str) and re.match(r"^-?\d+$", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidSpec(path, "expected an integer, got %s %r" % (typename(value), value))
        if self.minimum is not None and value < self.minimum:
            raise InvalidSpec(path, "%d is less than %d" % (value, self.minimum))
        if self.maximum is not None and value > self.maximum:
            raise InvalidSpec(path, "%d is more than %d" % (value, self.maximum))
        return value


class Bool(Field):
    """A boolean, or a string that names one ('yes', 'off'…); ``ints``: 0 and 1 as well."""

    _TRUE = ("yes", "on", "true", "1")
    _FALSE = ("no", "off", "false", "0")

    def __init__(self, ints: bool = False) -> None:
        self.ints = ints

    def norm(self, value: Any, path: str) -> Any:
        if isinstance(value, bool):
            return value
        if self.ints and isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in self._TRUE + self._FALSE:
            return value.lower() in self._TRUE
        raise InvalidSpec(path, "expected a boolean, got %s %r" % (typename(value), value))


class Enum(Field):
    def __init__(self, *values: str) -> None:
        self.values = values

    def norm(self, value: Any, path: str) -> Any:
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) not in self.values:
            raise InvalidSpec(path, "%r is not one of %s" % (value, ", ".join(self.values)))
        return str(value)


class Size(Field):
    """A size in MiB: an int is MiB, a string may carry a unit ('2GiB', '512M', '1 TiB')."""

    def __init__(self, maximum: int = MAX_MEMORY_MIB) -> None:
        self.maximum = maximum

    def norm(self, value: Any, path: str) -> Any:
        mib = parse_size(value, path)
        if mib > self.maximum:
            raise InvalidSpec(path, "%d MiB is more than libvirt takes (%d MiB)" % (mib, self.maximum))
        return mib


class Bytes(Field):
    """A size in bytes: an int is bytes, a string may carry one of libvirt's units ('10G', '512MiB', '1TB')."""

    def norm(self, value: Any, path: str) -> Any:
        size = scaled_bytes(value)
        if size is None:
            raise InvalidSpec(path, "%r is not a size; give bytes or a number with one of libvirt's units "
                              "(b, K/KiB, M/MiB, G/GiB, T/TiB, P/PiB, E/EiB = powers of 1024; KB, MB, GB, TB, PB, EB = "
                              "powers of 1000)" % (value,))
        return size


class Octal(Field):
    """A file mode: an int is the number (0o755), a string its octal digits ('755', '0755'); given back as libvirt
    writes it ('0755')."""

    def __init__(self, maximum: int = 0o7777) -> None:
        self.maximum = maximum

    def norm(self, value: Any, path: str) -> Any:
        number = None
        if isinstance(value, str):
            try:
                number = int(value, 8)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        if number is None:
            raise InvalidSpec(path, "%r is not an octal mode like '0755'" % (value,))
        if not 0 <= number <= self.maximum:
            raise InvalidSpec(path, "%r is out of range (0000-%o)" % (value, self.maximum))
        return "0%o" % number


class Uuid(Field):
    """A UUID, any case, with or without dashes; given back as libvirt writes it (lower case, dashed)."""

    def norm(self, value: Any, path: str) -> Any:
        digits = Str(UUID_RE, "a UUID", lower=True).norm(value, path).replace("-", "")
        return "-".join((digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:]))


class CpuSet(Field):
    """A CPU/node list ('0-3,^2', '0,1') in libvirt's canonical form ('0-1,3')."""

    def norm(self, value: Any, path: str) -> Any:
        if isinstance(value, bool):
            raise InvalidSpec(path, "expected a CPU list like '0-3,^2', got a boolean")
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str):
            raise InvalidSpec(path, "expected a CPU list like '0-3,^2', got %s" % typename(value))
        return format_cpuset(_parse_cpuset(value, path))


class Dict(Field):
    """A dict with known keys; unknown keys are errors, ``post`` normalises across keys; ``ordered``: the result
    has its keys in the order the fields are declared."""

    def __init__(self, fields: dict[str, Any], required: tuple[str, ...] = (),
                 post: Callable[[dict, str], dict] | None = None,
                 pre: Callable[[Any, str], Any] | None = None, ordered: bool = False) -> None:
        self.fields, self.required, self.post, self.pre, self.ordered = fields, required, post, pre, ordered

    def norm(self, value: Any, path: str) -> Any:
        if self.pre is not None:
            value = self.pre(value, path)
        if not isinstance(value, dict):
            raise InvalidSpec(path or "spec", "expected a dict, got %s" % typename(value))
        out: dict[str, Any] = {}
        for key, val in value.items():
            sub = "%s.%s" % (path, key) if path else str(key)
            field = self.fields.get(key)
            if field is None:
                raise InvalidSpec(sub, "unknown key; known keys are %s" % ", ".join(sorted(self.fields)))
            if val is None:
                continue
            out[key] = _resolve(field).norm(val, sub)
        for key in self.required:
            if key not in out:
                raise InvalidSpec("%s.%s" % (path, key) if path else key, "is required")
        if self.ordered:
            out = {key: out[key] for key in self.fields if key in out}
        if self.post is not None:
            out = self.post(out, path)
        return out


class Map(Field):
    """A dict of user-chosen keys (feature names, vcpu numbers) to values of one kind."""

    def __init__(self, key: Field, value: Field, pre: Callable[[Any, str], Any] | None = None,
                 post: Callable[[dict, str], dict] | None = None) -> None:
        self.key, self.value, self.pre, self.post = key, value, pre, post

    def norm(self, value: Any, path: str) -> Any:
        if self.pre is not None:
            value = self.pre(value, path)
        if not isinstance(value, dict):
            raise InvalidSpec(path, "expected a dict, got %s" % typename(value))
        out = {}
        for k, v in value.items():
            sub = "%s.%s" % (path, k)
            out[self.key.norm(k, sub)] = self.value.norm(v, sub)
        return self.post(out, path) if self.post is not None else out


class List(Field):
    """A list; ``key`` names the item key that identifies an item (a disk's target), so two lists compare
    item by identity rather than by position."""

    def __init__(self, item: Any, pre: Callable[[Any, str], Any] | None = None, key: str | None = None) -> None:
        self.item, self.pre, self.key = item, pre, key

    def norm(self, value: Any, path: str) -> Any:
        if self.pre is not None:
            value = self.pre(value, path)
        if not isinstance(value, list):
            raise InvalidSpec(path, "expected a list, got %s" % typename(value))
        item = _resolve(self.item)
        return [item.norm(v, "%s[%d]" % (path, i)) for i, v in enumerate(value)]


class Either(Field):
    """The first of several forms that accepts the value (bool or list of pages…)."""

    def __init__(self, *choices: Field, what: str = "") -> None:
        self.choices, self.what = choices, what

    def norm(self, value: Any, path: str) -> Any:
        for choice in self.choices:
            if isinstance(choice, Bool) and not isinstance(value, bool):
                continue
            if isinstance(choice, (Str, Enum)) and not isinstance(value, str):
                continue
            if isinstance(choice, (Dict, Map)) and not isinstance(value, dict):
                continue
            if isinstance(choice, List) and not isinstance(value, list):
                continue
            return choice.norm(value, path)
        raise InvalidSpec(path, "expected %s, got %s" % (self.what, typename(value)))


def one_or_list(value: Any, _path: str) -> Any:
    """A ``List`` ``pre``: one item stands for a list of it."""
    return value if isinstance(value, list) else [value]


def keyed(key: str) -> Callable[[Any, str], Any]:
    """A ``Dict`` ``pre``: a value that is not a dict stands for its ``key`` (a host given by its name)."""
    def pre(value: Any, _path: str) -> Any:
        return value if isinstance(value, dict) else {key: value}
    return pre


def _resolve(field: Any) -> Field:
    return field() if callable(field) and not isinstance(field, Field) else field


def parse_size(value: Any, path: str = "size") -> int:
    """MiB from an int (MiB) or a string with a unit, as libvirt reads units (KB=1000, KiB=K=1024)."""
    if isinstance(value, bool):
        raise InvalidSpec(path, "expected a size like 2048 or '2GiB', got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise InvalidSpec(path, "size must not be negative")
        return value
    if not isinstance(value, str):
        raise InvalidSpec(path, "expected a size like 2048 or '2GiB', got %s" % typename(value))
    m = _SIZE_RE.match(value)
    scale = (1024 ** 2 if not m.group(2) else unit_bytes(m.group(2))) if m else None
    if scale is None:
        raise InvalidSpec(path, "%r is not a size; use MiB or a number with a unit "
                                "(B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB, TB)" % value)
    number = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    size_bytes = number * scale
    mib = size_bytes / 1024 ** 2
    if mib != int(mib):
        raise InvalidSpec(path, "%r is not a whole number of MiB" % value)
    return int(mib)


def scaled_kib(el: Any, attr: str | None = None, unit_attr: str = "unit") -> float:
    """A libvirt size (an element's text or an attribute, with its unit; KiB without one) in KiB."""
    value = el.get(attr) if attr else el.text
    return float(value.strip()) * (unit_bytes(el.get(unit_attr) or "KiB") or 1024) / 1024


def _parse_cpuset(text: str, path: str) -> set[int]:
    include: set[int] = set()
    exclude: set[int] = set()
    for part in text.replace(" ", "").split(","):
        m = _CPUSET_PART.match(part)
        if not m:
            raise InvalidSpec(path, "%r is not a CPU list like '0-3,^2'" % text)
        lo = int(m.group(2))
        hi = int(m.group(3)) if m.group(3) is not None else lo
        if hi < lo:
            raise InvalidSpec(path, "%r: range %s runs backwards" % (text, part))
        (exclude if m.group(1) else include).update(range(lo, hi + 1))
    result = include - exclude
    if not result:
        raise InvalidSpec(path, "%r selects no CPU" % text)
    return result


def format_cpuset(cpus: set[int]) -> str:
    """libvirt's canonical bitmap text: sorted, runs as ranges ('0-2,5')."""
    parts = []
    ordered = sorted(cpus)
    start = prev = ordered[0]
    for c in ordered[1:] + [None]:  # type: ignore[list-item]
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(str(start) if start == prev else "%d-%d" % (start, prev))
        if c is not None:
            start = prev = c
    return ",".join(parts)


class Raw(Field):
    """A value checked later by the enclosing section's ``post`` (its form depends on a sibling key)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def norm(self, value: Any, path: str) -> Any:
        if not isinstance(value, (str, dict)):
            raise InvalidSpec(path, "expected %s, got %s" % (self.what, typename(value)))
        return value


class Free(Field):
    """Free-form data (metadata): kept as given, stored as JSON."""

    def norm(self, value: Any, path: str) -> Any:
        return value


# ---------------------------------------------------------------------- comparing by the schema
def differences(want: Any, have: Any, field: Any = None, path: str = "") -> list[dict[str, Any]]:
    """How ``have`` (a parsed current spec) fails to hold what ``want`` (a normalised desired one) asks, as
    ``{path, before, after}`` records, by the schema node ``field`` that describes them:

    - a ``Dict`` key by key, over the keys ``want`` names (a key set to None is one not asked);
    - a ``Map`` (keys the user chooses: features, metadata) as one value, so a key dropped is a difference;
    - a ``List`` of dicts item by item, paired first by the list's identity ``key`` (a disk's target), the
      rest by position; an item missing on either side is a difference;
    - every other value whole, as libvirt reads it (``model.same``: C integers, MACs in any case).

    Where the schema says nothing (``field`` None, or a free-form part), dicts and lists are walked the same way.
    This is the one comparison of specs; the modules' ``differences`` all come from here.
    """
    out: list[dict[str, Any]] = []
    _walk(want, have, field, path, out)
    return out


def _choice(field: Any, value: Any) -> Any:
    """The schema node that describes ``value``: the matching form of an ``Either``, else the node."""
    if isinstance(field, Either):
        for choice in field.choices:
            if isinstance(choice, (Dict, Map)) == isinstance(value, dict) and \
                    isinstance(choice, List) == isinstance(value, list):
                return choice
        return None
    return field


def _pairs(want: list, have: list, key: str | None) -> list[tuple[int | None, int | None]]:
    """(index in want, index in have) of the items to compare: first those of the same identity (``key``),
    the rest by position among the unpaired; None where one side has no item."""
    pairs: list[tuple[int | None, int | None]] = []
    free = list(range(len(have)))
    unpaired = []
    for i, w in enumerate(want):
        ident = w.get(key) if key and isinstance(w, dict) else None
        j = next((j for j in free if ident is not None and isinstance(have[j], dict) and have[j].get(key) == ident),
                 None)
        if j is None:
            unpaired.append(i)
        else:
            free.remove(j)
            pairs.append((i, j))
    for i in unpaired:
        pairs.append((i, free.pop(0) if free else None))
    pairs.extend((None, j) for j in free)
    return sorted(pairs, key=lambda p: (p[0] is None, p[0] if p[0] is not None else p[1]))


def _walk(want: Any, have: Any, field: Any, path: str, out: list[dict[str, Any]]) -> None:
    field = _resolve(_choice(field, want)) if field is not None else None
    if isinstance(field, Map):
        if not same(want, have):
            out.append(difference(path, have, want))
    elif isinstance(want, dict) and isinstance(have, dict):
        fields = field.fields if isinstance(field, Dict) else {}
        for key, value in want.items():
            if value is None:
                continue
            sub = "%s.%s" % (path, key) if path else str(key)
            if key not in have:
                out.append(difference(sub, None, value))
            else:
                _walk(value, have[key], fields.get(key), sub, out)
    elif isinstance(want, list) and isinstance(have, list) and any(isinstance(v, dict) for v in want + have):
        item = field.item if isinstance(field, List) else None
        for i, j in _pairs(want, have, field.key if isinstance(field, List) else None):
            if i is None:
                out.append(difference("%s[%d]" % (path, j), have[j], None))
            elif j is None:
                out.append(difference("%s[%d]" % (path, i), None, want[i]))
            else:
                _walk(want[i], have[j], item, "%s[%d]" % (path, i), out)
    elif not same(want, have):
        out.append(difference(path, have, want))


__all__ = ["differences", "Field", "typename", "Str", "Int", "Bool", "Enum", "Size", "Bytes", "Octal", "Uuid", "CpuSet",
           "Dict", "Map", "List", "Either", "Raw", "Free",
           "one_or_list", "keyed", "parse_size", "format_cpuset", "scaled_kib", "UUID_RE", "MAC_RE", "ABS_PATH_RE", "IFNAME_RE",
           "PCI_RE", "TARGET_RE", "MAX_MEMORY_MIB", "MAX_UINT"]
