"""Fixtures shared by the module_utils tests."""

from __future__ import annotations

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host


@pytest.fixture
def host():
    """A Host on libvirt's test:///default driver (no daemon; its state lives in this process).
    Test files that need more of it (event threads, networks of their own) define their own."""
    h = Host("test:///default")
    yield h
    h.close()
