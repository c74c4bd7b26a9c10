# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt storage: pools, volumes and secrets (interfaces first; implementation follows)."""

from __future__ import annotations

from typing import Any


class PoolManager:
    """Converges one storage pool."""

    def __init__(self, host: Any, check_mode: bool = False) -> None:
        self.host = host
        self.check_mode = check_mode


class VolumeManager(PoolManager):
    """Converges one storage volume."""


class SecretManager(PoolManager):
    """Converges one secret."""
