#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: storage_volume
short_description: Create, clone, resize, upload, download and delete libvirt storage volumes
version_added: 1.2.0
description:
  - Manages one volume of a libvirt storage pool through the libvirt API alone - a new empty volume,
    a copy-on-write overlay over a backing volume, a full clone of another volume (also from another
    pool), or a volume filled from a file on the machine the module runs on. Nothing needs to exist on
    the hypervisor but libvirtd, so it works the same over V(qemu+ssh://) URIs.
  - Uploads and downloads go through a libvirt stream and are sparse-aware (holes are neither read nor
    sent nor written). An upload whose source file is unchanged since the last upload into this volume is
    not repeated; see the notes for how that is decided.
  - Capacity only grows by default; shrinking needs O(allow_shrink=true).
  - A volume that is a disk of any defined domain (matched by path) is not deleted without O(force=true).
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  pool:
    description: The pool that holds (or is to hold) the volume. It must be running.
    type: str
    required: true
  name:
    description: The volume's name in the pool (no C(/); for V(logical) pools the LV name).
    type: str
    required: true
  state:
    description: V(present) - the volume exists as asked; V(absent) - it is deleted.
    type: str
    choices: [present, absent]
    default: present
  capacity:
    description:
      - The volume's size - an integer number of bytes, or a number with one of libvirt's units
        (V(K), V(KiB), V(M), V(MiB), V(G), V(GiB), V(T), V(TiB) are powers of 1024; V(KB), V(MB),
        V(GB), V(TB) powers of 1000; V(b) or V(bytes) bytes) such as V(10G) or V(512MiB).
      - Required to create a volume unless O(backing), O(clone_from) or O(src) gives it. A larger
        value than the current capacity grows the volume (C(virStorageVolResize)); a smaller one is
        an error unless O(allow_shrink=true).
      - A volume that is the disk of a running domain is grown through that domain (C(virDomainBlockResize)),
        since QEMU holds the image open; the guest sees the new size at once. Such a disk is never shrunk, and
        a volume in the backing chain of a running domain's disk is not resized (both are errors naming
        O(capacity)).
    type: raw
  allocation:
    description: Space to allocate up front at creation, in the units of O(capacity) (V(0) - sparse). Not changed afterwards.
    type: raw
  format:
    description:
      - The volume's format - V(raw), V(qcow2), ... for file-based pools. Defaults to V(qcow2) with
        O(backing), to the format of the file (V(qcow2) or V(raw), read from its header) with O(src),
        to the source volume's format with O(clone_from), and to V(raw) otherwise.
      - Only set at creation; an existing volume of another format is an error, not converted.
    type: str
  permissions:
    description: C({mode, owner, group, label}) of the volume's file, set at creation.
    type: dict
  backing:
    description:
      - Create the volume as a copy-on-write overlay over a backing volume - C(pool) and C(name) of a
        volume, or C(path) of any image the hypervisor can open; C(format) is the backing image's format
        (read from the backing volume when omitted).
      - The capacity defaults to the backing image's - a volume's as libvirt reports it, or, for a C(path) that
        no pool holds, the image's own (qcow2 header, raw file length) where the URI names this machine; a larger
        O(capacity) makes a larger overlay. Over a remote URI, an image outside any pool needs O(capacity).
    type: dict
  clone_from:
    description:
      - Create the volume as a full copy of another volume, C({pool, name}) (C(pool) defaults to O(pool)),
        through C(virStorageVolCreateXMLFrom); works across pools and converts to O(format).
    type: dict
  src:
    description:
      - A file on the machine where the module runs to upload into the volume (sparse-aware). The volume
        is created to hold it when it does not exist. With O(capacity), a volume whose image is smaller is
        grown after the upload.
    type: path
  dest:
    description:
      - A file on the machine where the module runs to download the volume into (holes stay holes).
        An existing file is replaced only when its size or SHA-256 differ from the volume's content.
    type: path
  allow_shrink:
    description:
      - Allow O(capacity) to shrink an existing volume (data past the new end is lost).
      - libvirt itself refuses to shrink a volume below the space it has allocated.
    type: bool
    default: false
  wipe:
    description: With O(state=absent), overwrite the volume's data with zeros (C(virStorageVolWipe)) before deleting it.
    type: bool
    default: false
  force:
    description: With O(state=absent), delete the volume even though a defined domain has it as a disk.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports exactly which actions would run and the volume that would result; changes nothing.
  diff_mode:
    support: full
    description: The volume's XML before and after (capacity, format, backing store).
  idempotent:
    support: full
    description: A second identical run reports no change (an unchanged O(src) is not uploaded again).
