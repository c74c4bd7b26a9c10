"""kvmprobe.py: the firmware reaches long mode, and a hang, a failure and the cache are told apart."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import kvmprobe
from ansible_collections.hypervisor.libvirt.plugins.module_utils.host import Host

QEMU = shutil.which("qemu-system-x86_64")


def test_firmware_layout():
    image = kvmprobe.firmware()
    assert len(image) == 0x10000
    assert image[0xfff0:0xfff5] == bytes.fromhex("ea000000f0")  # reset vector: ljmp f000:0000
    assert image[0] == 0xfa  # cli


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_firmware_reaches_long_mode_under_tcg():
    # TCG emulates every step faithfully: real -> protected -> long mode -> the debug-exit port
    assert kvmprobe.run_probe(QEMU, timeout=20, accel="tcg") is True


def _fake_emulator(tmp_path, body: str) -> str:
    path = tmp_path / "qemu-fake"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "kvm-probe.json"
    monkeypatch.setattr(kvmprobe, "_cache_path", lambda: str(cache))
    return cache


def test_a_hang_is_false_and_remembered(tmp_path, cache_dir):
    # a KVM that hangs: QEMU never exits, the probe times out
    emulator = _fake_emulator(tmp_path, "exec sleep 30")
    assert kvmprobe.kvm_runs_guests(emulator, timeout=0.5) is False
    assert cache_dir.exists()
    # the next call answers from the cache: replace the binary by one that would pass, keep its stat
    st = os.stat(emulator)
    passing = "#!/bin/sh\nexit 85\n"
    passing += "#" * (st.st_size - len(passing) - 1) + "\n"
    with open(emulator, "w") as f:
        f.write(passing)
    os.utime(emulator, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(emulator).st_size == st.st_size
    assert kvmprobe.kvm_runs_guests(emulator, timeout=0.5) is False
    assert kvmprobe.kvm_runs_guests(emulator, timeout=0.5, use_cache=False) is True


def test_the_exit_status_means_long_mode(tmp_path, cache_dir):
    assert kvmprobe.kvm_runs_guests(_fake_emulator(tmp_path, "exit 85"), timeout=5) is True


def test_a_qemu_that_fails_is_unknown_and_not_remembered(tmp_path, cache_dir):
    emulator = _fake_emulator(tmp_path, "echo 'Could not access KVM kernel module' >&2; exit 1")
    assert kvmprobe.kvm_runs_guests(emulator, timeout=5) is None
    assert not cache_dir.exists()
    assert kvmprobe.run_probe(str(tmp_path / "missing-qemu"), timeout=5) is None


def test_a_changed_emulator_is_probed_again(tmp_path, cache_dir):
    emulator = _fake_emulator(tmp_path, "exit 85")
    assert kvmprobe.kvm_runs_guests(emulator, timeout=5) is True
    with open(emulator, "w") as f:
        f.write("#!/bin/sh\n# another build\nexec sleep 30\n")
    assert kvmprobe.kvm_runs_guests(emulator, timeout=0.5) is False


def test_host_without_kvm_offered_is_not_usable():
    with Host("test:///default") as host:
        assert host.kvm_available() is False
        assert host.kvm_usable() is False
