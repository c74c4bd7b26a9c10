# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The elements of libvirt's domain XML the guest spec models, each kind declared once.

A ``DeviceKind`` is one child of ``<devices>`` the guest spec models (an
``ElementKind`` one child of ``<domain>``, in ``ELEMENTS``): its spec
key, the schema of one item (guest_spec.SPEC reads it), how one builds, how it
parses back, what identifies one among its siblings (model.IDENTITY), and
whether libvirt writes one of its own when the user wrote none. The builder
(domain_xml.guest_config), the parser (domain_xml.parse_domain_xml), the merge
on redefine (domain_xml.merge_definition), the XML comparison's list of what
libvirt adds (domain.xml_differences) and the spec comparison (whose value
types come from the schema) all read ``DEVICES`` and ``ELEMENTS``. Each kind's schema, builder
and parser sit side by side. No policy, no Ansible import.
"""

from __future__ import annotations

import json as _json
import os
import re
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils import model as _model
from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil as _xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.schema import (
    ABS_PATH_RE,
    IFNAME_RE,
    MAC_RE,
    MAX_MEMORY_MIB,
    PCI_RE,
    TARGET_RE,
    UUID_RE,
    Bool,
    CpuSet,
    Dict,
    Either,
    Enum,
    Field,
    Free,
    Int,
    List,
    Map,
    Raw,
    Size,
    Str,
    scaled_kib,
    typename,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.xmlutil import check_text

_el = _xmlutil.element
_sub = _xmlutil.sub

# Namespace of the element that carries the spec's ``metadata`` dict inside <metadata>.
METADATA_NS = "https://hypervisor.libvirt/xmlns/1.0"

# Disk target prefix per bus; sata, scsi and usb share libvirt's "sd" names.
TARGET_PREFIX = {"virtio": "vd", "scsi": "sd", "sata": "sd", "usb": "sd", "ide": "hd", "fdc": "fd", "sd": "sd",
                 "xen": "xvd", "uml": "ubd"}
# A disk target as libvirt's schema takes it (a partition such as vdb1 is its business, not the spec's).
DISK_TARGET_RE = re.compile(r"^(ioemu:)?(fd|hd|sd|vd|xvd|ubd)[a-zA-Z0-9_]+$")


def onoff(value: bool) -> str:
    return "on" if value else "off"


def yes(value: str | None) -> bool:
    return value in ("yes", "on")


def boot_order(el: Any) -> int | None:
    """A device's place in the boot order (``<boot order='N'/>``), or None."""
    boot = el.find("boot")
    return int(boot.get("order")) if boot is not None else None


def put(out: dict, key: str, value: Any) -> None:
    """``out[key] = value`` unless the value says nothing (None, an empty dict or list)."""
    if value is not None and value != {} and value != []:
        out[key] = value


class DeviceKind:
    """One kind of device: the declaration every reader of the domain model goes by."""

    key = ""                 # the spec key
    tag = ""                 # the child of <devices> it writes and reads
    many = True              # a list in the spec (else one dict, and the first element is read)
    schema: Any = None       # the schema of one item
    list_pre: Callable[[Any, str], Any] | None = None  # the list's own normalisation (one item for a list)
    libvirt_adds = False     # libvirt writes one of its own when the user wrote none
    spec_key: str | None = None  # the item key that identifies an item in the spec's list (else its position)

    @property
    def identity(self) -> Callable[[Any], Any] | None:
        """What identifies one element among its siblings across a redefinition (else its position)."""
        return _model.IDENTITY.get(self.tag)

    def field(self) -> Field:
        """The spec key's schema."""
        return List(self.schema, pre=self.list_pre, key=self.spec_key) if self.many else self.schema

    def build(self, item: dict) -> Any:  # pragma: no cover - every kind has its own
        raise NotImplementedError

    def build_all(self, value: Any) -> list[Any]:
        """The elements for the spec key's (normalised) value."""
        return [self.build(i) for i in value] if self.many else [self.build(value)]

    def parse(self, el: Any) -> dict | None:  # pragma: no cover - every kind has its own
        raise NotImplementedError

    def parse_all(self, devices: Any) -> Any:
        """The spec key's value read from ``<devices>``; None when there is nothing the spec models."""
        if self.many:
            return [p for p in (self.parse(e) for e in devices.findall(self.tag)) if p is not None]
        el = devices.find(self.tag)
        return self.parse(el) if el is not None else None


# ---------------------------------------------------------------- disk


def disk_index(target: str) -> int:
    """libvirt's virDiskNameToIndex: 'vda' -> 0, 'sdz' -> 25, 'sdaa' -> 26."""
    m = TARGET_RE.match(target)
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
        d["source"] = Str(ABS_PATH_RE, "an absolute path").norm(src, "%s.source" % path)
    elif d["device"] not in ("cdrom", "floppy"):
        raise InvalidSpec("%s.source" % path, "is required (only a cdrom or floppy may be empty)")
    if d["device"] in ("cdrom", "floppy"):
        d["readonly"] = d.get("readonly", True) or d["device"] == "cdrom"
    if d["device"] == "lun":
        if d["bus"] not in ("scsi", "virtio"):
            raise InvalidSpec("%s.bus" % path, "a lun must be on bus scsi or virtio, not %s" % d["bus"])
        if d["type"] == "file":
            raise InvalidSpec("%s.type" % path, "a lun must be type block or network")
    if d["bus"] == "virtio" and d["device"] == "cdrom":
        raise InvalidSpec("%s.bus" % path, "a cdrom cannot be on bus virtio; use sata, scsi or ide")
    if "target" in d:
        if not DISK_TARGET_RE.match(d["target"]):
            raise InvalidSpec("%s.target" % path, "%r is not a disk name like vda, sdb or hdc" % d["target"])
    return d


_NET_SOURCE = Dict({
    "protocol": Enum("rbd", "iscsi", "nbd", "gluster", "sheepdog", "http", "https", "ftp", "ftps",
                     "tftp", "ssh", "vxhs", "nfs"),
    "name": Str(),
    "hosts": List(Dict({"name": Str(), "port": Int(1, 65535), "transport": Enum("tcp", "unix", "rdma"),
                        "socket": Str()})),
    "auth": Dict({"username": Str(), "secret_type": Enum("ceph", "iscsi"), "secret_uuid": Str(UUID_RE, "a UUID", lower=True),
                  "secret_usage": Str()}, required=("username",)),
}, required=("protocol",), post=lambda src, path: _iscsi_lun(src))


def _iscsi_lun(src: dict) -> dict:
    """An iSCSI source names its LUN (``iqn…/0``): libvirt reads a name without one as LUN 0 and writes it so."""
    if src.get("protocol") == "iscsi" and src.get("name") and "/" not in src["name"]:
        src["name"] += "/0"
    return src


_DISK = Dict({
    "type": Enum("file", "block", "network"),
    "device": Enum("disk", "cdrom", "lun", "floppy"),
    "source": Raw("a path, or a dict for a network disk"),
    "target": Str(),
    "bus": Enum("virtio", "scsi", "sata", "ide", "usb", "fdc", "sd", "xen", "uml"),
    "format": Enum("raw", "qcow2", "qed", "vmdk", "vdi", "vpc", "vhdx", "iso", "luks", "dmg", "bochs", "cloop",
                   "dir", "fat", "vhd", "ploop", "cow", "qcow", "aio"),
    "cache": Enum("default", "none", "writethrough", "writeback", "directsync", "unsafe"),
    "io": Enum("threads", "native", "io_uring"),
    "discard": Enum("unmap", "ignore"),
    "readonly": Bool(),
    "shareable": Bool(),
    "serial": Str(),
    "boot_order": Int(1),
}, pre=_pre_disk, post=_post_disk)


