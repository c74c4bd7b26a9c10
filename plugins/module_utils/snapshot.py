# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of the ``snapshot`` module: create, revert and delete domain snapshots through the plan.

Idempotent by name: a snapshot that exists and holds what was asked for
(description, where memory and disks went) is left alone; one that holds
something else is an error, never a silent redefinition, because a
snapshot's content cannot change. Every change goes through ``plan.Plan``,
so check mode records the same actions and runs none. No Ansible import.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec, NotFound
from ansible_collections.hypervisor.libvirt.plugins.module_utils.plan import Plan, difference

STATES = ("present", "absent", "reverted")
LOCATIONS = ("internal", "external")
REVERT_STATES = ("running", "paused")
_RUNNING = ("running", "blocked", "paused", "pmsuspended")


class SnapshotRequest:
    """What the user asked for, as plain values (the module's parameters)."""

    def __init__(self, domain: str, name: str | None = None, state: str = "present", description: str | None = None,
                 location: str = "internal", memory: bool | None = None, memory_file: str | None = None,
                 disks: list[dict[str, Any]] | None = None, quiesce: bool = False, revert_state: str | None = None,
                 force: bool = False, children: bool = False, metadata_only: bool = False) -> None:
        if not domain:
            raise InvalidSpec("domain", "give the domain's name")
        if state not in STATES:
            raise InvalidSpec("state", "must be one of %s, got %r" % (", ".join(STATES), state))
        if location not in LOCATIONS:
            raise InvalidSpec("location", "must be internal or external, got %r" % location)
        if revert_state is not None and revert_state not in REVERT_STATES:
            raise InvalidSpec("revert_state", "must be running or paused, got %r" % revert_state)
        if name is None and state != "present":
            raise InvalidSpec("name", "state %s needs the snapshot's name" % state)
        if memory_file and location != "external":
            raise InvalidSpec("memory_file", "memory goes to a file only with location: external")
        if memory_file and memory is False:
            raise InvalidSpec("memory_file", "is given but memory is false")
        if location == "external" and memory and not memory_file:
            raise InvalidSpec("memory_file", "an external snapshot with memory needs the file to save it to")
        if quiesce and location != "external":
            raise InvalidSpec("quiesce", "libvirt quiesces the guest's filesystems only for external disk snapshots")
        for i, disk in enumerate(disks or []):
            if not isinstance(disk, dict) or not disk.get("target"):
                raise InvalidSpec("disks[%d].target" % i, "each disk names its target (vda, sdb...)")
            unknown = set(disk) - {"target", "snapshot", "file"}
            if unknown:
                raise InvalidSpec("disks[%d]" % i, "unknown key(s) %s (target, snapshot, file)" % ", ".join(sorted(unknown)))
            if disk.get("snapshot", "internal" if location == "internal" else "external") not in \
                    ("internal", "external", "no"):
                raise InvalidSpec("disks[%d].snapshot" % i, "must be internal, external or no")
            if disk.get("file") and disk.get("snapshot", location) != "external":
                raise InvalidSpec("disks[%d].file" % i, "a file is only for an external disk snapshot")
        self.domain = domain
        self.name = name
        self.state = state
        self.description = description
        self.location = location
        self.memory = memory
        self.memory_file = memory_file
        self.disks = disks
        self.quiesce = quiesce
        self.revert_state = revert_state
        self.force = force
        self.children = children
        self.metadata_only = metadata_only


# ---------------------------------------------------------------------- XML
def snapshot_xml(req: SnapshotRequest) -> str:
    """The ``<domainsnapshot>`` to create: only what the user said; libvirt fills in the rest."""
    root = xmlutil.element("domainsnapshot")
    xmlutil.sub(root, "name", None, req.name)
    if req.description is not None:
        xmlutil.sub(root, "description", None, req.description)
    memory = _memory_mode(req)
    if memory is not None:
        xmlutil.sub(root, "memory", {"snapshot": memory, "file": req.memory_file})
    if req.disks:
        disks = xmlutil.sub(root, "disks")
        for d in req.disks:
            mode = d.get("snapshot", req.location)
            el = xmlutil.sub(disks, "disk", {"name": d["target"], "snapshot": mode})
            if d.get("file"):
                xmlutil.sub(el, "source", {"file": d["file"]})
    return xmlutil.to_string(root)


