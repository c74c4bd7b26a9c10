# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host: one libvirt connection and the state of the host behind it.

This is the blueprint's ``Host`` class. It owns the connection (lazy connect,
close callback, reconnect), the event threads, version checks, domain listing
and host metrics. It imports nothing from Ansible and reads no module
parameters, so firewall, VIF and guest code (and any Python program) can be
handed a ``Host`` instead of a callback.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils import kvmprobe
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    ConnectionFailed,
    HypervisorError,
    NotFound,
    OperationFailed,
    Timeout,
    is_connection_error,
    translate,
)

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest import Guest

# virDomainState -> name used in facts, module results and wait_for_lifecycle. It lives here,
# not in guest.py, so that importing Host does not import guest.py and its XML construction:
# fact gathering never needs it, and its import time is paid on every host_facts run.
STATE_NAMES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
               6: "crashed", 7: "pmsuspended"}


def _guest_class() -> Any:
    """guest.Guest, imported on first use (see STATE_NAMES)."""
    from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest import Guest
    return Guest


DEFAULT_URI = "qemu:///system"
# A refused socket (libvirtd restarting) is tried this often, this many seconds apart.
CONNECT_ATTEMPTS = 4
CONNECT_RETRY_DELAY = 0.3

# Lifecycle event type -> the domain state it leaves the domain in (None: unchanged).
_EVENT_TO_STATE = {
    0: None,            # DEFINED
    1: None,            # UNDEFINED (handled as "gone")
    2: "running",       # STARTED
    3: "paused",        # SUSPENDED
    4: "running",       # RESUMED
    5: "shutoff",       # STOPPED
    6: None,            # SHUTDOWN (guest finished shutting down; STOPPED follows)
    7: "pmsuspended",   # PMSUSPENDED
    8: "crashed",       # CRASHED
}
EVENT_NAMES = ("defined", "undefined", "started", "suspended", "resumed",
               "stopped", "shutdown", "pmsuspended", "crashed")

# The default event loop is process-wide: registered once, run by one thread.
_event_loop_lock = threading.Lock()
_event_loop_thread: threading.Thread | None = None


class LifecycleEvent:
    """A domain lifecycle event, as queued by the native thread for the dispatch thread."""

    __slots__ = ("uuid", "name", "event", "detail", "timestamp")

    def __init__(self, uuid: str, name: str, event: int, detail: int) -> None:
        self.uuid = uuid
        self.name = name
        self.event = event
        self.detail = detail
        self.timestamp = time.monotonic()

    @property
    def event_name(self) -> str:
        return EVENT_NAMES[self.event] if 0 <= self.event < len(EVENT_NAMES) else str(self.event)

    @property
    def state(self) -> str | None:
        """The domain state this event leaves behind (None if it does not change it)."""
        return _EVENT_TO_STATE.get(self.event)

    def __repr__(self) -> str:
        return "<LifecycleEvent %s %s detail=%d>" % (self.name, self.event_name, self.detail)


class AgentEvent:
    """The guest agent's channel in a domain connected or disconnected (libvirt's agent lifecycle event)."""

    __slots__ = ("uuid", "name", "connected", "reason", "timestamp")

    def __init__(self, uuid: str, name: str, state: int, reason: int) -> None:
        self.uuid = uuid
        self.name = name
        self.connected = state == 1  # VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED
        self.reason = reason
        self.timestamp = time.monotonic()

    def __repr__(self) -> str:
        return "<AgentEvent %s %s>" % (self.name, "connected" if self.connected else "disconnected")


# The guest agent's virtio-serial channel (libvirt reports its state in the live XML).
AGENT_CHANNEL = "org.qemu.guest_agent.0"

# virDomainInterfaceAddresses sources, by the names modules use.
ADDRESS_SOURCES = ("lease", "agent", "arp")


class ConnectionEvent:
    """The connection went down (``up=False``) or came (back) up."""

    __slots__ = ("up", "reason")

    def __init__(self, up: bool, reason: str) -> None:
        self.up = up
        self.reason = reason


def version_to_int(version: Iterable[int] | int | str | None) -> int | None:
    """(9, 0, 0), "9.0.0" or 9000000 -> libvirt's integer form."""
    if version is None:
        return None
    if isinstance(version, int):
        return version
    if isinstance(version, str):
        version = [int(p) for p in version.split(".")]
    parts = list(version) + [0, 0, 0]
    return parts[0] * 1000000 + parts[1] * 1000 + parts[2]


