"""`packcam web` (waitress), `packcam user` and `packcam group` (accounts, station groups)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import closing
from typing import IO, Any, TextIO

from waitress import create_server, wasyncore

from station.cliargs import add_config, add_data, load_config
from station.config import Config
from station.errors import StationError
from station.runtime.sdnotify import Notifier
from web import create_app
from web.backends import SiteBackend
from web.db import ROLES, AccountError, StationGroup, User, WebDB
from web.uploads import FRAMING, waitress_channel
from web.verify import spool_of

log = logging.getLogger(__name__)

DEMO_USER = "demo"
UPLOAD_FRAMING = FRAMING  # room for multipart headers and boundaries around a /verify upload
DEMO_PASSWORD_FILE = "web-demo-password"


# ---- serving -------------------------------------------------------------------------------


def make_server(
    config: Config,
    host: str,
    port: int,
    *,
    central: SiteBackend | None = None,
    test_config: dict[str, Any] | None = None,
) -> Any:
    """A waitress server for the site, bound but not yet running (``port`` 0 = any free port).

    ``test_config``: Flask config overrides, as for ``create_app``.
    """

    app = create_app(config, central=central, test_config=test_config)
    # waitress reads a whole request body (spooling it to a temp file) before the app sees
    # it: refuse anything larger than the largest body the app accepts (a /verify upload plus
    # its multipart framing) right at the headers, or while a chunked body arrives; the
    # channel admits /verify uploads at their headers and spools them on the data disk.
    spool = spool_of(app)
    verify_max = spool.limits.max_bytes
    larger = central.large_bodies if central is not None else ()
    server = create_server(
        app,
        host=host,
        port=port,
        max_request_body_size=verify_max + UPLOAD_FRAMING,
        threads=config.web.threads,
        ident="packcam",
        # Behind a trusted proxy the app's ProxyFix reads X-Forwarded-*; waitress must keep them.
        clear_untrusted_proxy_headers=not config.web.trust_proxy,
        channel_timeout=60,
        # Read each connection while its response streams, so that a client that closes is
        # seen at once (environ["waitress.client_disconnected"]): a live or kiosk stream then
        # ends and gives its slot back, instead of at its next write (an unchanged frame
        # writes only every KEEPALIVE_S).
        channel_request_lookahead=1,
        connection_limit=200,
        asyncore_use_poll=True,
    )
    server.channel_class = waitress_channel(
        spool, app.config["MAX_CONTENT_LENGTH"], larger, trust_proxy=config.web.trust_proxy
    )
    server.packcam_app = app
    return server


def server_url(server: Any) -> str:
    host = server.effective_host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{server.effective_port}/"


def run_server(server: Any, *, stop: threading.Event | None = None) -> None:
    """Run a server from ``make_server`` until ``stop`` is set (or forever)."""
    app = server.packcam_app
    app_stop: threading.Event = app.extensions["packcam"]["stop"]
    watcher = None
    finished = threading.Event()
    if stop is not None:

        def watch() -> None:
            while not stop.wait(0.5):
                if finished.is_set():
                    return  # the server ended by itself: nothing left to close
            app_stop.set()  # ends live streams
            # Close every socket from inside the server's own loop; the loop then returns.

            try:
                server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            except OSError as exc:  # the server closed its trigger as the stop came
                log.debug("web server already closed when stopped: %s", exc)

        watcher = threading.Thread(target=watch, name="web-stop", daemon=True)
        watcher.start()
    try:
        server.run()
    finally:
        finished.set()
        app_stop.set()
        server.task_dispatcher.shutdown(timeout=5)
        app.extensions["packcam"]["handles"].close()  # its threads are done with them
        log.info("web server stopped")


def serve(
    config: Config,
    host: str,
    port: int,
    *,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    notifier: Notifier | None = None,
    central: SiteBackend | None = None,
) -> None:
    """Serve the site with waitress until ``stop`` is set; ``ready`` is set once listening.

    ``notifier`` (systemd's, under ``Type=notify``) gets ``READY=1`` once the socket listens.
    ``central``: the fleet's central site (see ``web.create_app``).
    """
    server = make_server(config, host, port, central=central)
    url = server_url(server)
    log.info("packcam web listening on %s (data %s)", url, config.station.data_dir)
    if ready is not None:
        ready.set()
    if notifier is not None:
        notifier.ready(f"listening on {url}")
    run_server(server, stop=stop)


def ensure_demo_user(config: Config) -> tuple[str, str]:
    """Create (or reset) the demo administrator and return (name, password).

    The password is random, kept in ``<data_dir>/web-demo-password`` (0600) so it stays the
    same across demo restarts on one data dir; the demo command prints it.
    """
    data_dir = config.station.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    pw_file = data_dir / DEMO_PASSWORD_FILE
    password = ""
    if pw_file.is_file():
        password = pw_file.read_text(encoding="utf-8").strip()
    if len(password) < 8:
        password = secrets.token_urlsafe(9)
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(password + "\n")
    db = WebDB.in_data_dir(data_dir)
    try:
        user = db.user(DEMO_USER)
        if user is None:
            db.add_user(DEMO_USER, "admin", password)
        else:
            db.set_password(DEMO_USER, password)
            if user.role != "admin":
                db.set_role(DEMO_USER, "admin")
    finally:
        db.close()
    return DEMO_USER, password


# ---- commands ------------------------------------------------------------------------------


def start_demo_site(
    cfg: Config, stop: threading.Event, out: TextIO
) -> tuple[threading.Thread, str]:
    """Serve the site beside ``packcam demo``'s station (a thread, until ``stop``); print its
    URL and the demo account; (the thread, the URL). Handed to station.service.run_demo by the
    composition layer."""
    user, password = ensure_demo_user(cfg)
    try:
        # Bind here, on the caller's thread, so a busy port fails the demo with a clear message.
        server = make_server(cfg, cfg.web.host, cfg.web.port)
    except OSError as exc:
        raise StationError(
            f"cannot serve the web site on {cfg.web.host}:{cfg.web.port}: {exc.strerror or exc}"
            " (choose another with --port)"
        ) from exc
    thread = threading.Thread(
        target=run_server, args=(server,), kwargs={"stop": stop}, name="web", daemon=True
    )
    thread.start()
    url = server_url(server)
    if cfg.web.host in {"0.0.0.0", "::", ""}:
        url = f"http://127.0.0.1:{cfg.web.port}/"
    out.write(f"packcam demo: web site at {url}  (log in as {user!r} with password {password!r})\n")
    out.write(f"packcam demo: station screen at {url.rstrip('/')}/screen\n")
    out.flush()
    return thread, url


def cmd_web(args: argparse.Namespace) -> int:

    cfg = load_config(args)
    host = args.host if getattr(args, "host", None) else cfg.web.host
    port = args.port if getattr(args, "port", None) is not None else cfg.web.port
    stop = threading.Event()
    notifier = Notifier.from_env()  # a no-op unless systemd started us with Type=notify

    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping the web server", signum)
        notifier.stopping("stopping")
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    central = args.central_site(cfg) if getattr(args, "central", False) else None
    serve(cfg, host, port, stop=stop, notifier=notifier, central=central)
    return 0


def read_new_password(
    name: str, *, stdin: IO[str] | None = None, stderr: IO[str] | None = None
) -> str:
    """Ask twice: from the terminal with getpass, else two lines of stdin (for scripts)."""
    stdin = stdin or sys.stdin
    stderr = stderr or sys.stderr
    if stdin.isatty():
        first = getpass.getpass(f"New password for {name}: ")
        second = getpass.getpass("Repeat it: ")
    else:
        first = stdin.readline().rstrip("\r\n")
        second = stdin.readline().rstrip("\r\n")
    if first != second:
        raise AccountError("the two passwords differ")
    return first


NO_ACCOUNTS = "no accounts; create one with: packcam user add NAME --role admin\n"
NO_GROUPS = "no station groups; create one with: packcam group add NAME\n"


def _open_db(args: argparse.Namespace) -> closing[WebDB]:
    """The accounts database in the data directory of the configuration ``args`` name."""
    return closing(WebDB.in_data_dir(load_config(args).station.data_dir))


def _names(names: Iterable[str]) -> str:
    """Names in a listing: comma-separated, "-" for none."""
    return ",".join(names) or "-"


def _user_line(db: WebDB, u: User) -> str:
    return (
        f"{u.name}\t{u.role}\tcreated {u.created_utc}\t"
        f"last login {u.last_login_utc or '-'}\tgroups {_names(db.user_groups(u.id))}\n"
    )


def _group_line(g: StationGroup) -> str:
    return f"{g.name}\tstations {_names(g.stations)}\tmembers {_names(g.members)}\n"


def _write_list(out: IO[str], lines: list[str], empty: str) -> None:
    """What ``user list`` and ``group list`` print: the lines, or ``empty`` when there are
    none (it says how to make the first)."""
    out.write("".join(lines) if lines else empty)


def cmd_user(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    with _open_db(args) as db:
        if args.user_command == "list":
            _write_list(out, [_user_line(db, u) for u in db.users()], NO_ACCOUNTS)
        elif args.user_command == "add":
            if db.user(args.name) is not None:
                raise AccountError(f"account {args.name!r} already exists")
            groups = list(dict.fromkeys(args.group or ()))
            known = {g.name for g in db.groups()}
            for group in groups:  # before the password is asked for
                if group not in known:
                    raise AccountError(f"no station group named {group!r}")
            password = read_new_password(args.name)
            db.add_user(args.name, args.role, password, groups=groups)
            out.write(f"account {args.name} ({args.role}) created"
                      + (f" in {', '.join(groups)}" if groups else "") + "\n")  # fmt: skip
            if args.role != "admin" and not groups:
                out.write(SCOPE_NOTE)
        elif args.user_command == "passwd":
            if db.user(args.name) is None:
                raise AccountError(f"no account named {args.name!r}")
            db.set_password(args.name, read_new_password(args.name))
            out.write(f"password of {args.name} changed; its sessions were logged out\n")
        elif args.user_command == "remove":
            db.remove_user(args.name)
            out.write(f"account {args.name} removed\n")
    return 0


SCOPE_NOTE = (
    "note: on the central site (packcam web --central) an account other than admin sees only\n"
    "the stations of its groups, and nothing while it is in none: packcam group members\n"
    "GROUP --add NAME\n"
)


def cmd_group(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    with _open_db(args) as db:
        if args.group_command == "list":
            _write_list(out, [_group_line(g) for g in db.groups()], NO_GROUPS)
        elif args.group_command == "add":
            db.add_group(args.name)
            out.write(f"station group {args.name} created\n")
        elif args.group_command == "remove":
            db.remove_group(args.name)
            out.write(f"station group {args.name} removed\n")
        elif args.group_command == "stations":
            db.change_group_stations(args.name, args.add or (), args.remove or ())
            (g,) = [g for g in db.groups() if g.name == args.name]
            out.write(f"{g.name}\tstations {_names(g.stations)}\n")
        elif args.group_command == "members":
            db.change_group_members(args.name, args.add or (), args.remove or ())
            (g,) = [g for g in db.groups() if g.name == args.name]
            out.write(f"{g.name}\tmembers {_names(g.members)}\n")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    add_config(p, suppress=True)
    add_data(p, suppress=True)


def register(
    subparsers: Any, *, central_site: Callable[[Config], SiteBackend] | None = None
) -> None:
    """Add the ``web`` and ``user`` subcommands to packcam's argparse subparsers.

    ``central_site`` builds the central site's backends for ``web --central`` (handed in by
    the composition layer, packcam/: web/ does not know central/); without it there is no
    ``--central``."""
    p = subparsers.add_parser(
        "web",
        help="serve the web site (search, watch, share clips) with waitress",
        description="Serve the web site with the production WSGI server waitress. "
        "Put it behind an HTTPS reverse proxy (and set web.trust_proxy) when it is "
        "reachable from outside the warehouse.",
    )
    _add_common(p)
    p.add_argument("--port", type=int, default=argparse.SUPPRESS, help="port (default: web.port)")
    p.add_argument("--host", default=argparse.SUPPRESS, help="address (default: web.host)")
    if central_site is not None:
        p.add_argument(
            "--central",
            action="store_true",
            help="the fleet's central site: search every station's clips in PostgreSQL "
            "([central] dsn) and stream them from object storage ([archive])",
        )
    p.set_defaults(func=cmd_web, central_site=central_site)

    p = subparsers.add_parser(
        "user",
        help="manage web accounts: add, passwd, remove, list",
        description="Manage the web site's accounts. Passwords are read twice from the "
        "terminal, or as two lines from standard input when it is not a terminal.",
    )
    _add_common(p)
    sub = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    q = sub.add_parser("add", help="create an account")
    q.add_argument("name")
    q.add_argument("--role", choices=ROLES, required=True, help="viewer, operator or admin")
    q.add_argument(
        "--group",
        action="append",
        metavar="GROUP",
        help="put the account in this station group (repeatable); on the central site it "
        "then sees only those groups' stations (admins see every station)",
    )
    _add_common(q)
    q = sub.add_parser("passwd", help="set a new password (logs the account out everywhere)")
    q.add_argument("name")
    _add_common(q)
    q = sub.add_parser("remove", help="delete an account")
    q.add_argument("name")
    _add_common(q)
    q = sub.add_parser("list", help="list accounts, roles and station groups")
    _add_common(q)
    p.set_defaults(func=cmd_user)

    p = subparsers.add_parser(
        "group",
        help="station groups (warehouses) that scope accounts on the central site",
        description="Station groups scope the central site (packcam web --central): an "
        "account other than admin sees only the clips, orders, shares, dashboard and health "
        "of the stations in its groups, and nothing while it is in no group. Admins see "
        "every station. A station's own site is not scoped.",
    )
    _add_common(p)
    sub = p.add_subparsers(dest="group_command", metavar="ACTION", required=True)
    q = sub.add_parser("add", help="create a station group")
    q.add_argument("name")
    _add_common(q)
    q = sub.add_parser("remove", help="delete a group (its members lose its stations)")
    q.add_argument("name")
    _add_common(q)
    q = sub.add_parser("list", help="list groups with their stations and members")
    _add_common(q)
    for action, what, metavar in (
        ("stations", "stations (by their [station] name)", "STATION"),
        ("members", "accounts", "USER"),
    ):
        q = sub.add_parser(action, help=f"add or remove a group's {what}")
        q.add_argument("name", help="the group")
        q.add_argument("--add", nargs="+", metavar=metavar, default=[], help=f"{what} to add")
        q.add_argument("--remove", nargs="+", metavar=metavar, default=[], help=f"{what} to remove")
        _add_common(q)
    p.set_defaults(func=cmd_group)


__all__ = [
    "StationError",
    "cmd_group",
    "cmd_user",
    "cmd_web",
    "ensure_demo_user",
    "make_server",
    "register",
    "run_server",
    "serve",
    "start_demo_site",
]
