"""The site's search index (web-search.sqlite3): FTS5 trigrams over order IDs and waybills."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from station.store.clips import ClipTable
from station.store.sqlitedb import Database, closed_on_error

log = logging.getLogger(__name__)

SEARCH_DB_NAME = "web-search.sqlite3"
BATCH = 5000
SYNC_IN_REQUEST = 20_000  # a request catches up this many new clips itself; more: a thread
SEP = "\n"  # between an order ID and its waybills: a query (one line) never spans two

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS tri USING fts5(
    t, tokenize = 'trigram case_sensitive 0', content = ''
);
CREATE VIRTUAL TABLE IF NOT EXISTS bi USING fts5(
    g, tokenize = 'ascii', content = '', detail = 'none'
);
-- the station's waybills rows linked after their clip was signed (by rowid): a clip's text
-- above may predate them, and contentless rows cannot be rewritten, so they are matched apart
CREATE TABLE IF NOT EXISTS late (wid INTEGER PRIMARY KEY);
"""
LATE_TABLE = "late"


def fold(text: str) -> str:
    return text.casefold()


# A Chinese IME in full-width mode types "ＰＯ２０２６" and the ideographic space; labels and
# scanners give ASCII. Only these fold: NFKC would also rewrite other characters
# ("①" to "1", "ﬁ" to "fi") an order ID may really hold.
_HALF_WIDTH = {0xFF01 + i: 0x21 + i for i in range(0x5E)} | {0x3000: 0x20}


def half_width(query: str) -> str:
    """A typed query with its full-width ASCII forms (U+FF01-FF5E, U+3000) as ASCII."""
    return query.translate(_HALF_WIDTH)


def bigram_tokens(text: str) -> str:
    """Every two-character substring of each line, case-folded, as hex tokens (the ascii
    tokenizer keeps them whole, whatever the characters)."""
    out = set()
    for line in text.split(SEP):
        f = fold(line)
        for i in range(len(f) - 1):
            out.add(f[i : i + 2].encode("utf-8", "surrogatepass").hex())
    return " ".join(sorted(out))


WINDOW = 6  # a longer query is looked up by its most varied 6 characters, then checked whole


def match_expr(q: str) -> tuple[str, str, bool] | None:
    """(table, MATCH expression, whole query still to be checked) for a substring query, or
    None if it is too short (1 character).

    FTS5 intersects the doclists of every trigram of a phrase, which is slow for long queries
    made of common trigrams (a waybill's digits all start "1000000..."): a query longer than
    ``WINDOW`` is looked up by one ``WINDOW``-character piece, the one with the most distinct
    characters (the rightmost of those: IDs vary most at their end), and the candidates are
    then checked against the whole query.

    A query with a control character gets None too (the plain scan): FTS5's query parser reads
    a NUL as the end of the string ("unterminated string"), and no order ID or waybill holds
    one (``codes.sanitize`` refuses them), so such a query only has to find nothing."""
    if any(ord(c) < 32 for c in q):
        return None
    if len(q) > WINDOW:
        pieces = [q[i : i + WINDOW] for i in range(len(q) - WINDOW + 1)]
        best = max(reversed(pieces), key=lambda p: len(set(fold(p))))
        return "tri", '"' + best.replace('"', '""') + '"', True
    if len(q) >= 3:
        return "tri", '"' + q.replace('"', '""') + '"', False
    if len(q) == 2:
        return "bi", fold(q).encode("utf-8", "surrogatepass").hex(), False
    return None


def contains_folded(text: str | None, q: str) -> bool:
    return text is not None and fold(q) in fold(text)


