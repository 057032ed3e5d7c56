"""The site's own SQLite file (web.sqlite3): accounts, share links and the per-order access log."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
import unicodedata
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from werkzeug.security import check_password_hash, generate_password_hash

from station.errors import StationError
from station.store import sqlitedb

log = logging.getLogger(__name__)

WEB_DB_NAME = "web.sqlite3"
ROLES = ("viewer", "operator", "admin")
ROLE_RANK = {r: i for i, r in enumerate(ROLES)}
# scrypt (a memory-hard standard KDF, via hashlib) with werkzeug's defaults: n=2**15, r=8, p=1.
DEFAULT_PW_METHOD = "scrypt"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_NAME = re.compile(r"^[\w.@+-]{1,64}$")
# Verified against when the user does not exist, so a wrong name costs as much as a wrong
# password and the response time does not reveal which accounts exist.
_DUMMY_HASH = generate_password_hash("packcam-no-such-user", method="scrypt:1024:8:1")

# Each entry upgrades the schema by one version (PRAGMA user_version); never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        role            TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        pw_hash         TEXT NOT NULL,
        epoch           INTEGER NOT NULL DEFAULT 0,
        created_utc     TEXT NOT NULL,
        last_login_utc  TEXT
    );
    CREATE TABLE share_links (
        id              TEXT PRIMARY KEY,
        order_id        TEXT NOT NULL,
        created_by      TEXT NOT NULL,
        created_utc     TEXT NOT NULL,
        expires_utc     TEXT NOT NULL,
        revoked_utc     TEXT,
        revoked_by      TEXT,
        note            TEXT NOT NULL DEFAULT '',
        uses            INTEGER NOT NULL DEFAULT 0,
        last_used_utc   TEXT
    );
    CREATE INDEX share_links_order ON share_links(order_id, created_utc);
    CREATE TABLE access_log (
        id              INTEGER PRIMARY KEY,
        at_utc          TEXT NOT NULL,
        order_id        TEXT NOT NULL,
        clip_id         INTEGER,
        action          TEXT NOT NULL,
        user            TEXT,
        share_id        TEXT,
        remote_addr     TEXT,
        detail          TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX access_log_order ON access_log(order_id, at_utc);
    """,
    # 2: failed logins per account name and per remote address (web/throttle.py).
    """
    CREATE TABLE login_failures (
        scope           TEXT NOT NULL CHECK (scope IN ('account', 'address')),
        key             TEXT NOT NULL,
        failures        INTEGER NOT NULL,
        last_at         REAL NOT NULL,
        locked_until    REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    CREATE INDEX login_failures_last ON login_failures(last_at);
    """,
    # 3: server-side sessions: the cookie names one, so logging out ends it for good.
    """
    CREATE TABLE web_sessions (
        sid             TEXT PRIMARY KEY,
        user_id         INTEGER NOT NULL,
        created_at      REAL NOT NULL,
        expires_at      REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX web_sessions_user ON web_sessions(user_id);
    CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);
    """,
    # 4: scoping on the central site (web/scope.py): station groups (warehouses), the stations
    # in each, the accounts in each; a share link keeps the stations its creator could see.
    """
    CREATE TABLE station_groups (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        created_utc     TEXT NOT NULL
    );
    CREATE TABLE group_stations (
        group_id        INTEGER NOT NULL REFERENCES station_groups(id),
        station         TEXT NOT NULL,
        PRIMARY KEY (group_id, station)
    ) WITHOUT ROWID;
    CREATE TABLE user_groups (
        user_id         INTEGER NOT NULL REFERENCES users(id),
        group_id        INTEGER NOT NULL REFERENCES station_groups(id),
        PRIMARY KEY (user_id, group_id)
    ) WITHOUT ROWID;
    CREATE INDEX user_groups_group ON user_groups(group_id);
    -- NULL: every station (made by an administrator or on a station's own site)
    ALTER TABLE share_links ADD COLUMN stations TEXT;
    """,
)

ACTIONS = (
    "view",
    "download",
    "export",
    "hold",
    "release",
    "share",
    "share-revoke",
    "share-use",
    "share-download",
)


def _end_sessions_of(db: sqlite3.Connection, name: str) -> None:
    db.execute(
        "DELETE FROM web_sessions WHERE user_id IN (SELECT id FROM users WHERE name = ?)", (name,)
    )


class AccountError(StationError):
    """An account could not be created, changed or removed (bad name, role or password)."""


