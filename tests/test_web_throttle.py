"""Login brute-force protection: lockouts per account and per address, 429s, logged, persisted."""

from __future__ import annotations

import base64
import logging
import sqlite3

import pytest
from conftest_web import FAST_PW, PASSWORDS, WebEnv, csrf_of, make_app

from web.db import MIGRATIONS, WebDB
from web.throttle import LoginThrottle, Policy, account_key, address_key

POLICY = Policy(account_free=5, address_free=8, base_s=30.0, max_s=900.0)


@pytest.mark.parametrize(
    ("failures", "free", "expect"),
    [(1, 5, 0), (4, 5, 0), (5, 5, 30), (6, 5, 60), (7, 5, 120), (9, 5, 480), (10, 5, 900),
     (500, 5, 900), (19, 20, 0), (20, 20, 30)],
)  # fmt: skip
def test_lock_doubles_after_the_free_failures_up_to_the_cap(failures, free, expect) -> None:
    assert Policy().lock_s(failures, free) == expect


def test_address_keys() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert (
        address_key("2001:db8:1:2::1")
        == address_key("2001:db8:1:2:ffff::9")
        == ("2001:db8:1:2::/64")
    )
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key(None) == "-" and address_key("unix:x") == "unix:x"
    assert account_key(" admin ") == "admin"


@pytest.fixture
def app(web_env: WebEnv):
    return make_app(web_env, LOGIN_THROTTLE=POLICY)


def post_login(client, name: str, password: str, addr: str = "192.0.2.1"):
    return client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": csrf_of(client)},
        environ_overrides={"REMOTE_ADDR": addr},
    )


def unlock(env: WebEnv) -> None:
    """As if every lock had run out (failure counts stay)."""
    db = WebDB.in_data_dir(env.data_dir, pw_method=FAST_PW)
    db.conn.execute("UPDATE login_failures SET locked_until = 0")
    db.close()


def failures(env: WebEnv) -> dict[tuple[str, str], int]:
    db = WebDB.in_data_dir(env.data_dir, pw_method=FAST_PW)
    rows = db.conn.execute("SELECT scope, key, failures FROM login_failures").fetchall()
    db.close()
    return {(r[0], r[1]): r[2] for r in rows}


def test_account_is_locked_after_five_failures_even_for_the_right_password(
    app, web_env: WebEnv, caplog
) -> None:
    client = app.test_client()
    for _ in range(4):
        assert post_login(client, "viewer", "wrong-password").status_code == 401
    with caplog.at_level(logging.WARNING, logger="web.throttle"):
        locked = post_login(client, "viewer", "wrong-password")
    assert locked.status_code == 429
    assert 29 <= int(locked.headers["Retry-After"]) <= 30
    assert "Too many failed logins. Try again in 1 minute." in locked.get_data(as_text=True)
    assert "login locked for 30 s: 5 failures for account 'viewer'" in caplog.text
    right = post_login(client, "viewer", PASSWORDS["viewer"])
    assert right.status_code == 429
    assert client.get("/search").status_code == 302  # not logged in
    # Another account from another address is not affected.
    assert (
        post_login(app.test_client(), "admin", PASSWORDS["admin"], "192.0.2.99").status_code == 302
    )


def test_the_next_failure_after_a_lock_doubles_it(app, web_env: WebEnv) -> None:
    client = app.test_client()
    for _ in range(5):
        post_login(client, "viewer", "wrong-password")
    unlock(web_env)
    resp = post_login(client, "viewer", "wrong-password")
    assert resp.status_code == 429 and 59 <= int(resp.headers["Retry-After"]) <= 60
    unlock(web_env)
    resp = post_login(client, "viewer", "wrong-password")
    assert 119 <= int(resp.headers["Retry-After"]) <= 120
    assert "Try again in 2 minutes." in resp.get_data(as_text=True)


def test_a_successful_login_resets_the_counts(app, web_env: WebEnv) -> None:
    client = app.test_client()
    for _ in range(4):
        post_login(client, "viewer", "wrong-password")
    assert failures(web_env)[("account", "viewer")] == 4
    assert post_login(client, "viewer", PASSWORDS["viewer"]).status_code == 302
    assert failures(web_env) == {}
    for _ in range(4):  # four more are free again
        assert post_login(app.test_client(), "viewer", "wrong-password").status_code == 401