def _memory_mode(req: SnapshotRequest) -> str | None:
    if req.memory is None:
        return "no" if req.location == "external" and not req.memory_file else (
            "external" if req.memory_file else None)
    if not req.memory:
        return "no"
    return req.location


def _disk_only(req: SnapshotRequest) -> bool:
    return req.location == "external" and _memory_mode(req) == "no"


def describe_snapshot(xml: str, current: str | None, children: int | None = None) -> dict[str, Any]:
    """A snapshot's XML as the module returns it."""
    root = xmlutil.parse(xml, "snapshot XML")
    mem = root.find("memory")
    dom = root.find("domain")
    disks = []
    for d in root.findall("disks/disk"):
        src = d.find("source")
        disks.append({"target": d.get("name"), "snapshot": d.get("snapshot"),
                      "file": src.get("file") if src is not None else None})
    name = root.findtext("name")
    created = root.findtext("creationTime")
    return {
        "name": name,
        "description": root.findtext("description"),
        "state": root.findtext("state"),
        "parent": root.findtext("parent/name"),
        "creation_time": int(created) if created else None,
        "current": name == current,
        "memory": mem.get("snapshot") if mem is not None else None,
        "memory_file": mem.get("file") if mem is not None else None,
        "location": "external" if (mem is not None and mem.get("snapshot") == "external") or any(
            d["snapshot"] == "external" for d in disks) else "internal",
        "disks": disks,
        "children": children,
        "domain_xml": xmlutil.to_string(dom) if dom is not None else None,
    }


def snapshot_differences(req: SnapshotRequest, have: dict[str, Any]) -> list[dict[str, Any]]:
    """What the request says that the existing snapshot does not hold (over what the request names)."""
    out = []
    if req.description is not None and (have["description"] or "") != req.description:
        out.append(difference("description", have["description"], req.description))
    memory = _memory_mode(req)
    if memory is not None and have["memory"] != memory:
        out.append(difference("memory", have["memory"], memory))
    if req.memory_file and have["memory_file"] != req.memory_file:
        out.append(difference("memory_file", have["memory_file"], req.memory_file))
    if req.location == "external" and req.memory is None and have["location"] != "external":
        out.append(difference("location", have["location"], "external"))
    have_disks = {d["target"]: d for d in have["disks"]}
    for i, d in enumerate(req.disks or []):
        h = have_disks.get(d["target"])
        mode = d.get("snapshot", req.location)
        if h is None:
            out.append(difference("disks[%d]" % i, None, d))
            continue
        if h["snapshot"] != mode:
            out.append(difference("disks[%d].snapshot" % i, h["snapshot"], mode))
        if d.get("file") and h["file"] != d["file"]:
            out.append(difference("disks[%d].file" % i, h["file"], d["file"]))
    return out


# ---------------------------------------------------------------------- converging
def _listing(guest: Any) -> tuple[list[dict[str, Any]], str | None]:
    current = guest.current_snapshot()
    out = []
    for name in guest.list_snapshots():
        try:
            info = describe_snapshot(guest.get_snapshot_xml(name), current)
        except NotFound:
            continue  # deleted by someone else since the listing
        info.pop("domain_xml")
        out.append(info)
    return out, current


