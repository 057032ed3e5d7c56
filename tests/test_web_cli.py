"""`packcam web` / `packcam user` subcommands, ensure_demo_user and serve() on a real socket."""

from __future__ import annotations

import argparse
import io
import threading
import urllib.request

import pytest
from conftest_web import WebEnv

from station import config as config_mod
from web import cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="packcam")
    sub = p.add_subparsers(dest="command", required=True)
    cli.register(sub)
    return p


class FakeStdin(io.StringIO):
    def isatty(self) -> bool:
        return False


def run(argv: list[str], stdin: str = "", monkeypatch=None) -> tuple[int, str]:
    args = parser().parse_args(argv)
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", FakeStdin(stdin))
    out = io.StringIO()
    if args.command == "user":
        return cli.cmd_user(args, out=out), out.getvalue()
    raise AssertionError("only user commands run here")


def test_user_lifecycle(tmp_path, monkeypatch) -> None:
    data = str(tmp_path / "d")
    code, out = run(["user", "list", "--data", data], monkeypatch=monkeypatch)
    assert code == 0 and "packcam user add NAME --role admin" in out
    code, out = run(["user", "add", "alice", "--role", "admin", "--data", data],
                    "secret-pass-1\nsecret-pass-1\n", monkeypatch)  # fmt: skip
    assert code == 0 and "alice" in out
    _, out = run(["user", "--data", data, "list"], monkeypatch=monkeypatch)
    assert out.startswith("alice\tadmin")
    run(["user", "passwd", "alice", "--data", data], "new-pass-22\nnew-pass-22\n", monkeypatch)
    from web.db import WebDB

    db = WebDB.in_data_dir(tmp_path / "d")
    assert db.authenticate("alice", "new-pass-22") is not None
    db.close()
    run(["user", "remove", "alice", "--data", data], monkeypatch=monkeypatch)
    _, out = run(["user", "list", "--data", data], monkeypatch=monkeypatch)
    assert "alice" not in out


@pytest.mark.parametrize(
    ("argv", "stdin", "error"),
    [
        (["user", "add", "bob", "--role", "viewer"], "one-password\nother-password\n", "differ"),
        (["user", "add", "bob", "--role", "viewer"], "short\nshort\n", "too short"),
        (["user", "passwd", "nobody"], "long-enough\nlong-enough\n", "no account"),
        (["user", "remove", "nobody"], "", "no account"),
    ],
)
def test_user_errors_are_station_errors(tmp_path, monkeypatch, argv, stdin, error) -> None:
    from station.errors import StationError

    with pytest.raises(StationError, match=error):
        run([*argv, "--data", str(tmp_path)], stdin, monkeypatch)


def test_bad_role_is_a_usage_error(tmp_path) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["user", "add", "x", "--role", "boss"])


def test_every_command_has_help() -> None:
    p = parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"web", "user", "group"}
    for name, sp in sub.choices.items():
        assert sp.description, name
        assert sp.format_help()
    for command, names in (
        ("user", ("add", "passwd", "remove", "list")),
        ("group", ("add", "remove", "list", "stations", "members")),
    ):
        sp = sub.choices[command]
        actions = next(a for a in sp._actions if isinstance(a, argparse._SubParsersAction))
        assert set(actions.choices) == set(names)
        for name in names:
            assert actions.choices[name].format_help()


def test_web_arguments_override_config() -> None:
    args = parser().parse_args(
        ["web", "--config", "x.toml", "--data", "/d", "--port", "9", "--host", "::1"]
    )
    assert (args.config, args.data, args.port, args.host) == ("x.toml", "/d", 9, "::1")
    args = parser().parse_args(["web"])
    assert not hasattr(args, "port") and not hasattr(args, "data")


def test_ensure_demo_user_is_stable(tmp_path) -> None:
    cfg = config_mod.load(None).with_data_dir(tmp_path / "demo")
    name, password = cli.ensure_demo_user(cfg)
    assert (name, password) == cli.ensure_demo_user(cfg)
    from web.db import WebDB

    db = WebDB.in_data_dir(tmp_path / "demo")
    user = db.authenticate(name, password)
    db.close()
    assert user is not None and user.role == "admin"


def test_serve_runs_waitress_until_stopped(web_env: WebEnv) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=cli.serve, args=(web_env.cfg, "127.0.0.1", port),
                         kwargs={"ready": ready, "stop": stop}, daemon=True)  # fmt: skip
    t.start()
    assert ready.wait(10)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as resp:
        assert resp.status == 200 and b"csrf_token" in resp.read()
        assert resp.headers["Server"] == "packcam"
    stop.set()
    t.join(10)
    assert not t.is_alive()


def test_packcam_web_tells_systemd_when_it_listens_and_stops(web_env: WebEnv, tmp_path) -> None:
    """`packcam web` under Type=notify: READY=1 once listening, STOPPING=1 on SIGTERM."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(30)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
    cmd = [sys.executable, "-m", "packcam", "web", "--data", str(web_env.data_dir),
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        ready = listener.recv(4096).decode()
        assert ready.split("\n")[0] == "READY=1"
        assert f"STATUS=listening on http://127.0.0.1:{port}/" in ready
        # READY means listening: the very next request is answered.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        assert listener.recv(4096).decode().split("\n")[0] == "STOPPING=1"
        assert proc.wait(timeout=20) == 0
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
