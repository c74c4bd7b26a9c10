# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt storage - pools, volumes and secrets - through the libvirt API alone, given a ``Host``.

Everything goes through the connection, so it works the same on a remote URI:
volumes are created, cloned and resized by libvirt, and files move in and out
of them through libvirt streams (sparse: holes are skipped on both ends).

The model: one spec per object in libvirt's vocabulary (``parse_*`` reads
libvirt's XML into it, ``*_config`` builds XML from it, schema.py declarations
(``POOL_SPEC``, ``VOLUME_OPTIONS``, ``USAGE``) validate and normalise user
input, naming the field). What the model does not know is
kept verbatim (``model.residual``) and put back when an object is redefined.
Differences go through ``plan.difference``, actions through ``Plan.act``. No
Ansible import.

State the collection keeps (``Markers``): what was uploaded into a volume, and
a salted scrypt hash of a private secret's value - so an unchanged upload is not
repeated and a private value need not be read back. It lives in files under
``/var/lib/hypervisor-libvirt/`` (directories 0700, files 0600) on the machine
where the code runs, keyed by the hypervisor's host name (the same for every URI
that reaches it) and the pool's UUID and the volume's key or the secret's UUID.
"""

from __future__ import annotations

import base64
import copy
import errno
import hashlib
import hmac
import json
import os
import re
import tempfile
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils import model, schema, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec, NotFound, OperationFailed
from ansible_collections.hypervisor.libvirt.plugins.module_utils.plan import Plan, difference
from ansible_collections.hypervisor.libvirt.plugins.module_utils.schema import (
    MAX_UINT, Bool, Bytes, Dict, Enum, Free, Int, List, Octal, Str, Uuid, keyed, one_or_list)

STATE_DIR = "/var/lib/hypervisor-libvirt"
POOL_STATES = ("present", "active", "inactive", "absent")

# pool type -> the source keys it takes (libvirt's storagepool.rng), and whether it has a target
POOL_SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "dir": (),
    "fs": ("devices", "format"),
    "netfs": ("hosts", "dir", "format"),
    "logical": ("devices", "name", "format"),
    "disk": ("devices", "format"),
    "iscsi": ("hosts", "devices", "initiator", "auth"),
    "iscsi-direct": ("hosts", "devices", "initiator", "auth"),
    "scsi": (),
    "mpath": (),
    "rbd": ("hosts", "name", "auth"),
    "sheepdog": ("hosts", "name"),
    "gluster": ("hosts", "dir", "name"),
    "zfs": ("devices", "name"),
    "vstorage": ("name",),
}
POOL_NO_TARGET = ("rbd", "sheepdog", "gluster", "iscsi-direct")
# types whose build only makes a directory: built by default when defined
POOL_BUILD_DEFAULT = ("dir", "netfs")
SOURCE_KEYS = ("hosts", "devices", "dir", "name", "format", "auth", "initiator")
PERMISSION_KEYS = ("mode", "owner", "group", "label")
AUTH_TYPES = ("chap", "ceph")

# secret usage type -> the element holding its identifier
SECRET_USAGE = {"ceph": "name", "iscsi": "target", "volume": "volume", "tls": "name", "vtpm": "name"}

QCOW2_MAGIC = b"QFI\xfb"
_CHUNK = 1024 * 1024


# ---------------------------------------------------------------------- input checking (schema.py types)
def _pool_spec_post(spec: dict[str, Any], _path: str) -> dict[str, Any]:
    """A pool type's own source keys (libvirt's storagepool.rng) and whether it has a target; empty parts dropped."""
    ptype = spec["type"]
    allowed = POOL_SOURCE_KEYS[ptype]
    for key in spec.get("source") or {}:
        if key not in allowed:
            raise InvalidSpec("source.%s" % key, "a %s pool has no %s; its source takes %s"
                              % (ptype, key, ", ".join(allowed) or "nothing"))
    target = spec.get("target") or {}
    if not target.get("permissions"):
        target.pop("permissions", None)
    if ptype == "logical" and target.get("path"):
        # libvirt names a volume group's target itself, /dev/ and the source name (the pool's name when the
        # source names none), whatever path is given
        target["path"] = "/dev/%s" % ((spec.get("source") or {}).get("name") or spec["name"])
    if target and ptype in POOL_NO_TARGET:
        raise InvalidSpec("target", "a %s pool has no target" % ptype)
    return {k: v for k, v in spec.items() if v or k not in ("source", "target")}


def _one_secret(secret: dict[str, Any], path: str) -> dict[str, Any]:
    if len(secret) != 1:
        raise InvalidSpec(path, "give exactly one of uuid, usage")
    return secret


def _usage_post(usage: dict[str, Any], path: str) -> dict[str, Any]:
    """A secret usage is identified by the one element its type has (secret.rng)."""
    utype = usage["type"]
    key = SECRET_USAGE[utype]
    for other in ("name", "target", "volume"):
        if other != key and other in usage:
            raise InvalidSpec("%s.%s" % (path, other), "a %s secret is identified by %s, not %s" % (utype, key, other))
    if key not in usage:
        raise InvalidSpec("%s.%s" % (path, key), "required for a %s secret" % utype)
    return {"type": utype, key: usage[key]}


# a pool or volume name libvirt can hold: a file name (one path component, no control characters)
NAME = Str(re.compile(r"^(?!\.\.?$)[^/\x00-\x1f\x7f]+$"),
           "a valid name (one path component: no '/', no control characters, not '.' or '..')")
_TEXT = Str(nonempty=False)
_ABS_PATH = Str(re.compile(r"^/"), "an absolute path")
# a pool's target path and source directory: libvirt stores them sanitised ('/a//b/' as '/a/b')
_POOL_PATH = Str(re.compile(r"^/"), "an absolute path", canonical=model.libvirt_path)
_POOL_DIR = Str(nonempty=False, canonical=model.libvirt_path)
PERMISSIONS = Dict({"mode": Octal(), "owner": Int(-1, None, c_literal=True), "group": Int(-1, None, c_literal=True),
                    "label": _TEXT}, ordered=True,
                   # an owner or group of -1 (or 4294967295, the same uid_t) is libvirt's "not set": it stores none
                   post=lambda perms, _path: {k: v for k, v in perms.items()
                                              if not (k in ("owner", "group") and v in (-1, MAX_UINT))})
POOL_SPEC = Dict({
    "name": NAME,
    "type": Enum(*POOL_SOURCE_KEYS),
    "uuid": Uuid(),
    "source": Dict({
        "hosts": List(Dict({"name": _TEXT, "port": Int(0, None, c_literal=True)}, required=("name",), pre=keyed("name"),
                           ordered=True), pre=one_or_list),
        "devices": List(Dict({"path": _TEXT, "part_separator": Bool(ints=True)}, required=("path",), pre=keyed("path"),
                             ordered=True), pre=one_or_list),
        "dir": _POOL_DIR, "name": _TEXT, "format": _TEXT, "initiator": _TEXT,
        "auth": Dict({"type": Enum(*AUTH_TYPES), "username": _TEXT,
                      "secret": Dict({"uuid": Uuid(), "usage": _TEXT}, post=_one_secret)},
                     required=("type", "username", "secret"), ordered=True),
    }, ordered=True),
    "target": Dict({"path": _POOL_PATH, "permissions": PERMISSIONS}, ordered=True),
    "preserved": Free(),
}, required=("name", "type"), post=_pool_spec_post, ordered=True)
# storage_volume's options that are values (state and the rest are checked where they are used)
VOLUME_OPTIONS = Dict({"name": NAME, "state": Enum("present", "absent"), "capacity": Bytes(), "allocation": Bytes(),
                       "format": _TEXT, "permissions": PERMISSIONS})
BACKING = Dict({"pool": NAME, "name": NAME, "path": _ABS_PATH, "format": _TEXT})
CLONE_FROM = Dict({"pool": NAME, "name": NAME}, required=("name",))
# a secret's usage as libvirt's secret.rng has it: {type, name|target|volume}
USAGE = Dict({"type": Enum(*SECRET_USAGE), "name": _TEXT, "target": _TEXT, "volume": _ABS_PATH},
             required=("type",), post=_usage_post)


# ---------------------------------------------------------------------- pool XML: build and parse
def _permissions_config(parent: Any, perms: dict[str, Any] | None) -> None:
    if not perms:
        return
    el = xmlutil.sub(parent, "permissions")
    for key in PERMISSION_KEYS:
        if perms.get(key) is not None:
            xmlutil.sub(el, key, text=perms[key])


def _parse_permissions(el: Any) -> dict[str, Any] | None:
    if el is None:
        return None
    out: dict[str, Any] = {}
    for key in PERMISSION_KEYS:
        child = el.find(key)
        if child is None or child.text is None:
            continue
        text = child.text.strip()
        if key == "mode":
            try:
                out[key] = "0%o" % int(text, 8)
            except ValueError:
                out[key] = text
        elif key in ("owner", "group"):
            number = model.c_int(text)
            out[key] = number if number is not None else text
        else:
            out[key] = text
    return out or None


def pool_config(spec: dict[str, Any]) -> Any:
    """``<pool>`` from a checked spec, with what the spec preserved put back."""
    root = xmlutil.element("pool", {"type": spec["type"]})
    xmlutil.sub(root, "name", text=spec["name"])
    if spec.get("uuid"):
        xmlutil.sub(root, "uuid", text=spec["uuid"])
    src = spec.get("source") or {}
    if src or spec["type"] not in POOL_NO_TARGET:
        source = xmlutil.sub(root, "source")
        for host in src.get("hosts", []):
            xmlutil.sub(source, "host", {"name": host["name"], "port": host.get("port")})
        for dev in src.get("devices", []):
            xmlutil.sub(source, "device", {"path": dev["path"], "part_separator": dev.get("part_separator")})
        if src.get("dir") is not None:
            xmlutil.sub(source, "dir", {"path": src["dir"]})
        if src.get("name") is not None:
            xmlutil.sub(source, "name", text=src["name"])
        if src.get("format") is not None:
            xmlutil.sub(source, "format", {"type": src["format"]})
        if src.get("auth"):
            auth = src["auth"]
            el = xmlutil.sub(source, "auth", {"type": auth["type"], "username": auth["username"]})
            xmlutil.sub(el, "secret", auth["secret"])
        if src.get("initiator") is not None:
            xmlutil.sub(xmlutil.sub(source, "initiator"), "iqn", {"name": src["initiator"]})
    tgt = spec.get("target")
    if tgt:
        target = xmlutil.sub(root, "target")
        if tgt.get("path") is not None:
            xmlutil.sub(target, "path", text=tgt["path"])
        _permissions_config(target, tgt.get("permissions"))
    if spec.get("preserved"):
        model.overlay(root, model.from_text(spec["preserved"]))
    return root


# what a pool's XML reports of its storage, not part of its definition (libvirt reads none of it back)
_POOL_RUNTIME = ("capacity", "allocation", "available", "source/device/freeExtent")


def parse_pool(root: Any) -> dict[str, Any]:
    """The spec of a ``<pool>`` element; what the model does not know goes into ``preserved``."""
    spec: dict[str, Any] = {"name": (root.findtext("name") or "").strip(), "type": root.get("type")}
    if root.findtext("uuid"):
        spec["uuid"] = root.findtext("uuid").strip()
    source = root.find("source")
    src: dict[str, Any] = {}
    if source is not None:
        hosts = []
        for host in source.findall("host"):
            h: dict[str, Any] = {"name": host.get("name")}
            if host.get("port") is not None:
                port = model.c_int(host.get("port"))
                h["port"] = port if port is not None else host.get("port")
            hosts.append(h)
        if hosts:
            src["hosts"] = hosts
        devices = []
        for dev in source.findall("device"):
            d: dict[str, Any] = {"path": dev.get("path")}
            if dev.get("part_separator") is not None:
                d["part_separator"] = dev.get("part_separator") == "yes"
            devices.append(d)
        if devices:
            src["devices"] = devices
        if source.find("dir") is not None and source.find("dir").get("path") is not None:
            src["dir"] = source.find("dir").get("path")
        if source.find("name") is not None and source.findtext("name") is not None:
            src["name"] = source.findtext("name")
        if source.find("format") is not None and source.find("format").get("type") is not None:
            src["format"] = source.find("format").get("type")
        auth = source.find("auth")
        secret = auth.find("secret") if auth is not None else None
        if auth is not None and secret is not None and (secret.get("uuid") or secret.get("usage")):
            key = "uuid" if secret.get("uuid") else "usage"
            src["auth"] = {"type": auth.get("type"), "username": auth.get("username"), "secret": {key: secret.get(key)}}
        iqn = source.find("initiator/iqn")
        if iqn is not None and iqn.get("name") is not None:
            src["initiator"] = iqn.get("name")
    if src:
        spec["source"] = src
    if not spec["name"] and src.get("name"):
        spec["name"] = src["name"]  # as libvirt names a pool without a name (a volume group's, an RBD pool's)
    target = root.find("target")
    if target is not None:
        tgt: dict[str, Any] = {}
        if target.findtext("path"):
            tgt["path"] = target.findtext("path").strip()
        perms = _parse_permissions(target.find("permissions"))
        if perms:
            tgt["permissions"] = perms
        if tgt:
            spec["target"] = tgt
    bare = copy.deepcopy(root)
    for tag in _POOL_RUNTIME:
        for el in bare.findall(tag):
            el.getparent().remove(el)
    _preserve(spec, bare, pool_config({k: v for k, v in spec.items() if k != "preserved"}))
    return spec


def _preserve(spec: dict[str, Any], original: Any, built: Any) -> None:
    res = model.residual(original, built)
    if res is not None:
        spec["preserved"] = model.to_text(res)


# ---------------------------------------------------------------------- volume XML
VOLUME_KEYS = ("name", "type", "capacity", "allocation", "format", "permissions", "backing", "path", "key", "preserved")


def volume_config(spec: dict[str, Any]) -> Any:
    """``<volume>`` from a spec (capacity and allocation in bytes)."""
    root = xmlutil.element("volume", {"type": spec.get("type")})
    xmlutil.sub(root, "name", text=spec["name"])
    if spec.get("key") is not None:
        xmlutil.sub(root, "key", text=spec["key"])
    if spec.get("capacity") is not None:
        xmlutil.sub(root, "capacity", {"unit": "bytes"}, spec["capacity"])
    if spec.get("allocation") is not None:
        xmlutil.sub(root, "allocation", {"unit": "bytes"}, spec["allocation"])
    target = xmlutil.sub(root, "target")
    if spec.get("path") is not None:
        xmlutil.sub(target, "path", text=spec["path"])
    if spec.get("format") is not None:
        xmlutil.sub(target, "format", {"type": spec["format"]})
    _permissions_config(target, spec.get("permissions"))
    backing = spec.get("backing")
    if backing:
        store = xmlutil.sub(root, "backingStore")
        xmlutil.sub(store, "path", text=backing["path"])
        if backing.get("format") is not None:
            xmlutil.sub(store, "format", {"type": backing["format"]})
    if spec.get("preserved"):
        model.overlay(root, model.from_text(spec["preserved"]))
    return root


def _size_of(el: Any) -> Any:
    if el is None or el.text is None:
        return None
    size = model.scaled_bytes(el.text.strip(), el.get("unit"))
    return size if size is not None else el.text.strip()


def parse_volume(root: Any) -> dict[str, Any]:
    """The spec of a ``<volume>`` element; what the model does not know goes into ``preserved``."""
    spec: dict[str, Any] = {"name": (root.findtext("name") or "").strip()}
    if root.get("type") is not None:
        spec["type"] = root.get("type")
    if root.findtext("key") is not None and root.findtext("key").strip():
        spec["key"] = root.findtext("key").strip()
    for tag in ("capacity", "allocation"):
        size = _size_of(root.find(tag))
        if size is not None:
            spec[tag] = size
    target = root.find("target")
    if target is not None:
        if target.findtext("path"):
            spec["path"] = target.findtext("path").strip()
        fmt = target.find("format")
        if fmt is not None and fmt.get("type") is not None:
            spec["format"] = fmt.get("type")
        perms = _parse_permissions(target.find("permissions"))
        if perms:
            spec["permissions"] = perms
    store = root.find("backingStore")
    if store is not None and store.findtext("path"):
        backing: dict[str, Any] = {"path": store.findtext("path").strip()}
        fmt = store.find("format")
        if fmt is not None and fmt.get("type") is not None:
            backing["format"] = fmt.get("type")
        spec["backing"] = backing
    _preserve(spec, root, volume_config({k: v for k, v in spec.items() if k != "preserved"}))
    return spec


# ---------------------------------------------------------------------- secret XML
def secret_config(spec: dict[str, Any]) -> Any:
    """``<secret>`` from a spec (never with a value: libvirt keeps values apart from the XML)."""
    root = xmlutil.element("secret", {"ephemeral": spec.get("ephemeral", False), "private": spec.get("private", False)})
    if spec.get("uuid"):
        xmlutil.sub(root, "uuid", text=spec["uuid"])
    if spec.get("description") is not None:
        xmlutil.sub(root, "description", text=spec["description"])
    usage = spec.get("usage")
    if usage:
        el = xmlutil.sub(root, "usage", {"type": usage["type"]})
        key = SECRET_USAGE[usage["type"]]
        xmlutil.sub(el, key, text=usage[key])
    if spec.get("preserved"):
        model.overlay(root, model.from_text(spec["preserved"]))
    return root


def parse_secret(root: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"ephemeral": root.get("ephemeral") == "yes", "private": root.get("private") == "yes"}
    if root.findtext("uuid"):
        spec["uuid"] = root.findtext("uuid").strip()
    if root.find("description") is not None:
        spec["description"] = root.findtext("description") or ""
    usage = root.find("usage")
    if usage is not None and usage.get("type") in SECRET_USAGE:
        key = SECRET_USAGE[usage.get("type")]
        if usage.findtext(key) is not None:
            spec["usage"] = {"type": usage.get("type"), key: usage.findtext(key)}
    _preserve(spec, root, secret_config({k: v for k, v in spec.items() if k != "preserved"}))
    return spec


# ---------------------------------------------------------------------- what the collection records
class Markers:
    """Small JSON records under a root-only directory, keyed by a digest of their identity."""

    def __init__(self, base: str, kind: str) -> None:
        self.dir = os.path.join(base, kind)

    def _path(self, key: tuple[str, ...]) -> str:
        return os.path.join(self.dir, hashlib.sha256("\0".join(key).encode("utf-8")).hexdigest() + ".json")

    def get(self, key: tuple[str, ...]) -> dict[str, Any] | None:
        try:
            with open(self._path(key), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("key") == list(key) else None

    def put(self, key: tuple[str, ...], data: dict[str, Any]) -> bool:
        """Record ``data``; False when the directory cannot be written (not root)."""
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(dict(data, key=list(key)), f)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self._path(key))
            return True
        except OSError:
            return False

    def drop(self, key: tuple[str, ...]) -> None:
        try:
            os.unlink(self._path(key))
        except OSError:
            pass


def host_id(host: Any) -> str:
    """The hypervisor's host name: the same through every URI that reaches it and across daemon restarts
    (the capabilities' host UUID is not, where the machine has no SMBIOS UUID and libvirt makes one up)."""
    try:
        return host.get_hypervisor_hostname()
    except Exception:  # pylint: disable=broad-except
        return host.uri


def upload_key(host: Any, pool: Any, key: str) -> tuple[str, str, str]:
    """What an upload record is filed under: the host, the pool's UUID and the volume's key."""
    return host_id(host), host.call("reading the pool's UUID", lambda _c: pool.UUIDString()), key


def file_digest(path: str) -> tuple[int, str]:
    """(size, sha256) of a local file; holes are read as zeros by the kernel without touching a disk."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                break
            size += len(block)
            h.update(block)
    return size, h.hexdigest()


def file_format(path: str) -> str:
    """qcow2 when the file starts with qcow2's magic, else raw."""
    with open(path, "rb") as f:
        return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"


def qcow2_virtual_size(path: str) -> int | None:
    """The virtual size in a qcow2 header (big-endian u64 at offset 24)."""
    with open(path, "rb") as f:
        head = f.read(32)
    if head[:4] != QCOW2_MAGIC or len(head) < 32:
        return None
    return int.from_bytes(head[24:32], "big")


# ---------------------------------------------------------------------- streams (sparse-aware)
def _in_data(fd: int) -> tuple[bool, int]:
    """Whether the file offset is in data, and how long that data or hole section is (0 at the end)."""
    cur = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        data = os.lseek(fd, cur, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        end = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, cur, os.SEEK_SET)
        return False, end - cur
    if data > cur:
        os.lseek(fd, cur, os.SEEK_SET)
        return False, data - cur
    hole = os.lseek(fd, cur, os.SEEK_HOLE)
    os.lseek(fd, cur, os.SEEK_SET)
    return True, hole - cur


def _through_stream(conn: Any, fd: int, transfer: Callable[[Any], None]) -> None:
    """Run ``transfer`` over a new libvirt stream, then finish it; on any failure the stream is aborted.
    ``fd`` is closed either way."""
    try:
        stream = conn.newStream(0)
        try:
            transfer(stream)
            stream.finish()
        except BaseException:
            try:
                stream.abort()
            except Exception:  # pylint: disable=broad-except
                pass
            raise
    finally:
        os.close(fd)


def upload_file(conn: Any, vol: Any, src: str, sparse: bool) -> None:
    """Send ``src`` into ``vol`` through a libvirt stream; holes are skipped when ``sparse``."""
    fd = os.open(src, os.O_RDONLY)

    def transfer(stream: Any) -> None:
        if sparse:
            vol.upload(stream, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
            stream.sparseSendAll(lambda _s, n, f: os.read(f, n),
                                 lambda _s, f: list(_in_data(f)),
                                 lambda _s, n, f: os.lseek(f, n, os.SEEK_CUR) and 0,
                                 fd)
        else:
            vol.upload(stream, 0, 0, 0)
            stream.sendAll(lambda _s, n, f: os.read(f, n), fd)
    _through_stream(conn, fd, transfer)


def download_file(conn: Any, vol: Any, dest: str, sparse: bool) -> None:
    """Receive ``vol`` into the new file ``dest``; holes stay holes when ``sparse``."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def transfer(stream: Any) -> None:
        if sparse:
            vol.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
            stream.sparseRecvAll(lambda _s, data, f: os.write(f, data),
                                 lambda _s, n, f: os.lseek(f, n, os.SEEK_CUR) and 0,
                                 fd)
            os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_CUR))  # a trailing hole
        else:
            vol.download(stream, 0, 0, 0)
            stream.recvAll(lambda _s, data, f: os.write(f, data), fd)
    _through_stream(conn, fd, transfer)


# ---------------------------------------------------------------------- who uses a path
def domain_disk_users(host: Any) -> dict[str, list[str]]:
    """Path (or ``pool/volume`` for disks of type volume) -> names of the defined domains whose disks
    (or their backing chains) name it, from each domain's persistent and live XML."""
    def listing(conn: Any) -> list[Any]:
        return conn.listAllDomains(0)
    domains = host.call("listing domains", listing)
    users: dict[str, list[str]] = {}
    names = {d.UUIDString(): d.name() for d in domains}
    xml: dict[str, list[str | None]] = {u: [] for u in names}
    for flags in (libvirt.VIR_DOMAIN_XML_INACTIVE, 0):
        for uuid, text in host.xml_descs(domains, flags).items():
            xml[uuid].append(text)
    for uuid, texts in xml.items():
        for text in texts:
            if not text:
                continue
            for src in etree.fromstring(text.encode("utf-8")).iter("source"):
                parent = src.getparent()
                if parent is None or parent.tag not in ("disk", "backingStore"):
                    continue
                for path in _source_names(src):
                    if names[uuid] not in users.setdefault(path, []):
                        users[path].append(names[uuid])
    return users


def _source_names(src: Any) -> list[str]:
    """What a disk's ``<source>`` names: its file, device or directory, and ``pool/volume``."""
    found = [src.get(a) for a in ("file", "dev", "dir") if src.get(a)]
    if src.get("pool") and src.get("volume"):
        found.append("%s/%s" % (src.get("pool"), src.get("volume")))
    return found


def running_disk_holders(host: Any, names: set[str]) -> tuple[list[tuple[Any, str, str]], list[str]]:
    """Who holds one of ``names`` (a path or ``pool/volume``) open right now, from the live XML of the
    running domains: ``(domain, its name, the disk's target)`` for each disk whose image it is, and the
    names of the domains that have it deeper in a disk's backing chain."""
    def listing(conn: Any) -> list[Any]:
        return conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    domains = host.call("listing running domains", listing)
    by_uuid = {d.UUIDString(): d for d in domains}
    top: list[tuple[Any, str, str]] = []
    deeper: list[str] = []
    for uuid, text in host.xml_descs(domains, 0).items():
        if not text:
            continue
        dom = by_uuid[uuid]
        for disk in etree.fromstring(text.encode("utf-8")).iter("disk"):
            src, target = disk.find("source"), disk.find("target")
            if src is not None and names & set(_source_names(src)) and target is not None:
                top.append((dom, dom.name(), target.get("dev")))
            elif any(names & set(_source_names(b)) for b in disk.iterfind(".//backingStore/source")):
                deeper.append(dom.name())
    return top, deeper


# ---------------------------------------------------------------------- managers
def _xml(obj: Any, what: str, host: Any, flags: int = 0) -> str:
    return host.call(what, lambda _c: obj.XMLDesc(flags))


def _pool_xml(pool: Any, host: Any) -> str:
    """The pool's persistent definition (the live one where the driver has no inactive XML, as the test driver)."""
    try:
        return _xml(pool, "reading pool XML", host, libvirt.VIR_STORAGE_XML_INACTIVE)
    except OperationFailed:
        return _xml(pool, "reading pool XML", host)


class _Manager:
    """What the three managers share: a Host, a Plan and where the collection's records live."""

    def __init__(self, host: Any, check_mode: bool = False, state_dir: str = STATE_DIR) -> None:
        self.host = host
        self.check_mode = check_mode
        self.plan = Plan(host, check_mode)
        self.state_dir = state_dir
        self.differences: list[dict[str, Any]] = []

    def _differ(self, want: Any, have: Any, prefix: str = "") -> list[dict[str, Any]]:
        found = schema.differences(want, have, None, prefix)
        self.differences.extend(found)
        return found


class PoolManager(_Manager):
    """Converges one storage pool to a spec or XML and a state."""

    def _lookup(self, name: str) -> Any | None:
        try:
            return self.host.call("looking up storage pool '%s'" % name, lambda c: c.storagePoolLookupByName(name))
        except NotFound:
            return None

    def _desired(self, name: str, spec: dict[str, Any] | None, xml: str | None, current: dict[str, Any] | None
                 ) -> tuple[dict[str, Any] | None, Any | None]:
        """The checked spec and the XML to define (None: nothing asked of the definition)."""
        if xml is not None:
            root = xmlutil.parse(xml, "xml")
            if root.tag != "pool":
                raise InvalidSpec("xml", "expected a <pool> document, got <%s>" % root.tag)
            xmlutil.validate(root, "storagepool", "xml")
            parsed = parse_pool(root)
            if parsed["name"] != name:
                raise InvalidSpec("xml", "names the pool %r, not %r" % (parsed["name"], name))
            return POOL_SPEC.norm(parsed, ""), root
        if spec is None:
            return None, None
        spec = dict(spec, name=name)
        if spec.get("type") is None and current:
            spec["type"] = current["type"]
        want = POOL_SPEC.norm(spec, "")
        built = pool_config(dict(want, uuid=(current or {}).get("uuid")) if current else want)
        if current and current.get("preserved") and not want.get("preserved"):
            # what the model does not hold stays as it is, unless the spec says what it is to be
            model.overlay(built, model.from_text(current["preserved"]))
        xmlutil.validate(built, "storagepool", "pool %r" % name)
        return want, built

    def ensure(self, name: str, spec: dict[str, Any] | None = None, xml: str | None = None, state: str = "present",
               autostart: bool | None = None, build: bool | None = None, refresh: bool = False,
               delete_storage: bool | str = False, force: bool = False) -> dict[str, Any]:
        NAME.norm(name, "name")
        if state not in POOL_STATES:
            raise InvalidSpec("state", "%r is not one of %s" % (state, ", ".join(POOL_STATES)))
        if delete_storage not in (True, False, "if_empty"):
            raise InvalidSpec("delete_storage", "must be true, false or if_empty, got %r" % (delete_storage,))
        if delete_storage and state != "absent":
            raise InvalidSpec("delete_storage", "only with state=absent")
        pool = self._lookup(name)
        before = _pool_xml(pool, self.host) if pool else None
        current = parse_pool(xmlutil.parse(before)) if before else None
        if state == "absent":
            if spec is not None or xml is not None:
                pass  # the definition does not matter for removal
            return self._absent(name, pool, before, delete_storage, force)
        want, built = self._desired(name, spec, xml, current)
        after = before
        pending = False
        active = bool(pool is not None and self.host.call("reading pool state", lambda _c: pool.isActive()))
        if pool is None:
            if built is None:
                raise InvalidSpec("type", "the pool %r does not exist; give type (and source/target) or xml to define it"
                                  % name)
            text = xmlutil.to_string(built)
            pool = self.plan.act("define", lambda: self.host.call(
                "defining pool '%s'" % name,
                lambda c: c.storagePoolDefineXML(text, libvirt.VIR_STORAGE_POOL_DEFINE_VALIDATE)))
            after = text
            if build if build is not None else want["type"] in POOL_BUILD_DEFAULT:
                # a directory is only made; anything else (mkfs, vgcreate, a partition table) never over existing data
                flags = 0 if want["type"] in POOL_BUILD_DEFAULT else libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE
                self._undo_on_failure(pool, "build", lambda: self.host.call(
                    "building pool '%s'" % name, lambda _c: pool.build(flags)))
            if state == "active":
                self._undo_on_failure(pool, "start", lambda: self.host.call(
                    "starting pool '%s'" % name, lambda _c: pool.create(0)))
                active = True
        elif want is not None:
            if self._pool_differs(want, current):
                if xml is not None and built.find("uuid") is None and current.get("uuid"):
                    xmlutil.sub(built, "uuid", text=current["uuid"])
                text = xmlutil.to_string(built)
                self.plan.act("redefine", lambda: self.host.call(
                    "redefining pool '%s'" % name,
                    lambda c: c.storagePoolDefineXML(text, libvirt.VIR_STORAGE_POOL_DEFINE_VALIDATE)))
                after = text
                pending = active
        if state == "active" and not active:
            self.plan.act("start", lambda: self.host.call("starting pool '%s'" % name, lambda _c: pool.create(0)))
            active, pending = True, False
        elif state == "inactive" and active:
            self.plan.act("stop", lambda: self.host.call("stopping pool '%s'" % name, lambda _c: pool.destroy()))
            active, pending = False, False
        elif refresh and active:
            self.plan.act("refresh", lambda: self.host.call("refreshing pool '%s'" % name, lambda _c: pool.refresh(0)))
        if autostart is not None:
            now = bool(self.host.call("reading autostart", lambda _c: pool.autostart())) if before is not None else False
            if now != autostart:
                self.plan.act("autostart" if autostart else "no-autostart", lambda: self.host.call(
                    "setting autostart of pool '%s'" % name, lambda _c: pool.setAutostart(1 if autostart else 0)))
        if not self.check_mode and pool is not None:
            after = _pool_xml(pool, self.host)
        return self._result(name, pool, before, after, active, pending, autostart)

    def _pool_differs(self, want: dict[str, Any], current: dict[str, Any]) -> bool:
        """The spec's keys by the one comparison; what the model does not hold (``preserved``, from the
        user's XML or a spec read back), when the desired side has any, as XML the current one must contain."""
        differs = bool(self._differ({k: v for k, v in want.items() if k != "preserved"},
                                    {k: v for k, v in current.items() if k != "preserved"}))
        if not model.holds_residual(current.get("preserved"), want.get("preserved")):
            self.differences.append(difference("preserved", current.get("preserved"), want["preserved"]))
            differs = True
        return differs

    def _undo_on_failure(self, pool: Any, action: str, fn: Callable[[], Any]) -> None:
        """A pool this task defined whose build or first start fails is undefined again: nothing is left behind."""
        try:
            self.plan.act(action, fn)
        except Exception:
            if pool is not None:
                try:
                    self.host.call("undefining the pool again", lambda _c: pool.undefine())
                    self.plan.actions.remove("define")
                except Exception:  # pylint: disable=broad-except
                    pass
            raise

    def _result(self, name: str, pool: Any, before: str | None, after: str | None, active: bool, pending: bool,
                autostart: bool | None) -> dict[str, Any]:
        info: list[Any] = [None, None, None, None]
        auto = autostart
        if pool is not None:
            info = self.host.call("reading pool info", lambda _c: pool.info())
            if auto is None:
                auto = bool(self.host.call("reading autostart", lambda _c: pool.autostart()))
        running = active and info[0] == libvirt.VIR_STORAGE_POOL_RUNNING
        return {
            "name": name, "changed": self.plan.changed, "actions": list(self.plan.actions),
            "differences": self.differences, "pending_restart": pending,
            "state": "absent" if after is None else ("active" if active else "inactive"),
            "autostart": None if after is None else bool(auto),
            "capacity": info[1] if running else None, "allocation": info[2] if running else None,
            "available": info[3] if running else None,
            "before": before, "after": after,
        }

    def _absent(self, name: str, pool: Any, before: str | None, delete_storage: bool | str,
                force: bool) -> dict[str, Any]:
        """Stop and undefine; with ``delete_storage`` delete the volumes and the storage first, with ``if_empty``
        the storage only when the pool holds no volume (its contents are then kept, and so is the storage)."""
        if pool is None:
            return self._result(name, None, None, None, False, False, None)
        active = bool(self.host.call("reading pool state", lambda _c: pool.isActive()))
        extra: dict[str, Any] = {}
        if delete_storage:
            if not active:
                self.plan.act("start", lambda: self.host.call("starting pool '%s'" % name, lambda _c: pool.create(0)))
                active = True
            running = self.host.call("reading pool state", lambda _c: pool.isActive())
            if running:
                self.host.call("refreshing pool '%s'" % name, lambda _c: pool.refresh(0))
            vols = self.host.call("listing volumes of '%s'" % name, lambda _c: pool.listAllVolumes(0)) if running else []
            if delete_storage == "if_empty" and (vols or not running):
                # what is in it (or cannot be listed in check mode: a pool this task would start) stays
                extra["storage_kept"] = {
                    "volumes": sorted(v.name() for v in vols) if running else None,
                    "reason": "the pool holds volumes" if running else "the pool is not running: its volumes "
                                                                       "cannot be listed in check mode"}
                delete_storage, vols = False, []
            if not force:
                users = domain_disk_users(self.host)
                for vol in vols:
                    path = self.host.call("reading a volume path", lambda _c: vol.path())
                    who = users.get(path, []) + users.get("%s/%s" % (name, vol.name()), [])
                    if who:
                        raise InvalidSpec("delete_storage", "volume %s is a disk of domain %s; not deleting the pool's "
                                          "storage (force=true deletes it anyway)" % (path, ", ".join(who)))
            uploads = Markers(self.state_dir, "uploads")
            for vol in vols:
                vname = vol.name()

                def delete(v: Any = vol, n: str = vname) -> None:
                    key = self.host.call("reading the key of volume '%s'" % n, lambda _c: v.key())
                    self.host.call("deleting volume '%s'" % n, lambda _c: v.delete(0))
                    uploads.drop(upload_key(self.host, pool, key))
                self.plan.act("delete-volume %s" % vname, delete)
        if active:
            self.plan.act("stop", lambda: self.host.call("stopping pool '%s'" % name, lambda _c: pool.destroy()))
        if delete_storage:
            keep_if_refused = delete_storage == "if_empty"

            def delete_the_storage() -> None:
                try:
                    self.host.call("deleting the storage of pool '%s'" % name, lambda _c: pool.delete(0))
                except OperationFailed as exc:
                    if not keep_if_refused:
                        raise
                    # something that is no volume is there (a dangling link): it stays, and so does the storage
                    extra["storage_kept"] = {"volumes": [], "reason": str(exc)}
            self.plan.act("delete-storage", delete_the_storage)
        self.plan.act("undefine", lambda: self.host.call("undefining pool '%s'" % name, lambda _c: pool.undefine()))
        res = self._result(name, None, before, None, False, False, None)
        res.update(extra)
        return res


class VolumeManager(_Manager):
    """Converges one volume: create (empty, copy-on-write, clone, upload), resize, download, delete."""

    def _pool(self, name: str, path: str = "pool") -> Any:
        NAME.norm(name, path)
        try:
            pool = self.host.call("looking up pool '%s'" % name, lambda c: c.storagePoolLookupByName(name))
        except NotFound:
            raise InvalidSpec(path, "the storage pool %r does not exist" % name)
        if not self.host.call("reading pool state", lambda _c: pool.isActive()):
            raise InvalidSpec(path, "the storage pool %r is not running; start it first (storage_pool state=active)"
                              % name)
        return pool

    def _vol(self, pool: Any, name: str) -> Any | None:
        try:
            return self.host.call("looking up volume '%s'" % name, lambda _c: pool.storageVolLookupByName(name))
        except NotFound:
            return None

    def _spec(self, vol: Any) -> tuple[str, dict[str, Any]]:
        text = _xml(vol, "reading volume XML", self.host)
        return text, parse_volume(xmlutil.parse(text))

    def _backing(self, backing: Any, pool_name: str) -> dict[str, Any]:
        back = BACKING.norm(backing, "backing")
        if (back.get("path") is None) == (back.get("name") is None):
            raise InvalidSpec("backing", "give either pool and name of a volume, or path")
        if back.get("path") is not None:
            if back.get("pool") is not None:
                raise InvalidSpec("backing.pool", "only with backing.name")
            out = {"path": back["path"]}
            if back.get("format") is not None:
                out["format"] = back["format"]
            else:
                out["format"] = self._format_of_path(out["path"])
            capacity = self._capacity_of_path(out["path"], out["format"])
            if capacity is not None:
                out["capacity"] = capacity
            return out
        bpool = self._pool(back.get("pool") or pool_name, "backing.pool")
        bname = back["name"]
        bvol = self._vol(bpool, bname)
        if bvol is None:
            raise InvalidSpec("backing.name", "no volume %r in pool %r" % (bname, back.get("pool") or pool_name))
        _text, bspec = self._spec(bvol)
        out = {"path": bspec["path"], "format": back["format"] if back.get("format") is not None else bspec.get("format", "raw"),
               "capacity": bspec.get("capacity")}
        return out

    def _capacity_of_path(self, path: str, fmt: str) -> int | None:
        """The virtual size of the image at ``path``: libvirt's, where a pool holds it; else, where the
        URI names this machine, the image's own (a qcow2 header, or a raw file's length); None otherwise."""
        try:
            vol = self.host.call("looking up volume %s" % path, lambda c: c.storageVolLookupByPath(path))
            return int(self.host.call("reading volume %s" % path, lambda c: vol.info())[1])
        except (NotFound, OperationFailed):
            pass
        if not self.host.is_local():
            return None
        try:
            if fmt == "qcow2":
                return qcow2_virtual_size(path)
            return os.stat(path).st_size if fmt == "raw" else None
        except OSError:
            return None

    def _format_of_path(self, path: str) -> str:
        """The format of any volume libvirt knows at ``path``; raw when none."""
        try:
            vol = self.host.call("looking up volume %s" % path, lambda c: c.storageVolLookupByPath(path))
        except (NotFound, OperationFailed):
            raise InvalidSpec("backing.path", "no storage volume at %r; give backing.format for an image that "
                              "is not in a pool" % path)
        return self._spec(vol)[1].get("format", "raw")

    def ensure(self, pool: str, name: str, state: str = "present", capacity: Any = None, allocation: Any = None,
               fmt: str | None = None, permissions: dict[str, Any] | None = None, backing: dict[str, Any] | None = None,
               clone_from: dict[str, Any] | None = None, src: str | None = None, dest: str | None = None,
               allow_shrink: bool = False, wipe: bool = False, force: bool = False) -> dict[str, Any]:
        opts = VOLUME_OPTIONS.norm({"name": name, "state": state, "capacity": capacity, "allocation": allocation,
                                    "format": fmt, "permissions": permissions}, "")
        size, alloc, fmt = opts.get("capacity"), opts.get("allocation"), opts.get("format")
        perms = opts.get("permissions") or None
        given = [k for k, v in (("backing", backing), ("clone_from", clone_from), ("src", src)) if v is not None]
        if len(given) > 1:
            raise InvalidSpec(given[1], "cannot be combined with %s" % given[0])
        if src is not None and dest is not None:
            raise InvalidSpec("dest", "cannot be combined with src")
        if src is not None and not os.path.isfile(src):
            raise InvalidSpec("src", "%r is not a readable file here" % src)
        if dest is not None and (os.path.isdir(dest) or not os.path.isdir(os.path.dirname(os.path.abspath(dest)))):
            raise InvalidSpec("dest", "%r is not a file path in an existing directory here" % dest)
        ppool = self._pool(pool)
        vol = self._vol(ppool, name)
        before, have = self._spec(vol) if vol is not None else (None, None)
        if state == "absent":
            if dest is not None or src is not None:
                raise InvalidSpec("src" if src else "dest", "not with state=absent")
            return self._absent(ppool, pool, name, vol, before, have, wipe, force)
        if wipe:
            raise InvalidSpec("wipe", "only with state=absent")
        res: dict[str, Any] = {}
        if vol is None:
            vol, have = self._create(ppool, pool, name, size, alloc, fmt, perms, backing, clone_from, src, res)
        else:
            self._existing(have, size, fmt, backing, clone_from, pool)
            if src is not None:
                vol, have = self._reupload(ppool, pool, name, vol, have, src, fmt, size, res, force)
        if size is not None and have.get("capacity") is not None and size != have["capacity"]:
            if size < have["capacity"] and not allow_shrink:
                raise InvalidSpec("capacity", "%d bytes is less than the volume's %d; shrinking loses data, "
                                  "set allow_shrink=true to shrink" % (size, have["capacity"]))
            self._resize(vol, pool, name, have, size, res)
            have = dict(have, capacity=size)
        if dest is not None:
            self._download(vol, have, dest, res)
        if self.check_mode:
            after = before if not self.plan.changed else xmlutil.to_string(volume_config(have))
        else:
            after, have = self._spec(vol)
        return self._result(pool, name, have, before, after, res)

    def _resize(self, vol: Any, pool: str, name: str, have: dict[str, Any], size: int, res: dict[str, Any]) -> None:
        """Grow (or, allowed, shrink) the volume. A running domain holds its image open, so the volume API
        cannot resize it then: a grow goes through that domain (a block resize QEMU makes, which the guest
        sees at once) and a shrink is refused."""
        self._differ({"capacity": size}, have)
        names = {n for n in (have.get("path"), "%s/%s" % (pool, name)) if n}
        holders, deeper = running_disk_holders(self.host, names)
        if deeper:
            raise InvalidSpec("capacity", "%s is in the backing chain of a disk of running domain %s; a backing "
                              "image cannot be resized under it" % (have.get("path") or name, ", ".join(deeper)))
        if not holders:
            flags = libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK if size < have["capacity"] else 0
            self.plan.act("resize", lambda: self.host.call(
                "resizing volume '%s'" % name, lambda _c: vol.resize(size, flags)))
            return
        who = ", ".join("%s (%s)" % (n, t) for _d, n, t in holders)
        if size < have["capacity"]:
            raise InvalidSpec("capacity", "%s is a disk of running domain %s; a running disk is not shrunk, shut "
                              "the domain off first" % (have.get("path") or name, who))
        if len(holders) > 1:
            raise InvalidSpec("capacity", "%s is a disk of more than one running domain (%s); it is not resized "
                              "under them" % (have.get("path") or name, who))
        dom, dname, target = holders[0]
        res["resized_through"] = {"domain": dname, "target": target}
        self.plan.act("resize", lambda: self.host.call(
            "resizing disk %s of domain '%s'" % (target, dname),
            lambda _c: dom.blockResize(target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)))

    def _result(self, pool: str, name: str, have: dict[str, Any] | None, before: str | None, after: str | None,
                extra: dict[str, Any]) -> dict[str, Any]:
        have = have or {}
        out = {
            "pool": pool, "name": name, "changed": self.plan.changed, "actions": list(self.plan.actions),
            "differences": self.differences,
            "path": have.get("path"), "key": have.get("key"), "capacity": have.get("capacity"),
            "allocation": have.get("allocation"), "format": have.get("format"),
            "backing": have.get("backing"), "xml": after, "before": before, "after": after,
        }
        out.update(extra)
        return out

    def _existing(self, have: dict[str, Any], size: int | None, fmt: str | None, backing: Any, clone_from: Any,
                  pool: str) -> None:
        """What an existing volume cannot be changed into: an error naming the field."""
        if fmt is not None and have.get("format") not in (None, fmt):
            raise InvalidSpec("format", "the volume is %s, not %s; a volume is not converted (delete it, or clone it "
                              "into a new volume with that format)" % (have.get("format"), fmt))
        if backing is not None:
            want = self._backing(backing, pool)
            now = (have.get("backing") or {}).get("path")
            if now != want["path"]:
                raise InvalidSpec("backing", "the volume's backing store is %s, not %s; it is not rebased"
                                  % (now or "none", want["path"]))
        if clone_from is not None:
            self._clone_source(clone_from, pool)  # the source must still exist: a clear error when it does not

    def _clone_source(self, clone_from: Any, pool: str) -> tuple[Any, dict[str, Any]]:
        spec = CLONE_FROM.norm(clone_from, "clone_from")
        spool = self._pool(spec.get("pool") or pool, "clone_from.pool")
        svol = self._vol(spool, spec["name"])
        if svol is None:
            raise InvalidSpec("clone_from.name", "no volume %r in pool %r" % (spec["name"], spec.get("pool") or pool))
        return svol, self._spec(svol)[1]

    def _create(self, ppool: Any, pool: str, name: str, size: int | None, alloc: int | None, fmt: str | None,
                perms: dict[str, Any] | None, backing: Any, clone_from: Any, src: str | None,
                res: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        spec: dict[str, Any] = {"name": name}
        if perms:
            spec["permissions"] = perms
        source = None
        if backing is not None:
            back = self._backing(backing, pool)
            base_size = back.pop("capacity", None)
            if size is not None and base_size is not None and size < base_size:
                raise InvalidSpec("capacity", "%d bytes is less than the backing volume's %d" % (size, base_size))
            spec.update(format=fmt or "qcow2", backing=back, capacity=max(size or 0, base_size or 0) or size)
            if spec["capacity"] is None:
                raise InvalidSpec("capacity", "required: the backing image's size is not known (give capacity)")
            action = "create (backing %s)" % back["path"]
        elif clone_from is not None:
            source, sspec = self._clone_source(clone_from, pool)
            if size is not None and size < (sspec.get("capacity") or 0):
                raise InvalidSpec("capacity", "%d bytes is less than the source volume's %d; a clone does not shrink"
                                  % (size, sspec["capacity"]))
            spec.update(format=fmt or sspec.get("format"), capacity=max(size or 0, sspec.get("capacity") or 0) or None)
            action = "clone %s" % sspec.get("path")
        elif src is not None:
            detected = file_format(src)
            if fmt is not None and fmt != detected:
                raise InvalidSpec("format", "%s is a %s file, not %s" % (src, detected, fmt))
            file_size = os.path.getsize(src)
            image_size = qcow2_virtual_size(src) if detected == "qcow2" else file_size
            if size is not None and size < (image_size or 0):
                raise InvalidSpec("capacity", "%d bytes is less than the image's %d in %s" % (size, image_size, src))
            spec.update(format="raw", capacity=file_size, allocation=0)
            action = "create"
        else:
            if size is None:
                raise InvalidSpec("capacity", "required to create a volume (or give backing, clone_from or src)")
            spec.update(format=fmt or "raw", capacity=size)
            action = "create"
        if alloc is not None and src is None:
            spec["allocation"] = alloc
        ptype = xmlutil.parse(_xml(ppool, "reading pool XML", self.host)).get("type")
        if ptype in ("logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "rbd") and spec.get("format") == "raw":
            spec.pop("format")  # these pools have no file formats (logical: none; disk: partition types)
        built = volume_config(spec)
        xmlutil.validate(built, "storagevol", "volume %r" % name)
        text = xmlutil.to_string(built)
        if source is not None:
            vol = self.plan.act(action, lambda: self.host.call(
                "cloning volume into '%s'" % name, lambda _c: ppool.createXMLFrom(text, source, 0)))
        else:
            vol = self.plan.act(action, lambda: self.host.call(
                "creating volume '%s'" % name, lambda _c: ppool.createXML(text, 0)))
        self.differences.append(difference("volume", None, name))
        if src is not None:
            spec = self._upload(ppool, vol, spec, src, res)
            spec.pop("allocation", None)
        if self.check_mode:
            predicted = dict(spec)
            predicted.setdefault("path", None)
            return True, predicted
        return vol, self._spec(vol)[1]

    def _upload(self, ppool: Any, vol: Any, spec: dict[str, Any], src: str, res: dict[str, Any]) -> dict[str, Any]:
        size, digest = file_digest(src)

        def send() -> bool:
            _text, now = self._spec(vol)
            sparse = (now.get("type") or "file") == "file"
            self.host.call("uploading %s into volume '%s'" % (src, spec["name"]),
                           lambda c: upload_file(c, vol, src, sparse))
            self.host.call("refreshing the pool", lambda _c: ppool.refresh(0))
            _text, now = self._spec(vol)
            return Markers(self.state_dir, "uploads").put(
                upload_key(self.host, ppool, now.get("key") or now.get("path") or ""),
                {"size": size, "sha256": digest, "source": os.path.abspath(src)})
        recorded = self.plan.act("upload %s" % src, send)
        res["upload_recorded"] = bool(recorded) if not self.check_mode else os.access(self.state_dir, os.W_OK) or \
            os.access(os.path.dirname(self.state_dir), os.W_OK)
        fmt = file_format(src)
        out = dict(spec, format=fmt)
        if fmt == "qcow2":
            out["capacity"] = qcow2_virtual_size(src)
        return out

    def _reupload(self, ppool: Any, pool: str, name: str, vol: Any, have: dict[str, Any], src: str, fmt: str | None,
                  size: int | None, res: dict[str, Any], force: bool) -> tuple[Any, dict[str, Any]]:
        """An existing volume filled from ``src``: nothing to do when the recorded upload is the same file."""
        detected = file_format(src)
        if fmt is not None and fmt != detected:
            raise InvalidSpec("format", "%s is a %s file, not %s" % (src, detected, fmt))
        key = upload_key(self.host, ppool, have.get("key") or have.get("path") or "")
        marker = Markers(self.state_dir, "uploads").get(key)
        file_size, digest = file_digest(src)
        if marker and marker.get("size") == file_size and marker.get("sha256") == digest:
            res["upload_recorded"] = True
            return vol, have
        users = domain_disk_users(self.host)
        who = users.get(have.get("path") or "", []) + users.get("%s/%s" % (pool, name), [])
        if who and not force:
            raise InvalidSpec("src", "differs from what was uploaded into %s, which is a disk of domain %s; "
                              "force=true uploads over it" % (have.get("path"), ", ".join(who)))
        self.differences.append(difference("src", marker.get("sha256") if marker else None, digest))
        # a sparse upload leaves the old data in the new file's holes: the volume is made again, empty
        self.plan.act("delete (re-upload)", lambda: self.host.call("deleting volume '%s'" % name,
                                                                   lambda _c: vol.delete(0)))
        keep = {k: have[k] for k in ("permissions",) if have.get(k)}
        spec = dict(keep, name=name, format="raw", capacity=file_size, allocation=0)
        text = xmlutil.to_string(volume_config(spec))
        new = self.plan.act("create", lambda: self.host.call(
            "creating volume '%s'" % name, lambda _c: ppool.createXML(text, 0)))
        spec = self._upload(ppool, new, spec, src, res)
        if self.check_mode:
            return vol, dict(have, format=spec["format"], capacity=spec["capacity"])
        return new, self._spec(new)[1]

    def _download(self, vol: Any, have: dict[str, Any], dest: str, res: dict[str, Any]) -> None:
        """Download into a temporary file beside ``dest``; replace ``dest`` only when the content differs."""
        if vol is True:  # created in check mode: it would be downloaded
            self.plan.act("download %s" % dest, lambda: None)
            return
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dest)), prefix=".%s." % os.path.basename(dest))
        os.close(fd)
        try:
            sparse = (have.get("type") or "file") == "file"
            self.host.call("downloading volume '%s'" % have.get("name"), lambda c: download_file(c, vol, tmp, sparse))
            new = file_digest(tmp)
            old = file_digest(dest) if os.path.isfile(dest) else None
            if new != old:
                self.differences.append(difference("dest", old[1] if old else None, new[1]))
                if os.path.exists(dest):
                    os.chmod(tmp, os.stat(dest).st_mode & 0o7777)
                self.plan.act("download %s" % dest, lambda: os.replace(tmp, dest))
            res["dest_sha256"] = new[1]
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _absent(self, ppool: Any, pool: str, name: str, vol: Any, before: str | None, have: dict[str, Any] | None,
                wipe: bool, force: bool) -> dict[str, Any]:
        if vol is None:
            return self._result(pool, name, None, None, None, {})
        if not force:
            users = domain_disk_users(self.host)
            who = users.get(have.get("path") or "", []) + users.get("%s/%s" % (pool, name), [])
            if who:
                raise InvalidSpec("force", "volume %s is a disk of domain %s; not deleting it (force=true deletes it "
                                  "anyway)" % (have.get("path"), ", ".join(who)))
            backed = self._backed_by(have.get("path"))
            if backed:
                raise InvalidSpec("force", "volume %s is the backing store of %s; not deleting it (force=true deletes "
                                  "it anyway)" % (have.get("path"), ", ".join(backed)))
        self.differences.append(difference("volume", name, None))
        if wipe:
            self.plan.act("wipe", lambda: self.host.call("wiping volume '%s'" % name, lambda _c: vol.wipe(0)))
        self.plan.act("delete", lambda: self.host.call("deleting volume '%s'" % name, lambda _c: vol.delete(0)))
        if not self.check_mode:
            Markers(self.state_dir, "uploads").drop(upload_key(self.host, ppool, have.get("key") or have.get("path") or ""))
        return self._result(pool, name, None, before, None, {})

    def _backed_by(self, path: str | None) -> list[str]:
        """Volumes in running pools whose backing store is ``path``."""
        if not path:
            return []
        out = []
        pools = self.host.call("listing pools", lambda c: c.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE))
        for p in pools:
            for v in self.host.call("listing volumes", lambda _c, p=p: p.listAllVolumes(0)):
                try:
                    spec = parse_volume(xmlutil.parse(_xml(v, "reading volume XML", self.host)))
                except NotFound:
                    continue
                if (spec.get("backing") or {}).get("path") == path:
                    out.append(spec.get("path") or spec["name"])
        return out


