#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot
short_description: Create, revert to and delete libvirt domain snapshots
version_added: 1.1.0
description:
  - Takes a snapshot of a domain (internal, or external; with or without the memory state), reverts the
    domain to one, or deletes one (optionally with its descendants), by name.
  - Idempotent by name - a snapshot that exists and holds what is asked for (O(description), O(memory),
    O(location), O(disks)) is left as it is. Asking an existing snapshot to hold something else is an
    error, not a redefinition - a snapshot's content cannot change.
  - Without O(name), only reports the domain's snapshots (RV(snapshots), RV(current)).
  - Reverting always changes the domain (its disks go back to the snapshot), so O(state=reverted)
    always reports a change.
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  domain:
    description: Name of the domain.
    type: str
    required: true
  name:
    description: Name of the snapshot. Without it the module only lists the snapshots.
    type: str
  state:
    description:
      - V(present) - the snapshot exists (taken now if it does not).
      - V(reverted) - the domain is returned to the snapshot; see O(revert_state).
      - V(absent) - the snapshot is deleted; its children are kept (re-parented) unless O(children=true).
    type: str
    choices: [present, absent, reverted]
    default: present
  description:
    description: The snapshot's description.
    type: str
  location:
    description:
      - V(internal) - the snapshot lives inside the qcow2 disk images (and, for a running domain, its memory state too).
      - V(external) - new overlay files take the disks' writes from now on; the snapshot is the files below them.
        Without O(memory) it is a disk-only snapshot.
    type: str
    choices: [internal, external]
    default: internal
  memory:
    description:
      - Save the running domain's memory state with the snapshot, so a revert continues the guest where it was
        instead of booting it. Internal snapshots of a running domain include it unless V(false).
      - External snapshots with memory need O(memory_file).
    type: bool
  memory_file:
    description: With O(location=external) and O(memory=true), the file the memory state is saved to.
    type: path
  disks:
    description:
      - Per disk, how it is snapshotted - C(target) (V(vda)...), C(snapshot) (V(internal), V(external) or V(no)) and,
        for external, C(file) (the overlay file). Disks not named follow O(location).
    type: list
    elements: dict
  quiesce:
    description: Freeze the guest's filesystems through the QEMU guest agent while taking an external snapshot.
    type: bool
    default: false
  revert_state:
    description:
      - With O(state=reverted), the domain's state afterwards - V(running) or V(paused). Without it, the domain
        is as it was when the snapshot was taken.
    type: str
    choices: [running, paused]
  force:
    description: With O(state=reverted), let libvirt revert where it would refuse as risky (libvirt's REVERT_FORCE).
    type: bool
    default: false
  children:
    description: With O(state=absent), delete the snapshot's descendants too.
    type: bool
    default: false
  metadata_only:
    description: With O(state=absent), remove only libvirt's record of the snapshot and keep its data in the disk images.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Predicts RV(changed), RV(actions), RV(current), RV(snapshots) and RV(domain_state) and changes
      nothing; a snapshot that would be created is shown as the XML that would be sent.
  diff_mode:
    support: full
    description: The snapshot's XML before and after (empty when it does not exist).
  idempotent:
    support: partial
    description: O(state=present) and O(state=absent) are idempotent; O(state=reverted) reverts every time.
notes:
  - M(hypervisor.libvirt.domain) with O(hypervisor.libvirt.domain#module:state=absent) refuses to remove a domain
    that has snapshots unless O(hypervisor.libvirt.domain#module:remove_snapshots_metadata=true).
seealso:
  - module: hypervisor.libvirt.domain
  - module: hypervisor.libvirt.domain_info
"""

EXAMPLES = r"""
- name: Snapshot a running guest with its memory state
  hypervisor.libvirt.snapshot:
    domain: web1
    name: before-upgrade
    description: state before the upgrade

- name: External, disk-only snapshot, the guest's filesystems frozen through its agent
  hypervisor.libvirt.snapshot:
    domain: web1
    name: nightly
    location: external
    quiesce: true

- name: Go back, running
  hypervisor.libvirt.snapshot:
    domain: web1
    name: before-upgrade
    state: reverted
    revert_state: running

- name: List the snapshots
  hypervisor.libvirt.snapshot:
    domain: web1
  register: snaps

- name: Delete a snapshot and everything taken after it
  hypervisor.libvirt.snapshot:
    domain: web1
    name: before-upgrade
    state: absent
    children: true
"""

RETURN = r"""
changed:
  description: Whether anything was (or, in check mode, would be) done.
  type: bool
  returned: always
actions:
  description: What was done - V(create), V(revert), V(delete).
  type: list
  elements: str
  returned: always
differences:
  description: What changed, as C(path), C(before) and C(after) entries.
  type: list
  elements: dict
  returned: always
snapshot:
  description:
    - The snapshot - C(name), C(description), C(state) (the domain's state when it was taken), C(parent),
      C(creation_time), C(current), C(memory), C(memory_file), C(location), C(disks) and C(domain_xml).
    - V(null) after a delete or without O(name).
  type: dict
  returned: always
xml:
  description: The snapshot's XML afterwards (in check mode, the XML that would be sent for a new one); empty when absent.
  type: str
  returned: always
domain_xml:
  description: The domain's XML at the snapshot.
  type: str
  returned: always
domain_state:
  description: The domain's state afterwards (predicted in check mode).
  type: str
  returned: always
  sample: running
current:
  description: The name of the domain's current snapshot, or V(null).
  type: str
  returned: always
snapshots:
  description: Every snapshot of the domain, parents before children, with the keys of RV(snapshot) but C(domain_xml).
  type: list
  elements: dict
  returned: always
removed:
  description: The snapshots deleted (or that would be).
  type: list
  elements: str
  returned: when O(state=absent)
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host
from ansible_collections.hypervisor.libvirt.plugins.module_utils.snapshot import (
    LOCATIONS,
    REVERT_STATES,
    STATES,
    SnapshotRequest,
    converge,
)

_OPTIONS = ("domain", "name", "state", "description", "location", "memory", "memory_file", "disks", "quiesce",
            "revert_state", "force", "children", "metadata_only")


def main() -> None:
    module = libvirt_module(
        {
            "domain": {"type": "str", "required": True},
            "name": {"type": "str"},
            "state": {"type": "str", "choices": list(STATES), "default": "present"},
            "description": {"type": "str"},
            "location": {"type": "str", "choices": list(LOCATIONS), "default": "internal"},
            "memory": {"type": "bool"},
            "memory_file": {"type": "path"},
            "disks": {"type": "list", "elements": "dict"},
            "quiesce": {"type": "bool", "default": False},
            "revert_state": {"type": "str", "choices": list(REVERT_STATES)},
            "force": {"type": "bool", "default": False},
            "children": {"type": "bool", "default": False},
            "metadata_only": {"type": "bool", "default": False},
        },
        required_if=[("state", "absent", ["name"]), ("state", "reverted", ["name"])],
        supports_check_mode=True,
    )

    def action() -> dict:
        request = SnapshotRequest(**{k: module.params[k] for k in _OPTIONS})
        with Host(module.params["uri"]) as host:
            result = converge(host, request, check_mode=module.check_mode)
        if not module._diff:
            result.pop("diff")
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