def disk_config(disk: dict) -> Any:
    """One <disk> (the blueprint's _get_guest_disk_config): file, block or network source."""
    el = _el("disk", {"type": disk["type"], "device": disk["device"]})
    if any(k in disk for k in ("format", "cache", "io", "discard")):
        _sub(el, "driver", {"name": "qemu", "type": disk.get("format"), "cache": disk.get("cache"),
                            "io": disk.get("io"), "discard": disk.get("discard")})
    src = disk.get("source")
    if src is not None:
        if disk["type"] == "network":
            s = _sub(el, "source", {"protocol": src["protocol"], "name": src.get("name")})
            for host in src.get("hosts", []):
                _sub(s, "host", {"name": host.get("name"), "port": host.get("port"),
                                 "transport": host.get("transport"), "socket": host.get("socket")})
            auth = src.get("auth")
            if auth:
                a = _sub(s, "auth", {"username": auth["username"]})
                _sub(a, "secret", {"type": auth.get("secret_type"), "uuid": auth.get("secret_uuid"),
                                   "usage": auth.get("secret_usage")})
        else:
            _sub(el, "source", {"file" if disk["type"] == "file" else "dev": src})
    _sub(el, "target", {"dev": disk["target"], "bus": disk["bus"]})
    if disk.get("readonly"):
        _sub(el, "readonly")
    if disk.get("shareable"):
        _sub(el, "shareable")
    if "serial" in disk:
        _sub(el, "serial", None, disk["serial"])
    if "boot_order" in disk:
        _sub(el, "boot", {"order": disk["boot_order"]})
    return el


def _parse_disk(el: Any) -> dict | None:
    disk: dict[str, Any] = {"type": el.get("type", "file"), "device": el.get("device", "disk")}
    if disk["type"] not in ("file", "block", "network"):
        return None
    drv = el.find("driver")
    if drv is not None:
        for attr, key in (("type", "format"), ("cache", "cache"), ("io", "io"), ("discard", "discard")):
            put(disk, key, drv.get(attr))
    src = el.find("source")
    if src is not None:
        if disk["type"] == "network":
            s: dict[str, Any] = {"protocol": src.get("protocol")}
            put(s, "name", src.get("name"))
            hosts = []
            for h in src.findall("host"):
                host: dict[str, Any] = {}
                put(host, "name", h.get("name"))
                if h.get("port"):
                    host["port"] = int(h.get("port"))
                put(host, "transport", h.get("transport"))
                put(host, "socket", h.get("socket"))
                hosts.append(host)
            put(s, "hosts", hosts)
            auth = src.find("auth")
            if auth is None:
                auth = el.find("auth")
            if auth is not None:
                a = {"username": auth.get("username")}
                secret = auth.find("secret")
                if secret is not None:
                    put(a, "secret_type", secret.get("type"))
                    put(a, "secret_uuid", secret.get("uuid"))
                    put(a, "secret_usage", secret.get("usage"))
                s["auth"] = a
            disk["source"] = s
        else:
            path = src.get("file") if disk["type"] == "file" else src.get("dev")
            put(disk, "source", path)
    tgt = el.find("target")
    if tgt is not None:
        put(disk, "target", tgt.get("dev"))
        put(disk, "bus", tgt.get("bus"))
    for flag in ("readonly", "shareable"):
        if el.find(flag) is not None:
            disk[flag] = True
    if disk["device"] == "floppy":
        disk["readonly"] = el.find("readonly") is not None  # a floppy is writable unless it says so
    if el.find("serial") is not None:
        disk["serial"] = el.findtext("serial") or ""
    put(disk, "boot_order", boot_order(el))
    return disk


class Disk(DeviceKind):
    key, tag, schema = "disks", "disk", _DISK
    spec_key = "target"

    def build(self, item: dict) -> Any:
        return disk_config(item)

    def build_all(self, value: Any) -> list[Any]:
        """Every <disk> (normalised: targets derived, libvirt's order), plus the virtio-scsi controller if needed."""
        out = [disk_config(d) for d in value]
        if any(d["bus"] == "scsi" for d in value):
            out.append(_el("controller", {"type": "scsi", "index": 0, "model": "virtio-scsi"}))
        return out

    def parse(self, el: Any) -> dict | None:
        return _parse_disk(el)


# ---------------------------------------------------------------- interface


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
        raise InvalidSpec(path, "expected a dict of parameter name to value(s), got %s" % typename(value))
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


class _FilterParams(Field):
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


_DIRECT_SOURCE = Dict({"dev": Str(IFNAME_RE, "a host interface name"), "mode": Enum("vepa", "bridge", "private", "passthrough")})


_BW = Dict({"average": Int(), "peak": Int(), "burst": Int(), "floor": Int()})


_INTERFACE = Dict({
    "type": Enum("network", "bridge", "direct", "ethernet", "user"),
    "source": Raw("a network or bridge name, or for direct a dict with dev and mode"),
    "mac": Str(MAC_RE, "a MAC address like 52:54:00:12:34:56 (unicast: an even first octet)", lower=True),
    "model": Str(),
    "mtu": Int(68, 65535),
    "queues": Int(1, 256),
    "link_state": Enum("up", "down"),
    "vlan": Dict({"tags": List(Int(0, 4095)), "trunk": Bool()}, pre=_pre_vlan, post=_post_vlan),
    "virtualport": Dict({"type": Enum("openvswitch", "802.1Qbg", "802.1Qbh", "midonet"),
                         "parameters": Map(Enum("interfaceid", "profileid", "managerid", "typeid",
                                                "typeidversion", "instanceid"), Str())}),
    "bandwidth": Dict({"inbound": _BW, "outbound": _BW}),
    "filter": Dict({"name": Str(), "parameters": _FilterParams()}, required=("name",)),
    "target": Str(),
    "boot_order": Int(1),
}, pre=_pre_interface, post=_post_interface)


def interface_config(iface: dict) -> Any:
    """One <interface>: source by type, MAC, model, MTU, VLANs, virtualport, bandwidth, filterref."""
    el = _el("interface", {"type": iface["type"]})
    if "mac" in iface:
        _sub(el, "mac", {"address": iface["mac"]})
    src = iface.get("source")
    if iface["type"] == "network":
        _sub(el, "source", {"network": src})
    elif iface["type"] == "bridge":
        _sub(el, "source", {"bridge": src})
    elif iface["type"] == "direct":
        _sub(el, "source", {"dev": src["dev"], "mode": src["mode"]})
    vport = iface.get("virtualport")
    if vport:
        vp = _sub(el, "virtualport", {"type": vport.get("type")})
        if vport.get("parameters"):
            _sub(vp, "parameters", vport["parameters"])
    if "target" in iface:
        _sub(el, "target", {"dev": iface["target"]})
    _sub(el, "model", {"type": iface["model"]})
    if "queues" in iface:
        _sub(el, "driver", {"queues": iface["queues"]})
    if "mtu" in iface:
        _sub(el, "mtu", {"size": iface["mtu"]})
    if "link_state" in iface:
        _sub(el, "link", {"state": iface["link_state"]})
    vlan = iface.get("vlan")
    if vlan:
        v = _sub(el, "vlan", {"trunk": True if vlan["trunk"] else None})
        for tag in vlan["tags"]:
            _sub(v, "tag", {"id": tag})
    bw = iface.get("bandwidth")
    if bw:
        b = _sub(el, "bandwidth")
        for direction in ("inbound", "outbound"):
            if direction in bw:
                _sub(b, direction, bw[direction])
    flt = iface.get("filter")
    if flt:
        f = _sub(el, "filterref", {"filter": flt["name"]})
        for name, value in flt.get("parameters", {}).items():
            for v in (value if isinstance(value, list) else [value]):
                _sub(f, "parameter", {"name": name, "value": v})
    if "boot_order" in iface:
        _sub(el, "boot", {"order": iface["boot_order"]})
    return el


