# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's exceptions, and the one place libvirt errors become them."""

from __future__ import annotations

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import libvirt


class HypervisorError(Exception):
    """Base of every error the collection raises; ``str()`` is one line for a person."""

    def __init__(self, msg: str, uri: str | None = None, code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.uri = uri
        self.code = code


class ConnectionFailed(HypervisorError):
    """libvirt could not be reached at the URI (daemon down, unknown driver, auth)."""


class NotFound(HypervisorError):
    """A named object (domain, network, nwfilter, device) does not exist."""


class InvalidSpec(HypervisorError):
    """User input is wrong; ``path`` names the field (``disks[1].bus``)."""

    def __init__(self, path: str, msg: str) -> None:
        super().__init__("%s: %s" % (path, msg) if path else msg)
        self.path = path


class OperationFailed(HypervisorError):
    """libvirt refused or failed an operation on an object that exists."""


class Timeout(HypervisorError):
    """A wait (for a lifecycle event, a shutdown) ran out of time."""


_NOT_FOUND_CODES = (
    "VIR_ERR_NO_DOMAIN",
    "VIR_ERR_NO_NETWORK",
    "VIR_ERR_NO_NWFILTER",
    "VIR_ERR_NO_NWFILTER_BINDING",
    "VIR_ERR_NO_STORAGE_POOL",
    "VIR_ERR_NO_STORAGE_VOL",
    "VIR_ERR_NO_SECRET",
    "VIR_ERR_NO_DOMAIN_SNAPSHOT",
    "VIR_ERR_DEVICE_MISSING",
)


def _codes(names: tuple[str, ...]) -> frozenset[int]:
    if libvirt is None:
        return frozenset()
    return frozenset(getattr(libvirt, n) for n in names if hasattr(libvirt, n))


def is_connection_error(exc: BaseException) -> bool:
    """True when a libvirt error says the connection itself is unusable."""
    if libvirt is None or not isinstance(exc, libvirt.libvirtError):
        return False
    code = exc.get_error_code()
    if code in (getattr(libvirt, "VIR_ERR_NO_CONNECT", -1), getattr(libvirt, "VIR_ERR_INVALID_CONN", -1)):
        return True
    # a system/RPC error raised from the remote or RPC layer is a dropped socket
    return code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_INTERNAL_ERROR) and \
        exc.get_error_domain() in (libvirt.VIR_FROM_REMOTE, libvirt.VIR_FROM_RPC)


def translate(exc: BaseException, what: str, uri: str | None = None) -> HypervisorError:
    """Turn a libvirt error into the collection's exception, keeping libvirt's words.

    ``what`` says what was being done ("defining domain 'web1'"), so the message
    reads: "defining domain 'web1' on qemu:///system failed: <libvirt's text>".
    """
    if isinstance(exc, HypervisorError):
        return exc
    where = " on %s" % uri if uri else ""
    if libvirt is not None and isinstance(exc, libvirt.libvirtError):
        code = exc.get_error_code()
        text = (exc.get_error_message() or str(exc)).strip()
        msg = "%s%s failed: %s" % (what, where, text)
        if code in _codes(_NOT_FOUND_CODES):
            return NotFound(msg, uri=uri, code=code)
        if is_connection_error(exc):
            return ConnectionFailed(msg, uri=uri, code=code)
        return OperationFailed(msg, uri=uri, code=code)
    return OperationFailed("%s%s failed: %s" % (what, where, exc), uri=uri)