class WebDBError(StationError):
    """web.sqlite3 could not be opened, migrated or written."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_str(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    epoch: int
    created_utc: str
    last_login_utc: str | None

    def can(self, role: str) -> bool:
        """True when this user has ``role`` or a higher one."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class ShareLink:
    id: str
    order_id: str
    created_by: str
    created_utc: str
    expires_utc: str
    revoked_utc: str | None
    revoked_by: str | None
    note: str
    uses: int
    last_used_utc: str | None
    # the stations whose clips the link shows: its creator's scope when it was made
    # (web/scope.py); None = every station
    stations: frozenset[str] | None = None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_utc:
            return "revoked"
        if parse_utc(self.expires_utc) <= (now or utc_now()):
            return "expired"
        return "active"


@dataclass(frozen=True)
class AccessEntry:
    at_utc: str
    order_id: str
    clip_id: int | None
    action: str
    user: str | None
    share_id: str | None
    remote_addr: str | None
    detail: str


def check_name(name: str) -> str:
    """Return the normalised account name or raise AccountError."""
    name = unicodedata.normalize("NFC", name.strip())
    if not _NAME.match(name):
        raise AccountError(
            "account names are 1-64 letters, digits or . _ @ + - (no spaces), got " + repr(name)
        )
    return name


@dataclass(frozen=True)
class StationGroup:
    """A station group (a warehouse): its stations and the accounts that may see them."""

    name: str
    stations: tuple[str, ...]
    members: tuple[str, ...]


def check_station_name(name: str) -> str:
    """A station name as the central index accepts it (1-64 printable characters)."""
    name = name.strip()
    if not name or len(name) > 64 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise AccountError(f"station names are 1-64 printable characters, got {name!r}")
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"password too long: at most {MAX_PASSWORD} characters")