def _parse_interface(el: Any) -> dict | None:
    typ = el.get("type")
    if typ not in ("network", "bridge", "direct", "ethernet", "user"):
        return None
    iface: dict[str, Any] = {"type": typ}
    src = el.find("source")
    if src is not None:
        if typ == "network":
            put(iface, "source", src.get("network"))
        elif typ == "bridge":
            put(iface, "source", src.get("bridge"))
        elif typ == "direct":
            iface["source"] = {"dev": src.get("dev"), "mode": src.get("mode", "vepa")}
    mac = el.find("mac")
    if mac is not None:
        iface["mac"] = mac.get("address").lower()
    model = el.find("model")
    if model is not None:
        iface["model"] = model.get("type")
    drv = el.find("driver")
    if drv is not None and drv.get("queues"):
        iface["queues"] = int(drv.get("queues"))
    mtu = el.find("mtu")
    if mtu is not None:
        iface["mtu"] = int(mtu.get("size"))
    link = el.find("link")
    if link is not None:
        iface["link_state"] = link.get("state")
    vlan = el.find("vlan")
    if vlan is not None:
        iface["vlan"] = {"tags": [int(t.get("id")) for t in vlan.findall("tag")], "trunk": yes(vlan.get("trunk"))}
    vp = el.find("virtualport")
    if vp is not None:
        v: dict[str, Any] = {}
        put(v, "type", vp.get("type"))
        params = vp.find("parameters")
        if params is not None and len(params.attrib):
            v["parameters"] = dict(params.attrib)
        iface["virtualport"] = v
    bw = el.find("bandwidth")
    if bw is not None:
        b = {}
        for direction in ("inbound", "outbound"):
            d = bw.find(direction)
            if d is not None:
                b[direction] = {k: int(v) for k, v in d.attrib.items()}
        put(iface, "bandwidth", b)
    fr = el.find("filterref")
    if fr is not None:
        params: dict[str, Any] = {}
        for p in fr.findall("parameter"):
            name, value = p.get("name"), p.get("value")
            if name in params:
                prev = params[name]
                params[name] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                params[name] = value
        f: dict[str, Any] = {"name": fr.get("filter")}
        put(f, "parameters", params)
        iface["filter"] = f
    tgt = el.find("target")
    if tgt is not None and tgt.get("dev"):
        iface["target"] = tgt.get("dev")
    put(iface, "boot_order", boot_order(el))
    return iface


class Interface(DeviceKind):
    key, tag, schema = "interfaces", "interface", _INTERFACE

    def build(self, item: dict) -> Any:
        return interface_config(item)

    def parse(self, el: Any) -> dict | None:
        return _parse_interface(el)


# ---------------------------------------------------------------- serial, console, channel


def _post_chardev(c: dict, path: str) -> dict:
    typ = c.setdefault("type", "pty")
    if typ in ("unix", "tcp"):
        c.setdefault("mode", "bind")
    need = {"file": ("path",), "unix": (), "tcp": ("host", "port"), "dev": ("path",), "pipe": ("path",)}
    for key in need.get(typ, ()):
        if key not in c:
            raise InvalidSpec("%s.%s" % (path, key), "is required with type %s" % typ)
    allowed = {"pty": (), "file": ("path",), "unix": ("path", "mode"), "tcp": ("host", "port", "mode"),
               "dev": ("path",), "pipe": ("path",)}
    for key in ("path", "host", "port", "mode"):
        if key in c and key not in allowed.get(typ, ()):
            raise InvalidSpec("%s.%s" % (path, key), "does not apply to type %s" % typ)
    return c


def _post_channel(c: dict, path: str) -> dict:
    c.setdefault("type", "unix")
    c.setdefault("target_type", "virtio")
    return _post_chardev(c, path)


_CHAR_FIELDS = {
    # every source type libvirt's schema takes; the sources of udp, spiceport, nmdm, qemu-vdagent and dbus
    # are not modelled (preserved)
    "type": Enum("pty", "file", "unix", "tcp", "dev", "pipe", "null", "stdio", "vc", "spicevmc", "udp",
                 "spiceport", "nmdm", "qemu-vdagent", "dbus"),
    "path": Str(ABS_PATH_RE, "an absolute path"),
    "host": Str(),
    "port": Int(0, 65535),
    "mode": Enum("bind", "connect"),
    "log": Str(ABS_PATH_RE, "an absolute path"),
    "target_port": Int(),
}


_CHAR = Dict(_CHAR_FIELDS, post=_post_chardev)


_CONSOLE = Dict(dict(_CHAR_FIELDS, target_type=Enum("serial", "virtio", "sclp", "sclplm")), post=_post_chardev)


_CHANNEL = Dict(dict(_CHAR_FIELDS, name=Str(), target_type=Enum("virtio", "guestfwd", "xen")), post=_post_channel)


def chardev_config(tag: str, dev: dict) -> Any:
    """A <serial>, <console> or <channel>: source by type, log, target."""
    el = _el(tag, {"type": dev["type"]})
    typ = dev["type"]
    if typ in ("file", "dev", "pipe"):
        _sub(el, "source", {"path": dev["path"]})
    elif typ == "unix":
        _sub(el, "source", {"mode": dev.get("mode", "bind"), "path": dev.get("path")})
    elif typ == "tcp":
        _sub(el, "source", {"mode": dev.get("mode", "bind"), "host": dev["host"], "service": dev["port"]})
    if "log" in dev:
        _sub(el, "log", {"file": dev["log"]})
    if tag == "channel":
        _sub(el, "target", {"type": dev["target_type"], "name": dev.get("name")})
    elif "target_type" in dev or "target_port" in dev:
        _sub(el, "target", {"type": dev.get("target_type"), "port": dev.get("target_port")})
    return el


def _parse_chardev(el: Any, tag: str) -> dict:
    dev: dict[str, Any] = {"type": el.get("type", "pty")}
    src = el.find("source")
    typ = dev["type"]
    if src is None and typ == "unix":
        dev["mode"] = "bind"  # libvirt drops a path-less <source mode='bind'/> and makes the socket itself
    if src is not None:
        if typ in ("file", "dev", "pipe", "unix") and not (
                tag == "channel" and CHANNEL_PATH_RE.search(src.get("path") or "")):
            put(dev, "path", src.get("path"))  # a guest agent socket in libvirt's channel directory is its own
        if typ in ("unix", "tcp"):
            put(dev, "mode", src.get("mode"))
        if typ == "tcp":
            put(dev, "host", src.get("host"))
            if src.get("service"):
                dev["port"] = int(src.get("service"))
    log = el.find("log")
    if log is not None:
        dev["log"] = log.get("file")
    tgt = el.find("target")
    if tgt is not None:
        if tag == "channel":
            put(dev, "target_type", tgt.get("type"))
            put(dev, "name", tgt.get("name"))
        else:
            if tag == "console":
                put(dev, "target_type", tgt.get("type"))
            if tgt.get("port") is not None:
                dev["target_port"] = int(tgt.get("port"))
    return dev


class _Chardev(DeviceKind):
    def build(self, item: dict) -> Any:
        return chardev_config(self.tag, item)

    def parse(self, el: Any) -> dict | None:
        return _parse_chardev(el, self.tag)


class Serial(_Chardev):
    key, tag, schema = "serials", "serial", _CHAR


class Console(_Chardev):
    key, tag, schema = "consoles", "console", _CONSOLE
    libvirt_adds = True  # the console that mirrors the first serial port


class Channel(_Chardev):
    key, tag, schema = "channels", "channel", _CHANNEL


# ---------------------------------------------------------------- tpm


def _post_tpm(t: dict, path: str) -> dict:
    t.setdefault("type", "emulator")
    if t["type"] == "passthrough":
        t.setdefault("path", "/dev/tpm0")
    elif "path" in t:
        raise InvalidSpec("%s.path" % path, "only applies to type passthrough")
    return t


