"""Shared fixtures: configs in tmp_path, a real SQLite ledger, the shared barcode photos."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from station import config as config_mod
from station.store.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]

# Property tests: no per-example deadline (this 2-core machine is shared and noisy, and a slow
# example is not a failure), and in CI a fixed seed so a red run can be reproduced and a green
# one does not hinge on luck. Locally every run still explores new examples.
settings.register_profile("packcam", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "packcam")


def shared_barcodes_dir() -> Path | None:
    """``../shared/data/barcodes`` beside the checkout, as CI lays it out."""
    for cand in (REPO.parent / "shared/data/barcodes", Path("/work/shared/data/barcodes")):
        if (cand / "manifest.csv").is_file():
            return cand
    return None


@pytest.fixture
def barcodes_dir() -> Path:
    """The shared barcode photos; the test is skipped when they are not there."""
    root = shared_barcodes_dir()
    if root is None:
        pytest.skip("../shared/data/barcodes (real barcode photos) is not beside the checkout")
    return root


@pytest.fixture(scope="session")
def dead_pid() -> int:
    """The pid of a process that has exited (a station killed mid-write, say)."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(child.stdout)


@pytest.fixture
def cfg(tmp_path: Path) -> config_mod.Config:
    """Default config with the data dir in tmp_path."""
    return config_mod.load(None).with_data_dir(tmp_path / "data")


@pytest.fixture
def ledger(tmp_path: Path):
    led = Ledger(tmp_path / "index.sqlite3")
    yield led
    led.close()


@pytest.fixture
def moto_s3(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """An in-process S3 (moto) with the test module's ``BUCKET`` created; skipped without moto."""
    moto = pytest.importorskip("moto")
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    with moto.mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=request.module.BUCKET)
        yield


# ---- in CI only `hardware` tests may skip (tests/ci_no_skip.py) --------------------------------
from ci_no_skip import pytest_runtest_makereport  # noqa: E402, F401

# ---- web fixtures (tests/conftest_web.py) ---------------------------------------------------
from conftest_web import (  # noqa: E402, F401
    mp4_template,
    web_app,
    web_client,
    web_env,
    web_env_template,
)

# ---- fleet fixtures (tests/fleet_servers.py): real SeaweedFS and PostgreSQL on 127.0.0.1 --------
from fleet_servers import pg_dsn, postgres, seaweed  # noqa: E402, F401


def pytest_unconfigure(config: pytest.Config) -> None:
    """A non-daemon thread a test left running (a Recorder never closed, say) would keep the
    interpreter, and CI, waiting forever after the summary: name it and fail the run instead."""
    import sys
    import threading
    import time

    def left() -> list[threading.Thread]:
        main = threading.main_thread()
        return [t for t in threading.enumerate() if t is not main and not t.daemon]

    deadline = time.monotonic() + 10.0
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    if left():
        names = ", ".join(sorted(t.name for t in left()))
        sys.stdout.flush()
        sys.stderr.write(f"\nFAILED: a test left non-daemon threads running: {names}\n")
        sys.stderr.flush()
        os._exit(3)
