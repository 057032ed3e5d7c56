"""`packcam central ...` (the central index) and `packcam archive` (a station's catch-up pass)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

from central.alerts import Alert, DeliveryError, build_sinks, fleet_alerts, run_once
from central.bucket_audit import Kind, audit_bucket, by_kind, deep_audit
from central.db import CentralDB
from central.storage_policy import render
from station import config as config_mod
from station.cliargs import add_config, add_data, load_config
from station.config import Config
from station.errors import ConfigError
from station.fleet.objstore import ObjectStore
from station.service import build_fleet
from station.store.recovery import data_dir_lock


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args)
    if getattr(args, "dsn", None):
        cfg = cfg.replace("central", dsn=args.dsn)
    return cfg


def cmd_central(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:

    out = out or sys.stdout
    cfg = _config(args)
    db = CentralDB(cfg.central.dsn)
    try:
        if args.central_command == "build-search-indexes":
            # before the upgrade's migration, which would build them blocking writes
            built = db.build_search_indexes()
            out.write(
                "search indexes built: "
                + (", ".join(built) if built else "none (all there)")
                + "\nnow upgrade or restart the central site: its migration finds them\n"
            )
            return 0
        db.migrate()
        if args.central_command == "migrate":
            out.write("central index schema is up to date\n")
        elif args.central_command in {"add-station", "rotate-token", "replace-station"}:
            if args.central_command == "add-station":
                token = db.add_station(args.name)
            elif args.central_command == "replace-station":
                token = db.replace_station(args.name)
                out.write(
                    f"station {args.name}: the old enrolment is retired (its clips, log and key"
                    " stay, read-only); the new station starts a new log under this name.\n"
                )
            else:
                token = db.rotate_token(args.name)
            out.write(
                f"station {args.name}: token {token}\n"
                'Put it in the station\'s config ([central] token = "...", or token_file);'
                " it is shown only now.\n"
            )
        elif args.central_command == "bucket-audit":
            return _bucket_audit(cfg, db, args, out)
        elif args.central_command == "alerts":
            return _alerts(cfg, db, args, out)
        elif args.central_command == "stations":
            rows = db.stations_table(retired=getattr(args, "all", False))
            if args.json:
                json.dump(rows, out, default=str, indent=2)
                out.write("\n")
            for r in [] if args.json else rows:
                h = r["health"] or {}
                out.write(
                    f"{r['name']}\tclips {r['clips']}\tlast clip {r['last_clip_utc'] or '-'}\t"
                    f"backlog {h.get('archive_backlog', '-')}\t"
                    f"last seen {r['last_seen_utc'] or 'never'}"
                    + (f"\tretired {r['retired_utc']}" if r["retired_utc"] else "")
                    + "\n"
                )
    finally:
        db.close()
    return 0


def _bucket_audit(cfg: Config, db: Any, args: argparse.Namespace, out: IO[str]) -> int:
    """Exit 1 when the bucket holds less (or other) than the index says was archived."""

    if not cfg.archive.bucket:
        raise ConfigError("bucket-audit needs [archive] bucket and an admin key to list versions")
    store = ObjectStore(cfg.archive)
    digests = db.archived_clip_digests()
    expected = {k: size for k, (size, _sha) in digests.items()}
    findings = audit_bucket(store.client, cfg.archive.bucket, cfg.archive.prefix, expected)
    if args.deep:
        gone = {f.key for f in findings if f.kind in (Kind.DELETED, Kind.MISSING)}
        findings = by_kind([*findings, *deep_audit(store.check_archived, digests, skip=gone)])
    if args.json:
        json.dump([f.as_dict() for f in findings], out, indent=2)
        out.write("\n")
    else:
        for f in findings:
            out.write(f"{f.kind}\t{f.key}\t{f.detail}\n")
        out.write(f"{len(findings)} finding(s) in bucket {cfg.archive.bucket}\n")
    return 1 if findings else 0


def _alerts(cfg: Config, db: Any, args: argparse.Namespace, out: IO[str]) -> int:
    """One alerts pass: exit 0 when delivered (or nothing changed), 1 when a sink failed."""

    current = fleet_alerts(db.station_statuses(cfg.alerts.silent_after_s), cfg.alerts)
    if args.bucket_audit:
        if not cfg.archive.bucket:
            raise ConfigError("--bucket-audit needs [archive] bucket and an admin key")
        findings = audit_bucket(ObjectStore(cfg.archive).client, cfg.archive.bucket,
                                cfg.archive.prefix, db.archived_clip_keys())  # fmt: skip
        current += [
            Alert("bucket", f"{f.kind} {f.key}", f"bucket {cfg.archive.bucket}: {f.kind}"
                  f" {f.key} ({f.detail})")
            for f in findings
        ]  # fmt: skip
    state = cfg.station.data_dir / "alerts-state.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    try:
        sent = run_once(current, build_sinks(cfg.alerts), state, cfg.alerts)
    except DeliveryError as exc:
        out.write(f"{exc}\n")
        return 1
    if args.json:
        json.dump({"active": [a.__dict__ for a in current], "sent": sent}, out, indent=2)
        out.write("\n")
    else:
        for e in sent:
            out.write(f"{e['type']}\t{e['message']}\n")
        out.write(f"{len(current)} active alert(s), {len(sent)} event(s) sent\n")
    return 0


def cmd_storage_policy(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    """Print what to apply so that a station's key can write its own prefix and delete nothing."""

    out = out or sys.stdout
    bucket = args.bucket
    prefix = args.prefix
    if bucket is None or prefix is None:
        cfg = config_mod.load_cli(getattr(args, "config", None), None)
        bucket = bucket or cfg.archive.bucket
        prefix = cfg.archive.prefix if prefix is None else prefix
    if not bucket:
        raise ConfigError("give --bucket or set [archive] bucket in the config")
    json.dump(render(args.store, bucket, prefix, args.station), out, indent=2)
    out.write("\n")
    return 0