def tpm_config(tpm: dict) -> Any:
    """<tpm>: an emulated swtpm or a passed-through host TPM."""
    el = _el("tpm", {"model": tpm.get("model")})
    be = _sub(el, "backend", {"type": tpm["type"], "version": tpm.get("version")})
    if tpm["type"] == "passthrough":
        _sub(be, "device", {"path": tpm["path"]})
    return el


class Tpm(DeviceKind):
    key, tag, many = "tpm", "tpm", False
    schema = Dict({"model": Enum("tpm-tis", "tpm-crb", "tpm-spapr", "spapr-tpm-proxy"),
                   "type": Enum("emulator", "passthrough", "external"), "version": Enum("1.2", "2.0"), "path": Str()},
                  post=_post_tpm)

    def build(self, item: dict) -> Any:
        return tpm_config(item)

    def parse(self, el: Any) -> dict | None:
        t: dict[str, Any] = {}
        put(t, "model", el.get("model"))
        be = el.find("backend")
        if be is not None:
            t["type"] = be.get("type")
            put(t, "version", be.get("version"))
            if be.find("device") is not None:
                t["path"] = be.find("device").get("path")
        return t


# ---------------------------------------------------------------- graphics


def _pre_one_or_list(value: Any, path: str) -> Any:
    return [value] if isinstance(value, dict) else value


def _post_graphics(g: dict, path: str) -> dict:
    if g["type"] not in ("vnc", "spice"):
        for key in ("listen", "port", "autoport", "password", "keymap", "socket"):
            if key in g:
                raise InvalidSpec("%s.%s" % (path, key), "only applies to vnc and spice graphics, not %s" % g["type"])
        return g
    if "socket" in g:
        if g["type"] != "vnc":
            raise InvalidSpec("%s.socket" % path, "only applies to vnc graphics, not %s" % g["type"])
        for key in ("listen", "port", "autoport"):
            if key in g:
                raise InvalidSpec("%s.%s" % (path, key), "cannot be combined with socket (a UNIX socket, not TCP)")
        return g
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


def graphics_config(graphics: dict) -> Any:
    """<graphics> (vnc or spice) with listen address, port or autoport, password."""
    el = _el("graphics", {"type": graphics["type"], "port": graphics.get("port"),
                          "autoport": graphics.get("autoport"), "passwd": graphics.get("password"),
                          "keymap": graphics.get("keymap"), "socket": graphics.get("socket")})
    if "listen" in graphics:
        _sub(el, "listen", {"type": "address", "address": graphics["listen"]})
    return el


def _parse_graphics(el: Any) -> dict:
    g: dict[str, Any] = {"type": el.get("type")}
    if g["type"] not in ("vnc", "spice"):
        return g  # sdl, egl-headless, dbus: their attributes are preserved as they are
    listen = el.find("listen")
    socket = el.get("socket") or (listen.get("socket") if listen is not None and listen.get("type") == "socket" else None)
    if g["type"] == "vnc" and socket:
        g["socket"] = socket
        put(g, "password", el.get("passwd"))
        put(g, "keymap", el.get("keymap"))
        return g
    address = listen.get("address") if listen is not None else None
    put(g, "listen", address or el.get("listen"))
    port = el.get("port")
    autoport = el.get("autoport")
    if autoport is not None:
        g["autoport"] = yes(autoport)
    elif g["type"] == "spice" or (listen is not None and listen.get("type") == "none"):
        # spice has no port unless it says so (libvirt then listens nowhere: listen type none); a vnc
        # listening nowhere is what libvirt makes of autoport='no' without a port
        g["autoport"] = False
    elif port in (None, "-1"):
        g["autoport"] = True
    if port not in (None, "-1") and not g.get("autoport"):
        g["port"] = int(port)
    put(g, "password", el.get("passwd"))
    put(g, "keymap", el.get("keymap"))
    return g


class Graphics(DeviceKind):
    key, tag = "graphics", "graphics"
    schema = Dict({"type": Enum("vnc", "spice", "sdl", "egl-headless", "dbus"), "listen": Str(), "port": Int(-1, 65535),
                   "autoport": Bool(), "password": Str(), "keymap": Str(),
                   "socket": Str(ABS_PATH_RE, "an absolute path")},
                  required=("type",), post=_post_graphics)
    list_pre = staticmethod(_pre_one_or_list)

    def build(self, item: dict) -> Any:
        return graphics_config(item)

    def parse(self, el: Any) -> dict | None:
        return _parse_graphics(el)


# ---------------------------------------------------------------- video


def _pre_video(value: Any, path: str) -> Any:
    return {"model": value} if isinstance(value, str) else value


def video_config(video: dict) -> Any:
    """<video><model/></video>."""
    el = _el("video")
    _sub(el, "model", {"type": video["model"], "vram": video.get("vram"), "heads": video.get("heads")})
    return el


class Video(DeviceKind):
    key, tag, many = "video", "video", False
    libvirt_adds = True  # the video that goes with graphics
    schema = Dict({"model": Enum("vga", "cirrus", "qxl", "virtio", "bochs", "ramfb", "none", "vmvga"),
                   "vram": Int(1), "heads": Int(1)}, required=("model",), pre=_pre_video)

    def build(self, item: dict) -> Any:
        return video_config(item)

    def parse(self, el: Any) -> dict | None:
        video = el.find("model")
        if video is None:
            return None
        v: dict[str, Any] = {"model": video.get("type")}
        for attr in ("vram", "heads"):
            if video.get(attr):
                v[attr] = int(video.get(attr))
        return v


# ---------------------------------------------------------------- host device


def _pre_hostdev(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return {"pci": value}
    return value


def _pci_address(value: Any, path: str) -> str:
    text = Str().norm(value, path).lower()
    m = PCI_RE.match(text)
    if not m:
        raise InvalidSpec(path, "%r is not a PCI address like 0000:03:00.1" % value)
    return "%04x:%02x:%02x.%s" % (int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16), m.group(4))


class _Pci(Field):
    def norm(self, value: Any, path: str) -> Any:
        return _pci_address(value, path)


def _post_hostdev(h: dict, path: str) -> dict:
    h.setdefault("managed", True)
    return h


def pci_device_config(hostdev: dict | str) -> Any:
    """<hostdev type='pci'> from "0000:03:00.1" or {pci, managed, rom_bar} (the blueprint's _get_guest_pci_device)."""
    if isinstance(hostdev, str):
        hostdev = {"pci": hostdev, "managed": True}
    dom, bus, rest = hostdev["pci"].split(":")
    slot, func = rest.split(".")
    el = _el("hostdev", {"mode": "subsystem", "type": "pci", "managed": hostdev.get("managed", True)})
    src = _sub(el, "source")
    _sub(src, "address", {"domain": "0x" + dom, "bus": "0x" + bus, "slot": "0x" + slot, "function": "0x" + func})
    if "rom_bar" in hostdev:
        _sub(el, "rom", {"bar": onoff(hostdev["rom_bar"])})
    return el


def _parse_hostdev(el: Any) -> dict | None:
    if el.get("mode", "subsystem") != "subsystem" or el.get("type") != "pci":
        return None
    addr = el.find("source/address")
    if addr is None:
        return None
    parts = [_model.c_int(addr.get(k, "0")) for k in ("domain", "bus", "slot", "function")]
    if None in parts:
        return None
    pci = "%04x:%02x:%02x.%x" % tuple(parts)
    h: dict[str, Any] = {"pci": pci, "managed": yes(el.get("managed"))}
    rom = el.find("rom")
    if rom is not None and rom.get("bar"):
        h["rom_bar"] = yes(rom.get("bar"))
    return h


class Hostdev(DeviceKind):
    key, tag = "hostdevs", "hostdev"
    spec_key = "pci"
    schema = Dict({"pci": _Pci(), "managed": Bool(), "rom_bar": Bool()}, required=("pci",),
                  pre=_pre_hostdev, post=_post_hostdev)

    def build(self, item: dict) -> Any:
        return pci_device_config(item)

    def parse(self, el: Any) -> dict | None:
        return _parse_hostdev(el)


