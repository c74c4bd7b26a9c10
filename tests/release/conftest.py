# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release as a user receives it: the collection tarball, built once, installed into an empty path."""

from __future__ import annotations

import os
import shutil

import pytest

from releaselib import BIN, ROOT, WORK, isolated_env, run


@pytest.fixture(scope="session")
def tarball() -> str:
    """`ansible-galaxy collection build` of the checkout, as a release would make it."""
    dist = os.path.join(WORK, "dist")
    shutil.rmtree(dist, ignore_errors=True)
    os.makedirs(dist)
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", dist, ROOT], cwd=ROOT)
    (name,) = [n for n in os.listdir(dist) if n.endswith(".tar.gz")]
    return os.path.join(dist, name)


@pytest.fixture(scope="session")
def installed(tarball: str) -> str:  # pylint: disable=redefined-outer-name
    """The tarball installed with ansible-galaxy into an empty collections path; returns that path."""
    path = os.path.join(WORK, "collections")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "-p", path, tarball],
        cwd=WORK, env=isolated_env(path))
    return path
