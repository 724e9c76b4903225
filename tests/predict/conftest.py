"""Fixtures of the predict tests: a trained checkpoint, and tmpfs mounts (root only)."""

import os
import shutil
import subprocess

import pytest

from cli_helpers import invoke, small_config, write_config


@pytest.fixture(scope="module")
def model(tmp_path_factory, idx_folder):
    """A checkpoint of the quick MLP on the synthetic 28x28, 10-class `idx` data."""
    folder = tmp_path_factory.mktemp("model")
    config = write_config(folder / "c.yaml", small_config(idx_folder, epochs=2))
    out = folder / "m.npz"
    assert invoke("train", config, "--out", out).exit_code == 0
    return out


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, options) -> a folder with a fresh tmpfs on it (unmounted afterwards); skips
    where mounting is not allowed (CI as a normal user, containers without CAP_SYS_ADMIN)."""
    mounted = []

    def mount(name: str, options: str):
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=False)
