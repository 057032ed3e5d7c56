"""The fleet's central site: web/'s pages over the PostgreSQL index and the object store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, abort

from central import api, bundles, media
from central.db import CentralDB
from central.verify import check_bundle_in_index, check_bundle_witnessed, verify_clip_central
from central.witness import witness_key
from station.config import Config
from station.store.ledger import ClipRecord
from web import create_app as create_web_app
from web.backends import ClipsVerifier, MediaStore
from web.cli import make_server as make_web_server
from web.frames import KeyFrame
from web.handles import site_config
from web.verify import site_anchors

if TYPE_CHECKING:
    from station.proof.trust import Anchors
    from station.proof.verify import Report


class CentralSite:
    """web.backends.SiteBackend (and MediaStore) for the central site: clips are searched in
    PostgreSQL (``[central] dsn``) and streamed from object storage (``[archive]``); accounts,
    share links and the access log stay in the data dir's web.sqlite3. One per app; its
    methods run on the server's threads, each with its own connection (central.api)."""

    large_bodies: tuple[tuple[str, int], ...] = ((str(api.bp.url_prefix), api.MAX_BODY),)

    def __init__(self, config: Config) -> None:
        self.config = config
        self.media: MediaStore = self

    def init_app(self, app: Flask) -> None:
        api.init_app(app, self.config.central.dsn)
        media.init_app(app, self.config)
        app.register_blueprint(api.bp)

    def index(self) -> CentralDB:
        return api.central_db()

    # ---- MediaStore ----

    def serve_clip(self, clip: ClipRecord, *, download_name: str, attachment: bool) -> Response:
        return media.serve_clip(clip, download_name=download_name, attachment=attachment)

    def serve_frame(self, clip: ClipRecord, n: int | None) -> Response:
        return media.serve_frame(clip, n)

    def is_archived(self, clip: ClipRecord) -> bool:
        return media.is_archived(clip)

    def keyframes(self, clip: ClipRecord) -> list[KeyFrame]:
        return media.keyframes(clip)

    def bundle(
        self, order_id: str, clips: list[ClipRecord], clip_id: int | None, download_name: str
    ) -> Response:
        return bundles.respond(order_id, clips, clip_id, download_name)  # type: ignore[no-any-return]

    def bundle_verifier(self, order_id: str) -> ClipsVerifier:
        store = media.media_store()
        if store is None:
            abort(503)
        cfg = site_config()
        spool = cfg.station.data_dir / "spool" / "summary"

        def witnessed(report: Report) -> None:
            # the parts in the bucket are the station's word: the share summary holds them to
            # this site's own witness record, as its /verify page does (a re-signed log: fork)
            check_bundle_witnessed(report, api.central_db(), witness_key(self.config))

        def verify(clips: list[ClipRecord], anchors: Anchors) -> list[Any]:
            return bundles.verify_archived(
                store, cfg.archive.prefix, order_id, clips, anchors, spool,
                max_bytes=cfg.web.bundle_cache_mb << 20, headroom=cfg.web.verify_headroom_mb << 20,
                check=witnessed,
            )  # fmt: skip

        return verify

    def check_bundle(self, report: Report) -> None:
        check_bundle_in_index(report, api.central_db(), media.media_store())
        # this site is the witness: the bundle is held to its own record, its own key pinned
        check_bundle_witnessed(report, api.central_db(), witness_key(self.config))

    def verify_clip(self, path: Path) -> Report:
        # judged against what this site publishes (/trust): its company CA and TSA roots
        anchors = site_anchors(site_config())
        return verify_clip_central(path, api.central_db(), media.media_store(), anchors)


def create_app(config: Config, *, test_config: dict[str, Any] | None = None) -> Flask:
    """The central site's Flask app (web.create_app with this site's backends)."""
    return create_web_app(config, test_config=test_config, central=CentralSite(config))


def make_server(config: Config, host: str, port: int, **kw: Any) -> Any:
    """A waitress server for the central site, bound but not yet running (web.cli.make_server)."""
    return make_web_server(config, host, port, central=CentralSite(config), **kw)


__all__ = ["CentralSite", "create_app", "make_server"]
