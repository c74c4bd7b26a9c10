# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every benchmark script needs: the repository's paths, the collection importable, a log line."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
COLLECTIONS = os.path.join(ROOT, ".build", "collections")
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def ensure_collection() -> None:
    """hypervisor.libvirt importable from this checkout, as `make collection` and tests/conftest.py make it."""
    link = os.path.join(COLLECTIONS, "ansible_collections", "hypervisor", "libvirt")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)


def log(msg: str, tag: str = "bench") -> None:
    print("[%s] %s" % (tag, msg), flush=True)
