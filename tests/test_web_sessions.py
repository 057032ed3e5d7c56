"""Server-side sessions (a replayed cookie after logout is refused) and an atomic login lock."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest_web import FAST_PW, PASSWORDS, WebEnv, csrf_of, login
from test_web_share import create_share
from verify_support import Browserless, running_site

from web.db import WebDB
from web.throttle import Policy


def _cookie(client) -> str:
    cookie = client.get_cookie("packcam_session")
    assert cookie is not None
    return str(cookie.value)


def test_a_cookie_replayed_after_logout_is_refused(web_app, web_env: WebEnv) -> None:
    client = web_app.test_client()
    login(client, "viewer")
    saved = _cookie(client)
    clip_id = web_env.clips["plain"].id
    assert client.get(f"/clips/{clip_id}/video", headers={"Range": "bytes=0-9"}).status_code == 206
    assert client.post("/logout", data={"csrf_token": csrf_of(client)}).status_code == 302
    thief = web_app.test_client()
    thief.set_cookie("packcam_session", saved)
    assert thief.get("/orders/PO-1001").status_code == 302
    assert thief.get(f"/clips/{clip_id}/video", headers={"Range": "bytes=0-9"}).status_code == 302
    assert thief.get("/api/clips").status_code == 401


def test_a_password_change_ends_every_session_of_the_account(web_app, web_env: WebEnv) -> None:
    a, b = web_app.test_client(), web_app.test_client()
    login(a, "viewer")
    login(b, "viewer")
    db = WebDB.in_data_dir(web_env.data_dir, pw_method=FAST_PW)
    try:
        viewer = db.user("viewer")
        assert viewer is not None and db.session_count(viewer.id) == 2
        db.set_password("viewer", "another-pass-9")
        assert db.session_count(viewer.id) == 0
    finally:
        db.close()
    assert a.get("/search").status_code == 302 and b.get("/search").status_code == 302


def test_logging_out_one_session_keeps_the_others(web_app) -> None:
    a, b = web_app.test_client(), web_app.test_client()
    login(a, "viewer")
    login(b, "viewer")
    assert a.post("/logout", data={"csrf_token": csrf_of(a)}).status_code == 302
    assert a.get("/search").status_code == 302
    assert b.get("/search").status_code == 200


def _login_form(token: str, password: str) -> tuple[bytes, dict]:
    form = {"username": "viewer", "password": password, "csrf_token": token}
    return urlencode(form).encode(), {"Content-Type": "application/x-www-form-urlencoded"}


def test_thirty_parallel_wrong_passwords_check_at_most_the_policy_count(
    web_env: WebEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = []
    lock = threading.Lock()
    real = WebDB.authenticate

    def counting(self: WebDB, name: str, password: str):  # type: ignore[no-untyped-def]
        with lock:
            checked.append(password)
        return real(self, name, password)

    monkeypatch.setattr(WebDB, "authenticate", counting)
    policy = Policy()
    with running_site(web_env.cfg, PASSWORD_METHOD=FAST_PW) as (url, _server):
        c = Browserless(url)
        _, _, page = c.request("GET", "/login")
        m = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        assert m
        token = m.group(1).decode()
        statuses: list[int] = []
        start = threading.Barrier(30)

        def wrong(i: int) -> None:
            body, headers = _login_form(token, f"wrong-password-{i}")
            start.wait()
            status, _, _ = c.request("POST", "/login", body, headers)
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=wrong, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(statuses) == 30
        assert len(checked) <= policy.account_free, len(checked)
        assert statuses.count(429) >= 30 - policy.account_free
        body, headers = _login_form(token, PASSWORDS["viewer"])
        status, _, page = c.request("POST", "/login", body, headers)
        assert status == 429 and b"Too many failed logins" in page
        assert PASSWORDS["viewer"] not in checked  # refused without being checked
        assert c.request("GET", "/search")[0] == 302  # not logged in


def test_the_attempt_is_counted_before_the_check(tmp_path: Path) -> None:
    from web.throttle import LoginThrottle

    db = WebDB(tmp_path / "w.sqlite3", pw_method=FAST_PW)
    th = LoginThrottle(db, Policy(account_free=2, address_free=100), clock=lambda: 1000.0)
    assert th.attempt("x", "192.0.2.1")[0] == 0
    assert th.attempt("x", "192.0.2.1")[0] == 0  # the 2nd attempt locks, but is checked
    wait, counts = th.attempt("x", "192.0.2.1")
    assert wait == 30 and counts == {}
    th.succeeded("x", "192.0.2.1")
    assert th.attempt("x", "192.0.2.1")[0] == 0
    db.close()


def test_a_slow_response_does_not_undo_a_newer_session(web_app, web_env: WebEnv) -> None:
    # The order page's poster and thumbnail requests are still in flight when the seller
    # presses "Revoke". Their responses arrive after the revoke's: had they re-sent the
    # session cookie they were sent with, the browser would drop the newer one and with it
    # the "Share link revoked." notice (the browser test saw this on a loaded machine).
    staff = login(web_app.test_client(), "viewer")
    create_share(staff)
    page = staff.get("/orders/PO-1001").get_data(as_text=True)
    share_id = re.search(r'action="/shares/([0-9a-f]+)/revoke"', page).group(1)
    clip_id = web_env.clips["plain"].id
    before = _cookie(staff)
    resp = staff.post(f"/shares/{share_id}/revoke", data={"csrf_token": csrf_of(staff)})
    assert resp.status_code == 302
    late = web_app.test_client()
    late.set_cookie("packcam_session", before)
    for path in (f"/clips/{clip_id}/thumb.jpg", f"/clips/{clip_id}/keyframes/0.jpg"):
        slow = late.get(path)
        assert slow.status_code == 200
        assert "packcam_session" not in " ".join(slow.headers.getlist("Set-Cookie")), path
    assert "Share link revoked." in staff.get(resp.location).get_data(as_text=True)
