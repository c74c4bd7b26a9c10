# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest spec: its schema, validation and normalisation.

One dict describes a guest in libvirt's own vocabulary (snake_case). The same
normalised form is produced from a user's spec (``validate_spec``) and from a
domain XML read back (``guest.parse_domain_xml`` then ``validate_spec``), so the
two can be compared field by field. Errors name the path (``disks[1].bus``).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.xmlutil import check_text

__all__ = ["validate_spec", "validate_interface", "parse_size", "format_cpuset", "disk_index", "disk_name",
           "TARGET_PREFIX", "METADATA_NS", "UNIT_BYTES", "order_disks", "derive_disk_targets"]

# Namespace of the element that carries the spec's ``metadata`` dict inside <metadata>.
METADATA_NS = "https://hypervisor.libvirt/xmlns/1.0"

# Disk target prefix per bus; sata, scsi and usb share libvirt's "sd" names.
TARGET_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd", "fdc": "fd"}

# Bytes per size unit; a bare number in the spec is MiB.
UNIT_BYTES = _UNITS = {
    "": 1024 ** 2, "b": 1, "bytes": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024 ** 2, "mib": 1024 ** 2, "mb": 1000 ** 2,
    "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3,
    "t": 1024 ** 4, "tib": 1024 ** 4, "tb": 1000 ** 4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_MAC_RE = re.compile(r"^[0-9a-f][02468ace](:[0-9a-f]{2}){5}$")  # unicast: the first octet's low bit is 0
_ABS_PATH_RE = re.compile(r"^/.+")
# A Linux interface name as libvirt's schema allows it (deviceName without '/' and '\\'), at most 15 characters.
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
# Largest memory libvirt takes: VIR_DOMAIN_MEMORY_PARAM_UNLIMITED KiB, in MiB.
MAX_MEMORY_MIB = (2 ** 53 - 1) // 1024
MAX_UINT = 2 ** 32 - 1
_PCI_RE = re.compile(r"^(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$")
_CPUSET_PART = re.compile(r"^(\^)?(\d+)(?:-(\d+))?$")
_TARGET_RE = re.compile(r"^(vd|sd|hd|fd|xvd)([a-z]+)$")


class _Field:
    """A schema node: ``norm`` checks one value and returns its normalised form."""

    def norm(self, value: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


def _typename(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list",
            dict: "a dict", float: "a number"}.get(type(value), type(value).__name__)


class Str(_Field):
    def __init__(self, pattern: "re.Pattern[str] | None" = None, what: str = "", lower: bool = False,
                 nonempty: bool = True, multiline: bool = False) -> None:
        self.pattern, self.what, self.lower, self.nonempty, self.multiline = pattern, what, lower, nonempty, multiline

    def norm(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidSpec(path, "expected a string, got %s" % _typename(value))
        value = str(value)
        if self.lower:
            value = value.lower()
        if self.nonempty and not value:
            raise InvalidSpec(path, "must not be empty")
        check_text(value, path, self.multiline)
        if self.pattern is not None and not self.pattern.match(value):
            raise InvalidSpec(path, "%r is not %s" % (value, self.what))
        return value


class Int(_Field):
    def __init__(self, minimum: int | None = 0, maximum: int | None = MAX_UINT) -> None:
        self.minimum, self.maximum = minimum, maximum

    def norm(self, value: Any, path: str) -> Any:
        if isinstance(value, str) and re.match(r"^-?\d+$", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidSpec(path, "expected an integer, got %s %r" % (_typename(value), value))
        if self.minimum is not None and value < self.minimum:
            raise InvalidSpec(path, "%d is less than %d" % (value, self.minimum))
        if self.maximum is not None and value > self.maximum:
            raise InvalidSpec(path, "%d is more than %d" % (value, self.maximum))
        return value


class Bool(_Field):
    _TRUE = ("yes", "on", "true", "1")
    _FALSE = ("no", "off", "false", "0")

    def norm(self, value: Any, path: str) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in self._TRUE + self._FALSE:
            return value.lower() in self._TRUE
        raise InvalidSpec(path, "expected a boolean, got %s %r" % (_typename(value), value))


class Enum(_Field):
    def __init__(self, *values: str) -> None:
        self.values = values

    def norm(self, value: Any, path: str) -> Any:
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) not in self.values:
            raise InvalidSpec(path, "%r is not one of %s" % (value, ", ".join(self.values)))
        return str(value)


class Size(_Field):
    """A size in MiB: an int is MiB, a string may carry a unit ('2GiB', '512M', '1 TiB')."""

    def __init__(self, maximum: int = MAX_MEMORY_MIB) -> None:
        self.maximum = maximum

    def norm(self, value: Any, path: str) -> Any:
        mib = parse_size(value, path)
        if mib > self.maximum:
            raise InvalidSpec(path, "%d MiB is more than libvirt takes (%d MiB)" % (mib, self.maximum))
        return mib


class CpuSet(_Field):
    """A CPU/node list ('0-3,^2', '0,1') in libvirt's canonical form ('0-1,3')."""

    def norm(self, value: Any, path: str) -> Any:
        if isinstance(value, bool):
            raise InvalidSpec(path, "expected a CPU list like '0-3,^2', got a boolean")
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str):
            raise InvalidSpec(path, "expected a CPU list like '0-3,^2', got %s" % _typename(value))
        return format_cpuset(_parse_cpuset(value, path))


class Dict(_Field):
    """A dict with known keys; unknown keys are errors, ``post`` normalises across keys."""

    def __init__(self, fields: dict[str, Any], required: tuple[str, ...] = (),
                 post: Callable[[dict, str], dict] | None = None,
                 pre: Callable[[Any, str], Any] | None = None) -> None:
        self.fields, self.required, self.post, self.pre = fields, required, post, pre

    def norm(self, value: Any, path: str) -> Any:
        if self.pre is not None:
            value = self.pre(value, path)
        if not isinstance(value, dict):
            raise InvalidSpec(path or "spec", "expected a dict, got %s" % _typename(value))
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
        if self.post is not None:
            out = self.post(out, path)
        return out


class Map(_Field):
    """A dict of user-chosen keys (feature names, vcpu numbers) to values of one kind."""

    def __init__(self, key: _Field, value: _Field, pre: Callable[[Any, str], Any] | None = None,
                 post: Callable[[dict, str], dict] | None = None) -> None:
        self.key, self.value, self.pre, self.post = key, value, pre, post

    def norm(self, value: Any, path: str) -> Any:
        if self.pre is not None:
            value = self.pre(value, path)
        if not isinstance(value, dict):
            raise InvalidSpec(path, "expected a dict, got %s" % _typename(value))
        out = {}
        for k, v in value.items():
            sub = "%s.%s" % (path, k)
            out[self.key.norm(k, sub)] = self.value.norm(v, sub)
        return self.post(out, path) if self.post is not None else out


class List(_Field):
    def __init__(self, item: Any, pre: Callable[[Any, str], Any] | None = None) -> None:
        self.item, self.pre = item, pre

    def norm(self, value: Any, path: str) -> Any:
        if self.pre is not None:
            value = self.pre(value, path)
        if not isinstance(value, list):
            raise InvalidSpec(path, "expected a list, got %s" % _typename(value))
        item = _resolve(self.item)
        return [item.norm(v, "%s[%d]" % (path, i)) for i, v in enumerate(value)]


class Either(_Field):
    """The first of several forms that accepts the value (bool or list of pages…)."""

    def __init__(self, *choices: _Field, what: str = "") -> None:
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
        raise InvalidSpec(path, "expected %s, got %s" % (self.what, _typename(value)))


def _resolve(field: Any) -> _Field:
    return field() if callable(field) and not isinstance(field, _Field) else field


# ---------------------------------------------------------------- helpers

def parse_size(value: Any, path: str = "size") -> int:
    """MiB from an int (MiB) or a string with a unit, as libvirt reads units (KB=1000, KiB=K=1024)."""
    if isinstance(value, bool):
        raise InvalidSpec(path, "expected a size like 2048 or '2GiB', got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise InvalidSpec(path, "size must not be negative")
        return value
    if not isinstance(value, str):
        raise InvalidSpec(path, "expected a size like 2048 or '2GiB', got %s" % _typename(value))
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        raise InvalidSpec(path, "%r is not a size; use MiB or a number with a unit "
                                "(B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB, TB)" % value)
    number = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    size_bytes = number * _UNITS[m.group(2).lower()]
    mib = size_bytes / 1024 ** 2
    if mib != int(mib):
        raise InvalidSpec(path, "%r is not a whole number of MiB" % value)
    return int(mib)


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


def disk_index(target: str) -> int:
    """libvirt's virDiskNameToIndex: 'vda' -> 0, 'sdz' -> 25, 'sdaa' -> 26."""
    m = _TARGET_RE.match(target)
    if not m:
        return -1
    idx = 0
    for ch in m.group(2):
        idx = idx * 26 + (ord(ch) - ord("a") + 1)
    return idx - 1


def disk_name(prefix: str, index: int) -> str:
    """Inverse of disk_index: ('sd', 26) -> 'sdaa'."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


# ---------------------------------------------------------------- post-processing per section

def _post_topology(t: dict, path: str) -> dict:
    for key in ("sockets", "dies", "cores", "threads"):
        t.setdefault(key, 1)
    return t


def _post_cpu(c: dict, path: str) -> dict:
    if "mode" not in c and ("model" in c or "vendor" in c or "fallback" in c):
        c["mode"] = "custom"
    if c.get("mode") != "custom" and c.get("mode") is not None:
        for key in ("vendor", "fallback"):
            if key in c:
                raise InvalidSpec("%s.%s" % (path, key), "only applies to cpu.mode custom, not %s" % c["mode"])
    if c.get("mode") == "custom" and "model" not in c:
        raise InvalidSpec("%s.model" % path, "is required with cpu.mode custom")
    ids = [cell["id"] for cell in c.get("numa", [])]
    if len(set(ids)) != len(ids):
        raise InvalidSpec("%s.numa" % path, "cell ids must be unique, got %s" % ids)
    return c


def _pre_features(value: Any, path: str) -> Any:
    if isinstance(value, list):
        out = {}
        for i, name in enumerate(value):
            if not isinstance(name, str):
                raise InvalidSpec("%s[%d]" % (path, i), "expected a feature name, got %s" % _typename(name))
            out[name] = True
        return out
    return value


_STATE_FEATURES = ("hap", "pvspinlock", "pmu", "vmport", "smm", "vmcoreinfo", "htm", "ps2")
_FLAG_FEATURES = ("acpi", "apic", "pae", "viridian", "privnet")
FEATURES = tuple(sorted(_FLAG_FEATURES + _STATE_FEATURES))


def _post_features(f: dict, path: str) -> dict:
    for name, on in f.items():
        if not on and name in _FLAG_FEATURES:
            raise InvalidSpec("%s.%s" % (path, name), "false is only possible for %s; leave %s out to turn "
                              "it off" % (", ".join(_STATE_FEATURES), name))
    return f


def _pre_vlan(value: Any, path: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str)):
        return {"tags": [value]}
    if isinstance(value, list):
        return {"tags": value}
    return value


def _post_vlan(v: dict, path: str) -> dict:
    if not v.get("tags"):
        raise InvalidSpec("%s.tags" % path, "needs at least one VLAN tag")
    v.setdefault("trunk", len(v["tags"]) > 1)
    return v


def _filter_params(value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise InvalidSpec(path, "expected a dict of parameter name to value(s), got %s" % _typename(value))
    out = {}
    for k, v in value.items():
        sub = "%s.%s" % (path, k)
        if not isinstance(k, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
            raise InvalidSpec(sub, "%r is not a filter parameter name (letters, digits, _)" % (k,))
        if isinstance(v, list):
            vals = [Str().norm(x, "%s[%d]" % (sub, i)) for i, x in enumerate(v)]
            out[str(k)] = vals[0] if len(vals) == 1 else vals
        else:
            out[str(k)] = Str().norm(v, sub)
    return out


class _FilterParams(_Field):
    def norm(self, value: Any, path: str) -> Any:
        return _filter_params(value, path)


def _pre_interface(value: Any, path: str) -> Any:
    if isinstance(value, dict) and "type" not in value:
        value = dict(value)
        value["type"] = "network"
    return value


def _post_interface(n: dict, path: str) -> dict:
    typ = n["type"]
    src = n.get("source")
    if typ in ("network", "bridge"):
        if not isinstance(src, str):
            raise InvalidSpec("%s.source" % path, "type %s needs the %s name as source" %
                              (typ, "network" if typ == "network" else "bridge"))
        check_text(src, "%s.source" % path)
        if typ == "bridge" and not IFNAME_RE.match(src):
            raise InvalidSpec("%s.source" % path, "%r is not a bridge name (at most 15 letters, digits, '_', '.', "
                              "'-', ':')" % src)
    elif typ == "direct":
        if isinstance(src, str):
            src = {"dev": src}
        if not isinstance(src, dict) or "dev" not in src:
            raise InvalidSpec("%s.source" % path, "type direct needs source.dev (a host interface)")
        src = _DIRECT_SOURCE.norm(src, "%s.source" % path)
        src.setdefault("mode", "vepa")
        n["source"] = src
    elif src is not None:
        raise InvalidSpec("%s.source" % path, "type %s takes no source" % typ)
    n.setdefault("model", "virtio")
    return n


def _pre_hostdev(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return {"pci": value}
    return value


def _pci_address(value: Any, path: str) -> str:
    text = Str().norm(value, path).lower()
    m = _PCI_RE.match(text)
    if not m:
        raise InvalidSpec(path, "%r is not a PCI address like 0000:03:00.1" % value)
    return "%04x:%02x:%02x.%s" % (int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16), m.group(4))


class _Pci(_Field):
    def norm(self, value: Any, path: str) -> Any:
        return _pci_address(value, path)


def _post_hostdev(h: dict, path: str) -> dict:
    h.setdefault("managed", True)
    return h


def _pre_one_or_list(value: Any, path: str) -> Any:
    return [value] if isinstance(value, dict) else value


def _post_graphics(g: dict, path: str) -> dict:
    if g["type"] == "vnc" and len(g.get("password", "")) > 8:
        raise InvalidSpec("%s.password" % path, "a VNC password has at most 8 characters")
    if "port" in g:
        if g["port"] == -1:
            del g["port"]
            g.setdefault("autoport", True)
        elif g.get("autoport"):
            raise InvalidSpec("%s.autoport" % path, "cannot be true with a fixed port")
        else:
            g["autoport"] = False
    g.setdefault("autoport", True)
    return g


def _post_chardev(c: dict, path: str) -> dict:
    typ = c.setdefault("type", "pty")
    if typ in ("unix", "tcp"):
        c.setdefault("mode", "bind")
    need = {"file": ("path",), "unix": (), "tcp": ("host", "port"), "dev": ("path",), "pipe": ("path",)}
    for key in need.get(typ, ()):
        if key not in c:
            raise InvalidSpec("%s.%s" % (path, key), "is required with type %s" % typ)
    allowed = {"pty": (), "file": ("path",), "unix": ("path", "mode"), "tcp": ("host", "port", "mode"),
               "dev": ("path",), "pipe": ("path",), "null": (), "stdio": (), "vc": (), "spicevmc": ()}
    for key in ("path", "host", "port", "mode"):
        if key in c and key not in allowed[typ]:
            raise InvalidSpec("%s.%s" % (path, key), "does not apply to type %s" % typ)
    return c


def _post_channel(c: dict, path: str) -> dict:
    c.setdefault("type", "unix")
    c.setdefault("target_type", "virtio")
    if c["target_type"] == "virtio" and "name" not in c:
        raise InvalidSpec("%s.name" % path, "is required for a virtio channel (org.qemu.guest_agent.0 for "
                                            "the QEMU guest agent)")
    return _post_chardev(c, path)


def _post_rng(r: dict, path: str) -> dict:
    r.setdefault("model", "virtio")
    r.setdefault("backend", "/dev/urandom")
    return r


def _post_tpm(t: dict, path: str) -> dict:
    t.setdefault("type", "emulator")
    if t["type"] == "passthrough":
        t.setdefault("path", "/dev/tpm0")
    elif "path" in t:
        raise InvalidSpec("%s.path" % path, "only applies to type passthrough")
    return t


def _pre_memballoon(value: Any, path: str) -> Any:
    return {"model": value} if isinstance(value, str) else value


def _pre_video(value: Any, path: str) -> Any:
    return {"model": value} if isinstance(value, str) else value


def _post_watchdog(w: dict, path: str) -> dict:
    w.setdefault("model", "i6300esb")
    return w


def _pre_disk(value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        return value
    value = dict(value)
    src = value.get("source")
    if "type" not in value:
        if isinstance(src, dict) and "protocol" in src:
            value["type"] = "network"
        elif isinstance(src, str) and src.startswith("/dev/"):
            value["type"] = "block"
        else:
            value["type"] = "file"
    return value


def _post_disk(d: dict, path: str) -> dict:
    d.setdefault("device", "disk")
    if "bus" not in d:
        d["bus"] = {"cdrom": "sata", "floppy": "fdc", "lun": "scsi"}.get(d["device"], "virtio")
    src = d.get("source")
    if d["type"] == "network":
        if not isinstance(src, dict):
            raise InvalidSpec("%s.source" % path, "a network disk needs source.protocol and source.name")
        d["source"] = _NET_SOURCE.norm(src, "%s.source" % path)
    elif src is not None:
        if isinstance(src, dict):
            if set(src) != {"path"}:
                raise InvalidSpec("%s.source" % path, "a %s disk's source is its path" % d["type"])
            src = src["path"]
        d["source"] = Str(_ABS_PATH_RE, "an absolute path").norm(src, "%s.source" % path)
    elif d["device"] not in ("cdrom", "floppy"):
        raise InvalidSpec("%s.source" % path, "is required (only a cdrom or floppy may be empty)")
    if d["device"] in ("cdrom", "floppy"):
        d["readonly"] = d.get("readonly", True) or d["device"] == "cdrom"
    if d["device"] == "lun":
        if d["bus"] != "scsi":
            raise InvalidSpec("%s.bus" % path, "a lun must be on bus scsi, not %s" % d["bus"])
        if d["type"] == "file":
            raise InvalidSpec("%s.type" % path, "a lun must be type block or network")
    if d["bus"] == "virtio" and d["device"] == "cdrom":
        raise InvalidSpec("%s.bus" % path, "a cdrom cannot be on bus virtio; use sata, scsi or ide")
    if "target" in d:
        m = _TARGET_RE.match(d["target"])
        if not m:
            raise InvalidSpec("%s.target" % path, "%r is not a disk name like vda, sdb or hdc" % d["target"])
    return d


_NET_SOURCE = Dict({
    "protocol": Enum("rbd", "iscsi", "nbd", "gluster", "sheepdog", "http", "https", "ftp", "ftps",
                     "tftp", "ssh", "vxhs", "nfs"),
    "name": Str(),
    "hosts": List(Dict({"name": Str(), "port": Int(1, 65535), "transport": Enum("tcp", "unix", "rdma"),
                        "socket": Str()})),
    "auth": Dict({"username": Str(), "secret_type": Enum("ceph", "iscsi"), "secret_uuid": Str(_UUID_RE, "a UUID", lower=True),
                  "secret_usage": Str()}, required=("username",)),
}, required=("protocol",))

_DIRECT_SOURCE = Dict({"dev": Str(IFNAME_RE, "a host interface name"), "mode": Enum("vepa", "bridge", "private", "passthrough")})

_BW = Dict({"average": Int(), "peak": Int(), "burst": Int(), "floor": Int()}, required=("average",))

_CHAR_FIELDS = {
    "type": Enum("pty", "file", "unix", "tcp", "dev", "pipe", "null", "stdio", "vc", "spicevmc"),
    "path": Str(_ABS_PATH_RE, "an absolute path"),
    "host": Str(),
    "port": Int(0, 65535),
    "mode": Enum("bind", "connect"),
    "log": Str(_ABS_PATH_RE, "an absolute path"),
    "target_port": Int(),
}

_SYSINFO_SECTIONS = {
    "bios": ("vendor", "version", "date", "release"),
    "system": ("manufacturer", "product", "version", "serial", "uuid", "sku", "family"),
    "base_board": ("manufacturer", "product", "version", "serial", "asset", "location"),
    "chassis": ("manufacturer", "version", "serial", "asset", "sku"),
}

_SYSINFO = Dict(dict(
    {sec: Dict({k: Str() for k in keys}) for sec, keys in _SYSINFO_SECTIONS.items()},
    oem_strings=List(Str()),
))

_BOOT_DEVS = ("hd", "cdrom", "network", "fd")
_LIFECYCLE = ("destroy", "restart", "preserve", "rename-restart")


class _Raw(_Field):
    """A value checked later by the enclosing section's ``post`` (its form depends on a sibling key)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def norm(self, value: Any, path: str) -> Any:
        if not isinstance(value, (str, dict)):
            raise InvalidSpec(path, "expected %s, got %s" % (self.what, _typename(value)))
        return value


_DISK = Dict({
    "type": Enum("file", "block", "network"),
    "device": Enum("disk", "cdrom", "lun", "floppy"),
    "source": _Raw("a path, or a dict for a network disk"),
    "target": Str(),
    "bus": Enum("virtio", "scsi", "sata", "ide", "usb", "fdc"),
    "format": Enum("raw", "qcow2", "qed", "vmdk", "vdi", "vpc", "vhdx", "iso", "luks", "dmg", "bochs", "cloop"),
    "cache": Enum("default", "none", "writethrough", "writeback", "directsync", "unsafe"),
    "io": Enum("threads", "native", "io_uring"),
    "discard": Enum("unmap", "ignore"),
    "readonly": Bool(),
    "shareable": Bool(),
    "serial": Str(),
    "boot_order": Int(1),
}, pre=_pre_disk, post=_post_disk)

_INTERFACE = Dict({
    "type": Enum("network", "bridge", "direct", "ethernet", "user"),
    "source": _Raw("a network or bridge name, or for direct a dict with dev and mode"),
    "mac": Str(_MAC_RE, "a MAC address like 52:54:00:12:34:56 (unicast: an even first octet)", lower=True),
    "model": Str(),
    "mtu": Int(68, 65535),
    "queues": Int(1, 256),
    "link_state": Enum("up", "down"),
    "vlan": Dict({"tags": List(Int(0, 4095)), "trunk": Bool()}, pre=_pre_vlan, post=_post_vlan),
    "virtualport": Dict({"type": Enum("openvswitch", "802.1Qbg", "802.1Qbh", "midonet"),
                         "parameters": Map(Enum("interfaceid", "profileid", "managerid", "typeid",
                                                "typeidversion", "instanceid"), Str())}, required=("type",)),
    "bandwidth": Dict({"inbound": _BW, "outbound": _BW}),
    "filter": Dict({"name": Str(), "parameters": _FilterParams()}, required=("name",)),
    "target": Str(),
    "boot_order": Int(1),
}, pre=_pre_interface, post=_post_interface)

_CPU = Dict({
    "mode": Enum("host-passthrough", "host-model", "custom", "maximum"),
    "model": Str(),
    "fallback": Enum("allow", "forbid"),
    "vendor": Str(),
    "features": Map(Str(), Enum("force", "require", "optional", "disable", "forbid")),
    "topology": Dict({k: Int(1) for k in ("sockets", "dies", "cores", "threads")}, post=_post_topology),
    "numa": List(Dict({"id": Int(), "cpus": CpuSet(), "memory": Size(), "mem_access": Enum("shared", "private")},
                      required=("id", "cpus", "memory"))),
}, post=_post_cpu)

_OS = Dict({
    "arch": Str(),
    "machine": Str(),
    "firmware": Enum("bios", "efi"),
    "secure_boot": Bool(),
    "boot": List(Enum(*_BOOT_DEVS)),
    "kernel": Str(_ABS_PATH_RE, "an absolute path"),
    "initrd": Str(_ABS_PATH_RE, "an absolute path"),
    "cmdline": Str(),
})

_TIMER = Dict({"name": Enum("platform", "pit", "rtc", "hpet", "tsc", "kvmclock", "hypervclock", "armvtimer"),
               "present": Bool(),
               "tickpolicy": Enum("delay", "catchup", "merge", "discard")}, required=("name",))


class _Any(_Field):
    """Free-form data (metadata): kept as given, stored as JSON."""

    def norm(self, value: Any, path: str) -> Any:
        return value


_CHAR = Dict(_CHAR_FIELDS, post=_post_chardev)
_CONSOLE = Dict(dict(_CHAR_FIELDS, target_type=Enum("serial", "virtio", "sclp", "sclplm")), post=_post_chardev)
_CHANNEL = Dict(dict(_CHAR_FIELDS, name=Str(), target_type=Enum("virtio", "guestfwd", "xen")), post=_post_channel)

SPEC = Dict({
    "name": Str(),
    "uuid": Str(_UUID_RE, "a UUID", lower=True),
    "type": Enum("kvm", "qemu", "xen", "lxc", "hvf", "test"),
    "title": Str(),
    "description": Str(nonempty=False, multiline=True),
    "metadata": Map(Str(), _Any()),
    "memory": Size(),
    "current_memory": Size(),
    "vcpus": Int(1, 65535),
    "cpu": _CPU,
    "cputune": Dict({"vcpupin": Map(Int(), CpuSet()), "emulatorpin": CpuSet()}),
    "numatune": Dict({
        "mode": Enum("strict", "preferred", "interleave", "restrictive"),
        "nodeset": CpuSet(),
        "memnodes": List(Dict({"cellid": Int(), "mode": Enum("strict", "preferred", "interleave", "restrictive"),
                               "nodeset": CpuSet()}, required=("cellid", "mode", "nodeset"))),
    }),
    "memory_backing": Dict({
        "hugepages": Either(Bool(), List(Dict({"size": Size(), "nodeset": CpuSet()}, required=("size",))),
                            what="true or a list of {size, nodeset}"),
        "locked": Bool(),
        "nosharepages": Bool(),
    }),
    "os": _OS,
    "features": Map(Enum(*FEATURES), Bool(), pre=_pre_features, post=_post_features),
    "clock": Dict({"offset": Enum("utc", "localtime", "timezone", "variable"), "timezone": Str(),
                   "timers": List(_TIMER)}),
    "sysinfo": _SYSINFO,
    "disks": List(_DISK),
    "interfaces": List(_INTERFACE),
    "hostdevs": List(Dict({"pci": _Pci(), "managed": Bool(), "rom_bar": Bool()}, required=("pci",),
                          pre=_pre_hostdev, post=_post_hostdev)),
    "graphics": List(Dict({"type": Enum("vnc", "spice"), "listen": Str(), "port": Int(-1, 65535),
                           "autoport": Bool(), "password": Str(), "keymap": Str()},
                          required=("type",), post=_post_graphics), pre=_pre_one_or_list),
    "video": Dict({"model": Enum("vga", "cirrus", "qxl", "virtio", "bochs", "ramfb", "none", "vmvga"),
                   "vram": Int(1), "heads": Int(1)}, required=("model",), pre=_pre_video),
    "serials": List(_CHAR),
    "consoles": List(_CONSOLE),
    "channels": List(_CHANNEL),
    "rng": Dict({"model": Enum("virtio"), "backend": Str()}, post=_post_rng),
    "tpm": Dict({"model": Enum("tpm-tis", "tpm-crb", "tpm-spapr", "spapr-tpm-proxy"),
                 "type": Enum("emulator", "passthrough"), "version": Enum("1.2", "2.0"), "path": Str()},
                post=_post_tpm),
    "watchdog": Dict({"model": Enum("i6300esb", "ib700", "diag288", "itco"),
                      "action": Enum("reset", "shutdown", "poweroff", "pause", "none", "dump", "inject-nmi")},
                     post=_post_watchdog),
    "memballoon": Dict({"model": Enum("virtio", "virtio-transitional", "virtio-non-transitional", "xen", "none"),
                        "period": Int(0)}, required=("model",), pre=_pre_memballoon),
    "on_poweroff": Enum(*_LIFECYCLE),
    "on_reboot": Enum(*_LIFECYCLE),
    "on_crash": Enum(*(_LIFECYCLE + ("coredump-destroy", "coredump-restart"))),
}, required=("name", "memory"))


def _staged(disks: list[dict]) -> list[dict]:
    """Disks and luns first, then cdroms and floppies, each group in the spec's order."""
    return [d for d in disks if d["device"] in ("disk", "lun")] + \
        [d for d in disks if d["device"] not in ("disk", "lun")]


def _libvirt_order(disks: list[dict]) -> list[dict]:
    """The order libvirt's virDomainDiskInsert gives: one bus's disks together, sorted by target.

    Emitting disks in that order means a domain dumped back lists them as the spec does.
    """
    out: list[dict] = []
    for disk in disks:
        insert_at = -1
        for idx in range(len(out) - 1, -1, -1):
            if out[idx]["bus"] != disk["bus"]:
                continue
            if disk_index(out[idx]["target"]) > disk_index(disk["target"]):
                insert_at = idx
            elif insert_at == -1:
                insert_at = idx + 1
        if insert_at == -1:
            out.append(disk)
        else:
            out.insert(insert_at, disk)
    return out


def derive_disk_targets(disks: list[dict], path: str = "disks") -> list[dict]:
    """Give every disk without a target the next free name of its bus (vda…, sda…, hda…)."""
    used: dict[str, int] = {}
    for i, d in enumerate(disks):
        if "target" in d:
            if d["target"] in used:
                raise InvalidSpec("%s[%d].target" % (path, i), "%r is already used by %s[%d]" %
                                  (d["target"], path, used[d["target"]]))
            used[d["target"]] = i
    names = set(used)
    for d in _staged(disks):
        if "target" not in d:
            prefix = TARGET_PREFIX[d["bus"]]
            n = 0
            while disk_name(prefix, n) in names:
                n += 1
            d["target"] = disk_name(prefix, n)
            names.add(d["target"])
    return disks


def order_disks(disks: list[dict]) -> list[dict]:
    """Targets derived where missing, disks before cdroms, then libvirt's bus/target order."""
    return _libvirt_order(_staged(derive_disk_targets(disks)))


def validate_interface(spec: dict, path: str = "interface") -> dict:
    """Check one interface spec alone, as in ``interfaces[n]``, so a NIC can be managed without a whole guest."""
    if not isinstance(spec, dict):
        raise InvalidSpec(path, "expected a dict, got %s" % _typename(spec))
    return _INTERFACE.norm(spec, path)


def validate_spec(spec: dict) -> dict:
    """Check a whole guest spec and return its normalised copy (idempotent).

    Sizes become MiB ints, CPU lists libvirt's canonical text, PCI addresses
    0000:03:00.1, disks get their type, device, bus and target and libvirt's
    order; other defaults are filled in only where the XML must say something
    (interface model virtio, rng backend, topology dies/threads, firmware efi
    for secure boot).
    """
    if not isinstance(spec, dict):
        raise InvalidSpec("spec", "expected a dict, got %s" % _typename(spec))
    out = SPEC.norm(spec, "")
    if "disks" in out:
        out["disks"] = order_disks(out["disks"])
    cpu = out.get("cpu", {})
    topo = cpu.get("topology")
    if topo:
        product = topo["sockets"] * topo["dies"] * topo["cores"] * topo["threads"]
        out.setdefault("vcpus", product)
        if product != out["vcpus"]:
            raise InvalidSpec("cpu.topology", "sockets*dies*cores*threads = %d but vcpus is %d" %
                              (product, out["vcpus"]))
    vcpus = out.get("vcpus")
    for vcpu in out.get("cputune", {}).get("vcpupin", {}):
        if vcpus is not None and vcpu >= vcpus:
            raise InvalidSpec("cputune.vcpupin.%d" % vcpu, "there are only %d vCPUs (0-%d)" % (vcpus, vcpus - 1))
    if "current_memory" in out and out["current_memory"] > out["memory"]:
        raise InvalidSpec("current_memory", "%d MiB is more than memory (%d MiB)" %
                          (out["current_memory"], out["memory"]))
    numa = cpu.get("numa")
    if numa and sum(c["memory"] for c in numa) != out["memory"]:
        raise InvalidSpec("cpu.numa", "the cells' memory adds up to %d MiB, memory is %d MiB" %
                          (sum(c["memory"] for c in numa), out["memory"]))
    os_ = out.get("os", {})
    if os_.get("secure_boot"):
        if os_.get("firmware", "efi") != "efi":
            raise InvalidSpec("os.secure_boot", "needs os.firmware efi, not %s" % os_["firmware"])
        os_["firmware"] = "efi"
        features = out.setdefault("features", {})
        if features.get("smm") is False:
            raise InvalidSpec("features.smm", "secure boot needs smm; it cannot be false")
        features["smm"] = True
    if "secure_boot" in os_ and os_.get("firmware") != "efi":
        raise InvalidSpec("os.secure_boot", "only applies to os.firmware efi")
    for key in ("initrd", "cmdline"):
        if key in os_ and "kernel" not in os_:
            raise InvalidSpec("os.%s" % key, "needs os.kernel (direct kernel boot)")
    if os_.get("boot"):
        for section in ("disks", "interfaces"):
            for i, dev in enumerate(out.get(section, [])):
                if "boot_order" in dev:
                    raise InvalidSpec("%s[%d].boot_order" % (section, i),
                                      "cannot be combined with os.boot; use one or the other")
    orders: dict[int, str] = {}
    for section in ("disks", "interfaces"):
        for i, dev in enumerate(out.get(section, [])):
            if "boot_order" in dev:
                where = "%s[%d]" % (section, i)
                if dev["boot_order"] in orders:
                    raise InvalidSpec(where + ".boot_order", "%d is already used by %s" %
                                      (dev["boot_order"], orders[dev["boot_order"]]))
                orders[dev["boot_order"]] = where
    sys_uuid = out.get("sysinfo", {}).get("system", {}).get("uuid")
    if sys_uuid and "uuid" in out and sys_uuid.lower().replace("-", "") != out["uuid"].replace("-", ""):
        raise InvalidSpec("sysinfo.system.uuid", "must match uuid (%s)" % out["uuid"])
    if "uuid" in out and "-" not in out["uuid"]:
        u = out["uuid"]
        out["uuid"] = "%s-%s-%s-%s-%s" % (u[:8], u[8:12], u[12:16], u[16:20], u[20:])
    return out
