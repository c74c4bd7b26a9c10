#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: domain
short_description: Define, start, stop and remove libvirt domains, idempotently
version_added: 1.0.0
description:
  - Makes a libvirt domain (guest) match a definition - a guest spec (O(spec)) or raw domain XML
    (O(xml)) - and a run state (O(state)).
  - Whether the definition changed is decided semantically, never by comparing text. With O(spec),
    the fields the user gave are compared with libvirt's inactive XML parsed back into spec terms.
    With O(xml), every element, attribute and text the user wrote must be in libvirt's inactive XML
    with the same value (memory units scaled, machine aliases such as V(pc) resolved); what libvirt
    adds inside an element the user wrote (PCI addresses, MACs, driver defaults) is not a change.
    Among the children of C(<domain>) and C(<devices>), anything libvirt holds that the XML does not
    is a change (a removed disk), except what libvirt adds itself - C(uuid), C(currentMemory), C(cpu),
    C(clock), C(on_poweroff), C(on_reboot), C(on_crash), C(pm), C(resource), C(seclabel) at the top,
    and C(emulator), C(controller), C(input), C(audio), C(memballoon), C(console), C(video) among
    the devices; leaving one of those out keeps libvirt's value. The order of devices of one kind is
    not compared.
  - With O(spec), the keys given are the ones managed. Redefining an existing domain replaces what
    those keys describe and keeps everything else libvirt holds - a spec of C(name), C(memory) and
    C(disks) changes the memory and the disk list, and leaves the title, CPU, graphics, interfaces and
    so on as they are. To remove every device of a kind, give its key an empty list (C(graphics) set to C([])).
    Devices that stay (same disk target, interface MAC, host device) keep their PCI addresses.
    O(xml) is always the whole definition.
  - An existing domain keeps its UUID, and its interfaces keep their MAC addresses, when it is
    redefined from a definition that does not name them.
  - Before a definition is written, the networks and nwfilters its interfaces name must exist; with
    O(state=running) or O(state=paused) on a local URI, the kernel, initrd and file disks it boots from
    must exist too, so that a start cannot fail after the definition was changed.
  - A change to the definition of a running domain is written to its persistent config and reported
    with RV(pending_restart); the guest is only restarted when O(restart_on_change=true).
  - Two runs converging the same domain at once end in one definition; a run that loses the race
    re-reads the domain and carries on.
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  name:
    description:
      - Name of the domain.
      - Optional when O(spec) or O(xml) names it; when both are given they must agree.
    type: str
  spec:
    description:
      - The guest spec (the same dict as M(hypervisor.libvirt.guest_xml) takes) - C(name), C(type),
        C(memory) (MiB), C(vcpus), C(os), C(disks), C(interfaces), ...
      - Unknown keys and bad values are errors naming the field, before anything is touched.
      - Graphics passwords (C(graphics[].password), C(passwd) in O(xml)) are compared with libvirt's
        secure XML, kept by a redefinition, and masked in RV(differences), RV(xml), the diff and the logs.
      - Mutually exclusive with O(xml).
    type: dict
  xml:
    description:
      - Raw domain XML, for definitions the spec does not cover. It must validate against
        libvirt's C(domain.rng).
      - Mutually exclusive with O(spec).
    type: str
  state:
    description:
      - V(present) - defined; a running domain keeps running, a stopped one stays stopped.
      - V(running) - defined and running (started, or resumed if paused).
      - V(paused) - defined and running with its vCPUs paused (started paused if stopped).
      - V(shutdown) - stopped gracefully - the ACPI power button is pressed and the module waits
        for libvirt's lifecycle event, up to O(shutdown_timeout); then it powers the guest off
        if O(force=true), else fails.
      - V(destroyed) - powered off at once (virDomainDestroy).
      - V(absent) - undefined. A running domain is only removed with O(force=true). Disk images
        stay unless O(remove_storage=true).
      - Without O(spec) and O(xml), the states other than V(absent) act on an existing domain.
    type: str
    choices: [present, running, paused, shutdown, destroyed, absent]
    default: present
  autostart:
    description:
      - Start the domain when libvirtd starts. Left as is when not given.
    type: bool
  shutdown_timeout:
    description:
      - Seconds to wait for a graceful shutdown (O(state=shutdown), or a restart with O(restart_on_change)).
    type: float
    default: 120
  force:
    description:
      - Power the domain off when a graceful shutdown times out, and allow O(state=absent) to
        remove a running domain (it is powered off first).
    type: bool
    default: false
  restart_on_change:
    description:
      - When the running domain's live configuration differs from the definition, shut it down
        gracefully (see O(shutdown_timeout) and O(force)) and start it again so the change applies.
    type: bool
    default: false
  remove_storage:
    description:
      - With O(state=absent), also delete the domain's writable file disks (C(<disk type='file'
        device='disk'>), not read-only, not shareable). Files a storage pool holds are deleted through
        the pool; others are unlinked (local URIs only).
      - A file is kept when any other domain uses it - as a disk, or anywhere in a disk's backing chain
        (C(qemu-img info --backing-chain), and libvirt's C(<backingStore>) of running domains) - decided
        on the real file (symlinks and C(/./) resolved, then device and inode) on a local URI. Only
        regular files holding an image of the disk's format are unlinked (a raw image is whole 512-byte
        sectors); a symlink, a device node or a text file named as a disk stays.
      - When one file cannot be removed the others still are, and the task fails naming it.
      - RV(removed_storage) names every file removed. Block, network and CD-ROM disks are never touched.
    type: bool
    default: false
  remove_files:
    description:
      - With O(state=absent), also delete these files - the storage a role or playbook made for the
        domain (its disks, seed ISO, ...) - also when the domain is already gone.
      - Only regular files are deleted (never a symlink, a device node or what they point at), and only
        those no domain uses, as a disk or in a disk's backing chain (decided on the real file, by device
        and inode). Directories in the list are removed when they are empty by then.
      - With O(remove_files_under), only what really lies under that directory (symlinks resolved).
      - Local URIs only. RV(removed_storage) names what was removed.
    type: list
    elements: path
  remove_files_under:
    description:
      - The directory O(remove_files) must lie under; anything outside it is kept.
    type: path
  keep_nvram:
    description:
      - With O(state=absent), keep the domain's UEFI NVRAM file (V(true)) or delete it with the definition.
    type: bool
    default: true
  remove_managed_save:
    description:
      - With O(state=absent), remove a managed save image with the domain; without it such a domain
        is not removed (an error says why).
    type: bool
    default: false
  remove_snapshots_metadata:
    description:
      - With O(state=absent), remove libvirt's snapshot metadata with the domain; without it a domain
        with snapshots is not removed (an error says why). Snapshot data inside disk images stays.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Predicts RV(changed), RV(actions), RV(state) and RV(differences) exactly and changes
      nothing. For a definition that would change, RV(xml) and the diff show the XML that would be
      defined, before libvirt adds its defaults.
  diff_mode:
    support: full
    description: Before and after inactive domain XML, normalised (attribute order and whitespace do not show).
  idempotent:
    support: full
    description: A second identical run reports no change, for every state and every spec field.
