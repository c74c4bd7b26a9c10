# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An execution environment gets the collection's runtime requirements only: ansible-builder's view of the tarball."""

from __future__ import annotations

import filecmp
import os
import re
import shutil

import pytest
import yaml
from bindep.depends import Depends

from releaselib import BIN, ROOT, WORK, run

EE_FILE = os.path.join(ROOT, "tests", "release", "ee", "execution-environment.yml")
# What the modules import, and nothing else: no controller, no test tools.
RUNTIME_PYTHON = {"libvirt-python", "lxml"}
# The system packages an EE gets (bindep's default profile), per platform: the client library and bindings.
# The client library and its bindings, and xorriso: an execution environment is where the play runs,
# and the guest role makes its cloud-init seed ISOs there (then uploads them through the libvirt URI).
RUNTIME_SYSTEM = {
    "platform:dpkg": {"python3-libvirt", "python3-lxml", "libvirt0", "xorriso"},
    "platform:rpm": {"python3-libvirt", "python3-lxml", "libvirt-libs", "xorriso"},
}
NEVER_IN_EE = re.compile(r"^(libvirt-daemon.*|qemu.*|dnsmasq.*|ebtables|iptables|genisoimage|busybox-static)$")


def requirement_names(lines: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[;\s]", line.strip(), maxsplit=1)[0].lower() for line in lines
            if line.strip() and not line.lstrip().startswith("#")}


def packages(bindep_text: str, *profiles: str) -> set[str]:
    """What bindep installs for these profiles (as the EE's assemble script calls it)."""
    return {rule[0] for rule in Depends(bindep_text).active_rules(list(profiles))}


@pytest.fixture(scope="module")
def gathered(installed: str) -> tuple[list[str], str]:
    """`ansible-builder introspect` over the installed tarball: the pip and bindep files an EE build assembles."""
    pip_file, bindep_file = os.path.join(WORK, "ee-pip.txt"), os.path.join(WORK, "ee-bindep.txt")
    run([os.path.join(BIN, "ansible-builder"), "introspect", installed,
         "--write-pip", pip_file, "--write-bindep", bindep_file])
    with open(pip_file, encoding="utf-8") as f:
        pip_lines = f.read().splitlines()
    with open(bindep_file, encoding="utf-8") as f:
        bindep_text = f.read()
    return pip_lines, bindep_text


def test_builder_gathers_the_runtime_python_requirements_only(gathered: tuple[list[str], str]) -> None:
    pip_lines = gathered[0]
    assert requirement_names(pip_lines) == RUNTIME_PYTHON, pip_lines
    assert all("from collection hypervisor.libvirt" in line for line in pip_lines if line.strip())


@pytest.mark.parametrize("platform", sorted(RUNTIME_SYSTEM))
def test_builder_gathers_client_libraries_not_the_hypervisor(gathered: tuple[list[str], str], platform: str) -> None:
    bindep_text = gathered[1]
    runtime = packages(bindep_text, "default", platform)
    assert runtime == RUNTIME_SYSTEM[platform]
    assert not {p for p in runtime if NEVER_IN_EE.match(p)}
    # the builder stage compiles libvirt-python against the headers; the hypervisor profile keeps the daemons
    assert {"gcc"} < packages(bindep_text, "compile", platform) - runtime
    assert any(p.startswith("libvirt-daemon") for p in packages(bindep_text, "hypervisor", platform))


def test_builder_creates_a_context_with_the_built_tarball(tarball: str) -> None:
    files = os.path.join(WORK, "ee-files")
    os.makedirs(files, exist_ok=True)
    shutil.copyfile(tarball, os.path.join(files, "hypervisor-libvirt.tar.gz"))
    context = os.path.join(WORK, "ee-context")
    shutil.rmtree(context, ignore_errors=True)
    run([os.path.join(BIN, "ansible-builder"), "create", "-f", EE_FILE, "-c", context])
    with open(os.path.join(context, "Containerfile"), encoding="utf-8") as f:
        containerfile = f.read()
    assert "ansible-galaxy collection install" in containerfile
    assert "introspect.py introspect" in containerfile
    with open(os.path.join(context, "_build", "requirements.yml"), encoding="utf-8") as f:
        galaxy = yaml.safe_load(f)
    assert galaxy["collections"] == [{"name": "/build/collections/hypervisor-libvirt.tar.gz", "type": "file"}]
    assert filecmp.cmp(os.path.join(context, "_build", "collections", "hypervisor-libvirt.tar.gz"), tarball, shallow=False)