def converge(host: Any, req: SnapshotRequest, check_mode: bool = False) -> dict[str, Any]:
    """Bring the snapshot to what ``req`` asks; the module's result."""
    guest = host.get_guest(name=req.domain)
    plan = Plan(host, check_mode)
    result: dict[str, Any] = {"differences": []}
    before_xml = ""
    after_xml = ""
    snap: dict[str, Any] | None = None
    if req.name is not None:
        try:
            before_xml = guest.get_snapshot_xml(req.name)
        except NotFound:
            before_xml = ""
        after_xml = before_xml
        existing = describe_snapshot(before_xml, guest.current_snapshot()) if before_xml else None
        if req.state == "present":
            if existing is not None:
                diffs = snapshot_differences(req, existing)
                if diffs:
                    raise InvalidSpec(diffs[0]["path"], "snapshot '%s' of domain '%s' exists and holds %r, not %r; a "
                                      "snapshot's content cannot change - delete it first or use another name"
                                      % (req.name, req.domain, diffs[0]["before"], diffs[0]["after"]))
                snap = existing
            else:
                xml = snapshot_xml(req)
                result["differences"] = [difference("", None, "created")]
                created = plan.act("create", lambda: guest.create_snapshot(
                    xml, disk_only=_disk_only(req), quiesce=req.quiesce))
                if check_mode:
                    after_xml = xml
                    snap = describe_snapshot(xml, req.name)
                    snap["domain_xml"] = guest.get_xml_desc()
                else:
                    after_xml = guest.get_snapshot_xml(created)
                    snap = describe_snapshot(after_xml, guest.current_snapshot())
        elif req.state == "absent":
            if existing is not None:
                children = guest.snapshot_children(req.name)
                result["removed"] = [req.name] + (children if req.children else [])
                result["differences"] = [difference("", "present", None)] + [
                    difference(c, "present", None) for c in (children if req.children else [])]
                plan.act("delete", lambda: guest.delete_snapshot(req.name, children=req.children,
                                                                 metadata_only=req.metadata_only))
                after_xml = ""
            else:
                result["removed"] = []
        else:  # reverted
            if existing is None:
                raise NotFound("domain '%s' on %s has no snapshot '%s' to revert to (it has %s)" % (
                    req.domain, host.uri, req.name, ", ".join(guest.list_snapshots()) or "none"), uri=host.uri)
            result["differences"] = [difference("", "domain as it is now", "domain at snapshot '%s'" % req.name)]
            plan.act("revert", lambda: guest.revert_to_snapshot(req.name, req.revert_state, req.force))
            snap = existing
            if not check_mode:
                snap = describe_snapshot(guest.get_snapshot_xml(req.name), guest.current_snapshot())
    if check_mode:
        state = _predicted_state(guest, req, snap)
    else:
        state = guest.get_state()
    listing, current = _listing(guest)
    if check_mode and "create" in plan.actions and snap is not None:
        listing.append(dict(snap, domain_xml=None))
        listing[-1].pop("domain_xml")
        current = req.name
    elif check_mode and "revert" in plan.actions:
        current = req.name
    elif check_mode and "delete" in plan.actions:
        listing = [s for s in listing if s["name"] not in result["removed"]]
        current = None if current in result["removed"] else current
    result.update({
        "changed": plan.changed,
        "actions": list(plan.actions),
        "domain_state": state,
        "snapshot": snap,
        "xml": after_xml,
        "domain_xml": snap["domain_xml"] if snap else None,
        "current": current,
        "snapshots": listing,
        "diff": xmlutil.diff_result(before_xml or None, after_xml or None, "%s.xml" % (req.name or "snapshot")),
    })
    return result


def _predicted_state(guest: Any, req: SnapshotRequest, snap: dict[str, Any] | None) -> str:
    state = guest.get_state()
    if req.state != "reverted" or snap is None:
        return state
    if req.revert_state:
        return req.revert_state
    at = snap.get("state")
    if at in ("running", "paused", "shutoff"):
        return at
    return "shutoff" if at in ("shutdown", "disk-snapshot") and state not in _RUNNING else state


__all__ = ["SnapshotRequest", "converge", "snapshot_xml", "describe_snapshot", "snapshot_differences", "STATES",
           "LOCATIONS", "REVERT_STATES", "etree"]