def test_unknown_names_lock_exactly_like_real_ones(app) -> None:
    """No account enumeration through lockouts: a name that does not exist behaves the same."""
    codes = {}
    for name in ("viewer", "nobody-here"):
        client = app.test_client()
        codes[name] = [post_login(client, name, "wrong-password", f"198.51.100.{len(codes)}")
                       .status_code for _ in range(6)]  # fmt: skip
    assert codes["viewer"] == codes["nobody-here"] == [401, 401, 401, 401, 429, 429]


def test_an_address_guessing_many_names_is_locked(app) -> None:
    client = app.test_client()
    codes = [post_login(client, f"user{i}", "wrong-password", "203.0.113.5").status_code
             for i in range(9)]  # fmt: skip
    assert codes == [401] * 7 + [429, 429]  # the 8th failure from the address locks it
    # Even a real account with its right password waits, from that address only.
    assert post_login(client, "admin", PASSWORDS["admin"], "203.0.113.5").status_code == 429
    assert post_login(client, "admin", PASSWORDS["admin"], "203.0.113.6").status_code == 302


def test_an_account_is_locked_across_addresses(app) -> None:
    client = app.test_client()
    codes = [post_login(client, "admin", "wrong-password", f"198.51.100.{i}").status_code
             for i in range(6)]  # fmt: skip
    assert codes == [401, 401, 401, 401, 429, 429]


def test_ipv6_attackers_cannot_rotate_through_their_slash_64(app) -> None:
    client = app.test_client()
    codes = [post_login(client, f"u{i}", "wrong-password", f"2001:db8:7:7::{i + 1:x}").status_code
             for i in range(9)]  # fmt: skip
    assert codes[-2:] == [429, 429]


def test_lockouts_survive_a_restart(app, web_env: WebEnv) -> None:
    client = app.test_client()
    for _ in range(5):
        post_login(client, "viewer", "wrong-password")
    restarted = make_app(web_env, LOGIN_THROTTLE=POLICY)
    assert post_login(restarted.test_client(), "viewer", PASSWORDS["viewer"]).status_code == 429


def test_lockout_message_in_chinese(app) -> None:
    client = app.test_client()
    client.set_cookie("packcam_lang", "zh_CN")
    for _ in range(5):
        resp = post_login(client, "viewer", "wrong-password")
    assert resp.status_code == 429
    assert "登录失败次数过多，请 1 分钟后再试。" in resp.get_data(as_text=True)


def basic(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_http_basic_on_the_api_counts_and_is_locked_too(app) -> None:
    client = app.test_client()
    env = {"REMOTE_ADDR": "192.0.2.50"}
    codes = [client.get("/api/stations", headers=basic("operator", "nope-nope"),
                        environ_overrides=env).status_code for _ in range(5)]  # fmt: skip
    assert codes == [401, 401, 401, 401, 429]
    resp = client.get(
        "/api/stations", headers=basic("operator", PASSWORDS["operator"]), environ_overrides=env
    )
    assert resp.status_code == 429 and resp.is_json and int(resp.headers["Retry-After"]) > 0
    ok = app.test_client().get(
        "/api/stations", headers=basic("admin", PASSWORDS["admin"]), environ_overrides=env
    )
    assert ok.status_code == 200  # admin is not locked; the address has 5 of its 8


def test_default_policy_is_used_without_app_config(web_env: WebEnv) -> None:
    client = make_app(web_env).test_client()
    codes = [post_login(client, "viewer", "wrong-password").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 401, 429]


def test_forgotten_after_the_window(web_env: WebEnv) -> None:
    now = [1_000_000.0]
    db = WebDB.in_data_dir(web_env.data_dir, pw_method=FAST_PW)
    th = LoginThrottle(db, Policy(account_free=3, window_s=3600), clock=lambda: now[0])
    th.failed("viewer", "192.0.2.1")
    th.failed("viewer", "192.0.2.1")
    now[0] += 3601
    assert th.failed("viewer", "192.0.2.1") == 0  # the old two were forgotten
    assert db.conn.execute("SELECT failures FROM login_failures").fetchall()[0][0] == 1
    db.close()


def test_web_db_migrates_from_version_1(tmp_path) -> None:
    path = tmp_path / "web.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN;{MIGRATIONS[0]}PRAGMA user_version=1;COMMIT;")
    conn.close()
    db = WebDB(path)
    assert db.schema_version == len(MIGRATIONS) >= 2
    assert db.login_locked_until([("account", "x")]) == 0
    db.close()
