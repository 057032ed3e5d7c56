"""SQLite files both services write (index, webhook queue) are group-writable under UMask=0007."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from station.floor.webhooks import WebhookQueue
from station.store.index import INDEX_NAME, open_in_data_dir

REPO = Path(__file__).resolve().parents[1]
UNIT_UMASK = 0o007  # UMask= in both units (systemd/packcam-*.service)
STATION_UID, WEB_UID, SHARED_GID = 40011, 40012, 40010


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def unit_umask() -> Iterator[None]:
    old = os.umask(UNIT_UMASK)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("unit_umask")
def test_the_index_and_its_wal_are_group_writable(tmp_path: Path) -> None:
    """The site sets legal holds in the index, and a reader writes the -shm: SQLite's own
    default (0644) would leave the group read-only."""
    db = open_in_data_dir(tmp_path)
    try:
        db.conn.execute("CREATE TABLE probe(x)")
        files = [tmp_path / (INDEX_NAME + s) for s in ("", "-wal", "-shm")]
        assert {p.name: oct(mode(p)) for p in files} == {p.name: "0o660" for p in files}
    finally:
        db.close()


@pytest.mark.usefixtures("unit_umask")
def test_the_webhook_queue_is_group_writable(tmp_path: Path) -> None:
    queue = WebhookQueue(tmp_path / "webhooks.sqlite3")
    queue.close()
    assert oct(mode(tmp_path / "webhooks.sqlite3")) == "0o660"


def test_the_umask_still_decides(tmp_path: Path) -> None:
    """Outside the units (a PC, `sudo -u`), the caller's umask narrows the mode as usual."""
    old = os.umask(0o022)
    try:
        open_in_data_dir(tmp_path).close()
    finally:
        os.umask(old)
    assert oct(mode(tmp_path / INDEX_NAME)) == "0o644"


def _as(uid: int, code: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``code`` in a process of uid ``uid``, group packcam, the units' umask."""
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={SHARED_GID}", "--clear-groups"]
    run = subprocess.run(
        [*as_user, sys.executable, "-c", f"import os; os.umask({UNIT_UMASK}); {code}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    if check:
        assert run.returncode == 0, run.stderr[-1500:]
    return run


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the two services' uids")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_the_site_opening_the_index_first_never_locks_the_station_out() -> None:
    """First boot: the web site starts first and creates the index (ensure_index), reads it
    while the station is down (it leaves its -wal/-shm behind); the station must still write
    it, and the site's legal-hold button too."""
    root = Path(tempfile.mkdtemp(prefix="packcam-modes-", dir="/tmp"))
    try:
        root.chmod(0o755)
        data = root / "data"
        data.mkdir(mode=0o770)
        os.chown(data, STATION_UID, SHARED_GID)
        data.chmod(0o2770)  # as systemd/packcam.tmpfiles makes it
        probe = _as(WEB_UID, "import web", check=False)
        if probe.returncode != 0:
            pytest.skip(f"the venv is not usable by uid {WEB_UID}: {probe.stderr[-200:]!r}")
        d = repr(str(data))
        _as(
            WEB_UID,
            "from pathlib import Path; from web.index import ClipIndex, ensure_index; "
            f"i = ClipIndex(ensure_index(Path({d}))); i.clips.max_id(); i.close()",
        )
        hold = (
            "from pathlib import Path; from station.store.ledger import Ledger; "
            f"l = Ledger.in_data_dir(Path({d})); l.set_legal_hold('PO-1', {{on}}, 'u', ''); "
            "l.close()"
        )
        _as(STATION_UID, hold.format(on=True))
        _as(WEB_UID, hold.format(on=False))
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(("folder", "want"), [(0o2770, 0o660), (0o755, 0o640)])
def test_an_index_left_0640_is_opened_to_the_group_in_a_shared_folder(
    tmp_path: Path, folder: int, want: int
) -> None:
    """What an older packcam left (SQLite's 0644 less UMask=0007) is put right on the
    station's next start, in the units' shared folder only."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(folder)
    open_in_data_dir(data).close()
    (data / INDEX_NAME).chmod(0o640)
    open_in_data_dir(data).close()
    assert oct(mode(data / INDEX_NAME)) == oct(want)
