#!/usr/bin/env python
"""Read {"spec": ..., "xml": ...} on stdin; print what libvirt did not keep, as JSON.

The managed fields of the dumped-back domain are compared with the normalised
spec by guest.spec_differences, the same comparison the domain module uses.
"""
from __future__ import annotations

import json
import os
import sys

for path in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep):
    if path and path not in sys.path:
        sys.path.insert(0, path)

from ansible_collections.hypervisor.libvirt.plugins.module_utils import guest  # noqa: E402
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import validate_spec  # noqa: E402

data = json.load(sys.stdin)
desired = validate_spec(data["spec"])
current = guest.parse_domain_xml(data["xml"])
print(json.dumps({"differences": guest.spec_differences(desired, current), "current": current}, default=str))
