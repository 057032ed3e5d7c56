"""In CI a skip fails the run, except for tests marked ``hardware``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SAMPLE = """
import pytest

def test_needs_a_server():
    pytest.skip("no `weed` binary")

@pytest.mark.skipif(True, reason="no PostgreSQL")
def test_marked_skip():
    pass

@pytest.mark.hardware
def test_real_camera():
    pytest.skip("needs a Raspberry Pi camera")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_plain():
    assert True
"""


def run_sample(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    hardware: real hardware\n")
    # the sample run takes none of this run's pytest options (PYTEST_ADDOPTS: -p plugins, -x)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = str(TESTS)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "ci_no_skip", "-p", "no:cacheprovider", "-rA"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_in_ci_a_skip_fails_but_hardware_may_skip(tmp_path: Path) -> None:
    proc = run_sample(tmp_path, ci="true")
    assert proc.returncode == 1, proc.stdout
    assert "skipped in CI" in proc.stdout
    assert "no `weed` binary" in proc.stdout and "no PostgreSQL" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert "1 passed" in last and "1 skipped" in last and "1 xfailed" in last, last
    assert "1 failed" in last and "1 error" in last, last  # the call-time and set-up-time skips


@pytest.mark.parametrize("ci", [None, ""])
def test_outside_ci_skips_stay_skips(tmp_path: Path, ci: str | None) -> None:
    proc = run_sample(tmp_path, ci=ci)
    assert proc.returncode == 0, proc.stdout
    assert "3 skipped" in proc.stdout.strip().splitlines()[-1]
