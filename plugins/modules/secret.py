#!/usr/bin/python
# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: secret
short_description: Define libvirt secrets and set their values without ever showing them
version_added: 1.2.0
description:
  - Defines a libvirt secret (a Ceph key, an iSCSI CHAP password, a volume's encryption passphrase, a
    TLS key passphrase, a vTPM state key) by its usage, sets its value, or removes it.
  - The value is never returned, logged or shown in a diff; the module's result and diff carry only
    the secret's XML, which holds no value.
  - A secret is found by O(uuid) when given, else by O(usage) (libvirt allows one secret per usage).
author:
  - hypervisor.libvirt contributors (@hypervisor-libvirt)
extends_documentation_fragment:
  - hypervisor.libvirt.connection
options:
  usage:
    description:
      - What the secret is for - C(type) (V(ceph), V(iscsi), V(volume), V(tls), V(vtpm)) and the
        usage's identifier - C(name) for V(ceph), V(tls) and V(vtpm), C(target) for V(iscsi),
        C(volume) (the volume's path) for V(volume).
      - Required to create a secret.
    type: dict
  uuid:
    description: The secret's UUID; libvirt generates one when omitted at creation.
    type: str
  description:
    description: A free text description.
    type: str
  ephemeral:
    description: Keep the secret in memory only (never on disk). Set at creation; defaults to V(false).
    type: bool
  private:
    description: Never reveal the value to any libvirt client. Set at creation; defaults to V(false).
    type: bool
  value:
    description:
      - The secret's value (text; see O(value_encoding)). Never shown.
      - Omit it to manage only the definition.
    type: str
  value_encoding:
    description: V(plain) - O(value) is the value itself; V(base64) - O(value) is the value base64-encoded
      (a Ceph key as C(ceph auth get-key) prints it is the base64 of the key).
    type: str
    choices: [plain, base64]
    default: plain
  update_value:
    description:
      - V(always) - set the value whenever it differs from O(value); V(on_create) - set it only when the
        secret is created or has no value yet.
      - See the notes for how "differs" is decided without reading a private value back.
    type: str
    choices: [always, on_create]
    default: always
  state:
    description: V(present) - defined (with its value when O(value) is given); V(absent) - undefined.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reports exactly what would be done; changes nothing.
  diff_mode:
    support: full
    description: The secret's XML before and after (the value is never part of it).
  idempotent:
    support: full
    description: A second identical run reports no change.
notes:
  - "How an unchanged value is recognised: for a secret that is not private, the value is read back
    from libvirt and compared. A private secret's value cannot be read, so when the module sets a value
    it records a salted, slow hash of it (scrypt) under C(/var/lib/hypervisor-libvirt/secrets/) on the
    machine where the module runs (directory 0700, file 0600 - only root reads or writes there), keyed
    by the hypervisor's host name and the secret's UUID; a later run compares O(value) with that hash. A private secret with a value the
    module did not record (set by someone else) is set once more with O(update_value=always). A value
    changed behind the module's back on a private secret is not detected; use O(update_value=on_create)
    to leave a private secret's value to whoever set it."
  - O(ephemeral) and O(private) cannot change on an existing secret (libvirt keeps them for the
    secret's life); a difference is an error that names the field, unless O(state=absent) first.
seealso:
  - module: hypervisor.libvirt.storage_pool
"""

EXAMPLES = r"""
- name: The Ceph client key of an RBD pool
  hypervisor.libvirt.secret:
    usage: {type: ceph, name: client.libvirt secret}
    private: true
    value: "{{ ceph_client_key }}"
    value_encoding: base64
  no_log: true

- name: An iSCSI CHAP password, set only when the secret is created
  hypervisor.libvirt.secret:
    usage: {type: iscsi, target: iqn.2013-06.com.example:iscsi-pool}
    value: "{{ chap_password }}"
    update_value: on_create

- name: Remove it
  hypervisor.libvirt.secret:
    usage: {type: iscsi, target: iqn.2013-06.com.example:iscsi-pool}
    state: absent
"""

RETURN = r"""
uuid:
  description: The secret's UUID; null when absent (or not yet known in check mode).
  returned: always
  type: str
usage:
  description: The secret's usage (C(type) and its identifier); null when absent.
  returned: always
  type: dict
actions:
  description: What was done (or would be, in check mode), for example V(define), V(set-value), V(undefine).
  returned: always
  type: list
  elements: str
differences:
  description: Fields of the definition that differed (C(path), C(before), C(after)); a value that differs shows as path
    V(value) with V(********) on both sides.
  returned: always
  type: list
  elements: dict
xml:
  description: The secret's XML after the task (it never holds the value); null when absent.
  returned: always
  type: str
"""

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.ansible_libvirt import libvirt_module, run_module
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host
from ansible_collections.hypervisor.libvirt.plugins.module_utils.storage import SecretManager


def main() -> None:
    module = libvirt_module(
        {
            "usage": {"type": "dict"},
            "uuid": {"type": "str"},
            "description": {"type": "str"},
            "ephemeral": {"type": "bool"},
            "private": {"type": "bool"},
            "value": {"type": "str", "no_log": True},
            "value_encoding": {"type": "str", "choices": ["plain", "base64"], "default": "plain"},
            "update_value": {"type": "str", "choices": ["always", "on_create"], "default": "always"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        supports_check_mode=True,
        required_one_of=[("usage", "uuid")],
    )
    p = module.params

    def action() -> dict:
        with Host(p["uri"]) as host:
            res = SecretManager(host, check_mode=module.check_mode).ensure(
                usage=p["usage"], uuid=p["uuid"], description=p["description"], ephemeral=p["ephemeral"],
                private=p["private"], value=p["value"], value_encoding=p["value_encoding"],
                update_value=p["update_value"], state=p["state"])
        before, after = res.pop("before"), res.pop("after")
        res["xml"] = after
        if module._diff:
            res["diff"] = xmlutil.diff_result(before, after, "secret %s" % (res.get("uuid") or ""))
        return res

    run_module(module, action)


if __name__ == "__main__":
    main()