# ---------------------------------------------------------------- watchdog


def _post_watchdog(w: dict, path: str) -> dict:
    w.setdefault("model", "i6300esb")
    return w


def watchdog_config(watchdog: dict) -> Any:
    """<watchdog> with its model and action."""
    return _el("watchdog", {"model": watchdog["model"], "action": watchdog.get("action")})


class Watchdog(DeviceKind):
    key, tag, many = "watchdog", "watchdog", False
    schema = Dict({"model": Enum("i6300esb", "ib700", "diag288", "itco"),
                   "action": Enum("reset", "shutdown", "poweroff", "pause", "none", "dump", "inject-nmi")},
                  post=_post_watchdog)

    def build(self, item: dict) -> Any:
        return watchdog_config(item)

    def parse(self, el: Any) -> dict | None:
        w: dict[str, Any] = {"model": el.get("model")}
        put(w, "action", el.get("action"))
        return w


# ---------------------------------------------------------------- memory balloon


def _pre_memballoon(value: Any, path: str) -> Any:
    return {"model": value} if isinstance(value, str) else value


def memballoon_config(balloon: dict) -> Any:
    """<memballoon>, with a stats period when given."""
    el = _el("memballoon", {"model": balloon["model"]})
    if "period" in balloon:
        _sub(el, "stats", {"period": balloon["period"]})
    return el


class Memballoon(DeviceKind):
    key, tag, many = "memballoon", "memballoon", False
    libvirt_adds = True
    schema = Dict({"model": Enum("virtio", "virtio-transitional", "virtio-non-transitional", "xen", "none"),
                   "period": Int(0)}, required=("model",), pre=_pre_memballoon)

    def build(self, item: dict) -> Any:
        return memballoon_config(item)

    def parse(self, el: Any) -> dict | None:
        b: dict[str, Any] = {"model": el.get("model")}
        stats = el.find("stats")
        if stats is not None:
            b["period"] = int(stats.get("period"))
        return b


# ---------------------------------------------------------------- random number generator


def _post_rng(r: dict, path: str) -> dict:
    r.setdefault("model", "virtio")
    r.setdefault("backend", "/dev/urandom")
    return r


def rng_config(rng: dict) -> Any:
    """<rng model='virtio'> with a random backend."""
    el = _el("rng", {"model": rng["model"]})
    _sub(el, "backend", {"model": "random"}, rng["backend"])
    return el


class Rng(DeviceKind):
    key, tag, many = "rng", "rng", False
    schema = Dict({"model": Enum("virtio", "virtio-transitional", "virtio-non-transitional"), "backend": Str()},
                  post=_post_rng)

    def build(self, item: dict) -> Any:
        return rng_config(item)

    def parse(self, el: Any) -> dict | None:
        backend = el.find("backend")
        if backend is not None and backend.get("model", "random") != "random":
            return None  # an egd or builtin backend: not modelled, preserved as it is
        return {"model": el.get("model"),
                "backend": (backend.text or "/dev/urandom") if backend is not None else "/dev/urandom"}


# ================================================================ the children of <domain>


class ElementKind:
    """One child of <domain> the spec models, declared once (the same idea as DeviceKind): its spec key, the
    elements it writes (a redefinition replaces exactly those), its schema, build and parse side by side."""

    key = ""
    tags: tuple[str, ...] = ()   # the children of <domain> it writes
    schema: Any = None
    libvirt_adds = False         # libvirt writes it when the user did not
    always = False               # built even when the spec does not name it (os, memory)
    builder: Callable[[Any], Any] | None = None  # value -> element
    parser: Callable[[Any], Any] | None = None   # element -> value

    def build(self, value: Any, spec: dict, hd: dict) -> Any:
        """The element for the (normalised) value; ``spec`` is the whole spec, ``hd`` the host's defaults."""
        return type(self).builder(value) if type(self).builder else _el(self.tags[0], None, value)

    def build_all(self, spec: dict, hd: dict) -> list[Any]:
        if self.key not in spec and not self.always:
            return []
        value = spec.get(self.key)
        if not self.always and value in ({}, [], None):
            return []
        return [self.build(value, spec, hd)]

    def parse(self, dom: Any) -> Any:
        """The spec key's value read from <domain>; None when it says nothing."""
        el = dom.find(self.tags[0])
        if el is None:
            return None
        return type(self).parser(el) if type(self).parser else el.text or None


class _Text(ElementKind):
    """An element whose text is the value (title, description, on_poweroff …)."""

    def __init__(self, key: str, tag: str, schema: Any, libvirt_adds: bool = False, empty: bool = False) -> None:
        self.key, self.tags, self.schema, self.libvirt_adds, self.empty = key, (tag,), schema, libvirt_adds, empty

    def build_all(self, spec: dict, hd: dict) -> list[Any]:
        return [_el(self.tags[0], None, spec[self.key])] if self.key in spec else []

    def parse(self, dom: Any) -> Any:
        el = dom.find(self.tags[0])
        if el is None:
            return None
        if self.empty:
            return el.text or ""
        return el.text or None


class Uuid(_Text):
    def __init__(self) -> None:
        super().__init__("uuid", "uuid", Str(UUID_RE, "a UUID", lower=True), libvirt_adds=True)

    def parse(self, dom: Any) -> Any:
        return (dom.findtext("uuid") or "").lower() or None


def metadata_config(metadata: dict) -> Any:
    """<metadata> holding the spec's metadata dict as JSON in the collection's namespace."""
    el = _el("metadata")
    child = etree.SubElement(el, "{%s}metadata" % METADATA_NS, nsmap={"hvl": METADATA_NS})
    child.text = _json.dumps(metadata, sort_keys=True)
    return el


class Metadata(ElementKind):
    key, tags, schema = "metadata", ("metadata",), Map(Str(), Free())

    builder = staticmethod(metadata_config)

    def parse(self, dom: Any) -> Any:
        meta = dom.find("metadata/{%s}metadata" % METADATA_NS)
        if meta is None or not meta.text:
            return None
        try:
            return _json.loads(meta.text)
        except ValueError:
            return None


def mib(el: Any, attr: str | None = None, unit_attr: str = "unit") -> int:
    """A libvirt size in whole MiB (rounded; libvirt's largest size in KiB is the largest whole MiB)."""
    return min(int(round(scaled_kib(el, attr, unit_attr) / 1024)), MAX_MEMORY_MIB)


class _Size(ElementKind):
    """<memory> and <currentMemory>: a size in MiB."""

    def __init__(self, key: str, tag: str, always: bool = False) -> None:
        self.key, self.tags, self.schema, self.always, self.libvirt_adds = key, (tag,), Size(), always, True

    def build_all(self, spec: dict, hd: dict) -> list[Any]:
        if self.key not in spec:
            return []
        return [_el(self.tags[0], {"unit": "MiB"}, spec[self.key])]

    def parse(self, dom: Any) -> Any:
        el = dom.find(self.tags[0])
        return mib(el) if el is not None else None


def memory_backing_config(backing: dict) -> Any:
    """<memoryBacking>: hugepages (all default-size, or per size and node set), locked, nosharepages."""
    el = _el("memoryBacking")
    pages = backing.get("hugepages")
    if pages:
        hp = _sub(el, "hugepages")
        if isinstance(pages, list):
            for page in pages:
                _sub(hp, "page", {"size": page["size"], "unit": "MiB", "nodeset": page.get("nodeset")})
    if backing.get("nosharepages"):
        _sub(el, "nosharepages")
    if backing.get("locked"):
        _sub(el, "locked")
    return el


