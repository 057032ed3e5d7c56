"""Accounts, login, sessions, roles, CSRF, cookies and security headers of the web site."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest
from conftest_web import FAST_PW, PASSWORDS, WebEnv, csrf_of, login, make_app


def test_login_page_is_a_form_with_csrf(web_client) -> None:
    page = web_client.get("/login").get_data(as_text=True)
    assert '<form method="post" action="/login"' in page
    assert 'name="csrf_token"' in page and 'name="password"' in page


def test_login_and_logout(web_client) -> None:
    login(web_client, "viewer")
    assert web_client.get("/search").status_code == 200
    token = csrf_of(web_client)
    assert web_client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert web_client.get("/search").status_code == 302


@pytest.mark.parametrize(
    ("name", "password"),
    [("viewer", "wrong-password"), ("nobody", "viewer-pass-1"), ("", ""), ("viewer", "")],
)
def test_wrong_credentials(web_client, name: str, password: str) -> None:
    token = csrf_of(web_client)
    resp = web_client.post(
        "/login", data={"username": name, "password": password, "csrf_token": token}
    )
    assert resp.status_code == 401
    assert b"Wrong name or password" in resp.data
    assert web_client.get("/search").status_code == 302


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("post", "/login", {"username": "viewer", "password": PASSWORDS["viewer"]}),
        ("post", "/logout", {}),
        ("post", "/shares", {"order_id": "PO-1001"}),
        ("post", "/shares/abc/revoke", {}),
    ],
)
def test_every_form_needs_the_csrf_token(web_client, method: str, path: str, data) -> None:
    if path != "/login":
        login(web_client, "admin")
    resp = getattr(web_client, method)(path, data=data)
    assert resp.status_code == 400
    assert b"form expired" in resp.data
    bad = getattr(web_client, method)(path, data={**data, "csrf_token": "forged"})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "x"],
)
def test_login_never_redirects_off_site(web_client, target: str) -> None:
    token = csrf_of(web_client)
    resp = web_client.post(
        "/login",
        data={**{"username": "viewer", "password": PASSWORDS["viewer"]}, "csrf_token": token,
              "next": target},
    )  # fmt: skip
    assert resp.status_code == 302
    assert resp.location == "/search"


def test_login_returns_to_the_page_asked_for(web_client) -> None:
    first = web_client.get("/orders/PO-1001")
    assert first.location == "/login?next=/orders/PO-1001"
    token = csrf_of(web_client)
    resp = web_client.post(
        "/login",
        data={"username": "viewer", "password": PASSWORDS["viewer"], "csrf_token": token,
              "next": "/orders/PO-1001"},
    )  # fmt: skip
    assert resp.location == "/orders/PO-1001"


ROLE_PAGES = [
    ("/search", "viewer"),
    ("/orders/PO-1001", "viewer"),
    ("/live", "operator"),
    ("/dashboard", "operator"),
    ("/admin", "admin"),
]


@pytest.mark.parametrize(("path", "needed"), ROLE_PAGES)
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_roles(web_client, path: str, needed: str, role: str) -> None:
    order = ["viewer", "operator", "admin"]
    login(web_client, role)
    status = web_client.get(path).status_code
    if order.index(role) >= order.index(needed):
        assert status == 200, (path, role)
    else:
        assert status == 403, (path, role)


@pytest.mark.parametrize("path", [p for p, _ in ROLE_PAGES])
def test_anonymous_is_sent_to_login(web_client, path: str) -> None:
    resp = web_client.get(path)
    assert resp.status_code == 302 and resp.location.startswith("/login")


def test_first_run_tells_how_to_make_the_first_admin(tmp_path, mp4_template, caplog) -> None:
    from conftest_web import build_env

    env = build_env(tmp_path, mp4_template)
    with caplog.at_level("WARNING"):
        app = make_app(env)
    assert "packcam user add NAME --role admin" in caplog.text
    page = app.test_client().get("/login").get_data(as_text=True)
    assert 'id="first-run"' in page and "packcam user add NAME --role admin" in page


def test_no_first_run_hint_once_accounts_exist(web_client) -> None:
    assert b'id="first-run"' not in web_client.get("/login").data


def test_password_change_ends_sessions(web_client, web_env: WebEnv) -> None:
    from web.db import WebDB

    login(web_client, "viewer")
    db = WebDB.in_data_dir(web_env.data_dir, pw_method=FAST_PW)
    db.set_password("viewer", "a-new-password")
    db.close()
    assert web_client.get("/search").status_code == 302


def test_removed_account_is_logged_out(web_client, web_env: WebEnv) -> None:
    from web.db import WebDB

    login(web_client, "operator")
    db = WebDB.in_data_dir(web_env.data_dir, pw_method=FAST_PW)
    db.remove_user("operator")
    db.close()
    assert web_client.get("/dashboard").status_code == 302


def test_session_expires_after_the_configured_hours(web_client, web_env: WebEnv) -> None:
    login(web_client, "viewer")
    with web_client.session_transaction() as sess:
        sess["login_at"] = time.time() - web_env.cfg.web.session_hours * 3600 - 5
    assert web_client.get("/search").status_code == 302


def test_session_cookie_flags(web_client) -> None:
    token = csrf_of(web_client)
    resp = web_client.post(
        "/login", data={"username": "viewer", "password": PASSWORDS["viewer"], "csrf_token": token}
    )
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP, secure_cookies = "auto"
    assert "Expires=" in cookie  # a permanent session with the configured lifetime


def test_secure_cookie_over_https(web_app) -> None:
    client = web_app.test_client()
    resp = client.get("/login", base_url="https://localhost")
    assert "Secure" in resp.headers["Set-Cookie"]
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_secure_cookies_always(tmp_path, mp4_template) -> None:
    from conftest_web import build_env

    env = build_env(tmp_path, mp4_template, secure_cookies="always")
    resp = make_app(env).test_client().get("/login")
    assert "Secure" in resp.headers["Set-Cookie"]


def test_security_headers_everywhere(web_client) -> None:
    for path in ("/login", "/orders/nope", "/api/openapi.json", "/static/app.css"):
        h = web_client.get(path).headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
        assert "script-src 'self'" in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["X-Frame-Options"] == "DENY"


def test_pages_are_not_cached_but_static_files_are(web_client) -> None:
    login(web_client, "viewer")
    assert web_client.get("/search").headers["Cache-Control"] == "no-store"
    assert "max-age=3600" in web_client.get("/static/app.js").headers["Cache-Control"]


def test_secret_is_generated_once_with_mode_0600(web_env: WebEnv, web_app) -> None:
    from web import create_app

    secret = web_env.data_dir / "web-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    first = secret.read_text()
    create_app(web_env.cfg, test_config={"PASSWORD_METHOD": FAST_PW})
    assert secret.read_text() == first
    assert web_app.config["SECRET_KEY"] == first.strip()


def test_short_secret_is_refused(web_env: WebEnv) -> None:
    from station.errors import ConfigError
    from web import create_app

    (web_env.data_dir / "web-secret").write_text("short")
    with pytest.raises(ConfigError, match="too short"):
        create_app(web_env.cfg)


def test_a_data_dir_the_site_cannot_make_is_named_with_the_fix(tmp_path: Path) -> None:
    """packcam web (ReadWritePaths=/var/lib/packcam only) with data_dir moved elsewhere: a
    StationError the CLI prints as one line, not a PermissionError traceback."""
    from station import config as config_mod
    from station.errors import StationError
    from web import create_app

    (tmp_path / "not-a-folder").write_text("")
    bad = tmp_path / "not-a-folder" / "data"
    with pytest.raises(StationError, match="ReadWritePaths=") as caught:
        create_app(config_mod.load(None).with_data_dir(bad))
    assert str(bad) in str(caught.value)


def test_an_empty_secret_left_by_a_power_cut_is_made_anew(tmp_path: Path, caplog) -> None:
    """ext4 can leave a new file empty after a power cut; nothing was ever signed with an
    empty secret, so making it again loses nothing (refusing it stopped the site for good)."""
    from web import load_or_create_secret

    path = tmp_path / "web-secret"
    path.write_bytes(b"")
    secret = load_or_create_secret(path)
    assert len(secret) == 64 and path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "empty" in caplog.text


def test_a_secret_that_could_not_be_written_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    """Disk full while making it: an error now, and a clean start next time, no empty file."""
    import errno

    import web
    from station.errors import ConfigError

    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ConfigError, match="No space left"):
        web.load_or_create_secret(tmp_path / "web-secret")
    monkeypatch.setattr(os, "write", real_write)
    assert list(tmp_path.iterdir()) == []
    assert len(web.load_or_create_secret(tmp_path / "web-secret")) == 64


@pytest.mark.parametrize(
    ("name", "role", "password", "error"),
    [
        ("bad name", "viewer", "long-enough", "account names"),
        ("ok", "boss", "long-enough", "role"),
        ("ok", "viewer", "short", "too short"),
        ("viewer", "viewer", "long-enough", "already exists"),
        ("", "viewer", "long-enough", "account names"),
    ],
)
def test_account_rules(web_env: WebEnv, name: str, role: str, password: str, error: str) -> None:
    from web.db import AccountError, WebDB

    db = WebDB.in_data_dir(web_env.data_dir, pw_method=FAST_PW)
    try:
        with pytest.raises(AccountError, match=error):
            db.add_user(name, role, password)
    finally:
        db.close()


def test_passwords_are_stored_with_a_kdf(web_env: WebEnv) -> None:
    from web.db import WebDB

    db = WebDB.in_data_dir(web_env.data_dir)
    try:
        db.add_user("张三", "viewer", "密码-long-enough")
        row = db.conn.execute("SELECT pw_hash FROM users WHERE name = '张三'").fetchone()
        assert row[0].startswith("scrypt:32768:8:1$")
        assert "密码" not in row[0]
        assert db.authenticate("张三", "密码-long-enough") is not None
    finally:
        db.close()


def test_session_is_valid_until_just_before_it_expires(web_client, web_env: WebEnv) -> None:
    login(web_client, "viewer")
    with web_client.session_transaction() as sess:
        sess["login_at"] = time.time() - web_env.cfg.web.session_hours * 3600 + 60
    assert web_client.get("/search").status_code == 200


def test_an_expired_session_is_refused_everywhere_and_forgotten(
    web_client, web_env: WebEnv
) -> None:
    login(web_client, "admin")
    clip = web_env.clips["plain"].id
    with web_client.session_transaction() as sess:
        sess["login_at"] = time.time() - web_env.cfg.web.session_hours * 3600 - 1
    assert web_client.get(f"/clips/{clip}/video").status_code == 302
    with web_client.session_transaction() as sess:
        assert "uid" not in sess and "login_at" not in sess  # dropped, not just ignored
    for path, status in [("/search", 302), ("/admin", 302), ("/api/clips", 401),
                         (f"/clips/{clip}/download", 302), ("/dashboard", 302)]:  # fmt: skip
        assert web_client.get(path).status_code == status, path


def test_a_session_without_a_login_time_is_expired(web_client) -> None:
    login(web_client, "viewer")
    with web_client.session_transaction() as sess:
        del sess["login_at"]
    assert web_client.get("/search").status_code == 302


def test_the_cookie_lasts_no_longer_than_the_session(web_client, web_env: WebEnv) -> None:
    from email.utils import parsedate_to_datetime

    token = csrf_of(web_client)
    resp = web_client.post(
        "/login", data={"username": "viewer", "password": PASSWORDS["viewer"], "csrf_token": token}
    )
    expires = re.search(r"Expires=([^;]+)", resp.headers["Set-Cookie"]).group(1)
    left = parsedate_to_datetime(expires).timestamp() - time.time()
    assert abs(left - web_env.cfg.web.session_hours * 3600) < 60


def test_a_session_signed_with_another_secret_is_ignored(web_env: WebEnv, web_app) -> None:
    """A forged cookie (someone else's secret) claiming to be the admin gets nowhere."""
    forger = make_app(web_env, SECRET_KEY="f" * 64).test_client()
    login(forger, "admin")
    cookie = forger.get_cookie("packcam_session")
    victim_site = web_app.test_client()
    victim_site.set_cookie("packcam_session", cookie.value)
    assert victim_site.get("/admin").status_code == 302
    assert victim_site.get("/api/clips").status_code == 401


def test_an_idle_session_ends_but_an_active_one_does_not(web_client, web_env: WebEnv) -> None:
    idle = web_env.cfg.web.idle_minutes * 60
    assert idle > 0
    login(web_client, "viewer")
    with web_client.session_transaction() as sess:  # active a minute ago, logged in 2 h ago
        sess["login_at"] = time.time() - 2 * 3600
        sess["seen_at"] = time.time() - 120
    assert web_client.get("/search").status_code == 200
    with web_client.session_transaction() as sess:
        assert time.time() - sess["seen_at"] < 10  # the request counted as activity
        sess["seen_at"] = time.time() - idle - 5  # then the PC was left alone
    assert web_client.get("/search").status_code == 302
    with web_client.session_transaction() as sess:
        assert "uid" not in sess and "seen_at" not in sess
    assert web_client.get("/api/orders/PO-1001").status_code == 401


def test_idle_limit_can_be_switched_off(web_env: WebEnv) -> None:
    from dataclasses import replace

    env = replace(web_env, cfg=web_env.cfg.replace("web", idle_minutes=0.0))
    client = make_app(env).test_client()
    login(client, "viewer")
    with client.session_transaction() as sess:
        sess["seen_at"] = time.time() - 10 * 3600
    assert client.get("/search").status_code == 200