class SearchIndex:
    """Keeps web-search.sqlite3 filled from the station's index.sqlite3, by clip id.

    The station's index is only read (``mode=ro``): the site owns this file. Clips are never
    re-indexed (their order ID and waybills are written with the clip); a waybill the station
    links to a clip later (``linked_utc``: decoded after the clip was signed) goes into the
    ``late`` table by its rowid, a watermark on the station's ``waybills`` rowids finding the
    new ones at each ``catch_up``, and searches match those directly. A clip the station
    soft-deletes stays findable, as it does in ``clips``. ``catch_up`` adds what is new, in
    batches of ``BATCH`` rows per transaction; a large backlog (a first start on a big index)
    is filled by one background thread while searches scan the part not yet indexed. Any
    server thread may call it; one lock serialises writers.
    """

    def __init__(self, path: Path, index_path: Path) -> None:
        self.path = path
        self.index_path = index_path
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.conn = self._connect()
        with closed_on_error(self.conn):
            self.conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30
        )
        with closed_on_error(conn):
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.create_function("bigram_tokens", 1, bigram_tokens, deterministic=True)
            uri = "file:" + str(self.index_path.resolve()) + "?mode=ro"
            conn.execute("ATTACH DATABASE ? AS st", (uri,))
        return conn

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
        self.conn.close()

    def indexed_up_to(self) -> int:
        r = self.conn.execute("SELECT v FROM meta WHERE k = 'last_id'").fetchone()
        return int(r[0]) if r else 0

    def backlog(self) -> int:
        last = self.indexed_up_to()
        return _station(self.conn).count_after(last)

    def catch_up(self) -> int:
        """Index new clips now if there are few; else start the background fill. Returns the
        id up to which the search tables are complete."""
        with self._lock:
            self._add_late_links()
            last = self.indexed_up_to()
            top = _station(self.conn).max_id()
            if top <= last:
                return last
            if self._thread is not None and self._thread.is_alive():
                return last
            pending = _station(self.conn).count_after(last)
            if pending <= SYNC_IN_REQUEST:
                return self._fill(self.conn, stop_at=top)
            log.info("search index: %d clips to index, filling in the background", pending)
            self._thread = threading.Thread(target=self._background, name="search-fill")
            self._thread.daemon = True
            self._thread.start()
            return last

    def _add_late_links(self) -> None:
        """Note the waybills rows added since the last call that were linked after their
        clip was signed (one read of the newest rowid when there are none)."""
        conn = self.conn
        # read before BEGIN: a snapshot of this file taken in the transaction could not then
        # be written if the background fill committed meanwhile (SQLITE_BUSY_SNAPSHOT)
        seen = int((conn.execute("SELECT v FROM meta WHERE k = 'last_waybill'").fetchone()
                    or (0,))[0])  # fmt: skip
        conn.execute("BEGIN")  # one snapshot of the station's index for both reads
        try:
            top, late = _station(conn).waybills_linked_late(seen)
            if top != seen:
                conn.executemany(
                    "INSERT OR IGNORE INTO late(wid) VALUES (?)", [(w,) for w, _c in late]
                )
                conn.execute(
                    "INSERT INTO meta(k, v) VALUES ('last_waybill', ?)"
                    " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                    (top,),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if late:
            log.info("search index: %d waybills linked after their clips were signed", len(late))

    def _background(self) -> None:
        conn = self._connect()
        started = time.monotonic()
        try:
            top = _station(conn).max_id()
            done = self._fill(conn, stop_at=top)
            log.info(
                "search index: filled up to clip %d in %.1f s", done, time.monotonic() - started
            )
        except sqlite3.Error as exc:
            log.error("search index: background fill failed: %s", exc)
        finally:
            conn.close()

    def _fill(self, conn: sqlite3.Connection, *, stop_at: int) -> int:
        last = int((conn.execute("SELECT v FROM meta WHERE k = 'last_id'").fetchone() or (0,))[0])
        while last < stop_at:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = _station(conn).search_texts(last, stop_at, BATCH)
                if not rows:
                    conn.execute("ROLLBACK")
                    break
                conn.executemany("INSERT INTO tri(rowid, t) VALUES (?, ?)", rows)
                conn.executemany("INSERT INTO bi(rowid, g) VALUES (?, bigram_tokens(?))", rows)
                last = int(rows[-1][0])
                conn.execute(
                    "INSERT INTO meta(k, v) VALUES ('last_id', ?)"
                    " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                    (last,),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return last


def _station(conn: sqlite3.Connection) -> ClipTable:
    """The station's clip table, read through ``conn`` (this file's connection, the station
    index attached read-only as ``st``: its tables resolve there, this file has none of them)."""
    return ClipTable(Database(conn, own=False))