class MemoryBacking(ElementKind):
    key, tags = "memory_backing", ("memoryBacking",)
    schema = Dict({
        "hugepages": Either(Bool(), List(Dict({"size": Size(), "nodeset": CpuSet()}, required=("size",))),
                            what="true or a list of {size, nodeset}"),
        "locked": Bool(),
        "nosharepages": Bool(),
    })

    builder = staticmethod(memory_backing_config)

    @staticmethod
    def parser(mb: Any) -> Any:
        backing: dict[str, Any] = {}
        hp = mb.find("hugepages")
        if hp is not None:
            pages = []
            for page in hp.findall("page"):
                p: dict[str, Any] = {"size": mib(page, "size")}
                put(p, "nodeset", page.get("nodeset"))
                pages.append(p)
            backing["hugepages"] = pages or True
        for flag in ("locked", "nosharepages"):
            if mb.find(flag) is not None:
                backing[flag] = True
        return backing


class Vcpus(ElementKind):
    key, tags, schema, libvirt_adds = "vcpus", ("vcpu", "vcpus"), Int(1, 65535), True

    def build_all(self, spec: dict, hd: dict) -> list[Any]:
        return [_el("vcpu", None, spec["vcpus"])] if "vcpus" in spec else []

    def parse(self, dom: Any) -> Any:
        vcpu = dom.find("vcpu")
        return int(vcpu.text) if vcpu is not None else None


def cputune_config(cputune: dict) -> Any:
    """<cputune>: vCPU and emulator pinning."""
    el = _el("cputune")
    for vcpu, cpuset in sorted(cputune.get("vcpupin", {}).items()):
        _sub(el, "vcpupin", {"vcpu": vcpu, "cpuset": cpuset})
    if "emulatorpin" in cputune:
        _sub(el, "emulatorpin", {"cpuset": cputune["emulatorpin"]})
    return el


class Cputune(ElementKind):
    key, tags = "cputune", ("cputune",)
    schema = Dict({"vcpupin": Map(Int(), CpuSet()), "emulatorpin": CpuSet()})

    builder = staticmethod(cputune_config)

    @staticmethod
    def parser(ct: Any) -> Any:
        cputune: dict[str, Any] = {}
        put(cputune, "vcpupin", {int(p.get("vcpu")): p.get("cpuset") for p in ct.findall("vcpupin")})
        ep = ct.find("emulatorpin")
        if ep is not None:
            cputune["emulatorpin"] = ep.get("cpuset")
        return cputune


def numatune_config(numatune: dict) -> Any:
    """<numatune>: host NUMA placement of guest memory."""
    el = _el("numatune")
    if "mode" in numatune or "nodeset" in numatune:
        _sub(el, "memory", {"mode": numatune.get("mode"), "nodeset": numatune.get("nodeset")})
    for node in numatune.get("memnodes", []):
        _sub(el, "memnode", {"cellid": node["cellid"], "mode": node.get("mode"), "nodeset": node["nodeset"]})
    return el


class Numatune(ElementKind):
    key, tags = "numatune", ("numatune",)
    schema = Dict({
        "mode": Enum("strict", "preferred", "interleave", "restrictive"),
        "nodeset": CpuSet(),
        "memnodes": List(Dict({"cellid": Int(), "mode": Enum("strict", "preferred", "interleave", "restrictive"),
                               "nodeset": CpuSet()}, required=("cellid", "mode", "nodeset"))),
    })

    builder = staticmethod(numatune_config)

    @staticmethod
    def parser(nt: Any) -> Any:
        numatune: dict[str, Any] = {}
        m = nt.find("memory")
        if m is not None:
            put(numatune, "mode", m.get("mode"))
            put(numatune, "nodeset", m.get("nodeset"))
        nodes = []
        for n in nt.findall("memnode"):
            node: dict[str, Any] = {"cellid": int(n.get("cellid")), "nodeset": n.get("nodeset")}
            put(node, "mode", n.get("mode"))
            nodes.append(node)
        put(numatune, "memnodes", nodes)
        return numatune


_SYSINFO_TAGS = {"bios": "bios", "system": "system", "base_board": "baseBoard", "chassis": "chassis"}

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


def sysinfo_config(sysinfo: dict) -> Any:
    """<sysinfo type='smbios'> (the blueprint's _get_guest_config_sysinfo); <os> adds <smbios mode='sysinfo'/>."""
    el = _el("sysinfo", {"type": "smbios"})
    for key, tag in _SYSINFO_TAGS.items():
        if sysinfo.get(key):
            sec = _sub(el, tag)
            for name, value in sysinfo[key].items():
                _sub(sec, "entry", {"name": name}, value)
    if sysinfo.get("oem_strings"):
        oem = _sub(el, "oemStrings")
        for value in sysinfo["oem_strings"]:
            _sub(oem, "entry", None, value)
    return el


class Sysinfo(ElementKind):
    key, tags, schema = "sysinfo", ("sysinfo",), _SYSINFO

    builder = staticmethod(sysinfo_config)

    def parse(self, dom: Any) -> Any:
        si = dom.find("sysinfo")
        if si is None or si.get("type", "smbios") != "smbios":
            return None
        sysinfo: dict[str, Any] = {}
        for key, tag in _SYSINFO_TAGS.items():
            sec = si.find(tag)
            if sec is not None:
                put(sysinfo, key, {e.get("name"): e.text or "" for e in sec.findall("entry")})
        oem = si.find("oemStrings")
        if oem is not None:
            put(sysinfo, "oem_strings", [e.text or "" for e in oem.findall("entry")])
        return sysinfo


_BOOT_DEVS = ("hd", "cdrom", "network", "fd")

_OS = Dict({
    "arch": Str(),
    "machine": Str(),
    "firmware": Enum("bios", "efi"),
    "secure_boot": Bool(),
    "boot": List(Enum(*_BOOT_DEVS)),
    "kernel": Str(ABS_PATH_RE, "an absolute path"),
    "initrd": Str(ABS_PATH_RE, "an absolute path"),
    "cmdline": Str(),
})


def os_config(os_spec: dict, smbios: bool = False, loader: str | None = None,
              arch: str | None = None, machine: str | None = None) -> Any:
    """<os>: type/arch/machine, firmware (libvirt's autoselection unless a loader path is given), boot."""
    firmware = os_spec.get("firmware")
    el = _el("os", {"firmware": firmware if firmware and not loader else None})
    _sub(el, "type", {"arch": os_spec.get("arch", arch), "machine": os_spec.get("machine", machine)}, "hvm")
    if firmware == "efi":
        secure = os_spec.get("secure_boot")
        if loader:
            _sub(el, "loader", {"readonly": True, "type": "pflash",
                                "secure": secure if secure is not None else None}, loader)
            template = _nvram_template(loader)
            if template:
                _sub(el, "nvram", {"template": template})
        elif secure is not None:
            fw = _sub(el, "firmware")
            _sub(fw, "feature", {"enabled": secure, "name": "secure-boot"})
            _sub(fw, "feature", {"enabled": secure, "name": "enrolled-keys"})
    for key in ("kernel", "initrd", "cmdline"):
        if key in os_spec:
            _sub(el, key, None, os_spec[key])
    for dev in os_spec.get("boot", []):
        _sub(el, "boot", {"dev": dev})
    if smbios:
        _sub(el, "smbios", {"mode": "sysinfo"})
    return el


def _nvram_template(loader: str) -> str | None:
    """The variables file shipped beside a loader (Debian/Fedora naming), if it is on this machine."""
    candidates = [loader.replace("_CODE", "_VARS").replace(".secboot", ".ms"),
                  loader.replace("_CODE", "_VARS").replace(".secboot", ""),
                  loader.replace("-code", "-vars")]
    for path in candidates:
        if path != loader and os.path.exists(path):
            return path
    return None


