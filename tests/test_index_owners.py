"""Each table of the station index has one owner: the only module with SQL against it."""

from __future__ import annotations

import ast
import functools
import re
import sqlite3
from pathlib import Path

import pytest

from station.store import index as index_mod
from station.store.holds import was_held_at
from station.store.index import OWNERS, TABLE_OWNERS, compose, open_index
from station.store.ledger import Ledger
from station.store.sqlitedb import Table

ROOT = Path(__file__).resolve().parents[1]
# The packages that share the station's index. central/ has its own PostgreSQL database
# (central/schema.py) whose tables happen to carry some of the same names.
SCANNED = ("station", "web", "packcam")
SQL_VERB = r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE|ON)"  # ON: CREATE INDEX/TRIGGER ... ON t


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache  # each module's source is scanned for both databases' owners
def sql_strings(source: str) -> tuple[tuple[int, str], ...]:
    """(line, text) of every string literal in ``source``, f-strings' literal parts included
    (adjacent literals arrive joined, as the parser joins them)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
    return tuple(out)


def tables_used(text: str, tables: set[str]) -> set[str]:
    """The index tables a SQL text reads or writes (``FROM x``, ``INTO x``, ``UPDATE x`` ...,
    also schema-qualified ``st.x``)."""
    found = set()
    for m in re.finditer(SQL_VERB + r"\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:\w+\.)?(\w+)\b", text):
        if m.group(1) in tables:
            found.add(m.group(1))
    return found


def foreign_sql(sources: dict[str, str], owners: dict[str, str]) -> list[tuple[str, int, str]]:
    """(module, line, table) of each SQL text against a table outside the table's owner."""
    tables = set(owners)
    out = []
    for mod, source in sources.items():
        for line, text in sql_strings(source):
            for table in sorted(tables_used(text, tables)):
                if owners[table] != mod:
                    out.append((mod, line, table))
    return out


def scanned_sources() -> dict[str, str]:
    return {
        module_of(p): p.read_text(encoding="utf-8")
        for pkg in SCANNED
        for p in sorted((ROOT / pkg).rglob("*.py"))
    }


# The station's other database, the webhook queue (webhooks.sqlite3), has one owner too; the
# web site's delivery log reads it through that owner.
QUEUE_OWNERS = {"deliveries": "station.floor.webhooks", "attempts": "station.floor.webhooks"}


def test_no_sql_against_a_table_outside_its_owner() -> None:
    assert foreign_sql(scanned_sources(), TABLE_OWNERS) == []
    assert foreign_sql(scanned_sources(), QUEUE_OWNERS) == []


@pytest.mark.parametrize(
    "sql",
    [
        'rows = conn.execute("SELECT * FROM clips WHERE id = ?", (1,))',
        'conn.execute("INSERT INTO sync_cursors(name, value) VALUES (?, ?)", ("a", 1))',
        'conn.execute("UPDATE legal_holds SET note = ?", ("x",))',
        'conn.execute("SELECT c.id FROM st.clips c")',
        'conn.execute(f"SELECT x FROM {t} f JOIN proof_log l ON l.seq = f.rowid")',
        'conn.execute("SELECT 1"\n             " FROM alarms")',
        'conn.execute("CREATE INDEX IF NOT EXISTS x ON waybills(waybill)")',
    ],
)
def test_the_scan_finds_sql_in_a_module_that_does_not_own_the_table(sql: str) -> None:
    found = foreign_sql({"web.elsewhere": sql}, TABLE_OWNERS)
    assert len(found) == 1 and found[0][0] == "web.elsewhere"
    # ... and the same text in the owner's module is fine
    table = found[0][2]
    assert foreign_sql({TABLE_OWNERS[table]: sql}, TABLE_OWNERS) == []


