"""The station screen's kiosk unit: systemd accepts it, and it opens the page the site serves."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from station import config as config_mod

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd/packcam-kiosk.service"


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is required in CI (Makefile TEST_APT_PACKAGES: systemd)")
        pytest.skip("systemd-analyze not installed (apt install systemd)")
    path = tmp_path / UNIT.name
    path.write_text(unit_text, encoding="utf-8")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}  # a user manager needs one
    return subprocess.run(
        [analyze, "verify", "--user", "--man=no", str(path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip


def test_systemd_accepts_the_kiosk_unit(tmp_path: Path) -> None:
    proc = verify(UNIT.read_text(encoding="utf-8"), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8")
    proc = verify(text.replace("Restart=always", "Restart=sometimes"), tmp_path)
    assert "restart specifier" in proc.stdout + proc.stderr
    proc = verify(text.replace("ExecStart=/bin/sh", "ExecStart=/bin/no-such-sh"), tmp_path)
    assert proc.returncode != 0 and "not executable" in proc.stdout + proc.stderr


def test_the_kiosk_opens_the_local_screen_page_full_screen() -> None:
    text = UNIT.read_text(encoding="utf-8")
    url = re.search(r"^Environment=PACKCAM_SCREEN_URL=(\S+)$", text, re.M)
    assert url is not None
    web = config_mod.load(None).web
    assert url.group(1) == f"http://127.0.0.1:{web.port}/screen"  # loopback: the kiosk rule
    exec_start = re.search(r"^ExecStart=(.+)$", text, re.M)
    assert exec_start is not None
    for flag in ("--kiosk", "--noerrdialogs", '--app="$PACKCAM_SCREEN_URL"', "/usr/bin/chromium"):
        assert flag in exec_start.group(1)
    assert "WantedBy=graphical-session.target" in text
