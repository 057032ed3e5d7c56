"""Scoping on the central site: the stations an account may see, enforced by ScopedIndex."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from typing import Any, Literal

from station.store.clips import ClipSearch
from station.store.ledger import ClipRecord, LegalHold
from station.store.sqlitedb import utc_text
from web.backends import IndexReader
from web.db import AccessEntry, ShareLink, StationGroup, WebDB
from web.stations import StationStatus

log = logging.getLogger(__name__)

# The stations whose clips may be shown; None = every station (no scoping).
Stations = frozenset[str] | None


def stations_for(role: str, groups_stations: Collection[str], *, central: bool) -> Stations:
    """Pure: what an account sees. A station's own site and administrators see every
    station; anyone else on the central site sees the stations of their groups, and an
    account in no group sees nothing (fail closed)."""
    if not central or role == "admin":
        return None
    return frozenset(groups_stations)


def peer_stations(station: str, groups: Collection[StationGroup]) -> Stations:
    """Pure: the stations whose clips a station's duplicate check is told of on the central
    site (central/api.py ``order-clips``): those it shares a station group with, and itself.
    Groups are warehouses or clients (two sellers' numbering: one order ID, two orders), so
    another group's clip of the same ID is no repack, and its station, clip and time must
    not go into this station's signed manifest. A site without groups is one seller's fleet:
    every station (None). A station in no group while groups exist: its own clips only."""
    if not groups:
        return None
    return frozenset({station}).union(*(g.stations for g in groups if station in g.stations))


def allows(scope: Stations, station: str) -> bool:
    return scope is None or station in scope


def covers(outer: Stations, inner: Stations) -> bool:
    """True when everything ``inner`` shows, ``outer`` may see (None = every station)."""
    if outer is None:
        return True
    return inner is not None and inner <= outer


def within(clip: ClipRecord, scope: Stations) -> ClipRecord:
    """Pure: ``clip`` as ``scope`` may see it: the clips it repacks at other stations
    (``repack_of_fleet``: station, clip id, start) only where the scope sees those stations,
    in every answer (the order page left them out, the JSON API gave them as stored)."""
    refs = clip.extra.get("repack_of_fleet")
    if scope is None or not isinstance(refs, list):
        return clip
    kept = [r for r in refs if isinstance(r, dict) and r.get("station") in scope]
    if len(kept) == len(refs):
        return clip
    extra = {k: v for k, v in clip.extra.items() if k != "repack_of_fleet"}
    return dataclasses.replace(clip, extra={**extra, **({"repack_of_fleet": kept} if kept else {})})


class ScopedIndex:
    """The clip index as one scope sees it: the only way the site's views read clips.

    Wraps any IndexReader (web/backends.py): the station's ClipIndex (web/index.py) or the
    central CentralDB (central/db.py). Clips of stations outside the scope do not exist for
    it: an order of which only such clips exist is ``[]`` (so it answers the same 404 as an
    unknown order), such a clip is ``None``, searches are filtered in SQL (pages stay full),
    station lists, counts and health rows leave them out. ``scope=None``: no scoping.
    """

    def __init__(self, index: IndexReader, scope: Stations) -> None:
        self.index = index
        self.scope = scope

    def _ok(self, station: str) -> bool:
        return allows(self.scope, station)

    # ---- records --------------------------------------------------------------------------

    def order(self, order_id: str) -> list[ClipRecord]:
        if self.scope is not None and not self.scope:
            return []
        return [within(c, self.scope) for c in self.index.order(order_id) if self._ok(c.station)]

    def order_info(self, order_id: str) -> dict[str, Any] | None:
        if self.scope is None:
            return self.index.order_info(order_id)
        clips = self.order(order_id)  # in the order recorded: first and last are by that
        if not clips:
            return None
        first, last = (str(c.extra.get("started_utc") or utc_text(c.started_at))
                       for c in (clips[0], clips[-1]))  # fmt: skip
        info = self.index.order_info(order_id) or {}
        # the times of the clips this scope sees, not of another warehouse's same order ID
        return {**info, "order_id": order_id, "first_seen_utc": first, "last_clip_utc": last}

    def clip(self, clip_id: int) -> ClipRecord | None:
        if self.scope is not None and not self.scope:
            return None
        clip = self.index.clip(clip_id)
        return within(clip, self.scope) if clip is not None and self._ok(clip.station) else None

    def legal_hold(self, order_id: str) -> LegalHold | None:
        if self.scope is not None and not self.order(order_id):
            return None
        return self.index.legal_hold(order_id)

    # ---- search ---------------------------------------------------------------------------

    def search(self, s: ClipSearch) -> list[ClipRecord]:
        """The index's search, limited to the scope's stations inside the query itself."""
        if self.scope is None:
            return self.index.search(s)
        if not self.scope or (s.station is not None and s.station not in self.scope):
            return []
        # a search already limited to some stations: those of them in the scope
        scope = self.scope if s.stations is None else self.scope.intersection(s.stations)
        found = self.index.search(dataclasses.replace(s, stations=sorted(scope)))
        return [within(c, self.scope) for c in found]

    def stations(self) -> list[str]:
        return [s for s in self.index.stations() if self._ok(s)]

    # ---- dashboard, API, fleet page ----------------------------------------------------------

    def started_between(self, start_utc: str, end_utc: str) -> list[tuple[str, str, int]]:
        if self.scope is not None and not self.scope:
            return []
        rows = self.index.started_between(start_utc, end_utc)
        return [r for r in rows if self._ok(r[0])]

    def packer_clips(self, start_utc: str, end_utc: str) -> list[tuple[str, str, float]]:
        # only a station's own site counts packers from clips, and it is never scoped
        if self.scope is not None:
            return []
        return self.index.packer_clips(start_utc, end_utc)

    def packer_days(
        self, start_utc: str, end_utc: str, zone: str
    ) -> list[tuple[str, str, int, float]]:
        """The central index's per-packer days, of the scope's stations only."""
        if self.scope is None:
            return self.index.packer_days(start_utc, end_utc, zone)
        if not self.scope:
            return []
        return self.index.packer_days(start_utc, end_utc, zone, stations=sorted(self.scope))

    def first_clip_utc(self) -> str | None:
        # scoped: unknown (the dashboard then spreads its rate over the whole window)
        return self.index.first_clip_utc() if self.scope is None else None

    def last_clip_utc(self, station: str) -> str | None:
        return self.index.last_clip_utc(station) if self._ok(station) else None

    def recent_rejections(self, limit: int = 10) -> list[Any]:
        if self.scope is None:
            return self.index.recent_rejections(limit)
        return [r for r in self.index.recent_rejections(limit) if self._ok(r.station)]

    def station_statuses(self, stale_after_s: float) -> list[StationStatus]:
        rows = self.index.station_statuses(stale_after_s)
        return [s for s in rows if self._ok(s.station)]

    def fleet_health(self) -> list[dict[str, Any]]:
        return [r for r in self.index.fleet_health() if self._ok(str(r["name"]))]


# ---- what an account of a scope may see of the site's own records ------------------------------


def visible_shares(shares: list[ShareLink], scope: Stations) -> list[ShareLink]:
    """The share links an account of ``scope`` may see (and copy): those that show nothing
    outside its scope. An administrator's link to an order shows every station's clips, so a
    scoped account does not get it."""
    return [s for s in shares if covers(scope, s.stations)]


def visible_access(entries: list[AccessEntry], scope: Stations, db: WebDB) -> list[AccessEntry]:
    """An order's access log as an account of ``scope`` may read it (``db``: web.sqlite3).
    An order ID two warehouses both used is two orders: an entry by an account, or through a
    share link, that sees none of this account's stations was about the other warehouse's
    order and is left out (as is one by an account that no longer exists). Administrators'
    entries stay."""
    if scope is None:
        return entries
    # False: the account or share no longer exists.
    users: dict[str, Stations | Literal[False]] = {}
    shares: dict[str, Stations | Literal[False]] = {}

    def overlaps(other: Stations | Literal[False]) -> bool:
        return other is None or (other is not False and bool(other & scope))

    out = []
    for e in entries:
        if e.share_id:
            if e.share_id not in shares:
                share = db.share(e.share_id)
                shares[e.share_id] = False if share is None else share.stations
            if not overlaps(shares[e.share_id]):
                continue
        if e.user:
            if e.user not in users:
                user = db.user(e.user)
                users[e.user] = (
                    False
                    if user is None
                    else stations_for(user.role, db.user_stations(user.id), central=True)
                )
            if not overlaps(users[e.user]):
                continue
        out.append(e)
    return out
