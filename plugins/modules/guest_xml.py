#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: guest_xml
short_description: Build libvirt domain XML from a structured guest spec
version_added: 1.0.0
description:
  - Turns a guest spec (one dict in libvirt's own vocabulary, snake_case) into domain XML,
    validated against libvirt's RelaxNG C(domain.rng) when the schemas are installed.
  - Pure by default - no libvirt connection is opened unless O(uri) is set. With O(uri),
    host-dependent defaults come from that host's capabilities - domain type (V(kvm) when
    the host offers it and KVM really runs guest code there, else V(qemu); on a local URI a
    nested KVM that hangs is detected by booting a tiny probe firmware once per boot), architecture, machine type, emulator path and the UEFI
    loader for C(os.firmware=efi) in O(spec). A C(type) in the spec always wins.
  - Returns the normalised spec too (sizes in MiB, disk targets derived, defaults made explicit),
    the form the M(hypervisor.libvirt.domain) module compares against.
  - Never changes anything.
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  uri:
    description:
      - Unlike other modules of the collection, this one has B(no default) URI; when unset
        no connection is made and nothing host-specific is written (libvirt fills it in at define time).
      - Set it (also through C(module_defaults)) to take host-dependent defaults from that host.
    type: str
    default: null
  spec:
    description:
      - The guest. Required keys are C(name) and C(memory); every other key is optional.
      - Sizes are MiB integers or strings with a unit (V(2GiB), V(512M), V(1 TiB)).
      - "Top level: C(name), C(uuid), C(type), C(title), C(description), C(metadata) (a dict,
        stored as JSON in C(<hvl:metadata xmlns:hvl='https://hypervisor.libvirt/xmlns/1.0'>)),
        C(memory), C(current_memory), C(vcpus), C(on_poweroff), C(on_reboot), C(on_crash)."
      - "C(cpu): C(mode) (host-passthrough, host-model, custom, maximum), C(model), C(fallback),
        C(vendor), C(features) ({name: force|require|optional|disable|forbid}),
        C(topology) ({sockets, dies, cores, threads}; the product must equal C(vcpus)),
        C(numa) (list of {id, cpus, memory, mem_access})."
      - "C(cputune) ({vcpupin: {vcpu: cpuset}, emulatorpin}), C(numatune) ({mode, nodeset,
        memnodes: [{cellid, mode, nodeset}]}), C(memory_backing) ({hugepages: true or
        [{size, nodeset}], locked, nosharepages})."
      - "C(os): C(arch), C(machine), C(firmware) (bios, efi), C(secure_boot), C(boot)
        (list of hd, cdrom, network, fd), C(kernel), C(initrd), C(cmdline).
        C(features): a list of names or a dict {name: bool} (acpi, apic, pae, hap, smm, pmu, ...).
        C(clock): {offset, timezone, timers: [{name, present, tickpolicy}]}."
      - "C(sysinfo): {bios, system, base_board, chassis: {entry: value}, oem_strings: [..]},
        written as SMBIOS with C(<smbios mode='sysinfo'/>)."
      - "C(disks): list of {type (file, block, network; guessed from the source), device (disk,
        cdrom, lun, floppy), source (a path, or for network {protocol, name, hosts: [{name, port}],
        auth: {username, secret_type, secret_uuid or secret_usage}}), target (derived per bus
        when left out - vda, sda, hda), bus (virtio, scsi, sata, ide, usb; cdroms default to sata),
        format, cache, io, discard, readonly, shareable, serial, boot_order}. A scsi disk adds
        the virtio-scsi controller."
      - "C(interfaces): list of {type (network, bridge, direct, ethernet, user), source (network or
        bridge name; for direct {dev, mode}), mac, model (default virtio), mtu, queues, link_state,
        vlan (a tag, a list of tags, or {tags, trunk}), virtualport ({type, parameters}),
        bandwidth ({inbound, outbound: {average, peak, burst, floor}}),
        filter ({name, parameters: {IP: value or list}}), target, boot_order}."
      - "C(hostdevs): list of PCI addresses V(0000:03:00.1) or {pci, managed, rom_bar}.
        C(graphics) (a dict or list of {type vnc|spice, listen, port, autoport, password, keymap}),
        C(video) ({model, vram, heads}), C(serials), C(consoles) and C(channels) (lists of {type
        pty|file|unix|tcp|..., path, host, port, mode, log, target_port, target_type, name}),
        C(rng) ({model, backend}), C(tpm) ({model, type emulator|passthrough, version, path}),
        C(watchdog) ({model, action}), C(memballoon) ({model, period})."
      - "Unknown keys and bad values are errors naming the path, for example
        C(disks[1].bus: 'virtio2' is not one of virtio, scsi, sata, ide, usb, fdc)."
    type: dict
    required: true
  validate:
    description:
      - Validate the XML against libvirt's C(domain.rng). Skipped silently when the schemas are not installed.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Does the same in check mode; it never changes anything.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  idempotent:
    support: full
    description: Read-only; always C(changed=false).
