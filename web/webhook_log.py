"""The administrator's webhook delivery log: what was sent where, and what came back."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, render_template

from web.auth import require

bp = Blueprint("webhook_log", __name__)

QUEUE_NAME = "webhooks.sqlite3"  # station/webhooks.py writes it; the site only reads
LIMIT = 200


def _utc(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def read_log(path: Path, limit: int = LIMIT) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The newest deliveries with their attempts, and counts by status ([] when none yet)."""
    if not path.is_file():
        return [], {}
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT id, uid, event, url, created, next_at, attempts, status, last_code,"
            " last_error, done_at FROM deliveries ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        counts = dict(
            conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()
        )
        out = []
        for r in rows:
            d = dict(r)
            d["created"] = _utc(r["created"])
            d["next_at"] = _utc(r["next_at"]) if r["status"] == "pending" else ""
            d["done_at"] = _utc(r["done_at"])
            d["tries"] = [
                {"at": _utc(a["at"]), "code": a["code"], "error": a["error"], "ms": a["ms"]}
                for a in conn.execute(
                    "SELECT at, code, error, ms FROM attempts WHERE delivery_id = ? ORDER BY at",
                    (r["id"],),
                )
            ]
            out.append(d)
    finally:
        conn.close()
    return out, counts


@bp.get("/admin/webhooks")
@require("admin")
def index() -> str:
    cfg = current_app.config["PACKCAM"]
    deliveries, counts = read_log(current_app.config["DATA_DIR"] / QUEUE_NAME)
    return render_template(
        "webhooks.html",
        deliveries=deliveries,
        counts=counts,
        urls=cfg.webhooks.urls,
        events=cfg.webhooks.events,
    )
