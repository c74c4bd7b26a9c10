# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Ansible side of every module: the shared ``uri`` option, dependency checks, failing.

This is the only module_utils file that imports Ansible; host.py, guest.py,
firewall.py and vif.py never do.
"""

from __future__ import annotations

from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import (
    LIBVIRT_IMPORT_ERROR,
    LXML_IMPORT_ERROR,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import HypervisorError, InvalidSpec

# Paired with the doc fragment hypervisor.libvirt.connection: change both together.
CONNECTION_ARGUMENT_SPEC: dict[str, Any] = {
    "uri": {"type": "str", "default": "qemu:///system"},
}


def libvirt_module(argument_spec: dict[str, Any], **kwargs: Any) -> AnsibleModule:
    """An AnsibleModule with ``uri`` added that fails early if libvirt-python or lxml is missing."""
    spec = dict(CONNECTION_ARGUMENT_SPEC)
    spec.update(argument_spec)
    module = AnsibleModule(argument_spec=spec, **kwargs)
    if LIBVIRT_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    if LXML_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("lxml"), exception=LXML_IMPORT_ERROR)
    return module


def run_module(module: AnsibleModule, action: Callable[[], dict[str, Any]]) -> None:
    """Run the module's action; the collection's errors become one-line ``fail_json``."""
    try:
        result = action()
    except InvalidSpec as exc:
        module.fail_json(msg=str(exc), path=exc.path)
    except HypervisorError as exc:
        module.fail_json(msg=str(exc), uri=exc.uri)
    module.exit_json(**result)
