"""kvmprobe.py: the firmware reaches long mode, and a hang, a failure and the cache are told apart."""

from __future__ import annotations

import json
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


# ------------------------------------------------------------------ a cache nobody else can forge
def test_a_cache_directory_someone_else_owns_is_not_trusted(tmp_path, cache_dir):
    emulator = _fake_emulator(tmp_path, "exec sleep 30")  # hangs: the truth is False
    cache_dir.parent.mkdir(mode=0o755)
    cache_dir.write_text(json.dumps({"key": kvmprobe._cache_key(emulator), "result": True}))
    os.chown(str(cache_dir.parent), 65534, 65534)
    assert kvmprobe.kvm_runs_guests(emulator, timeout=0.5) is False
    assert json.loads(cache_dir.read_text())["result"] is True  # not written there either


def test_an_own_cache_directory_is_made_private(tmp_path, cache_dir):
    cache_dir.parent.mkdir(mode=0o777)
    os.chmod(str(cache_dir.parent), 0o777)
    assert kvmprobe.kvm_runs_guests(_fake_emulator(tmp_path, "exit 85"), timeout=5) is True
    assert stat.S_IMODE(os.stat(str(cache_dir.parent)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(str(cache_dir)).st_mode) == 0o600


def test_a_symlinked_cache_directory_is_not_used(tmp_path, cache_dir):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    os.symlink(str(real), str(cache_dir.parent))
    assert kvmprobe.kvm_runs_guests(_fake_emulator(tmp_path, "exit 85"), timeout=5) is True
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("content", ["[1, 2, 3]", '"text"', '{"key": 5, "result": true}',
                                     '{"key": "k", "result": "yes"}', "{"])
def test_a_cache_of_the_wrong_shape_is_probed_again_without_a_traceback(tmp_path, cache_dir, content):
    cache_dir.parent.mkdir(mode=0o700)
    cache_dir.write_text(content)
    assert kvmprobe.kvm_runs_guests(_fake_emulator(tmp_path, "exit 85"), timeout=5) is True


def test_a_planted_symlink_is_neither_followed_nor_written_through(tmp_path, cache_dir):
    emulator = _fake_emulator(tmp_path, "exec sleep 30")
    victim = tmp_path / "victim"
    victim.write_text(json.dumps({"key": kvmprobe._cache_key(emulator), "result": True}))
    cache_dir.parent.mkdir(mode=0o700)
    os.symlink(str(victim), str(cache_dir))
    assert kvmprobe.kvm_runs_guests(emulator, timeout=0.5) is False  # the link was not read
    assert json.loads(victim.read_text())["result"] is True  # nor written through
    assert not cache_dir.is_symlink() and json.loads(cache_dir.read_text())["result"] is False