def version_to_string(version: int) -> str:
    """9000000 -> "9.0.0"."""
    return "%d.%d.%d" % (version // 1000000, (version // 1000) % 1000, version % 1000)


class Host:
    """One libvirt connection, opened lazily and reopened when it drops."""

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        read_only: bool = False,
        lifecycle_event_handler: Callable[[LifecycleEvent], None] | None = None,
        conn_event_handler: Callable[[ConnectionEvent], None] | None = None,
    ) -> None:
        if libvirt is None:
            raise HypervisorError("the libvirt Python bindings (libvirt-python) are not installed")
        self._uri = uri
        self._read_only = read_only
        self._lifecycle_event_handler = lifecycle_event_handler
        self._conn_event_handler = conn_event_handler
        self._wrapped_conn: Any = None
        self._dead_conn: Any = None
        self._wrapped_conn_lock = threading.Lock()
        self._event_queue: queue.Queue | None = None
        self._dispatch_thread_obj: threading.Thread | None = None
        self._waiters: list[tuple[str, threading.Condition, list[LifecycleEvent]]] = []
        self._waiters_lock = threading.Lock()
        self._initialized = False
        self._caps: Any = None
        self._domcaps: dict[tuple, Any] = {}
        self._kvm_usable: dict[str, bool | None] = {}
        self._node_info: list | None = None
        self._stats_snapshot: list | None = None
        self._in_snapshot = False
        # libvirt prints every error to stderr by default; errors are raised anyway.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

    # ------------------------------------------------------------------ connection
    @property
    def uri(self) -> str:
        return self._uri

    @property
    def read_only(self) -> bool:
        return self._read_only

    @staticmethod
    def _connect(uri: str, read_only: bool) -> Any:
        """Open a new virConnect; no callbacks, no retries."""
        if read_only:
            return libvirt.openReadOnly(uri)
        return libvirt.open(uri)

    def _get_new_connection(self) -> Any:
        """Connect and, when events run, register the lifecycle and close callbacks.

        A socket that refuses us is retried a few times over about a second
        (a daemon being restarted); any other error fails at once.
        """
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                conn = self._connect(self._uri, self._read_only)
                break
            except libvirt.libvirtError as exc:
                if attempt + 1 < CONNECT_ATTEMPTS and is_connection_error(exc):
                    time.sleep(CONNECT_RETRY_DELAY)
                    continue
                text = (exc.get_error_message() or str(exc)).strip()
                raise ConnectionFailed(
                    "cannot connect to libvirt at %s: %s (is libvirtd running and the URI right?)"
                    % (self._uri, text), uri=self._uri, code=exc.get_error_code())
        if conn is None:  # very old bindings returned None instead of raising
            raise ConnectionFailed("cannot connect to libvirt at %s" % self._uri, uri=self._uri)
        if self._initialized:
            try:
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._event_lifecycle_callback, None)
            except libvirt.libvirtError:
                pass  # the driver has no events (e.g. some remote setups): waits fall back to polling
            try:
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._event_agent_callback, None)
            except libvirt.libvirtError:
                pass  # no agent events from this driver: wait_for_agent polls the live XML
            try:
                conn.registerCloseCallback(self._close_callback, None)
            except libvirt.libvirtError:
                pass  # the test driver has no close callback: _test_connection covers it
        self._queue_event(ConnectionEvent(True, "connected to %s" % self._uri))
        return conn

    def _close_callback(self, conn: Any, reason: int, _opaque: Any) -> None:
        """Runs on the native event thread: mark the connection dead, never block."""
        self._dead_conn = conn
        self._queue_event(ConnectionEvent(False, "connection to %s closed (reason %d)" % (self._uri, reason)))

    @staticmethod
    def _test_connection(conn: Any) -> bool:
        """One cheap round trip: does this connection still answer?"""
        try:
            conn.getLibVersion()
            return True
        except libvirt.libvirtError as exc:
            if is_connection_error(exc):
                return False
            raise

    def _usable(self, conn: Any) -> bool:
        if conn is self._dead_conn:
            return False
        if self._initialized:
            # the close callback reports drops; isAlive() is local, no round trip
            try:
                return conn.isAlive() == 1
            except libvirt.libvirtError:
                return False
        return self._test_connection(conn)

    def get_connection(self) -> Any:
        """The live virConnect, opened on first use and reopened after a drop."""
        with self._wrapped_conn_lock:
            conn = self._wrapped_conn
            if conn is not None and not self._usable(conn):
                self._wrapped_conn = None
            if self._wrapped_conn is None:
                self._wrapped_conn = self._get_new_connection()
            return self._wrapped_conn

    def _drop_connection(self, conn: Any) -> None:
        with self._wrapped_conn_lock:
            if self._wrapped_conn is conn:
                self._wrapped_conn = None

    def call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(conn)``; reconnect and retry once if the connection dropped.

        Every libvirt error is translated here, so callers only see the
        collection's exceptions. ``what`` names the action for the message.
        """
        for attempt in (0, 1):
            conn = self.get_connection()
            try:
                return fn(conn)
            except libvirt.libvirtError as exc:
                if attempt == 0 and is_connection_error(exc):
                    self._drop_connection(conn)
                    continue
                raise translate(exc, what, self._uri)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection (events threads, being process-wide, keep running)."""
        with self._wrapped_conn_lock:
            conn, self._wrapped_conn = self._wrapped_conn, None
        if conn is not None:
            try:
                if self._initialized:
                    conn.unregisterCloseCallback()
                conn.close()
            except libvirt.libvirtError:
                pass

    def __enter__(self) -> "Host":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ versions
    def _conn_has_min_version(self, conn: Any, lv_ver: Any = None, hv_ver: Any = None,
                              hv_type: str | None = None) -> bool:
        return self._compare_versions(conn, lv_ver, hv_ver, hv_type, exact=False)

    @staticmethod
    def _compare_versions(conn: Any, lv_ver: Any, hv_ver: Any, hv_type: str | None, exact: bool) -> bool:
        def ok(have: int, want: int) -> bool:
            return have == want if exact else have >= want
        if lv_ver is not None and not ok(conn.getLibVersion(), version_to_int(lv_ver)):
            return False
        if hv_type is not None and conn.getType().lower() != hv_type.lower():
            return False
        if hv_ver is not None and not ok(conn.getVersion(), version_to_int(hv_ver)):
            return False
        return True

    def has_min_version(self, lv_ver: Any = None, hv_ver: Any = None, hv_type: str | None = None) -> bool:
        """At least libvirt ``lv_ver`` and, on hypervisor ``hv_type``, at least ``hv_ver``."""
        return self.call("checking versions",
                         lambda c: self._compare_versions(c, lv_ver, hv_ver, hv_type, exact=False))

    def has_version(self, lv_ver: Any = None, hv_ver: Any = None, hv_type: str | None = None) -> bool:
        """Exactly libvirt ``lv_ver`` and, on hypervisor ``hv_type``, exactly ``hv_ver``."""
        return self.call("checking versions",
                         lambda c: self._compare_versions(c, lv_ver, hv_ver, hv_type, exact=True))

    def get_libversion(self) -> int:
        return self.call("reading the libvirt version", lambda c: c.getLibVersion())

    # ------------------------------------------------------------------ events
    @staticmethod
    def _native_thread() -> None:
        """Runs libvirt's default event loop forever (daemon thread)."""
        while True:
            libvirt.virEventRunDefaultImpl()

    def _init_events_pipe(self) -> None:
        """The queue between the native thread (producer) and the dispatch thread."""
        self._event_queue = queue.Queue()

    def _init_events(self) -> None:
        global _event_loop_thread
        self._init_events_pipe()
        with _event_loop_lock:
            if _event_loop_thread is None:
                libvirt.virEventRegisterDefaultImpl()
                _event_loop_thread = threading.Thread(
                    target=self._native_thread, name="libvirt-event-loop", daemon=True)
                _event_loop_thread.start()
        self._dispatch_thread_obj = threading.Thread(
            target=self._dispatch_thread, name="libvirt-dispatch", daemon=True)
        self._dispatch_thread_obj.start()

    def initialize(self) -> None:
        """Start the event threads; call before the first connection to get events.

        Afterwards lifecycle events reach ``lifecycle_event_handler`` and
        ``wait_for_lifecycle``, and a dropped connection is noticed through the
        close callback instead of a test round trip per call.
        """
        if self._initialized:
            return
        self._init_events()
        self._initialized = True
        # a connection opened before initialize() has no callbacks: open a fresh one
        with self._wrapped_conn_lock:
            self._wrapped_conn = None

    def _queue_event(self, event: Any) -> None:
        """Called from the native thread: hand the event over, never block."""
        if self._event_queue is not None:
            self._event_queue.put(event)

    def _event_lifecycle_callback(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        self._queue_event(LifecycleEvent(dom.UUIDString(), dom.name(), event, detail))

    def _event_agent_callback(self, _conn: Any, dom: Any, state: int, reason: int, _opaque: Any) -> None:
        self._queue_event(AgentEvent(dom.UUIDString(), dom.name(), state, reason))

    def _dispatch_thread(self) -> None:
        while True:
            self._dispatch_events()

    def _dispatch_events(self, block: bool = True) -> None:
        """Deliver queued events to the handlers and to waiting callers."""
        if self._event_queue is None:
            raise HypervisorError("events are not initialised: call Host.initialize() first")
        try:
            event = self._event_queue.get(block=block)
        except queue.Empty:
            return
        try:
            if isinstance(event, (LifecycleEvent, AgentEvent)):
                with self._waiters_lock:
                    for uuid, cond, seen in self._waiters:
                        if uuid == event.uuid:
                            with cond:
                                seen.append(event)
                                cond.notify_all()
                if self._lifecycle_event_handler is not None and isinstance(event, LifecycleEvent):
                    self._lifecycle_event_handler(event)
            elif isinstance(event, ConnectionEvent):
                if self._conn_event_handler is not None:
                    self._conn_event_handler(event)
        except Exception:  # a handler's bug must not kill the dispatch thread
            pass

    def wait_for_lifecycle(self, domain: Any, states: Iterable[str], timeout: float) -> str:
        """Wait until ``domain`` (name, UUID or Guest) is in one of ``states``.

        Returns the state reached, or ``"undefined"`` if the domain went away
        and that was asked for. Event-driven after ``initialize()``; polls every
        0.1 s otherwise. Raises ``Timeout`` after ``timeout`` seconds.
        """
        wanted = set(states)
        unknown = wanted - set(STATE_NAMES.values()) - {"undefined"}
        if unknown:
            raise HypervisorError("unknown domain state(s): %s" % ", ".join(sorted(unknown)))
        guest = domain if isinstance(domain, _guest_class()) else self.get_guest(
            **({"uuid": domain} if _looks_like_uuid(domain) else {"name": domain}))
        entry = self._add_waiter(guest.uuid)
        _uuid, cond, seen = entry
        deadline = time.monotonic() + timeout
        try:
            state = self._current_state(guest)
            while state not in wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout("domain '%s' on %s did not reach %s within %gs (it is %s)"
                                  % (guest.name, self._uri, "/".join(sorted(wanted)), timeout, state),
                                  uri=self._uri)
                with cond:
                    if not seen:
                        cond.wait(min(remaining, 0.1 if not self._initialized else remaining))
                    events, seen[:] = [e for e in seen if isinstance(e, LifecycleEvent)], []
                if events and events[-1].event == 1:
                    state = "undefined"
                elif events and events[-1].state is not None:
                    state = events[-1].state
                elif not self._initialized or not events:
                    state = self._current_state(guest)
            return state
        finally:
            self._remove_waiter(entry)

    def _add_waiter(self, uuid: str) -> tuple[str, threading.Condition, list]:
        """Events of domain ``uuid`` are appended to the entry's list (and its condition notified)."""
        entry: tuple[str, threading.Condition, list] = (uuid, threading.Condition(), [])
        with self._waiters_lock:
            self._waiters.append(entry)
        return entry

    def _remove_waiter(self, entry: tuple[str, threading.Condition, list]) -> None:
        with self._waiters_lock:
            self._waiters.remove(entry)

    @property
    def events_running(self) -> bool:
        """initialize() was called: lifecycle and agent events reach waiters."""
        return self._initialized

    def wait_for_agent(self, guest: "Guest", timeout: float) -> float:
        """Wait until the guest agent's channel of ``guest`` is connected; returns the seconds waited.

        Event-driven (libvirt's agent lifecycle event) after ``initialize()``;
        the live XML's channel state is read once first, and again after each
        event or, without events, every 0.2 s. ``Timeout`` says what the
        channel was the last time it was read.
        """
        start = time.monotonic()
        deadline = start + timeout
        entry = self._add_waiter(guest.uuid)
        _uuid, cond, seen = entry
        try:
            while True:
                state = guest.get_agent_state()
                if state == "connected":
                    return time.monotonic() - start
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout("the guest agent of domain '%s' on %s did not connect within %gs (%s)"
                                  % (guest.name, self._uri, timeout, _agent_seen(state)), uri=self._uri)
                with cond:
                    if not any(isinstance(e, AgentEvent) and e.connected for e in seen):
                        cond.wait(min(remaining, 0.2 if not self._initialized else remaining))
                    events, seen[:] = [e for e in seen if isinstance(e, AgentEvent)], []
                if events and events[-1].connected:
                    return time.monotonic() - start
        finally:
            self._remove_waiter(entry)

    def _current_state(self, guest: "Guest") -> str:
        try:
            return guest.get_state()
        except NotFound:
            return "undefined"

    # ------------------------------------------------------------------ domains
    def list_instance_domains(self, only_running: bool = True, only_guests: bool = True) -> list[Any]:
        """virDomain objects from one ``listAllDomains`` call (Xen's Domain-0 left out)."""
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE if only_running else 0
        doms = self.call("listing domains", lambda c: c.listAllDomains(flags))
        if only_guests:
            doms = [d for d in doms if d.ID() != 0 or d.name() != "Domain-0"]
        return doms

    def list_guests(self, only_running: bool = False, only_guests: bool = True) -> list["Guest"]:
        """Every domain as a Guest, in one ``listAllDomains`` call."""
        guest_class = _guest_class()
        return [guest_class(d, host=self) for d in self.list_instance_domains(only_running, only_guests)]

    def get_guest(self, name: str | None = None, uuid: str | None = None) -> "Guest":
        """The Guest with this name or UUID, or ``NotFound``."""
        if bool(name) == bool(uuid):
            raise HypervisorError("get_guest needs exactly one of name or uuid")
        if name:
            dom = self.call("looking up domain '%s'" % name, lambda c: c.lookupByName(name))
        else:
            dom = self.call("looking up domain %s" % uuid, lambda c: c.lookupByUUIDString(uuid))
        return _guest_class()(dom, host=self)

    def domain_exists(self, name: str) -> bool:
        try:
            self.get_guest(name=name)
            return True
        except NotFound:
            return False

    def write_instance_config(self, xml: str, validate: bool = True) -> "Guest":
        """Define (or redefine) a domain from XML; libvirt validates it against its schema."""
        def define(conn: Any) -> Any:
            flags = libvirt.VIR_DOMAIN_DEFINE_VALIDATE if validate else 0
            return conn.defineXMLFlags(xml, flags)
        return _guest_class()(self.call("defining a domain", define), host=self)

    def _persistence_sets(self) -> tuple[set[str], set[str]]:
        """UUIDs of transient and of autostarted domains: two listAllDomains calls, short lists usually."""
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT
        transient = {d.UUIDString() for d in self.call("listing domains", lambda c: c.listAllDomains(flags))}
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART
        autostart = {d.UUIDString() for d in self.call("listing domains", lambda c: c.listAllDomains(flags))}
        return transient, autostart

    # what domain_records reads in its one bulk call
    RECORD_STATS = 0
    if libvirt is not None:
        RECORD_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU
                        | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_BLOCK
                        | libvirt.VIR_DOMAIN_STATS_INTERFACE)

    def domain_records(self, guests: list["Guest"] | None = None, stats: int | None = None) -> list[dict[str, Any]]:
        """One record per domain (all, or ``guests``) from bulk calls: the domain, its stats, state, flags.

        ``getAllDomainStats`` (or ``domainListGetStats`` for a list) and the two
        short ``listAllDomains`` of ``_persistence_sets``: the number of calls
        does not grow with the number of domains. Keys: ``domain`` (virDomain),
        ``name``, ``uuid``, ``id``, ``state``, ``state_reason`` (libvirt's
        number), ``persistent``, ``autostart``, ``stats`` (libvirt's dict).
        """
        flags = self.RECORD_STATS if stats is None else stats
        if guests is None:
            pairs = self.call("reading domain statistics", lambda c: c.getAllDomainStats(flags))
        elif not guests:
            pairs = []
        else:
            doms = [g.domain for g in guests]
            pairs = self.call("reading domain statistics", lambda c: c.domainListGetStats(doms, flags))
        transient, autostart = self._persistence_sets()
        records = []
        for dom, st in pairs:
            uuid = dom.UUIDString()
            if "state.state" not in st:
                st = dict(st)
                st["state.state"], st["state.reason"] = self.call(
                    "reading domain '%s'" % dom.name(), lambda _c, d=dom: d.state())
            records.append({
                "domain": dom, "name": dom.name(), "uuid": uuid, "id": dom.ID() if dom.ID() >= 0 else None,
                "state": STATE_NAMES.get(st["state.state"], "unknown"), "state_reason": st.get("state.reason", 0),
                "persistent": uuid not in transient, "autostart": uuid in autostart, "stats": st,
            })
        return records

    def xml_descs(self, domains: list[Any], flags: int = 0, workers: int = 8) -> dict[str, str | None]:
        """UUID -> XML of each virDomain (None when it vanished meanwhile).

        libvirt has no bulk call for domain XML, so this is one ``XMLDesc`` per
        domain; they are sent from a few threads at once over the one
        connection (libvirt's RPC client multiplexes them), so remote URIs pay
        the round trip once per batch rather than once per domain.
        """
        def one(dom: Any) -> tuple[str, str | None]:
            try:
                return dom.UUIDString(), self.call("reading the XML of domain '%s'" % dom.name(),
                                                   lambda _c: dom.XMLDesc(flags))
            except NotFound:
                return dom.UUIDString(), None
        if len(domains) <= 1 or workers <= 1:
            return dict(one(d) for d in domains)
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=min(workers, len(domains))) as pool:
            return dict(pool.map(one, domains))

    def network_leases(self) -> dict[str, list[dict[str, Any]]] | None:
        """Lower-case MAC -> DHCP leases of libvirt's active networks, one ``DHCPLeases`` per network.

        None when the driver keeps no leases (the test driver): callers then ask
        each domain (``interface_addresses(..., "lease")``).
        """
        nets = self.call("listing networks", lambda c: c.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE))
        by_mac: dict[str, list[dict[str, Any]]] = {}
        for net in nets:
            try:
                leases = self.call("reading the DHCP leases of network '%s'" % net.name(),
                                   lambda _c, n=net: n.DHCPLeases())
            except OperationFailed as exc:
                if exc.code == libvirt.VIR_ERR_NO_SUPPORT:
                    return None
                raise
            except NotFound:
                continue  # the network went away meanwhile
            for lease in leases or []:
                mac = (lease.get("mac") or "").lower()
                if not mac:
                    continue
                by_mac.setdefault(mac, []).append({
                    "address": lease.get("ipaddr"),
                    "prefix": lease.get("prefix"),
                    "family": "ipv6" if lease.get("type") == 1 else "ipv4",
                    "network": net.name(),
                    "hostname": lease.get("hostname"),
                    "expiry": lease.get("expirytime"),
                })
        return by_mac

    def interface_addresses(self, guest: "Guest", source: str) -> dict[str, list[dict[str, Any]]]:
        """Lower-case MAC -> addresses of one domain from ``source`` (lease, agent or arp).

        libvirt's virDomainInterfaceAddresses has no bulk form; the caller uses
        it where ``network_leases`` cannot answer (agent, arp, drivers without leases).
        """
        flag = {"lease": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
                "agent": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
                "arp": libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP}[source]
        raw = guest.call_domain("reading the %s addresses of" % source, lambda d: d.interfaceAddresses(flag))
        out: dict[str, list[dict[str, Any]]] = {}
        for ifname, data in (raw or {}).items():
            mac = (data.get("hwaddr") or "").lower()
            for a in data.get("addrs") or []:
                out.setdefault(mac, []).append({
                    "address": a.get("addr"), "prefix": a.get("prefix"),
                    "family": "ipv6" if a.get("type") == 1 else "ipv4", "interface": ifname,
                })
        return out

    def get_domain_info(self) -> list[dict[str, Any]]:
        """Name, UUID, state, persistence, autostart, vcpus, memory of every domain.

        The number of libvirt calls does not grow with the number of domains:
        two ``listAllDomains`` (transient, autostart: short lists, usually) and
        one ``getAllDomainStats``. Only drivers whose bulk stats lack
        vcpu/balloon data (the test driver) cost one ``info()`` per domain.
        """
        transient, autostart = self._persistence_sets()
        stats = self._all_domain_stats(libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU
                                       | libvirt.VIR_DOMAIN_STATS_BALLOON)
        result = []
        for dom, st in stats:
            uuid = dom.UUIDString()
            if "vcpu.current" in st and "balloon.maximum" in st:
                vcpus, memory_kib = st["vcpu.current"], st.get("balloon.current", st["balloon.maximum"])
                state = st["state.state"]
            else:
                state, _maxmem, memory_kib, vcpus, _cpu = self.call(
                    "reading domain '%s'" % dom.name(), lambda _c, d=dom: d.info())
            result.append({
                "name": dom.name(),
                "uuid": uuid,
                "id": dom.ID() if dom.ID() >= 0 else None,
                "state": STATE_NAMES.get(state, "unknown"),
                "persistent": uuid not in transient,
                "autostart": uuid in autostart,
                "vcpus": vcpus,
                "memory_mb": memory_kib // 1024,
            })
        result.sort(key=lambda d: d["name"])
        return result

    # what a snapshot reads in its one bulk call: everything the Host's own readers use
    _SNAPSHOT_STATS = 0
    if libvirt is not None:
        _SNAPSHOT_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU
                           | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_BLOCK)

    @contextlib.contextmanager
    def domain_stats_snapshot(self) -> Iterator["Host"]:
        """Within the block, all readers share one ``getAllDomainStats`` call.

        Fact gathering reads vCPUs in use, the domain list and disk
        over-commitment; sharing the bulk call saves round trips and payload
        that grow with the number of domains, and gives one consistent view.
        """
        outer = self._in_snapshot
        self._in_snapshot = True
        try:
            yield self
        finally:
            if not outer:
                self._in_snapshot = False
                self._stats_snapshot = None

    def _all_domain_stats(self, stats: int) -> list[tuple[Any, dict[str, Any]]]:
        if self._in_snapshot and stats & ~self._SNAPSHOT_STATS == 0:
            if self._stats_snapshot is None:
                flags = self._SNAPSHOT_STATS
                self._stats_snapshot = self.call("reading domain statistics", lambda c: c.getAllDomainStats(flags))
            return self._stats_snapshot
        return self.call("reading domain statistics", lambda c: c.getAllDomainStats(stats))

    # ------------------------------------------------------------------ host metrics
    def _get_node_info(self) -> list:
        if self._node_info is None:
            self._node_info = self.call("reading node info", lambda c: c.getInfo())
        return self._node_info

    def get_vcpu_total(self) -> int:
        """Host CPUs available to guests (online logical CPUs)."""
        return int(self._get_node_info()[2])

    def get_memory_mb_total(self) -> int:
        """Host memory in MiB."""
        return int(self._get_node_info()[1])

    def get_vcpu_used(self) -> int:
        """vCPUs of all running domains, from one bulk stats call."""
        total = 0
        for dom, st in self._all_domain_stats(libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU):
            if st.get("state.state") not in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
                                             libvirt.VIR_DOMAIN_BLOCKED):
                continue
            if "vcpu.current" in st:
                total += st["vcpu.current"]
            else:
                total += self.call("reading domain '%s'" % dom.name(), lambda _c, d=dom: d.info())[3]
        return total

    def get_memory_mb_used(self) -> int:
        """Host memory in use (MiB): total - free - buffers - cached, as the kernel counts it.

        Drivers without node memory stats (the test driver) report the memory
        of running domains instead.
        """
        try:
            st = self.call("reading node memory", lambda c: c.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS))
        except HypervisorError:
            return sum(d["memory_mb"] for d in self.get_domain_info()
                       if d["state"] in ("running", "paused", "blocked"))
        used_kib = st.get("total", 0) - st.get("free", 0) - st.get("buffers", 0) - st.get("cached", 0)
        return int(used_kib // 1024)

    def get_hypervisor_type(self) -> str:
        """libvirt's driver name for the hypervisor: QEMU, Xen, TEST, …"""
        return self.call("reading the hypervisor type", lambda c: c.getType())

    def get_hypervisor_version(self) -> int:
        """Hypervisor version in libvirt's integer form (7002022 for 7.2.22)."""
        return self.call("reading the hypervisor version", lambda c: c.getVersion())

    def get_hypervisor_hostname(self) -> str:
        return self.call("reading the hostname", lambda c: c.getHostname())

    def get_capabilities(self) -> Any:
        """Host capabilities XML as an lxml element, read once per Host."""
        if self._caps is None:
            self._caps = etree.fromstring(self.call("reading capabilities", lambda c: c.getCapabilities()))
        return self._caps

    def get_domain_capabilities(self, virt_type: str | None = None, arch: str | None = None,
                                machine: str | None = None, emulator: str | None = None) -> Any:
        """Domain capabilities for a virt type/arch/machine as an lxml element, cached."""
        arch = arch or self.get_cpu_info()["arch"]
        virt_type = virt_type or ("kvm" if self.kvm_available(arch) else "qemu")
        key = (virt_type, arch, machine, emulator)
        if key not in self._domcaps:
            xml = self.call("reading domain capabilities",
                            lambda c: c.getDomainCapabilities(emulator, arch, machine, virt_type, 0))
            self._domcaps[key] = etree.fromstring(xml)
        return self._domcaps[key]

    def kvm_available(self, arch: str | None = None) -> bool:
        """libvirt offers the kvm domain type for this arch (so /dev/kvm is there).

        It does not prove KVM guests run: nested KVM can hang (see kvm_usable).
        """
        caps = self.get_capabilities()
        arch = arch or caps.findtext("host/cpu/arch")
        return bool(caps.xpath("guest[arch/@name=$a]/arch/domain[@type='kvm']", a=arch))

    def kvm_usable(self, arch: str | None = None) -> bool | None:
        """KVM is offered and really runs guest code here (kvmprobe): False when offered but hangs.

        None when it cannot be told: a remote URI, an arch other than x86, or a
        probe QEMU could not start; callers then trust what libvirt offers.
        """
        caps = self.get_capabilities()
        arch = arch or caps.findtext("host/cpu/arch")
        if arch not in self._kvm_usable:
            arch_el = caps.xpath("guest[arch/@name=$a]/arch[domain/@type='kvm']", a=arch)
            if not arch_el:
                result: bool | None = False
            elif not self.is_local() or arch not in ("x86_64", "i686"):
                result = None
            else:
                emulator = arch_el[0].findtext("domain[@type='kvm']/emulator") or arch_el[0].findtext("emulator")
                result = kvmprobe.kvm_runs_guests(emulator) if emulator else None
            self._kvm_usable[arch] = result
        return self._kvm_usable[arch]

    def get_cpu_info(self) -> dict[str, Any]:
        """Host CPU from capabilities: arch, model, vendor, topology, features."""
        cpu = self.get_capabilities().find("host/cpu")
        if cpu is None:
            return {"arch": None, "model": None, "vendor": None, "topology": {}, "features": []}
        topo = cpu.find("topology")
        topology = {k: int(v) for k, v in (topo.attrib.items() if topo is not None else [])}
        return {
            "arch": cpu.findtext("arch"),
            "model": cpu.findtext("model"),
            "vendor": cpu.findtext("vendor"),
            "topology": topology,
            "features": sorted(f.get("name") for f in cpu.findall("feature")),
        }

    def get_numa_cells(self) -> list[dict[str, Any]]:
        """NUMA cells from capabilities: id, memory, CPUs."""
        cells = []
        for cell in self.get_capabilities().findall("host/topology/cells/cell"):
            mem = cell.find("memory")
            kib = int(mem.text) * {"KiB": 1, "MiB": 1024, "GiB": 1024 ** 2}.get(mem.get("unit", "KiB"), 1) \
                if mem is not None else 0
            cells.append({
                "id": int(cell.get("id")),
                "memory_mb": kib // 1024,
                "cpus": sorted(int(c.get("id")) for c in cell.findall("cpus/cpu")),
            })
        return cells

    def is_local(self) -> bool:
        """The URI names this machine, so local paths (instances dir) describe it too."""
        return "://" not in self._uri or self._uri.split("://", 1)[1].startswith("/")

    def get_disk_available_least(self, path: str) -> int | None:
        """GiB free at ``path`` less what guests' sparse disks there may still claim.

        Free space from statvfs, minus for every domain disk file on the same
        filesystem (capacity - physical size), from one bulk stats call. None
        when the URI is remote or the path does not exist here.
        """
        if not self.is_local() or not os.path.isdir(path):
            return None
        vfs = os.statvfs(path)
        available = vfs.f_bavail * vfs.f_frsize
        device = os.stat(path).st_dev
        over_committed = 0
        for _dom, st in self._all_domain_stats(libvirt.VIR_DOMAIN_STATS_BLOCK):
            for i in range(st.get("block.count", 0)):
                disk_path = st.get("block.%d.path" % i)
                capacity = st.get("block.%d.capacity" % i)
                physical = st.get("block.%d.physical" % i, st.get("block.%d.allocation" % i))
                if not disk_path or capacity is None or physical is None:
                    continue
                try:
                    if os.stat(disk_path).st_dev != device:
                        continue
                except OSError:
                    continue
                over_committed += max(capacity - physical, 0)
        return int((available - over_committed) // (1024 ** 3))


def _agent_seen(state: str | None) -> str:
    if state is None:
        return "the domain has no %s channel" % AGENT_CHANNEL
    return "its %s channel was %s" % (AGENT_CHANNEL, state)


def _looks_like_uuid(value: str) -> bool:
    return isinstance(value, str) and len(value) == 36 and value.count("-") == 4
