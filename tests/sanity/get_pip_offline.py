"""Offline stand-in for ansible-test's pip bootstrap (get_pip_24_2.py).

ansible-test downloads get-pip.py to bootstrap pip in its sanity venvs; this
machine reaches only package registries, so tests/sanity/run.sh installs this
file in its place: ensurepip provides pip, then pip installs what was asked.
"""

from __future__ import annotations

import os
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
env = dict(os.environ)
env.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null, hiding this machine's pip settings
if args:
    subprocess.check_call([sys.executable, "-m", "pip", "install"] + args, env=env)
