"""The administrator's webhook delivery log: what was sent where, and what came back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, render_template

from station.floor.webhooks import QUEUE_NAME, WebhookQueue
from web.auth import require
from web.handles import site_config

bp = Blueprint("webhook_log", __name__)

LIMIT = 200


def _utc(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def read_log(path: Path, limit: int = LIMIT) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The newest deliveries with their attempts, and counts by status ([] when none yet)."""
    if not path.is_file():
        return [], {}
    queue = WebhookQueue(path, read_only=True)
    try:
        out = []
        for d in queue.deliveries(limit):
            row = {k: v for k, v in dataclasses.asdict(d).items() if k != "body"}
            row["created"] = _utc(d.created)
            row["next_at"] = _utc(d.next_at) if d.status == "pending" else ""
            row["done_at"] = _utc(d.done_at)
            row["tries"] = [
                {"at": _utc(at), "code": code, "error": error, "ms": ms}
                for at, code, error, ms in queue.attempts_of(d.id)
            ]
            out.append(row)
        return out, queue.counts()
    finally:
        queue.close()


@bp.get("/admin/webhooks")
@require("admin")
def index() -> str:
    cfg = site_config()
    deliveries, counts = read_log(current_app.config["DATA_DIR"] / QUEUE_NAME)
    return render_template(
        "webhooks.html",
        deliveries=deliveries,
        counts=counts,
        urls=cfg.webhooks.urls,
        events=cfg.webhooks.events,
    )
