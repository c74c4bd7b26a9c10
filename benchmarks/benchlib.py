# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every benchmark script needs: the repository's paths, the collection importable, a log line,
and a loopback sshd for measuring over ``qemu+ssh://``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

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


@contextlib.contextmanager
def loopback_sshd(tmp: str) -> Iterator[str]:
    """An sshd on 127.0.0.1 with keys made for it in ``tmp``; yields a ``qemu+ssh://`` URI of this machine's
    libvirtd through it (its own client key and known_hosts; nothing of root's ssh set-up is read).
    The sshd is stopped on the way out, also on failure."""
    def keygen(name: str) -> str:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hvl-bench-" + name,
                        "-f", os.path.join(tmp, name)], check=True)
        with open(os.path.join(tmp, name + ".pub")) as f:
            return f.read()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host_pub, client_pub = keygen("host_key"), keygen("client_key")
    files = {
        "authorized_keys": client_pub,
        "known_hosts": "[127.0.0.1]:%d %s" % (port, host_pub),
        "sshd_config": "".join(line + "\n" for line in (
            "ListenAddress 127.0.0.1", "Port %d" % port, "HostKey %s/host_key" % tmp, "PidFile %s/sshd.pid" % tmp,
            "AuthorizedKeysFile %s/authorized_keys" % tmp, "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "AllowUsers root")),
        "ssh_config": "".join(line + "\n" for line in (
            "Host 127.0.0.1", "  Port %d" % port, "  User root", "  IdentityFile %s/client_key" % tmp,
            "  IdentitiesOnly yes", "  UserKnownHostsFile %s/known_hosts" % tmp, "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes", "  BatchMode yes")),
        "ssh": '#!/bin/sh\nexec /usr/bin/ssh -F "%s/ssh_config" "$@"\n' % tmp,
    }
    for name, text in files.items():
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755 if name == "ssh" else 0o600)
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", os.path.join(tmp, "sshd_config"),
                             "-E", os.path.join(tmp, "sshd.log")])
    try:
        for _attempt in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("the loopback sshd did not listen, see %s/sshd.log" % tmp)
        yield "qemu+ssh://root@127.0.0.1:%d/system?command=%s/ssh&keyfile=%s/client_key" % (port, tmp, tmp)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
