"""Opens the station index (index.sqlite3) and runs every table owner's migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from station.errors import LedgerError
from station.proof.tables import ProofTables
from station.store import sqlitedb
from station.store.alarms import AlarmTable
from station.store.clips import ClipTable
from station.store.cursors import SyncCursors
from station.store.holds import HoldTable
from station.store.sqlitedb import Database, Table
from station.store.uploads import UploadJournal

INDEX_NAME = "index.sqlite3"

# Every owner of tables in the index, in the fixed order their parts of one schema version
# run in (a version's parts run in one transaction, then PRAGMA user_version moves on).
OWNERS: tuple[type[Table], ...] = (
    ClipTable,
    ProofTables,
    UploadJournal,
    SyncCursors,
    HoldTable,
    AlarmTable,
)


def compose(owners: tuple[type[Table], ...]) -> tuple[str, ...]:
    """The index's positional migrations: script N is every owner's part of version N.

    Owners append their parts at the next version number, never edit a shipped one: a station
    in the field at version N only runs N+1 onwards. A gap (a version nobody adds to) is a
    programming error, so it raises.
    """
    top = max((v for o in owners for v in o.MIGRATIONS), default=0)
    out = []
    for version in range(1, top + 1):
        parts = [o.MIGRATIONS[version] for o in owners if version in o.MIGRATIONS]
        if not parts:
            raise RuntimeError(f"no owner adds index schema version {version}")
        out.append("\n".join(parts))
    return tuple(out)


MIGRATIONS: tuple[str, ...] = compose(OWNERS)

# table -> the module that owns it (and alone writes SQL against it)
TABLE_OWNERS: dict[str, str] = {t: o.__module__ for o in OWNERS for t in o.TABLES}


def open_index(target: Path | str | sqlite3.Connection, *, capture: bool = False) -> Database:
    """A connection to the index with its pragmas set and the schema migrated.

    A path opens a new connection (each thread that must not wait for another's statements
    opens its own; WAL lets them share the file); a connection passed in is used as is and
    not closed by ``Database.close``. Raises LedgerError when it cannot be opened or migrated.

    ``capture``: the capture thread's connection (``Ledger.capture_db``), read only
    (``query_only``): a write there could wait for another connection's write transaction,
    and the capture loop must not wait (its writes go through ``Ledger``'s writer thread).
    """
    try:
        if not isinstance(target, sqlite3.Connection) and str(target) not in {"", ":memory:"}:
            # the web site reads it and sets legal holds in it: group-writable (0660)
            sqlitedb.create_shared(Path(target))
        own = not isinstance(target, sqlite3.Connection)
        with sqlitedb.closed_on_error(sqlitedb.open_connection(target), own=own) as conn:
            conn.row_factory = sqlite3.Row
            sqlitedb.use_wal(conn)
            # FULL: a finished clip's row must survive a power cut once add_clip returned.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            db = Database(conn, own=own)
            sqlitedb.migrate(conn, db.lock, MIGRATIONS, LedgerError, "index")
            if capture:
                conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open index {target}: {exc}") from exc
    return db


def open_in_data_dir(data_dir: Path) -> Database:
    data_dir.mkdir(parents=True, exist_ok=True)
    return open_index(data_dir / INDEX_NAME)