def _parse_os(el: Any) -> dict:
    os_spec: dict[str, Any] = {}
    typ = el.find("type")
    if typ is not None:
        put(os_spec, "arch", typ.get("arch"))
        put(os_spec, "machine", typ.get("machine"))
    loader = el.find("loader")
    if el.get("firmware") == "efi" or (loader is not None and loader.get("type") == "pflash"):
        os_spec["firmware"] = "efi"
    elif el.get("firmware") == "bios":
        os_spec["firmware"] = "bios"
    for feat in el.findall("firmware/feature"):
        if feat.get("name") == "secure-boot":
            os_spec["secure_boot"] = yes(feat.get("enabled"))
    if "secure_boot" not in os_spec and loader is not None and loader.get("secure"):
        os_spec["secure_boot"] = yes(loader.get("secure"))
    for key in ("kernel", "initrd", "cmdline"):
        if el.find(key) is not None:
            os_spec[key] = el.findtext(key) or ""
    put(os_spec, "boot", [b.get("dev") for b in el.findall("boot")])
    return os_spec


class Os(ElementKind):
    key, tags, schema, always = "os", ("os",), _OS, True

    def build(self, value: Any, spec: dict, hd: dict) -> Any:
        return os_config(value or {}, smbios=bool(spec.get("sysinfo")), loader=hd.get("loader"),
                         arch=hd.get("arch"), machine=hd.get("machine"))

    parser = staticmethod(_parse_os)


def _pre_features(value: Any, path: str) -> Any:
    if isinstance(value, list):
        out = {}
        for i, name in enumerate(value):
            if not isinstance(name, str):
                raise InvalidSpec("%s[%d]" % (path, i), "expected a feature name, got %s" % typename(name))
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


def features_config(features: dict) -> Any:
    """<features>: flags as empty elements, on/off features with state=."""
    el = _el("features")
    for name, on in features.items():
        if name in ("acpi", "apic", "pae", "viridian", "privnet"):
            _sub(el, name)
        else:
            _sub(el, name, {"state": onoff(on)})
    return el


class Features(ElementKind):
    key, tags = "features", ("features",)
    schema = Map(Enum(*FEATURES), Bool(), pre=_pre_features, post=_post_features)

    builder = staticmethod(features_config)

    @staticmethod
    def parser(feats: Any) -> Any:
        features = {}
        for f in feats:
            if not isinstance(f.tag, str):
                continue
            if f.tag in _FLAG_FEATURES:
                features[f.tag] = True
            elif f.tag in _STATE_FEATURES:
                features[f.tag] = f.get("state", "on") == "on"
        return features


def _post_topology(t: dict, path: str) -> dict:
    for key in ("sockets", "dies", "cores", "threads"):
        t.setdefault(key, 1)
    return t


def _post_cpu(c: dict, path: str) -> dict:
    if "mode" not in c and ("model" in c or "vendor" in c or "fallback" in c):
        c["mode"] = "custom"
    if c.get("mode") not in ("custom", None) and "vendor" in c:
        raise InvalidSpec("%s.vendor" % path, "only applies to cpu.mode custom, not %s" % c["mode"])
    if c.get("mode") not in ("custom", "host-model", None) and "fallback" in c:
        raise InvalidSpec("%s.fallback" % path, "only applies to cpu.mode custom and host-model, not %s" % c["mode"])
    if c.get("mode") == "custom" and "model" not in c:
        raise InvalidSpec("%s.model" % path, "is required with cpu.mode custom")
    ids = [cell["id"] for cell in c.get("numa", [])]
    if len(set(ids)) != len(ids):
        raise InvalidSpec("%s.numa" % path, "cell ids must be unique, got %s" % ids)
    if "numa" in c:
        c["numa"].sort(key=lambda cell: cell["id"])  # libvirt holds the cells in the order of their ids
    return c


_CPU = Dict({
    "mode": Enum("host-passthrough", "host-model", "custom", "maximum"),
    "model": Str(),
    "fallback": Enum("allow", "forbid"),
    "vendor": Str(),
    "features": Map(Str(), Enum("force", "require", "optional", "disable", "forbid")),
    "topology": Dict({k: Int(1) for k in ("sockets", "dies", "cores", "threads")}, post=_post_topology),
    "numa": List(Dict({"id": Int(), "cpus": CpuSet(), "memory": Size(), "mem_access": Enum("shared", "private")},
                      required=("id", "memory"))),
}, post=_post_cpu)


def cpu_model_config(cpu: dict) -> Any:
    """<cpu> with mode, model, vendor and features (the blueprint's _get_guest_cpu_model_config)."""
    el = _el("cpu", {"mode": cpu.get("mode")})
    if "model" in cpu:
        _sub(el, "model", {"fallback": cpu.get("fallback")}, cpu["model"])
    if "vendor" in cpu:
        _sub(el, "vendor", None, cpu["vendor"])
    return el


def cpu_config(cpu: dict) -> Any:
    """The whole <cpu>: model config plus topology, features and NUMA cells."""
    el = cpu_model_config(cpu)
    topo = cpu.get("topology")
    if topo:
        _sub(el, "topology", {k: topo[k] for k in ("sockets", "dies", "cores", "threads")})
    for name, policy in cpu.get("features", {}).items():
        _sub(el, "feature", {"policy": policy, "name": name})
    if cpu.get("numa"):
        numa = _sub(el, "numa")
        for cell in cpu["numa"]:
            _sub(numa, "cell", {"id": cell["id"], "cpus": cell.get("cpus"), "memory": cell["memory"],
                                "unit": "MiB", "memAccess": cell.get("mem_access")})
    return el


def _parse_cpu(el: Any) -> dict:
    cpu: dict[str, Any] = {}
    put(cpu, "mode", el.get("mode"))
    model = el.find("model")
    if model is not None and (model.text or "").strip():
        cpu["model"] = model.text.strip()
        put(cpu, "fallback", model.get("fallback"))
    if el.findtext("vendor"):
        cpu["vendor"] = el.findtext("vendor")
    topo = el.find("topology")
    if topo is not None:
        cpu["topology"] = {k: int(topo.get(k, 1)) for k in ("sockets", "dies", "cores", "threads")}
    put(cpu, "features", {f.get("name"): f.get("policy", "require") for f in el.findall("feature")})
    cells = []
    for index, cell in enumerate(el.findall("numa/cell")):
        c = {"memory": mib(cell, "memory")}
        put(c, "cpus", cell.get("cpus"))
        # a cell without id is numbered by its place, as libvirt numbers it
        c["id"] = _model.c_int(cell.get("id")) if cell.get("id") is not None else index
        put(c, "mem_access", cell.get("memAccess"))
        cells.append(c)
    put(cpu, "numa", cells)
    if cpu.get("mode") == "custom" and "model" not in cpu:
        del cpu["mode"]  # libvirt writes mode='custom' for a bare topology
    return cpu


class Cpu(ElementKind):
    key, tags, schema, libvirt_adds = "cpu", ("cpu",), _CPU, True

    builder = staticmethod(cpu_config)

    parser = staticmethod(_parse_cpu)


_TIMER = Dict({"name": Enum("platform", "pit", "rtc", "hpet", "tsc", "kvmclock", "hypervclock", "armvtimer"),
               "present": Bool(),
               "tickpolicy": Enum("delay", "catchup", "merge", "discard")}, required=("name",))


def clock_config(clock: dict) -> Any:
    """<clock> with its offset and timers."""
    el = _el("clock", {"offset": clock.get("offset", "utc"), "timezone": clock.get("timezone")})
    for timer in clock.get("timers", []):
        _sub(el, "timer", {"name": timer["name"], "tickpolicy": timer.get("tickpolicy"),
                           "present": timer.get("present")})
    return el


class Clock(ElementKind):
    key, tags, libvirt_adds = "clock", ("clock",), True
    schema = Dict({"offset": Enum("utc", "localtime", "timezone", "variable", "absolute"), "timezone": Str(),
                   "timers": List(_TIMER)})

    builder = staticmethod(clock_config)

    @staticmethod
    def parser(clk: Any) -> Any:
        clock: dict[str, Any] = {"offset": clk.get("offset", "utc")}
        put(clock, "timezone", clk.get("timezone"))
        timers = []
        for t in clk.findall("timer"):
            timer: dict[str, Any] = {"name": t.get("name")}
            put(timer, "tickpolicy", t.get("tickpolicy"))
            if t.get("present"):
                timer["present"] = yes(t.get("present"))
            timers.append(timer)
        put(clock, "timers", timers)
        return clock