def cmd_archive(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    """One pass of the station's archiver and central sync (what the service does in the
    background), e.g. to catch up by hand or from a timer."""
    out = out or sys.stdout
    cfg = _config(args)
    if not (cfg.archive.enabled or cfg.central.enabled):
        raise ConfigError("neither [archive] nor [central] is enabled in the config")

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
                f"{sent['checkpoints']} checkpoint(s), {sent['waybills']} clip(s) with waybills"
                " linked after signing\n"
            )
    finally:
        for part in (archiver, sync):
            if part is not None:
                part.stop()
    return 0


def _common(p: argparse.ArgumentParser, *, data: bool = False) -> None:
    add_config(p, suppress=True)
    if data:
        add_data(p, suppress=True)
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
    q = sub.add_parser(
        "build-search-indexes",
        help="build the search indexes of this version without blocking (before `migrate`)",
        description="CREATE INDEX CONCURRENTLY of the search indexes this version's migration"
        " needs, while the previous version's site keeps registering and searching (its own"
        " indexes stay until the migration): at millions of clips the build takes many minutes,"
        " which the migration would otherwise spend holding up registrations. Run it, then"
        " upgrade or restart the central site. See docs/fleet.md, 'Upgrading a big index'.",
    )
    _common(q)
    q = sub.add_parser("add-station", help="register a station and print its enrolment token")
    q.add_argument("name", help="exactly the station's [station] name")
    _common(q)
    q = sub.add_parser(
        "replace-station",
        help="a replaced Pi (new data dir and key) under the same name: retire the old one",
        description="The old enrolment keeps its clips, checkpoints, public key and witness"
        " history, read-only (its token stops working), so its clips stay searchable, playable"
        " and verifiable; prints the token for the new station, which starts a new log. The"
        " new station needs a key of its own: a Pi restored from a backup of its data dir runs"
        " `packcam keys rotate` too. See docs/fleet.md, 'Replacing a station'.",
    )
    q.add_argument("name", help="exactly the station's [station] name")
    _common(q)
    q = sub.add_parser("rotate-token", help="give a station a new token (the old one stops)")
    q.add_argument("name")
    _common(q)
    q = sub.add_parser(
        "bucket-audit",
        help="compare the bucket with the index: deleted, missing, overwritten, unindexed clips",
        description="Lists every object version under [archive] prefix (an admin key that may"
        " list versions) and reports archived clips hidden by a delete marker, missing or"
        " written more than once, and clip objects the index does not hold. Exit 1 on findings.",
    )
    q.add_argument(
        "--deep",
        action="store_true",
        help="also prove each archived clip's bytes: the store's SHA-256 checksum, else read it"
        " back (one download per clip); reports other bytes under the clip's size and metadata",
    )
    q.add_argument("--json", action="store_true", help="as JSON")
    _common(q)
    q = sub.add_parser(
        "alerts",
        help="send what changed in the fleet's health (webhook, e-mail), de-duplicated",
        description="One pass (run it every minute from a timer): a station silent, an archive"
        " backlog, low disk, an unsynced clock or a station error start an alert, sent once by"
        " [alerts] webhook_url and/or e-mail, repeated every repeat_hours while true, and"
        " cleared when gone. State: <data_dir>/alerts-state.json. Exit 1 when a sink failed"
        " (everything is sent again next run).",
    )
    q.add_argument("--bucket-audit", action="store_true", help="also alert on bucket findings")
    q.add_argument("--json", action="store_true", help="as JSON")
    _common(q)
    q = sub.add_parser("stations", help="list stations with their health and backlog")
    q.add_argument("--json", action="store_true", help="as JSON")
    q.add_argument("--all", action="store_true", help="also the retired (replaced) stations")
    _common(q)
    p.set_defaults(func=cmd_central)

    p = subparsers.add_parser(
        "storage-policy",
        help="print a least-privilege bucket policy or identity for one station's key",
        description="What to apply on the object store so that a station's access key can put"
        " and read objects under its own prefix (stations/<name>/), list that prefix only, and"
        " can never delete: an IAM"
        " user policy for AWS S3 and MinIO, an s3.json identity plus a bucket policy for"
        " SeaweedFS. See docs/fleet.md.",
    )
    p.add_argument("station", help="exactly the station's [station] name")
    p.add_argument("--store", choices=["aws", "minio", "seaweedfs"], default="aws")
    p.add_argument("--bucket", help="default: [archive] bucket from the config")
    p.add_argument("--prefix", help="default: [archive] prefix from the config")
    add_config(p, suppress=True)
    p.set_defaults(func=cmd_storage_policy)

    p = subparsers.add_parser(
        "archive",
        help="one archive + central sync pass on this station, then exit",
        description="Upload every clip not yet archived (and its proofs and key frames) and "
        "push what the central index lacks, once. The station service does this in the "
        "background when [archive] / [central] are enabled.",
    )
    _common(p, data=True)
    p.set_defaults(func=cmd_archive)