notes:
  - "How an unchanged upload is recognised: after an upload the module records the source's size and
    SHA-256 together with the volume's key in a marker file under C(/var/lib/hypervisor-libvirt/uploads/)
    on the machine where the module runs (directory mode 0700, file 0600 - only root writes there), keyed
    by the hypervisor's host name, the pool's UUID and the volume's key (so every URI that reaches the
    hypervisor finds it). A later run for the same volume with a source of the same size and checksum
    does not upload. A volume deleted and made again has a new marker; a
    volume changed after the upload by something else (a guest writing to it) is not uploaded over. When
    the marker directory cannot be written (not root), every run uploads and RV(upload_recorded) is false."
  - Errors in the input (a capacity of V(10XB), a backing volume that does not exist, a name with C(/),
    an unknown key in O(backing)) fail naming the field before anything is changed.
seealso:
  - module: hypervisor.libvirt.storage_pool
"""

EXAMPLES = r"""
- name: Upload a base image from the controller (only the first time, or when the file changes)
  hypervisor.libvirt.storage_volume:
    uri: qemu+ssh://root@hv1/system
    pool: images
    name: debian-12-base.qcow2
    src: /srv/images/debian-12-generic-amd64.qcow2

- name: A 20 GiB copy-on-write disk over it
  hypervisor.libvirt.storage_volume:
    uri: qemu+ssh://root@hv1/system
    pool: images
    name: web1-disk0.qcow2
    backing: {pool: images, name: debian-12-base.qcow2}
    capacity: 20G

- name: A full clone into another pool
  hypervisor.libvirt.storage_volume:
    pool: fast
    name: db1-disk0.qcow2
    clone_from: {pool: images, name: debian-12-base.qcow2}

- name: Grow it
  hypervisor.libvirt.storage_volume:
    pool: fast
    name: db1-disk0.qcow2
    capacity: 40GiB

- name: Download it to the controller
  hypervisor.libvirt.storage_volume:
    pool: fast
    name: db1-disk0.qcow2
    dest: /srv/backup/db1-disk0.qcow2

- name: Delete the overlay
  hypervisor.libvirt.storage_volume:
    pool: images
    name: web1-disk0.qcow2
    state: absent
"""

RETURN = r"""
pool:
  description: The pool's name.
  returned: always
  type: str
name:
  description: The volume's name.
  returned: always
  type: str
path:
  description: The volume's path on the hypervisor (what a domain's disk names); null when absent.
  returned: always
  type: str
  sample: /var/lib/libvirt/images/web1-disk0.qcow2
key:
  description: libvirt's unique key of the volume; null when absent (or not yet known in check mode).
  returned: always
  type: str
capacity:
  description: The volume's capacity in bytes (predicted in check mode); null when absent.
  returned: always
  type: int
allocation:
  description: Bytes allocated on the storage; null when absent (or not yet known in check mode).
  returned: always
  type: int
format:
  description: The volume's format (V(raw), V(qcow2), ...); null when absent or the pool has none.
  returned: always
  type: str
backing:
  description: The backing store's C(path) and C(format); null when the volume has none.
  returned: always
  type: dict
actions:
  description: What was done (or would be, in check mode), in order, for example V(create), V(upload), V(resize).
  returned: always
  type: list
  elements: str
differences:
  description: What differed from the request (C(path), C(before), C(after)).
  returned: always
  type: list
  elements: dict
resized_through:
  description: When the volume was grown as the disk of a running domain - that domain's C(domain) name and the disk's C(target).
  returned: when a running domain's disk was grown
  type: dict
  sample: {domain: web1, target: vda}
upload_recorded:
  description: With O(src), whether the upload is recorded so that an unchanged source is not uploaded again.
  returned: when O(src) is given
  type: bool
xml:
  description: The volume's XML after the task; null when absent or in check mode before creation.
  returned: always
  type: str
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host
from ansible_collections.hypervisor.libvirt.plugins.module_utils.storage import VolumeManager


def main() -> None:
    module = libvirt_module(
        {
            "pool": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "capacity": {"type": "raw"},
            "allocation": {"type": "raw"},
            "format": {"type": "str"},
            "permissions": {"type": "dict"},
            "backing": {"type": "dict"},
            "clone_from": {"type": "dict"},
            "src": {"type": "path"},
            "dest": {"type": "path"},
            "allow_shrink": {"type": "bool", "default": False},
            "wipe": {"type": "bool", "default": False},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
        mutually_exclusive=[("backing", "clone_from"), ("backing", "src"), ("clone_from", "src"), ("src", "dest")],
    )
    p = module.params

    def action() -> dict:
        with Host(p["uri"]) as host:
            res = VolumeManager(host, check_mode=module.check_mode).ensure(
                p["pool"], p["name"], state=p["state"], capacity=p["capacity"], allocation=p["allocation"],
                fmt=p["format"], permissions=p["permissions"], backing=p["backing"], clone_from=p["clone_from"],
                src=p["src"], dest=p["dest"], allow_shrink=p["allow_shrink"], wipe=p["wipe"], force=p["force"])
        before, after = res.pop("before"), res.pop("after")
        if module._diff:
            res["diff"] = xmlutil.diff_result(before, after, "volume %s/%s" % (p["pool"], p["name"]))
        return res

    run_module(module, action)


if __name__ == "__main__":
    main()