notes:
  - O(state=shutdown) needs a guest that acts on the ACPI power button; the wait is driven by
    libvirt's lifecycle events, so the module returns as soon as the guest is off.
seealso:
  - module: hypervisor.libvirt.guest_xml
  - module: hypervisor.libvirt.host_facts
"""

EXAMPLES = r"""
- name: Define and start a small guest from a spec
  hypervisor.libvirt.domain:
    spec:
      name: web1
      type: qemu
      memory: 512
      vcpus: 1
      os:
        kernel: /var/lib/libvirt/images/web1/vmlinuz
        initrd: /var/lib/libvirt/images/web1/initrd.img
        cmdline: console=ttyS0
      features: [acpi, apic]
      interfaces:
        - type: network
          source: default
          model: virtio
    state: running
    autostart: true

- name: Define a guest from raw XML, without starting it
  hypervisor.libvirt.domain:
    xml: "{{ lookup('ansible.builtin.file', 'web2.xml') }}"
    state: present

- name: Apply a changed definition and restart the guest if its live config differs
  hypervisor.libvirt.domain:
    spec: "{{ web1_spec }}"
    state: running
    restart_on_change: true
  register: web1

- name: Tell whether a restart is still due
  ansible.builtin.debug:
    msg: "web1 needs a restart: {{ web1.pending_restart }}"