notes:
  - The generated XML is what M(hypervisor.libvirt.domain) defines for the same spec.
seealso:
  - name: libvirt domain XML format
    description: The elements and attributes the spec's keys map to.
    link: https://libvirt.org/formatdomain.html
"""

EXAMPLES = r"""
- name: Build the XML of a small guest, without talking to libvirt
  hypervisor.libvirt.guest_xml:
    spec:
      name: web1
      type: qemu
      memory: 1GiB
      vcpus: 2
      features: [acpi, apic]
      disks:
        - source: /var/lib/libvirt/images/web1.qcow2
          format: qcow2
        - device: cdrom
          source: /var/lib/libvirt/images/seed.iso
      interfaces:
        - source: default
      serials: [{}]
      graphics: {type: vnc, listen: 127.0.0.1}
  register: web1

- name: Show it
  ansible.builtin.debug:
    var: web1.xml

- name: Let the local hypervisor choose domain type, machine and emulator
  hypervisor.libvirt.guest_xml:
    uri: qemu:///system
    spec:
      name: web2
      memory: 512
      os: {firmware: efi}
  register: web2

- name: Write the XML somewhere
  ansible.builtin.copy:
    content: "{{ web2.xml }}"
    dest: /tmp/web2.xml
    mode: "0600"
"""

RETURN = r"""
xml:
  description: The domain XML.
  returned: always
  type: str
  sample: "<domain type=\"qemu\">\n  <name>web1</name>\n  <memory unit=\"MiB\">1024</memory>\n ..."
spec:
  description:
    - The normalised spec - sizes in MiB, PCI addresses and CPU lists in libvirt's form, disks with
      their type, device, bus and target in libvirt's order, defaults made explicit where the XML needs them.
  returned: always
  type: dict
  sample: {name: web1, type: qemu, memory: 1024, vcpus: 2, disks: [{type: file, device: disk, bus: virtio, target: vda}]}
validated:
  description: Whether the XML was checked against libvirt's RelaxNG schema.
  returned: always
  type: bool
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils import guest, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import validate_spec
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host


def main() -> None:
    module = libvirt_module(
        {
            "uri": {"type": "str", "default": None},  # no connection unless asked for
            "spec": {"type": "dict", "required": True},
            "validate": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )

    def action() -> dict:
        spec = validate_spec(module.params["spec"])
        if module.params["uri"]:
            with Host(module.params["uri"], read_only=True) as host:
                dom = guest.guest_config(spec, host)
        else:
            dom = guest.guest_config(spec)
        validated = xmlutil.validate(dom, "domain", what="spec") if module.params["validate"] else False
        return {"changed": False, "xml": xmlutil.to_string(dom), "spec": spec, "validated": validated}

    run_module(module, action)


if __name__ == "__main__":
    main()
