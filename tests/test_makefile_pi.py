"""The Makefile's Raspberry Pi branch, forced on this machine: the commands it would run, and
its final import check run for real against stand-in modules."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PI_APT = ["python3-venv", "python3-picamera2", "python3-evdev", "python3-gpiozero", "python3-lgpio"]
BASE_APT = ["libzbar0", "fonts-wqy-zenhei", "openssl"]


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("make")
    if exe is None:  # CI runs `make test`: make is always there; never skip silently
        pytest.fail("make is not installed")
    full_env = {
        k: v for k, v in os.environ.items() if k not in ("PACKCAM_PI", "EXTRAS", "MAKEFLAGS")
    }
    full_env.update(env or {})
    return subprocess.run(
        [exe, "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def dry_run(pi: str) -> list[str]:
    """`make -n -B venv`: every command the venv target would run, nothing executed."""
    before = sorted(p.name for p in REPO.iterdir())
    result = make("-n", "-B", f"PACKCAM_PI={pi}", "venv")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in REPO.iterdir()) == before  # a dry run leaves nothing behind
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def apt_list(lines: list[str]) -> list[str]:
    (loop,) = [line for line in lines if "dpkg-query" in line]
    m = re.search(r"for p in (.*?); do", loop)
    assert m, loop
    assert "apt-get install -y -qq --no-install-recommends $missing" in loop
    return m.group(1).split()


def test_pi_branch_installs_from_apt_sees_system_packages_fixes_simplejpeg_and_checks() -> None:
    lines = dry_run("1")
    assert apt_list(lines) == BASE_APT + PI_APT
    (venv,) = [i for i, line in enumerate(lines) if " -m venv " in line]
    assert lines[venv].split() == ["python3", "-m", "venv", "--system-site-packages", ".venv"]
    (extras,) = [i for i, line in enumerate(lines) if "pip install -q -e" in line]
    assert lines[extras].endswith('".[pi]"')  # evdev/gpiozero already satisfied by apt's
    (jpeg,) = [
        i
        for i, line in enumerate(lines)
        if line.startswith(".venv/bin/python -m pip install -q --force")
    ]
    # After the extras (which bring numpy 2), without touching numpy again (--no-deps).
    assert "--force-reinstall --no-deps" in lines[jpeg] and '"simplejpeg>=1.8.1"' in lines[jpeg]
    (check,) = [i for i, line in enumerate(lines) if "for m in picamera2 evdev gpiozero" in line]
    assert venv < extras < jpeg < check
    assert lines[check + 1] == "touch .venv/.installed"  # the check is the last step
    assert "exit 1" in lines[check] and "dtype size changed" in lines[check]


def test_the_pc_branch_is_unchanged() -> None:
    lines = dry_run("0")
    assert apt_list(lines) == BASE_APT
    assert lines[-4:] == [
        "python3 -m venv  .venv",
        ".venv/bin/python -m pip install -q --upgrade pip",
        '.venv/bin/python -m pip install -q -e ".[dev]"',
        "touch .venv/.installed",
    ]
    assert not any("simplejpeg" in line or "picamera2" in line for line in lines)


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    """A "venv" whose python is this interpreter, with stand-in modules on PYTHONPATH."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/python").symlink_to(sys.executable)
    (tmp_path / "mods").mkdir()
    return tmp_path


def pi_check(venv: Path) -> subprocess.CompletedProcess[str]:
    # -o: take the venv as made, so only the import check runs.
    return make(
        "-s", "-o", f"{venv}/.installed", "PACKCAM_PI=1", f"VENV={venv}", "pi-check",
        env={"PYTHONPATH": str(venv / "mods")},
    )  # fmt: skip


def test_import_check_passes_when_all_three_import(fake_venv: Path) -> None:
    for name in ("picamera2", "evdev", "gpiozero"):
        (fake_venv / "mods" / f"{name}.py").write_text("")
    result = pi_check(fake_venv)
    assert result.returncode == 0, result.stderr
    assert "picamera2, evdev and gpiozero import" in result.stdout


def test_import_check_names_the_numpy_mismatch_and_its_fix(fake_venv: Path) -> None:
    (fake_venv / "mods/picamera2.py").write_text(
        'raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. '
        'Expected 96 from C header, got 88 from PyObject")\n'
    )
    result = pi_check(fake_venv)
    assert result.returncode != 0
    assert "'import picamera2' fails" in result.stderr
    assert "ValueError: numpy.dtype size changed" in result.stderr
    assert "pip install --force-reinstall --no-deps 'simplejpeg>=1.8.1'" in result.stderr


def test_import_check_names_a_missing_module_and_the_apt_packages(fake_venv: Path) -> None:
    (fake_venv / "mods/picamera2.py").write_text("")
    (fake_venv / "mods/gpiozero.py").write_text("")  # evdev missing
    result = pi_check(fake_venv)
    assert result.returncode != 0
    assert "'import evdev' fails" in result.stderr and "No module named 'evdev'" in result.stderr
    assert "sudo apt install python3-venv python3-picamera2 python3-evdev" in result.stderr
    assert "--system-site-packages" in result.stderr
