"""What create_app is handed for a site that is not one data dir's: its index and media store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flask import Flask, Response

from station.store.clips import ClipSearch
from station.store.ledger import ClipRecord, LegalHold
from web.frames import KeyFrame
from web.stations import StationStatus

if TYPE_CHECKING:
    from station.proof.trust import Anchors
    from station.proof.verify import Report

# Checks the clips of a shared order against what the site hands out (the share summary).
ClipsVerifier = Callable[[list[ClipRecord], "Anchors"], list[Any]]


class MediaStore(Protocol):
    """Where the site's clips, key frames and bundles come from when they are not this data
    dir's files (the central site: the fleet's object store). Called in a request context."""

    def serve_clip(self, clip: ClipRecord, *, download_name: str, attachment: bool) -> Response:
        """The clip's video (Range passed through, or a redirect to the store)."""
        ...

    def serve_frame(self, clip: ClipRecord, n: int | None) -> Response:
        """Key frame ``n`` of the clip, or its thumbnail (``None``), as a JPEG."""
        ...

    def is_archived(self, clip: ClipRecord) -> bool: ...

    def keyframes(self, clip: ClipRecord) -> list[KeyFrame]: ...

    def bundle(
        self, order_id: str, clips: list[ClipRecord], clip_id: int | None, download_name: str
    ) -> Response:
        """The order's evidence bundle (for the station of ``clip_id``, else the newest clip's)."""
        ...

    def bundle_verifier(self, order_id: str) -> ClipsVerifier:
        """How the share summary verifies the order's clips: against the bundle handed out."""
        ...

    def check_bundle(self, report: Report) -> None:
        """Add to a verified bundle's report what the site's index (and, centrally, the archive
        and the site's own witness record, its witness key pinned) says of its clips."""
        ...

    def verify_clip(self, path: Path) -> Report:
        """Verify an uploaded clip against the site's index and store."""
        ...


class IndexReader(Protocol):
    """The clip index a site reads: the station's ClipIndex (web/index.py, SQLite) and the
    fleet's CentralDB (central/db.py, PostgreSQL) both have every method, checked by mypy
    (tests/test_protocols.py) and by a conformance test run against both. A method one of them
    has no data for answers empty (documented there), so views never ask which index it is.
    Wrapped by web/scope.py's ScopedIndex; one handle per server thread."""

    def order(self, order_id: str) -> list[ClipRecord]: ...

    def order_info(self, order_id: str) -> dict[str, Any] | None: ...

    def clip(self, clip_id: int) -> ClipRecord | None: ...

    def legal_hold(self, order_id: str) -> LegalHold | None:
        """The order's legal hold (holds live on the stations: None on the central index)."""
        ...

    def search(self, s: ClipSearch) -> list[ClipRecord]: ...

    def stations(self) -> list[str]: ...

    def started_between(self, start_utc: str, end_utc: str) -> list[tuple[str, str, int]]: ...

    def packer_clips(self, start_utc: str, end_utc: str) -> list[tuple[str, str, float]]:
        """(packer, started_at, duration_s) of packing clips: the station dashboard's input."""
        ...

    def packer_days(
        self, start_utc: str, end_utc: str, zone: str, *, stations: Sequence[str] | None = None
    ) -> list[tuple[str, str, int, float]]:
        """(packer, local day, orders, median seconds), computed by the database: the central
        dashboard's input."""
        ...

    def first_clip_utc(self) -> str | None: ...

    def last_clip_utc(self, station: str) -> str | None: ...

    def recent_rejections(self, limit: int = 10) -> list[Any]: ...

    def station_statuses(self, stale_after_s: float) -> list[StationStatus]:
        """Each enrolled station's health as it reported it (a station's site reads its own
        live files instead: [] there)."""
        ...

    def fleet_health(self) -> list[dict[str, Any]]:
        """Every enrolment's counters and alarms (the fleet page; [] on a station)."""
        ...

    def close(self) -> None: ...


class SiteBackend(Protocol):
    """A site built from more than one data dir (central/site.py builds the fleet's): it sets
    itself up on the app, hands out each thread's clip index and serves the media."""

    media: MediaStore
    # URL prefixes whose requests may be larger than a page's (a station's API batches).
    large_bodies: tuple[tuple[str, int], ...]

    def init_app(self, app: Flask) -> None:
        """Its own config, error handlers and blueprints (called once by create_app)."""
        ...

    def index(self) -> IndexReader:
        """This server thread's clip index."""
        ...


__all__ = ["ClipsVerifier", "IndexReader", "MediaStore", "SiteBackend"]
