"""BackgroundSync: fsyncs off the caller's thread, each file once as it then is, errors logged."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from station.store.files import BackgroundSync


class SyncSpy:
    """os.fsync recorded by the path of what it syncs; the first call can be held."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: str | None = None) -> None:
        self.synced: list[str] = []
        self.hold = threading.Event()
        self.holding = threading.Event()
        self.fail = fail
        real = os.fsync

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if not self.synced and not self.hold.is_set():
                self.holding.set()
                self.hold.wait(10)
            self.synced.append(path)
            if self.fail is not None and path == self.fail:
                raise OSError(5, "Input/output error")
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def test_a_file_rewritten_before_its_turn_is_synced_once_and_a_removed_one_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = SyncSpy(monkeypatch)
    first, again, gone = tmp_path / "first.json", tmp_path / "again.json", tmp_path / "gone.json"
    for p in (first, again, gone):
        p.write_text("{}")
    sync = BackgroundSync("test-sync")
    try:
        sync.request(first)
        assert spy.holding.wait(10)  # the thread is in its first fsync
        for _ in range(3):
            again.write_text("{}")
            sync.request(again)
        sync.request(gone)
        gone.unlink()
        spy.hold.set()
        sync.flush()
        assert spy.synced == [str(first), str(tmp_path), str(again), str(tmp_path)]
    finally:
        spy.hold.set()
        sync.close()


def test_a_failed_sync_is_logged_and_the_thread_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    spy = SyncSpy(monkeypatch, fail=str(bad))
    spy.hold.set()
    for p in (bad, good):
        p.write_text("{}")
    sync = BackgroundSync("test-sync")
    with caplog.at_level(logging.ERROR, logger="station.store.files"):
        sync.request(bad)
        sync.flush()
        sync.request(good)
        sync.close()
    assert spy.synced == [str(bad), str(good), str(tmp_path)]
    assert "cannot sync" in caplog.text and "bad.json" in caplog.text
    with pytest.raises(RuntimeError, match="after close"):
        sync.request(good)