def test_every_table_of_the_index_has_exactly_one_owner(tmp_path: Path) -> None:
    declared = [t for o in OWNERS for t in o.TABLES]
    assert len(declared) == len(set(declared)), "a table declared by two owners"
    db = open_index(tmp_path / "index.sqlite3")
    try:
        actual = {
            r[0]
            for r in db.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
    finally:
        db.close()
    assert actual == set(declared)
    # the owner module is where the class is defined, and it is one of the scanned packages
    for table, mod in TABLE_OWNERS.items():
        assert mod.split(".")[0] in SCANNED, (table, mod)


def test_each_owner_creates_only_its_own_tables() -> None:
    for owner in OWNERS:
        created = set()
        for script in owner.MIGRATIONS.values():
            created |= set(re.findall(r"CREATE TABLE (\w+)", script))
            created |= set(re.findall(r"ALTER TABLE (\w+)", script))
        assert created <= set(owner.TABLES), owner.__name__


class _A(Table):
    MIGRATIONS = {1: "CREATE TABLE a (x);", 3: "CREATE TABLE a3 (x);"}  # noqa: RUF012


class _B(Table):
    MIGRATIONS = {1: "CREATE TABLE b (x);", 2: "CREATE TABLE b2 (x);"}  # noqa: RUF012


class _Gap(Table):
    MIGRATIONS = {1: "CREATE TABLE g (x);", 3: "CREATE TABLE g3 (x);"}  # noqa: RUF012


def test_compose_joins_each_version_in_owner_order_and_refuses_a_gap() -> None:
    assert compose((_A, _B)) == (
        "CREATE TABLE a (x);\nCREATE TABLE b (x);",
        "CREATE TABLE b2 (x);",
        "CREATE TABLE a3 (x);",
    )
    assert compose((_B, _A))[0] == "CREATE TABLE b (x);\nCREATE TABLE a (x);"
    with pytest.raises(RuntimeError, match="version 2"):
        compose((_Gap,))


def test_the_index_migrations_are_the_owners_parts() -> None:
    assert compose(OWNERS) == index_mod.MIGRATIONS
    # every version has a part, and each script is valid SQL on its own schema
    conn = sqlite3.connect(":memory:")
    try:
        for script in index_mod.MIGRATIONS:
            conn.executescript(script)
    finally:
        conn.close()


def test_was_held_at_takes_the_last_change_at_or_before_the_moment() -> None:
    history = [
        {"action": "hold", "at_utc": "2026-01-02T00:00:00.000000Z"},
        {"action": "release", "at_utc": "2026-01-05T00:00:00.000000Z"},
        {"action": "hold", "at_utc": "2026-01-09T00:00:00.000000Z"},
    ]
    assert not was_held_at([], "2026-01-03T00:00:00.000000Z")
    assert not was_held_at(history, "2026-01-01T00:00:00.000000Z")
    assert was_held_at(history, "2026-01-02T00:00:00.000000Z")
    assert was_held_at(history, "2026-01-04T23:59:59.999999Z")
    assert not was_held_at(history, "2026-01-05T00:00:00.000000Z")
    assert was_held_at(history, "2026-02-01T00:00:00.000000Z")


def test_was_held_at_compares_instants_not_text() -> None:
    """A signed deletion record states its time as the station wrote it; another offset or
    no microseconds is the same instant. Compared as text, 10:00-10:00 (20:00 UTC, after the
    hold) read as before a hold set at 15:00 UTC, and a deletion under hold as none."""
    history = [{"action": "hold", "at_utc": "2026-01-02T15:00:00.000000Z"}]
    assert was_held_at(history, "2026-01-02T10:00:00-10:00")
    assert not was_held_at(history, "2026-01-03T00:30:00+10:00")  # 14:30 UTC on the 2nd
    assert was_held_at(history, "2026-01-02T15:00:00Z")
    with pytest.raises(ValueError, match="no UTC offset"):
        was_held_at(history, "2026-01-02T16:00:00")


def test_held_at_reads_the_hold_log(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "index.sqlite3")
    try:
        assert led.set_legal_hold("PO-1", True, "admin")
        held_from = led.legal_hold_history("PO-1")[0]["at_utc"]
        assert led.set_legal_hold("PO-1", False, "admin")
        released = led.legal_hold_history("PO-1")[1]["at_utc"]
        assert not led.held_at("PO-1", "2000-01-01T00:00:00.000000Z")
        assert led.held_at("PO-1", held_from)
        assert not led.held_at("PO-1", released)
        assert not led.held_at("PO-2", released)
    finally:
        led.close()
