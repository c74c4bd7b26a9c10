# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan every changing module shares: one difference record and one recorder.

A difference is ``{path, before, after}``; ``changed`` and ``actions`` come
from what the ``Plan`` recorded, and check mode is honoured at the lowest
mutating call (``Plan.act``): every action is recorded the same way and only
executed when not checking. No Ansible import.
"""

from __future__ import annotations

from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import HypervisorError, OperationFailed


def difference(path: str, before: Any, after: Any) -> dict[str, Any]:
    """One entry of a ``differences`` list: what ``path`` holds now and what it is to hold."""
    return {"path": path, "before": before, "after": after}


class Plan:
    """Records actions; runs them only when not in check mode (the lowest mutating call)."""

    def __init__(self, host: Any, check_mode: bool) -> None:
        self.host = host
        self.check_mode = check_mode
        self.actions: list[str] = []

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def act(self, action: str, fn: Callable[[], Any], settled: Callable[[], bool] | None = None) -> Any:
        """Record ``action`` and run ``fn``; if it fails but ``settled()`` says another
        client already got there (two playbooks at once), the action is not ours."""
        self.actions.append(action)
        if self.check_mode:
            return None
        try:
            return fn()
        except OperationFailed:
            self.actions.pop()
            if settled is not None and settled():
                return None
            raise
        except HypervisorError:
            self.actions.pop()
            raise

    def done(self) -> list[str]:
        """What was really changed so far (nothing in check mode)."""
        return [] if self.check_mode else list(self.actions)


__all__ = ["Plan", "difference"]
