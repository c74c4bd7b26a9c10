#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: storage_pool
short_description: Define, build, start, stop and remove libvirt storage pools
version_added: 1.2.0
description:
  - Manages a libvirt storage pool through the libvirt API alone, so it works the same on
    V(qemu:///system) and on a remote V(qemu+ssh://) URI.
  - The pool is given as a structured spec in libvirt's own vocabulary (O(type), O(source), O(target))
    or as raw O(xml); either is validated against libvirt's C(storagepool.rng) before anything changes.
  - The comparison is semantic - what libvirt fills in (UUID, capacity, allocation, a target's
    permissions it reads from disk) is only a difference when you set it; paths compare as libvirt stores
    them (C(/a//b/) is C(/a/b)), and an owner or group of V(-1) is libvirt's "not set". With O(xml), what
    the structured options do not model (mount options, the NFS protocol version, RBD config options) is
    compared too, as the XML it defines. A change to an existing
    pool's definition redefines it; a running pool then reports RV(pending_restart=true) (libvirt
    applies a pool's new definition when it is next started).
  - Removing a pool (O(state=absent)) stops and undefines it and never deletes its volumes or its
    storage (directory, volume group, partitions) unless O(delete_storage=true) (or V(if_empty), when it holds no volume).
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  name:
    description: The pool's name (no C(/)).
    type: str
    required: true
  state:
    description:
      - V(present) - defined, running or not as it is; V(active) - defined and running (refreshed
        when O(refresh=true)); V(inactive) - defined and stopped; V(absent) - stopped and undefined.
    type: str
    choices: [present, active, inactive, absent]
    default: present
  type:
    description:
      - The pool type, one of V(dir), V(fs), V(netfs), V(logical), V(disk), V(iscsi), V(rbd).
      - Required with the structured options when the pool does not exist yet.
    type: str
  source:
    description:
      - Where the pool's storage comes from, keys as libvirt names them
      - C(dir) - a directory path (V(netfs) export path, V(fs) is unused).
      - C(devices) - list of device paths or of C({path, part_separator}) (V(fs), V(logical), V(disk)).
      - C(hosts) - list of host names or C({name, port}) (V(netfs), V(iscsi), V(rbd)).
      - C(name) - the volume group (V(logical)), the RBD pool (V(rbd)).
      - C(format) - the source format (V(fs) - V(ext4), V(xfs), ...; V(netfs) - V(nfs), V(cifs),
        V(glusterfs); V(disk) - V(dos), V(gpt), ...; V(logical) - V(lvm2)).
      - C(auth) - C({type, username, secret}) with C(type) V(chap) (iSCSI) or V(ceph) (RBD) and
        C(secret) a C({usage}) or C({uuid}) of a M(hypervisor.libvirt.secret).
      - C(initiator) - the iSCSI initiator IQN.
    type: dict
  target:
    description:
      - Where the pool appears on the hypervisor - C(path) (a directory for V(dir), V(fs), V(netfs);
        C(/dev/VG) for V(logical), which libvirt sets itself from the volume group's name whatever path is
        given; C(/dev/disk/by-path) for V(iscsi); C(/dev) for V(disk)) and
        C(permissions) - C({mode, owner, group, label}) of the target directory.
    type: dict
  xml:
    description:
      - The whole pool as libvirt XML instead of O(type), O(source) and O(target).
    type: str
  autostart:
    description: Start the pool when libvirtd starts; unchanged when omitted.
    type: bool
  build:
    description:
      - Build the pool's storage when the pool is first defined (C(virStoragePoolBuild) with
        C(VIR_STORAGE_POOL_BUILD_NO_OVERWRITE), so existing data is never overwritten) - makes the
        target directory of V(dir) and V(netfs) pools, a file system (V(fs)), a volume group
        (V(logical)), a partition table (V(disk)).
      - When omitted, V(dir) and V(netfs) pools are built (only a directory is made) and other types
        are not.
    type: bool
  refresh:
    description: Refresh the pool's list of volumes (C(virStoragePoolRefresh)) when it is running. Always reports a change.
    type: bool
    default: false
  delete_storage:
    description:
      - With O(state=absent) - V(true) also deletes every volume in the pool and the pool's storage
        (C(virStoragePoolDelete) - the directory, the volume group).
      - V(if_empty) deletes the pool's storage only when the pool holds no volume (after a refresh), and
        otherwise keeps it and everything in it (RV(storage_kept) names what is there); the pool is undefined
        either way. This removes a directory made for the pool, also over a remote URI, without touching
        anything someone else put there.
      - V(true) is refused while a volume of the pool is a disk of a defined domain, unless O(force=true).
      - V(false) keeps the storage and its contents.
    type: raw
    default: false
  force:
    description: With O(delete_storage=true), delete volumes even though defined domains use them.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports exactly which actions would run and the XML that would be defined; changes nothing.
  diff_mode:
    support: full
    description: The pool's persistent XML before and after.
  idempotent:
    support: full
    description: A second identical run reports no change.
notes:
  - Errors in the input (an unknown O(type), a key C(source) does not have for that type, a name with
    C(/)) fail naming the field before anything is changed.
seealso:
  - module: hypervisor.libvirt.storage_volume
  - module: hypervisor.libvirt.secret
"""

EXAMPLES = r"""
- name: A directory pool, running and started at boot
  hypervisor.libvirt.storage_pool:
    name: hvl-example-images
    type: dir
    target:
      path: /var/lib/libvirt/hvl-example-images
      permissions: {mode: "0711", owner: 0, group: 0}
    state: active
    autostart: true

- name: An LVM pool over an existing volume group
  hypervisor.libvirt.storage_pool:
    name: hvl-example-lvm
    type: logical
    source: {name: vg_guests}
    target: {path: /dev/vg_guests}
    build: false
    state: active

- name: Remove the directory pool, keeping its volumes and directory
  hypervisor.libvirt.storage_pool:
    name: hvl-example-images
    state: absent
"""

RETURN = r"""
name:
  description: The pool's name.
  returned: always
  type: str
actions:
  description: What was done (or would be, in check mode), in order, for example V(define), V(build), V(start), V(autostart).
  returned: always
  type: list
  elements: str
differences:
  description: Fields of the persistent definition that differed from the request (C(path), C(before), C(after)).
  returned: always
  type: list
  elements: dict
pending_restart:
  description: The pool runs with a definition other than the new one; stop and start it to apply.
  returned: always
  type: bool
state:
  description: V(active), V(inactive) or V(absent) after the task (predicted in check mode).
  returned: always
  type: str
autostart:
  description: Whether the pool starts with libvirtd; null when absent.
  returned: always
  type: bool
capacity:
  description: Capacity of a running pool in bytes; null otherwise.
  returned: always
  type: int
allocation:
  description: Bytes allocated in a running pool; null otherwise.
  returned: always
  type: int
available:
  description: Bytes free in a running pool; null otherwise.
  returned: always
  type: int
storage_kept:
  description:
    - With O(delete_storage=if_empty), why the pool's storage was kept - C(volumes), the volumes in it (null when
      the pool was not running, so that check mode could not list them), and C(reason) (libvirt's message when it
      refused to delete storage that holds something other than volumes, such as a directory).
  returned: when O(delete_storage=if_empty) kept the storage
  type: dict
  sample: {volumes: [notes.txt], reason: the pool holds volumes}
xml:
  description: The persistent XML after the task (predicted in check mode); null when absent.
  returned: always
  type: str
"""

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host
from ansible_collections.hypervisor.libvirt.plugins.module_utils.storage import PoolManager

_SPEC_OPTIONS = ("type", "source", "target")


def main() -> None:
    module = libvirt_module(
        {
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "active", "inactive", "absent"], "default": "present"},
            "type": {"type": "str"},
            "source": {"type": "dict"},
            "target": {"type": "dict"},
            "xml": {"type": "str"},
            "autostart": {"type": "bool"},
            "build": {"type": "bool"},
            "refresh": {"type": "bool", "default": False},
            "delete_storage": {"type": "raw", "default": False},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
        mutually_exclusive=[("xml", o) for o in _SPEC_OPTIONS],
    )
    p = module.params
    if p["delete_storage"] != "if_empty":
        try:
            p["delete_storage"] = boolean(p["delete_storage"], strict=True)
        except TypeError:
            module.fail_json(msg="delete_storage: must be true, false or if_empty, got %r" % (p["delete_storage"],))

    def action() -> dict:
        spec = None
        if p["xml"] is None and any(p[k] is not None for k in _SPEC_OPTIONS):
            spec = {k: p[k] for k in ("name",) + _SPEC_OPTIONS if p[k] is not None}
        with Host(p["uri"]) as host:
            res = PoolManager(host, check_mode=module.check_mode).ensure(
                p["name"], spec=spec, xml=p["xml"], state=p["state"], autostart=p["autostart"], build=p["build"],
                refresh=p["refresh"], delete_storage=p["delete_storage"], force=p["force"])
        before, after = res.pop("before"), res.pop("after")
        res["xml"] = after
        if module._diff:
            res["diff"] = xmlutil.diff_result(before, after, "pool %s" % p["name"])
        return res

    run_module(module, action)


if __name__ == "__main__":
    main()