class SecretManager(_Manager):
    """Converges one secret's definition and value; the value never leaves this class."""

    def _lookup(self, uuid: str | None, usage: dict[str, str] | None) -> Any | None:
        try:
            if uuid is not None:
                return self.host.call("looking up secret %s" % uuid, lambda c: c.secretLookupByUUIDString(uuid))
            utype = getattr(libvirt, "VIR_SECRET_USAGE_TYPE_%s" % usage["type"].upper())
            ident = usage[SECRET_USAGE[usage["type"]]]
            return self.host.call("looking up secret for %s %s" % (usage["type"], ident),
                                  lambda c: c.secretLookupByUsage(utype, ident))
        except NotFound:
            return None

    @staticmethod
    def _verifier(value: bytes, salt: bytes) -> str:
        return hashlib.scrypt(value, salt=salt, n=2 ** 14, r=8, p=1, dklen=32).hex()

    def ensure(self, usage: dict[str, Any] | None = None, uuid: str | None = None, description: str | None = None,
               ephemeral: bool | None = None, private: bool | None = None, value: str | None = None,
               value_encoding: str = "plain", update_value: str = "always", state: str = "present") -> dict[str, Any]:
        use = USAGE.norm(usage, "usage") if usage is not None else None
        uid = Uuid().norm(uuid, "uuid") if uuid is not None else None
        if use is None and uid is None:
            raise InvalidSpec("usage", "give usage or uuid")
        if update_value not in ("always", "on_create"):
            raise InvalidSpec("update_value", "%r is not one of always, on_create" % update_value)
        raw = None
        if value is not None:
            if value_encoding == "base64":
                try:
                    raw = base64.b64decode(value, validate=True)
                except (ValueError, TypeError):
                    raise InvalidSpec("value", "is not valid base64 (value_encoding=base64)")
            elif value_encoding == "plain":
                raw = value.encode("utf-8")
            else:
                raise InvalidSpec("value_encoding", "%r is not one of plain, base64" % value_encoding)
        if description is not None:
            description = xmlutil.check_text(description, "description", multiline=True)
        sec = self._lookup(uid, use)
        before = _xml(sec, "reading secret", self.host) if sec is not None else None
        have = parse_secret(xmlutil.parse(before)) if before else None
        markers = Markers(self.state_dir, "secrets")
        if state == "absent":
            if sec is not None:
                self.differences.append(difference("secret", have.get("uuid"), None))
                self.plan.act("undefine", lambda: self.host.call("undefining secret", lambda _c: sec.undefine()))
                if not self.check_mode:
                    markers.drop((host_id(self.host), have.get("uuid", "")))
            return self._result(None, before, None)
        want: dict[str, Any] = {"uuid": uid, "usage": use, "description": description, "ephemeral": ephemeral,
                                "private": private}
        created = False
        if sec is None:
            if use is None:
                raise InvalidSpec("usage", "required to define a secret (no secret has uuid %s)" % uid)
            spec = {k: v for k, v in want.items() if v is not None}
            built = secret_config(spec)
            xmlutil.validate(built, "secret", "secret")
            text = xmlutil.to_string(built)
            sec = self.plan.act("define", lambda: self.host.call("defining secret", lambda c: c.secretDefineXML(text, 0)))
            self.differences.append(difference("secret", None, use))
            created = True
            after = text
            have = parse_secret(built)
        else:
            for field in ("ephemeral", "private"):
                if want[field] is not None and want[field] != have.get(field):
                    raise InvalidSpec(field, "the secret has %s=%s; libvirt does not change it on an existing secret "
                                      "(state=absent first)" % (field, have.get(field)))
            if self._differ({k: v for k, v in want.items() if k in ("usage", "description")}, have):
                spec = dict({k: v for k, v in have.items() if k != "preserved"},
                            **{k: v for k, v in want.items() if v is not None})
                built = secret_config(dict(spec, preserved=have.get("preserved")))
                xmlutil.validate(built, "secret", "secret")
                text = xmlutil.to_string(built)
                self.plan.act("redefine", lambda: self.host.call("redefining secret",
                                                                 lambda c: c.secretDefineXML(text, 0)))
                after = text
            else:
                after = before
        if raw is not None:
            self._value(sec, have, raw, created, update_value, markers)
        if not self.check_mode and sec is not None:
            after = _xml(sec, "reading secret", self.host)
            have = parse_secret(xmlutil.parse(after))
        return self._result(have, before, after)

    def _value(self, sec: Any, have: dict[str, Any], raw: bytes, created: bool, update_value: str,
               markers: Markers) -> None:
        """Set the value when it is to change; whether it differs is decided without showing it."""
        def key() -> tuple[str, str]:
            return host_id(self.host), have.get("uuid") or self.host.call("reading the secret's UUID",
                                                                          lambda _c: sec.UUIDString())
        if not created:
            if have.get("private"):
                record = markers.get(key())
                if record is not None:
                    same = hmac.compare_digest(record.get("hash", ""), self._verifier(raw, bytes.fromhex(record["salt"])))
                else:
                    same = False
                if update_value == "on_create":
                    return  # a private value: whoever set it keeps it
            else:
                try:
                    current = self.host.call("reading the secret's value", lambda _c: sec.value(0))
                except NotFound:
                    current = None  # no value yet
                if update_value == "on_create" and current is not None:
                    return
                same = current is not None and hmac.compare_digest(bytes(current), raw)
            if same:
                return
            self.differences.append(difference("value", xmlutil.REDACTED, xmlutil.REDACTED))

        def set_value() -> None:
            self.host.call("setting the secret's value", lambda _c: sec.setValue(raw, 0))
            if have.get("private"):
                salt = os.urandom(16)
                markers.put(key(), {"salt": salt.hex(), "hash": self._verifier(raw, salt)})
            else:
                markers.drop(key())
        self.plan.act("set-value", set_value)

    def _result(self, have: dict[str, Any] | None, before: str | None, after: str | None) -> dict[str, Any]:
        have = have or {}
        return {"changed": self.plan.changed, "actions": list(self.plan.actions), "differences": self.differences,
                "uuid": have.get("uuid") if after else None, "usage": have.get("usage") if after else None,
                "before": before, "after": after}


__all__ = ["PoolManager", "VolumeManager", "SecretManager", "pool_config", "parse_pool", "POOL_SPEC",
           "VOLUME_OPTIONS", "USAGE", "volume_config", "parse_volume", "secret_config", "parse_secret",
           "domain_disk_users", "upload_file", "download_file", "Markers", "STATE_DIR"]
