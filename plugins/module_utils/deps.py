# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guarded imports of the third-party libraries the collection needs.

Every module_utils file imports libvirt and lxml from here, so a missing
library is reported once, by the module, as ``missing_required_lib``.
"""

from __future__ import annotations

import traceback

try:
    import libvirt
except ImportError:  # pragma: no cover - depends on the target's packages
    libvirt = None
    LIBVIRT_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None

try:
    from lxml import etree
except ImportError:  # pragma: no cover - depends on the target's packages
    etree = None
    LXML_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    LXML_IMPORT_ERROR = None

__all__ = ["libvirt", "etree", "LIBVIRT_IMPORT_ERROR", "LXML_IMPORT_ERROR"]
