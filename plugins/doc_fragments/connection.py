# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Paired with CONNECTION_ARGUMENT_SPEC in module_utils/ansible_libvirt.py.
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - The libvirt connection URI, for example V(qemu:///system), V(qemu+ssh://root@hv1/system)
        or V(test:///default).
      - Set it once for a play with C(module_defaults) and the action group C(group/hypervisor.libvirt.libvirt).
    type: str
    default: qemu:///system
requirements:
  - libvirt-python
  - lxml
notes:
  - Remote URIs are opened from the host the module runs on; libvirt's own transports
    (ssh, tls) and their authentication apply.
"""
