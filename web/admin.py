"""The administrator's overview: accounts and station groups (managed with the CLI), share links."""

from __future__ import annotations

from flask import Blueprint, render_template

from web.auth import require
from web.handles import get_db

bp = Blueprint("admin", __name__)


@bp.get("/admin")
@require("admin")
def index() -> str:
    db = get_db()
    users = db.users()
    return render_template(
        "admin.html",
        users=users,
        shares=db.shares(limit=500),
        # scoping (central site): who is in which station group, and what each holds
        groups=db.groups(),
        user_groups={u.name: db.user_groups(u.id) for u in users},
    )
