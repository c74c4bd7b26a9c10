# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the release tests share: paths, commands whose output a failure shows, an Ansible that sees one collections path."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(ROOT, ".build", "release")
BIN = os.path.dirname(sys.executable)


def run(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """A command; with check, a failure is an assertion that shows its output."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    assert not check or proc.returncode == 0, "%s: rc %d\n%s\n%s" % (
        " ".join(argv), proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def isolated_env(collections_path: str) -> dict[str, str]:
    """Ansible that sees only COLLECTIONS_PATH: not the checkout's link, not site-packages, no ansible.cfg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    os.makedirs(WORK, exist_ok=True)
    cfg = os.path.join(WORK, "empty-ansible.cfg")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write("[defaults]\n")
    env.update({
        "ANSIBLE_CONFIG": cfg,
        "ANSIBLE_COLLECTIONS_PATH": collections_path,
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_ROLES_PATH": os.path.join(WORK, "no-roles"),
        "ANSIBLE_LOCAL_TEMP": os.path.join(WORK, "tmp"),
    })
    return env
