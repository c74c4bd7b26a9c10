# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection tarball holds the collection and nothing of the checkout's machinery, and works once installed."""

from __future__ import annotations

import json
import os
import re
import tarfile

from releaselib import BIN, ROOT, isolated_env, run

# Never in a release: caches, virtualenvs, build and test output, the repository's own tooling.
FORBIDDEN = re.compile(r"""(^|/)(
      \.pytest_cache | __pycache__ | [^/]*\.pyc | \.venv[^/]* | \.build | \.ansible | \.cache | \.git
    | tests/output | benchmarks | molecule | scripts | \.ci | Makefile | requirements-dev\.txt
)(/|$)""", re.X)

# What a user of the collection needs, and what ansible-builder and antsibull-docs read from it.
REQUIRED = [
    "MANIFEST.json", "FILES.json", "README.md", "LICENSE", "CHANGELOG.rst", "changelogs/changelog.yaml",
    "meta/runtime.yml", "meta/execution-environment.yml", "requirements.txt", "bindep.txt",
    "plugins/modules/host_facts.py", "plugins/modules/domain.py", "plugins/module_utils/host.py",
    "plugins/doc_fragments/connection.py", "roles/guest/meta/argument_specs.yml",
    "roles/hypervisor/meta/argument_specs.yml", "docs/docsite/extra-docs.yml",
    "docs/docsite/rst/guide_getting_started.rst", "playbooks/demo.yml",
]


def members(path: str) -> list[str]:
    with tarfile.open(path) as tar:
        return [m.name for m in tar.getmembers()]


def test_tarball_holds_no_caches_venvs_or_build_output(tarball: str) -> None:
    names = members(tarball)
    bad = sorted(n for n in names if FORBIDDEN.search(n))
    assert not bad, "%d files that do not belong in the collection, e.g. %s" % (len(bad), bad[:10])
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, "missing from the tarball: %s" % missing
    print("%s: %d files" % (os.path.basename(tarball), len(names)))


def test_tarball_manifest_names_this_collection(tarball: str) -> None:
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
    assert (manifest["namespace"], manifest["name"]) == ("hypervisor", "libvirt")
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as f:
        version = re.search(r"^version:\s*(\S+)", f.read(), re.M).group(1)
    assert manifest["version"] == version


def test_installed_copy_is_the_only_one_ansible_sees(installed: str) -> None:
    out = run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "hypervisor.libvirt", "--format", "json"],
              env=isolated_env(installed)).stdout
    locations = json.loads(out)
    assert list(locations) == [os.path.join(installed, "ansible_collections")], locations
    coll = os.path.join(installed, "ansible_collections", "hypervisor", "libvirt")
    assert not os.path.islink(coll) and os.path.isfile(os.path.join(coll, "MANIFEST.json"))
    doc = json.loads(run([os.path.join(BIN, "ansible-doc"), "--json", "hypervisor.libvirt.host_facts"],
                         env=isolated_env(installed)).stdout)
    assert doc["hypervisor.libvirt.host_facts"]["doc"]["filename"].startswith(coll + "/plugins/modules/")


def test_installed_copy_runs_a_module_and_a_role(installed: str) -> None:
    """host_facts and the guest role from the installed tarball, against libvirt's test:///default driver."""
    playbook = os.path.join(ROOT, "tests", "release", "installed.yml")
    proc = run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", playbook],
               env=isolated_env(installed), cwd=installed, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "hypervisor.libvirt.guest : Define the domain" in proc.stdout
