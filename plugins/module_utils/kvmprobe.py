# -*- coding: utf-8 -*-
# Copyright: hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Does KVM really run guest code on this machine?

libvirt offers the ``kvm`` domain type whenever ``/dev/kvm`` opens, but under
some nested hypervisors a KVM guest hangs at its first switch to protected
mode and never gets further (seen on the machines this collection is tested
on: SeaBIOS runs, a Linux kernel stops right after "Probing EDD"). The probe
boots a 64 KiB firmware image with ``-accel kvm`` that goes real mode ->
protected mode -> long mode, the path every x86-64 kernel takes, and writes to
QEMU's isa-debug-exit port; QEMU then exits with status 85. A hang (timeout)
means KVM cannot run guests here. No Ansible import.

The firmware (GNU as, ``as --64`` then ``objcopy -O binary``), mapped at 0xF0000::

        .code16                         # offset 0
        cli; xor %ax,%ax; mov %ax,%ds
        mov $0xf000,%ax; mov %ax,%ds
        lgdtl %ds:(gdtr)                # flat 32-bit code/data + 64-bit code
        mov %cr0,%eax; or $1,%eax; mov %eax,%cr0
        ljmpl $0x08, $pm32
        .code32
    pm32:
        mov $0x10,%ax; mov %ax,%ds; mov %ax,%es; mov %ax,%ss
        zero 0x1000-0x3fff; PML4[0] -> 0x2000, PDPT[0] -> 0x3000,
        PD = 512 x 2 MiB identity pages (0x83)
        mov $0x1000,%eax; mov %eax,%cr3
        cr4 |= PAE; EFER (0xc0000080) |= LME; cr0 |= PG
        ljmpl $0x18, $lm64
        .code64
    lm64:
        mov $0x2a,%al; out %al,$0xf4    # isa-debug-exit: QEMU exits with (0x2a << 1) | 1
    1:  hlt; jmp 1b
    gdt:  0, 0x00cf9a000000ffff, 0x00cf92000000ffff, 0x00af9a000000ffff
    gdtr: .word 31; .long 0xf00a8
        .org 0xfff0                     # the reset vector
        ljmp $0xf000, $0
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import tempfile

_CODE = bytes.fromhex(
    "fa31c08ed8b800f08ed8660f0116c8000f20c06683c8010f22c066ea22000f00080066b810008ed88ec08ed0"
    "bf0010000031c0b9000c0000f3abc7050010000003200000c7050020000003300000bf00300000b883000000"
    "b9000200008907c7470400000000050000200083c708e2edb8001000000f22d80f20e083c8200f22e0b98000"
    "00c00f320d000100000f300f20c00d000000800f22c0eaa1000f001800b02ae6f4f4ebfd0000000000000000"
    "ffff0000009acf00ffff00000092cf00ffff0000009aaf001f00a8000f00")
_RESET = bytes.fromhex("ea000000f0")
EXIT_STATUS = 85  # (0x2a << 1) | 1
DEFAULT_TIMEOUT = 3.0


def firmware() -> bytes:
    """The 64 KiB probe image: code at 0xF0000, the reset vector at 0xFFFF0."""
    image = bytearray(0x10000)
    image[:len(_CODE)] = _CODE
    image[0xfff0:0xfff0 + len(_RESET)] = _RESET
    return bytes(image)


def run_probe(emulator: str, timeout: float = DEFAULT_TIMEOUT, accel: str = "kvm") -> bool | None:
    """Boot the probe (under KVM): True if it reached long mode, False if it hung, None if QEMU failed."""
    with tempfile.NamedTemporaryFile(prefix="hvl-kvm-probe-", suffix=".bin") as fw:
        fw.write(firmware())
        fw.flush()
        argv = [emulator, "-accel", accel, "-machine", "pc", "-m", "16", "-nodefaults", "-no-user-config",
                "-display", "none", "-bios", fw.name, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False
        except OSError:
            return None
    return True if proc.returncode == EXIT_STATUS else None


def _cache_path() -> str:
    base = "/run/hypervisor-libvirt" if os.geteuid() == 0 else os.path.join(
        tempfile.gettempdir(), "hypervisor-libvirt-%d" % os.getuid())
    return os.path.join(base, "kvm-probe.json")


def _private_dir(path: str) -> bool:
    """``path`` is (or is made) a directory of this user's alone: not a symlink, owned by the
    effective uid, mode 0700. One someone else owns (or a symlink) is not trusted with the cache."""
    try:
        os.makedirs(os.path.dirname(path) or "/", mode=0o755, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return False
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o700)  # ours (an earlier version made it 0755): make it private
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _read_cache(path: str) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or not isinstance(cached.get("key"), str) or \
            not isinstance(cached.get("result"), bool):
        return None
    return cached


def _write_cache(path: str, content: dict) -> None:
    tmp = "%s.%d" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        try:
            os.unlink(tmp)  # left by a process with our pid before a reboot; the directory is ours
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError:
            return
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
        os.replace(tmp, path)  # replaces a planted symlink itself, never what it points at
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _cache_key(emulator: str) -> str | None:
    """Changes with a reboot, another QEMU binary or /dev/kvm coming and going."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
        st = os.stat(emulator)
    except OSError:
        return None
    raw = "%s|%s|%d|%d|%s" % (boot_id, emulator, st.st_mtime_ns, st.st_size, os.path.exists("/dev/kvm"))
    return hashlib.sha256(raw.encode()).hexdigest()


def kvm_runs_guests(emulator: str, timeout: float = DEFAULT_TIMEOUT, use_cache: bool = True) -> bool | None:
    """:func:`run_probe`, remembered until the next boot (a hang costs ``timeout`` once, not per task)."""
    key = _cache_key(emulator) if use_cache else None
    path = _cache_path()
    if key and not _private_dir(os.path.dirname(path)):
        key = None  # a directory someone else owns or can write could hold a forged answer
    if key:
        cached = _read_cache(path)
        if cached is not None and cached["key"] == key:
            return cached["result"]
    result = run_probe(emulator, timeout)
    if key and result is not None:
        _write_cache(path, {"key": key, "emulator": emulator, "result": result})
    return result
