"""The administrator's overview: accounts (managed with `packcam user`) and all share links."""

from __future__ import annotations

from flask import Blueprint, render_template

from web.auth import require
from web.handles import get_db

bp = Blueprint("admin", __name__)


@bp.get("/admin")
@require("admin")
def index() -> str:
    db = get_db()
    return render_template("admin.html", users=db.users(), shares=db.shares(limit=500))