_LIFECYCLE = ("destroy", "restart", "preserve", "rename-restart")

# Every modelled child of <domain> but name and devices, in the order guest_config writes them.
ELEMENTS: tuple[ElementKind, ...] = (
    Uuid(),
    _Text("title", "title", Str(), empty=True),
    _Text("description", "description", Str(nonempty=False, multiline=True), empty=True),
    Metadata(),
    _Size("memory", "memory"),
    _Size("current_memory", "currentMemory"),
    MemoryBacking(), Vcpus(), Cputune(), Numatune(), Sysinfo(), Os(), Features(), Cpu(), Clock(),
    _Text("on_poweroff", "on_poweroff", Enum(*_LIFECYCLE), libvirt_adds=True),
    _Text("on_reboot", "on_reboot", Enum(*_LIFECYCLE), libvirt_adds=True),
    _Text("on_crash", "on_crash", Enum(*(_LIFECYCLE + ("coredump-destroy", "coredump-restart"))), libvirt_adds=True),
)
# Children of <domain> no spec key models that libvirt writes on its own.
LIBVIRT_ADDED_TOP_UNMODELLED = frozenset({"pm", "resource", "seclabel", "keywrap", "genid"})
LIBVIRT_ADDED_TOP = LIBVIRT_ADDED_TOP_UNMODELLED | frozenset(t for k in ELEMENTS if k.libvirt_adds for t in k.tags)


# ---------------------------------------------------------------- the table

# Every modelled device kind, in the order guest_config writes them.
DEVICES: tuple[DeviceKind, ...] = (Disk(), Interface(), Serial(), Console(), Channel(), Tpm(), Graphics(), Video(),
                                   Hostdev(), Watchdog(), Memballoon(), Rng())


DEVICE_KINDS = {k.key: k for k in DEVICES}

# Children of <devices> no spec key models that libvirt writes on its own (implicit controllers, inputs,
# audio that goes with graphics, the emulator from the host's capabilities).
LIBVIRT_ADDED_UNMODELLED = frozenset({"emulator", "controller", "input", "audio"})
LIBVIRT_ADDED_DEVICES = LIBVIRT_ADDED_UNMODELLED | frozenset(k.tag for k in DEVICES if k.libvirt_adds)

# What a domain's live (status) XML holds that its persistent definition never does: libvirt drops it on a
# define (the -active/-inactive pairs of libvirt's qemuxml2xmloutdata show it). A user's XML copied from a
# running domain holds it, and it is no difference that libvirt's definition does not.
RUNTIME_ATTRIBUTES = frozenset({("source", "index"), ("backingStore", "index"), ("target", "state")})
RUNTIME_ELEMENTS = frozenset({("disk", "mirror"), ("seclabel", "imagelabel")})
# A path libvirt made for a running domain (a socket or channel under .../domain-<id>-<name>/).
GENERATED_PATH_RE = re.compile(r"/domain-\d+-[^/]+/")
# A guest agent channel's socket in libvirt's channel directory (.../channel/target/domain-<id>-<name>/...)
CHANNEL_PATH_RE = re.compile(r"/channel/(target/)?(domain-[^/]+/|[^/]*\.org\.qemu\.guest_agent\.)")

# Children and attributes libvirt drops from a definition because they say what it assumes anyway.
# tag of the parent -> (tag, attributes) of the child that says nothing
LIBVIRT_DROPS_ELEMENTS: dict[str, tuple[tuple[str, dict[str, str]], ...]] = {
    "smartcard": (("protocol", {"type": "raw"}),),
    "cpu": (("model", {"fallback": "allow"}),),  # an empty model under host-model or host-passthrough
    "domain": (("cpu", {}),),  # an empty <cpu/>
    "serial": (("source", {"mode": "bind"}),),  # a unix socket without a path: libvirt makes one
    "console": (("source", {"mode": "bind"}),),
    "channel": (("source", {"mode": "bind"}),),
}
# (tag, attribute) -> the value libvirt does not write: spice without a port listens nowhere (listen type none);
# a port or TLS port of -1 is "choose one when the domain starts" (virt-install writes both for spice), which a
# definition keeps as autoport alone
LIBVIRT_DROPS_ATTRIBUTES = {("graphics", "autoport"): "no", ("graphics", "port"): "-1", ("graphics", "tlsPort"): "-1"}


def runtime_or_default(parent: Any, child: Any) -> bool:
    """``child`` of ``parent`` (a user's XML) is runtime state or a default libvirt does not keep in a definition."""
    if (parent.tag, child.tag) in RUNTIME_ELEMENTS:
        return True
    if child.tag == "seclabel" and parent.tag == "source" and child.get("labelskip") == "yes":
        return True  # a label a running domain skipped
    if child.tag == "source" and parent.tag == "channel" and child.get("mode", "bind") == "bind" and \
            CHANNEL_PATH_RE.search(child.get("path") or ""):
        return True  # the guest agent socket libvirt made under its channel directory
    for tag, attrs in LIBVIRT_DROPS_ELEMENTS.get(parent.tag, ()):
        if child.tag == tag and dict(child.attrib) == attrs and not len(child) and not (child.text or "").strip():
            return True
    return False


# (tag, attribute) libvirt reads as an octal number (a file mode: 0644 and 644 are the same)
OCTAL_ATTRIBUTES = frozenset({("filesystem", "fmode"), ("filesystem", "dmode")})
# (tag, attribute) libvirt writes in upper case
CASELESS_ATTRIBUTES = frozenset({("boot", "loadparm"), ("os", "loadparm")})


def same_value(el: Any, key: str, want: str, have: str) -> bool:
    """``want`` (attribute ``key`` of ``el``, a user's XML) and ``have`` (libvirt's) are the same to libvirt
    beyond what model.value_equal sees: octal modes, an iSCSI name without its LUN."""
    if (el.tag, key) in OCTAL_ATTRIBUTES:
        try:
            return int(want, 8) == int(have, 8)
        except ValueError:
            return False
    if (el.tag, key) in CASELESS_ATTRIBUTES:
        return want.upper() == have.upper()
    return key == "name" and el.tag == "source" and "/" not in want and have == want + "/0"


def runtime_attribute(el: Any, key: str, have: str | None) -> bool:
    """Attribute ``key`` of ``el`` (a user's XML), where libvirt's definition holds ``have`` (None: nothing),
    is runtime state or a default libvirt does not write."""
    if key == "type" and el.tag == "listen" and el.get("type") == "socket" and have == "address":
        return GENERATED_PATH_RE.search(el.get("socket") or "") is not None  # its made socket is gone
    if have is not None:
        return False
    if (el.tag, key) in RUNTIME_ATTRIBUTES:
        return True
    if key in ("socket", "path") and GENERATED_PATH_RE.search(el.get(key) or ""):
        return True
    return LIBVIRT_DROPS_ATTRIBUTES.get((el.tag, key)) == el.get(key)


__all__ = ["ElementKind", "ELEMENTS", "LIBVIRT_ADDED_TOP", "METADATA_NS", "DeviceKind", "DEVICES", "DEVICE_KINDS",
           "LIBVIRT_ADDED_DEVICES", "runtime_or_default", "runtime_attribute",
           "same_value", "TARGET_PREFIX", "disk_index",
           "disk_name", "disk_config", "interface_config", "pci_device_config", "graphics_config", "video_config",
           "chardev_config", "rng_config", "cpu_config", "cpu_model_config", "os_config", "sysinfo_config",
           "features_config", "clock_config", "cputune_config", "numatune_config", "memory_backing_config",
           "metadata_config", "tpm_config", "watchdog_config", "memballoon_config", "put", "yes", "mib",
           "onoff"]