class WebDB(sqlitedb.Table):
    """Accounts, share links and access log in one SQLite file (WAL).

    Open with a path or an existing connection (closed by ``close``). Safe to share between
    threads: every statement runs under the database's lock (the site opens one instance per
    request anyway, on ``g``).
    """

    error = WebDBError

    def __init__(
        self,
        target: Path | str | sqlite3.Connection,
        *,
        pw_method: str = DEFAULT_PW_METHOD,
        setup: bool = True,
    ) -> None:
        self.pw_method = pw_method
        try:
            own = not isinstance(target, sqlite3.Connection)
            with sqlitedb.closed_on_error(sqlitedb.open_connection(target), own=own) as conn:
                super().__init__(sqlitedb.Database(conn))
                self.conn.row_factory = sqlite3.Row
                self.conn.execute("PRAGMA synchronous=NORMAL")
                if setup:  # once per process (the site does it in create_app), not per request
                    sqlitedb.use_wal(self.conn)
                    self.migrate()
        except sqlite3.Error as exc:
            raise WebDBError(f"cannot open {target}: {exc}") from exc

    @classmethod
    def in_data_dir(cls, data_dir: Path, **kw: Any) -> WebDB:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / WEB_DB_NAME, **kw)

    def close(self) -> None:
        self.db.close()

    @property
    def schema_version(self) -> int:
        return sqlitedb.schema_version(self.conn)

    def migrate(self) -> None:
        sqlitedb.migrate(self.conn, self._lock, MIGRATIONS, WebDBError, "web.sqlite3")

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self.db.tx(WebDBError, "web.sqlite3 write")

    # ---- accounts -------------------------------------------------------------------------

    @staticmethod
    def _user(r: sqlite3.Row) -> User:
        return User(
            r["id"], r["name"], r["role"], r["epoch"], r["created_utc"], r["last_login_utc"]
        )

    def user_count(self) -> int:
        row = self._one("SELECT count(*) FROM users")
        return int(row[0]) if row else 0

    def users(self) -> list[User]:
        return [self._user(r) for r in self._all("SELECT * FROM users ORDER BY name")]

    def user(self, name: str) -> User | None:
        r = self._one("SELECT * FROM users WHERE name = ?", (name,))
        return self._user(r) if r else None

    def user_by_id(self, user_id: int) -> User | None:
        r = self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        return self._user(r) if r else None

    def add_user(
        self, name: str, role: str, password: str, *, groups: Collection[str] = ()
    ) -> User:
        """Create an account, in the station ``groups`` (which must exist) if given."""
        name = check_name(name)
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        check_password(password)
        pw_hash = generate_password_hash(password, method=self.pw_method)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"account {name!r} already exists")
            gids = [self._group_id(db, g) for g in groups]
            cur = db.execute(
                "INSERT INTO users(name, role, pw_hash, created_utc) VALUES (?, ?, ?, ?)",
                (name, role, pw_hash, utc_str(utc_now())),
            )
            for gid in gids:
                db.execute(
                    "INSERT OR IGNORE INTO user_groups(user_id, group_id) VALUES (?, ?)",
                    (cur.lastrowid, gid),
                )
        log.info("account %r added with role %s", name, role)
        user = self.user(name)
        assert user is not None
        return user

    def set_password(self, name: str, password: str) -> None:
        """Change a password; bumping ``epoch`` ends every session of that account."""
        check_password(password)
        self._change_account(
            name, "pw_hash", generate_password_hash(password, method=self.pw_method)
        )
        log.info("password of account %r changed; its sessions ended", name)

    def set_role(self, name: str, role: str) -> None:
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        self._change_account(name, "role", role)

    def _change_account(self, name: str, column: Literal["pw_hash", "role"], value: str) -> None:
        """Set ``column`` of account ``name``; bumping ``epoch`` ends its sessions."""
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE users SET {column} = ?, epoch = epoch + 1 WHERE name = ?", (value, name)
            )
            if cur.rowcount == 0:
                raise AccountError(f"no account named {name!r}")
            _end_sessions_of(db, name)

    def remove_user(self, name: str) -> None:
        with self._tx() as db:
            _end_sessions_of(db, name)
            db.execute(
                "DELETE FROM user_groups WHERE user_id IN (SELECT id FROM users WHERE name = ?)",
                (name,),
            )
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise AccountError(f"no account named {name!r}")
        log.info("account %r removed", name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when name and password match, else None (constant work either way)."""
        r = self._one("SELECT * FROM users WHERE name = ?", (name.strip(),))
        if r is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        if not check_password_hash(r["pw_hash"], password):
            return None
        with self._tx() as db:
            db.execute(
                "UPDATE users SET last_login_utc = ? WHERE id = ?", (utc_str(utc_now()), r["id"])
            )
        return self._user(r)

    # ---- server-side sessions ---------------------------------------------------------------

    def start_session(self, user_id: int, now: float, lifetime_s: float) -> str:
        """A new session id for this user (expired ones of anybody are deleted on the way)."""
        sid = secrets.token_urlsafe(24)
        with self._tx() as db:
            db.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
            db.execute(
                "INSERT INTO web_sessions(sid, user_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (sid, user_id, now, now + lifetime_s),
            )
        return sid

    def session_alive(self, sid: str, user_id: int, now: float) -> bool:
        r = self._one(
            "SELECT 1 FROM web_sessions WHERE sid = ? AND user_id = ? AND expires_at >= ?",
            (sid, user_id, now),
        )
        return r is not None

    def end_session(self, sid: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM web_sessions WHERE sid = ?", (sid,))

    def session_count(self, user_id: int) -> int:
        r = self._one("SELECT count(*) AS n FROM web_sessions WHERE user_id = ?", (user_id,))
        return int(r["n"]) if r is not None else 0

    # ---- failed logins (web/throttle.py decides; this only stores) ------------------------

    def begin_login_attempt(
        self,
        keys: list[tuple[str, str, Callable[[int], float]]],
        now: float,
        window_s: float,
    ) -> tuple[float, dict[str, int]]:
        """In one write transaction: if any (scope, key) is locked, return its locked_until and
        count nothing; else count this attempt as a failure for each (locking per
        ``lock_s(failures)``) and return (0, failures by scope). The password is checked only
        after this, and a success clears the counts: so parallel attempts are each counted
        before any is checked, and none is checked once the lock is reached."""
        with self._tx() as db:
            db.execute("DELETE FROM login_failures WHERE last_at < ?", (now - window_s,))
            latest = 0.0
            current: dict[tuple[str, str], int] = {}
            for scope, key, _lock in keys:
                r = db.execute(
                    "SELECT failures, locked_until FROM login_failures WHERE scope = ? AND key = ?",
                    (scope, key),
                ).fetchone()
                if r is not None:
                    latest = max(latest, float(r["locked_until"]))
                    current[(scope, key)] = int(r["failures"])
            if latest > now:
                return latest, {}
            counts: dict[str, int] = {}
            for scope, key, lock_s in keys:
                failures = current.get((scope, key), 0) + 1
                wait = lock_s(failures)
                db.execute(
                    "INSERT INTO login_failures(scope, key, failures, last_at, locked_until)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(scope, key) DO UPDATE SET"
                    " failures = excluded.failures, last_at = excluded.last_at,"
                    " locked_until = excluded.locked_until",
                    (scope, key, failures, now, now + wait if wait > 0 else 0.0),
                )
                counts[scope] = failures
        return 0.0, counts

    def login_locked_until(self, keys: list[tuple[str, str]]) -> float:
        """The latest ``locked_until`` (unix time) of these (scope, key) pairs; 0 if none."""
        latest = 0.0
        for scope, key in keys:
            r = self._one(
                "SELECT locked_until FROM login_failures WHERE scope = ? AND key = ?", (scope, key)
            )
            if r is not None:
                latest = max(latest, float(r["locked_until"]))
        return latest

    def record_login_failure(
        self, scope: str, key: str, now: float, window_s: float, lock_s: Callable[[int], float]
    ) -> tuple[int, float]:
        """Count one more failure (restarting after ``window_s`` of quiet); lock for
        ``lock_s(failures)`` seconds. Returns (failures, locked_until). Also forgets entries
        idle for longer than the window, so random names cannot grow the table for ever."""
        with self._tx() as db:
            db.execute("DELETE FROM login_failures WHERE last_at < ?", (now - window_s,))
            r = db.execute(
                "SELECT failures FROM login_failures WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
            failures = 1 + (int(r["failures"]) if r is not None else 0)
            wait = lock_s(failures)
            until = now + wait if wait > 0 else 0.0
            db.execute(
                "INSERT INTO login_failures(scope, key, failures, last_at, locked_until)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(scope, key) DO UPDATE SET"
                " failures = excluded.failures, last_at = excluded.last_at,"
                " locked_until = excluded.locked_until",
                (scope, key, failures, now, until),
            )
        return failures, until

    def clear_login_failures(self, keys: list[tuple[str, str]]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM login_failures WHERE scope = ? AND key = ?", keys)

    # ---- share links ----------------------------------------------------------------------

    @staticmethod
    def _share(r: sqlite3.Row) -> ShareLink:
        fields = {k: r[k] for k in ShareLink.__dataclass_fields__ if k != "stations"}
        stations = None if r["stations"] is None else frozenset(json.loads(r["stations"]))
        return ShareLink(**fields, stations=stations)

    def create_share(
        self,
        order_id: str,
        created_by: str,
        lifetime: timedelta,
        note: str = "",
        *,
        stations: Collection[str] | None = None,
    ) -> ShareLink:
        """A new link to ``order_id``; ``stations``: the only stations whose clips it shows
        (the creator's scope), None for every station."""
        share_id = secrets.token_hex(12)
        now = utc_now()
        scope = None if stations is None else json.dumps(sorted(stations), ensure_ascii=False)
        with self._tx() as db:
            db.execute(
                "INSERT INTO share_links(id, order_id, created_by, created_utc, expires_utc,"
                " note, stations) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (share_id, order_id, created_by, utc_str(now), utc_str(now + lifetime), note,
                 scope),
            )  # fmt: skip
        share = self.share(share_id)
        assert share is not None
        return share

    def share(self, share_id: str) -> ShareLink | None:
        r = self._one("SELECT * FROM share_links WHERE id = ?", (share_id,))
        return self._share(r) if r else None

    def shares(self, order_id: str | None = None, *, limit: int = 200) -> list[ShareLink]:
        where, args = ("", ()) if order_id is None else (" WHERE order_id = ?", (order_id,))
        rows = self._all(
            f"SELECT * FROM share_links{where} ORDER BY created_utc DESC LIMIT ?", (*args, limit)
        )
        return [self._share(r) for r in rows]

    def revoke_share(self, share_id: str, by: str) -> bool:
        """Revoke a link; False when it does not exist or was already revoked."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE share_links SET revoked_utc = ?, revoked_by = ?"
                " WHERE id = ? AND revoked_utc IS NULL",
                (utc_str(utc_now()), by, share_id),
            )
        return cur.rowcount > 0

    def note_share_use(self, share_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE share_links SET uses = uses + 1, last_used_utc = ? WHERE id = ?",
                (utc_str(utc_now()), share_id),
            )

    # ---- station groups (scoping on the central site, web/scope.py) ------------------------

    def _group_id(self, db: sqlite3.Connection, name: str) -> int:
        r = db.execute("SELECT id FROM station_groups WHERE name = ?", (name,)).fetchone()
        if r is None:
            raise AccountError(f"no station group named {name!r}")
        return int(r["id"])

    def add_group(self, name: str) -> None:
        name = check_name(name)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM station_groups WHERE name = ?", (name,)).fetchone():
                raise AccountError(f"station group {name!r} already exists")
            db.execute(
                "INSERT INTO station_groups(name, created_utc) VALUES (?, ?)",
                (name, utc_str(utc_now())),
            )
        log.info("station group %r added", name)

    def remove_group(self, name: str) -> None:
        """Delete a group; its members lose its stations (and see nothing if it was their
        only group)."""
        with self._tx() as db:
            gid = self._group_id(db, name)
            db.execute("DELETE FROM user_groups WHERE group_id = ?", (gid,))
            db.execute("DELETE FROM group_stations WHERE group_id = ?", (gid,))
            db.execute("DELETE FROM station_groups WHERE id = ?", (gid,))
        log.info("station group %r removed", name)

    def change_group_stations(
        self, name: str, add: Collection[str] = (), remove: Collection[str] = ()
    ) -> None:
        adding = [check_station_name(s) for s in add]
        with self._tx() as db:
            gid = self._group_id(db, name)
            for station in adding:
                db.execute(
                    "INSERT OR IGNORE INTO group_stations(group_id, station) VALUES (?, ?)",
                    (gid, station),
                )
            for station in remove:
                db.execute(
                    "DELETE FROM group_stations WHERE group_id = ? AND station = ?",
                    (gid, station.strip()),
                )
        log.info("station group %r: stations added %s, removed %s", name, adding, list(remove))

    def change_group_members(
        self, name: str, add: Collection[str] = (), remove: Collection[str] = ()
    ) -> None:
        with self._tx() as db:
            gid = self._group_id(db, name)
            for user, adding in [(u, True) for u in add] + [(u, False) for u in remove]:
                r = db.execute("SELECT id FROM users WHERE name = ?", (user,)).fetchone()
                if r is None:
                    raise AccountError(f"no account named {user!r}")
                if adding:
                    db.execute(
                        "INSERT OR IGNORE INTO user_groups(user_id, group_id) VALUES (?, ?)",
                        (r["id"], gid),
                    )
                else:
                    db.execute(
                        "DELETE FROM user_groups WHERE user_id = ? AND group_id = ?",
                        (r["id"], gid),
                    )
        log.info("station group %r: members added %s, removed %s", name, list(add), list(remove))

    def groups(self) -> list[StationGroup]:
        out = []
        for g in self._all("SELECT id, name FROM station_groups ORDER BY name"):
            stations = self._all(
                "SELECT station FROM group_stations WHERE group_id = ? ORDER BY station",
                (g["id"],),
            )
            members = self._all(
                "SELECT u.name FROM user_groups m JOIN users u ON u.id = m.user_id"
                " WHERE m.group_id = ? ORDER BY u.name",
                (g["id"],),
            )
            out.append(
                StationGroup(g["name"], tuple(r[0] for r in stations), tuple(r[0] for r in members))
            )
        return out

    def user_groups(self, user_id: int) -> list[str]:
        rows = self._all(
            "SELECT g.name FROM user_groups m JOIN station_groups g ON g.id = m.group_id"
            " WHERE m.user_id = ? ORDER BY g.name",
            (user_id,),
        )
        return [r[0] for r in rows]

    def user_stations(self, user_id: int) -> frozenset[str]:
        """The stations of every group the account is in (empty: in no group)."""
        rows = self._all(
            "SELECT DISTINCT s.station FROM user_groups m"
            " JOIN group_stations s ON s.group_id = m.group_id WHERE m.user_id = ?",
            (user_id,),
        )
        return frozenset(r[0] for r in rows)

    # ---- access log -----------------------------------------------------------------------

    def log_access(
        self,
        order_id: str,
        action: str,
        *,
        user: str | None = None,
        clip_id: int | None = None,
        share_id: str | None = None,
        remote_addr: str | None = None,
        detail: str = "",
    ) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown access action {action!r}")  # programming error
        with self._tx() as db:
            db.execute(
                "INSERT INTO access_log(at_utc, order_id, clip_id, action, user, share_id,"
                " remote_addr, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    utc_str(utc_now()),
                    order_id,
                    clip_id,
                    action,
                    user,
                    share_id,
                    remote_addr,
                    detail[:200],
                ),
            )

    def access_log(self, order_id: str, *, limit: int = 200) -> list[AccessEntry]:
        rows = self._all(
            "SELECT * FROM access_log WHERE order_id = ? ORDER BY id DESC LIMIT ?",
            (order_id, limit),
        )
        return [AccessEntry(*(r[k] for k in AccessEntry.__dataclass_fields__)) for r in rows]
