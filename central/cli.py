"""`packcam central ...` (the central index) and `packcam archive` (a station's catch-up pass)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

from station import config as config_mod
from station.config import Config
from station.errors import ConfigError


def _config(args: argparse.Namespace) -> Config:
    cfg = config_mod.load_cli(getattr(args, "config", None), getattr(args, "data", None))
    if getattr(args, "dsn", None):
        cfg = cfg.replace("central", dsn=args.dsn)
    return cfg


def cmd_central(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    from central.db import CentralDB

    out = out or sys.stdout
    cfg = _config(args)
    db = CentralDB(cfg.central.dsn)
    try:
        db.migrate()
        if args.central_command == "migrate":
            out.write("central index schema is up to date\n")
        elif args.central_command in {"add-station", "rotate-token"}:
            if args.central_command == "add-station":
                token = db.add_station(args.name)
            else:
                token = db.rotate_token(args.name)
            out.write(
                f"station {args.name}: token {token}\n"
                'Put it in the station\'s config ([central] token = "...", or token_file);'
                " it is shown only now.\n"
            )
        elif args.central_command == "stations":
            rows = db.stations_table()
            if args.json:
                json.dump(rows, out, default=str, indent=2)
                out.write("\n")
            for r in [] if args.json else rows:
                h = r["health"] or {}
                out.write(
                    f"{r['name']}\tclips {r['clips']}\tlast clip {r['last_clip_utc'] or '-'}\t"
                    f"backlog {h.get('archive_backlog', '-')}\t"
                    f"last seen {r['last_seen_utc'] or 'never'}\n"
                )
    finally:
        db.close()
    return 0


def cmd_archive(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    """One pass of the station's archiver and central sync (what the service does in the
    background), e.g. to catch up by hand or from a timer."""
    out = out or sys.stdout
    cfg = _config(args)
    if not (cfg.archive.enabled or cfg.central.enabled):
        raise ConfigError("neither [archive] nor [central] is enabled in the config")
    from station.recovery import data_dir_lock
    from station.service import build_fleet

    # Refused while the station runs: its own archiver is at work, and two uploaders of one
    # data dir could race on the same key (a duplicate version) or the same multipart upload.
    with data_dir_lock(cfg.station.data_dir):
        return _archive_pass(cfg, build_fleet, out)


def _archive_pass(cfg: Config, build_fleet: Any, out: IO[str]) -> int:
    archiver, sync = build_fleet(cfg)
    try:
        if archiver is not None:
            n = archiver.run_once()
            out.write(f"archived {n} clip(s); {archiver.backlog()} not archived yet\n")
        if sync is not None:
            sent = sync.sync_once()
            out.write(
                f"central: sent {sent['clips']} clip(s), {sent['archived']} archiving(s), "
                f"{sent['checkpoints']} checkpoint(s)\n"
            )
    finally:
        for part in (archiver, sync):
            if part is not None:
                part.stop()
    return 0


def _common(p: argparse.ArgumentParser, *, data: bool = False) -> None:
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML config")
    if data:
        p.add_argument(
            "--data", metavar="DIR", default=argparse.SUPPRESS, help="overrides station.data_dir"
        )
    else:
        p.add_argument(
            "--dsn", default=argparse.SUPPRESS, help="PostgreSQL conninfo (overrides central.dsn)"
        )


def register(subparsers: Any) -> None:
    """Add ``central`` and ``archive`` to packcam's subcommands."""
    p = subparsers.add_parser(
        "central",
        help="the fleet's central index (PostgreSQL): migrate, add-station, stations",
        description="Manage the central index that `packcam web --central` serves. The DSN "
        "comes from [central] dsn, --dsn or $PACKCAM_CENTRAL_DSN.",
    )
    _common(p)
    sub = p.add_subparsers(dest="central_command", metavar="ACTION", required=True)
    q = sub.add_parser("migrate", help="create or upgrade the schema")
    _common(q)
    q = sub.add_parser("add-station", help="register a station and print its enrolment token")
    q.add_argument("name", help="exactly the station's [station] name")
    _common(q)
    q = sub.add_parser("rotate-token", help="give a station a new token (the old one stops)")
    q.add_argument("name")
    _common(q)
    q = sub.add_parser("stations", help="list stations with their health and backlog")
    q.add_argument("--json", action="store_true", help="as JSON")
    _common(q)
    p.set_defaults(func=cmd_central)

    p = subparsers.add_parser(
        "archive",
        help="one archive + central sync pass on this station, then exit",
        description="Upload every clip not yet archived (and its proofs and key frames) and "
        "push what the central index lacks, once. The station service does this in the "
        "background when [archive] / [central] are enabled.",
    )
    _common(p, data=True)
    p.set_defaults(func=cmd_archive)