- name: Shut a guest down gracefully, powering it off after 60 s
  hypervisor.libvirt.domain:
    name: web1
    state: shutdown
    shutdown_timeout: 60
    force: true

- name: Pause, then resume
  hypervisor.libvirt.domain:
    name: web1
    state: "{{ item }}"
  loop: [paused, running]

- name: Remove a guest and its own disk images, even if it runs
  hypervisor.libvirt.domain:
    name: web1
    state: absent
    force: true
    remove_storage: true
"""

RETURN = r"""
changed:
  description: Whether anything was (or, in check mode, would be) done.
  type: bool
  returned: always
actions:
  description:
    - What was done, in order - V(define), V(autostart), V(no_autostart), V(start), V(start_paused),
      V(pause), V(resume), V(shutdown), V(destroy), V(undefine), V(remove_storage), V(remove_files).
  type: list
  elements: str
  returned: always
  sample: [define, start]
state:
  description: The domain's state afterwards - V(running), V(paused), V(shutoff) or V(absent) (predicted in check mode).
  type: str
  returned: always
  sample: running
pending_restart:
  description: The domain runs with a live configuration that differs from the definition asked for.
  type: bool
  returned: always
differences:
  description: What differed between the definition asked for and libvirt's, one entry per field
    with C(path), C(before) and C(after). Empty when the definition already matched.
  type: list
  elements: dict
  returned: always
  sample: [{path: memory, before: "196608 KiB", after: "256 MiB"}]
xml:
  description: The domain's inactive XML afterwards (in check mode, the XML that would be defined).
    Empty when the domain is absent.
  type: str
  returned: always
uuid:
  description: The domain's UUID; V(null) when absent (or not yet defined, in check mode).
  type: str
  returned: always
removed_storage:
  description: Files (and directories) deleted, or in check mode that would be, with O(remove_storage=true)
    and O(remove_files).
  type: list
  elements: str
  returned: when O(state=absent)
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.domain import STATES, DomainRequest, converge, secret_values
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host

_OPTIONS = ("name", "spec", "xml", "state", "autostart", "shutdown_timeout", "force", "restart_on_change",
            "remove_storage", "keep_nvram", "remove_managed_save", "remove_snapshots_metadata", "remove_files",
            "remove_files_under")


def main() -> None:
    module = libvirt_module(
        {
            "name": {"type": "str"},
            "spec": {"type": "dict"},
            "xml": {"type": "str"},
            "state": {"type": "str", "choices": list(STATES), "default": "present"},
            "autostart": {"type": "bool"},
            "shutdown_timeout": {"type": "float", "default": 120},
            "force": {"type": "bool", "default": False},
            "restart_on_change": {"type": "bool", "default": False},
            "remove_storage": {"type": "bool", "default": False},
            "keep_nvram": {"type": "bool", "default": True},
            "remove_managed_save": {"type": "bool", "default": False},
            "remove_snapshots_metadata": {"type": "bool", "default": False},
            "remove_files": {"type": "list", "elements": "path"},
            "remove_files_under": {"type": "path"},
        },
        mutually_exclusive=[("spec", "xml")],
        required_one_of=[("name", "spec", "xml")],
        supports_check_mode=True,
    )

    # graphics passwords never reach a log, -vvv's invocation, differences or the diff
    module.no_log_values.update(secret_values(module.params["spec"], module.params["xml"]))

    def action() -> dict:
        request = DomainRequest(**{k: module.params[k] for k in _OPTIONS})
        with Host(module.params["uri"]) as host:
            host.initialize()
            result = converge(host, request, check_mode=module.check_mode)
        if not module._diff:
            result.pop("diff")
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
