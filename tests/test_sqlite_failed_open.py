"""A SQLite file that cannot be opened (not a database) leaves no connection behind."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from station.errors import StationError
from station.floor.webhooks import WebhookQueue
from station.store.index import open_index
from web.db import WebDB
from web.search import SearchIndex


def fds_on(path: Path) -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return n


def search_of(search_file: Path) -> SearchIndex:
    open_index(search_file.with_name("index.sqlite3")).close()
    return SearchIndex(search_file, search_file.with_name("index.sqlite3"))


@pytest.mark.parametrize(
    "opener",
    [open_index, WebDB, WebhookQueue, search_of],
    ids=["index", "webdb", "webhooks", "search"],
)
def test_a_file_that_is_not_a_database_is_refused_and_not_held(
    tmp_path: Path, opener: Callable[[Path], object]
) -> None:
    path = tmp_path / "web-search.sqlite3"
    path.write_bytes(b"not a database, but a file of 512 bytes " * 13)
    with pytest.raises((StationError, sqlite3.Error)):
        opener(path)
    # closed at once, not whenever the garbage collector finds it (a ResourceWarning on 3.13)
    assert fds_on(path) == 0
